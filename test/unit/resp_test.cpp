/* Tests of the reply parser: framing, limits, and bytes arriving in any split. */
#include "core/redis/resp.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

using namespace cachebust;
using namespace std::string_literals;

namespace {

/* Feeds bytes; returns the replies taken, or the protocol error as the last "reply". */
std::vector<Reply>
parse(ReplyReader &reader, const std::string &bytes, std::string *error = nullptr)
{
	std::vector<Reply> out;
	try {
		reader.feed(bytes.data(), bytes.size());
		Reply r;
		while (reader.next(r))
			out.push_back(std::move(r));
	} catch (const std::runtime_error &e) {
		if (error == nullptr)
			throw;
		*error = e.what();
	}
	return out;
}

/* The protocol error bytes cause right away (empty: none). */
std::string
error_for(const std::string &bytes, const ReplyLimits &limits = ReplyLimits())
{
	ReplyReader reader(limits);
	std::string error;
	parse(reader, bytes, &error);
	return error;
}

std::string
nested(int depth, const std::string &leaf)
{
	std::string s;
	for (int i = 0; i < depth; i++)
		s += "*1\r\n";
	return s + leaf;
}

bool
same(const Reply &a, const Reply &b)
{
	if (a.type != b.type || a.integer != b.integer || a.str != b.str || a.elements.size() != b.elements.size())
		return false;
	for (size_t i = 0; i < a.elements.size(); i++)
		if (!same(a.elements[i], b.elements[i]))
			return false;
	return true;
}

} // namespace

TEST(ReplyReader, ParsesEveryReplyType)
{
	ReplyReader reader;
	std::vector<Reply> r = parse(reader, "+OK\r\n-ERR bad\r\n:-42\r\n$5\r\na\r\nb\0\r\n$0\r\n\r\n"
										 "$-1\r\n*-1\r\n*0\r\n*2\r\n*1\r\n:1\r\n$1\r\nx\r\n"s);
	ASSERT_EQ(r.size(), 9u);
	EXPECT_EQ(r[0].type, Reply::Type::Status);
	EXPECT_EQ(r[0].str, "OK");
	EXPECT_EQ(r[1].type, Reply::Type::Error);
	EXPECT_EQ(r[1].str, "ERR bad");
	EXPECT_EQ(r[2].integer, -42);
	EXPECT_EQ(r[3].str, std::string("a\r\nb\0", 5));
	EXPECT_EQ(r[4].type, Reply::Type::String);
	EXPECT_EQ(r[4].str, "");
	EXPECT_EQ(r[5].type, Reply::Type::Nil);
	EXPECT_EQ(r[6].type, Reply::Type::Nil);
	EXPECT_EQ(r[7].type, Reply::Type::Array);
	EXPECT_TRUE(r[7].elements.empty());
	ASSERT_EQ(r[8].elements.size(), 2u);
	EXPECT_EQ(r[8].elements[0].elements.at(0).integer, 1);
	EXPECT_EQ(r[8].elements[1].str, "x");
	EXPECT_EQ(reader.buffered(), 0u);
}

/* However the bytes are split, the same replies come out. */
TEST(ReplyReader, AnySplitOfTheBytesGivesTheSameReplies)
{
	std::string bytes = std::string("*3\r\n$4\r\n\r\n\r\n\r\n*2\r\n:7\r\n$-1\r\n+PONG\r\n-MOVED 1 :6380\r\n") +
						nested(8, ":8\r\n") + "$3\r\nabc\r\n";
	ReplyReader whole_reader;
	std::vector<Reply> whole = parse(whole_reader, bytes);
	ASSERT_EQ(whole.size(), 4u);
	for (size_t cut = 1; cut < bytes.size(); cut++) {
		ReplyReader reader;
		std::vector<Reply> got = parse(reader, bytes.substr(0, cut));
		std::vector<Reply> rest = parse(reader, bytes.substr(cut));
		got.insert(got.end(), rest.begin(), rest.end());
		ASSERT_EQ(got.size(), whole.size()) << "cut at " << cut;
		for (size_t i = 0; i < got.size(); i++)
			EXPECT_TRUE(same(got[i], whole[i])) << "cut at " << cut << ", reply " << i;
	}
	ReplyReader bytewise;
	std::vector<Reply> got;
	for (char c : bytes) {
		std::vector<Reply> more = parse(bytewise, std::string(1, c));
		got.insert(got.end(), more.begin(), more.end());
	}
	ASSERT_EQ(got.size(), whole.size());
	for (size_t i = 0; i < got.size(); i++)
		EXPECT_TRUE(same(got[i], whole[i]));
}

