/*
 * coalescer.cpp — the debounce window over a TargetSet.
 */
#include "core/coalescer.hpp"

#include <algorithm>

#include "core/cpp_only.hpp"

namespace cachebust {

void
Coalescer::add_transaction(std::vector<Target> targets, uint64_t seq, int64_t commit_time_us,
						   int64_t now_us, uint64_t commit_lsn)
{
	if (targets.empty())
		return;
	if (set_.empty()) {
		/* A transaction's targets are distinct already (its pending set). */
		opened_at_us_ = now_us;
		contributions_.push_back(Contribution{0, static_cast<uint32_t>(targets.size() - 1), seq});
		set_.insert_distinct(std::move(targets), seq);
	} else {
		set_.reserve_more(targets.size());
		for (Target &t : targets) {
			uint32_t position = 0;
			if (!set_.insert(std::move(t), seq, &position))
				coalesced_++;
			contributed(position, seq);
		}
	}
	if (commit_time_us != 0) /* (0: read back from WAL, no latency to measure) */
		commit_times_us_.push_back(commit_time_us);
	max_commit_lsn_ = std::max(max_commit_lsn_, commit_lsn);
}

/* Runs of consecutive positions from one commit are kept as one. */
void
Coalescer::contributed(uint32_t position, uint64_t seq)
{
	if (!contributions_.empty()) {
		Contribution &last = contributions_.back();
		if (last.seq == seq && last.hi + 1 == position) {
			last.hi = position;
			return;
		}
	}
	contributions_.push_back(Contribution{position, position, seq});
}

bool
Coalescer::window_closed(int64_t now_us, const WindowPolicy &policy) const
{
	if (set_.empty())
		return false;
	return set_.any_immediate() || flush_requested_ || set_.size() >= policy.max_batch ||
		   now_us - opened_at_us_ >= policy.debounce_us;
}

int64_t
Coalescer::time_to_close_us(int64_t now_us, const WindowPolicy &policy) const
{
	if (set_.empty())
		return -1;
	if (window_closed(now_us, policy))
		return 0;
	return opened_at_us_ + policy.debounce_us - now_us;
}

Coalescer::Batch
Coalescer::take()
{
	Batch batch;
	batch.targets = set_.take(batch.commits);
	batch.contributions = std::move(contributions_);
	batch.commit_times_us = std::move(commit_times_us_);
	batch.coalesced = coalesced_;
	batch.max_commit_lsn = max_commit_lsn_;
	clear();
	return batch;
}

void
Coalescer::clear()
{
	set_.clear();
	contributions_.clear();
	commit_times_us_.clear();
	max_commit_lsn_ = 0;
	flush_requested_ = false;
	coalesced_ = 0;
	opened_at_us_ = 0;
}

} // namespace cachebust
