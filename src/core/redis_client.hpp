/*
 * redis_client.hpp — a synchronous hiredis connection owned by RAII handles.
 *
 * Commands are argv vectors (binary-safe; never a formatted command line).
 * pipeline() writes every command before reading any reply: one round trip
 * for a whole batch. hiredis marks a context unusable after an I/O error or
 * a timeout; the client then disconnects itself and the caller reconnects.
 * Connect and command timeouts always apply, because a blocking call does
 * not see the worker's latch.
 */
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/redis_url.hpp"

struct redisContext;

namespace cachebust {

/* A connection or protocol failure; the message never contains passwords. */
class RedisError : public std::runtime_error
{
  public:
	using std::runtime_error::runtime_error;
};

struct RedisTimeouts {
	int connect_ms = 1000;
	int command_ms = 2000;
};

using Command = std::vector<std::string>;

struct Reply {
	enum class Type { Status, Error, Integer, String, Nil, Array };

	Type type = Type::Nil;
	long long integer = 0;
	std::string str; /* Status, Error and String */
	std::vector<Reply> elements;

	bool is_error() const { return type == Type::Error; }
};

class RedisClient
{
  public:
	RedisClient();
	~RedisClient();
	RedisClient(const RedisClient &) = delete;
	RedisClient &operator=(const RedisClient &) = delete;

	/* Connects, authenticates and selects the database; throws RedisError
	 * and stays disconnected on any failure. */
	void connect(const RedisUrl &url, const RedisTimeouts &timeouts);
	bool connected() const { return context_ != nullptr; }
	void disconnect();
	int fd() const;

	/* Sends all commands, then reads all replies. Error replies are
	 * returned; an I/O failure disconnects and throws RedisError. */
	std::vector<Reply> pipeline(const std::vector<Command> &commands);
	Reply command(const Command &command);

  private:
	struct ContextDeleter {
		void operator()(redisContext *c) const;
	};
	std::unique_ptr<redisContext, ContextDeleter> context_;
	std::string endpoint_; /* redacted URL, for messages */

	/* Output beyond this is written before more commands are appended. */
	static constexpr size_t kFlushBytes = 256 * 1024;

	void flush_output();
	[[noreturn]] void fail(const std::string &what);
};

} // namespace cachebust
