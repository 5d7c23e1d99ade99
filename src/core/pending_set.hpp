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
#include "core/cpp_only.hpp"

#include <string>
#include <unordered_map>
#include <vector>

#include "core/target.hpp"

namespace cachebust {

class PendingSet
{
  public:
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
	bool any_immediate() const;
	const std::vector<Entry> &entries() const { return entries_; }

  private:
	static std::string dedup_key(const Target &t);

	std::vector<Entry> entries_;
	std::unordered_map<std::string, size_t> index_; /* dedup_key → entries_ index */
};

} // namespace cachebust
