/*
 * queue.hpp — the shared-memory queue between committing backends and the
 * background worker, the progress the worker publishes back, and the
 * counters both sides keep.
 *
 * Locking: `lock` (an LWLock of our own tranche) protects every plain
 * field below except the worker counters, which the spinlock `stats_mutex`
 * protects. A committing backend holds the lock only to take a sequence
 * number and reserve ring space (writing the batch header there, marked
 * kBatchWriting); it copies the rest after releasing it and then marks the
 * batch ready, so a large batch never blocks other committers. The worker
 * takes the lock to read the tail, copies ready batches out without it
 * (nobody writes below the tail, and a ready batch is not written again),
 * and takes it again to advance the head. delivered_seq and
 * flush_requested are atomics so waiting sessions and flush() need no lock.
 *
 * Sequence numbers: every committing transaction with targets gets one,
 * in commit-hand-off order. delivered_seq is the highest seq such that every
 * commit up to it is applied in Redis or covered by a fallback that ran —
 * except the "uncovered" ones, listed apart, which no fallback covered.
 * Above it, a commit <= accounted_seq is delivered unless it lies in one of
 * the held ranges (a superset of the commits something still holds back),
 * so a session waits for its own commits and not for a dead shard's.
 */
#pragma once

#include <vector>

#include "pg/postgres.hpp"

#include "core/delivery/fallback.hpp"
#include "core/seq_set.hpp"
#include "core/latency_histogram.hpp"

namespace cachebust::pg {

/* Ranges of uncovered commits kept in shared memory (merged beyond that: more, never less). */
constexpr int kMaxUncoveredRanges = 64;
/* Ranges of held commits above delivered_seq (merged beyond that: more, never less). */
constexpr int kMaxHeldRanges = 64;

/* Counters and gauges the worker maintains (under stats_mutex). */
struct WorkerStats {
	uint64 targets_coalesced;
	uint64 targets_delivered;
	uint64 targets_failed;
	uint64 tag_members_skipped;
	uint64 redis_commands;
	uint64 redis_errors;
	uint64 retries;
	uint64 reconnects;
	uint64 failovers;
	uint64 fallbacks;
	uint64 fallbacks_refused;
	uint64 second_sends;	  /* windows sent again after the standbys replayed them */
	uint64 standby_timeouts;  /* ... or after standby_max_wait_ms */
	uint64 journal_replayed_batches; /* transactions read back from WAL */
	uint64 journal_replay_us;		 /* time replays took, start to delivered */
	uint64 slot_lag_bytes;			 /* gauge: WAL the slot keeps behind the insert position */
	uint64 refreshes;				 /* materialized keys' queries run (refresh workers) */
	uint64 refresh_failures;		 /* ... that failed, or keys removed for want of a refresh */
	uint64 refreshes_coalesced;		 /* commits whose refresh another commit's query covered */
	uint64 pending_targets;	  /* gauge */
	uint64 uncovered_batches; /* gauge */
	bool connected;			  /* gauge */
	TimestampTz last_delivery;
	TimestampTz last_error_time;
	char last_error[256];
	char last_error_endpoint[256]; /* only shown to roles that may read cachebust.redis_url */
	char last_error_key[128];	   /* only shown to roles that may read all statistics */
	char standbys_absent[256];	   /* gauge: listed in standby_names, not streaming */
	LatencyHistogram latency;
	LatencyHistogram standby_lag; /* first delivery until the standbys replayed it */
	LatencyHistogram refresh_latency; /* a refresh's commit until its value is in Redis */
};

struct SharedQueue {
	LWLock *lock;
	Latch *worker_latch;
	ConditionVariable delivered_cv;

	uint64 capacity;
	uint64 lost_reserve; /* ring bytes only lost-transaction markers may use */
	uint64 head;		 /* byte position of the oldest undrained batch */
	uint64 tail;		 /* byte position where the next batch goes */
	uint64 last_seq;	 /* sequence number of the newest committed batch */
	uint64 high_water;	 /* largest tail - head seen */
	/* Commits lost without even a marker in the ring (0: none): the worker
	 * covers them with a fallback for every registered prefix. */
	uint64 unrecorded_lo;
	uint64 unrecorded_hi;
	/* ... and where the journal has their batches (0: it has not). */
	uint64 unrecorded_first_lsn;
	uint64 unrecorded_commit_lsn;

	/*
	 * Set by the worker when it sleeps inside an open window (or a retry
	 * backoff) and will drain at the deadline anyway: commits then skip
	 * waking it unless they carry an immediate target or the undrained part
	 * of the queue grows past half the capacity or max_batch targets. This
	 * turns one wake-up per commit into one per window.
	 */
	bool worker_waits_for_deadline;
	uint64 undrained_targets;
	pg_atomic_uint64 delivered_seq;
	pg_atomic_uint32 flush_requested;
	/* Every commit whose commit record ends at or before this LSN is
	 * delivered (with the journal; 0: not known). On a standby that
	 * delivers to its own Redis: every such commit replayed. */
	pg_atomic_uint64 delivered_lsn;

