/*
 * seq_set.cpp — sorted ranges of commit sequence numbers.
 */
#include "core/seq_set.hpp"

#include <algorithm>

#include "core/cpp_only.hpp"

namespace cachebust {

void
SeqSet::add(uint64_t lo, uint64_t hi)
{
	if (lo > hi)
		return;
	/* The common case: at or after the end (commits arrive in order). */
	if (ranges_.empty() || lo > ranges_.back().hi) {
		if (!ranges_.empty() && ranges_.back().hi != UINT64_MAX && lo == ranges_.back().hi + 1)
			ranges_.back().hi = hi;
		else
			ranges_.push_back(Range{lo, hi});
	} else {
		/* First range that ends at or after lo - 1 (it may touch or overlap). */
		auto first = std::lower_bound(ranges_.begin(), ranges_.end(), lo,
									  [](const Range &r, uint64_t v) { return r.hi != UINT64_MAX && r.hi + 1 < v; });
		auto last = first;
		uint64_t new_lo = lo, new_hi = hi;
		while (last != ranges_.end() && (hi == UINT64_MAX || last->lo <= hi + 1)) {
			new_lo = std::min(new_lo, last->lo);
			new_hi = std::max(new_hi, last->hi);
			++last;
		}
		if (first == last)
			ranges_.insert(first, Range{lo, hi});
		else {
			first->lo = new_lo;
			first->hi = new_hi;
			ranges_.erase(first + 1, last);
		}
	}
	if (ranges_.size() > kMaxRanges)
		coarsen(kMaxRanges / 2);
}

void
SeqSet::merge(const SeqSet &other)
{
	if (other.ranges_.empty() || &other == this)
		return;
	if (ranges_.empty()) {
		ranges_ = other.ranges_;
		return;
	}
	/* Already all there? (Targets of one reply merge the same set many times.) */
	bool covered = true;
	for (const Range &r : other.ranges_) {
		auto it = std::lower_bound(ranges_.begin(), ranges_.end(), r.lo,
								   [](const Range &x, uint64_t v) { return x.hi < v; });
		if (it == ranges_.end() || it->lo > r.lo || it->hi < r.hi) {
			covered = false;
			break;
		}
	}
	if (covered)
		return;
	for (const Range &r : other.ranges_)
		add(r.lo, r.hi);
}

bool
SeqSet::contains(uint64_t seq) const
{
	return intersects(seq, seq);
}

bool
SeqSet::intersects(uint64_t lo, uint64_t hi) const
{
	auto it = std::lower_bound(ranges_.begin(), ranges_.end(), lo, [](const Range &r, uint64_t v) { return r.hi < v; });
	return it != ranges_.end() && it->lo <= hi;
}

void
SeqSet::coarsen(size_t max_ranges)
{
	max_ranges = std::max<size_t>(max_ranges, 1);
	while (ranges_.size() > max_ranges) {
		/* Merge every gap no wider than the median gap: halves the count in one sweep. */
		std::vector<uint64_t> gaps;
		gaps.reserve(ranges_.size() - 1);
		for (size_t i = 0; i + 1 < ranges_.size(); i++)
			gaps.push_back(ranges_[i + 1].lo - ranges_[i].hi);
		std::nth_element(gaps.begin(), gaps.begin() + static_cast<long>(gaps.size() / 2), gaps.end());
		uint64_t limit = gaps[gaps.size() / 2];
		std::vector<Range> merged;
		merged.reserve(ranges_.size());
		size_t excess = ranges_.size() - max_ranges;
		for (const Range &r : ranges_) {
			if (!merged.empty() && excess > 0 && r.lo - merged.back().hi <= limit) {
				merged.back().hi = r.hi;
				excess--;
			} else
				merged.push_back(r);
		}
		ranges_.swap(merged);
	}
}

bool
SeqSet::operator==(const SeqSet &o) const
{
	if (ranges_.size() != o.ranges_.size())
		return false;
	for (size_t i = 0; i < ranges_.size(); i++)
		if (ranges_[i].lo != o.ranges_[i].lo || ranges_[i].hi != o.ranges_[i].hi)
			return false;
	return true;
}

} // namespace cachebust
