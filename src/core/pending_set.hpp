/*
 * pending_set.hpp — the targets one transaction has buffered so far.
 *
 * Deduplicated, in first-insertion order, and savepoint-aware: each entry
 * remembers the subtransaction nesting level that added it, so rolling back
 * a savepoint drops exactly what it added and releasing one hands its
 * entries to the parent. Levels only grow towards the end of the list, so
 * both operations touch only the tail.
 */
#pragma once

#include <string>
#include <unordered_set>
#include <vector>

#include "core/target.hpp"

namespace cachebust {

class PendingSet
{
  public:
	PendingSet();
	PendingSet(const PendingSet &) = delete; /* the index points into this */
	PendingSet &operator=(const PendingSet &) = delete;

	struct Entry {
		Target target;
		int nest_level;
	};

	/* Adds target at nest_level (>= 1); false when it was already buffered
	 * (an immediate flag is still merged into the existing entry). */
	bool add(Target target, int nest_level);

	/* ROLLBACK TO SAVEPOINT / subtransaction abort at nest_level. */
	void abort_subtransaction(int nest_level);

	/* RELEASE SAVEPOINT / subtransaction commit at nest_level. */
	void commit_subtransaction(int nest_level);

	void clear();
	bool empty() const { return entries_.empty(); }
	size_t size() const { return entries_.size(); }
	/* Bytes of all keys held (the memory a transaction's buffer grows with). */
	size_t key_bytes() const { return key_bytes_; }
	bool any_immediate() const;
	const std::vector<Entry> &entries() const { return entries_; }

  private:
	/* Hash and equality of entries_ positions by their target, so the
	 * index stores no second copy of the keys. */
	struct PositionHash {
		const PendingSet *set;
		size_t operator()(size_t pos) const;
	};
	struct PositionEqual {
		const PendingSet *set;
		bool operator()(size_t a, size_t b) const;
	};

	std::vector<Entry> entries_;
	std::unordered_set<size_t, PositionHash, PositionEqual> index_;
	size_t key_bytes_ = 0;
};

/* Hash of a target's identity (kind, glob, key), shared with the coalescer. */
size_t target_hash(const Target &t);

} // namespace cachebust
