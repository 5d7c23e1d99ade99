/*
 * resp.cpp — command formatting and reply parsing through hiredis.
 */
#include "core/redis/resp.hpp"

#include <stdexcept>

#include <hiredis/hiredis.h>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

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

struct FormattedCommand {
	char *text = nullptr;
	~FormattedCommand() { redisFreeCommand(text); }
};

} // namespace

void
append_command(std::string &out, const Command &cmd)
{
	std::vector<const char *> argv;
	std::vector<size_t> argvlen;
	argv.reserve(cmd.size());
	argvlen.reserve(cmd.size());
	for (const std::string &arg : cmd) {
		argv.push_back(arg.data());
		argvlen.push_back(arg.size());
	}
	FormattedCommand formatted;
	int len = redisFormatCommandArgv(&formatted.text, static_cast<int>(argv.size()), argv.data(),
									 argvlen.data());
	if (len < 0 || formatted.text == nullptr)
		throw std::bad_alloc();
	out.append(formatted.text, static_cast<size_t>(len));
}

void
ReplyReader::Deleter::operator()(redisReader *r) const
{
	redisReaderFree(r);
}

ReplyReader::ReplyReader() : reader_(redisReaderCreate())
{
	if (!reader_)
		throw std::bad_alloc();
}

ReplyReader::~ReplyReader() = default;

void
ReplyReader::reset()
{
	reader_.reset(redisReaderCreate());
	if (!reader_)
		throw std::bad_alloc();
}

void
ReplyReader::feed(const char *data, size_t len)
{
	if (redisReaderFeed(reader_.get(), data, len) != REDIS_OK)
		throw std::runtime_error("cannot buffer a Redis reply");
}

bool
ReplyReader::next(Reply &out)
{
	void *raw = nullptr;
	if (redisReaderGetReply(reader_.get(), &raw) != REDIS_OK)
		throw std::runtime_error(std::string("Redis protocol error: ") + reader_->errstr);
	if (raw == nullptr)
		return false;
	redisReply *reply = static_cast<redisReply *>(raw);
	try {
		out = convert(reply);
	} catch (...) {
		freeReplyObject(reply);
		throw;
	}
	freeReplyObject(reply);
	return true;
}

} // namespace cachebust
