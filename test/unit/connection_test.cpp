/* Tests of the non-blocking Redis connection against real servers. */
#include "core/redis/connection.hpp"

#include <sys/ioctl.h>

#include <gtest/gtest.h>

#include "core/redis/errors.hpp"
#include "fake_server.hpp"
#include "redis_server.hpp"

using namespace cachebust;
using cachebust::test::FakePeer;
using cachebust::test::FakeServer;
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

/* ---- a broken or hostile server -------------------------------------- */

namespace {

ConnectionSettings
fake_settings(const FakeServer &server, int command_timeout_ms)
{
	ConnectionSettings s;
	s.endpoint.host = "127.0.0.1";
	s.endpoint.port = server.port();
	s.connect_timeout_ms = 5000;
	s.command_timeout_ms = command_timeout_ms;
	return s;
}

/* What happened to one command sent to the fake server. */
struct Outcome {
	bool answered = false;
	Reply reply;
	size_t max_buffered = 0; /* the most bytes the reply reader held at any time */
};

/*
 * Connects, sends cmd and drives the connection like the worker does until
 * its callback runs. Bounded: gives up after `seconds`, or once the reader
 * holds more than `buffer_guard` bytes (so a broken parser fails the test
 * instead of eating the machine's memory).
 */
Outcome
ask(Connection &conn, const Command &cmd, double seconds = 20, size_t buffer_guard = 64 << 20)
{
	Outcome out;
	auto give_up = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
	conn.open();
	conn.send(cmd, [&](Reply &r) {
		out.answered = true;
		out.reply = std::move(r);
	});
	conn.flush();
	while (!out.answered && out.max_buffered <= buffer_guard && std::chrono::steady_clock::now() < give_up) {
		pollfd p{conn.fd(), 0, 0};
		if (conn.want_read())
			p.events |= POLLIN;
		if (conn.want_write())
			p.events |= POLLOUT;
		int64_t deadline = conn.deadline_us();
		int timeout = deadline == 0 ? 50 : static_cast<int>((deadline - monotonic_us()) / 1000) + 1;
		timeout = std::max(0, std::min(timeout, 50));
		if (poll(&p, 1, timeout) > 0)
			conn.on_io((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0, (p.revents & POLLOUT) != 0);
		out.max_buffered = std::max(out.max_buffered, conn.input_buffered());
		conn.on_timer();
		out.max_buffered = std::max(out.max_buffered, conn.input_buffered());
	}
	return out;
}

/* Streams `chunk` until the client goes away. */
void
stream_forever(FakePeer &peer, const std::string &chunk)
{
	while (peer.write(chunk)) {
	}
}

} // namespace

/* An endless bulk string: refused at its header, nothing buffered for it. */
TEST(HostileServer, EndlessBulkIsRefusedAtItsHeader)
{
	FakeServer server([](FakePeer &peer) {
		std::vector<std::string> argv;
		if (!peer.answer_ping() || !peer.read_command(argv) || !peer.write("$9999999999\r\n"))
			return;
		stream_forever(peer, std::string(64 * 1024, 'x'));
	});
	Connection conn(fake_settings(server, 60000));
	Outcome got = ask(conn, {"GET", "k"});
	ASSERT_TRUE(got.answered) << "the reader held " << got.max_buffered << " bytes";
	EXPECT_EQ(got.reply.type, Reply::Type::Failed);
	EXPECT_NE(got.reply.str.find("protocol error"), std::string::npos) << got.reply.str;
	EXPECT_EQ(got.reply.str.find("127.0.0.1"), std::string::npos) << got.reply.str;
	EXPECT_LT(got.max_buffered, 1u << 20);
	EXPECT_TRUE(conn.closed());
}

/* A bulk string of an allowed length that keeps streaming: the reply's total deadline ends it. */
TEST(HostileServer, StreamingBulkCannotOutliveTheCommandTimeout)
{
	FakeServer server([](FakePeer &peer) {
		std::vector<std::string> argv;
		if (!peer.answer_ping() || !peer.read_command(argv) || !peer.write("$536870912\r\n"))
			return;
		std::string chunk(16 * 1024, 'x');
		while (peer.write(chunk))
			std::this_thread::sleep_for(std::chrono::milliseconds(2));
	});
	Connection conn(fake_settings(server, 300));
	Outcome got = ask(conn, {"GET", "k"});
	ASSERT_TRUE(got.answered) << "the reader held " << got.max_buffered << " bytes";
	EXPECT_EQ(got.reply.type, Reply::Type::Failed);
	EXPECT_NE(got.reply.str.find("command_timeout_ms"), std::string::npos) << got.reply.str;
	EXPECT_TRUE(conn.closed());
	EXPECT_EQ(conn.input_buffered(), 0u); /* dropped with the connection */
}

/* An array header of 2^31 elements: an immediate protocol error, not a huge allocation. */
TEST(HostileServer, HugeArrayHeaderIsAProtocolError)
{
	FakeServer server([](FakePeer &peer) {
		std::vector<std::string> argv;
		if (peer.answer_ping() && peer.read_command(argv) && peer.write("*2147483647\r\n"))
			peer.wait_for_close();
	});
	/* No command timeout could end this in time: only the protocol error can. */
	Connection conn(fake_settings(server, 60000));
	Outcome got = ask(conn, {"SMEMBERS", "tag"});
	ASSERT_TRUE(got.answered);
	EXPECT_EQ(got.reply.type, Reply::Type::Failed);
	EXPECT_NE(got.reply.str.find("protocol error"), std::string::npos) << got.reply.str;
	EXPECT_TRUE(conn.closed());
}

/* A legitimate reply trickled a byte at a time: each byte is progress, but the reply is late. */
TEST(HostileServer, TrickledReplyTimesOut)
{
	FakeServer server([](FakePeer &peer) {
		std::vector<std::string> argv;
		if (!peer.answer_ping() || !peer.read_command(argv))
			return;
		/* 47 bytes, 10 ms apart: the reply cannot be complete before 460 ms. */
		std::string reply = "$40\r\n" + std::string(40, 't') + "\r\n";
		for (char c : reply) {
			if (!peer.write(std::string(1, c)))
				return;
			std::this_thread::sleep_for(std::chrono::milliseconds(10));
		}
		peer.wait_for_close();
	});
	Connection conn(fake_settings(server, 150));
	Outcome got = ask(conn, {"GET", "k"});
	ASSERT_TRUE(got.answered);
	EXPECT_EQ(got.reply.type, Reply::Type::Failed) << got.reply.str;
	EXPECT_NE(got.reply.str.find("command_timeout_ms"), std::string::npos) << got.reply.str;
}

/* Pipelined replies: each one's clock starts when the one before it completed. */
TEST(HostileServer, PipelinedRepliesEachGetTheFullTimeout)
{
	constexpr int kCommands = 30;
	FakeServer server([](FakePeer &peer) {
		std::vector<std::string> argv;
		if (!peer.answer_ping())
			return;
		for (int i = 0; i < kCommands; i++) {
			if (!peer.read_command(argv))
				return;
			std::this_thread::sleep_for(std::chrono::milliseconds(50));
			if (!peer.write(":" + std::to_string(i) + "\r\n"))
				return;
		}
		peer.wait_for_close();
	});
	/* 30 replies 50 ms apart take longer than one command timeout, each far less. */
	Connection conn(fake_settings(server, 1000));
	std::vector<long long> seen;
	conn.open();
	for (int i = 0; i < kCommands - 1; i++)
		conn.send({"INCR", "n"}, [&](Reply &r) { seen.push_back(r.type == Reply::Type::Integer ? r.integer : -1); });
	Outcome last = ask(conn, {"INCR", "n"});
	ASSERT_TRUE(last.answered);
	EXPECT_EQ(last.reply.type, Reply::Type::Integer) << last.reply.str;
	EXPECT_EQ(seen.size(), static_cast<size_t>(kCommands - 1));
	EXPECT_EQ(seen.back(), kCommands - 2);
}

/* A large legitimate reply (a tag set's 200k members) still parses. */
TEST(HostileServer, LargeLegitimateReplyStillParses)
{
	std::string members = "*200000\r\n";
	for (int i = 0; i < 200000; i++) {
		std::string m = "app:item:" + std::to_string(i);
		members += "$" + std::to_string(m.size()) + "\r\n" + m + "\r\n";
	}
	FakeServer server([&members](FakePeer &peer) {
		std::vector<std::string> argv;
		if (peer.answer_ping() && peer.read_command(argv) && peer.write(members))
			peer.wait_for_close();
	});
	Connection conn(fake_settings(server, 20000));
	Outcome got = ask(conn, {"SMEMBERS", "tag"});
	ASSERT_TRUE(got.answered);
	ASSERT_EQ(got.reply.type, Reply::Type::Array) << got.reply.str;
	ASSERT_EQ(got.reply.elements.size(), 200000u);
	EXPECT_EQ(got.reply.elements[123456].str, "app:item:123456");
	EXPECT_TRUE(conn.ready());
}

/*
 * However much the socket holds, one on_io reads at most kMaxReadPerWakeup
 * bytes, so the worker's loop sees its latch and signals between chunks;
 * a deadline already due makes the owner call again (on_timer) at once.
 */
TEST(HostileServer, OneWakeupReadsABoundedAmount)
{
	constexpr size_t kBulk = 400u << 20;
	FakeServer server([](FakePeer &peer) {
		std::vector<std::string> argv;
		int big = 4 << 20;
		setsockopt(peer.fd(), SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
		if (!peer.answer_ping() || !peer.read_command(argv) || !peer.write("$" + std::to_string(kBulk) + "\r\n"))
			return;
		stream_forever(peer, std::string(64 * 1024, 'x'));
	});
	Connection conn(fake_settings(server, 60000));
	conn.open();
	ASSERT_TRUE(drive(conn, [&] { return conn.ready(); }));
	int big = 4 << 20;
	setsockopt(conn.fd(), SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	bool answered = false;
	conn.send({"GET", "big"}, [&](Reply &) { answered = true; });
	conn.flush();

	/* Wait (bounded) until the socket holds more than two wakeups' worth. */
	int available = 0;
	for (int i = 0; i < 2000 && available <= static_cast<int>(2 * Connection::kMaxReadPerWakeup); i++) {
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
		ioctl(conn.fd(), FIONREAD, &available);
	}
	ASSERT_GT(available, static_cast<int>(2 * Connection::kMaxReadPerWakeup));

	conn.on_io(true, false);
	size_t first = conn.input_buffered();
	EXPECT_GT(first, 0u);
	EXPECT_LE(first, Connection::kMaxReadPerWakeup);
	/* (The deadline first, the clock after: the two arguments of one
	 * EXPECT_LE may be evaluated in either order.) */
	int64_t deadline = conn.deadline_us();
	EXPECT_NE(deadline, 0);
	EXPECT_LE(deadline, monotonic_us());
	conn.on_timer(); /* more input was left: read on without waiting for the socket */
	EXPECT_GT(conn.input_buffered(), first);
	EXPECT_LE(conn.input_buffered(), 2 * Connection::kMaxReadPerWakeup);
	EXPECT_FALSE(answered);
	conn.close("done");
}
