/*
 * target_set.hpp — a deduplicated set of targets and the oldest commit it
 * holds back.
 *
 * The worker keeps targets in such sets wherever they wait: in the
 * coalescing window, and per Redis node while a command is due or being
 * retried. Equal targets (kind, glob, key) are kept once, so a key updated
 * thousands of times during a Redis outage is still sent once. Every
 * target arrives on behalf of committed transactions; seqs() are those
 * commits (a superset, core/seq_set.hpp), and a session's commit counts as
 * delivered only once no set anywhere holds back its sequence number.
 */
#pragma once

#include <cstdint>
#include <vector>

#include "core/seq_set.hpp"
#include "core/target.hpp"

namespace cachebust {

/* "Holds back nothing." */
constexpr uint64_t kNoSeq = UINT64_MAX;

class TargetSet
{
  public:
	TargetSet() = default;
	TargetSet(const TargetSet &) = delete;
	TargetSet &operator=(const TargetSet &) = delete;
	TargetSet(TargetSet &&) = default;
	TargetSet &operator=(TargetSet &&) = default;

	/* Adds t on behalf of commit seq (or of the commits `from`); false when
	 * an equal target was there already (its immediate flag and tag depth
	 * are merged in). position receives where it is. */
	bool insert(Target &&t, uint64_t seq, uint32_t *position = nullptr);
	bool insert(Target &&t, const SeqSet &from);
	/* Adds targets that are distinct among themselves (a transaction's
	 * batch, a closed window). Into an empty set they are adopted as they
	 * are, without hashing: the index is built only if more must merge in. */
	void insert_distinct(std::vector<Target> &&targets, uint64_t seq);
	void insert_distinct(std::vector<Target> &&targets, const SeqSet &from);
	/* Makes room for count more targets without rehashing on the way. */
	void reserve_more(size_t count);

	bool empty() const { return targets_.empty(); }
	size_t size() const { return targets_.size(); }
	uint64_t min_seq() const { return seqs_.min(); }
	/* The commits the targets came from. */
	const SeqSet &seqs() const { return seqs_; }
	bool any_immediate() const { return immediate_; }
	const std::vector<Target> &targets() const { return targets_; }

	/* Hands everything over and empties the set; seqs receives its commits. */
	std::vector<Target> take();
	std::vector<Target> take(SeqSet &seqs);
	void clear();

  private:
	/* Makes room for `count` targets at a load factor of at most 1/2. */
	void reserve_index(size_t count);
	/* Builds the index of adopted targets (merging any duplicates away). */
	void build_index();
	bool insert_target(Target &&t, uint32_t *position);
	void adopt(std::vector<Target> &&targets);

	std::vector<Target> targets_;
	/*
	 * The deduplication index: open addressing with linear probing over
	 * positions in targets_ (slot value = position + 1, 0 = empty), with each
	 * target's hash kept beside it so probes and rehashes rarely touch the
	 * keys. A node-based set cost one allocation per target, which dominated
	 * the worker's time on large batches.
	 */
	std::vector<uint32_t> slots_;
	std::vector<uint32_t> hashes_;
	bool indexed_ = true; /* false: targets_ was adopted and slots_/hashes_ are not built yet */
	SeqSet seqs_;
	bool immediate_ = false;
};

} // namespace cachebust
