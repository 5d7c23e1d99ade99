/*
 * url.hpp — cachebust.redis_url: which Redis deployment receives the
 * invalidations, and how to log in.
 *
 *   redis://[user[:password]@]host[:port][/db]            one server
 *   unix:///path/to/redis.sock[?db=N]                      one server, Unix socket
 *   redis-sentinel://[user[:password]@]h1[:p],h2[:p],.../service[/db][?sentinel_password=...]
 *   redis-cluster://[user[:password]@]h1[:p],h2[:p],...   seed nodes of a cluster
 *   rediss://, rediss-sentinel://, rediss-cluster://      the same over TLS
 *
 * User and passwords may be %-encoded, and must be where they contain
 * '/', '?', ',' or '%'. The default port is 6379 (26379 for sentinels).
 * Error messages and redacted() never contain passwords, and errors never
 * repeat any part of the URL's authority (a mistyped URL may have a
 * password where a port was expected).
 */
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cachebust {

class RedisUrlError : public std::invalid_argument
{
  public:
	using std::invalid_argument::invalid_argument;
};

struct HostPort {
	std::string host;
	int port = 6379;

	bool operator==(const HostPort &o) const { return host == o.host && port == o.port; }
};

struct RedisUrl {
	enum class Transport { Tcp, Unix };
	enum class Topology { Single, Sentinel, Cluster };

	Topology topology = Topology::Single;
	Transport transport = Transport::Tcp;
	bool tls = false;
	/* Single: the server; Sentinel: the sentinels; Cluster: seed nodes. */
	std::vector<HostPort> hosts;
	std::string socket_path; /* Unix */
	std::string service;	 /* Sentinel: the monitored master's name */
	int db = 0;
	std::string user;
	std::string password;
	std::string sentinel_password; /* the sentinels' own, if given in the URL */

	static RedisUrl parse(std::string_view url);

	/* The URL with passwords replaced by ***, for logs and errors. */
	std::string redacted() const;

	bool operator==(const RedisUrl &o) const;
};

/*
 * Replaces, in free text (a log line, a statement), every Redis URL by its
 * redacted form; a text that looks like a Redis URL but does not parse is
 * replaced as a whole. See url.cpp for how the URL's end is found.
 */
std::string redact_redis_urls(std::string_view text);

/* Whether text may contain a Redis URL (cheap pre-check for the log hook). */
bool mentions_redis_url(std::string_view text);

} // namespace cachebust
