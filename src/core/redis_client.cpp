/*
 * redis_client.cpp — hiredis behind RAII handles.
 */
#include "core/redis_client.hpp"

#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

struct ReplyDeleter {
	void operator()(redisReply *r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

timeval
to_timeval(int ms)
{
	timeval tv;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

Reply
convert(const redisReply *r)
{
	Reply out;
	switch (r->type) {
	case REDIS_REPLY_STATUS:
		out.type = Reply::Type::Status;
		out.str.assign(r->str, r->len);
		break;
	case REDIS_REPLY_ERROR:
		out.type = Reply::Type::Error;
		out.str.assign(r->str, r->len);
		break;
	case REDIS_REPLY_INTEGER:
		out.type = Reply::Type::Integer;
		out.integer = r->integer;
		break;
	case REDIS_REPLY_STRING:
		out.type = Reply::Type::String;
		out.str.assign(r->str, r->len);
		break;
	case REDIS_REPLY_ARRAY:
		out.type = Reply::Type::Array;
		out.elements.reserve(r->elements);
		for (size_t i = 0; i < r->elements; i++)
			out.elements.push_back(convert(r->element[i]));
		break;
	default:
		out.type = Reply::Type::Nil;
		break;
	}
	return out;
}

} // namespace

void
RedisClient::ContextDeleter::operator()(redisContext *c) const
{
	redisFree(c);
}

RedisClient::RedisClient() = default;
RedisClient::~RedisClient() = default;

void
RedisClient::disconnect()
{
	context_.reset();
}

int
RedisClient::fd() const
{
	return context_ ? context_->fd : -1;
}

void
RedisClient::fail(const std::string &what)
{
	std::string detail = context_ && context_->err ? context_->errstr : "connection lost";
	disconnect();
	throw RedisError(what + " " + endpoint_ + ": " + detail);
}

void
RedisClient::connect(const RedisUrl &url, const RedisTimeouts &timeouts)
{
	disconnect();
	endpoint_ = url.redacted();

	redisContext *c;
	if (url.transport == RedisUrl::Transport::Unix)
		c = redisConnectUnixWithTimeout(url.socket_path.c_str(), to_timeval(timeouts.connect_ms));
	else
		c = redisConnectWithTimeout(url.host.c_str(), url.port, to_timeval(timeouts.connect_ms));
	if (c == nullptr)
		throw RedisError("cannot connect to " + endpoint_ + ": out of memory");
	context_.reset(c);
	if (c->err)
		fail("cannot connect to");
	if (redisSetTimeout(c, to_timeval(timeouts.command_ms)) != REDIS_OK)
		fail("cannot set the command timeout for");

	std::vector<Command> setup;
	if (!url.password.empty()) {
		if (url.user.empty())
			setup.push_back({"AUTH", url.password});
		else
			setup.push_back({"AUTH", url.user, url.password});
	}
	if (url.db != 0)
		setup.push_back({"SELECT", std::to_string(url.db)});
	if (setup.empty())
		setup.push_back({"PING"});

	std::vector<Reply> replies = pipeline(setup);
	for (size_t i = 0; i < replies.size(); i++) {
		if (!replies[i].is_error())
			continue;
		/* Never echo the AUTH arguments; Redis's own error text is safe. */
		std::string what = setup[i][0] == "AUTH" ? "authentication failed at " : setup[i][0] + " failed at ";
		std::string message = what + endpoint_ + ": " + replies[i].str;
		disconnect();
		throw RedisError(message);
	}
}

std::vector<Reply>
RedisClient::pipeline(const std::vector<Command> &commands)
{
	if (!context_)
		throw RedisError("not connected to Redis");

	std::vector<const char *> argv;
	std::vector<size_t> argvlen;
	size_t unsent = 0;
	for (const Command &cmd : commands) {
		argv.clear();
		argvlen.clear();
		for (const std::string &arg : cmd) {
			argv.push_back(arg.data());
			argvlen.push_back(arg.size());
			unsent += arg.size();
		}
		if (redisAppendCommandArgv(context_.get(), static_cast<int>(argv.size()), argv.data(),
								   argvlen.data()) != REDIS_OK)
			fail("cannot send to");
		/*
		 * hiredis shifts its whole output buffer down after every partial
		 * write, so a pipeline of megabytes would be quadratic: write out
		 * as we go. Replies are a few bytes per command and wait in the
		 * socket until we read them below.
		 */
		if (unsent >= kFlushBytes) {
			flush_output();
			unsent = 0;
		}
	}

	std::vector<Reply> replies;
	replies.reserve(commands.size());
	for (size_t i = 0; i < commands.size(); i++) {
		void *raw = nullptr;
		if (redisGetReply(context_.get(), &raw) != REDIS_OK || raw == nullptr)
			fail("no reply from");
		ReplyPtr reply(static_cast<redisReply *>(raw));
		replies.push_back(convert(reply.get()));
	}
	return replies;
}

void
RedisClient::flush_output()
{
	int done = 0;
	while (!done)
		if (redisBufferWrite(context_.get(), &done) != REDIS_OK)
			fail("cannot send to");
}

Reply
RedisClient::command(const Command &cmd)
{
	return pipeline({cmd}).front();
}

} // namespace cachebust
