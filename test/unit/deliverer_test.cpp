/* Tests of the Redis client and the deliverer against a real redis-server. */
#include "core/deliverer.hpp"

#include <gtest/gtest.h>

#include "redis_server.hpp"

using namespace cachebust;
using cachebust::test::RedisServer;

namespace {

Target
make(TargetKind kind, const std::string &key, bool glob = false, uint32_t tag_prefix_len = 0)
{
	Target t;
	t.kind = kind;
	t.key = key;
	t.glob = glob;
	t.tag_prefix_len = tag_prefix_len;
	return t;
}

class DelivererTest : public ::testing::Test
{
  protected:
	void SetUp() override
	{
		client.connect(server.url(), RedisTimeouts{});
		admin.connect(server.url(), RedisTimeouts{});
		admin.command({"FLUSHALL"});
	}

	void set(const std::string &key) { admin.command({"SET", key, "cached"}); }
	bool exists(const std::string &key) { return admin.command({"EXISTS", key}).integer == 1; }
	void deliver(const std::vector<Target> &targets)
	{
		deliverer.deliver(targets, options, counters);
	}

	static RedisServer server;
	RedisClient client;
	RedisClient admin;
	Deliverer deliverer{client};
	DeliveryOptions options;
	DeliveryCounters counters;
};

RedisServer DelivererTest::server;

} // namespace

TEST_F(DelivererTest, UnlinksExactlyTheGivenKeys)
{
	std::vector<std::string> odd = {"a b", "line\r\nFLUSHALL\r\n", "\"quoted\" 'single'",
									std::string("nul\0byte", 8), "*star", "tab\there"};
	std::vector<Target> targets;
	for (const std::string &k : odd) {
		set(k);
		targets.push_back(make(TargetKind::Key, k));
	}
	set("a");
	set("b");
	set("unrelated");
	deliver(targets);
	for (const std::string &k : odd)
		EXPECT_FALSE(exists(k)) << k;
	EXPECT_TRUE(exists("a"));
	EXPECT_TRUE(exists("b"));
	EXPECT_TRUE(exists("unrelated"));
	EXPECT_EQ(counters.commands, 1u) << "all keys in one UNLINK";
}

TEST_F(DelivererTest, ChunksLargeKeySets)
{
	options.unlink_chunk = 100;
	std::vector<Target> targets;
	for (int i = 0; i < 1050; i++) {
		set("k" + std::to_string(i));
		targets.push_back(make(TargetKind::Key, "k" + std::to_string(i)));
	}
	deliver(targets);
	EXPECT_EQ(admin.command({"DBSIZE"}).integer, 0);
	EXPECT_EQ(counters.commands, 11u);
	EXPECT_EQ(unlink_commands({"a", "b", "c"}, 2).size(), 2u);
}

TEST_F(DelivererTest, TagsRemoveMembersAndTheSet)
{
	set("m1");
	set("m2");
	set("other");
	admin.command({"SADD", "tag:t", "m1", "m2"});
	deliver({make(TargetKind::Tag, "tag:t", false, 4)});
	EXPECT_FALSE(exists("m1"));
	EXPECT_FALSE(exists("m2"));
	EXPECT_FALSE(exists("tag:t"));
	EXPECT_TRUE(exists("other"));
	/* a missing tag set is not an error */
	deliver({make(TargetKind::Tag, "tag:none", false, 4)});
}

TEST_F(DelivererTest, NestedTagsExpandToTheDepthBound)
{
	/* tag:l0 -> tag:l1 -> tag:l2 -> tag:l3, each with a leaf */
	for (int i = 0; i < 4; i++) {
		std::string leaf = "leaf" + std::to_string(i);
		set(leaf);
		admin.command({"SADD", "tag:l" + std::to_string(i), leaf});
		if (i < 3)
			admin.command({"SADD", "tag:l" + std::to_string(i), "tag:l" + std::to_string(i + 1)});
	}
	options.tag_depth = 2;
	deliver({make(TargetKind::Tag, "tag:l0", false, 4)});
	EXPECT_FALSE(exists("leaf0"));
	EXPECT_FALSE(exists("leaf1"));
	EXPECT_FALSE(exists("leaf2"));
	EXPECT_FALSE(exists("tag:l2"));
	/* beyond the bound: left in place, still reachable through its own tag */
	EXPECT_TRUE(exists("tag:l3"));
	EXPECT_TRUE(exists("leaf3"));
}

TEST_F(DelivererTest, CyclicTagsTerminate)
{
	set("x");
	set("y");
	admin.command({"SADD", "tag:a", "tag:b", "x"});
	admin.command({"SADD", "tag:b", "tag:a", "y"});
	deliver({make(TargetKind::Tag, "tag:a", false, 4)});
	EXPECT_FALSE(exists("x"));
	EXPECT_FALSE(exists("y"));
	EXPECT_FALSE(exists("tag:a"));
	EXPECT_FALSE(exists("tag:b"));
}

TEST_F(DelivererTest, ScriptIsReloadedAfterScriptFlush)
{
	set("m");
	admin.command({"SADD", "tag:t", "m"});
	deliver({make(TargetKind::Tag, "tag:t", false, 4)});
	admin.command({"SCRIPT", "FLUSH"});
	set("m");
	admin.command({"SADD", "tag:t", "m"});
	deliver({make(TargetKind::Tag, "tag:t", false, 4)});
	EXPECT_FALSE(exists("m"));
}

