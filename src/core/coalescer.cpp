/*
 * coalescer.cpp — deduplication and the debounce window.
 */
#include "core/coalescer.hpp"

#include <algorithm>

#include "core/pending_set.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

Coalescer::Coalescer() = default;

void
Coalescer::reserve_index(size_t count)
{
	size_t size = slots_.empty() ? 16 : slots_.size();
	while (size < 2 * count)
		size *= 2;
	if (size == slots_.size())
		return;
	slots_.assign(size, 0);
	size_t mask = size - 1;
	for (size_t pos = 0; pos < targets_.size(); pos++) {
		size_t i = hashes_[pos] & mask;
		while (slots_[i] != 0)
			i = (i + 1) & mask;
		slots_[i] = static_cast<uint32_t>(pos + 1);
	}
}

void
Coalescer::insert(Target &&t)
{
	if (t.immediate)
		immediate_ = true;
	if (2 * (targets_.size() + 1) > slots_.size())
		reserve_index(std::max<size_t>(2 * targets_.size(), 8));

	uint32_t hash = static_cast<uint32_t>(target_hash(t));
	size_t mask = slots_.size() - 1;
	size_t i = hash & mask;
	for (; slots_[i] != 0; i = (i + 1) & mask) {
		size_t pos = slots_[i] - 1;
		if (hashes_[pos] == hash && targets_[pos] == t) {
			coalesced_++;
			return;
		}
	}
	targets_.push_back(std::move(t));
	hashes_.push_back(hash);
	slots_[i] = static_cast<uint32_t>(targets_.size());
}

void
Coalescer::add_transaction(std::vector<Target> targets, int64_t commit_time_us, int64_t now_us)
{
	if (targets.empty())
		return;
	if (targets_.empty())
		opened_at_us_ = now_us;
	/* One big transaction must not cost a cascade of reallocations and rehashes. */
	size_t needed = targets_.size() + targets.size();
	if (needed > targets_.capacity()) {
		size_t capacity = std::max(needed, 2 * targets_.capacity());
		targets_.reserve(capacity);
		hashes_.reserve(capacity);
		reserve_index(needed);
	}
	for (Target &t : targets)
		insert(std::move(t));
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
		insert(std::move(t));
	coalesced_ = coalesced_before;
	commit_times_us_.insert(commit_times_us_.end(), batch.commit_times_us.begin(),
							batch.commit_times_us.end());
	if (!targets_.empty())
		opened_at_us_ = opened_at_us;
}

void
Coalescer::clear()
{
	targets_.clear();
	hashes_.clear();
	/* Keep a small index for the next window; give a big one back. */
	if (slots_.size() > 4096)
		std::vector<uint32_t>().swap(slots_);
	else
		std::fill(slots_.begin(), slots_.end(), 0);
	commit_times_us_.clear();
	immediate_ = false;
	flush_requested_ = false;
	coalesced_ = 0;
	opened_at_us_ = 0;
}

} // namespace cachebust
