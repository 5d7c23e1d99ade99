/*
 * tag_script.cpp — the tag script and its SHA1.
 */
#include "core/delivery/tag_script.hpp"

#include <openssl/sha.h>

#include "core/cpp_only.hpp"

namespace cachebust {

const char *const kTagPopScript = R"lua(
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'set' then
  if ARGV[1] == 'keep' then return -3 end
  local members = redis.call('SMEMBERS', KEYS[1])
  redis.call('UNLINK', KEYS[1])
  return members
end
if kind == 'none' then return {} end
if ARGV[1] == 'sets' then return -2 end
redis.call('UNLINK', KEYS[1])
return -1
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

} // namespace cachebust
