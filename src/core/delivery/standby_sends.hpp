/*
 * standby_sends.hpp — second sends that wait for the read replicas
 * (cachebust.standby_names).
 *
 * An application that reads from streaming standbys can refill the cache
 * with an old row after the primary's invalidation: the standby has not
 * replayed the commit yet. So every window delivered on the primary waits
 * here with the highest commit LSN it covers, and goes out a second time
 * once every standby waited for has replayed past it — or, at the latest,
 * max_wait after its first delivery, because a lagging or absent standby
 * must not hold it back for ever (that is counted as a timeout).
 *
 * Waiting windows still hold back their commits' sequence numbers, so
 * wait_for_delivery() and barrier() cover the second send too. Memory is
 * bounded by a number of targets: past it, a window keeps only the key
 * prefixes of its targets, which the fallback covers after replay instead.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/seq_set.hpp"
#include "core/target.hpp"

namespace cachebust {

/* Where the standbys waited for have replayed to. */
struct StandbyReplay {
	/* Replay LSN of the slowest standby waited for. kAllReplayed: none is
	 * waited for (no standby streams under `*`); 0: one of the named
	 * standbys is not streaming, so nothing has surely been replayed. */
	uint64_t lsn = 0;
	static constexpr uint64_t kAllReplayed = UINT64_MAX;
};

class StandbySends
{
  public:
	struct Entry {
		uint64_t lsn = 0; /* the highest commit LSN of the window */
		SeqSet seqs; /* the commits it covers (held back until sent) */
		int64_t delivered_us = 0;
		std::vector<Target> targets;
		/* Instead of targets, when keeping them would pass the bound: the
		 * key prefixes they used, for the fallback to cover. */
		std::vector<std::string> prefixes;
		bool flushdb = false; /* a flushdb fallback, repeated */
	};
	struct Released {
		Entry entry;
		bool timed_out;	  /* max_wait passed before the standbys replayed it */
		int64_t waited_us; /* from the first delivery to the standbys' replay (or the timeout) */
	};

	/* Queues a delivered window; its targets count against max_targets. */
	void add(Entry entry, size_t max_targets);
	/* Everything the standbys have replayed, or that waited max_wait_us. */
	std::vector<Released> take_ready(StandbyReplay replay, int64_t now_us, int64_t max_wait_us);
	/* Everything, at once (standby_names was emptied). */
	std::vector<Entry> take_all();

	bool empty() const { return entries_.empty(); }
	size_t size() const { return entries_.size(); }
	size_t targets() const { return targets_; }
	/* The oldest commit a waiting window covers (UINT64_MAX when empty). */
	uint64_t min_seq() const;
	/* Adds the commits the waiting windows cover. */
	void add_held(SeqSet &out) const;

  private:
	std::vector<Entry> entries_; /* in delivery order */
	size_t targets_ = 0;
};

} // namespace cachebust
