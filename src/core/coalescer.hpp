/*
 * coalescer.hpp — the worker's deduplicating set and its debounce window.
 *
 * The window opens when the first target arrives into an empty set and
 * closes debounce_ms later, or early when max_batch distinct targets are
 * pending, an immediate target arrived, or a flush was requested
 * (DESIGN.md promise 2). Closing hands everything over as one Batch.
 */
#pragma once

#include <cstdint>
#include <vector>

#include "core/target_set.hpp"

namespace cachebust {

/* Targets [lo, hi] (positions in a closed window) came from commit seq. */
struct Contribution {
	uint32_t lo, hi;
	uint64_t seq;
};

struct WindowPolicy {
	int64_t debounce_us = 50000;
	size_t max_batch = 10000;
};

class Coalescer
{
  public:
	struct Batch {
		std::vector<Target> targets;
		/* commit times of the transactions it covers, for latency stats */
		std::vector<int64_t> commit_times_us;
		/* targets that arrived while an equal one was already pending */
		uint64_t coalesced = 0;
		/* the highest commit LSN among them (what standbys must replay) */
		uint64_t max_commit_lsn = 0;
		/* which commit each target came from (a target may have several),
		 * in commit order: what lets each commit be delivered on its own */
		std::vector<Contribution> contributions;
		/* every commit of the window */
		SeqSet commits;
	};

	/* A drained transaction (commit seq, committed at commit_time_us, its
	 * commit record ending at commit_lsn); now_us opens the window if the
	 * set was empty. Commit time 0: none to measure a latency from (a
	 * transaction read back from WAL). */
	void add_transaction(std::vector<Target> targets, uint64_t seq, int64_t commit_time_us,
						 int64_t now_us, uint64_t commit_lsn = 0);

	/* flush(): close the window at the next check. */
	void request_flush() { flush_requested_ = true; }

	bool empty() const { return set_.empty(); }
	size_t size() const { return set_.size(); }
	/* The oldest commit whose targets wait here (kNoSeq when empty). */
	uint64_t min_seq() const { return set_.min_seq(); }
	/* The commits whose targets wait here. */
	const SeqSet &seqs() const { return set_.seqs(); }
	const std::vector<Target> &targets() const { return set_.targets(); }

	/* Whether the window is closed at now_us (never for an empty set). */
	bool window_closed(int64_t now_us, const WindowPolicy &policy) const;

	/* Microseconds until the window closes by time (0 if closed, -1 if empty). */
	int64_t time_to_close_us(int64_t now_us, const WindowPolicy &policy) const;

	/* Hands over everything pending and empties the set. */
	Batch take();

	/* Drops everything pending (after a fallback covered it). */
	void clear();

	/* Targets coalesced away since the last take(). */
	uint64_t coalesced() const { return coalesced_; }

  private:
	void contributed(uint32_t position, uint64_t seq);

	TargetSet set_;
	std::vector<Contribution> contributions_;
	std::vector<int64_t> commit_times_us_;
	uint64_t max_commit_lsn_ = 0;
	int64_t opened_at_us_ = 0;
	bool flush_requested_ = false;
	uint64_t coalesced_ = 0;
};

} // namespace cachebust
