/* Tests of the delivery engine against a real redis-server: what each kind
 * of target does, and that nothing one target does can stall the others. */
#include "core/delivery/engine.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>

#include <gtest/gtest.h>

#include "core/delivery/publish_message.hpp"
#include "core/key_slot.hpp"
#include "fake_node.hpp"
#include "redis_server.hpp"
#include "reply_dropping_proxy.hpp"

using namespace cachebust;
using cachebust::test::ClusterServers;
using cachebust::test::FakeNode;
using cachebust::test::RedisServer;
using cachebust::test::ReplyDroppingProxy;
using cachebust::test::SentinelServer;

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

/* The engine plus what a worker would do around it: a poll() loop and the
 * reports it hands back, accumulated. */
class Harness
{
  public:
	explicit Harness(const RedisUrl &url)
	{
		settings.configured = true;
		settings.url = url;
		settings.retry_max_ms = 100;
		settings.connect_timeout_ms = 500;
		settings.command_timeout_ms = 500;
		engine.configure(settings);
	}

	void reconfigure() { engine.configure(settings); }

	/* Runs the event loop until done() or timeout_ms pass; false on timeout. */
	template <typename Done>
	bool run_until(Done done, int timeout_ms = 5000)
	{
		int64_t deadline = monotonic_us() + static_cast<int64_t>(timeout_ms) * 1000;
		for (;;) {
			collect();
			if (done())
				return true;
			if (monotonic_us() > deadline)
				return false;
			std::vector<PollEntry> entries;
			engine.poll_entries(entries);
			std::vector<pollfd> fds;
			for (const PollEntry &e : entries)
				fds.push_back(pollfd{e.fd, static_cast<short>((e.read ? POLLIN : 0) | (e.write ? POLLOUT : 0)), 0});
			int timeout = 10;
			int64_t d = engine.deadline_us();
			if (d != 0)
				timeout = std::max<int>(0, std::min<int64_t>(timeout, (d - monotonic_us()) / 1000 + 1));
			if (poll(fds.data(), fds.size(), timeout) > 0)
				for (const pollfd &p : fds)
					if (p.revents != 0)
						engine.on_io(p.fd, (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0,
									 (p.revents & POLLOUT) != 0);
			engine.on_timer();
		}
	}

	bool delivered(Stream s = Stream::First, int timeout_ms = 5000)
	{
		return run_until([&] { return engine.min_held_seq(s) == kNoSeq; }, timeout_ms);
	}

	void deliver(std::vector<Target> targets, uint64_t seq = 1)
	{
		engine.submit(std::move(targets), Stream::First, seq);
		ASSERT_TRUE(delivered());
	}

	void collect()
	{
		DeliveryReport r = engine.take_report();
		counters.add(r.counters);
		for (LogLine &l : r.logs)
			logs.push_back(std::move(l.message));
		for (FallbackNeed &n : r.fallback_needs)
			needs.push_back(std::move(n));
		for (uint32_t j : r.failed_jobs)
			failed_jobs.push_back(j);
		if (r.new_error) {
			last_error = r.last_error;
			last_error_endpoint = r.last_error_endpoint;
			last_error_key = r.last_error_key;
		}
	}

	EngineSettings settings;
	DeliveryEngine engine{42};
	DeliveryCounters counters;
	std::vector<std::string> logs;
	std::vector<FallbackNeed> needs;
	std::vector<uint32_t> failed_jobs;
	std::string last_error;
	std::string last_error_endpoint; /* the parts not every role may see */
	std::string last_error_key;
};

class EngineTest : public ::testing::Test
{
  protected:
	void SetUp() override
	{
		admin.connect(server.url(), RedisTimeouts{});
		admin.command({"FLUSHALL"});
		admin.command({"SCRIPT", "FLUSH"});
	}

	void set(const std::string &key, const std::string &value = "cached") { admin.command({"SET", key, value}); }
	bool exists(const std::string &key) { return admin.command({"EXISTS", key}).integer == 1; }
	bool listed(const std::string &set, const std::string &member)
	{
		return admin.command({"SISMEMBER", set, member}).integer == 1;
	}
	/* Keys cachebust left behind of its own (tag receipts). */
	size_t own_keys() { return admin.command({"KEYS", "*cachebust:*"}).elements.size(); }
	/* Issue 21, item 3: the tag script runs in Redis, its reply is lost. */
	void lose_one_tag_reply(ReplyDroppingProxy::Loss loss);

	static RedisServer server;
	RedisClient admin;
	Harness h{server.url()};
};

RedisServer EngineTest::server;

} // namespace

TEST_F(EngineTest, UnlinksExactlyTheGivenKeys)
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
	ASSERT_TRUE(h.run_until([&] { return h.engine.connected(); }));
	h.counters = DeliveryCounters();
	h.deliver(targets);
	for (const std::string &k : odd)
		EXPECT_FALSE(exists(k)) << k;
	EXPECT_TRUE(exists("a"));
	EXPECT_TRUE(exists("b"));
	EXPECT_TRUE(exists("unrelated"));
	EXPECT_EQ(h.counters.commands, 1u) << "all keys in one UNLINK";
}

TEST_F(EngineTest, ChunksLargeKeySets)
{
	h.settings.unlink_chunk = 100;
	h.reconfigure();
	ASSERT_TRUE(h.run_until([&] { return h.engine.connected(); }));
	h.counters = DeliveryCounters();
	std::vector<Target> targets;
	for (int i = 0; i < 1050; i++) {
		set("k" + std::to_string(i));
		targets.push_back(make(TargetKind::Key, "k" + std::to_string(i)));
	}
	h.deliver(targets);
	EXPECT_EQ(admin.command({"DBSIZE"}).integer, 0);
	EXPECT_EQ(h.counters.commands, 11u);
}

TEST_F(EngineTest, TagsRemoveMembersAndTheSet)
{
	set("m1");
	set("m2");
	set("other");
	admin.command({"SADD", "tag:t", "m1", "m2"});
	h.deliver({make(TargetKind::Tag, "tag:t", false, 4)});
	EXPECT_FALSE(exists("m1"));
	EXPECT_FALSE(exists("m2"));
	EXPECT_FALSE(exists("tag:t"));
	EXPECT_TRUE(exists("other"));
	/* a missing tag set is not an error */
	h.deliver({make(TargetKind::Tag, "tag:none", false, 4)});
	EXPECT_EQ(h.counters.targets_failed, 0u);
}

