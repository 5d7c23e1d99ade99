/*
 * tag_script.hpp — the one Lua script cachebust runs: read and remove a
 * tag set atomically.
 *
 * KEYS[1] is the tag set, and the only key the script touches, so it is
 * valid in Redis Cluster too. The worker deletes the returned members
 * itself, each on its own node, and only those under the tag's key_prefix
 * (DESIGN.md: every key a role can reach starts with its key_prefix).
 * ARGV[1] chooses what happens to a key that is not a set:
 *   pop   remove it as well (it is a cache entry stored under a tag name)
 *   sets  leave it (a tag_pattern only removes tag sets)
 *   keep  leave sets, remove anything else (a nested tag beyond tag_depth)
 * Replies: the members (an array; empty when the key does not exist), or
 * -1 (a key of another type was removed), -2 (left alone: not a set),
 * -3 (left alone: a set).
 */
#pragma once

#include <string>

namespace cachebust {

extern const char *const kTagPopScript;

/* SHA1 of kTagPopScript, as EVALSHA wants it. */
const std::string &tag_pop_sha();

} // namespace cachebust
