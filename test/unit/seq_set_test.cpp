/*
 * seq_set_test.cpp — sorted ranges of commits, checked against std::set.
 */
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "core/seq_set.hpp"

using namespace cachebust;

namespace {

void
expect_same(const SeqSet &s, const std::set<uint64_t> &model, uint64_t upto)
{
	for (uint64_t v = 0; v <= upto; v++)
		ASSERT_EQ(s.contains(v), model.count(v) == 1) << "at " << v;
	uint64_t min = model.empty() ? UINT64_MAX : *model.begin();
	EXPECT_EQ(s.min(), min);
	/* Ranges are sorted, disjoint and not adjacent. */
	const auto &r = s.ranges();
	for (size_t i = 0; i < r.size(); i++) {
		EXPECT_LE(r[i].lo, r[i].hi);
		if (i > 0) {
			EXPECT_GT(r[i].lo, r[i - 1].hi + 1);
		}
	}
}

} // namespace

TEST(SeqSet, AddsInOrderAsRuns)
{
	SeqSet s;
	for (uint64_t v = 5; v < 100; v++)
		s.add(v);
	s.add(200);
	ASSERT_EQ(s.ranges().size(), 2u);
	EXPECT_EQ(s.ranges()[0].lo, 5u);
	EXPECT_EQ(s.ranges()[0].hi, 99u);
	EXPECT_TRUE(s.contains(200));
	EXPECT_FALSE(s.contains(150));
	EXPECT_TRUE(s.intersects(100, 200));
	EXPECT_FALSE(s.intersects(100, 199));
}

TEST(SeqSet, RandomAddsAndMergesMatchAReferenceSet)
{
	std::mt19937_64 rng(42);
	for (int round = 0; round < 200; round++) {
		SeqSet a, b;
		std::set<uint64_t> ma, mb;
		for (int i = 0; i < 40; i++) {
			uint64_t lo = rng() % 300, len = rng() % 5;
			a.add(lo, lo + len);
			for (uint64_t v = lo; v <= lo + len; v++)
				ma.insert(v);
			uint64_t x = rng() % 300;
			b.add(x);
			mb.insert(x);
		}
		expect_same(a, ma, 320);
		expect_same(b, mb, 320);
		a.merge(b);
		ma.insert(mb.begin(), mb.end());
		expect_same(a, ma, 320);
		a.merge(b); /* already there: nothing changes */
		expect_same(a, ma, 320);
	}
}

TEST(SeqSet, CoarsenKeepsEveryCommitAndBoundsTheRanges)
{
	SeqSet s;
	for (uint64_t v = 0; v < 10000; v += 2)
		s.add(v);
	EXPECT_LE(s.ranges().size(), SeqSet::kMaxRanges);
	for (uint64_t v = 0; v < 10000; v += 2)
		ASSERT_TRUE(s.contains(v));
	s.coarsen(8);
	EXPECT_LE(s.ranges().size(), 8u);
	for (uint64_t v = 0; v < 10000; v += 2)
		ASSERT_TRUE(s.contains(v));
}

TEST(SeqSet, EdgesOfTheNumberRange)
{
	SeqSet s(UINT64_MAX - 1, UINT64_MAX);
	s.add(0);
	EXPECT_TRUE(s.contains(UINT64_MAX));
	EXPECT_TRUE(s.contains(0));
	EXPECT_FALSE(s.contains(1));
	s.add(5, 3); /* empty range: nothing */
	EXPECT_EQ(s.ranges().size(), 2u);
}
