/*
 * backoff.hpp — capped exponential backoff with jitter for Redis retries.
 *
 * The nth delay is drawn uniformly from [d/2, d] with d = min(cap, base·2^n):
 * growing waits so a struggling Redis is not hammered, jitter so retries do
 * not synchronise, and a cap (cachebust.retry_max_ms) that bounds how stale a
 * cache can get after Redis comes back.
 */
#pragma once

#include <cstdint>
#include <random>

namespace cachebust {

class Backoff
{
  public:
	Backoff(int base_ms, int cap_ms, uint64_t seed);

	int next_delay_ms();
	void reset() { attempts_ = 0; }
	int attempts() const { return attempts_; }
	void set_cap(int cap_ms) { cap_ms_ = cap_ms < 1 ? 1 : cap_ms; }

  private:
	int base_ms_;
	int cap_ms_;
	int attempts_ = 0;
	std::mt19937_64 rng_;
};

} // namespace cachebust
