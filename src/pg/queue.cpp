/*
 * queue.cpp — shared memory set-up and the backend side of the queue.
 *
 * The enqueue functions run inside the COMMIT callback, where an ERROR
 * would be promoted to PANIC, so they only take the lock, copy bytes and
 * set the worker's latch.
 */
#include "pg/queue.hpp"

#include "core/batch_codec.hpp"
#include "pg/guc.hpp"
#include "pg/prefix_registry.hpp"

namespace cachebust::pg {

SharedQueue *shared_queue = nullptr;

static shmem_request_hook_type prev_shmem_request_hook = nullptr;
static shmem_startup_hook_type prev_shmem_startup_hook = nullptr;

static Size
queue_shmem_size()
{
	return add_size(offsetof(SharedQueue, data), static_cast<Size>(guc_queue_size_kb) * 1024);
}

static void
queue_shmem_request()
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(queue_shmem_size(), prefix_registry_shmem_size()));
	/* [0]: the queue, [1]: the prefix registry */
	RequestNamedLWLockTranche("cachebust", 2);
}

/* Runs in the postmaster at start and again after every crash restart. */
static void
queue_shmem_startup()
{
	bool found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	shared_queue = nullptr;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	SharedQueue *q = static_cast<SharedQueue *>(ShmemInitStruct("cachebust queue", queue_shmem_size(), &found));
	if (!found) {
		memset(q, 0, offsetof(SharedQueue, data));
		q->lock = &(GetNamedLWLockTranche("cachebust"))->lock;
		ConditionVariableInit(&q->delivered_cv);
		q->capacity = static_cast<uint64>(guc_queue_size_kb) * 1024;
		pg_atomic_init_u64(&q->delivered_seq, 0);
		pg_atomic_init_u32(&q->flush_requested, 0);
		SpinLockInit(&q->stats_mutex);
		q->stats_reset = GetCurrentTimestamp();
	}
	prefix_registry_shmem_init(&(GetNamedLWLockTranche("cachebust"))[1].lock);
	LWLockRelease(AddinShmemInitLock);
	shared_queue = q;
}

void
queue_request_shmem()
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = queue_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = queue_shmem_startup;
}

void
queue_require_preloaded(const char *what)
{
	if (shared_queue == nullptr)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s requires cachebust to be loaded via shared_preload_libraries", what),
				 errhint("Add cachebust to shared_preload_libraries in postgresql.conf and restart the server.")));
}

static void
wake_worker(Latch *latch)
{
	if (latch != nullptr)
		SetLatch(latch);
}

/* Whether a commit must wake a worker that waits for its window deadline. */
static bool
worth_waking(const SharedQueue *q, bool immediate)
{
	return !q->worker_waits_for_deadline || immediate || q->overflow_pending ||
		   q->tail - q->head > q->capacity / 2 ||
		   q->undrained_targets >= static_cast<uint64>(guc_max_batch);
}

uint64
queue_enqueue_committed(char *batch, uint32 len, uint32 target_count, bool immediate)
{
	SharedQueue *q = shared_queue;
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(q->lock, LW_EXCLUSIVE);
	uint64 seq = ++q->last_seq;
	uint64 used = q->tail - q->head;
	if (len <= q->capacity - used) {
		stamp_batch(batch, seq, now);
		ring_copy_in(q->data, q->capacity, q->tail, batch, len);
		q->tail += len;
		used += len;
		if (used > q->high_water)
			q->high_water = used;
		q->transactions_enqueued++;
		q->targets_enqueued += target_count;
		q->undrained_targets += target_count;
	} else {
		/* The worker will run the fallback, which covers this batch. */
		q->overflow_pending = true;
		q->overflows++;
	}
	Latch *latch = worth_waking(q, immediate) ? q->worker_latch : nullptr;
	LWLockRelease(q->lock);

	wake_worker(latch);
	return seq;
}

uint64
queue_enqueue_overflow(void)
{
	SharedQueue *q = shared_queue;

	LWLockAcquire(q->lock, LW_EXCLUSIVE);
	uint64 seq = ++q->last_seq;
	q->overflow_pending = true;
	q->overflows++;
	Latch *latch = q->worker_latch;
	LWLockRelease(q->lock);

	wake_worker(latch);
	return seq;
}

void
queue_request_flush(void)
{
	SharedQueue *q = shared_queue;

	pg_atomic_write_u32(&q->flush_requested, 1);
	LWLockAcquire(q->lock, LW_SHARED);
	Latch *latch = q->worker_latch;
	LWLockRelease(q->lock);
	wake_worker(latch);
}

bool
queue_wait_for_delivery(uint64 seq, int timeout_ms)
{
	SharedQueue *q = shared_queue;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	bool delivered;

	ConditionVariablePrepareToSleep(&q->delivered_cv);
	for (;;) {
		delivered = pg_atomic_read_u64(&q->delivered_seq) >= seq;
		if (delivered)
			break;
		long remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
			break;
		/* Bounded sleeps: a lost wakeup costs at most 100 ms. */
		ConditionVariableTimedSleep(&q->delivered_cv, Min(remaining, 100L), PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	return delivered;
}

} // namespace cachebust::pg
