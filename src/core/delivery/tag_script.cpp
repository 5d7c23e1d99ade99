/*
 * tag_script.cpp — the tag script, its SHA1, and the names of its receipts.
 */
#include "core/delivery/tag_script.hpp"

#include <openssl/sha.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "core/key_slot.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

/* allowed(): the receipt's commands go through pcall, so an ACL written
 * for the older script (TYPE, SMEMBERS, UNLINK) still pops plainly. */
const char *const kTagPopScript = R"lua(
local tag, receipt, owner = KEYS[1], KEYS[2], KEYS[3]
local mode, attempt, ttl, retry = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == 'retry'
if mode == 'release' then
  if redis.call('GET', owner) == attempt then redis.call('UNLINK', receipt, owner) end
  return 0
end
local function allowed(...)
  local r = redis.pcall(...)
  return type(r) ~= 'table' or r.err == nil
end
local result = {}
local owned = false
local kind = redis.call('TYPE', tag)['ok']
if kind == 'set' and mode == 'keep' then
  result = -3
elseif kind == 'set' then
  if receipt and allowed('SET', owner, attempt, 'PX', ttl) and allowed('SUNIONSTORE', receipt, receipt, tag) then
    if allowed('PEXPIRE', receipt, ttl) then
      owned = true
    else
      redis.call('UNLINK', receipt, owner)
    end
  end
  if not owned then
    local members = redis.call('SMEMBERS', tag)
    redis.call('UNLINK', tag)
    return {0, members}
  end
  redis.call('UNLINK', tag)
elseif kind ~= 'none' then
  if mode == 'sets' then return -2 end
  redis.call('UNLINK', tag)
  result = -1
end
if receipt and (owned or (retry and redis.call('TYPE', receipt)['ok'] == 'set')) then
  if not owned then
    redis.call('SET', owner, attempt, 'PX', ttl)
    redis.call('PEXPIRE', receipt, ttl)
  end
  return {1, redis.call('SMEMBERS', receipt)}
end
return result
)lua";

const std::string &
tag_pop_sha()
{
	static const std::string sha = [] {
		unsigned char digest[SHA_DIGEST_LENGTH];
		std::string script(kTagPopScript);
		SHA1(reinterpret_cast<const unsigned char *>(script.data()), script.size(), digest);
		static const char hex[] = "0123456789abcdef";
		std::string out;
		for (unsigned char c : digest) {
			out.push_back(hex[c >> 4]);
			out.push_back(hex[c & 15]);
		}
		return out;
	}();
	return sha;
}

bool
tag_receipt_keys(std::string_view tag, size_t prefix_len, TagReceipt &out)
{
	if (prefix_len > tag.size())
		return false;
	std::string_view prefix = tag.substr(0, prefix_len);
	/* The hashed part first, in braces of our own: the same slot as the tag,
	 * unless the prefix opens a brace first or the tag has a "}" but no hash tag. */
	std::string rest = "{" + std::string(hash_tag_part(tag)) + "}:" + std::string(tag.substr(prefix_len));
	out.set = std::string(prefix) + "cachebust:tag-receipt:" + rest;
	out.owner = std::string(prefix) + "cachebust:tag-receipt-owner:" + rest;
	uint16_t slot = key_slot(tag);
	return key_slot(out.set) == slot && key_slot(out.owner) == slot;
}

std::string
new_tag_attempt_id()
{
	static const uint64_t base = [] {
		uint64_t r = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
		try {
			std::random_device device;
			r ^= (static_cast<uint64_t>(device()) << 32) ^ device();
		} catch (const std::exception &) {
			/* No entropy source: the clock alone still differs between workers. */
		}
		return r;
	}();
	static uint64_t count = 0;
	char buf[48];
	snprintf(buf, sizeof(buf), "%016llx-%llu", static_cast<unsigned long long>(base),
			 static_cast<unsigned long long>(++count));
	return buf;
}

} // namespace cachebust