TEST_F(EngineTest, NestedTagsExpandToTheDepthBound)
{
	/* tag:l0 -> tag:l1 -> tag:l2 -> tag:l3, each with a leaf */
	for (int i = 0; i < 4; i++) {
		std::string leaf = "leaf" + std::to_string(i);
		set(leaf);
		admin.command({"SADD", "tag:l" + std::to_string(i), leaf});
		if (i < 3)
			admin.command({"SADD", "tag:l" + std::to_string(i), "tag:l" + std::to_string(i + 1)});
	}
	set("tag:plain-entry"); /* a cache entry that happens to live under the tag prefix */
	admin.command({"SADD", "tag:l0", "tag:plain-entry"});
	h.settings.tag_depth = 2;
	h.reconfigure();
	h.deliver({make(TargetKind::Tag, "tag:l0", false, 4)});
	EXPECT_FALSE(exists("leaf0"));
	EXPECT_FALSE(exists("leaf1"));
	EXPECT_FALSE(exists("leaf2"));
	EXPECT_FALSE(exists("tag:l2"));
	EXPECT_FALSE(exists("tag:plain-entry"));
	/* beyond the bound: left in place, still reachable through its own tag */
	EXPECT_TRUE(exists("tag:l3"));
	EXPECT_TRUE(exists("leaf3"));
}

TEST_F(EngineTest, CyclicTagsTerminate)
{
	set("x");
	set("y");
	admin.command({"SADD", "tag:a", "tag:b", "x"});
	admin.command({"SADD", "tag:b", "tag:a", "y"});
	h.deliver({make(TargetKind::Tag, "tag:a", false, 4)});
	EXPECT_FALSE(exists("x"));
	EXPECT_FALSE(exists("y"));
	EXPECT_FALSE(exists("tag:a"));
	EXPECT_FALSE(exists("tag:b"));
}

/* DESIGN.md: every key a role can reach starts with its key_prefix. */
TEST_F(EngineTest, TagMembersOutsideThePrefixAreLeftAlone)
{
	set("app:mine");
	set("other:secret");
	set("app:tag:inner-member");
	admin.command({"SADD", "app:tag:team:7", "app:mine", "other:secret", "app:tag:inner"});
	admin.command({"SADD", "app:tag:inner", "app:tag:inner-member", "other:too"});
	set("other:too");
	Target tag = make(TargetKind::Tag, "app:tag:team:7", false, 8);
	tag.prefix_len = 4;
	h.deliver({tag});
	EXPECT_FALSE(exists("app:mine"));
	EXPECT_FALSE(exists("app:tag:inner-member"));
	EXPECT_TRUE(exists("other:secret"));
	EXPECT_TRUE(exists("other:too"));
	EXPECT_EQ(h.counters.tag_members_skipped, 2u);
}

/* A tag delivered as usual leaves nothing of cachebust's own behind. */
TEST_F(EngineTest, TagsLeaveNoReceiptBehind)
{
	set("m1");
	admin.command({"SADD", "tag:t", "m1"});
	h.deliver({make(TargetKind::Tag, "tag:t", false, 4)});
	EXPECT_FALSE(exists("m1"));
	EXPECT_TRUE(h.run_until([&] { return own_keys() == 0; })) << "the receipt is released once its members are gone";
}

/*
 * Issue 21, item 3: the tag script ran (the set was read and removed) but
 * its reply never came. The retry must still delete every member, and a
 * member a cache fill adds after the lost pop must not end up neither
 * deleted nor tracked.
 */
void
EngineTest::lose_one_tag_reply(ReplyDroppingProxy::Loss loss)
{
	ReplyDroppingProxy proxy(server.port());
	Harness p(proxy.url());
	ASSERT_TRUE(p.run_until([&] { return p.engine.connected(); }));
	set("m1");
	set("m2");
	admin.command({"SADD", "tag:t", "m1", "m2"});
	proxy.arm("EVALSHA", loss);
	p.engine.submit({make(TargetKind::Tag, "tag:t", false, 4)}, Stream::First, 1);
	ASSERT_TRUE(p.run_until([&] { return proxy.dropped(); }));
	EXPECT_FALSE(exists("tag:t")) << "the lost attempt did pop the set";
	/* An application fills its cache after the pop, before the retry. */
	set("late");
	admin.command({"SADD", "tag:t", "late"});
	ASSERT_TRUE(p.delivered(Stream::First, 10000));
	EXPECT_FALSE(exists("m1")) << "the members the lost attempt took are deleted by the retry";
	EXPECT_FALSE(exists("m2"));
	EXPECT_TRUE(!exists("late") || listed("tag:t", "late")) << "a later fill is deleted or still tracked";
	EXPECT_TRUE(p.needs.empty()) << "resolved by the retry, no fallback needed";
	EXPECT_GE(p.counters.errors, 1u);
	EXPECT_TRUE(p.run_until([&] { return own_keys() == 0; })) << "the receipt is released";
}

TEST_F(EngineTest, ATagReplyLostToAResetIsAppliedByTheRetry)
{
	lose_one_tag_reply(ReplyDroppingProxy::Loss::Close);
}

TEST_F(EngineTest, ATagReplyLostToTheCommandTimeoutIsAppliedByTheRetry)
{
	lose_one_tag_reply(ReplyDroppingProxy::Loss::Stall);
}

/* A retry so late that the receipt may have expired: the fallback covers the prefix. */
TEST_F(EngineTest, ATagRetryLaterThanTheReceiptLivesFallsBack)
{
	ReplyDroppingProxy proxy(server.port());
	Harness p(proxy.url());
	p.settings.tag_receipt_ttl_ms = 1;
	p.reconfigure();
	ASSERT_TRUE(p.run_until([&] { return p.engine.connected(); }));
	set("app:m1");
	admin.command({"SADD", "app:tag:t", "app:m1"});
	Target tag = make(TargetKind::Tag, "app:tag:t", false, 8);
	tag.prefix_len = 4;
	proxy.arm("EVALSHA", ReplyDroppingProxy::Loss::Close);
	p.engine.submit({tag}, Stream::First, 3);
	ASSERT_TRUE(p.run_until([&] { return !p.needs.empty(); }, 10000));
	EXPECT_EQ(p.needs[0].prefix, "app:");
	EXPECT_EQ(p.needs[0].seqs.min(), 3u);
}

/* A tag whose name allows no receipt in its cluster slot: a lost reply falls back. */
TEST_F(EngineTest, ALostReplyOfATagWithoutReceiptFallsBack)
{
	ReplyDroppingProxy proxy(server.port());
	Harness p(proxy.url());
	ASSERT_TRUE(p.run_until([&] { return p.engine.connected(); }));
	set("app:m1");
	admin.command({"SADD", "app:tag:odd}name", "app:m1"});
	Target tag = make(TargetKind::Tag, "app:tag:odd}name", false, 8);
	tag.prefix_len = 4;
	proxy.arm("EVALSHA", ReplyDroppingProxy::Loss::Close);
	p.engine.submit({tag}, Stream::First, 4);
	ASSERT_TRUE(p.run_until([&] { return !p.needs.empty(); }, 10000));
	EXPECT_EQ(p.needs[0].prefix, "app:");
	EXPECT_EQ(p.needs[0].seqs.min(), 4u);
	EXPECT_FALSE(exists("app:tag:odd}name"));
}

/*
 * An ACL written for the older tag script (no commands for a receipt):
 * tags still remove their members, and a lost reply, which no receipt
 * can answer, falls back.
 */
