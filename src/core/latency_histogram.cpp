/*
 * latency_histogram.cpp — log-bucketed latency percentiles.
 */
#include "core/latency_histogram.hpp"

#include <cmath>
#include <cstring>

#include "core/cpp_only.hpp"

namespace cachebust {

int
LatencyHistogram::bucket_of(uint64_t us)
{
	if (us < 1)
		return 0;
	int b = static_cast<int>(std::ceil(std::log2(static_cast<double>(us)) * kSubBuckets));
	return b >= kBuckets ? kBuckets - 1 : b;
}

uint64_t
LatencyHistogram::upper_bound_of(int bucket)
{
	return static_cast<uint64_t>(std::floor(std::exp2(static_cast<double>(bucket) / kSubBuckets)));
}

void
LatencyHistogram::record(uint64_t us)
{
	buckets[bucket_of(us)]++;
	total++;
	if (us > max_us)
		max_us = us;
}

uint64_t
LatencyHistogram::percentile(double p) const
{
	if (total == 0)
		return 0;
	if (p < 0)
		p = 0;
	if (p > 100)
		p = 100;
	/* The smallest bucket with at least p% of the samples at or below it. */
	uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total)));
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (int b = 0; b < kBuckets; b++) {
		seen += buckets[b];
		if (seen >= rank) {
			uint64_t bound = upper_bound_of(b);
			return bound < max_us ? bound : max_us;
		}
	}
	return max_us;
}

void
LatencyHistogram::merge(const LatencyHistogram &other)
{
	if (other.total == 0)
		return;
	for (int b = 0; b < kBuckets; b++)
		buckets[b] += other.buckets[b];
	total += other.total;
	if (other.max_us > max_us)
		max_us = other.max_us;
}

void
LatencyHistogram::reset()
{
	memset(this, 0, sizeof(*this));
}

} // namespace cachebust