	/* Commits above delivered_seq and <= accounted_seq still held back. */
	uint64 accounted_seq;
	int n_held;
	uint64 held_lo[kMaxHeldRanges];
	uint64 held_hi[kMaxHeldRanges];

	/* Commits no fallback covered (see core/delivery/fallback.hpp). */
	int n_uncovered;
	uint64 uncovered_lo[kMaxUncoveredRanges];
	uint64 uncovered_hi[kMaxUncoveredRanges];

	/* The previous run of the server, as the postmaster found it at start (worker_state.cpp). */
	bool previous_run_clean;
	uint32 previous_run_timeline; /* the timeline its "clean" was written on (0: not said) */
	char previous_run_why[128];	  /* why it was not clean */
	bool previous_run_handled;	  /* a worker has acted on it (ran the fallback if one was due) */
	bool previous_run_journal;	  /* it wrote every batch to the WAL journal (worker_state.cpp) */

	/* The worker's life in this run of the server (worker_state.cpp). */
	bool state_recorded;	  /* the state file says "running" for this run */
	bool worker_started;	  /* a worker has run in this run of the server */
	bool worker_exited_clean; /* the last worker to exit delivered everything it held */
	uint64 worker_drained_seq; /* commits up to here have left the queue for the worker */
	bool standby_sends_waiting; /* delivered windows wait for the standbys (lost if the worker dies) */
	uint32 timeline;		  /* the timeline the worker delivers on */

	/* backend-side counters */
	uint64 transactions_enqueued;
	uint64 targets_enqueued;
	uint64 overflows;
	TimestampTz stats_reset;

	slock_t stats_mutex;
	WorkerStats worker;

	char data[FLEXIBLE_ARRAY_MEMBER];
};

/* Set up by the shmem startup hook; null when not preloaded. */
extern SharedQueue *shared_queue;

void queue_request_shmem();

/* ERROR with a hint when cachebust was not preloaded. */
void queue_require_preloaded(const char *what);

/* The largest batch a transaction may hand over (bigger ones are lost and covered). */
uint64 queue_max_batch_bytes();

/*
 * Hands a committed transaction's batch over; returns its sequence number.
 * Never ERRORs (it runs after commit): a batch that does not fit is replaced
 * by `lost` (the transaction's prefixes, a kBatchLost batch), and when even
 * that does not fit the commit is recorded as unrecorded. Either way the
 * worker reads the batch back from the journal (first_lsn, its first
 * message, to commit_lsn) or, without one, runs the fallback. batch may be null (a transaction already known
 * to be too large).
 */
uint64 queue_enqueue_committed(char *batch, uint32 len, uint32 target_count, bool immediate, char *lost,
							   uint32 lost_len, uint64 commit_lsn, uint64 first_lsn);

void queue_request_flush(void);
/* Sets the worker's latch (a refresh worker finished a request). */
void queue_wake_worker(void);

/*
 * Waits until delivered_seq >= upto and no uncovered range holds one of
 * seqs (n > 0) or any commit <= upto (n == 0: barrier(), which also waits
 * for the previous run's commits — taken over by a worker, and not held
 * by a replay or a fallback); false on timeout. A commit
 * the worker delivered uncovered may still be covered by a later fallback
 * (the operator changes cachebust.fallback, a retry succeeds): the wait
 * goes on for that too.
 */
bool queue_wait_until_delivered(uint64 upto, const uint64 *seqs, size_t n, int timeout_ms);

/* The sequence number of the newest commit handed over so far. */
uint64 queue_last_seq(void);

/* A sequence number for a commit the worker read from WAL (a standby
 * delivering to its own Redis): the ring's numbering goes on after it. */
uint64 queue_reserve_seq(void);

/* Waits until delivered_lsn >= lsn; false on timeout. */
bool queue_wait_until_lsn(uint64 lsn, int timeout_ms);

/* The worker's delivered-through LSN (never moves back). */
void queue_publish_delivered_lsn(uint64 lsn);

/* Whether any of seqs is uncovered. */
bool queue_any_uncovered(const uint64 *seqs, size_t n);

/* ---- the worker's side ---- */

struct QueueDrain {
	uint64 upto_seq;	  /* every commit <= this is drained (or recorded lost) */
	uint64 unrecorded_lo; /* a range of unrecorded commits, taken (0: none) */
	uint64 unrecorded_hi;
	uint64 unrecorded_first_lsn; /* where the journal has them (0: it has not) */
	uint64 unrecorded_commit_lsn;
	bool blocked; /* stopped at a batch still being copied in: drain again soon */
};

/* Copies every ready batch into `out` (concatenated) and frees their space. */
QueueDrain queue_drain(std::string &out);

/* Publishes the worker's progress: uncovered and held first, then delivered_seq. */
void queue_publish_progress(uint64 delivered, uint64 accounted, const cachebust::SeqSet &held,
							const std::vector<cachebust::SeqRange> &uncovered, bool standby_sends_waiting);

} // namespace cachebust::pg
