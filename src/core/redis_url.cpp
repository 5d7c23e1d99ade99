/*
 * redis_url.cpp — parsing and redacting Redis URLs.
 */
#include "core/redis_url.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

constexpr int kMaxDb = 1000000;

int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

std::string
percent_decode(std::string_view s, const char *part)
{
	std::string out;
	for (size_t i = 0; i < s.size(); i++) {
		if (s[i] != '%') {
			out.push_back(s[i]);
			continue;
		}
		int hi = i + 2 < s.size() ? hex_value(s[i + 1]) : -1;
		int lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
		if (hi < 0 || lo < 0)
			throw RedisUrlError(std::string("invalid %-escape in the ") + part);
		out.push_back(static_cast<char>(hi * 16 + lo));
		i += 2;
	}
	return out;
}

/* A decimal number in [min, max]; `part` names it in the error. */
int
parse_number(std::string_view s, int min, int max, const char *part)
{
	if (s.empty() || s.size() > 9)
		throw RedisUrlError(std::string("invalid ") + part + " \"" + std::string(s) + "\"");
	int value = 0;
	for (char c : s) {
		if (c < '0' || c > '9')
			throw RedisUrlError(std::string("invalid ") + part + " \"" + std::string(s) + "\"");
		value = value * 10 + (c - '0');
	}
	if (value < min || value > max)
		throw RedisUrlError(std::string(part) + " " + std::to_string(value) + " is out of range (" +
							std::to_string(min) + ".." + std::to_string(max) + ")");
	return value;
}

RedisUrl
parse_unix(std::string_view rest)
{
	RedisUrl url;
	url.transport = RedisUrl::Transport::Unix;
	size_t q = rest.find('?');
	std::string_view path = rest.substr(0, q);
	if (path.empty() || path[0] != '/')
		throw RedisUrlError("a unix socket URL needs an absolute path: unix:///path/to/redis.sock");
	url.socket_path = std::string(path);
	if (q != std::string_view::npos) {
		std::string_view query = rest.substr(q + 1);
		if (query.substr(0, 3) != "db=")
			throw RedisUrlError("the only unix socket URL parameter is db=N");
		url.db = parse_number(query.substr(3), 0, kMaxDb, "database number");
	}
	return url;
}

} // namespace

RedisUrl
RedisUrl::parse(std::string_view text)
{
	if (text.substr(0, 7) == "unix://")
		return parse_unix(text.substr(7));
	if (text.substr(0, 8) != "redis://")
		throw RedisUrlError("the URL must start with redis:// or unix://");

	RedisUrl url;
	std::string_view rest = text.substr(8);

	/* userinfo ends at the last '@' before the path, so passwords may hold '@' only %-encoded. */
	size_t slash = rest.find('/');
	std::string_view authority = rest.substr(0, slash);
	size_t at = authority.rfind('@');
	if (at != std::string_view::npos) {
		std::string_view userinfo = authority.substr(0, at);
		size_t colon = userinfo.find(':');
		url.user = percent_decode(userinfo.substr(0, colon), "user name");
		if (colon != std::string_view::npos)
			url.password = percent_decode(userinfo.substr(colon + 1), "password");
		authority = authority.substr(at + 1);
	}

	std::string_view hostport = authority;
	std::string_view port_text;
	if (!hostport.empty() && hostport[0] == '[') {
		size_t close = hostport.find(']');
		if (close == std::string_view::npos)
			throw RedisUrlError("unterminated [ in IPv6 host");
		url.host = std::string(hostport.substr(1, close - 1));
		std::string_view after = hostport.substr(close + 1);
		if (!after.empty()) {
			if (after[0] != ':')
				throw RedisUrlError("unexpected text after the IPv6 host");
			port_text = after.substr(1);
			if (port_text.empty())
				throw RedisUrlError("empty port");
		}
	} else {
		size_t colon = hostport.find(':');
		url.host = std::string(hostport.substr(0, colon));
		if (colon != std::string_view::npos) {
			port_text = hostport.substr(colon + 1);
			if (port_text.empty())
				throw RedisUrlError("empty port");
		}
	}
	if (url.host.empty())
		throw RedisUrlError("the URL has no host");
	if (!port_text.empty())
		url.port = parse_number(port_text, 1, 65535, "port");

	if (slash != std::string_view::npos) {
		std::string_view db = rest.substr(slash + 1);
		if (!db.empty())
			url.db = parse_number(db, 0, kMaxDb, "database number");
	}
	return url;
}

namespace {

/* Where the password of the URL starting at text[start] lies, if it has one. */
bool
find_password(std::string_view text, size_t start, size_t &pw_begin, size_t &pw_end)
{
	size_t authority = start + 8; /* after redis:// */
	size_t end = authority;
	while (end < text.size() && text[end] != '/' && text[end] != ' ' && text[end] != '\'' &&
		   text[end] != '"' && text[end] != '\n' && text[end] != '\t')
		end++;
	size_t at = text.rfind('@', end == 0 ? 0 : end - 1);
	if (at == std::string_view::npos || at < authority || at >= end)
		return false;
	size_t colon = text.find(':', authority);
	if (colon == std::string_view::npos || colon > at)
		return false;
	pw_begin = colon + 1;
	pw_end = at;
	return true;
}

} // namespace

bool
has_redis_password(std::string_view text)
{
	for (size_t pos = text.find("redis://"); pos != std::string_view::npos;
		 pos = text.find("redis://", pos + 8)) {
		size_t b, e;
		if (find_password(text, pos, b, e))
			return true;
	}
	return false;
}

std::string
redact_redis_passwords(std::string_view text)
{
	std::string out;
	size_t copied = 0;
	for (size_t pos = text.find("redis://"); pos != std::string_view::npos;
		 pos = text.find("redis://", pos + 8)) {
		size_t b, e;
		if (!find_password(text, pos, b, e))
			continue;
		out.append(text.substr(copied, b - copied));
		out.append("***");
		copied = e;
		pos = e > pos + 8 ? e - 8 : pos;
	}
	out.append(text.substr(copied));
	return out;
}

std::string
RedisUrl::redacted() const
{
	std::string out;
	if (transport == Transport::Unix) {
		out = "unix://" + socket_path;
		if (db != 0)
			out += "?db=" + std::to_string(db);
		return out;
	}
	out = "redis://";
	if (!user.empty() || !password.empty()) {
		out += user;
		if (!password.empty())
			out += ":***";
		out += "@";
	}
	bool ipv6 = host.find(':') != std::string::npos;
	out += ipv6 ? "[" + host + "]" : host;
	out += ":" + std::to_string(port) + "/" + std::to_string(db);
	return out;
}

} // namespace cachebust
