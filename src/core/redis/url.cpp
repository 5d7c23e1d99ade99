/*
 * url.cpp — parsing and redacting Redis URLs.
 */
#include "core/redis/url.hpp"

#include <cstring>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

constexpr int kMaxDb = 1000000;

struct Scheme {
	const char *name;
	RedisUrl::Topology topology;
	bool tls;
};

const Scheme kSchemes[] = {
	{"redis", RedisUrl::Topology::Single, false},
	{"rediss", RedisUrl::Topology::Single, true},
	{"redis-sentinel", RedisUrl::Topology::Sentinel, false},
	{"rediss-sentinel", RedisUrl::Topology::Sentinel, true},
	{"redis-cluster", RedisUrl::Topology::Cluster, false},
	{"rediss-cluster", RedisUrl::Topology::Cluster, true},
};

const char *
scheme_name(const RedisUrl &url)
{
	for (const Scheme &s : kSchemes)
		if (s.topology == url.topology && s.tls == url.tls)
			return s.name;
	return "redis";
}

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

/* A decimal number in [min, max]; `part` names it in the error, the text is never repeated. */
int
parse_number(std::string_view s, int min, int max, const char *part)
{
	if (s.empty())
		throw RedisUrlError(std::string("empty ") + part);
	if (s.size() > 9)
		throw RedisUrlError(std::string("invalid ") + part + " (too long)");
	int value = 0;
	for (char c : s) {
		if (c < '0' || c > '9')
			throw RedisUrlError(std::string("invalid ") + part + " (not a number)");
		value = value * 10 + (c - '0');
	}
	if (value < min || value > max)
		throw RedisUrlError(std::string(part) + " " + std::to_string(value) + " is out of range (" +
							std::to_string(min) + ".." + std::to_string(max) + ")");
	return value;
}

HostPort
parse_host_port(std::string_view text, int default_port)
{
	HostPort hp;
	hp.port = default_port;
	std::string_view port_text;
	bool has_port = false;
	if (!text.empty() && text[0] == '[') {
		size_t close = text.find(']');
		if (close == std::string_view::npos)
			throw RedisUrlError("unterminated [ in an IPv6 host");
		hp.host = std::string(text.substr(1, close - 1));
		std::string_view after = text.substr(close + 1);
		if (!after.empty()) {
			if (after[0] != ':')
				throw RedisUrlError("unexpected text after an IPv6 host");
			port_text = after.substr(1);
			has_port = true;
		}
	} else {
		size_t colon = text.find(':');
		hp.host = std::string(text.substr(0, colon));
		if (colon != std::string_view::npos) {
			port_text = text.substr(colon + 1);
			has_port = true;
		}
	}
	if (hp.host.empty())
		throw RedisUrlError("the URL has no host");
	if (has_port)
		hp.port = parse_number(port_text, 1, 65535, "port");
	return hp;
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

	size_t sep = text.find("://");
	const Scheme *scheme = nullptr;
	for (const Scheme &s : kSchemes)
		if (sep != std::string_view::npos && text.substr(0, sep) == s.name)
			scheme = &s;
	if (scheme == nullptr)
		throw RedisUrlError("unknown URL scheme (the schemes are redis, rediss, unix, redis-sentinel, "
							"rediss-sentinel, redis-cluster and rediss-cluster)");

	RedisUrl url;
	url.topology = scheme->topology;
	url.tls = scheme->tls;
	std::string_view rest = text.substr(sep + 3);

	/* The authority ends at the first '/' or '?'; the userinfo at its last '@'. */
	size_t end = rest.find_first_of("/?");
	std::string_view authority = rest.substr(0, end);
	std::string_view tail = end == std::string_view::npos ? std::string_view() : rest.substr(end);
	size_t at = authority.rfind('@');
	if (at != std::string_view::npos) {
		std::string_view userinfo = authority.substr(0, at);
		size_t colon = userinfo.find(':');
		url.user = percent_decode(userinfo.substr(0, colon), "user name");
		if (colon != std::string_view::npos)
			url.password = percent_decode(userinfo.substr(colon + 1), "password");
		authority = authority.substr(at + 1);
	}

	int default_port = url.topology == Topology::Sentinel ? 26379 : 6379;
	for (size_t start = 0;;) {
		size_t comma = authority.find(',', start);
		url.hosts.push_back(parse_host_port(authority.substr(start, comma - start), default_port));
		if (comma == std::string_view::npos)
			break;
		start = comma + 1;
	}
	if (url.topology == Topology::Single && url.hosts.size() > 1)
		throw RedisUrlError("several hosts need the redis-sentinel or redis-cluster scheme");

	std::string_view path = tail.substr(0, tail.find('?'));
	std::string_view query =
		tail.find('?') == std::string_view::npos ? std::string_view() : tail.substr(tail.find('?') + 1);
	if (!path.empty())
		path.remove_prefix(1); /* the '/' */
	if (url.topology == Topology::Sentinel) {
		size_t slash = path.find('/');
		url.service = percent_decode(path.substr(0, slash), "service name");
		if (url.service.empty())
			throw RedisUrlError("a redis-sentinel URL needs the name of the service after the hosts, e.g. /mymaster");
		if (slash != std::string_view::npos && slash + 1 < path.size())
			url.db = parse_number(path.substr(slash + 1), 0, kMaxDb, "database number");
	} else if (!path.empty())
		url.db = parse_number(path, 0, kMaxDb, "database number");
	if (url.topology == Topology::Cluster && url.db != 0)
		throw RedisUrlError("Redis Cluster has only database 0");

	if (!query.empty()) {
		if (url.topology != Topology::Sentinel || query.substr(0, 18) != "sentinel_password=")
			throw RedisUrlError(url.topology == Topology::Sentinel
									? "the only redis-sentinel URL parameter is sentinel_password="
									: "this URL takes no ?parameters");
		url.sentinel_password = percent_decode(query.substr(18), "sentinel password");
	}
	return url;
}

