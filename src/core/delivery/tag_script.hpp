/*
 * tag_script.hpp — the one Lua script cachebust runs: read and remove a
 * tag set atomically, keeping what it took in a receipt until the members
 * are gone.
 *
 * Why a receipt: if the reply is lost (command timeout, a reset after the
 * command was sent), the set is already gone, and a retry that only read
 * the set would find nothing and leave the members cached. So the script
 * moves the set's members into the tag's receipt (a set beside the tag,
 * with a TTL) and returns everything the receipt holds; a retry gets them
 * again. Once the members are applied, the worker releases the receipt.
 *
 * KEYS[1] is the tag set; KEYS[2] and KEYS[3], when given, are its receipt
 * and the receipt's owner (tag_receipt_keys(): under the tag's key_prefix
 * and in the tag's cluster slot, so the script stays valid in Redis
 * Cluster). The worker deletes the returned members itself, each on its
 * own node, and only those under the tag's key_prefix (DESIGN.md: every
 * key a role can reach starts with its key_prefix).
 *
 * ARGV[1] chooses what happens:
 *   pop      remove the set (into the receipt), or remove a key of another
 *            type (a cache entry stored under a tag name)
 *   sets     the same for sets, leave other keys (a tag_pattern only removes tag sets)
 *   keep     leave sets, remove anything else (a nested tag beyond tag_depth)
 *   release  remove the receipt, unless a later attempt owns it now
 * ARGV[2] names this attempt (the receipt's owner), ARGV[3] is the receipt's
 * TTL in ms, ARGV[4] is "retry" when an earlier attempt's reply was lost.
 *
 * Replies:
 *   {1, members}  the members, also held in the receipt until released
 *   {0, members}  the members, popped without a receipt (none asked for,
 *                 or the ACL refuses the receipt's commands)
 *   {}            nothing: no set, no receipt
 *   -1            a key of another type was removed
 *   -2, -3        left alone: not a set, a set
 * An attempt that pops the set returns everything the receipt holds, and
 * so does a retry in every mode (what it holds was taken by an attempt
 * whose reply may have been lost); either becomes the receipt's owner, and
 * a receipt is released only by the last attempt that returned all of it.
 * A first attempt that finds no set leaves an existing receipt alone: that
 * is how a cycle of nested tags ends (the second visit finds no set).
 */
#pragma once

#include <string>
#include <string_view>

namespace cachebust {

extern const char *const kTagPopScript;

/* SHA1 of kTagPopScript, as EVALSHA wants it. */
const std::string &tag_pop_sha();

/* The receipt of a tag set and the key naming the attempt that owns it. */
struct TagReceipt {
	std::string set;
	std::string owner;
};

/*
 * The receipt keys of tag set `tag`, whose first prefix_len bytes are its
 * key_prefix: "<prefix>cachebust:tag-receipt:{<hashed part of tag>}:<rest of tag>"
 * (and "...tag-receipt-owner:..."). False when these names would not share
 * the tag's cluster slot (a key_prefix with an unbalanced "{", a tag with a
 * "}" but no hash tag): such a tag has no receipt.
 */
bool tag_receipt_keys(std::string_view tag, size_t prefix_len, TagReceipt &out);

/* A name for one attempt of the tag script, unique in this process and,
 * with a random part, among workers sharing a Redis. */
std::string new_tag_attempt_id();

} // namespace cachebust
