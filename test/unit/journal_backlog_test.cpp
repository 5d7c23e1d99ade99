/*
 * journal_backlog_test.cpp — what the worker reads back from the WAL
 * journal instead of running the fallback, and how far back it keeps WAL.
 * The dispatcher cases deliver to a real redis-server.
 */
#include <poll.h>

#include <gtest/gtest.h>

#include "core/batch_codec.hpp"
#include "core/delivery/dispatcher.hpp"
#include "core/delivery/journal_backlog.hpp"
#include "redis_client.hpp"
#include "redis_server.hpp"

using namespace cachebust;
using cachebust::test::RedisServer;

TEST(LsnHorizon, KeepsTheOldestFirstMessageOfWhatIsNotDelivered)
{
	LsnHorizon h;
	EXPECT_EQ(h.oldest(), 0u);
	h.add(1, 500);
	h.add(2, 300); /* a long transaction: its first message came earlier */
	h.add(3, 700);
	h.add(4, 0); /* wrote nothing to keep */
	EXPECT_EQ(h.oldest(), 300u);
	h.release_upto(1);
	EXPECT_EQ(h.oldest(), 300u) << "commit 2 is still held";
	h.release_upto(2);
	EXPECT_EQ(h.oldest(), 700u);
	h.release_upto(4);
	EXPECT_EQ(h.oldest(), 0u);
}

TEST(JournalGap, ClosesOnlyOnceItsCommitsAndTheWalBeforeTheNewSlotAreDelivered)
{
	JournalGap gap;
	EXPECT_FALSE(gap.is_open());
	EXPECT_TRUE(gap.covered(SeqSet(1, 5), false, 0)) << "no gap: nothing to wait for";

	/* The slot lost its WAL while commits up to 10 were held; made again at LSN 5000. */
	gap.open(10, 0);
	gap.open(0, 5000);
	EXPECT_TRUE(gap.is_open());
	EXPECT_FALSE(gap.covered(SeqSet(7, 12), false, 9000)) << "commit 7 is still held";
	EXPECT_FALSE(gap.covered(SeqSet(10), false, 9000)) << "the last commit of the gap is still held";
	EXPECT_FALSE(gap.covered(SeqSet(11, 12), false, 4000)) << "something committed before the new slot is not delivered";
	EXPECT_FALSE(gap.covered(SeqSet(11, 12), false, 0)) << "not known now";
	EXPECT_FALSE(gap.covered(SeqSet(), true, 9000)) << "an uncovered commit is lost to a replay too";
	EXPECT_TRUE(gap.covered(SeqSet(11, 12), false, 5000));
	EXPECT_TRUE(gap.covered(SeqSet(), false, 5000));

	/* Widened, never narrowed. */
	gap.open(20, 3000);
	EXPECT_FALSE(gap.covered(SeqSet(15), false, 5000));
	EXPECT_FALSE(gap.covered(SeqSet(), false, 4000)) << "the later slot position stays";
	gap.close();
	EXPECT_FALSE(gap.is_open());
}

TEST(JournalGap, TheFallbackForThePreviousRunHoldsItOpen)
{
	/* At start, not replayable: seq 0 stands for the previous run until its fallback ran. */
	JournalGap gap;
	gap.open(kReplaySeq, 0);
	EXPECT_FALSE(gap.covered(SeqSet(kReplaySeq), false, 100));
	EXPECT_FALSE(gap.covered(SeqSet(kReplaySeq, 3), false, 100));
	EXPECT_TRUE(gap.covered(SeqSet(1, 3), false, 0)) << "no slot position to wait for";
}

