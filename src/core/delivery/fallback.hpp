/*
 * fallback.hpp — covering what cannot be delivered exactly (DESIGN.md,
 * promise 5), and keeping count of what a fallback could not cover.
 *
 * A fallback covers a range of commits [lo, hi] for a set of key prefixes:
 * those of a transaction too large for the queue, of the targets dropped at
 * max_pending, of a target Redis refuses even in substitute form, or every
 * prefix ever used after a crash. How is cachebust.fallback:
 *
 *   prefix      every key under each prefix goes (a glob target prefix*);
 *               refused for the empty prefix, which would be the database
 *   generation  INCR <prefix>cachebust:generation
 *   flushdb     FLUSHDB on every master
 *   none        nothing
 *
 * Commits a fallback did not cover (refused, incomplete, or failed in
 * Redis) are "uncovered": wait_for_delivery() and barrier() say false for
 * them instead of pretending. They stay so until a fallback that can cover
 * them runs — the worker tries again when cachebust.fallback changes.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/seq_set.hpp"
#include "core/target.hpp"

namespace cachebust {

enum class FallbackMode { Prefix, Generation, FlushDb, None };

/* What a fallback sends, and what it cannot cover. */
struct FallbackPlan {
	std::vector<Target> targets; /* globs (prefix) or bumps (generation) */
	bool flushdb = false;
	std::vector<std::string> refused; /* prefixes left uncovered (empty under prefix; all under none) */
	bool incomplete = false;		  /* some prefixes are not even known (the registry overflowed) */

	bool covers_everything() const { return refused.empty() && !incomplete; }
};

/* The generation key of a prefix. */
std::string generation_key(const std::string &prefix);

FallbackPlan plan_fallback(FallbackMode mode, const std::vector<std::string> &prefixes, bool prefixes_incomplete);

struct SeqRange {
	uint64_t lo;
	uint64_t hi;
};

/* The fallbacks under way and the commits they left uncovered. */
class FallbackJobs
{
  public:
	struct Job {
		uint32_t id;
		uint64_t lo, hi;
		std::vector<std::string> prefixes;
		bool incomplete;
		bool failed = false;
		std::vector<Target> sent; /* what was sent, for redelete_ms */
		bool flushdb = false;
		bool retry = false; /* a second attempt at an uncovered range */
	};

	/* Registers a fallback for commits [lo, hi]; returns its id. A plan
	 * that does not cover everything makes the range uncovered at once. */
	uint32_t start(const FallbackPlan &plan, const std::vector<std::string> &prefixes, bool incomplete,
				   uint64_t lo, uint64_t hi, bool retry = false);
	/* Redis refused part of the job: its range is uncovered. */
	void failed(uint32_t id);
	/* A range an earlier worker left uncovered (only its commits were kept):
	 * uncovered here too, until a fallback for `prefixes` covers it. */
	void adopt_uncovered(uint64_t lo, uint64_t hi, const std::vector<std::string> &prefixes, bool incomplete);
	/* Jobs none of whose commits anything holds back any more are
	 * finished: returned (for redelete_ms), and a finished retry that did
	 * not fail makes its range covered again. */
	std::vector<Job> settle(const SeqSet &held);

	/* Uncovered ranges that a changed fallback setting should retry. */
	std::vector<Job> to_retry();

	const std::vector<SeqRange> &uncovered() const { return uncovered_; }
	/* Uncovered commits, for stats (a range counts its commits). */
	uint64_t uncovered_batches() const;
	bool busy() const { return !jobs_.empty(); }

  private:
	void uncover(const Job &job);
	void recover(const Job &job);

	uint32_t next_id_ = 1;
	std::vector<Job> jobs_;
	std::vector<SeqRange> uncovered_;
	/* What each uncovered range needs covered, to try again. */
	std::vector<Job> uncovered_jobs_;
};

} // namespace cachebust
