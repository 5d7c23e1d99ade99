/*
 * worker.cpp — the cachebust background worker (one per cluster).
 *
 * It has no database connection. Each turn of its loop it drains the shared
 * queue into the coalescer, sends the batch when the window closes (or when
 * a retry is due), publishes its counters, and sleeps on its latch until
 * the next deadline; commits, flush() and signals set the latch.
 *
 * Failure handling (DESIGN.md promise 5): a failed batch is merged back and
 * retried with capped, jittered exponential backoff; queue overflow, a
 * pending set over max_pending, or a previous run that did not end cleanly
 * trigger the fallback. The state file records whether the last run ended
 * with everything delivered; it lives in the data directory because shared
 * memory does not survive the crash restarts we need to detect.
 *
 * A PostgreSQL ERROR in this process becomes FATAL (there is no error
 * handler to return to) and the postmaster restarts us after
 * bgw_restart_time; Redis trouble is therefore only ever logged.
 */
#include "pg/worker.hpp"

#include <cstdio>
#include <deque>
#include <string>
#include <vector>

#include "core/backoff.hpp"
#include "core/batch_codec.hpp"
#include "core/coalescer.hpp"
#include "core/deliverer.hpp"
#include "core/redis_client.hpp"
#include "core/redis_url.hpp"
#include "pg/guc.hpp"
#include "pg/postgres.hpp"
#include "pg/prefix_registry.hpp"
#include "pg/queue.hpp"

extern "C" {
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "utils/wait_event.h"
}

