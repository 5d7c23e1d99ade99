/* Tests of the non-blocking Redis connection against real servers. */
#include "core/redis/connection.hpp"

#include <gtest/gtest.h>

#include "core/redis/errors.hpp"
#include "redis_server.hpp"

using namespace cachebust;
using cachebust::test::RedisServer;

TEST(Connection, AuthenticationAndDatabases)
{
	RedisServer server({"--requirepass", "s3cret"});
	RedisClient c;
	try {
		c.connect(RedisUrl::parse("redis://:wrong-pw@127.0.0.1:" + std::to_string(server.port())), {});
		FAIL() << "expected RedisError";
	} catch (const RedisError &e) {
		std::string msg = e.what();
		EXPECT_NE(msg.find("authentication failed"), std::string::npos) << msg;
		EXPECT_EQ(msg.find("wrong-pw"), std::string::npos) << msg;
	}
	EXPECT_FALSE(c.connected());

	c.connect(RedisUrl::parse("redis://:s3cret@127.0.0.1:" + std::to_string(server.port()) + "/3"), {});
	c.command({"SET", "in-db-3", "1"});
	c.command({"SELECT", "0"});
	EXPECT_EQ(c.command({"EXISTS", "in-db-3"}).integer, 0);

	c.command({"ACL", "SETUSER", "app", "on", ">app-pw", "~*", "&*", "+@all"});
	RedisClient user;
	user.connect(RedisUrl::parse("redis://app:app-pw@127.0.0.1:" + std::to_string(server.port())), {});
	EXPECT_EQ(user.command({"PING"}).str, "PONG");
}

TEST(Connection, UnixSocket)
{
	std::string path = "/tmp/cachebust-test-" + std::to_string(getpid()) + ".sock";
	RedisServer server({"--unixsocket", path});
	RedisClient c;
	c.connect(RedisUrl::parse("unix://" + path + "?db=1"), {});
	EXPECT_EQ(c.command({"PING"}).str, "PONG");
	EXPECT_GE(c.fd(), 0);
}

TEST(Connection, FailuresAreFastAndClear)
{
	int port = cachebust::test::free_port();
	RedisClient c;
	auto start = std::chrono::steady_clock::now();
	try {
		c.connect(RedisUrl::parse("redis://127.0.0.1:" + std::to_string(port)), {200, 200});
		FAIL() << "expected RedisError";
	} catch (const RedisError &e) {
		EXPECT_NE(std::string(e.what()).find("Connection refused"), std::string::npos) << e.what();
	}
	EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
	EXPECT_FALSE(c.connected());
	EXPECT_EQ(c.fd(), -1);
	EXPECT_THROW(c.command({"PING"}), RedisError);
}

TEST(Connection, CommandTimeoutCloses)
{
	RedisServer server;
	RedisClient admin, c;
	admin.connect(server.url(), {});
	c.connect(server.url(), {1000, 200});
	admin.command({"CLIENT", "PAUSE", "1000", "ALL"});
	try {
		c.command({"SET", "k", "v"});
		FAIL() << "expected a timeout";
	} catch (const RedisError &e) {
		EXPECT_NE(std::string(e.what()).find("command_timeout_ms"), std::string::npos) << e.what();
	}
	EXPECT_FALSE(c.connected());
}

/* Every callback runs once, in order, also when the connection dies under them. */
TEST(Connection, CallbacksRunOnceInOrderEvenOnFailure)
{
	RedisServer server;
	Connection conn(settings_for(server.url(), {}));
	conn.open();
	std::vector<std::string> seen;
	for (int i = 0; i < 3; i++)
		conn.send({"ECHO", std::to_string(i)}, [&](Reply &r) { seen.push_back(r.str); });
	conn.flush();
	ASSERT_TRUE(drive(conn, [&] { return seen.size() == 3; }));
	EXPECT_EQ(seen, (std::vector<std::string>{"0", "1", "2"}));

	seen.clear();
	conn.send({"ECHO", "lost"}, [&](Reply &r) {
		EXPECT_EQ(r.type, Reply::Type::Failed);
		seen.push_back(r.str);
	});
	conn.close("closed by the test");
	EXPECT_EQ(seen, (std::vector<std::string>{"closed by the test"}));
	EXPECT_EQ(conn.error(), "closed by the test");
}

