/* Unit tests: latency percentiles from the shared-memory histogram. */
#include "core/latency_histogram.hpp"

#include <cstring>

#include <gtest/gtest.h>

using namespace cachebust;

static LatencyHistogram
empty()
{
	LatencyHistogram h;
	memset(&h, 0, sizeof(h)); /* as shared memory starts */
	return h;
}

TEST(LatencyHistogram, EmptyAnswersZero)
{
	LatencyHistogram h = empty();
	EXPECT_EQ(h.count(), 0u);
	EXPECT_EQ(h.percentile(50), 0u);
	EXPECT_EQ(h.max(), 0u);
}

TEST(LatencyHistogram, PercentilesWithinBucketError)
{
	LatencyHistogram h = empty();
	for (uint64_t us = 1; us <= 100000; us++)
		h.record(us);
	EXPECT_EQ(h.count(), 100000u);
	EXPECT_EQ(h.max(), 100000u);
	double p50 = static_cast<double>(h.percentile(50));
	double p99 = static_cast<double>(h.percentile(99));
	EXPECT_NEAR(p50, 50000, 50000 * 0.1);
	EXPECT_NEAR(p99, 99000, 99000 * 0.1);
	EXPECT_LE(h.percentile(99), h.max());
	EXPECT_EQ(h.percentile(100), 100000u);
}

TEST(LatencyHistogram, SkewedDistribution)
{
	LatencyHistogram h = empty();
	for (int i = 0; i < 990; i++)
		h.record(1000);
	for (int i = 0; i < 10; i++)
		h.record(2000000);
	EXPECT_NEAR(static_cast<double>(h.percentile(50)), 1000, 100);
	EXPECT_NEAR(static_cast<double>(h.percentile(99)), 1000, 100);
	EXPECT_EQ(h.percentile(99.9), 2000000u);
}

TEST(LatencyHistogram, HugeValuesClampToLastBucket)
{
	LatencyHistogram h = empty();
	h.record(UINT64_MAX / 2);
	h.record(0);
	EXPECT_EQ(h.count(), 2u);
	EXPECT_EQ(h.max(), UINT64_MAX / 2);
	EXPECT_GT(h.percentile(100), 0u);
	EXPECT_LE(h.percentile(100), h.max());
	EXPECT_LE(h.percentile(1), 1u) << "the 0 µs sample is in the first bucket";
}

TEST(LatencyHistogram, MergeAndReset)
{
	LatencyHistogram a = empty(), b = empty();
	a.record(10);
	b.record(1000);
	b.record(2000);
	a.merge(b);
	EXPECT_EQ(a.count(), 3u);
	EXPECT_EQ(a.max(), 2000u);
	a.reset();
	EXPECT_EQ(a.count(), 0u);
	EXPECT_EQ(a.percentile(50), 0u);
}
