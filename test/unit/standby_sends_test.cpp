/* Unit tests: second sends waiting for the standbys (cachebust.standby_names). */
#include "core/delivery/standby_sends.hpp"

#include <gtest/gtest.h>

using namespace cachebust;

static Target
key(std::string k, uint32_t prefix_len = 0)
{
	Target t;
	t.key = std::move(k);
	t.prefix_len = prefix_len;
	return t;
}

static StandbySends::Entry
window(uint64_t lsn, uint64_t seq, int64_t delivered_us, std::vector<Target> targets)
{
	StandbySends::Entry e;
	e.lsn = lsn;
	e.seqs = SeqSet(seq);
	e.delivered_us = delivered_us;
	e.targets = std::move(targets);
	return e;
}

static StandbyReplay
replayed_to(uint64_t lsn)
{
	StandbyReplay r;
	r.lsn = lsn;
	return r;
}

constexpr int64_t kMaxWait = 60 * 1000 * 1000;

TEST(StandbySends, WaitsUntilTheSlowestStandbyReplayedTheWindow)
{
	StandbySends s;
	s.add(window(1000, 5, 0, {key("a"), key("b")}), 100);
	EXPECT_EQ(s.targets(), 2u);
	EXPECT_EQ(s.min_seq(), 5u);

	EXPECT_TRUE(s.take_ready(replayed_to(999), 10, kMaxWait).empty());
	std::vector<StandbySends::Released> out = s.take_ready(replayed_to(1000), 2500, kMaxWait);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_FALSE(out[0].timed_out);
	EXPECT_EQ(out[0].waited_us, 2500);
	EXPECT_EQ(out[0].entry.targets.size(), 2u);
	EXPECT_TRUE(s.empty());
	EXPECT_EQ(s.targets(), 0u);
	EXPECT_EQ(s.min_seq(), UINT64_MAX);
}

TEST(StandbySends, WindowsAreReleasedByLsnNotByArrival)
{
	/* Commit order and LSN order can differ: a later window with a lower
	 * LSN must not wait behind an earlier one. */
	StandbySends s;
	s.add(window(2000, 1, 0, {key("late-lsn")}), 100);
	s.add(window(1500, 2, 0, {key("early-lsn")}), 100);
	std::vector<StandbySends::Released> out = s.take_ready(replayed_to(1600), 1, kMaxWait);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(out[0].entry.targets[0].key, "early-lsn");
	EXPECT_EQ(s.min_seq(), 1u);
}

TEST(StandbySends, AnAbsentStandbyHoldsEverythingUntilMaxWait)
{
	StandbySends s;
	s.add(window(10, 1, 1000, {key("a")}), 100);
	s.add(window(20, 2, 5000, {key("b")}), 100);

	/* lsn 0: a named standby is not streaming, nothing is known replayed. */
	EXPECT_TRUE(s.take_ready(replayed_to(0), 1000 + kMaxWait - 1, kMaxWait).empty());
	std::vector<StandbySends::Released> out = s.take_ready(replayed_to(0), 1000 + kMaxWait, kMaxWait);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_TRUE(out[0].timed_out);
	EXPECT_EQ(out[0].entry.seqs.min(), 1u);
	EXPECT_EQ(s.size(), 1u);
}

TEST(StandbySends, NoStandbyToWaitForReleasesAtOnce)
{
	StandbySends s;
	s.add(window(UINT64_MAX - 1, 1, 0, {key("a")}), 100);
	StandbyReplay none;
	none.lsn = StandbyReplay::kAllReplayed;
	std::vector<StandbySends::Released> out = s.take_ready(none, 0, kMaxWait);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_FALSE(out[0].timed_out);
}

TEST(StandbySends, PastTheBoundAWindowKeepsOnlyItsPrefixes)
{
	StandbySends s;
	s.add(window(10, 1, 0, {key("a")}), 2);
	/* Three more targets would pass max_targets = 2: kept as two prefixes. */
	s.add(window(20, 2, 0, {key("app:user:1", 4), key("app:user:2", 4), key("web:x", 4)}), 2);
	EXPECT_EQ(s.targets(), 1u);
	std::vector<StandbySends::Released> out = s.take_ready(replayed_to(20), 0, kMaxWait);
	ASSERT_EQ(out.size(), 2u);
	EXPECT_TRUE(out[1].entry.targets.empty());
	EXPECT_EQ(out[1].entry.prefixes, (std::vector<std::string>{"app:", "web:"}));
}

TEST(StandbySends, TakeAllEmptiesTheQueue)
{
	StandbySends s;
	s.add(window(10, 3, 0, {key("a")}), 100);
	s.add(window(20, 4, 0, {key("b")}), 100);
	EXPECT_EQ(s.take_all().size(), 2u);
	EXPECT_TRUE(s.empty());
	EXPECT_EQ(s.targets(), 0u);
}
