/*
 * target_set.cpp — the open-addressing deduplication index.
 */
#include "core/target_set.hpp"

#include <algorithm>

#include "core/pending_set.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

void
TargetSet::reserve_index(size_t count)
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
TargetSet::reserve_more(size_t count)
{
	if (!indexed_)
		build_index();
	/* One big transaction must not cost a cascade of reallocations and rehashes. */
	size_t needed = targets_.size() + count;
	if (needed <= targets_.capacity())
		return;
	size_t capacity = std::max(needed, 2 * targets_.capacity());
	targets_.reserve(capacity);
	hashes_.reserve(capacity);
	reserve_index(needed);
}

void
TargetSet::build_index()
{
	std::vector<Target> adopted = std::move(targets_);
	targets_.clear();
	hashes_.clear();
	slots_.clear();
	indexed_ = true;
	bool immediate = immediate_;
	reserve_more(adopted.size());
	for (Target &t : adopted)
		insert_target(std::move(t), nullptr);
	immediate_ = immediate;
}

/* Into an empty set: taken as they are (see insert_distinct). */
void
TargetSet::adopt(std::vector<Target> &&targets)
{
	targets_ = std::move(targets);
	hashes_.clear();
	indexed_ = false;
	for (const Target &t : targets_)
		immediate_ = immediate_ || t.immediate;
}

void
TargetSet::insert_distinct(std::vector<Target> &&targets, uint64_t seq)
{
	insert_distinct(std::move(targets), SeqSet(seq));
}

void
TargetSet::insert_distinct(std::vector<Target> &&targets, const SeqSet &from)
{
	if (targets.empty())
		return;
	seqs_.merge(from);
	if (targets_.empty()) {
		adopt(std::move(targets));
		return;
	}
	reserve_more(targets.size());
	for (Target &t : targets)
		insert_target(std::move(t), nullptr);
}

/*
 * One target now stands for both: it must do whatever either would have
 * done. A restriction of what a tag removes (sets only, keep sets) holds
 * only if both have it; a step added to the delivery (its own command,
 * ASKING first) is taken if either needs it; "already counted as refused"
 * holds only if both were counted.
 */
static void
merge_into(Target &kept, const Target &t)
{
	constexpr uint8_t kIfBoth = kDeliverSetsOnly | kDeliverKeepSets | kDeliverSubstitute;
	constexpr uint8_t kIfEither = kDeliverAlone | kDeliverAsking;
	static_assert((kIfBoth | kIfEither) == 31, "every kDeliver* flag has a merge rule");
	kept.delivery = static_cast<uint8_t>((kept.delivery & t.delivery & kIfBoth) | ((kept.delivery | t.delivery) & kIfEither));
	kept.immediate = kept.immediate || t.immediate;
	/* The shallower tag expands further. */
	kept.depth = std::min(kept.depth, t.depth);
	/* A lost tag reply is remembered from its earliest attempt. */
	if (t.reply_lost_us != 0 && (kept.reply_lost_us == 0 || t.reply_lost_us < kept.reply_lost_us))
		kept.reply_lost_us = t.reply_lost_us;
}

bool
TargetSet::insert(Target &&t, uint64_t seq, uint32_t *position)
{
	seqs_.add(seq);
	return insert_target(std::move(t), position);
}

bool
TargetSet::insert(Target &&t, const SeqSet &from)
{
	seqs_.merge(from);
	return insert_target(std::move(t), nullptr);
}

bool
TargetSet::insert_target(Target &&t, uint32_t *position)
{
	if (!indexed_)
		build_index();
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
			merge_into(targets_[pos], t);
			if (position != nullptr)
				*position = static_cast<uint32_t>(pos);
			return false;
		}
	}
	targets_.push_back(std::move(t));
	hashes_.push_back(hash);
	slots_[i] = static_cast<uint32_t>(targets_.size());
	if (position != nullptr)
		*position = static_cast<uint32_t>(targets_.size() - 1);
	return true;
}

std::vector<Target>
TargetSet::take()
{
	std::vector<Target> out = std::move(targets_);
	clear();
	return out;
}

std::vector<Target>
TargetSet::take(SeqSet &seqs)
{
	seqs = std::move(seqs_);
	return take();
}

void
TargetSet::clear()
{
	targets_.clear();
	hashes_.clear();
	indexed_ = true;
	/* Keep a small index for the next round; give a big one back. */
	if (slots_.size() > 4096)
		std::vector<uint32_t>().swap(slots_);
	else
		std::fill(slots_.begin(), slots_.end(), 0);
	seqs_.clear();
	immediate_ = false;
}

} // namespace cachebust