/* A bulk length beyond 512 MB is refused at its header: nothing is buffered for it. */
TEST(ReplyReader, RefusesAHugeBulkAtItsHeader)
{
	std::string error = error_for("$9999999999\r\n" + std::string(4096, 'x'));
	EXPECT_NE(error.find("protocol error"), std::string::npos) << error;
	EXPECT_NE(error.find("bulk"), std::string::npos) << error;
	EXPECT_NE(error_for("$536870913\r\n"), "");
	EXPECT_EQ(error_for("$536870912\r\n"), ""); /* Redis's own limit is allowed */
	EXPECT_NE(error_for("$99999999999999999999999\r\n"), "");
}

TEST(ReplyReader, RefusesAHugeArrayAtItsHeader)
{
	std::string error = error_for("*2147483647\r\n");
	EXPECT_NE(error.find("protocol error"), std::string::npos) << error;
	EXPECT_NE(error.find("elements"), std::string::npos) << error;
	EXPECT_NE(error_for("*4194305\r\n"), "");
	EXPECT_EQ(error_for("*4194304\r\n"), "");
	/* The limit is for all the elements of one reply, however they are nested. */
	EXPECT_NE(error_for("*2\r\n*4194303\r\n"), "");
	EXPECT_EQ(error_for("*2\r\n*4194302\r\n"), "");
	/* ...and starts again for the next reply. */
	ReplyLimits small;
	small.max_elements = 3;
	EXPECT_EQ(error_for("*3\r\n:1\r\n:2\r\n:3\r\n*3\r\n:1\r\n:2\r\n:3\r\n", small), "");
	EXPECT_NE(error_for("*2\r\n*2\r\n:1\r\n:2\r\n:3\r\n", small), "");
}

TEST(ReplyReader, BoundsNesting)
{
	EXPECT_EQ(error_for(nested(8, ":1\r\n")), "");
	std::string error = error_for(nested(9, ":1\r\n"));
	EXPECT_NE(error.find("nested"), std::string::npos) << error;
}

TEST(ReplyReader, BoundsTheBytesOfOneReply)
{
	ReplyLimits small;
	small.max_reply_bytes = 100;
	std::string element = "$10\r\n0123456789\r\n"; /* 17 bytes */
	std::string five = "*5\r\n";
	for (int i = 0; i < 5; i++)
		five += element;
	ReplyReader reader(small);
	std::string error;
	EXPECT_EQ(parse(reader, five + five, &error).size(), 2u) << error; /* 89 bytes each */
	std::string seven = "*7\r\n";
	for (int i = 0; i < 7; i++)
		seven += element;
	error = error_for(seven, small);
	EXPECT_NE(error.find("bytes"), std::string::npos) << error;
}

TEST(ReplyReader, BoundsLines)
{
	ReplyLimits small;
	small.max_line_bytes = 64;
	ReplyReader reader(small);
	std::string error;
	/* A status line that never ends is refused once it is too long, not buffered forever. */
	for (int i = 0; i < 100 && error.empty(); i++)
		parse(reader, i == 0 ? "+" + std::string(10, 'a') : std::string(10, 'a'), &error);
	EXPECT_NE(error.find("line"), std::string::npos) << error;
	EXPECT_LT(reader.buffered(), 1000u);
	EXPECT_EQ(error_for("-" + std::string(60, 'e') + "\r\n", small), "");
}

TEST(ReplyReader, RefusesMalformedFraming)
{
	for (const char *bad : {"$-2\r\n", "*-2\r\n", "$\r\n", "$12a\r\n", "*+1\r\n", ":\r\n", ":12x\r\n",
							":99999999999999999999\r\n", "_\r\n", "%1\r\n", "x\r\n", "$3\r\nabcde\r\n"}) {
		std::string error = error_for(bad);
		EXPECT_NE(error.find("protocol error"), std::string::npos) << bad << ": " << error;
	}
	EXPECT_EQ(error_for(":-9223372036854775808\r\n"), "");
}

/* A large legitimate reply (a tag set of 200k members) still parses. */
TEST(ReplyReader, LargeLegitimateReply)
{
	std::string bytes = "*200000\r\n";
	for (int i = 0; i < 200000; i++) {
		std::string m = "member:" + std::to_string(i);
		bytes += "$" + std::to_string(m.size()) + "\r\n" + m + "\r\n";
	}
	ReplyReader reader;
	std::vector<Reply> got;
	for (size_t at = 0; at < bytes.size(); at += 65536) {
		std::vector<Reply> more = parse(reader, bytes.substr(at, 65536));
		got.insert(got.end(), more.begin(), more.end());
	}
	ASSERT_EQ(got.size(), 1u);
	ASSERT_EQ(got[0].elements.size(), 200000u);
	EXPECT_EQ(got[0].elements[199999].str, "member:199999");
}