namespace cachebust::pg {

/* How long a clean shutdown keeps trying to deliver what is pending. */
constexpr int64 kShutdownDeliveryUs = 5 * 1000 * 1000;
/* The longest the loop sleeps without looking at the queue and signals. */
constexpr int64 kMaxSleepUs = 1000 * 1000;
/* Restart delay after the worker exits abnormally. */
constexpr int kRestartSeconds = 1;

static const char *const kStateFile = "pg_cachebust.state";
static const char *const kStateRunning = "running\n";
static const char *const kStateClean = "clean\n";

static volatile sig_atomic_t shutdown_requested = false;

static void
handle_sigterm(SIGNAL_ARGS)
{
	int save_errno = errno;
	shutdown_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

static int64
now_us()
{
	return static_cast<int64>(GetCurrentTimestamp());
}

/* Counter increments since the last publish, plus the gauges. */
struct StatsDelta {
	WorkerStats counters;
	bool dirty;
};

class Worker
{
  public:
	void run();

  private:
	void load_settings();
	void drain();
	bool should_send(int64 now) const;
	void send(int64 now);
	void schedule_redelete(const std::vector<Target> &targets, int64 now);
	void send_due_redeletes(int64 now);
	void ensure_connected();
	void run_fallback();
	void mark_delivered(uint64 seq);
	void note_error(const char *what, const std::string &message);
	void publish_stats();
	long sleep_ms(int64 now) const;
	bool prepare_to_sleep(int64 now);
	bool deliver_before_exit();
	void shut_down();

	RedisClient client_;
	Deliverer deliverer_{client_};
	Coalescer coalescer_;
	Backoff backoff_{50, 5000, static_cast<uint64_t>(MyProcPid)};

	RedisUrl url_;
	std::string url_text_;
	RedisTimeouts timeouts_;
	WindowPolicy policy_;
	DeliveryOptions delivery_;
	bool ever_connected_ = false;
	bool logged_failure_ = false;

	int64 retry_at_us_ = 0;	   /* in backoff until then (0: not backing off) */
	int64 window_opened_us_ = 0;
	bool fallback_needed_ = false;
	uint64 drained_seq_ = 0; /* every batch <= this is drained or lost */
	std::string drain_buffer_;
	DecodedBatch decoded_;
	WorkerStats delta_{};

	/* Delivered batches waiting for their second invalidation (redelete_ms). */
	struct Redelete {
		int64 due_us;
		std::vector<Target> targets;
	};
	std::deque<Redelete> redeletes_;
	size_t redelete_targets_ = 0; /* total over redeletes_, bounded by max_pending */
	bool logged_redelete_skip_ = false;
};

static void
write_state_file(const char *state)
{
	std::string tmp = std::string(kStateFile) + ".tmp";
	FILE *f = fopen(tmp.c_str(), "w");
	bool ok = f != nullptr && fputs(state, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
	if (f != nullptr && fclose(f) != 0)
		ok = false;
	if (ok && rename(tmp.c_str(), kStateFile) != 0)
		ok = false;
	if (!ok)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("cachebust could not write \"%s\": %m", kStateFile)));
}

/* True when the previous run of the worker did not finish cleanly. */
static bool
previous_run_was_unclean()
{
	FILE *f = fopen(kStateFile, "r");
	if (f == nullptr)
		return false; /* first start in this cluster */
	char buf[32] = {};
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	return std::string(buf, n) != kStateClean;
}

void
Worker::load_settings()
{
	policy_.debounce_us = static_cast<int64>(guc_debounce_ms) * 1000;
	policy_.max_batch = static_cast<size_t>(guc_max_batch);
	delivery_.tag_depth = guc_tag_depth;
	delivery_.publish_channel = guc_publish_channel ? guc_publish_channel : "";
	backoff_.set_cap(guc_retry_max_ms);

	RedisTimeouts timeouts;
	timeouts.connect_ms = guc_connect_timeout_ms;
	timeouts.command_ms = guc_command_timeout_ms;
	std::string url_text = guc_redis_url ? guc_redis_url : "";
	bool changed = url_text != url_text_ || timeouts.connect_ms != timeouts_.connect_ms ||
				   timeouts.command_ms != timeouts_.command_ms;
	if (!changed)
		return;

	/* The check hook has accepted the URL, so it parses. */
	url_ = RedisUrl::parse(url_text);
	url_text_ = url_text;
	timeouts_ = timeouts;
	if (client_.connected()) {
		ereport(LOG, (errmsg("cachebust worker: Redis settings changed, reconnecting to %s",
							 url_.redacted().c_str())));
		client_.disconnect();
	}
	/* A new server deserves a prompt first attempt. */
	retry_at_us_ = 0;
	backoff_.reset();
}

/* Moves every committed batch from shared memory into the coalescer. */
void
Worker::drain()
{
	SharedQueue *q = shared_queue;

	LWLockAcquire(q->lock, LW_EXCLUSIVE);
	uint64 head = q->head;
	uint64 tail = q->tail;
	uint64 last_seq = q->last_seq;
	bool overflow = q->overflow_pending;
	q->overflow_pending = false;
	q->worker_waits_for_deadline = false;
	q->undrained_targets = 0;
	LWLockRelease(q->lock);

	if (overflow) {
		ereport(WARNING,
				(errmsg("cachebust queue overflowed; running the fallback"),
				 errhint("Raise cachebust.queue_size if this happens under normal load.")));
		fallback_needed_ = true;
	}

	if (tail > head) {
		size_t len = static_cast<size_t>(tail - head);
		drain_buffer_.resize(len);
		/* Writers never touch [head, tail) until we advance head. */
		ring_copy_out(q->data, q->capacity, head, drain_buffer_.data(), len);

		LWLockAcquire(q->lock, LW_EXCLUSIVE);
		q->head = tail;
		LWLockRelease(q->lock);

		int64 now = now_us();
		bool was_empty = coalescer_.empty();
		size_t offset = 0;
		while (offset < len) {
			offset += decode_batch(drain_buffer_.data() + offset, len - offset, decoded_);
			coalescer_.add_transaction(std::move(decoded_.targets), decoded_.commit_time_us, now);
		}
		if (was_empty && !coalescer_.empty())
			window_opened_us_ = now;
		if (drain_buffer_.capacity() > 16 * 1024 * 1024)
			std::string().swap(drain_buffer_);
	}
	drained_seq_ = last_seq;

	if (coalescer_.size() > static_cast<size_t>(guc_max_pending)) {
		ereport(WARNING,
				(errmsg("cachebust worker holds %zu pending targets, more than cachebust.max_pending (%d); running the fallback",
						coalescer_.size(), guc_max_pending)));
		coalescer_.clear();
		fallback_needed_ = true;
	}
}

bool
Worker::should_send(int64 now) const
{
	if (retry_at_us_ != 0)
		return now >= retry_at_us_;
	return fallback_needed_ || coalescer_.window_closed(now, policy_) ||
		   (coalescer_.empty() && drained_seq_ > pg_atomic_read_u64(&shared_queue->delivered_seq));
}

void
Worker::ensure_connected()
{
	if (client_.connected())
		return;
	client_.connect(url_, timeouts_);
	deliverer_.reset_connection_state();
	if (ever_connected_)
		delta_.reconnects++;
	ever_connected_ = true;
	ereport(LOG, (errmsg("cachebust worker connected to %s", url_.redacted().c_str())));
	logged_failure_ = false;
}

/*
 * The prefixes the fallback must cover: every key_prefix that committed
 * invalidations (per-database and per-role prefixes included, remembered
 * across crashes), or the worker's own when none has been recorded yet.
 */
static std::vector<std::string>
fallback_prefixes(bool &incomplete)
{
	RegisteredPrefixes registered = prefix_registry_snapshot();
	incomplete = registered.overflowed;
	if (registered.prefixes.empty())
		registered.prefixes.emplace_back(guc_key_prefix ? guc_key_prefix : "");
	return registered.prefixes;
}

void
Worker::run_fallback()
{
	DeliveryCounters counters;

	if (guc_fallback == FALLBACK_NONE) {
		ereport(WARNING, (errmsg("cachebust fallback skipped: cachebust.fallback = none")));
		delta_.fallbacks_refused++;
		return;
	}
	if (guc_fallback == FALLBACK_FLUSHDB) {
		deliverer_.fallback_flushdb(counters);
		delta_.redis_commands += counters.commands;
		delta_.fallbacks++;
		ereport(LOG, (errmsg("cachebust fallback (flushdb) done")));
		return;
	}

	bool incomplete = false;
	bool refused = false;
	bool covered = false;
	for (const std::string &prefix : fallback_prefixes(incomplete)) {
		if (guc_fallback == FALLBACK_GENERATION) {
			deliverer_.fallback_generation(prefix, counters);
			covered = true;
			continue;
		}
		if (prefix.empty()) {
			ereport(WARNING,
					(errmsg("cachebust fallback refused for keys without a prefix"),
					 errdetail("Invalidations were committed with an empty cachebust.key_prefix; removing every key of the Redis database is never done implicitly."),
					 errhint("Set cachebust.key_prefix, or choose cachebust.fallback = flushdb explicitly.")));
			refused = true;
			continue;
		}
		deliverer_.fallback_prefix(prefix, delivery_, counters);
		covered = true;
	}
	if (incomplete) {
		ereport(WARNING,
				(errmsg("cachebust fallback may be incomplete: more than %d key prefixes are in use",
						kMaxRegisteredPrefixes)));
		refused = true;
	}
	delta_.redis_commands += counters.commands;
	if (covered)
		delta_.fallbacks++;
	if (refused)
		delta_.fallbacks_refused++;
	if (covered)
		ereport(LOG, (errmsg("cachebust fallback (%s) done",
							 guc_fallback == FALLBACK_GENERATION ? "generation" : "prefix")));
}

void
Worker::mark_delivered(uint64 seq)
{
	SharedQueue *q = shared_queue;
	if (seq > pg_atomic_read_u64(&q->delivered_seq)) {
		pg_atomic_write_u64(&q->delivered_seq, seq);
		ConditionVariableBroadcast(&q->delivered_cv);
	}
}

void
Worker::note_error(const char *what, const std::string &message)
{
	delta_.redis_errors++;
	delta_.last_error_time = GetCurrentTimestamp();
	snprintf(delta_.last_error, sizeof(delta_.last_error), "%s: %s", what, message.c_str());
	/* One LOG line per outage, not one per retry. */
	ereport(logged_failure_ ? DEBUG1 : LOG,
			(errmsg("cachebust worker: %s failed: %s; retrying with backoff", what, message.c_str())));
	logged_failure_ = true;
}

/* One delivery attempt of everything pending (and the fallback, if due). */
void
Worker::send(int64 now)
{
	uint64 upto = drained_seq_;
	bool have_batch = false;
	Coalescer::Batch batch;
	DeliveryCounters counters;
	bool was_connected = client_.connected();

	try {
		ensure_connected();
		if (fallback_needed_) {
			run_fallback();
			fallback_needed_ = false;
		}
		if (!coalescer_.empty()) {
			batch = coalescer_.take();
			have_batch = true;
			deliverer_.deliver(batch.targets, delivery_, counters);
		}
	} catch (const std::exception &e) {
		delta_.redis_commands += counters.commands;
		if (have_batch)
			coalescer_.restore(std::move(batch), window_opened_us_);
		if (retry_at_us_ != 0)
			delta_.retries++;
		retry_at_us_ = now + static_cast<int64>(backoff_.next_delay_ms()) * 1000;
		note_error(was_connected ? "delivery" : "connection", e.what());
		return;
	}

	int64 acked = now_us();
	delta_.redis_commands += counters.commands;
	if (have_batch) {
		delta_.targets_delivered += batch.targets.size();
		delta_.targets_coalesced += batch.coalesced;
		for (int64 commit_time : batch.commit_times_us)
			delta_.latency.record(static_cast<uint64_t>(Max(acked - commit_time, 0)));
		delta_.last_delivery = acked;
		schedule_redelete(batch.targets, acked);
	}
	if (retry_at_us_ != 0)
		ereport(LOG, (errmsg("cachebust worker: delivery resumed")));
	retry_at_us_ = 0;
	backoff_.reset();
	logged_failure_ = false;
	/* Publish first, so a session that sees its batch delivered sees its counters too. */
	publish_stats();
	mark_delivered(upto);
}

/*
 * The stale-fill race: a reader that fetched the old row just before the
 * commit can write it into the cache just after our invalidation. Sending
 * the batch once more redelete_ms later removes such a refill. Bumps are not
 * repeated: readers of a bumped generation never see the old entries again.
 */
void
Worker::schedule_redelete(const std::vector<Target> &targets, int64 now)
{
	if (guc_redelete_ms <= 0)
		return;
	std::vector<Target> repeat;
	for (const Target &t : targets)
		if (t.kind != TargetKind::Bump)
			repeat.push_back(t);
	if (repeat.empty())
		return;
	if (redelete_targets_ + repeat.size() > static_cast<size_t>(guc_max_pending)) {
		/* Memory stays bounded; the first invalidation was delivered. */
		ereport(logged_redelete_skip_ ? DEBUG1 : WARNING,
				(errmsg("cachebust worker skipped the delayed re-invalidation of %zu targets", repeat.size()),
				 errdetail("More than cachebust.max_pending (%d) targets are already waiting for it.",
						   guc_max_pending)));
		logged_redelete_skip_ = true;
		return;
	}
	redelete_targets_ += repeat.size();
	redeletes_.push_back(Redelete{now + static_cast<int64>(guc_redelete_ms) * 1000, std::move(repeat)});
}

/* Sends the re-invalidations that are due; on failure they wait for the next retry. */
void
Worker::send_due_redeletes(int64 now)
{
	if (guc_redelete_ms <= 0 && !redeletes_.empty()) {
		redeletes_.clear(); /* switched off on reload */
		redelete_targets_ = 0;
	}
	DeliveryOptions quiet = delivery_;
	quiet.publish_channel.clear(); /* subscribers heard about this batch already */

	while (!redeletes_.empty() && redeletes_.front().due_us <= now && retry_at_us_ == 0) {
		DeliveryCounters counters;
		try {
			ensure_connected();
			deliverer_.deliver(redeletes_.front().targets, quiet, counters);
		} catch (const std::exception &e) {
			delta_.redis_commands += counters.commands;
			retry_at_us_ = now + static_cast<int64>(backoff_.next_delay_ms()) * 1000;
			note_error("re-invalidation", e.what());
			return;
		}
		delta_.redis_commands += counters.commands;
		redelete_targets_ -= redeletes_.front().targets.size();
		redeletes_.pop_front();
		logged_redelete_skip_ = false;
	}
}

/* Adds this turn's counter increments to shared memory; sets the gauges. */
void
Worker::publish_stats()
{
	SharedQueue *q = shared_queue;
	WorkerStats &w = q->worker;

	SpinLockAcquire(&q->stats_mutex);
	w.targets_coalesced += delta_.targets_coalesced;
	w.targets_delivered += delta_.targets_delivered;
	w.redis_commands += delta_.redis_commands;
	w.redis_errors += delta_.redis_errors;
	w.retries += delta_.retries;
	w.reconnects += delta_.reconnects;
	w.fallbacks += delta_.fallbacks;
	w.fallbacks_refused += delta_.fallbacks_refused;
	w.latency.merge(delta_.latency);
	if (delta_.last_delivery != 0)
		w.last_delivery = delta_.last_delivery;
	if (delta_.last_error_time != 0) {
		w.last_error_time = delta_.last_error_time;
		memcpy(w.last_error, delta_.last_error, sizeof(w.last_error));
	}
	w.pending_targets = coalescer_.size();
	w.connected = client_.connected();
	SpinLockRelease(&q->stats_mutex);

	memset(&delta_, 0, sizeof(delta_));
}

long
Worker::sleep_ms(int64 now) const
{
	int64 sleep = kMaxSleepUs;
	if (retry_at_us_ != 0)
		sleep = Min(sleep, retry_at_us_ - now);
	else {
		if (!coalescer_.empty())
			sleep = Min(sleep, coalescer_.time_to_close_us(now, policy_));
		if (!redeletes_.empty())
			sleep = Min(sleep, redeletes_.front().due_us - now);
	}
	/* Round up so we do not wake a hair before the deadline and spin. */
	return static_cast<long>(Max((sleep + 999) / 1000, 0));
}

/*
 * Tells committing backends whether they need to wake us: not while we sleep
 * towards a window (or retry) deadline at which we drain anyway. Returns
 * false, meaning "do not sleep", when batches arrived since the last drain.
 */
bool
Worker::prepare_to_sleep(int64 now)
{
	/* (Not for redeletes: a first arrival must still open its window promptly.) */
	bool deadline_ahead = retry_at_us_ != 0 ||
						  (!coalescer_.empty() && !coalescer_.window_closed(now, policy_));
	if (!deadline_ahead)
		return true;

	SharedQueue *q = shared_queue;
	LWLockAcquire(q->lock, LW_EXCLUSIVE);
	bool arrived = q->tail != q->head || q->overflow_pending;
	if (!arrived)
		q->worker_waits_for_deadline = true;
	LWLockRelease(q->lock);
	return !arrived;
}

/* Clean shutdown: deliver what is pending, within kShutdownDeliveryUs. */
bool
Worker::deliver_before_exit()
{
	int64 deadline = now_us() + kShutdownDeliveryUs;

	for (;;) {
		drain();
		if (coalescer_.empty() && !fallback_needed_ &&
			drained_seq_ <= pg_atomic_read_u64(&shared_queue->delivered_seq))
			return true;
		int64 now = now_us();
		if (now >= deadline)
			return false;
		if (retry_at_us_ == 0 || now >= retry_at_us_)
			send(now);
		publish_stats();
		if (retry_at_us_ != 0) {
			long wait = static_cast<long>((Min(retry_at_us_, deadline) - now_us() + 999) / 1000);
			if (wait > 0)
				(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, wait, PG_WAIT_EXTENSION);
		}
	}
}

void
Worker::shut_down()
{
	if (deliver_before_exit()) {
		write_state_file(kStateClean);
		ereport(LOG, (errmsg("cachebust worker shut down with everything delivered")));
	} else {
		ereport(WARNING,
				(errmsg("cachebust worker shutting down with %zu undelivered targets", coalescer_.size()),
				 errdetail("The fallback will run when the worker starts again.")));
	}
	if (!redeletes_.empty())
		ereport(LOG, (errmsg("cachebust worker: %zu delayed re-invalidations were not due yet and are not sent",
							 redeletes_.size())));
	publish_stats();
	client_.disconnect();
}

void
Worker::run()
{
	load_settings();
	if (previous_run_was_unclean()) {
		ereport(LOG, (errmsg("cachebust worker: the previous run did not end cleanly; running the fallback")));
		fallback_needed_ = true;
	}
	write_state_file(kStateRunning);

	for (;;) {
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending) {
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			load_settings();
		}
		if (pg_atomic_exchange_u32(&shared_queue->flush_requested, 0) != 0)
			coalescer_.request_flush();

		drain();
		if (shutdown_requested) {
			shut_down();
			return;
		}
		int64 now = now_us();
		if (should_send(now))
			send(now);
		send_due_redeletes(now);
		publish_stats();

		now = now_us();
		if (!prepare_to_sleep(now))
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms(now), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

static void
detach_worker(int, Datum)
{
	if (shared_queue == nullptr)
		return;
	LWLockAcquire(shared_queue->lock, LW_EXCLUSIVE);
	if (shared_queue->worker_latch == MyLatch)
		shared_queue->worker_latch = nullptr;
	LWLockRelease(shared_queue->lock);
}

void
worker_register()
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	/* It connects to no database, but as a backend it shows in pg_stat_activity. */
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* A standby commits nothing, so there is nothing to deliver there. */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = kRestartSeconds;
	strlcpy(worker.bgw_library_name, "cachebust", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "cachebust_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "cachebust worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "cachebust worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

} // namespace cachebust::pg

using namespace cachebust::pg;

extern "C" {

PGDLLEXPORT void cachebust_worker_main(Datum);

void
cachebust_worker_main(Datum)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, handle_sigterm);
	BackgroundWorkerUnblockSignals();

	if (shared_queue == nullptr)
		ereport(FATAL, (errmsg("cachebust worker started without its shared memory")));
	BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);

	LWLockAcquire(shared_queue->lock, LW_EXCLUSIVE);
	shared_queue->worker_latch = MyLatch;
	LWLockRelease(shared_queue->lock);
	before_shmem_exit(detach_worker, 0);

	bool failed = false;
	char message[512];
	try {
		Worker worker;
		worker.run();
	} catch (const std::exception &e) {
		failed = true;
		strlcpy(message, e.what(), sizeof(message));
	} catch (...) {
		failed = true;
		strlcpy(message, "unknown exception", sizeof(message));
	}
	if (failed)
		ereport(FATAL, (errmsg("cachebust worker failed: %s", message)));
	/*
	 * Exit code 0 would unregister the worker for good, so that a
	 * pg_terminate_backend() stopped all delivery until the next server
	 * start. With 1 the postmaster starts us again after bgw_restart_time
	 * unless it is shutting down.
	 */
	proc_exit(1);
}

} // extern "C"
