/*
 * redelete_schedule.hpp — targets to send again later (cachebust.redelete_ms).
 *
 * A reader that read the old row just before a commit can write it into
 * the cache just after the invalidation; sending the same targets once
 * more a little later removes such a refill. Entries are kept in due order
 * and bounded by a number of targets (max_pending), so memory stays
 * bounded however long Redis is away.
 */
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "core/target.hpp"

namespace cachebust {

class RedeleteSchedule
{
  public:
	struct Entry {
		int64_t due_us;
		std::vector<Target> targets;
		bool flushdb = false; /* a flushdb fallback, repeated */
	};

	/* Schedules an entry; false (nothing kept) if it would hold more than max_targets. */
	bool add(Entry entry, size_t max_targets);
	/* Removes and returns the entries due at now_us. */
	std::vector<Entry> take_due(int64_t now_us);
	std::vector<Entry> take_all();

	bool empty() const { return entries_.empty(); }
	/* Due time of the first entry (0 when empty). */
	int64_t next_due_us() const { return entries_.empty() ? 0 : entries_.front().due_us; }
	size_t targets() const { return targets_; }

  private:
	std::deque<Entry> entries_;
	size_t targets_ = 0;
};

} // namespace cachebust
