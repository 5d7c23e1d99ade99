/*
 * refresh_waits_test.cpp — materialized keys' refresh requests: taken out of
 * closed windows, held until their refresh worker reports them done, and
 * removed instead when nobody takes them or they take too long.
 */
#include <gtest/gtest.h>

#include <map>

#include "core/batch_codec.hpp"
#include "core/delivery/dispatcher.hpp"
#include "core/delivery/refresh_waits.hpp"

using namespace cachebust;

namespace {

Target
key(const std::string &k)
{
	Target t;
	t.key = k;
	return t;
}

Target
refresh(const std::string &k, uint32_t database = 5, uint32_t prefix_len = 0)
{
	Target t;
	t.kind = TargetKind::Refresh;
	t.key = k;
	t.database = database;
	t.prefix_len = prefix_len;
	return t;
}

/* Refresh workers as shared memory shows them: a generation per request, done when told. */
struct FakeRefreshHost : RefreshHost {
	bool available = true;
	uint64_t next_generation = 0;
	std::map<std::string, uint64_t> requested, done;
	std::vector<std::string> forgotten;
	bool taken = false; /* the worker took the last request: the next one needs a new generation */
	uint64_t request_refresh(uint32_t, const std::string &k) override
	{
		if (!available)
			return 0;
		if (requested[k] == 0 || taken || requested[k] <= done[k]) {
			requested[k] = ++next_generation;
			taken = false;
		}
		return requested[k];
	}
	uint64_t refresh_done(uint32_t, const std::string &k) override { return done[k]; }
	void refresh_forget(uint32_t, const std::string &k) override { forgotten.push_back(k); }
};

} // namespace

TEST(SplitRefreshes, TakesRefreshesOutAndKeepsTheOthersContributions)
{
	/* positions: 0 a, 1 R(x), 2 b, 3 R(y), 4 c; commits 10 gave 0..2, 11 gave 1..4 */
	std::vector<Target> targets{key("a"), refresh("x"), key("b"), refresh("y"), key("c")};
	std::vector<Contribution> from{{0, 2, 10}, {1, 4, 11}};
	std::vector<RefreshNeed> needs = split_refreshes(targets, from);

	ASSERT_EQ(targets.size(), 3u);
	EXPECT_EQ(targets[0].key, "a");
	EXPECT_EQ(targets[1].key, "b");
	EXPECT_EQ(targets[2].key, "c");
	ASSERT_EQ(needs.size(), 2u);
	EXPECT_EQ(needs[0].target.key, "x");
	EXPECT_TRUE(needs[0].seqs.contains(10) && needs[0].seqs.contains(11));
	EXPECT_EQ(needs[0].commits, 2u);
	EXPECT_EQ(needs[1].target.key, "y");
	EXPECT_TRUE(needs[1].seqs.contains(11) && !needs[1].seqs.contains(10));

	/* a,b from 10; b,c from 11 (positions after the split, adjacent ones in one) */
	ASSERT_EQ(from.size(), 2u);
	EXPECT_EQ(from[0].lo, 0u);
	EXPECT_EQ(from[0].hi, 1u);
	EXPECT_EQ(from[0].seq, 10u);
	EXPECT_EQ(from[1].lo, 1u);
	EXPECT_EQ(from[1].hi, 2u);
	EXPECT_EQ(from[1].seq, 11u);
}

TEST(SplitRefreshes, WithoutRefreshesNothingChanges)
{
	std::vector<Target> targets{key("a"), key("b")};
	std::vector<Contribution> from{{0, 1, 3}};
	EXPECT_TRUE(split_refreshes(targets, from).empty());
	EXPECT_EQ(targets.size(), 2u);
	ASSERT_EQ(from.size(), 1u);
	EXPECT_EQ(from[0].hi, 1u);
}

