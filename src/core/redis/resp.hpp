/*
 * resp.hpp — Redis commands and replies as values, and their wire form.
 *
 * Commands are argv vectors, encoded as RESP arrays of bulk strings
 * (binary-safe; user strings are never formatted into a command line).
 * hiredis parses the replies. Everything else — sockets, TLS, timeouts,
 * pipelining — is ours, so the worker can wait on all of it with its latch.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct redisReader;

namespace cachebust {

using Command = std::vector<std::string>;

struct Reply {
	/* Failed is not a Redis reply: the command never got one (connection lost, timeout). */
	enum class Type { Status, Error, Integer, String, Nil, Array, Failed };

	Type type = Type::Nil;
	long long integer = 0;
	std::string str; /* Status, Error, String, Failed */
	std::vector<Reply> elements;

	bool is_error() const { return type == Type::Error || type == Type::Failed; }

	static Reply failed(std::string why)
	{
		Reply r;
		r.type = Type::Failed;
		r.str = std::move(why);
		return r;
	}
};

/* Appends the protocol form of cmd to out. */
void append_command(std::string &out, const Command &cmd);
/* The same from views of the arguments (no copy of large keys before formatting). */
void append_command(std::string &out, const std::vector<std::string_view> &argv);

/* What one reply may hold (stub: not enforced yet). */
struct ReplyLimits {
	uint64_t max_bulk_bytes = uint64_t(512) << 20;
	uint64_t max_reply_bytes = uint64_t(1) << 30;
	uint64_t max_elements = uint64_t(1) << 22;
	int max_depth = 8;
	size_t max_line_bytes = size_t(64) << 10;
};

/* Incremental reply parser over the bytes read from one connection. */
class ReplyReader
{
  public:
	explicit ReplyReader(const ReplyLimits &limits = ReplyLimits());
	~ReplyReader();
	ReplyReader(const ReplyReader &) = delete;
	ReplyReader &operator=(const ReplyReader &) = delete;

	void feed(const char *data, size_t len);
	/* Takes the next complete reply; false when more bytes are needed.
	 * Throws std::runtime_error on a protocol error. */
	bool next(Reply &out);
	void reset();
	/* Bytes received and not yet taken as replies. */
	size_t buffered() const;

  private:
	struct Deleter {
		void operator()(redisReader *r) const;
	};
	std::unique_ptr<redisReader, Deleter> reader_;
};

} // namespace cachebust
