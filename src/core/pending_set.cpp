/*
 * pending_set.cpp — the per-transaction, savepoint-aware target set.
 */
#include "core/pending_set.hpp"

#include <functional>

#include "core/cpp_only.hpp"

namespace cachebust {

size_t
target_hash(const Target &t)
{
	size_t h = std::hash<std::string>()(t.key);
	return h ^ ((static_cast<size_t>(t.kind) * 2 + (t.glob ? 1 : 0) + 1) * 0x9e3779b97f4a7c15ULL);
}

size_t
PendingSet::PositionHash::operator()(size_t pos) const
{
	return target_hash(set->entries_[pos].target);
}

bool
PendingSet::PositionEqual::operator()(size_t a, size_t b) const
{
	return set->entries_[a].target == set->entries_[b].target;
}

PendingSet::PendingSet() : index_(16, PositionHash{this}, PositionEqual{this}) {}

bool
PendingSet::add(Target target, int nest_level)
{
	/* Append first so the index can compare against it, undo if a duplicate. */
	entries_.push_back(Entry{std::move(target), nest_level});
	size_t pos = entries_.size() - 1;
	auto inserted = index_.insert(pos);
	if (inserted.second) {
		key_bytes_ += entries_.back().target.key.size();
		return true;
	}

	bool immediate = entries_.back().target.immediate;
	entries_.pop_back();
	if (immediate)
		entries_[*inserted.first].target.immediate = true;
	return false;
}

void
PendingSet::abort_subtransaction(int nest_level)
{
	while (!entries_.empty() && entries_.back().nest_level >= nest_level) {
		index_.erase(entries_.size() - 1);
		key_bytes_ -= entries_.back().target.key.size();
		entries_.pop_back();
	}
}

void
PendingSet::commit_subtransaction(int nest_level)
{
	for (auto it = entries_.rbegin(); it != entries_.rend() && it->nest_level >= nest_level; ++it)
		it->nest_level = nest_level - 1;
}

void
PendingSet::clear()
{
	index_.clear();
	entries_.clear();
	key_bytes_ = 0;
}

bool
PendingSet::any_immediate() const
{
	for (const Entry &e : entries_)
		if (e.target.immediate)
			return true;
	return false;
}

} // namespace cachebust
