/*
 * backoff.cpp — the retry delay sequence.
 */
#include "core/backoff.hpp"

#include <algorithm>

#include "core/cpp_only.hpp"

namespace cachebust {

Backoff::Backoff(int base_ms, int cap_ms, uint64_t seed)
	: base_ms_(std::max(base_ms, 1)), cap_ms_(std::max(cap_ms, 1)), rng_(seed)
{
}

int
Backoff::next_delay_ms()
{
	/* base·2^n without overflow: stop doubling once past the cap. */
	int64_t d = base_ms_;
	for (int i = 0; i < attempts_ && d < cap_ms_; i++)
		d *= 2;
	d = std::min<int64_t>(d, cap_ms_);
	attempts_++;
	std::uniform_int_distribution<int64_t> jitter(d / 2, d);
	return static_cast<int>(jitter(rng_));
}

} // namespace cachebust
