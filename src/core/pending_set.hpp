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

#include <cstdint>
#include <string>
#include <vector>

#include "core/target.hpp"

namespace cachebust {

class PendingSet
{
  public:
	PendingSet();
	PendingSet(const PendingSet &) = delete;
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
	/* The slot of the index holding entry pos (it is there). */
	size_t slot_of(size_t pos) const;
	void erase_slot(size_t slot);
	void grow_index();

	std::vector<Entry> entries_;
	/*
	 * Open-addressing index over entries_ (linear probing): each slot holds
	 * an entry's position + 1, 0 when empty; the table is a power of two at
	 * most 3/4 full. Entries keep their hash, so probing compares keys only
	 * on a hash match and growing never hashes a key again. Entries leave
	 * only from the tail (savepoints), by backward-shift deletion.
	 */
	std::vector<uint32_t> slots_;
	std::vector<size_t> hashes_; /* by entry position */
	size_t key_bytes_ = 0;
};

size_t target_hash(const Target &t);

} // namespace cachebust
