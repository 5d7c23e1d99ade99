/*
 * latency_histogram.hpp — commit-to-acknowledgement latency distribution.
 *
 * It lives in shared memory (the stats the worker publishes), so it is a
 * fixed-size, pointer-free, trivially copyable struct whose all-zero bytes
 * are an empty histogram. Buckets grow geometrically by 2^(1/8) (about 9%),
 * from 1 µs to about 1.5 days; percentiles are the bucket's upper bound,
 * clamped to the exact maximum.
 */
#pragma once

#include <cstdint>
#include <type_traits>

namespace cachebust {

struct LatencyHistogram {
	static constexpr int kSubBuckets = 8;	/* per power of two */
	static constexpr int kBuckets = 8 * 38; /* up to 2^37 µs */

	uint64_t buckets[kBuckets];
	uint64_t total;
	uint64_t max_us;

	void record(uint64_t us);
	/* p in [0, 100]; 0 when empty. */
	uint64_t percentile(double p) const;
	void merge(const LatencyHistogram &other);
	void reset();
	uint64_t count() const { return total; }
	uint64_t max() const { return max_us; }

	static int bucket_of(uint64_t us);
	static uint64_t upper_bound_of(int bucket);
};

static_assert(std::is_trivially_copyable<LatencyHistogram>::value,
			  "LatencyHistogram lives in shared memory");

} // namespace cachebust
