/*
 * standby_sends.cpp — windows waiting for the standbys' replay.
 */
#include "core/delivery/standby_sends.hpp"

#include <algorithm>

#include "core/cpp_only.hpp"

namespace cachebust {

void
StandbySends::add(Entry entry, size_t max_targets)
{
	if (targets_ + entry.targets.size() > max_targets) {
		/* Over the bound: remember where the targets were, not each one. */
		for (const Target &t : entry.targets) {
			std::string prefix = target_prefix(t);
			if (std::find(entry.prefixes.begin(), entry.prefixes.end(), prefix) == entry.prefixes.end())
				entry.prefixes.push_back(std::move(prefix));
		}
		entry.targets.clear();
	}
	targets_ += entry.targets.size();
	entries_.push_back(std::move(entry));
}

std::vector<StandbySends::Released>
StandbySends::take_ready(StandbyReplay replay, int64_t now_us, int64_t max_wait_us)
{
	/* Commits end up in windows in commit order, not always in LSN order: look at every window. */
	std::vector<Released> ready;
	std::vector<Entry> waiting;
	for (Entry &e : entries_) {
		bool replayed = replay.lsn != 0 && replay.lsn >= e.lsn;
		bool timed_out = !replayed && now_us - e.delivered_us >= max_wait_us;
		if (!replayed && !timed_out) {
			waiting.push_back(std::move(e));
			continue;
		}
		targets_ -= e.targets.size();
		int64_t waited = std::max<int64_t>(now_us - e.delivered_us, 0);
		ready.push_back(Released{std::move(e), timed_out, waited});
	}
	entries_ = std::move(waiting);
	return ready;
}

std::vector<StandbySends::Entry>
StandbySends::take_all()
{
	std::vector<Entry> all = std::move(entries_);
	entries_.clear();
	targets_ = 0;
	return all;
}

uint64_t
StandbySends::min_seq() const
{
	uint64_t seq = UINT64_MAX;
	for (const Entry &e : entries_)
		seq = std::min(seq, e.seqs.min());
	return seq;
}

void
StandbySends::add_held(SeqSet &out) const
{
	for (const Entry &e : entries_)
		out.merge(e.seqs);
}

} // namespace cachebust
