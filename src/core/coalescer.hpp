/*
 * coalescer.hpp — the worker's deduplicating set and its debounce window.
 *
 * The window opens when the first target arrives into an empty set and
 * closes debounce_ms later, or early when max_batch distinct targets are
 * pending, an immediate target arrived, or a flush was requested
 * (DESIGN.md promise 2). Closing hands everything over as one Batch; a batch
 * whose delivery failed is merged back so nothing is lost and new arrivals
 * keep coalescing with it while Redis is away.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/target.hpp"

namespace cachebust {

struct WindowPolicy {
	int64_t debounce_us = 50000;
	size_t max_batch = 10000;
};

class Coalescer
{
  public:
	Coalescer();
	Coalescer(const Coalescer &) = delete;
	Coalescer &operator=(const Coalescer &) = delete;

	struct Batch {
		std::vector<Target> targets;
		/* commit times of the transactions it covers, for latency stats */
		std::vector<int64_t> commit_times_us;
		/* targets that arrived while an equal one was already pending */
		uint64_t coalesced = 0;
	};

	/* A drained transaction committed at commit_time_us; now_us opens the
	 * window if the set was empty. */
	void add_transaction(std::vector<Target> targets, int64_t commit_time_us, int64_t now_us);

	/* flush(): close the window at the next check. */
	void request_flush() { flush_requested_ = true; }

	bool empty() const { return targets_.empty(); }
	size_t size() const { return targets_.size(); }

	/* Whether the window is closed at now_us (never for an empty set). */
	bool window_closed(int64_t now_us, const WindowPolicy &policy) const;

	/* Microseconds until the window closes by time (0 if closed, -1 if empty). */
	int64_t time_to_close_us(int64_t now_us, const WindowPolicy &policy) const;

	/* Hands over everything pending and empties the set. */
	Batch take();

	/* Puts an undelivered batch back (its targets deduplicated against what
	 * arrived meanwhile); the window counts as open since opened_at_us. */
	void restore(Batch &&batch, int64_t opened_at_us);

	/* Drops everything pending (after a fallback covered it). */
	void clear();

	/* Targets coalesced away since the last take(). */
	uint64_t coalesced() const { return coalesced_; }

  private:
	void insert(Target &&t);
	/* Makes room for `count` targets at a load factor of at most 1/2. */
	void reserve_index(size_t count);

	std::vector<Target> targets_;
	/*
	 * The deduplication index: open addressing with linear probing over
	 * positions in targets_ (slot value = position + 1, 0 = empty), with each
	 * target's hash kept beside it so probes and rehashes rarely touch the
	 * keys. A node-based set cost one allocation per target, which dominated
	 * the worker's time on large batches.
	 */
	std::vector<uint32_t> slots_;
	std::vector<uint32_t> hashes_;
	std::vector<int64_t> commit_times_us_;
	int64_t opened_at_us_ = 0;
	bool immediate_ = false;
	bool flush_requested_ = false;
	uint64_t coalesced_ = 0;
};

} // namespace cachebust