TEST(LsnHorizon, StaysBoundedAndNeverReleasesTooEarly)
{
	LsnHorizon h;
	for (uint64_t seq = 1; seq <= 100000; seq++)
		h.add(seq, 1000 + seq);
	EXPECT_LE(h.size(), LsnHorizon::kMaxEntries + 1);
	for (uint64_t delivered = 0; delivered < 100000; delivered += 997) {
		h.release_upto(delivered);
		/* Commit delivered + 1 is held: its LSN must still be kept. */
		EXPECT_LE(h.oldest(), 1000 + delivered + 1) << "released past an undelivered commit at " << delivered;
		EXPECT_NE(h.oldest(), 0u);
	}
}

TEST(JournalBacklog, GrowsAndRestartsWhenItMustReadEarlierWal)
{
	JournalBacklog b;
	EXPECT_FALSE(b.active());
	b.add(1000, 2000, SeqSet(5), "why");
	EXPECT_TRUE(b.active());
	EXPECT_TRUE(b.restart_needed());
	b.started_reading(1000);
	EXPECT_FALSE(b.read_to(1500));
	b.add(1600, 3000, SeqSet(6), "later");
	EXPECT_FALSE(b.restart_needed()) << "still ahead of the reader";
	EXPECT_EQ(b.to(), 3000u);
	b.add(1200, 1300, SeqSet(7), "behind the reader");
	EXPECT_TRUE(b.restart_needed());
	EXPECT_EQ(b.from(), 1000u);
	b.started_reading(1000);
	EXPECT_TRUE(b.read_to(3000));
	EXPECT_TRUE(b.seqs().contains(5) && b.seqs().contains(6) && b.seqs().contains(7));
	EXPECT_EQ(b.why(), "why");
	b.finish();
	EXPECT_FALSE(b.active());
}

namespace {

struct FakeHost : DispatcherHost {
	std::vector<LogLine> lines;
	PrefixList prefixes{{"app:"}, false};
	void log(const LogLine &line) override { lines.push_back(line); }
	PrefixList registered_prefixes() override { return prefixes; }
	uint64_t wal_insert_lsn() override { return 1000; }
	StandbyReplay standby_replay(std::vector<std::string> &) override { return StandbyReplay{}; }
	bool logged(const std::string &part) const
	{
		for (const LogLine &l : lines)
			if (l.message.find(part) != std::string::npos)
				return true;
		return false;
	}
};

Target
key(const std::string &k)
{
	Target t;
	t.key = k;
	t.prefix_len = 4; /* "app:" */
	return t;
}

std::string
ring_batch(uint64_t seq, std::vector<Target> targets, uint64_t first_lsn, uint64_t commit_lsn, uint32_t flags = 0)
{
	std::string b = encode_targets(targets, flags);
	stamp_batch(b.data(), seq, 1, commit_lsn, first_lsn);
	return b;
}

class JournalDispatch : public ::testing::Test
{
  protected:
	void SetUp() override
	{
		admin.connect(server.url(), RedisTimeouts{});
		admin.command({"FLUSHALL"});
		DispatcherSettings s;
		s.window.debounce_us = 1000;
		s.journal = true;
		s.max_pending = 10;
		settings = s;
		engine.configured = true;
		engine.url = server.url();
		engine.retry_max_ms = 100;
		d.configure(settings, engine);
	}

	void set(const std::string &k) { admin.command({"SET", k, "cached"}); }
	bool exists(const std::string &k) { return admin.command({"EXISTS", k}).integer == 1; }

