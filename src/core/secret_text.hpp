/*
 * secret_text.hpp — keeping the secrets of cachebust's settings out of
 * free text: log lines, their details, and logged statements.
 *
 * Two kinds of secret: the passwords inside a Redis URL
 * (cachebust.redis_url), redacted by parsing the URL (core/redis/url.hpp),
 * and settings that are a password as a whole (cachebust.sentinel_password),
 * whose value follows their name in whatever PostgreSQL logs about them.
 */
#pragma once

#include <string>
#include <string_view>

namespace cachebust {

/*
 * The text with every Redis URL redacted and, after the name of a password
 * setting, its value left out: PostgreSQL's `parameter "..." changed to
 * "..."` keeps its shape with the value as "***"; any other text ends after
 * the name (a statement may give the value in any syntax).
 */
std::string redact_secrets(std::string_view text);

/* Whether text may hold a secret (cheap pre-check for the log hook). */
bool mentions_secret(std::string_view text) noexcept;

} // namespace cachebust