bool
RedisUrl::operator==(const RedisUrl &o) const
{
	return topology == o.topology && transport == o.transport && tls == o.tls && hosts == o.hosts &&
		   socket_path == o.socket_path && service == o.service && db == o.db && user == o.user &&
		   password == o.password && sentinel_password == o.sentinel_password;
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
	out = std::string(scheme_name(*this)) + "://";
	if (!user.empty() || !password.empty()) {
		out += user;
		if (!password.empty())
			out += ":***";
		out += "@";
	}
	for (size_t i = 0; i < hosts.size(); i++) {
		if (i > 0)
			out += ",";
		bool ipv6 = hosts[i].host.find(':') != std::string::npos;
		out += ipv6 ? "[" + hosts[i].host + "]" : hosts[i].host;
		out += ":" + std::to_string(hosts[i].port);
	}
	if (topology == Topology::Sentinel)
		out += "/" + service + "/" + std::to_string(db);
	else if (topology == Topology::Single)
		out += "/" + std::to_string(db);
	if (!sentinel_password.empty())
		out += "?sentinel_password=***";
	return out;
}

bool
mentions_redis_url(std::string_view text)
{
	return text.find("redis") != std::string_view::npos && text.find("://") != std::string_view::npos;
}

/*
 * Where does a URL end in free text? A password may hold quotes, spaces,
 * '@' and '/', so no character reliably ends it. When the URL follows a
 * quote (a SQL literal, PostgreSQL's "parameter ... changed to "...""), it
 * runs to the last such quote of the text (a SQL literal's doubled quotes
 * are undone before parsing); otherwise to the next white space. The span
 * is then parsed: a valid URL is replaced by its redacted form, anything
 * else by a placeholder. Too much redacted is harmless; too little is not.
 */
std::string
redact_redis_urls(std::string_view text)
{
	std::string out;
	size_t copied = 0;
	size_t pos = 0;
	while ((pos = text.find("://", pos)) != std::string_view::npos) {
		const Scheme *scheme = nullptr;
		size_t start = 0;
		for (const Scheme &s : kSchemes) {
			size_t len = strlen(s.name);
			if (pos >= len && text.substr(pos - len, len) == s.name &&
				(scheme == nullptr || len > strlen(scheme->name))) {
				scheme = &s;
				start = pos - len;
			}
		}
		if (scheme == nullptr || start < copied) {
			pos += 3;
			continue;
		}
		char quote = start > 0 ? text[start - 1] : '\0';
		size_t end;
		if (quote == '\'' || quote == '"') {
			end = text.rfind(quote);
			if (end == std::string_view::npos || end <= pos)
				end = text.size();
		} else {
			end = text.find_first_of(" \t\r\n", pos);
			if (end == std::string_view::npos)
				end = text.size();
		}
		std::string candidate(text.substr(start, end - start));
		if (quote == '\'') {
			std::string unquoted;
			for (size_t i = 0; i < candidate.size(); i++) {
				unquoted.push_back(candidate[i]);
				if (candidate[i] == '\'' && i + 1 < candidate.size() && candidate[i + 1] == '\'')
					i++;
			}
			candidate = unquoted;
		}
		std::string replacement;
		try {
			replacement = RedisUrl::parse(candidate).redacted();
		} catch (const RedisUrlError &) {
			replacement = std::string(scheme->name) + "://[malformed URL not shown]";
		}
		out.append(text.substr(copied, start - copied));
		out.append(replacement);
		copied = end;
		pos = end;
	}
	out.append(text.substr(copied));
	return out;
}

} // namespace cachebust