	/* The worker's loop, without PostgreSQL, until done() (false after 5 s). */
	template <typename Done>
	bool run_until(Done done)
	{
		int64_t deadline = monotonic_us() + 5000000;
		for (;;) {
			d.turn(monotonic_us(), 0);
			if (done())
				return true;
			if (monotonic_us() > deadline)
				return false;
			std::vector<PollEntry> entries;
			d.engine().poll_entries(entries);
			std::vector<pollfd> fds;
			for (const PollEntry &e : entries)
				fds.push_back(pollfd{e.fd, static_cast<short>((e.read ? POLLIN : 0) | (e.write ? POLLOUT : 0)), 0});
			if (poll(fds.data(), fds.size(), 2) > 0)
				for (const pollfd &p : fds)
					if (p.revents != 0)
						d.engine().on_io(p.fd, (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0,
										 (p.revents & POLLOUT) != 0);
			d.engine().on_timer();
		}
	}

	static RedisServer server;
	RedisClient admin;
	FakeHost host;
	Dispatcher d{host, 1};
	DispatcherSettings settings;
	EngineSettings engine;
};

RedisServer JournalDispatch::server;

} // namespace

/* A transaction too large for the ring leaves a marker; its targets come from WAL, no fallback. */
TEST_F(JournalDispatch, AnOversizedTransactionIsReadBackNotCoveredByTheFallback)
{
	set("app:untouched");
	set("app:big:1");
	d.add_drained(ring_batch(1, {key("app:")}, 4000, 9000, kBatchLost), 1, monotonic_us());
	d.turn(monotonic_us(), 0);
	EXPECT_TRUE(d.journal_wants_read());
	EXPECT_EQ(d.journal_backlog().from(), 4000u);
	EXPECT_EQ(d.journal_backlog().to(), 9000u);
	EXPECT_TRUE(d.held().contains(1)) << "the commit waits for its read";
	EXPECT_EQ(d.journal_restart_lsn(), 4000u) << "the slot must keep the transaction's first message";

	/* What the worker's reader finds there. */
	d.journal_backlog().started_reading(4000);
	d.add_replayed({key("app:big:1")}, 9000, monotonic_us());
	d.journal_backlog().read_to(9000);
	ASSERT_TRUE(run_until([&] { return !d.journal_backlog().active(); }));
	EXPECT_FALSE(exists("app:big:1"));
	EXPECT_TRUE(exists("app:untouched")) << "a fallback ran";
	EXPECT_FALSE(d.held().contains(1));
	EXPECT_EQ(d.delivered_seq(), 1u);
	DispatchCounters c = d.take_counters();
	EXPECT_EQ(c.fallbacks, 0u);
	EXPECT_EQ(c.journal_replayed_batches, 1u);
	EXPECT_TRUE(host.logged("journal replay started"));
	EXPECT_TRUE(host.logged("journal replay done"));
}

/* Without the journal the same marker runs the fallback (the control). */
TEST_F(JournalDispatch, WithoutTheJournalAnOversizedTransactionFallsBack)
{
	settings.journal = false;
	d.configure(settings, engine);
	set("app:untouched");
	d.add_drained(ring_batch(1, {key("app:")}, 0, 9000, kBatchLost), 1, monotonic_us());
	ASSERT_TRUE(run_until([&] { return d.delivered_seq() == 1; }));
	EXPECT_FALSE(exists("app:untouched"));
	EXPECT_EQ(d.take_counters().fallbacks, 1u);
}

/* Redis away with more than max_pending waiting: memory is let go, the
 * backlog is read from WAL once Redis is back, nothing falls back. */
TEST_F(JournalDispatch, MoreThanMaxPendingIsLetGoAndReadBackLater)
{
	server.stop();
	uint64_t seq = 0;
	for (int i = 0; i < 30; i++) {
		seq++;
		d.add_drained(ring_batch(seq, {key("app:k" + std::to_string(i))}, 100 * seq, 100 * seq + 50), seq,
					  monotonic_us());
		d.turn(monotonic_us() + 2000 * seq, 0);
	}
	EXPECT_LE(d.pending_targets(), settings.max_pending) << "memory is bounded by max_pending";
	EXPECT_TRUE(d.journal_backlog().active());
	EXPECT_LE(d.journal_backlog().from(), 100u) << "the backlog starts at the oldest undelivered message";
	EXPECT_GE(d.journal_backlog().to(), 30 * 100u + 50);
	EXPECT_EQ(d.journal_restart_lsn(), d.journal_backlog().from());
	for (uint64_t s = 1; s <= 30; s++)
		EXPECT_TRUE(d.held().contains(s)) << s;
	EXPECT_EQ(d.take_counters().fallbacks, 0u);

	server.start_on(server.port());
	admin.connect(server.url(), RedisTimeouts{});
	set("app:untouched");
	for (int i = 0; i < 30; i++)
		set("app:k" + std::to_string(i));

	/* The reader, bounded by journal_wants_read(): five commits per call. */
	JournalBacklog &b = d.journal_backlog();
	int next = 0;
	ASSERT_TRUE(run_until([&] {
		if (d.journal_wants_read()) {
			if (b.restart_needed()) {
				b.started_reading(b.from());
				next = 0;
			}
			for (int n = 0; n < 5 && next < 30; n++, next++)
				d.add_replayed({key("app:k" + std::to_string(next))}, 100 * (next + 1) + 50, monotonic_us());
			b.read_to(next == 30 ? b.to() : 100 * (next + 1));
		}
		EXPECT_LE(d.pending_targets(), settings.max_pending);
		return !b.active();
	}));
	for (int i = 0; i < 30; i++)
		EXPECT_FALSE(exists("app:k" + std::to_string(i))) << i;
	EXPECT_TRUE(exists("app:untouched"));
	EXPECT_EQ(d.delivered_seq(), 30u);
	EXPECT_EQ(d.take_counters().fallbacks, 0u);
}

/* The WAL a read needs is gone: the fallback covers its commits, said. */
TEST_F(JournalDispatch, LostWalFallsBack)
{
	set("app:untouched");
	d.read_journal(100, 200, SeqSet(0), "the previous run of the server: test");
	EXPECT_TRUE(d.held().contains(0) || d.delivered_seq() == 0);
	d.journal_lost("requested WAL segment has already been removed");
	ASSERT_TRUE(run_until([&] { return !exists("app:untouched"); }));
	EXPECT_EQ(d.take_counters().fallbacks, 1u);
	EXPECT_TRUE(host.logged("journal replay failed"));
}

/* One replayed transaction larger than max_pending is delivered, not let go
 * and read again for ever. */
TEST_F(JournalDispatch, AReplayedTransactionLargerThanMaxPendingIsDeliveredOnce)
{
	d.read_journal(100, 200, SeqSet(0), "test");
	d.journal_backlog().started_reading(100);
	std::vector<Target> many;
	for (int i = 0; i < 30; i++) {
		set("app:big:" + std::to_string(i));
		many.push_back(key("app:big:" + std::to_string(i)));
	}
	d.add_replayed(std::move(many), 150, monotonic_us());
	d.journal_backlog().read_to(200);
	ASSERT_TRUE(run_until([&] { return !d.journal_backlog().active(); }));
	EXPECT_FALSE(exists("app:big:29"));
	EXPECT_FALSE(host.logged("lets them go"));
}

/* A standby reading replayed WAL throttles itself: more than max_pending
 * waiting is neither let go nor covered by a fallback. */
TEST_F(JournalDispatch, AThrottledSourceIsNeverLetGoNorCovered)
{
	settings.source_throttled = true;
	d.configure(settings, engine);
	server.stop();
	for (uint64_t seq = 1; seq <= 30; seq++) {
		d.add_drained(ring_batch(seq, {key("app:s" + std::to_string(seq))}, 100 * seq, 100 * seq + 50), seq,
					  monotonic_us());
		d.turn(monotonic_us() + 2000 * seq, 0);
	}
	EXPECT_FALSE(d.journal_backlog().active());
	EXPECT_EQ(d.pending_targets(), 30u) << "held until Redis is back";
	EXPECT_EQ(d.take_counters().fallbacks, 0u);
	EXPECT_EQ(d.journal_restart_lsn(), 100u) << "the slot stays at the oldest undelivered commit";
	server.start_on(server.port());
	admin.connect(server.url(), RedisTimeouts{});
	ASSERT_TRUE(run_until([&] { return d.delivered_seq() == 30; }));
}
