/*
 * resp.cpp — command formatting, the framing check, and reply parsing
 * through hiredis.
 */
#include "core/redis/resp.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <stdexcept>

#include <hiredis/hiredis.h>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

[[noreturn]] void
protocol_error(const std::string &what)
{
	throw std::runtime_error("Redis protocol error: " + what);
}

/* Converts r; each element is freed once copied, so a large reply is not held twice over. */
Reply
convert(redisReply *r)
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
		out.elements.reserve(r->elements); /* within ReplyLimits::max_elements */
		for (size_t i = 0; i < r->elements; i++) {
			out.elements.push_back(convert(r->element[i]));
			freeReplyObject(r->element[i]);
			r->element[i] = nullptr; /* freeReplyObject skips it */
		}
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
ReplyFraming::reset()
{
	expect_ = Expect::Type;
	number_.clear();
	line_bytes_ = 0;
	after_cr_ = false;
	payload_left_ = 0;
	depth_ = 0;
	reply_bytes_ = 0;
	reply_elements_ = 0;
}

void
ReplyFraming::count(uint64_t bytes)
{
	reply_bytes_ += bytes;
	if (reply_bytes_ > limits_.max_reply_bytes)
		protocol_error("a reply of more than " + std::to_string(limits_.max_reply_bytes) + " bytes");
}

void
ReplyFraming::check(const char *data, size_t len)
{
	size_t i = 0;
	while (i < len) {
		switch (expect_) {
		case Expect::Type: {
			char c = data[i++];
			count(1);
			if (c != '+' && c != '-' && c != ':' && c != '$' && c != '*') {
				char shown[8];
				snprintf(shown, sizeof(shown), "0x%02x", static_cast<unsigned char>(c));
				protocol_error(std::string("unexpected reply type byte ") + shown);
			}
			type_ = c;
			number_.clear();
			line_bytes_ = 0;
			after_cr_ = false;
			expect_ = Expect::Line;
			break;
		}
		case Expect::Line: {
			/* A line ends at the first "\r\n", as hiredis reads it. */
			size_t start = i;
			bool ended = false;
			while (i < len && !ended) {
				char c = data[i++];
				ended = after_cr_ && c == '\n';
				after_cr_ = c == '\r';
			}
			size_t n = i - start;
			count(n);
			line_bytes_ += n;
			if (line_bytes_ > limits_.max_line_bytes + 2)
				protocol_error("a line of more than " + std::to_string(limits_.max_line_bytes) + " bytes");
			if (type_ != '+' && type_ != '-') {
				if (number_.size() + n > 32)
					protocol_error("a number line of more than 30 characters");
				number_.append(data + start, n);
			}
			if (ended)
				line_done();
			break;
		}
		case Expect::Payload: {
			uint64_t n = std::min<uint64_t>(payload_left_, len - i);
			i += n;
			payload_left_ -= n;
			count(n);
			if (payload_left_ == 0)
				expect_ = Expect::Cr;
			break;
		}
		case Expect::Cr:
		case Expect::Lf:
			if (data[i++] != (expect_ == Expect::Cr ? '\r' : '\n'))
				protocol_error("a bulk string longer than its length");
			count(1);
			if (expect_ == Expect::Cr)
				expect_ = Expect::Lf;
			else
				value_done();
			break;
		}
	}
}

/* The length in a '$' or '*' line: -1 (nil) or digits. */
long long
ReplyFraming::length(const char *what) const
{
	std::string_view digits(number_.data(), number_.size() - 2); /* without "\r\n" */
	if (digits == "-1")
		return -1;
	unsigned long long n = 0;
	auto result = std::from_chars(digits.data(), digits.data() + digits.size(), n);
	if (digits.empty() || result.ec != std::errc() || result.ptr != digits.data() + digits.size() ||
		n > static_cast<unsigned long long>(INT64_MAX))
		protocol_error(std::string("an invalid ") + what + " length");
	return static_cast<long long>(n);
}

void
ReplyFraming::line_done()
{
	switch (type_) {
	case ':': {
		std::string_view digits(number_.data(), number_.size() - 2);
		long long value = 0;
		auto result = std::from_chars(digits.data(), digits.data() + digits.size(), value);
		if (digits.empty() || result.ec != std::errc() || result.ptr != digits.data() + digits.size())
			protocol_error("an integer reply that is not a 64-bit integer");
		value_done();
		break;
	}
	case '$': {
		long long n = length("bulk string");
		if (n == -1) {
			value_done();
			break;
		}
		if (static_cast<uint64_t>(n) > limits_.max_bulk_bytes)
			protocol_error("a bulk string of " + std::to_string(n) + " bytes (at most " +
						   std::to_string(limits_.max_bulk_bytes) + " are accepted)");
		payload_left_ = static_cast<uint64_t>(n);
		expect_ = n == 0 ? Expect::Cr : Expect::Payload;
		break;
	}
	case '*': {
		long long n = length("array");
		if (n == -1) {
			value_done();
			break;
		}
		if (static_cast<uint64_t>(n) > limits_.max_elements - reply_elements_)
			protocol_error("a reply of more than " + std::to_string(limits_.max_elements) +
						   " elements (an array of " + std::to_string(n) + ")");
		reply_elements_ += static_cast<uint64_t>(n);
		if (n == 0) {
			value_done();
			break;
		}
		if (depth_ >= limits_.max_depth)
			protocol_error("arrays nested more than " + std::to_string(limits_.max_depth) + " deep");
		open_[depth_++] = static_cast<uint64_t>(n);
		expect_ = Expect::Type;
		break;
	}
	default: /* status and error lines */
		value_done();
		break;
	}
}

/* One value is complete: it is an element of the innermost open array, or a whole reply. */
void
ReplyFraming::value_done()
{
	expect_ = Expect::Type;
	while (depth_ > 0) {
		if (--open_[depth_ - 1] > 0)
			return;
		depth_--; /* that array is complete, and an element of the one around it */
	}
	reply_bytes_ = 0;
	reply_elements_ = 0;
}

void
ReplyReader::Deleter::operator()(redisReader *r) const
{
	redisReaderFree(r);
}

ReplyReader::ReplyReader(const ReplyLimits &limits) : reader_(redisReaderCreate()), framing_(limits)
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
	framing_.reset();
}

size_t
ReplyReader::buffered() const
{
	return reader_->len - reader_->pos;
}

void
ReplyReader::feed(const char *data, size_t len)
{
	framing_.check(data, len); /* before hiredis buffers or allocates anything for them */
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
