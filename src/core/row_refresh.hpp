/*
 * row_refresh.hpp — the Refresh target of a per-row refresh
 * (cachebust.watch(..., refresh => 'SELECT ... WHERE id = $1')).
 *
 * A materialized key's Refresh target carries just the Redis key: its
 * registration holds the query. A row's refresh needs more — which
 * registration (the trigger's `refresh=<id>` option) and the values of the
 * key template's columns that bind $1..$n — and it travels the same way
 * (ring, journal, window, refresh request), so it is all in the key:
 *
 *     <redis key> NUL <id in decimal> NUL <param 1> NUL ... NUL <param n>
 *
 * PostgreSQL text never holds a NUL byte, nor can key_prefix, so NUL
 * separates safely and a key with a NUL is a row refresh. Every place that
 * needs the Redis name of a Refresh target uses redis_key_of().
 */
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/target.hpp"

namespace cachebust {

/* The composite key of a row refresh. */
std::string row_refresh_key(std::string_view redis_key, uint32_t id, const std::vector<std::string_view> &params);

/* Splits a composite key; false when key is not one (a materialized key's,
 * or malformed). */
bool parse_row_refresh_key(std::string_view key, std::string &redis_key, uint32_t &id,
						   std::vector<std::string> &params);

/* The Redis key a target acts on: for a row refresh, the part before the first NUL. */
std::string_view redis_key_of(const Target &t);

/*
 * Turns a rendered Key target into the row refresh of registration id,
 * bound to values[slots[0]], values[slots[1]], ... (present: the key
 * rendered). Left a plain Key target (removed, not refreshed) when the
 * composite would be longer than max_len.
 */
void make_row_refresh(Target &t, uint32_t id, uint32_t database, const std::vector<size_t> &slots,
					  const std::vector<std::optional<std::string_view>> &values, size_t max_len);

} // namespace cachebust
