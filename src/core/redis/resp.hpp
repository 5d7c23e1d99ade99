/*
 * resp.hpp — Redis commands and replies as values, and their wire form.
 *
 * Commands are argv vectors, encoded as RESP arrays of bulk strings
 * (binary-safe; user strings are never formatted into a command line).
 * hiredis parses the replies, after ReplyFraming has checked that they keep
 * within ReplyLimits. Everything else — sockets, TLS, timeouts,
 * pipelining — is ours, so the worker can wait on all of it with its latch.
 */
#pragma once

#include <algorithm>
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

/*
 * What one reply may hold. A server that sends more is broken or hostile:
 * its reply is a protocol error and the connection is closed. The limits
 * are checked on the bytes as they arrive, before hiredis sees them, so no
 * allocation is ever sized from a length the server wrote (hiredis 0.14
 * would buffer an endless bulk string whole, and calloc room for any array
 * size it is told).
 */
struct ReplyLimits {
	/* Redis's own proto-max-bulk-len default; our replies hold keys, never values. */
	uint64_t max_bulk_bytes = uint64_t(512) << 20;
	/* All the bytes of one reply, framing included. */
	uint64_t max_reply_bytes = uint64_t(1) << 30;
	/* All the elements of one reply's arrays, nested ones included. The
	 * largest legitimate reply is a tag set's members (the tag script
	 * returns SMEMBERS whole): room for tag sets of millions of keys. */
	uint64_t max_elements = uint64_t(1) << 22;
	/* Arrays within arrays; hiredis 0.14 supports no more (CLUSTER SLOTS needs 3). */
	int max_depth = 8;
	/* A status, error or number line. */
	size_t max_line_bytes = size_t(64) << 10;
};

/*
 * Checks the framing of incoming bytes against ReplyLimits: it follows the
 * headers (type bytes, lines, bulk lengths, array sizes and their nesting)
 * and skips over bulk contents, holding nothing but a few counters.
 */
class ReplyFraming
{
  public:
	explicit ReplyFraming(const ReplyLimits &limits) : limits_(limits)
	{
		limits_.max_depth = std::min(std::max(limits_.max_depth, 0), kMaxDepth);
	}

	/* Follows data; throws std::runtime_error on a protocol error. */
	void check(const char *data, size_t len);
	void reset();

  private:
	enum class Expect { Type, Line, Payload, Cr, Lf };
	static constexpr int kMaxDepth = 8; /* hiredis 0.14's own bound */

	void line_done();
	void value_done();
	long long length(const char *what) const;
	void count(uint64_t bytes);

	ReplyLimits limits_;
	Expect expect_ = Expect::Type;
	char type_ = 0;
	std::string number_;	   /* the line of a ':', '$' or '*' */
	size_t line_bytes_ = 0;	   /* bytes of the current line so far */
	bool after_cr_ = false;	   /* the line's last byte was '\r' */
	uint64_t payload_left_ = 0; /* bulk bytes still to skip */
	uint64_t open_[kMaxDepth]; /* elements still to come, per open array */
	int depth_ = 0;
	uint64_t reply_bytes_ = 0;
	uint64_t reply_elements_ = 0;
};

/* Incremental reply parser over the bytes read from one connection. */
class ReplyReader
{
  public:
	explicit ReplyReader(const ReplyLimits &limits = ReplyLimits());
	~ReplyReader();
	ReplyReader(const ReplyReader &) = delete;
	ReplyReader &operator=(const ReplyReader &) = delete;

	/* Throws std::runtime_error on a protocol error (also a reply over the
	 * limits): the bytes are then not taken, and the connection is done for. */
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
	ReplyFraming framing_;
};

} // namespace cachebust
