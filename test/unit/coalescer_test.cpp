/* Unit tests: deduplication and the debounce window (DESIGN.md promise 2). */
#include "core/coalescer.hpp"

#include <algorithm>

#include <gtest/gtest.h>

using namespace cachebust;

static Target
key(std::string k, bool immediate = false)
{
	Target t;
	t.key = std::move(k);
	t.immediate = immediate;
	return t;
}

static const WindowPolicy policy{50000, 3};

TEST(Coalescer, EmptySetNeverCloses)
{
	Coalescer c;
	EXPECT_FALSE(c.window_closed(1000000000, policy));
	EXPECT_EQ(c.time_to_close_us(0, policy), -1);
}

TEST(Coalescer, WindowOpensAtFirstArrivalAndClosesAfterDebounce)
{
	Coalescer c;
	c.add_transaction({key("a")}, 1, 90, 100);
	c.add_transaction({key("b")}, 1, 95, 40000); /* does not move the window */
	EXPECT_FALSE(c.window_closed(50099, policy));
	EXPECT_EQ(c.time_to_close_us(50000, policy), 100);
	EXPECT_TRUE(c.window_closed(50100, policy));
	EXPECT_EQ(c.time_to_close_us(50100, policy), 0);
}

TEST(Coalescer, SameTargetIsSentOnce)
{
	Coalescer c;
	for (int i = 0; i < 500; i++)
		c.add_transaction({key("user:1"), key("team:2")}, 1, i + 1, i); /* (commit time 0: none) */
	EXPECT_EQ(c.size(), 2u);
	Coalescer::Batch b = c.take();
	EXPECT_EQ(b.targets.size(), 2u);
	EXPECT_EQ(b.coalesced, 998u);
	EXPECT_EQ(b.commit_times_us.size(), 500u);
	EXPECT_TRUE(c.empty());
}

TEST(Coalescer, KindAndGlobAreDistinctTargets)
{
	Coalescer c;
	Target tag = key("x");
	tag.kind = TargetKind::Tag;
	Target pattern = key("x");
	pattern.glob = true;
	c.add_transaction({key("x"), tag, pattern}, 1, 0, 0);
	EXPECT_EQ(c.size(), 3u);
}

TEST(Coalescer, ClosesEarlyAtMaxBatch)
{
	Coalescer c;
	c.add_transaction({key("a"), key("b")}, 1, 0, 0);
	EXPECT_FALSE(c.window_closed(1, policy));
	c.add_transaction({key("c")}, 1, 0, 1);
	EXPECT_TRUE(c.window_closed(1, policy));
}

TEST(Coalescer, ClosesEarlyOnImmediateAndFlush)
{
	Coalescer c;
	c.add_transaction({key("a", true)}, 1, 0, 0);
	EXPECT_TRUE(c.window_closed(0, policy));
	c.take();
	c.add_transaction({key("a")}, 1, 0, 0);
	EXPECT_FALSE(c.window_closed(0, policy));
	c.request_flush();
	EXPECT_TRUE(c.window_closed(0, policy));
	c.take();
	c.add_transaction({key("a")}, 1, 0, 0);
	EXPECT_FALSE(c.window_closed(0, policy)) << "take() must reset the flags";
}

TEST(Coalescer, HoldsBackTheOldestCommit)
{
	Coalescer c;
	EXPECT_EQ(c.min_seq(), kNoSeq);
	c.add_transaction({key("a")}, 7, 10, 10);
	c.add_transaction({key("a"), key("b")}, 9, 20, 20);
	EXPECT_EQ(c.min_seq(), 7u) << "a coalesced target keeps the oldest commit held";
	c.take();
	EXPECT_EQ(c.min_seq(), kNoSeq);
}

TEST(Coalescer, ZeroDebounceClosesAtOnce)
{
	Coalescer c;
	c.add_transaction({key("a")}, 1, 0, 5);
	EXPECT_TRUE(c.window_closed(5, WindowPolicy{0, 10000}));
}

/* Many transactions, small and large, overlapping: the index keeps exactly
 * one copy of each target across growth, take() and reuse. */
TEST(Coalescer, DeduplicatesAcrossIndexGrowthAndReuse)
{
	Coalescer c;
	for (int round = 0; round < 2; round++) {
		std::vector<Target> big;
		for (int i = 0; i < 50000; i++)
			big.push_back(key("k:" + std::to_string(i)));
		c.add_transaction(big, 1, 1, 1);
		for (int i = 0; i < 60000; i += 2)
			c.add_transaction({key("k:" + std::to_string(i))}, 1, 2, 2);
		EXPECT_EQ(c.size(), 55000u);
		EXPECT_EQ(c.coalesced(), 25000u);

		Coalescer::Batch batch = c.take();
		EXPECT_EQ(batch.targets.size(), 55000u);
		EXPECT_EQ(batch.coalesced, 25000u);
		EXPECT_TRUE(c.empty());
		std::sort(batch.targets.begin(), batch.targets.end(),
				  [](const Target &a, const Target &b) { return a.key < b.key; });
		EXPECT_TRUE(std::adjacent_find(batch.targets.begin(), batch.targets.end()) ==
					batch.targets.end());
	}
}

/* A transaction's batch is adopted without hashing; later arrivals still dedup against it. */
TEST(TargetSet, AdoptedBatchesStillDeduplicate)
{
	TargetSet set;
	set.insert_distinct({key("a"), key("b", true)}, 5);
	EXPECT_EQ(set.size(), 2u);
	EXPECT_EQ(set.min_seq(), 5u);
	EXPECT_TRUE(set.any_immediate());
	EXPECT_FALSE(set.insert(key("a"), 3)) << "the adopted index is built on demand";
	EXPECT_EQ(set.min_seq(), 3u);
	set.insert_distinct({key("b"), key("c")}, 9);
	EXPECT_EQ(set.size(), 3u);
	std::vector<Target> all = set.take();
	EXPECT_EQ(all.size(), 3u);
	EXPECT_TRUE(set.empty());
	EXPECT_EQ(set.min_seq(), kNoSeq);
}