TEST(RefreshWaits, HeldUntilTheGenerationIsDone)
{
	FakeRefreshHost host;
	RefreshWaits waits;
	ASSERT_TRUE(waits.add(RefreshNeed{refresh("x"), SeqSet(3, 4), 2}, 0, host));
	std::vector<RefreshNeed> expired;
	waits.poll(1000, 0, host, expired);
	SeqSet held;
	waits.add_held(held);
	EXPECT_TRUE(held.contains(3) && held.contains(4));

	/* The worker took generation 1; a commit after that needs generation 2. */
	host.taken = true;
	ASSERT_TRUE(waits.add(RefreshNeed{refresh("x"), SeqSet(7), 1}, 2000, host));
	host.done["x"] = 1;
	waits.poll(3000, 0, host, expired);
	held.clear();
	waits.add_held(held);
	EXPECT_FALSE(held.contains(3)) << "generation 1 is done";
	EXPECT_TRUE(held.contains(7)) << "a commit after the worker took its request waits for the next one";
	EXPECT_TRUE(host.forgotten.empty());

	host.done["x"] = 2;
	waits.poll(4000, 0, host, expired);
	EXPECT_TRUE(waits.empty());
	EXPECT_TRUE(expired.empty());
	ASSERT_EQ(host.forgotten.size(), 1u);
	RefreshWaits::Counters c = waits.take_counters();
	EXPECT_EQ(c.requested, 2u);
	EXPECT_EQ(c.done, 2u);
	EXPECT_EQ(c.coalesced, 1u) << "two commits asked once";
}

TEST(RefreshWaits, RequestsNotTakenYetRideOnTheWaitingOne)
{
	FakeRefreshHost host;
	RefreshWaits waits;
	waits.add(RefreshNeed{refresh("x"), SeqSet(1), 1}, 0, host);
	waits.add(RefreshNeed{refresh("x"), SeqSet(2), 1}, 10, host);
	EXPECT_EQ(host.next_generation, 1u);
	host.done["x"] = 1;
	std::vector<RefreshNeed> expired;
	waits.poll(20, 0, host, expired);
	EXPECT_TRUE(waits.empty());
	EXPECT_EQ(waits.take_counters().coalesced, 1u);
}

TEST(RefreshWaits, NobodyToAskOrTooLateRemovesTheKey)
{
	FakeRefreshHost host;
	RefreshWaits waits;
	waits.set_timeout_us(1000);
	host.available = false;
	EXPECT_FALSE(waits.add(RefreshNeed{refresh("x"), SeqSet(1), 1}, 0, host));
	host.available = true;
	ASSERT_TRUE(waits.add(RefreshNeed{refresh("y", 5, 2), SeqSet(2), 1}, 0, host));
	host.taken = true;
	ASSERT_TRUE(waits.add(RefreshNeed{refresh("y", 5, 2), SeqSet(3), 1}, 500, host));
	EXPECT_EQ(waits.next_expiry_us(), 1000);
	std::vector<RefreshNeed> expired;
	waits.poll(999, 0, host, expired);
	EXPECT_TRUE(expired.empty());
	waits.poll(1000, 0, host, expired);
	ASSERT_EQ(expired.size(), 1u);
	EXPECT_TRUE(expired[0].seqs.contains(2) && expired[0].seqs.contains(3)) << "the removal covers every request";
	Target removal = removal_of(expired[0].target);
	EXPECT_EQ(removal.kind, TargetKind::Key);
	EXPECT_EQ(removal.key, "y");
	EXPECT_EQ(removal.prefix_len, 2u);
	EXPECT_TRUE(waits.empty());
	EXPECT_EQ(waits.take_counters().removed, 2u);
}

TEST(RefreshCodec, DatabaseTravelsThroughTheRingAndTheJournal)
{
	std::vector<Target> targets{refresh("app:dash", 16384, 4), key("app:user:1")};
	DecodedBatch batch;
	std::string ring = encode_targets(targets, 0);
	decode_batch(ring.data(), ring.size(), batch);
	ASSERT_EQ(batch.targets.size(), 2u);
	EXPECT_EQ(batch.targets[0].kind, TargetKind::Refresh);
	EXPECT_EQ(batch.targets[0].database, 16384u);
	EXPECT_EQ(batch.targets[0].prefix_len, 4u);
	EXPECT_EQ(batch.targets[1].database, 0u);

	PendingSet pending;
	pending.add(refresh("app:dash", 16384, 4), 1);
	std::string message;
	encode_journal_into(pending, 0, message);
	std::vector<Target> decoded;
	decode_journal_message(message.data(), message.size(), decoded);
	ASSERT_EQ(decoded.size(), 1u);
	EXPECT_EQ(decoded[0].kind, TargetKind::Refresh);
	EXPECT_EQ(decoded[0].database, 16384u);

	/* A refresh without a database is not a refresh. */
	Target bad = refresh("k", 0);
	std::string bad_ring = encode_targets({bad}, 0);
	EXPECT_THROW(decode_batch(bad_ring.data(), bad_ring.size(), batch), std::runtime_error);
	/* Set targets never travel. */
	Target set = key("k");
	set.kind = TargetKind::Set;
	std::string set_ring = encode_targets({set}, 0);
	EXPECT_THROW(decode_batch(set_ring.data(), set_ring.size(), batch), std::runtime_error);
}

