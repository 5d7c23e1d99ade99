/*
 * coalescer.cpp — deduplication and the debounce window.
 */
#include "core/coalescer.hpp"

#include "core/pending_set.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

size_t
Coalescer::PositionHash::operator()(size_t pos) const
{
	return target_hash(self->targets_[pos]);
}

bool
Coalescer::PositionEqual::operator()(size_t a, size_t b) const
{
	return self->targets_[a] == self->targets_[b];
}

Coalescer::Coalescer() : index_(16, PositionHash{this}, PositionEqual{this}) {}

void
Coalescer::insert(const Target &t)
{
	targets_.push_back(t);
	if (!index_.insert(targets_.size() - 1).second) {
		targets_.pop_back();
		coalesced_++;
	}
	if (t.immediate)
		immediate_ = true;
}

void
Coalescer::add_transaction(const std::vector<Target> &targets, int64_t commit_time_us,
						   int64_t now_us)
{
	if (targets.empty())
		return;
	if (targets_.empty())
		opened_at_us_ = now_us;
	for (const Target &t : targets)
		insert(t);
	commit_times_us_.push_back(commit_time_us);
}

bool
Coalescer::window_closed(int64_t now_us, const WindowPolicy &policy) const
{
	if (targets_.empty())
		return false;
	return immediate_ || flush_requested_ || targets_.size() >= policy.max_batch ||
		   now_us - opened_at_us_ >= policy.debounce_us;
}

int64_t
Coalescer::time_to_close_us(int64_t now_us, const WindowPolicy &policy) const
{
	if (targets_.empty())
		return -1;
	if (window_closed(now_us, policy))
		return 0;
	return opened_at_us_ + policy.debounce_us - now_us;
}

Coalescer::Batch
Coalescer::take()
{
	Batch batch;
	batch.targets = std::move(targets_);
	batch.commit_times_us = std::move(commit_times_us_);
	batch.coalesced = coalesced_;
	clear();
	return batch;
}

void
Coalescer::restore(Batch &&batch, int64_t opened_at_us)
{
	/* Re-inserting must not count as coalescing: these were sent once. */
	uint64_t coalesced_before = coalesced_;
	for (Target &t : batch.targets)
		insert(t);
	coalesced_ = coalesced_before;
	commit_times_us_.insert(commit_times_us_.end(), batch.commit_times_us.begin(),
							batch.commit_times_us.end());
	if (!targets_.empty())
		opened_at_us_ = opened_at_us;
}

void
Coalescer::clear()
{
	index_.clear();
	targets_.clear();
	commit_times_us_.clear();
	immediate_ = false;
	flush_requested_ = false;
	coalesced_ = 0;
	opened_at_us_ = 0;
}

} // namespace cachebust
