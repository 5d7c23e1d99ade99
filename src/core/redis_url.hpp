/*
 * redis_url.hpp — cachebust.redis_url: where the worker connects.
 *
 *   redis://[user[:password]@]host[:port][/db]
 *   redis://:password@host[:port][/db]
 *   unix:///path/to/redis.sock[?db=N]
 *
 * User and password may be %-encoded. Error messages and redacted() never
 * contain the password.
 */
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace cachebust {

class RedisUrlError : public std::invalid_argument
{
  public:
	using std::invalid_argument::invalid_argument;
};

struct RedisUrl {
	enum class Transport { Tcp, Unix };

	Transport transport = Transport::Tcp;
	std::string host = "127.0.0.1";
	int port = 6379;
	std::string socket_path;
	int db = 0;
	std::string user;
	std::string password;

	static RedisUrl parse(std::string_view url);

	/* The URL with the password replaced by ***, for logs and errors. */
	std::string redacted() const;
};

/*
 * Replaces the password of every redis://user:password@ URL in free text
 * (a log line, a statement) with ***. Text without one is returned as is.
 */
std::string redact_redis_passwords(std::string_view text);

/* Whether text holds a redis:// URL with a password. */
bool has_redis_password(std::string_view text);

} // namespace cachebust
