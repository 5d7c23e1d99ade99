/*
 * queue.hpp — the shared-memory queue between committing backends and the
 * background worker, and the counters both sides publish.
 *
 * Locking: `lock` (an LWLock of our own tranche) protects head, tail,
 * last_seq, the overflow fields, worker_latch and the backend-side counters.
 * Backends take it once per committing transaction; the worker takes it
 * twice per drain (to read the tail, then to advance the head) and copies
 * the bytes in between without it: writers only ever write past the tail
 * and never beyond head + capacity, so the range being copied is stable.
 * The worker-side counters are protected by the spinlock `stats_mutex`.
 * delivered_seq and flush_requested are atomics so that waiting sessions
 * and flush() need no lock.
 */
#pragma once

#include "pg/postgres.hpp"

#include "core/latency_histogram.hpp"

namespace cachebust::pg {

/* Counters and gauges the worker maintains (under stats_mutex). */
struct WorkerStats {
	uint64 targets_coalesced;
	uint64 targets_delivered;
	uint64 redis_commands;
	uint64 redis_errors;
	uint64 retries;
	uint64 reconnects;
	uint64 fallbacks;
	uint64 fallbacks_refused;
	uint64 pending_targets; /* gauge */
	bool connected;			/* gauge */
	TimestampTz last_delivery;
	TimestampTz last_error_time;
	char last_error[256];
	LatencyHistogram latency;
};

struct SharedQueue {
	LWLock *lock;
	Latch *worker_latch;
	ConditionVariable delivered_cv;

	uint64 capacity;
	uint64 head;	   /* byte position of the oldest undrained batch */
	uint64 tail;	   /* byte position where the next batch goes */
	uint64 last_seq;   /* sequence number of the newest committed batch */
	uint64 high_water; /* largest tail - head seen */
	bool overflow_pending;

	/*
	 * Set by the worker when it sleeps inside an open window (or a retry
	 * backoff) and will drain at the deadline anyway: commits then skip
	 * waking it unless they carry an immediate target or the undrained part
	 * of the queue grows past half the capacity or max_batch targets. This
	 * turns one wake-up per commit into one per window.
	 */
	bool worker_waits_for_deadline;
	uint64 undrained_targets;
	pg_atomic_uint64 delivered_seq; /* every batch <= this is acknowledged */
	pg_atomic_uint32 flush_requested;

	/* backend-side counters, under lock */
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

/*
 * Enqueues an encoded batch at commit; returns its sequence number. Never
 * ERRORs: a batch that does not fit sets the overflow flag instead.
 */
uint64 queue_enqueue_committed(char *batch, uint32 len, uint32 target_count, bool immediate);

/* Marks a committed transaction as lost (fallback required); returns its seq. */
uint64 queue_enqueue_overflow(void);

void queue_request_flush(void);

/* Waits until delivered_seq >= seq; false on timeout. */
bool queue_wait_for_delivery(uint64 seq, int timeout_ms);

} // namespace cachebust::pg
