/*
 * resp.cpp — command formatting and reply parsing through hiredis.
 */
#include "core/redis/resp.hpp"

#include <charconv>
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

} // namespace

/*
 * RESP from an argv: "*<argc>\r\n" then "$<len>\r\n<bytes>\r\n" per
 * argument, binary-safe; never a command line built from user strings.
 * (hiredis's redisFormatCommandArgv does the same, but formats every length
 * with sprintf into a buffer of its own that we would copy again: a third
 * of the worker's time on a large batch.)
 */
template <typename Args>
static void
format_into(std::string &out, const Args &args)
{
	char number[24];
	size_t total = 16;
	for (const auto &arg : args)
		total += arg.size() + 16;
	out.reserve(out.size() + total);

	auto header = [&](char kind, size_t n) {
		auto result = std::to_chars(number, number + sizeof(number), n);
		out.push_back(kind);
		out.append(number, static_cast<size_t>(result.ptr - number));
		out.append("\r\n", 2);
	};
	header('*', args.size());
	for (const auto &arg : args) {
		header('$', arg.size());
		out.append(arg.data(), arg.size());
		out.append("\r\n", 2);
	}
}

void
append_command(std::string &out, const Command &cmd)
{
	format_into(out, cmd);
}

void
append_command(std::string &out, const std::vector<std::string_view> &argv)
{
	format_into(out, argv);
}

void
ReplyReader::Deleter::operator()(redisReader *r) const
{
	redisReaderFree(r);
}

ReplyReader::ReplyReader(const ReplyLimits &) : reader_(redisReaderCreate())
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

size_t
ReplyReader::buffered() const
{
	return reader_->len - reader_->pos;
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
