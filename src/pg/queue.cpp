/*
 * queue.cpp — shared memory set-up, the backend side of the queue, and the
 * worker's drain and progress.
 *
 * queue_enqueue_committed runs after commit, where an ERROR would be
 * promoted to PANIC: it only takes the lock, copies bytes and sets the
 * worker's latch, and never allocates.
 */
#include "pg/queue.hpp"

#include <algorithm>

#include "core/batch_codec.hpp"
#include "pg/guc.hpp"
#include "pg/journal_wal.hpp"
#include "pg/prefix_registry.hpp"
#include "pg/refresh_requests.hpp"
#include "pg/worker_state.hpp"

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
	RequestAddinShmemSpace(add_size(
		add_size(add_size(queue_shmem_size(), prefix_registry_shmem_size()), journal_open_shmem_size()),
		refresh_shmem_size()));
	/* [0]: the queue, [1]: the prefix registry, [2]: refresh requests */
	RequestNamedLWLockTranche("cachebust", 3);
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
		/* Room that only lost-transaction markers may use, so an overflow is
		 * still recorded with its prefixes when the queue is full. */
		q->lost_reserve = Min(q->capacity / 8, static_cast<uint64>(64 * 1024));
		pg_atomic_init_u64(&q->delivered_seq, 0);
		pg_atomic_init_u64(&q->delivered_lsn, 0);
		pg_atomic_init_u32(&q->flush_requested, 0);
		SpinLockInit(&q->stats_mutex);
		q->stats_reset = GetCurrentTimestamp();
	}
	worker_state_shmem_startup(q);
	prefix_registry_shmem_init(&(GetNamedLWLockTranche("cachebust"))[1].lock);
	journal_open_shmem_init();
	refresh_shmem_init(&(GetNamedLWLockTranche("cachebust"))[2].lock);
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

uint64
queue_max_batch_bytes()
{
	return shared_queue == nullptr ? UINT64_MAX : shared_queue->capacity - shared_queue->lost_reserve;
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
	return !q->worker_waits_for_deadline || immediate || q->tail - q->head > q->capacity / 2 ||
		   q->undrained_targets >= static_cast<uint64>(guc_max_batch);
}

uint64
queue_enqueue_committed(char *batch, uint32 len, uint32 target_count, bool immediate, char *lost,
						uint32 lost_len, uint64 commit_lsn, uint64 first_lsn)
{
	SharedQueue *q = shared_queue;
	TimestampTz now = GetCurrentTimestamp();
	char *copy = nullptr;
	uint32 copy_len = 0;
	uint64 pos = 0;

	LWLockAcquire(q->lock, LW_EXCLUSIVE);
	uint64 seq = ++q->last_seq;
	uint64 used = q->tail - q->head;
	bool wake;
	if (batch != nullptr && used + len <= q->capacity - q->lost_reserve) {
		copy = batch;
		copy_len = len;
		q->transactions_enqueued++;
		q->targets_enqueued += target_count;
		q->undrained_targets += target_count;
		wake = worth_waking(q, immediate);
	} else {
		/* The worker runs the fallback for this commit: wake it. */
		q->overflows++;
		wake = true;
		if (lost != nullptr && used + lost_len <= q->capacity) {
			copy = lost;
			copy_len = lost_len;
		} else {
			if (q->unrecorded_lo == 0)
				q->unrecorded_lo = seq;
			q->unrecorded_hi = seq;
			if (first_lsn != 0 && (q->unrecorded_first_lsn == 0 || first_lsn < q->unrecorded_first_lsn))
				q->unrecorded_first_lsn = first_lsn;
			q->unrecorded_commit_lsn = Max(q->unrecorded_commit_lsn, commit_lsn);
		}
	}
	if (copy != nullptr) {
		stamp_batch(copy, seq, now, commit_lsn, first_lsn);
		reinterpret_cast<BatchHeader *>(copy)->state = kBatchWriting;
		pos = q->tail;
		ring_copy_in(q->data, q->capacity, pos, copy, sizeof(BatchHeader));
		q->tail += copy_len;
		q->high_water = Max(q->high_water, q->tail - q->head);
	}
	Latch *latch = wake ? q->worker_latch : nullptr;
	LWLockRelease(q->lock);

	if (copy != nullptr) {
		/* The rest of the batch, outside the lock; then publish it. */
		ring_copy_in(q->data, q->capacity, pos + sizeof(BatchHeader), copy + sizeof(BatchHeader),
					 copy_len - sizeof(BatchHeader));
		pg_write_barrier();
		uint32 ready = kBatchReady;
		ring_copy_in(q->data, q->capacity, pos, reinterpret_cast<char *>(&ready), sizeof(ready));
	}
	wake_worker(latch);
	return seq;
}

