/*
 * pending_set.cpp — the per-transaction, savepoint-aware target set.
 */
#include "core/pending_set.hpp"

#include <algorithm>
#include <functional>

#include "core/cpp_only.hpp"

namespace cachebust {

size_t
target_hash(const Target &t)
{
	size_t h = std::hash<std::string>()(t.key);
	return h ^ ((static_cast<size_t>(t.kind) * 2 + (t.glob ? 1 : 0) + 1) * 0x9e3779b97f4a7c15ULL);
}

PendingSet::PendingSet() : slots_(16, 0) {}

void
PendingSet::grow_index()
{
	std::vector<uint32_t> bigger(slots_.size() * 2, 0);
	size_t mask = bigger.size() - 1;
	for (size_t pos = 0; pos < entries_.size(); pos++) {
		size_t i = hashes_[pos] & mask;
		while (bigger[i] != 0)
			i = (i + 1) & mask;
		bigger[i] = static_cast<uint32_t>(pos + 1);
	}
	slots_.swap(bigger);
}

bool
PendingSet::add(Target target, int nest_level)
{
	size_t hash = target_hash(target);
	size_t mask = slots_.size() - 1;
	size_t i = hash & mask;
	for (; slots_[i] != 0; i = (i + 1) & mask) {
		size_t pos = slots_[i] - 1;
		if (hashes_[pos] == hash && entries_[pos].target == target) {
			/* Already buffered; an immediate flag still counts. */
			if (target.immediate)
				entries_[pos].target.immediate = true;
			return false;
		}
	}
	size_t pos = entries_.size();
	key_bytes_ += target.key.size();
	entries_.push_back(Entry{std::move(target), nest_level});
	hashes_.push_back(hash);
	slots_[i] = static_cast<uint32_t>(pos + 1);
	if (entries_.size() * 4 > slots_.size() * 3)
		grow_index();
	return true;
}

size_t
PendingSet::slot_of(size_t pos) const
{
	size_t mask = slots_.size() - 1;
	size_t i = hashes_[pos] & mask;
	while (slots_[i] != pos + 1)
		i = (i + 1) & mask;
	return i;
}

/* Empties a slot and moves later entries of its probe run back, so every
 * entry stays reachable from its home slot without tombstones. */
void
PendingSet::erase_slot(size_t hole)
{
	size_t mask = slots_.size() - 1;
	slots_[hole] = 0;
	for (size_t j = (hole + 1) & mask; slots_[j] != 0; j = (j + 1) & mask) {
		size_t home = hashes_[slots_[j] - 1] & mask;
		/* It may move back unless its home lies cyclically in (hole, j]. */
		bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
		if (stays)
			continue;
		slots_[hole] = slots_[j];
		slots_[j] = 0;
		hole = j;
	}
}

void
PendingSet::abort_subtransaction(int nest_level)
{
	while (!entries_.empty() && entries_.back().nest_level >= nest_level) {
		size_t pos = entries_.size() - 1;
		erase_slot(slot_of(pos));
		key_bytes_ -= entries_.back().target.key.size();
		entries_.pop_back();
		hashes_.pop_back();
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
	/* A huge transaction's index is not kept for the next one. */
	if (slots_.size() > 1024)
		std::vector<uint32_t>(16, 0).swap(slots_);
	else
		std::fill(slots_.begin(), slots_.end(), 0);
	entries_.clear();
	hashes_.clear();
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