TEST_F(EngineTest, TagsUnderAnAclWithoutReceiptCommands)
{
	/* (+echo for the proxy's own marker) */
	admin.command({"ACL", "SETUSER", "oldacl", "on", ">pw", "resetkeys", "~app:*", "-@all", "+unlink", "+eval",
				   "+evalsha", "+scan", "+incr", "+script|load", "+ping", "+select", "+type", "+smembers", "+echo"});
	ReplyDroppingProxy proxy(server.port());
	RedisUrl url = proxy.url();
	url.user = "oldacl";
	url.password = "pw";
	Harness p(url);
	set("app:m1");
	admin.command({"SADD", "app:tag:t", "app:m1"});
	Target tag = make(TargetKind::Tag, "app:tag:t", false, 8);
	tag.prefix_len = 4;
	p.engine.submit({tag}, Stream::First, 1);
	ASSERT_TRUE(p.delivered());
	EXPECT_FALSE(exists("app:m1"));
	EXPECT_FALSE(exists("app:tag:t"));
	EXPECT_TRUE(p.needs.empty());
	EXPECT_EQ(p.counters.targets_failed, 0u);

	set("app:m2");
	admin.command({"SADD", "app:tag:t", "app:m2"});
	proxy.arm("EVALSHA", ReplyDroppingProxy::Loss::Close);
	p.engine.submit({tag}, Stream::First, 2);
	ASSERT_TRUE(p.run_until([&] { return !p.needs.empty(); }, 10000));
	EXPECT_EQ(p.needs[0].prefix, "app:");
	EXPECT_EQ(p.needs[0].seqs.min(), 2u);
	admin.command({"ACL", "DELUSER", "oldacl"});
}

TEST_F(EngineTest, ScriptIsReloadedAfterScriptFlush)
{
	set("m");
	admin.command({"SADD", "tag:t", "m"});
	h.deliver({make(TargetKind::Tag, "tag:t", false, 4)});
	admin.command({"SCRIPT", "FLUSH"});
	set("m");
	admin.command({"SADD", "tag:t", "m"});
	h.deliver({make(TargetKind::Tag, "tag:t", false, 4)});
	EXPECT_FALSE(exists("m"));
}

