/*
 * secret_text.cpp — redacting the secrets of cachebust's settings in free text.
 */
#include "core/secret_text.hpp"

#include <cctype>

#include "core/redis/url.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

/* Settings whose whole value is a password, by the part of their name a
 * statement cannot quote apart ("cachebust"."sentinel_password"). */
constexpr std::string_view kPasswordSettings[] = {"sentinel_password"};

constexpr std::string_view kChangedTo = " changed to ";

/* Where the first mention of a password setting ends, or npos. A URL's
 * `?sentinel_password=` query parameter is not one: the URL's own redaction
 * covers it. */
size_t
end_of_password_setting_name(std::string_view text) noexcept
{
	size_t first_end = std::string_view::npos;
	for (std::string_view name : kPasswordSettings) {
		for (size_t at = 0; at + name.size() <= text.size(); at++) {
			bool same = true;
			for (size_t i = 0; i < name.size() && same; i++)
				same = std::tolower(static_cast<unsigned char>(text[at + i])) == name[i];
			if (!same || (at > 0 && (text[at - 1] == '?' || text[at - 1] == '&')))
				continue;
			if (at + name.size() < first_end)
				first_end = at + name.size();
			break;
		}
	}
	return first_end;
}

} // namespace

std::string
redact_secrets(std::string_view text)
{
	size_t name_end = end_of_password_setting_name(text);
	if (name_end == std::string_view::npos)
		return redact_redis_urls(text);

	size_t keep = name_end;
	if (keep < text.size() && (text[keep] == '"' || text[keep] == '\''))
		keep++; /* the name's closing quote */
	std::string_view rest = text.substr(keep);
	std::string out = redact_redis_urls(text.substr(0, keep));
	if (rest.substr(0, kChangedTo.size()) == kChangedTo)
		out += std::string(kChangedTo) + "\"***\"";
	else if (!rest.empty())
		out += " [the rest is not shown: it may hold a password]";
	return out;
}

bool
mentions_secret(std::string_view text) noexcept
{
	return mentions_redis_url(text) || end_of_password_setting_name(text) != std::string_view::npos;
}

} // namespace cachebust