TEST_F(DelivererTest, PatternsBumpsAndGlobKinds)
{
	set("s:1:a");
	set("s:2:b");
	set("s*literal");
	set("sx");
	admin.command({"SET", "v", "41"});
	admin.command({"SET", "user:1:v", "1"});
	admin.command({"SET", "user:2:v", "5"});
	set("m1");
	admin.command({"SADD", "tag:team:1", "m1"});
	deliver({make(TargetKind::Key, "s:*", true), make(TargetKind::Bump, "v"),
			 make(TargetKind::Bump, "user:*:v", true), make(TargetKind::Tag, "tag:team:*", true, 4)});
	EXPECT_FALSE(exists("s:1:a"));
	EXPECT_FALSE(exists("s:2:b"));
	EXPECT_TRUE(exists("s*literal"));
	EXPECT_TRUE(exists("sx"));
	EXPECT_EQ(admin.command({"GET", "v"}).str, "42");
	EXPECT_EQ(admin.command({"GET", "user:1:v"}).str, "2");
	EXPECT_EQ(admin.command({"GET", "user:2:v"}).str, "6");
	EXPECT_FALSE(exists("m1"));
	EXPECT_FALSE(exists("tag:team:1"));
}

TEST_F(DelivererTest, PublishesTheBatch)
{
	RedisClient subscriber;
	subscriber.connect(server.url(), RedisTimeouts{});
	subscriber.command({"SUBSCRIBE", "events"});
	options.publish_channel = "events";
	deliver({make(TargetKind::Key, "k\"1"), make(TargetKind::Tag, "tag:t", false, 4)});
	/* In subscribe mode the next thing read is the published message. */
	Reply r = subscriber.command({"PING"});
	ASSERT_EQ(r.type, Reply::Type::Array);
	ASSERT_EQ(r.elements.size(), 3u);
	EXPECT_EQ(r.elements[0].str, "message");
	EXPECT_EQ(r.elements[2].str, "{\"keys\":[\"k\\\"1\"],\"tags\":[\"tag:t\"]}");
}

TEST_F(DelivererTest, ErrorRepliesFailTheDelivery)
{
	admin.command({"SADD", "not-a-counter", "x"});
	try {
		deliver({make(TargetKind::Key, "k"), make(TargetKind::Bump, "not-a-counter")});
		FAIL() << "expected RedisError";
	} catch (const RedisError &e) {
		EXPECT_NE(std::string(e.what()).find("WRONGTYPE"), std::string::npos) << e.what();
	}
	EXPECT_EQ(counters.error_replies, 1u);
	EXPECT_TRUE(client.connected()) << "an error reply does not kill the connection";
}

TEST_F(DelivererTest, Fallbacks)
{
	set("app:1");
	set("app:2");
	set("app*x");
	set("other:1");
	deliverer.fallback_prefix("app:", options, counters);
	EXPECT_FALSE(exists("app:1"));
	EXPECT_FALSE(exists("app:2"));
	EXPECT_TRUE(exists("app*x"));
	EXPECT_TRUE(exists("other:1"));
	EXPECT_THROW(deliverer.fallback_prefix("", options, counters), std::invalid_argument);
	deliverer.fallback_generation("app:", counters);
	deliverer.fallback_generation("app:", counters);
	EXPECT_EQ(admin.command({"GET", "app:cachebust:generation"}).str, "2");
	deliverer.fallback_flushdb(counters);
	EXPECT_EQ(admin.command({"DBSIZE"}).integer, 0);
}

TEST(RedisClient, AuthenticationAndDatabases)
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

TEST(RedisClient, UnixSocket)
{
	std::string path = "/tmp/cachebust-test-" + std::to_string(getpid()) + ".sock";
	RedisServer server({"--unixsocket", path});
	RedisClient c;
	c.connect(RedisUrl::parse("unix://" + path + "?db=1"), {});
	EXPECT_EQ(c.command({"PING"}).str, "PONG");
	EXPECT_GE(c.fd(), 0);
}

TEST(RedisClient, ConnectionFailuresAreFastAndClear)
{
	int port = cachebust::test::free_port();
	RedisClient c;
	auto start = std::chrono::steady_clock::now();
	EXPECT_THROW(c.connect(RedisUrl::parse("redis://127.0.0.1:" + std::to_string(port)), {200, 200}),
				 RedisError);
	EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
	EXPECT_FALSE(c.connected());
	EXPECT_EQ(c.fd(), -1);
	EXPECT_THROW(c.command({"PING"}), RedisError);
}

TEST(RedisClient, CommandTimeoutDisconnects)
{
	RedisServer server;
	RedisClient admin, c;
	admin.connect(server.url(), {});
	c.connect(server.url(), {1000, 200});
	admin.command({"CLIENT", "PAUSE", "1000", "ALL"});
	EXPECT_THROW(c.command({"SET", "k", "v"}), RedisError);
	EXPECT_FALSE(c.connected());
}

TEST(Json, EscapesControlQuotesAndInvalidUtf8)
{
	EXPECT_EQ(json_string("plain"), "\"plain\"");
	EXPECT_EQ(json_string("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\u000a\\u0001\"");
	EXPECT_EQ(json_string("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
	EXPECT_EQ(json_string("bad\xff\xc3"), "\"bad\\u00ff\\u00c3\"");
	EXPECT_EQ(json_string("\xed\xa0\x80"), "\"\\u00ed\\u00a0\\u0080\"") << "surrogates are not valid UTF-8";
	std::vector<Target> ts = {make(TargetKind::Bump, "v"), make(TargetKind::Key, "p*", true),
							  make(TargetKind::Key, "k")};
	EXPECT_EQ(batch_json(ts), "{\"keys\":[\"k\"],\"patterns\":[\"p*\"],\"bumps\":[\"v\"]}");
	EXPECT_EQ(batch_json({}), "{}");
}