void
queue_wake_worker(void)
{
	SharedQueue *q = shared_queue;
	LWLockAcquire(q->lock, LW_SHARED);
	Latch *latch = q->worker_latch;
	LWLockRelease(q->lock);
	wake_worker(latch);
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

/*
 * barrier(): every commit <= upto is delivered or covered, and so is every
 * commit of the previous run of the server (seq 0 while a replay or a
 * fallback holds them), which a worker must first have taken over.
 */
static bool
all_delivered_upto(uint64 upto)
{
	SharedQueue *q = shared_queue;
	if (pg_atomic_read_u64(&q->delivered_seq) < upto)
		return false;
	LWLockAcquire(q->lock, LW_SHARED);
	bool done = q->previous_run_handled && !(q->n_held > 0 && q->held_lo[0] == 0);
	for (int r = 0; r < q->n_uncovered && done; r++)
		done = q->uncovered_lo[r] > upto;
	LWLockRelease(q->lock);
	return done;
}

/* Whether each of seqs is delivered: below the watermark, or accounted for and not held. */
static bool
each_delivered(const uint64 *seqs, size_t n)
{
	SharedQueue *q = shared_queue;
	uint64 watermark = pg_atomic_read_u64(&q->delivered_seq);
	bool all = true;
	LWLockAcquire(q->lock, LW_SHARED);
	for (size_t i = 0; i < n && all; i++) {
		uint64 seq = seqs[i];
		if (seq <= watermark)
			continue;
		all = seq <= q->accounted_seq;
		for (int r = 0; r < q->n_held && all; r++)
			all = seq < q->held_lo[r] || seq > q->held_hi[r];
	}
	LWLockRelease(q->lock);
	return all;
}

/*
 * Sleeps on delivered_cv until done() or timeout_ms pass; returns done()'s
 * last answer. Monotonic: a wall clock stepped back must not stretch the
 * timeout. Bounded sleeps: a lost wakeup costs at most 100 ms.
 */
template <typename Done>
static bool
wait_on_delivered(Done done, int timeout_ms)
{
	SharedQueue *q = shared_queue;
	instr_time start, now;
	INSTR_TIME_SET_CURRENT(start);
	bool delivered;

	ConditionVariablePrepareToSleep(&q->delivered_cv);
	for (;;) {
		delivered = done();
		if (delivered)
			break;
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		long remaining = timeout_ms - static_cast<long>(INSTR_TIME_GET_MILLISEC(now));
		if (remaining <= 0)
			break;
		ConditionVariableTimedSleep(&q->delivered_cv, Min(remaining, 100L), PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	return delivered;
}

bool
queue_wait_until_delivered(uint64 upto, const uint64 *seqs, size_t n, int timeout_ms)
{
	/* A session's own commits (n > 0) one by one; barrier() everything up to upto. */
	return wait_on_delivered(
		[&] { return n > 0 ? each_delivered(seqs, n) && !queue_any_uncovered(seqs, n) : all_delivered_upto(upto); },
		timeout_ms);
}

uint64
queue_last_seq(void)
{
	LWLockAcquire(shared_queue->lock, LW_SHARED);
	uint64 seq = shared_queue->last_seq;
	LWLockRelease(shared_queue->lock);
	return seq;
}

uint64
queue_reserve_seq(void)
{
	LWLockAcquire(shared_queue->lock, LW_EXCLUSIVE);
	uint64 seq = ++shared_queue->last_seq;
	LWLockRelease(shared_queue->lock);
	return seq;
}

bool
queue_wait_until_lsn(uint64 lsn, int timeout_ms)
{
	return wait_on_delivered([&] { return pg_atomic_read_u64(&shared_queue->delivered_lsn) >= lsn; }, timeout_ms);
}

void
queue_publish_delivered_lsn(uint64 lsn)
{
	SharedQueue *q = shared_queue;
	if (lsn <= pg_atomic_read_u64(&q->delivered_lsn))
		return;
	pg_atomic_write_u64(&q->delivered_lsn, lsn);
	ConditionVariableBroadcast(&q->delivered_cv);
}

bool
queue_any_uncovered(const uint64 *seqs, size_t n)
{
	SharedQueue *q = shared_queue;
	bool found = false;
	LWLockAcquire(q->lock, LW_SHARED);
	for (int r = 0; r < q->n_uncovered && !found; r++)
		for (size_t i = 0; i < n && !found; i++)
			found = seqs[i] >= q->uncovered_lo[r] && seqs[i] <= q->uncovered_hi[r];
	LWLockRelease(q->lock);
	return found;
}

QueueDrain
queue_drain(std::string &out)
{
	SharedQueue *q = shared_queue;
	QueueDrain d{};

	LWLockAcquire(q->lock, LW_EXCLUSIVE);
	uint64 head = q->head;
	uint64 tail = q->tail;
	d.upto_seq = q->last_seq;
	d.unrecorded_lo = q->unrecorded_lo;
	d.unrecorded_hi = q->unrecorded_hi;
	d.unrecorded_first_lsn = q->unrecorded_first_lsn;
	d.unrecorded_commit_lsn = q->unrecorded_commit_lsn;
	q->unrecorded_lo = q->unrecorded_hi = 0;
	q->unrecorded_first_lsn = q->unrecorded_commit_lsn = 0;
	q->undrained_targets = 0;
	LWLockRelease(q->lock);

	out.clear();
	uint64 pos = head;
	while (pos < tail) {
		BatchHeader header;
		ring_copy_out(q->data, q->capacity, pos, reinterpret_cast<char *>(&header), sizeof(header));
		if (header.state != kBatchReady) {
			/* Still being copied in: it and everything after it wait. */
			d.upto_seq = header.seq - 1;
			d.blocked = true;
			break;
		}
		pg_read_barrier();
		/* Appended in (at most) two pieces: no zero-filling of a large buffer first. */
		size_t offset = pos % q->capacity;
		size_t first = Min(static_cast<size_t>(header.total_len), static_cast<size_t>(q->capacity - offset));
		out.append(q->data + offset, first);
		out.append(q->data, header.total_len - first);
		pos += header.total_len;
	}

	LWLockAcquire(q->lock, LW_EXCLUSIVE);
	q->head = pos;
	q->worker_drained_seq = Max(q->worker_drained_seq, d.upto_seq);
	LWLockRelease(q->lock);
	return d;
}

/* Fits ranges into the shared array by merging the closest neighbours. */
static std::vector<SeqRange>
fit_ranges(std::vector<SeqRange> ranges)
{
	std::sort(ranges.begin(), ranges.end(), [](const SeqRange &a, const SeqRange &b) { return a.lo < b.lo; });
	while (ranges.size() > static_cast<size_t>(kMaxUncoveredRanges)) {
		size_t best = 0;
		for (size_t i = 1; i + 1 < ranges.size(); i++)
			if (ranges[i + 1].lo - ranges[i].hi < ranges[best + 1].lo - ranges[best].hi)
				best = i;
		ranges[best].hi = Max(ranges[best].hi, ranges[best + 1].hi);
		ranges.erase(ranges.begin() + best + 1);
	}
	return ranges;
}

void
queue_publish_progress(uint64 delivered, uint64 accounted, const SeqSet &held, const std::vector<SeqRange> &uncovered,
					   bool standby_sends_waiting)
{
	SharedQueue *q = shared_queue;
	std::vector<SeqRange> fitted = fit_ranges(uncovered);
	SeqSet held_fitted = held;
	held_fitted.coarsen(kMaxHeldRanges);

	LWLockAcquire(q->lock, LW_EXCLUSIVE);
	q->standby_sends_waiting = standby_sends_waiting;
	/* A commit leaving the held set (or newly accounted for) may end a session's wait. */
	bool held_changed = accounted != q->accounted_seq ||
						static_cast<int>(held_fitted.ranges().size()) != q->n_held;
	for (int i = 0; !held_changed && i < q->n_held; i++)
		held_changed = held_fitted.ranges()[i].lo != q->held_lo[i] || held_fitted.ranges()[i].hi != q->held_hi[i];
	q->accounted_seq = accounted;
	q->n_held = static_cast<int>(held_fitted.ranges().size());
	for (int i = 0; i < q->n_held; i++) {
		q->held_lo[i] = held_fitted.ranges()[i].lo;
		q->held_hi[i] = held_fitted.ranges()[i].hi;
	}
	/* Fewer uncovered ranges: a fallback covered some, and sessions may be waiting for that. */
	bool covered_some = static_cast<int>(fitted.size()) < q->n_uncovered;
	q->n_uncovered = static_cast<int>(fitted.size());
	for (size_t i = 0; i < fitted.size(); i++) {
		q->uncovered_lo[i] = fitted[i].lo;
		q->uncovered_hi[i] = fitted[i].hi;
	}
	LWLockRelease(q->lock);

	bool advanced = delivered > pg_atomic_read_u64(&q->delivered_seq);
	if (advanced)
		pg_atomic_write_u64(&q->delivered_seq, delivered);
	if (advanced || covered_some || held_changed)
		ConditionVariableBroadcast(&q->delivered_cv);
}

} // namespace cachebust::pg