TEST_F(EngineTest, PatternsBumpsAndGlobKinds)
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
	set("tag:team:not-a-set");
	h.deliver({make(TargetKind::Key, "s:*", true), make(TargetKind::Bump, "v"),
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
	EXPECT_TRUE(exists("tag:team:not-a-set")) << "a tag pattern removes tag sets only";
	EXPECT_EQ(h.counters.scan_passes, 1u) << "all globs of a window share one pass";
}

/* A subscriber on a plain socket: pub/sub pushes are not replies to anything. */
class Subscriber
{
  public:
	Subscriber(int port, const std::string &channel, const char *how = "SUBSCRIBE")
	{
		fd_ = socket(AF_INET, SOCK_STREAM, 0);
		sockaddr_in addr{};
		addr.sin_family = AF_INET;
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		addr.sin_port = htons(static_cast<uint16_t>(port));
		if (::connect(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0)
			throw std::runtime_error("cannot connect the subscriber");
		std::string cmd;
		append_command(cmd, Command{how, channel});
		if (::write(fd_, cmd.data(), cmd.size()) != static_cast<ssize_t>(cmd.size()))
			throw std::runtime_error("cannot subscribe");
		next(); /* the subscription's confirmation */
	}
	~Subscriber() { close(fd_); }

	/* The next push, waiting at most 5 s. */
	Reply next()
	{
		Reply r;
		for (int i = 0; i < 500 && !reader_.next(r); i++) {
			pollfd p{fd_, POLLIN, 0};
			if (poll(&p, 1, 10) > 0) {
				char buf[4096];
				ssize_t n = ::read(fd_, buf, sizeof(buf));
				if (n > 0)
					reader_.feed(buf, static_cast<size_t>(n));
			}
		}
		return r;
	}

  private:
	int fd_;
	ReplyReader reader_;
};

TEST_F(EngineTest, PublishesAfterTheTargets)
{
	Subscriber subscriber(server.port(), "events");
	h.settings.publish_channel = "events";
	h.reconfigure();
	std::vector<Target> batch = {make(TargetKind::Key, "k\"1"), make(TargetKind::Tag, "tag:t", false, 4)};
	h.engine.publish(batch_json(batch), 1);
	ASSERT_TRUE(h.delivered());
	Reply r = subscriber.next();
	ASSERT_EQ(r.type, Reply::Type::Array);
	ASSERT_EQ(r.elements.size(), 3u);
	EXPECT_EQ(r.elements[0].str, "message");
	EXPECT_EQ(r.elements[2].str, "{\"keys\":[\"k\\\"1\"],\"tags\":[\"tag:t\"]}");
}

/* Issue 10, item 1: one refused command must not stall the rest. */
TEST_F(EngineTest, ARefusedBumpIsReplacedByUnlinkAndStallsNothing)
{
	set("user:2", "a string, not a counter");
	admin.command({"SADD", "not-a-counter", "x"});
	set("k");
	set("tag:string-not-set");
	h.deliver({make(TargetKind::Key, "k"), make(TargetKind::Bump, "user:2"), make(TargetKind::Bump, "not-a-counter"),
			   make(TargetKind::Tag, "tag:string-not-set", false, 4), make(TargetKind::Bump, "fine")});
	EXPECT_FALSE(exists("k"));
	EXPECT_FALSE(exists("user:2")) << "substitute: UNLINK, so the next read rebuilds it";
	EXPECT_FALSE(exists("not-a-counter"));
	EXPECT_FALSE(exists("tag:string-not-set"));
	EXPECT_EQ(admin.command({"GET", "fine"}).str, "1");
	EXPECT_EQ(h.counters.targets_failed, 3u);
	EXPECT_TRUE(h.needs.empty()) << "substitutes worked; no fallback";
	bool logged = false;
	for (const std::string &l : h.logs)
		logged = logged || l.find("user:2") != std::string::npos || l.find("not-a-counter") != std::string::npos;
	EXPECT_TRUE(logged);
}

/* Issue 22, item 3: the refused key (maybe another tenant's) is kept apart from the error text. */
TEST_F(EngineTest, TheRefusedKeyIsKeptApartFromTheErrorText)
{
	set("tenant2:ver", "a string, not a counter");
	h.deliver({make(TargetKind::Bump, "tenant2:ver")});
	EXPECT_NE(h.last_error.find("Redis refused INCR: ERR value is not an integer"), std::string::npos) << h.last_error;
	EXPECT_EQ(h.last_error.find("tenant2"), std::string::npos) << h.last_error;
	EXPECT_EQ(h.last_error_key, "tenant2:ver");
	EXPECT_EQ(h.last_error_endpoint, "");
	bool logged = false;
	for (const std::string &l : h.logs)
		logged = logged || l.find("Redis refused INCR on \"tenant2:ver\"") != std::string::npos;
	EXPECT_TRUE(logged) << "the server log names the key";
}

/* Issue 22, item 2: sentinels' addresses are endpoints, kept apart like a server's. */
TEST(EngineSentinel, SentinelAddressesAreKeptApartFromTheErrorText)
{
	int p1 = cachebust::test::free_port();
	int p2 = cachebust::test::free_port();
	Harness h(RedisUrl::parse("redis-sentinel://127.0.0.1:" + std::to_string(p1) + ",127.0.0.1:" + std::to_string(p2) +
							  "/mymaster"));
	ASSERT_TRUE(h.run_until([&] { return h.last_error.find("no sentinel told") != std::string::npos; }));
	EXPECT_EQ(h.last_error, "no sentinel told the master of \"mymaster\": sentinel 1: cannot connect: Connection refused; "
							"sentinel 2: cannot connect: Connection refused");
	EXPECT_EQ(h.last_error_endpoint,
			  "sentinel 1 = 127.0.0.1:" + std::to_string(p1) + ", sentinel 2 = 127.0.0.1:" + std::to_string(p2));
	bool logged = false;
	for (const std::string &l : h.logs)
		logged = logged || l.find("sentinel 127.0.0.1:" + std::to_string(p1) + ": cannot connect") != std::string::npos;
	EXPECT_TRUE(logged) << "the server log names the sentinels";
}

/*
 * A switchover (SENTINEL FAILOVER) leaves the old master answering as a
 * master until the sentinels demote it, about 10 s later; what it
 * acknowledges meanwhile is lost when it resyncs. The worker follows the
 * sentinels' answer while the old master still answers: the failover
 * repeat brings what the old master took lately to the new one, and new
 * targets go there. (The sentinel is simply told to monitor another
 * server; both stay masters, as in that split.)
 */
TEST(EngineSentinel, FollowsTheSentinelsWhileTheOldMasterStillAnswers)
{
	RedisServer old_master;
	RedisServer new_master;
	SentinelServer sentinel("cache", old_master.port());
	RedisClient a;
	RedisClient b;
	a.connect(old_master.url(), RedisTimeouts{});
	b.connect(new_master.url(), RedisTimeouts{});
	for (RedisClient *c : {&a, &b})
		c->command({"MSET", "app:1", "cached", "app:2", "cached"});
	Harness h(RedisUrl::parse("redis-sentinel://127.0.0.1:" + std::to_string(sentinel.port()) + "/cache"));
	h.deliver({make(TargetKind::Key, "app:1")});
	EXPECT_EQ(a.command({"EXISTS", "app:1"}).integer, 0);

	RedisClient s;
	s.connect(RedisUrl::parse("redis://127.0.0.1:" + std::to_string(sentinel.port())), RedisTimeouts{});
	s.command({"SENTINEL", "REMOVE", "cache"});
	s.command({"SENTINEL", "MONITOR", "cache", "127.0.0.1", std::to_string(new_master.port()), "1"});
	ASSERT_TRUE(h.run_until([&] { return h.counters.failovers > 0; }, 10000))
		<< "the engine still delivers to the old master, which answers as a master";
	ASSERT_TRUE(h.run_until([&] { return b.command({"EXISTS", "app:1"}).integer == 0; }))
		<< "the failover repeat applies on the new master what the old one acknowledged";
	h.deliver({make(TargetKind::Key, "app:2")}, 2);
	EXPECT_EQ(b.command({"EXISTS", "app:2"}).integer, 0) << "new targets go to the new master";
	EXPECT_EQ(a.command({"EXISTS", "app:2"}).integer, 1);
}

/* A sentinel that names another master than the others (one that has not
 * heard of a failover yet, or never will) does not move us back and forth:
 * such an answer is asked of the next sentinel before it is followed. */
TEST(EngineSentinel, OneSentinelNamingAnotherMasterDoesNotMoveUs)
{
	RedisServer master;
	RedisServer other;
	SentinelServer agrees("cache", master.port());
	SentinelServer disagrees("cache", other.port());
	RedisClient a;
	a.connect(master.url(), RedisTimeouts{});
	a.command({"MSET", "app:1", "cached", "app:2", "cached"});
	Harness h(RedisUrl::parse("redis-sentinel://127.0.0.1:" + std::to_string(agrees.port()) + ",127.0.0.1:" +
							  std::to_string(disagrees.port()) + "/cache"));
	h.deliver({make(TargetKind::Key, "app:1")});
	EXPECT_EQ(a.command({"EXISTS", "app:1"}).integer, 0);
	/* Long enough for three checks, each of which asks the disagreeing one first. */
	EXPECT_FALSE(h.run_until([&] { return h.counters.failovers > 0; }, 3500));
	h.deliver({make(TargetKind::Key, "app:2")}, 2);
	EXPECT_EQ(a.command({"EXISTS", "app:2"}).integer, 0) << "still delivered to the master the others name";
}

/* A refused UNLINK: the multi-key command is split, the refused key goes to
 * the fallback for its prefix, every other key is applied. */
TEST_F(EngineTest, ARefusedUnlinkIsIsolatedAndCoveredByTheFallback)
{
	admin.command({"ACL", "SETUSER", "limited", "on", ">pw", "~app:*", "+@all"});
	RedisUrl url = server.url();
	url.user = "limited";
	url.password = "pw";
	Harness limited(url);
	set("app:1");
	set("app:2");
	set("other:1");
	Target outside = make(TargetKind::Key, "other:1");
	outside.prefix_len = 6;
	limited.engine.submit({make(TargetKind::Key, "app:1"), outside, make(TargetKind::Key, "app:2")},
						  Stream::First, 7);
	ASSERT_TRUE(limited.run_until([&] { return !limited.needs.empty(); }));
	EXPECT_FALSE(exists("app:1"));
	EXPECT_FALSE(exists("app:2"));
	EXPECT_TRUE(exists("other:1"));
	ASSERT_EQ(limited.needs.size(), 1u);
	EXPECT_EQ(limited.needs[0].prefix, "other:");
	EXPECT_EQ(limited.needs[0].seqs.min(), 7u);
	EXPECT_EQ(limited.counters.targets_failed, 1u);
	EXPECT_NE(limited.last_error.find("NOPERM"), std::string::npos) << limited.last_error;
	admin.command({"ACL", "DELUSER", "limited"});
}

TEST_F(EngineTest, TransientRefusalsAreRetriedUntilApplied)
{
	admin.command({"CONFIG", "SET", "maxmemory-policy", "noeviction"});
	admin.command({"CONFIG", "SET", "maxmemory", "1"});
	h.engine.submit({make(TargetKind::Bump, "ver")}, Stream::First, 3);
	ASSERT_TRUE(h.run_until([&] { return h.last_error.find("OOM") != std::string::npos; }));
	EXPECT_EQ(h.engine.min_held_seq(Stream::First), 3u) << "held while Redis refuses";
	admin.command({"CONFIG", "SET", "maxmemory", "0"});
	ASSERT_TRUE(h.delivered());
	EXPECT_EQ(admin.command({"GET", "ver"}).str, "1") << "applied exactly once";
	EXPECT_GT(h.counters.retries, 0u);
	EXPECT_EQ(h.counters.targets_failed, 0u);
}

TEST_F(EngineTest, ReadOnlyReplicaReconnectsAndRetries)
{
	set("k");
	int dead = cachebust::test::free_port();
	admin.command({"REPLICAOF", "127.0.0.1", std::to_string(dead)});
	h.engine.submit({make(TargetKind::Key, "k")}, Stream::First, 1);
	ASSERT_TRUE(h.run_until([&] { return h.last_error.find("READONLY") != std::string::npos; }));
	admin.command({"REPLICAOF", "NO", "ONE"});
	ASSERT_TRUE(h.delivered());
	EXPECT_FALSE(exists("k"));
}

TEST_F(EngineTest, SequenceNumbersAreHeldUntilApplied)
{
	EXPECT_EQ(h.engine.min_held_seq(Stream::First), kNoSeq);
	admin.command({"CLIENT", "PAUSE", "300", "WRITE"});
	h.engine.submit({make(TargetKind::Key, "a")}, Stream::First, 5);
	h.engine.submit({make(TargetKind::Key, "b")}, Stream::First, 9);
	EXPECT_EQ(h.engine.min_held_seq(Stream::First), 5u);
	EXPECT_EQ(h.engine.min_held_seq(Stream::Redelete), kNoSeq) << "streams are independent";
	ASSERT_TRUE(h.delivered());
}

/* Issue 10, item 2: a glob pass never holds keys of later windows back. */
TEST_F(EngineTest, KeysAreDeliveredWhileAPassRuns)
{
	std::vector<Command> fill;
	for (int i = 0; i < 50; i++) {
		Command mset = {"MSET"};
		for (int j = 0; j < 1000; j++) {
			mset.push_back("bulk:" + std::to_string(i * 1000 + j));
			mset.push_back("x");
		}
		fill.push_back(mset);
	}
	admin.pipeline(fill);
	h.settings.scan_count = 50;
	h.reconfigure();
	std::vector<Target> globs;
	for (int i = 0; i < 999; i++)
		globs.push_back(make(TargetKind::Key, "nomatch:" + std::to_string(i) + "*", true));
	/* No common prefix, so every key comes back and is matched here. */
	globs.push_back(make(TargetKind::Key, "*:never", true));
	h.engine.submit(std::move(globs), Stream::First, 1);
	ASSERT_TRUE(h.run_until([&] { return h.counters.keys_scanned > 1000; }));
	set("hot");
	h.engine.submit({make(TargetKind::Key, "hot")}, Stream::First, 2);
	ASSERT_TRUE(h.run_until([&] { return !exists("hot"); }));
	EXPECT_EQ(h.counters.scan_passes, 0u) << "the key went out while the pass was still running";
	EXPECT_EQ(h.engine.min_held_seq(Stream::First), 1u) << "the globs still hold their commit back";
	ASSERT_TRUE(h.delivered(Stream::First, 30000));
	EXPECT_EQ(h.counters.scan_passes, 1u) << "1000 patterns, one pass";
	EXPECT_EQ(admin.command({"DBSIZE"}).integer, 50000);
}

/*
 * Issue 21, item 10: a commit is held back only where its own targets
 * wait. Commits 1 (globs, a long pass) and 2 (a key) share one window; once
 * the key is gone commit 2 is delivered, while the pass still holds 1.
 */
TEST_F(EngineTest, ACommitIsHeldOnlyWhereItsOwnTargetsWait)
{
	std::vector<Command> fill;
	for (int i = 0; i < 50; i++) {
		Command mset = {"MSET"};
		for (int j = 0; j < 1000; j++) {
			mset.push_back("bulk:" + std::to_string(i * 1000 + j));
			mset.push_back("x");
		}
		fill.push_back(mset);
	}
	admin.pipeline(fill);
	h.settings.scan_count = 50;
	h.reconfigure();
	set("hot");
	std::vector<Target> window;
	for (int i = 0; i < 99; i++)
		window.push_back(make(TargetKind::Key, "nomatch:" + std::to_string(i) + "*", true));
	window.push_back(make(TargetKind::Key, "*:never", true));
	window.push_back(make(TargetKind::Key, "hot"));
	/* Targets 0-99 came from commit 1, target 100 from commit 2, one window. */
	h.engine.submit_window(std::move(window), Stream::First, {Contribution{0, 99, 1}, Contribution{100, 100, 2}});
	auto held = [&] {
		SeqSet s;
		h.engine.add_held(Stream::First, s);
		return s;
	};
	ASSERT_TRUE(h.run_until([&] { return !exists("hot") && !held().contains(2); }));
	EXPECT_EQ(h.counters.scan_passes, 0u) << "the pass was still running";
	EXPECT_TRUE(held().contains(1)) << "the globs still hold their own commit back";
	EXPECT_EQ(h.engine.min_held_seq(Stream::First), 1u);
	ASSERT_TRUE(h.delivered(Stream::First, 30000));
	EXPECT_TRUE(held().empty());
}

/* A tag's members hold back the commit of the tag, wherever they go. */
TEST_F(EngineTest, TagMembersHoldTheirTagsCommit)
{
	admin.command({"SADD", "tag:t", "m1", "m2"});
	set("m1");
	set("m2");
	admin.command({"CLIENT", "PAUSE", "200", "WRITE"});
	Target tag = make(TargetKind::Tag, "tag:t", false, 4);
	h.engine.submit_window({tag, make(TargetKind::Key, "other")}, Stream::First,
						   {Contribution{0, 0, 3}, Contribution{1, 1, 4}});
	SeqSet s;
	h.engine.add_held(Stream::First, s);
	EXPECT_TRUE(s.contains(3) && s.contains(4));
	ASSERT_TRUE(h.delivered());
	EXPECT_FALSE(exists("m1"));
	EXPECT_FALSE(exists("m2"));
}

TEST_F(EngineTest, FallbackJobsAndTheirFailures)
{
	set("app:1");
	set("app*x");
	set("other:1");
	Target prefix = make(TargetKind::Key, "app:*", true);
	prefix.job = 5;
	h.deliver({prefix});
	EXPECT_FALSE(exists("app:1"));
	EXPECT_TRUE(exists("app*x")) << "the prefix is matched literally";
	EXPECT_TRUE(exists("other:1"));
	EXPECT_TRUE(h.failed_jobs.empty());

	h.engine.submit_flushdb(Stream::First, 2, 6);
	ASSERT_TRUE(h.delivered());
	EXPECT_EQ(admin.command({"DBSIZE"}).integer, 0);

	/* An ACL without SCAN: the pass cannot run, the fallback is incomplete. */
	admin.command({"ACL", "SETUSER", "noscan", "on", ">pw", "~*", "+@all", "-scan"});
	RedisUrl url = server.url();
	url.user = "noscan";
	url.password = "pw";
	Harness limited(url);
	Target fallback = make(TargetKind::Key, "app:*", true);
	fallback.job = 9;
	limited.engine.submit({fallback}, Stream::First, 3);
	ASSERT_TRUE(limited.delivered());
	ASSERT_EQ(limited.failed_jobs.size(), 1u);
	EXPECT_EQ(limited.failed_jobs[0], 9u);
	admin.command({"ACL", "DELUSER", "noscan"});
}

TEST_F(EngineTest, NothingIsLostWhileRedisIsDown)
{
	RedisServer own;
	RedisClient own_admin;
	own_admin.connect(own.url(), RedisTimeouts{});
	Harness o(own.url());
	ASSERT_TRUE(o.run_until([&] { return o.engine.connected(); }));
	int port = own.port();
	own.stop();
	for (int i = 0; i < 100; i++)
		o.engine.submit({make(TargetKind::Key, "k" + std::to_string(i % 10))}, Stream::First, 10 + i);
	ASSERT_TRUE(o.run_until([&] { return !o.engine.connected() && o.counters.errors > 0; }));
	EXPECT_EQ(o.engine.min_held_seq(Stream::First), 10u);
	EXPECT_LE(o.engine.held_targets(), 10u) << "equal targets wait once";
	own.start_on(port);
	RedisClient again;
	again.connect(own.url(), RedisTimeouts{});
	for (int i = 0; i < 10; i++)
		again.command({"SET", "k" + std::to_string(i), "stale"});
	ASSERT_TRUE(o.delivered(Stream::First, 10000));
	EXPECT_EQ(again.command({"DBSIZE"}).integer, 0);
	EXPECT_GE(o.counters.reconnects, 1u);
	bool resumed = false;
	for (const std::string &l : o.logs)
		resumed = resumed || l.find("resumed") != std::string::npos;
	EXPECT_TRUE(resumed);
}

TEST_F(EngineTest, UnconfiguredEngineHoldsEverything)
{
	DeliveryEngine e(1);
	EngineSettings none;
	e.configure(none);
	e.submit({make(TargetKind::Key, "a")}, Stream::First, 4);
	EXPECT_EQ(e.min_held_seq(Stream::First), 4u);
	EXPECT_FALSE(e.connected());
	std::vector<PollEntry> entries;
	e.poll_entries(entries);
	EXPECT_TRUE(entries.empty()) << "connects to nothing nobody named";
	DroppedTargets dropped = e.drop_unsent();
	EXPECT_EQ(dropped.count, 1u);
	EXPECT_EQ(dropped.min_seq[0], 4u);
}

/* ---- Redis Cluster ---------------------------------------------------- */

namespace {

bool
exists_on(ClusterServers &c, int node, const std::string &key)
{
	return c.ask(node, {"EXISTS", key}).integer == 1;
}

/* A key whose slot node `node` serves. */
std::string
key_on(ClusterServers &c, int node, const std::string &stem)
{
	for (int i = 0;; i++) {
		std::string key = stem + std::to_string(i);
		if (c.owner(key_slot(key)) == node)
			return key;
	}
}

bool
logged(const Harness &h, const std::string &text)
{
	for (const std::string &l : h.logs)
		if (l.find(text) != std::string::npos)
			return true;
	return false;
}

} // namespace

/* Issue 21, item 1: a reload while a PUBLISH waits, before and after the slot map is known. */
TEST(ClusterEngine, AReloadWithAPublishWaitingKeepsIt)
{
	ClusterServers c(2);
	Subscriber subscriber(c.node(1).port(), "events");
	Harness h(c.url());
	h.settings.publish_channel = "events";
	h.reconfigure();
	/* No slot map yet: the message waits unrouted, and the reload must not route it to a lane. */
	h.engine.publish("{\"n\":1}", 1);
	h.settings.command_timeout_ms = 600;
	h.reconfigure();
	ASSERT_TRUE(h.delivered());
	Reply r = subscriber.next();
	ASSERT_EQ(r.type, Reply::Type::Array);
	EXPECT_EQ(r.elements[2].str, "{\"n\":1}");

	/* With the map known: the message is in a lane (queued or in flight) when the settings change. */
	ASSERT_TRUE(h.run_until([&] { return h.engine.connected(); }));
	h.engine.publish("{\"n\":2}", 2);
	h.settings.command_timeout_ms = 700;
	h.reconfigure();
	ASSERT_TRUE(h.delivered());
	r = subscriber.next();
	ASSERT_EQ(r.type, Reply::Type::Array);
	EXPECT_EQ(r.elements[2].str, "{\"n\":2}");
}

/* Issue 21, item 2: SPUBLISH follows the channel's slot when it moves. */
TEST(ClusterEngine, SpublishFollowsMoved)
{
	ClusterServers c(2);
	int slot = key_slot("events");
	int from = c.owner(slot), to = 1 - from;
	Harness h(c.url());
	h.settings.publish_channel = "events";
	h.settings.publish_sharded = true;
	h.reconfigure();
	ASSERT_TRUE(h.run_until([&] { return h.engine.connected(); }));
	c.move_slot(slot, from, to);
	Subscriber subscriber(c.node(to).port(), "events", "SSUBSCRIBE");
	h.engine.publish("{\"moved\":true}", 3);
	ASSERT_TRUE(h.delivered()) << h.last_error;
	Reply r = subscriber.next();
	ASSERT_EQ(r.type, Reply::Type::Array);
	EXPECT_EQ(r.elements[0].str, "smessage");
	EXPECT_EQ(r.elements[2].str, "{\"moved\":true}");
}

/* Issue 21, item 2: ASK sends the SPUBLISH once to the importing node, after ASKING. */
TEST(ClusterEngine, SpublishFollowsAsk)
{
	int slot = key_slot("events");
	FakeNode importing([](const std::vector<std::string> &argv) -> std::string {
		if (argv[0] == "ASKING")
			return "+OK\r\n";
		if (argv[0] == "SPUBLISH")
			return ":1\r\n";
		return "-ERR unexpected\r\n";
	});
	int importing_port = importing.port();
	std::unique_ptr<FakeNode> owner;
	owner = std::make_unique<FakeNode>([&](const std::vector<std::string> &argv) -> std::string {
		if (argv[0] == "CLUSTER")
			return FakeNode::slots_reply({{0, kClusterSlots - 1, owner->port()}});
		if (argv[0] == "SPUBLISH")
			return "-ASK " + std::to_string(slot) + " 127.0.0.1:" + std::to_string(importing_port) + "\r\n";
		return "-ERR unexpected\r\n";
	});
	Harness h(RedisUrl::parse("redis-cluster://127.0.0.1:" + std::to_string(owner->port())));
	h.settings.publish_channel = "events";
	h.settings.publish_sharded = true;
	h.reconfigure();
	h.engine.publish("m", 4);
	ASSERT_TRUE(h.delivered()) << h.last_error;
	std::vector<std::vector<std::string>> got = importing.received();
	std::vector<std::string> commands;
	for (const auto &argv : got)
		if (argv[0] != "PING")
			commands.push_back(argv[0]);
	EXPECT_EQ(commands, (std::vector<std::string>{"ASKING", "SPUBLISH"}));
}

/* Issue 21, item 2: a special is never retried forever, even when nodes keep redirecting it. */
TEST(ClusterEngine, ASpecialRedirectedInCirclesIsDropped)
{
	int slot = key_slot("events");
	std::unique_ptr<FakeNode> a, b;
	std::atomic<int> a_port{0}, b_port{0};
	auto node = [&](std::atomic<int> &other) {
		return [&](const std::vector<std::string> &argv) -> std::string {
			if (argv[0] == "CLUSTER")
				return FakeNode::slots_reply({{0, kClusterSlots - 1, a_port}});
			if (argv[0] == "SPUBLISH")
				return "-MOVED " + std::to_string(slot) + " 127.0.0.1:" + std::to_string(other) + "\r\n";
			return "-ERR unexpected\r\n";
		};
	};
	a = std::make_unique<FakeNode>(node(b_port));
	b = std::make_unique<FakeNode>(node(a_port));
	a_port = a->port();
	b_port = b->port();
	Harness h(RedisUrl::parse("redis-cluster://127.0.0.1:" + std::to_string(a_port)));
	h.settings.publish_channel = "events";
	h.settings.publish_sharded = true;
	h.reconfigure();
	h.engine.publish("m", 5);
	ASSERT_TRUE(h.delivered(Stream::First, 10000)) << "held forever";
	EXPECT_TRUE(logged(h, "redirected")) << "the drop is logged";
	EXPECT_GE(h.counters.errors, 1u);
}

/* Issue 21, item 2: a permanent refusal drops a PUBLISH, counted and logged. */
TEST(ClusterEngine, ARefusedPublishIsDropped)
{
	std::unique_ptr<FakeNode> owner;
	owner = std::make_unique<FakeNode>([&](const std::vector<std::string> &argv) -> std::string {
		if (argv[0] == "CLUSTER")
			return FakeNode::slots_reply({{0, kClusterSlots - 1, owner->port()}});
		if (argv[0] == "SPUBLISH")
			return "-NOPERM this user has no permissions to access the channel\r\n";
		return "-ERR unexpected\r\n";
	});
	Harness h(RedisUrl::parse("redis-cluster://127.0.0.1:" + std::to_string(owner->port())));
	h.settings.publish_channel = "events";
	h.settings.publish_sharded = true;
	h.reconfigure();
	h.engine.publish("m", 6);
	ASSERT_TRUE(h.delivered());
	EXPECT_TRUE(logged(h, "the message was dropped"));
	EXPECT_EQ(h.counters.errors, 1u);
}

/* Issue 21, item 4: "MOVED 3999 :6380" means the host we asked
 * (cluster-preferred-endpoint-type unknown-endpoint). */
TEST(ClusterEngine, RedirectsWithoutAHostGoToTheSameHost)
{
	ClusterServers c(2, {"--cluster-preferred-endpoint-type", "unknown-endpoint"});
	Harness h(c.url());
	ASSERT_TRUE(h.run_until([&] { return h.engine.connected(); }));
	std::string key = key_on(c, 0, "moving:");
	c.move_slot(key_slot(key), 0, 1); /* (an empty slot, as in a failover) */
	c.ask(1, {"SET", key, "cached"});
	Reply moved = c.ask(0, {"GET", key});
	ASSERT_EQ(moved.str.substr(0, 6), "MOVED ");
	ASSERT_NE(moved.str.find(" :"), std::string::npos) << "the node redirects without a host: " << moved.str;
	h.engine.submit({make(TargetKind::Key, key)}, Stream::First, 7);
	ASSERT_TRUE(h.delivered()) << h.last_error;
	EXPECT_FALSE(exists_on(c, 1, key));
}

/* Issue 21, item 7: the failover repeat window ends at the last healthy
 * contact with the old master, not when the failover is noticed. */
TEST(ClusterEngine, AFailoverRepeatsWhatTheOldMasterAcknowledgedLast)
{
	ClusterServers c(2);
	Harness h(c.url());
	h.settings.failover_repeat_ms = 300;
	h.reconfigure();
	std::string key = key_on(c, 1, "acked:");
	c.ask(1, {"SET", key, "cached"});
	h.engine.submit({make(TargetKind::Key, key)}, Stream::First, 8);
	ASSERT_TRUE(h.delivered());
	EXPECT_FALSE(exists_on(c, 1, key));
	/* The old master says nothing more for longer than the window (detection is slow)... */
	int64_t silent_until = monotonic_us() + 3 * 300 * 1000;
	ASSERT_TRUE(h.run_until([&] { return monotonic_us() > silent_until; }));
	/* ...then dies, and its successor never got the delete. */
	c.replace(1, 0);
	c.ask(0, {"SET", key, "stale"});
	ASSERT_TRUE(h.run_until([&] { return logged(h, "no longer serve slots"); }, 15000));
	ASSERT_TRUE(h.run_until([&] { return !exists_on(c, 0, key); }, 5000))
		<< "the delete acknowledged just before the last contact is repeated";
	EXPECT_GE(h.counters.failovers, 1u);
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

/*
 * Issue 22, item 9: slots that move while a SCAN pass runs may carry keys to
 * a node the pass has already scanned, so the pass runs again from the
 * start when it ends.
 */
TEST(ClusterEngine, APassDuringWhichSlotsMovedRunsAgain)
{
	ClusterServers c(2);
	std::set<int> used_slots;
	const int keys = 4000;
	for (int i = 0; i < keys; i++) {
		std::string key = "bulk:" + std::to_string(i);
		used_slots.insert(key_slot(key));
		c.ask(c.owner(key_slot(key)), {"SET", key, "x"});
	}
	/* A key in an empty slot of node 0, to be moved to node 1 mid-pass. */
	std::string moved;
	for (int i = 0; moved.empty(); i++) {
		std::string key = "moved:" + std::to_string(i);
		if (c.owner(key_slot(key)) == 0 && used_slots.count(key_slot(key)) == 0)
			moved = key;
	}
	Harness h(c.url());
	h.settings.scan_count = 20;
	h.reconfigure();
	ASSERT_TRUE(h.run_until([&] { return h.engine.connected(); }));
	/* No common literal prefix: every key comes back, so the pass is long. */
	h.engine.submit({make(TargetKind::Key, "*:never", true)}, Stream::First, 1);
	ASSERT_TRUE(h.run_until([&] { return h.counters.keys_scanned > 100; }));
	ASSERT_EQ(h.counters.scan_passes, 0u);
	c.move_slot(key_slot(moved), 0, 1);
	c.ask(1, {"SET", moved, "x"});
	/* The engine still thinks node 0 serves it: MOVED tells it otherwise. */
	h.engine.submit({make(TargetKind::Key, moved)}, Stream::First, 2);
	ASSERT_TRUE(h.delivered(Stream::First, 60000));
	EXPECT_FALSE(exists_on(c, 1, moved));
	EXPECT_TRUE(logged(h, "slots moved during a SCAN pass")) << "the pass was not run again";
	EXPECT_EQ(h.counters.scan_passes, 1u);
	EXPECT_GE(h.counters.keys_scanned, static_cast<uint64_t>(keys + 100)) << "the second pass saw every key again";
}

/* ---- counts (cachebust.clear()'s first step) -------------------------- */

namespace {

/* Runs the engine until count id is settled; its progress then. */
CountProgress
settled_count(Harness &h, uint64_t id, int timeout_ms = 10000)
{
	CountProgress p;
	bool settled = h.run_until([&] { return h.engine.count_progress(id, p) && p.settled(); }, timeout_ms);
	EXPECT_TRUE(settled) << "the count did not settle";
	return p;
}

} // namespace

TEST_F(EngineTest, ACountCountsTheMatchingKeysAndTouchesNone)
{
	for (int i = 0; i < 150; i++)
		set("app:user:" + std::to_string(i));
	for (int i = 0; i < 40; i++)
		set("app:team:" + std::to_string(i));
	set("other:user:1");
	h.settings.scan_count = 20; /* several SCAN calls */
	h.reconfigure();
	ASSERT_TRUE(h.run_until([&] { return h.engine.connected(); }));
	std::string why;
	ASSERT_TRUE(h.engine.start_count(7, "app:user:*", 100000, why)) << why;
	CountProgress p = settled_count(h, 7);
	EXPECT_EQ(p.state, CountProgress::State::Complete);
	EXPECT_EQ(p.matched, 150u);
	EXPECT_EQ(admin.command({"DBSIZE"}).integer, 191) << "a count removes nothing";
	EXPECT_EQ(h.counters.scan_passes, 0u) << "a count is no invalidation pass";
	h.engine.end_count(7);
	EXPECT_FALSE(h.engine.count_progress(7, p)) << "an ended count is forgotten";
}

TEST_F(EngineTest, ACountStopsAtItsLimit)
{
	for (int i = 0; i < 300; i++)
		set("app:user:" + std::to_string(i));
	h.settings.scan_count = 10;
	h.reconfigure();
	ASSERT_TRUE(h.run_until([&] { return h.engine.connected(); }));
	std::string why;
	ASSERT_TRUE(h.engine.start_count(1, "app:*", 25, why));
	ASSERT_TRUE(h.engine.start_count(2, "app:user:1*", 1000, why));
	CountProgress limited = settled_count(h, 1);
	EXPECT_EQ(limited.state, CountProgress::State::Limited);
	EXPECT_EQ(limited.matched, 25u);
	CountProgress complete = settled_count(h, 2);
	EXPECT_EQ(complete.state, CountProgress::State::Complete) << "another count of the same pass goes on";
	EXPECT_EQ(complete.matched, 111u); /* 1, 10-19, 100-199 */
}

/* A count runs in a pass of its own: it does not wait for a long
 * invalidation pass, nor does the invalidation pass wait for it. */
TEST_F(EngineTest, ACountDoesNotWaitForARunningPass)
{
	std::vector<Command> fill;
	for (int i = 0; i < 20; i++) {
		Command mset = {"MSET"};
		for (int j = 0; j < 1000; j++) {
			mset.push_back("bulk:" + std::to_string(i * 1000 + j));
			mset.push_back("x");
		}
		fill.push_back(mset);
	}
	admin.pipeline(fill);
	for (int i = 0; i < 5; i++)
		set("app:user:" + std::to_string(i));
	h.settings.scan_count = 20;
	h.reconfigure();
	/* No common prefix: a long pass over every key. */
	h.engine.submit({make(TargetKind::Key, "*:never", true)}, Stream::First, 1);
	ASSERT_TRUE(h.run_until([&] { return h.counters.keys_scanned > 100; }));
	std::string why;
	ASSERT_TRUE(h.engine.start_count(3, "app:user:*", 100000, why)) << why;
	CountProgress p;
	ASSERT_TRUE(h.engine.count_progress(3, p));
	EXPECT_EQ(p.state, CountProgress::State::Counting) << "the count started at once";
	EXPECT_EQ(h.counters.scan_passes, 0u) << "... while the invalidation pass runs";
	p = settled_count(h, 3, 30000);
	EXPECT_EQ(p.matched, 5u);
	ASSERT_TRUE(h.delivered(Stream::First, 60000));
	EXPECT_EQ(h.counters.scan_passes, 1u);
	EXPECT_TRUE(exists("app:user:0"));
}

TEST_F(EngineTest, ACountNeedsARedisToAsk)
{
	DeliveryEngine e(1);
	EngineSettings none;
	e.configure(none);
	std::string why;
	EXPECT_FALSE(e.start_count(1, "app:*", 10, why));
	EXPECT_NE(why.find("redis_url is not set"), std::string::npos) << why;
	CountProgress p;
	EXPECT_FALSE(e.count_progress(1, p));

	RedisUrl down = RedisUrl::parse("redis://127.0.0.1:1");
	Harness unreachable(down);
	why.clear();
	EXPECT_FALSE(unreachable.engine.start_count(1, "app:*", 10, why));
	EXPECT_NE(why.find("not connected"), std::string::npos) << why;
}

/* An ended count that is still counting stops its pass (nobody waits for it). */
TEST_F(EngineTest, AnEndedCountStopsItsPass)
{
	std::vector<Command> fill;
	for (int i = 0; i < 10; i++) {
		Command mset = {"MSET"};
		for (int j = 0; j < 1000; j++) {
			mset.push_back("app:bulk:" + std::to_string(i * 1000 + j));
			mset.push_back("x");
		}
		fill.push_back(mset);
	}
	admin.pipeline(fill);
	h.settings.scan_count = 10;
	h.reconfigure();
	ASSERT_TRUE(h.run_until([&] { return h.engine.connected(); }));
	std::string why;
	ASSERT_TRUE(h.engine.start_count(4, "app:*", 1000000, why));
	ASSERT_TRUE(h.run_until([&] { return h.counters.keys_scanned > 100; }));
	h.engine.end_count(4);
	uint64_t scanned = h.counters.keys_scanned;
	/* A reply in flight may still come; nothing after it. */
	h.run_until([] { return false; }, 200);
	EXPECT_LE(h.counters.keys_scanned, scanned + 10);
	CountProgress p;
	EXPECT_FALSE(h.engine.count_progress(4, p));
}

TEST(ClusterEngine, ACountVisitsEveryMaster)
{
	ClusterServers c(3);
	int per_node[3] = {0, 0, 0};
	for (int i = 0; i < 300; i++) {
		std::string key = "app:user:" + std::to_string(i);
		int node = c.owner(key_slot(key));
		per_node[node]++;
		c.ask(node, {"SET", key, "x"});
	}
	for (int n = 0; n < 3; n++)
		ASSERT_GT(per_node[n], 0) << "every master holds some";
	Harness h(c.url());
	h.settings.scan_count = 20;
	h.reconfigure();
	ASSERT_TRUE(h.run_until([&] { return h.engine.connected(); }));
	std::string why;
	ASSERT_TRUE(h.engine.start_count(9, "app:user:*", 100000, why)) << why;
	CountProgress p = settled_count(h, 9);
	EXPECT_EQ(p.state, CountProgress::State::Complete);
	EXPECT_EQ(p.matched, 300u);
	EXPECT_TRUE(exists_on(c, c.owner(key_slot("app:user:0")), "app:user:0"));
}