namespace {

struct RefreshingHost : DispatcherHost {
	FakeRefreshHost refresh;
	void log(const LogLine &) override {}
	PrefixList registered_prefixes() override { return PrefixList{}; }
	uint64_t wal_insert_lsn() override { return 0; }
	StandbyReplay standby_replay(std::vector<std::string> &) override { return StandbyReplay{}; }
	uint64_t request_refresh(uint32_t d, const std::string &k) override { return refresh.request_refresh(d, k); }
	uint64_t refresh_done(uint32_t d, const std::string &k) override { return refresh.refresh_done(d, k); }
	void refresh_forget(uint32_t d, const std::string &k) override { refresh.refresh_forget(d, k); }
};

std::string
ring_batch(uint64_t seq, std::vector<Target> targets)
{
	std::string b = encode_targets(targets, 0);
	stamp_batch(b.data(), seq, 0, 0);
	return b;
}

} // namespace

/* A commit whose only target is a refresh is delivered when the refresh is done, not when the window closes. */
TEST(RefreshWaits, TheDispatcherHoldsTheCommitUntilTheRefreshIsDone)
{
	RefreshingHost host;
	Dispatcher d(host, 1);
	DispatcherSettings s;
	s.window.debounce_us = 100;
	d.configure(s, EngineSettings());
	d.add_drained(ring_batch(1, {refresh("dash")}) + ring_batch(2, {refresh("dash")}), 2, 0);
	d.turn(100, 0);
	EXPECT_EQ(host.refresh.next_generation, 1u) << "two commits in one window: one request";
	EXPECT_EQ(d.delivered_seq(), 0u);
	EXPECT_FALSE(d.all_delivered());
	EXPECT_EQ(d.engine().held_targets(), 0u) << "a refresh target is not sent to Redis";

	host.refresh.done["dash"] = 1;
	d.poll_refreshes(200, 0);
	d.turn(200, 0);
	EXPECT_EQ(d.delivered_seq(), 2u);
	EXPECT_TRUE(d.all_delivered());
}

/* Without refresh workers (a standby, the default host) the key is removed. */
TEST(RefreshWaits, WithoutRefreshWorkersTheKeyIsRemoved)
{
	RefreshingHost host;
	host.refresh.available = false;
	Dispatcher d(host, 1);
	DispatcherSettings s;
	s.window.debounce_us = 100;
	d.configure(s, EngineSettings());
	d.add_drained(ring_batch(1, {refresh("dash")}), 1, 0);
	d.turn(100, 0);
	EXPECT_EQ(d.engine().held_targets(), 1u) << "an UNLINK waits for Redis instead";
	EXPECT_EQ(d.delivered_seq(), 0u);
}

/* With redelete_ms a materialized key's second send is its refresh run again
 * (a reader's late refill); the latency counts from the commit. */
TEST(RefreshWaits, RedeleteRunsTheRefreshAgainAndLatencyCountsFromTheCommit)
{
	RefreshingHost host;
	Dispatcher d(host, 1);
	DispatcherSettings s;
	s.window.debounce_us = 100;
	s.redelete_ms = 1;
	d.configure(s, EngineSettings());
	const int64_t committed = 800000000000000;
	std::string b = encode_targets({refresh("dash")}, 0);
	stamp_batch(b.data(), 1, committed, 0);
	d.add_drained(b, 1, 0);
	d.turn(100, committed + 1000);
	ASSERT_EQ(host.refresh.next_generation, 1u);
	host.refresh.done["dash"] = 1;
	d.turn(200, committed + 7000);
	EXPECT_EQ(d.delivered_seq(), 1u);
	DispatchCounters c = d.take_counters();
	EXPECT_EQ(c.refreshes.latency.count(), 1u);
	EXPECT_EQ(c.refreshes.latency.max(), 7000u) << "from the commit, not from the request";

	d.turn(1100, committed + 8000);
	EXPECT_EQ(host.refresh.next_generation, 2u) << "the redelete asked for the refresh again";
	EXPECT_EQ(d.engine().held_targets(), 0u) << "and sent nothing to Redis itself";
	EXPECT_EQ(d.delivered_seq(), 1u);
}