TEST(Connection, LargePipelinesAndReplies)
{
	RedisServer server;
	RedisClient c;
	c.connect(server.url(), {});
	std::vector<Command> commands;
	std::string big(200000, 'x');
	for (int i = 0; i < 200; i++)
		commands.push_back({"SET", "big:" + std::to_string(i), big});
	std::vector<Reply> replies = c.pipeline(commands);
	ASSERT_EQ(replies.size(), 200u);
	EXPECT_EQ(replies[199].str, "OK");
	EXPECT_EQ(c.command({"GET", "big:7"}).str.size(), big.size());
}

TEST(ReplyClass, TransientPermanentAndRedirects)
{
	auto err = [](const std::string &s) {
		Reply r;
		r.type = Reply::Type::Error;
		r.str = s;
		return classify_reply(r);
	};
	for (const char *t : {"LOADING x", "BUSY x", "OOM x", "TRYAGAIN x", "CLUSTERDOWN x", "MISCONF x"})
		EXPECT_EQ(err(t).kind, ReplyClass::Transient) << t;
	for (const char *t : {"READONLY x", "MASTERDOWN x", "NOAUTH x"}) {
		EXPECT_EQ(err(t).kind, ReplyClass::Transient) << t;
		EXPECT_TRUE(err(t).reconnect) << t;
	}
	for (const char *t : {"WRONGTYPE x", "ERR value is not an integer or out of range", "NOPERM x",
						  "ERR syntax error", "SOMETHINGNEW x"})
		EXPECT_EQ(err(t).kind, ReplyClass::Permanent) << t;
	EXPECT_EQ(err("NOSCRIPT x").kind, ReplyClass::NoScript);
	Classified moved = err("MOVED 3999 127.0.0.1:6381");
	EXPECT_EQ(moved.kind, ReplyClass::Moved);
	EXPECT_EQ(moved.slot, 3999);
	EXPECT_EQ(moved.target.host, "127.0.0.1");
	EXPECT_EQ(moved.target.port, 6381);
	EXPECT_FALSE(moved.same_host);
	EXPECT_EQ(err("ASK 1 [::1]:7000").target.host, "::1");
	/* Issue 21, item 4: Redis 7 with cluster-preferred-endpoint-type unknown-endpoint. */
	Classified here = err("MOVED 3999 :6380");
	EXPECT_EQ(here.kind, ReplyClass::Moved);
	EXPECT_EQ(here.slot, 3999);
	EXPECT_EQ(here.target.port, 6380);
	EXPECT_TRUE(here.same_host);
	EXPECT_EQ(err("ASK 12 :7001").kind, ReplyClass::Ask);
	EXPECT_TRUE(err("ASK 12 :7001").same_host);
	EXPECT_EQ(err("MOVED 3999 127.0.0.1:").kind, ReplyClass::Transient) << "no port: malformed";
	EXPECT_EQ(err("MOVED 3999").kind, ReplyClass::Transient);
	EXPECT_EQ(classify_reply(Reply::failed("gone")).kind, ReplyClass::Transient);
	EXPECT_EQ(classify_reply(Reply()).kind, ReplyClass::Ok);
}

TEST(Resp, CommandsAreBinarySafeBulkStrings)
{
	std::string out;
	append_command(out, Command{"SET", std::string("a\0b", 3), "\r\n"});
	EXPECT_EQ(out, std::string("*3\r\n$3\r\nSET\r\n$3\r\na\0b\r\n$2\r\n\r\n\r\n", 30));
	std::string views;
	append_command(views, std::vector<std::string_view>{"SET", std::string_view("a\0b", 3), "\r\n"});
	EXPECT_EQ(views, out);
	std::string empty;
	append_command(empty, Command{"ECHO", ""});
	EXPECT_EQ(empty, "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n");
}
