/*
 * redelete_schedule.cpp — a due-ordered, bounded queue of redeletes.
 */
#include "core/delivery/redelete_schedule.hpp"

#include <algorithm>

#include "core/cpp_only.hpp"

namespace cachebust {

bool
RedeleteSchedule::add(Entry entry, size_t max_targets)
{
	if (entry.targets.empty() && !entry.flushdb)
		return true;
	if (targets_ + entry.targets.size() > max_targets)
		return false;
	targets_ += entry.targets.size();
	/* Usually appended: due times mostly grow. */
	auto pos = std::upper_bound(entries_.begin(), entries_.end(), entry.due_us,
								[](int64_t due, const Entry &e) { return due < e.due_us; });
	entries_.insert(pos, std::move(entry));
	return true;
}

std::vector<RedeleteSchedule::Entry>
RedeleteSchedule::take_due(int64_t now_us)
{
	std::vector<Entry> due;
	while (!entries_.empty() && entries_.front().due_us <= now_us) {
		targets_ -= entries_.front().targets.size();
		due.push_back(std::move(entries_.front()));
		entries_.pop_front();
	}
	return due;
}

std::vector<RedeleteSchedule::Entry>
RedeleteSchedule::take_all()
{
	std::vector<Entry> all(std::make_move_iterator(entries_.begin()), std::make_move_iterator(entries_.end()));
	entries_.clear();
	targets_ = 0;
	return all;
}

} // namespace cachebust
