/*
 * seq_set.hpp — a set of commit sequence numbers, kept as sorted ranges.
 *
 * Whatever holds targets back (a lane's waiting set, a command in flight,
 * a SCAN pass, a standby send) records exactly which commits they came
 * from, so a session's wait_for_delivery() waits for its own commits and
 * not for everyone's: a dead cluster shard or a long SCAN pass holds back
 * only the commits that have targets there.
 *
 * Commits arrive in increasing order and mostly in runs, so a set is a few
 * ranges. It is bounded: past kMaxRanges the closest ranges are merged,
 * which can only add commits (a wait may then last longer, never end
 * early).
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace cachebust {

class SeqSet
{
  public:
	struct Range {
		uint64_t lo, hi; /* inclusive */
	};
	static constexpr size_t kMaxRanges = 1024;

	SeqSet() = default;
	/* {seq} (implicit: a single commit is the common case) */
	SeqSet(uint64_t seq) { add(seq, seq); }
	/* [lo, hi] */
	SeqSet(uint64_t lo, uint64_t hi) { add(lo, hi); }

	void add(uint64_t seq) { add(seq, seq); }
	void add(uint64_t lo, uint64_t hi);
	void merge(const SeqSet &other);
	void clear() { ranges_.clear(); }

	bool empty() const { return ranges_.empty(); }
	bool contains(uint64_t seq) const;
	/* Whether any commit in [lo, hi] is in the set. */
	bool intersects(uint64_t lo, uint64_t hi) const;
	/* The smallest commit (UINT64_MAX when empty, as kNoSeq). */
	uint64_t min() const { return ranges_.empty() ? UINT64_MAX : ranges_.front().lo; }
	/* The largest commit (0 when empty). */
	uint64_t max() const { return ranges_.empty() ? 0 : ranges_.back().hi; }
	const std::vector<Range> &ranges() const { return ranges_; }
	/* Merges the closest neighbours until at most max_ranges remain (a superset). */
	void coarsen(size_t max_ranges);

	bool operator==(const SeqSet &o) const;

  private:
	std::vector<Range> ranges_; /* sorted, disjoint, not adjacent */
};

} // namespace cachebust
