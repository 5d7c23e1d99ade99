/*
 * worker.cpp — the cachebust background worker (one per cluster).
 *
 * A plain loop, as pg_cron's: wait on the latch and the Redis sockets →
 * reload settings on SIGHUP → drain the shared queue → let the dispatcher
 * (core/delivery/dispatcher.hpp) close windows, deliver, and cover what it
 * must → publish progress and counters → sleep until its next deadline.
 * It has no database connection. Nothing in the loop blocks on Redis: the
 * engine's I/O is non-blocking, so SIGTERM, SIGHUP and the latch are seen
 * within one turn.
 *
 * What is decided lives in the dispatcher, which is pure C++ and unit
 * tested; this file is the PostgreSQL side: shared memory, signals,
 * settings, files, logs. The journal's slot and reads, a standby's
 * delivery and the refresh workers' requests have files of their own
 * (worker_impl.hpp lists them).
 *
 * Errors: in a background worker an ERROR jumps to the handler in
 * StartBackgroundWorker and exits the process, over any live C++ object.
 * So each PostgreSQL call that can raise one goes through pg_call() on its
 * own, never a C++ call tree (an ERROR becomes a PgException), and the
 * entry point turns an exception into FATAL only after the Worker is gone.
 * SIGINT (pg_cancel_backend) is ignored: there is no query to cancel. The
 * postmaster restarts us after kRestartSeconds; a worker that stopped
 * without delivering everything leaves that fact in shared memory and the
 * next one runs the fallback.
 */
#include "pg/worker.hpp"
#include "pg/worker_impl.hpp"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/batch_codec.hpp"
#include "core/delivery/dispatcher.hpp"
#include "pg/clear.hpp"
#include "pg/engine_settings.hpp"
#include "pg/guard.hpp"
#include "pg/guc.hpp"
#include "pg/journal_wal.hpp"
#include "pg/postgres.hpp"
#include "pg/prefix_registry.hpp"
#include "pg/queue.hpp"
#include "pg/refresh_requests.hpp"
#include "pg/standby_follower.hpp"
#include "pg/standby_progress.hpp"
#include "pg/wait_set.hpp"
#include "pg/worker_state.hpp"
#include "pg/worker_stats.hpp"

extern "C" {
#include "access/xlog.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "utils/wait_event.h"
}

namespace cachebust::pg {

/* How long a clean shutdown keeps trying to deliver what is pending. */
constexpr int64 kShutdownBudgetUs = 5 * 1000 * 1000;
/* Restart delay after the worker exits. */
constexpr int kRestartSeconds = 1;

volatile sig_atomic_t shutdown_requested = false;

static void
handle_sigterm(SIGNAL_ARGS)
{
	int save_errno = errno;
	shutdown_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}


static int
elevel_of(LogLevel level)
{
	return level == LogLevel::Warning ? WARNING : level == LogLevel::Log ? LOG : DEBUG1;
}

void
Worker::log(const LogLine &line)
{
	const char *message = line.message.c_str();
	const char *detail = line.detail.empty() ? nullptr : line.detail.c_str();
	const char *hint = line.hint.empty() ? nullptr : line.hint.c_str();
	int elevel = elevel_of(line.level);
	pg_call([=] {
		ereport(elevel, (errmsg_internal("%s", message), detail ? errdetail_internal("%s", detail) : 0,
						 hint ? errhint("%s", hint) : 0));
	});
}

/*
 * Every prefix ever registered, and this server's own cachebust.key_prefix:
 * the registry file is not replicated, so a promoted standby knows only what
 * was registered when it was cloned, plus its configuration.
 */
PrefixList
Worker::registered_prefixes()
{
	RegisteredPrefixes registered;
	pg_call([&] { registered = prefix_registry_snapshot(); });
	PrefixList out;
	out.prefixes = std::move(registered.prefixes);
	out.incomplete = registered.overflowed;
	std::string own = guc_key_prefix != nullptr ? guc_key_prefix : "";
	if (!own.empty() && std::find(out.prefixes.begin(), out.prefixes.end(), own) == out.prefixes.end())
		out.prefixes.push_back(own);
	return out;
}

uint64_t
Worker::wal_insert_lsn()
{
	return GetXLogInsertRecPtr(); /* (cannot fail) */
}

StandbyReplay
Worker::standby_replay(std::vector<std::string> &absent)
{
	return cachebust::pg::standby_replay(standby_names_, absent); /* guards its own calls */
}

static FallbackMode
fallback_mode_setting()
{
	switch (guc_fallback) {
	case FALLBACK_GENERATION:
		return FallbackMode::Generation;
	case FALLBACK_FLUSHDB:
		return FallbackMode::FlushDb;
	case FALLBACK_NONE:
		return FallbackMode::None;
	default:
		return FallbackMode::Prefix;
	}
}

static std::string
setting(const char *value)
{
	return value != nullptr ? value : "";
}

void
Worker::load_settings()
{
	DispatcherSettings d;
	d.window.debounce_us = static_cast<int64>(guc_debounce_ms) * 1000;
	d.window.max_batch = static_cast<size_t>(guc_max_batch);
	d.fallback = fallback_mode_setting();
	d.redelete_ms = guc_redelete_ms;
	d.publish = !setting(guc_publish_channel).empty();
	/* (Switched off, what waits for the standbys goes at the next turn.) */
	standby_names_ = standby_names_parse(guc_standby_names);
	d.standby_sends = !standby_names_.empty();
	d.standby_max_wait_us = static_cast<int64>(guc_standby_max_wait_ms) * 1000;
	d.max_pending = static_cast<size_t>(guc_max_pending);
	d.journal = journal_active();
	d.source_throttled = standby_;
	/* A refresh's query, and the time to start a refresh worker and deliver its value. */
	d.refresh_wait_us = (static_cast<int64>(guc_refresh_timeout_ms) + 10 * 1000) * 1000;

	EngineSettings s = engine_settings_from_gucs();

	bool endpoint_changed = first_load_ || !(s.url == engine_settings_.url) || s.configured != engine_settings_.configured;
	first_load_ = false;
	engine_settings_ = s;
	dispatcher_.configure(d, s);
	if (endpoint_changed) {
		if (s.configured)
			log(LogLine{LogLevel::Log, "cachebust worker delivers to " + s.url.redacted()});
		else {
			stats_.note_error("cachebust.redis_url is not set (or its value was rejected): invalidations wait until it is",
							  std::string(), GetCurrentTimestamp());
			log(LogLine{LogLevel::Warning,
						"cachebust.redis_url is not set (or its value was rejected); invalidations are held until it is"});
		}
	}

	if (s.configured && s.url.tls && s.tls.verify == TlsSettings::Verify::None)
		log(LogLine{LogLevel::Warning, "cachebust.tls_verify is \"none\": the Redis server's certificate is not verified",
					"Whoever can intercept the connection can pose as Redis and learn its password.",
					"Set cachebust.tls_verify = full (or ca) and cachebust.tls_ca_file."});

	/* Said at start, and when the fallback becomes prefix again. */
	bool now_prefix = d.fallback == FallbackMode::Prefix;
	if (now_prefix && !prefix_mode_)
		warn_if_empty_prefix_recorded();
	prefix_mode_ = now_prefix;
}

/*
 * Commits recorded with an empty key_prefix are what the prefix fallback
 * cannot cover. Whether this server's own setting is empty says nothing:
 * the recommended set-up gives each database or role its own prefix.
 */
void
Worker::warn_if_empty_prefix_recorded()
{
	RegisteredPrefixes registered;
	pg_call([&] { registered = prefix_registry_snapshot(); });
	if (std::find(registered.prefixes.begin(), registered.prefixes.end(), std::string()) == registered.prefixes.end())
		return;
	std::string source = registered.empty_prefix_source.empty() ? "a database and role not recorded"
																 : registered.empty_prefix_source;
	log(LogLine{LogLevel::Warning,
				"cachebust.key_prefix was empty for commits of " + source +
					", and cachebust.fallback is \"prefix\": a lost invalidation of such a commit cannot be covered",
				"The prefix fallback never removes every key of the Redis database; wait_for_delivery() and barrier() "
				"report such losses as undelivered.",
				"Set cachebust.key_prefix for that database or role, or choose cachebust.fallback = flushdb or "
				"generation."});
}


PreviousRun
take_over_shared_state()
{
	PreviousRun p{};
	int n_uncovered = 0;
	SeqRange uncovered[kMaxUncoveredRanges];
	pg_call([&] {
		SharedQueue *q = shared_queue;
		/* (A standby has none yet: set when it is promoted.) */
		p.timeline = RecoveryInProgress() ? 0 : GetWALInsertionTimeLine();
		LWLockAcquire(q->lock, LW_EXCLUSIVE);
		p.handled = q->previous_run_handled;
		p.recorded = q->state_recorded;
		p.worker = q->worker_started;
		p.clean = q->worker_exited_clean;
		p.delivered = pg_atomic_read_u64(&q->delivered_seq);
		p.drained = q->worker_drained_seq;
		p.standby_waited = q->standby_sends_waiting;
		p.journal = q->previous_run_journal;
		q->worker_started = true;
		q->worker_exited_clean = false;
		q->timeline = p.timeline;
		/* (Copied into plain storage: nothing that allocates under the lock.) */
		n_uncovered = q->n_uncovered;
		for (int r = 0; r < n_uncovered; r++)
			uncovered[r] = SeqRange{q->uncovered_lo[r], q->uncovered_hi[r]};
		LWLockRelease(q->lock);
	});
	p.uncovered.assign(uncovered, uncovered + n_uncovered);
	return p;
}

/* The first turn: what the previous run left behind. */
void
Worker::start()
{
	PreviousRun p = take_over_shared_state();
	dispatcher_.resume_after(p.drained);
	std::string why_not;
	bool gap_recorded = journal_active() && worker_state_journal_gap_recorded(p.timeline);
	bool replayable = start_journal(p, gap_recorded, why_not);
	uint64 wal_end = 0;
	if (replayable)
		pg_call([&] { wal_end = journal_readable_end(); });
	/* Read back from the journal, or covered by the fallback. */
	bool fell_back = false;
	uint64 fell_back_upto = 0;
	auto recover = [&](uint64 lo, uint64 hi, const std::string &why) {
		if (replayable) {
			dispatcher_.read_journal(slot_restart_lsn_, wal_end, SeqSet(lo, hi), why);
		} else {
			dispatcher_.fallback_for_all_registered(lo, hi, why + "; not replayed: " + why_not);
			fell_back = true;
			fell_back_upto = hi;
		}
	};

	if (!p.handled) {
		/* The first worker of this run of the server (or one whose predecessor could not record). */
		std::string why;
		bool clean = false;
		pg_call([&] { clean = worker_state_previous_run_clean(p.timeline, why); });
		if (!clean)
			/* Seq 0 (kReplaySeq) stands for every commit before this run of the server. */
			recover(0, 0, "the previous run of the server: " + why);
		/* The postmaster could not record "running": without that record a crash
		 * could go unnoticed, so ERROR (so FATAL) rather than deliver. */
		pg_call([&] {
			if (!p.recorded)
				worker_state_record_running(p.timeline);
			LWLockAcquire(shared_queue->lock, LW_EXCLUSIVE);
			shared_queue->state_recorded = true;
			shared_queue->previous_run_handled = true;
			LWLockRelease(shared_queue->lock);
		});
	} else if (p.worker && !p.clean) {
		/* Delivered 0 after an unclean previous run: the previous worker may
		 * still have held that run's replay or fallback (seq 0). */
		std::string why;
		bool previous_run_clean = true;
		if (p.delivered == 0)
			pg_call([&] { previous_run_clean = worker_state_previous_run_clean(p.timeline, why); });
		bool run_recovery_held = p.delivered == 0 && !previous_run_clean;
		if (p.drained > p.delivered || run_recovery_held)
			recover(run_recovery_held ? 0 : p.delivered + 1, p.drained,
					"the previous worker stopped without delivering everything it held");
	}

	/* The slot does not reach back to what the fallback covers until it ran. */
	if (journal_active()) {
		if (fell_back)
			open_journal_gap(fell_back_upto, slot_usable_ ? slot_restart_lsn_ : 0);
		else
			pg_call([] { worker_state_clear_journal_gap(); });
		/* Standbys learn from here on where a replay would start if promoted. */
		write_progress();
	}

	/* Commits earlier workers of this run left uncovered stay uncovered; shared
	 * memory keeps only their seqs, so every registered prefix stands for theirs.
	 * The fallback setting may cover them by now (changed while no worker ran). */
	dispatcher_.adopt_uncovered(p.uncovered);

	std::vector<RedeleteSchedule::Entry> redeletes;
	bool read = false;
	read = worker_state_load_redeletes(redeletes); /* (guards its PostgreSQL calls) */
	if (!read)
		dispatcher_.fallback_for_all_registered(p.drained, p.drained, "the saved redeletes could not be read back");
	for (RedeleteSchedule::Entry &e : redeletes)
		dispatcher_.add_redelete(std::move(e));

	/* Standby sends that waited for the standbys: saved at a clean stop, lost in a crash. */
	int64 now = monotonic_us();
	std::vector<StandbySends::Entry> waiting;
	read = worker_state_load_standby_sends(waiting);
	if (!read)
		dispatcher_.standby_fallback_for_all_registered(p.delivered + 1, now,
														"the saved standby sends could not be read back");
	for (StandbySends::Entry &e : waiting) {
		e.seqs = SeqSet(p.delivered + 1);
		e.delivered_us = now;
		dispatcher_.add_standby_send(std::move(e));
	}
	if (p.worker && !p.clean && p.standby_waited)
		dispatcher_.standby_fallback_for_all_registered(p.delivered + 1, now,
														"the previous worker stopped while standby sends waited for "
														"the standbys");
}

/* Moves every committed batch from shared memory into the dispatcher. */
void
Worker::drain()
{
	QueueDrain d{};
	pg_call([&] { d = queue_drain(drain_buffer_); });
	drain_blocked_ = d.blocked;
	/* (The buffer keeps its size, at most queue_size: reused, it is not faulted in again.) */
	dispatcher_.add_drained(drain_buffer_, d.upto_seq, monotonic_us());
	if (d.unrecorded_lo != 0)
		dispatcher_.add_unrecorded(d.unrecorded_lo, d.unrecorded_hi, d.unrecorded_first_lsn, d.unrecorded_commit_lsn);
}

/* One turn of the loop: everything but the sleep. */
void
Worker::turn()
{
	if (pg_atomic_exchange_u32(&shared_queue->flush_requested, 0) != 0)
		dispatcher_.request_flush();
	if (standby_) {
		read_replayed();
	} else {
		if (journal_active()) {
			/* In this order (see delivered_bound): a transaction not published
			 * yet writes its first message after this insert position. */
			insert_before_drain_ = journal_insert_end();
			open_before_drain_ = journal_oldest_open();
		}
		drain();
		read_journal();
	}
	dispatcher_.turn(monotonic_us(), GetCurrentTimestamp());
	start_refresh_workers();
	clear_serve_counts(dispatcher_.engine());
	advance_slot(false);
	close_journal_gap_if_covered();
	/* (Uncovered commits are not delivered: the LSN waits while there are any.) */
	uint64 delivered = delivered_bound();
	/* A standby's bound is the end of the last record read: when that is a
	 * page boundary, the writer's LSN is past the next page's header. */
	if (delivered != 0 && dispatcher_.uncovered().empty())
		pg_call([&] { queue_publish_delivered_lsn(journal_record_start(delivered)); });
	publish();
}

/* Progress and counters to shared memory. */
void
Worker::publish()
{
	DispatchCounters c = dispatcher_.take_counters();
	DeliveryReport report = dispatcher_.take_engine_report();
	TimestampTz now = GetCurrentTimestamp();
	stats_.add(report, now);
	stats_.counters.targets_coalesced += c.targets_coalesced;
	stats_.counters.targets_delivered += c.targets_delivered;
	stats_.counters.fallbacks += c.fallbacks;
	stats_.counters.fallbacks_refused += c.fallbacks_refused;
	stats_.counters.second_sends += c.second_sends;
	stats_.counters.standby_timeouts += c.standby_timeouts;
	stats_.counters.latency.merge(c.latency);
	stats_.counters.standby_lag.merge(c.standby_lag);
	if (c.last_delivery_wall_us != 0)
		stats_.last_delivery = c.last_delivery_wall_us;

	stats_.counters.journal_replayed_batches += c.journal_replayed_batches;
	stats_.counters.journal_replay_us += c.journal_replay_us;
	stats_.counters.refresh_failures += c.refreshes.removed;
	stats_.counters.refreshes_coalesced += c.refreshes.coalesced;
	stats_.counters.refresh_latency.merge(c.refreshes.latency);
	/* What a fallback removed includes materialized keys: compute them again
	 * once it is applied (warmed while it runs, they would be removed again). */
	if (c.fallbacks_done > 0 && !standby_)
		pg_call([] { refresh_warm_all(); });
	StatsGauges gauges{dispatcher_.pending_targets(), dispatcher_.uncovered_batches(), slot_lag_bytes_,
					   dispatcher_.engine().connected(), dispatcher_.standbys_absent()};
	pg_call([&] {
		queue_publish_progress(dispatcher_.delivered_seq(), dispatcher_.drained_upto(), dispatcher_.held(),
							   dispatcher_.uncovered(), dispatcher_.standby_sends_waiting());
		worker_stats_publish(stats_, gauges);
	});
}

/* Sleeps until deadline_us (monotonic), the latch, or a socket; hands socket events to the engine. */
void
Worker::wait(int64 deadline_us)
{
	int64 now = monotonic_us();
	long timeout_ms = drain_blocked_ ? 1 /* a batch is being copied in right now */
									 : static_cast<long>(Max((deadline_us - now + 999) / 1000, 0));
	/*
	 * Committing backends need not wake us while a window is open: we drain
	 * at its end (they still do for an immediate target, a half-full ring or
	 * max_batch). Without a window, what arrived while we worked is drained
	 * now; the flag is cleared under the same lock, so no commit is left
	 * waiting unseen.
	 */
	bool deadline_ahead = dispatcher_.waits_for_window(now);
	/* (Replay does not set our latch: a standby looks again soon.) */
	if (journal_waits_for_wal_ || standby_)
		timeout_ms = Min(timeout_ms, static_cast<long>(kJournalWalWaitUs / 1000));
	bool arrived = false;
	pg_call([&] {
		SharedQueue *q = shared_queue;
		LWLockAcquire(q->lock, LW_EXCLUSIVE);
		arrived = q->tail != q->head || q->unrecorded_hi != 0;
		q->worker_waits_for_deadline = deadline_ahead;
		LWLockRelease(q->lock);
	});
	if (arrived && !deadline_ahead)
		timeout_ms = 0;

	sockets_.clear();
	DeliveryEngine &engine = dispatcher_.engine();
	engine.poll_entries(sockets_);
	wait_set_.wait(sockets_, timeout_ms, ready_);
	for (const WaitSet::Ready &r : ready_)
		engine.on_io(r.fd, r.readable, r.writable);
	engine.on_timer();
}

void
Worker::run()
{
	load_settings();
	if (standby_)
		start_standby();
	else {
		start();
		/* Startup warming: every materialized key is computed again. */
		pg_call([] {
			refresh_load_databases();
			refresh_warm_all();
		});
	}

	for (;;) {
		bool reload = false;
		pg_call([&] {
			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending) {
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
				reload = true;
			}
		});
		if (reload) {
			load_settings();
			/* (Tests wait for this line rather than for a guessed time.) */
			log(LogLine{LogLevel::Log, "cachebust worker reloaded its settings"});
		}
		if (shutdown_requested) {
			shut_down();
			return;
		}
		if (standby_) {
			bool in_recovery = true;
			pg_call([&] { in_recovery = RecoveryInProgress(); });
			if (!in_recovery)
				promoted();
		}
		turn();
		wait(dispatcher_.deadline_us(monotonic_us()));
	}
}

/* Clean stop: deliver what is held, within kShutdownBudgetUs. */
void
Worker::shut_down()
{
	int64 deadline = monotonic_us() + kShutdownBudgetUs;
	bool done = false;
	for (;;) {
		dispatcher_.request_flush();
		turn();
		done = dispatcher_.all_delivered() && !drain_blocked_;
		int64 now = monotonic_us();
		if (done || now >= deadline)
			break;
		/* Every wait is bounded by what is left of the budget. */
		wait(Min(dispatcher_.deadline_us(now), deadline));
	}

	/* Everything delivered: the next start need not read what is behind us. */
	if (done)
		advance_slot(true);

	/* Second sends not yet due, or still waiting for the standbys: kept for the next start. */
	std::vector<RedeleteSchedule::Entry> redeletes = dispatcher_.take_redeletes();
	size_t for_standbys = dispatcher_.standby_sends_count();
	std::vector<StandbySends::Entry> standby = dispatcher_.take_standby_sends();
	bool saved_redeletes = worker_state_save_redeletes(redeletes); /* (guard their PostgreSQL calls) */
	bool saved_standby = worker_state_save_standby_sends(standby);
	bool saved = saved_redeletes && saved_standby;
	bool clean = done && saved;
	/* Saved, the standby sends' commits are the next start's: this run may end clean. */
	if (saved_standby)
		dispatcher_.update_progress();
	if (clean && for_standbys > 0)
		log(LogLine{LogLevel::Log, "cachebust worker shut down with everything delivered once; " +
									   std::to_string(for_standbys) +
									   " standby sends still wait for the standbys and are kept for the next start"});
	else if (clean)
		log(LogLine{LogLevel::Log, "cachebust worker shut down with everything delivered"});
	else
		log(LogLine{LogLevel::Warning,
					"cachebust worker shutting down with " + std::to_string(dispatcher_.pending_targets()) +
						" undelivered targets",
					"The fallback runs when the worker starts again."});
	publish();
	pg_call([&] {
		LWLockAcquire(shared_queue->lock, LW_EXCLUSIVE);
		shared_queue->worker_exited_clean = clean;
		LWLockRelease(shared_queue->lock);
	});
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
	/* On a hot standby we follow the primary's journal (standby_follower.hpp),
	 * and deliver once promoted; without hot_standby, from the promotion on. */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
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
	/* pg_cancel_backend(): there is no query to cancel, and an ERROR here would end the worker. */
	pqsignal(SIGINT, SIG_IGN);
	BackgroundWorkerUnblockSignals();

	if (shared_queue == nullptr)
		ereport(FATAL, (errmsg("cachebust worker started without its shared memory")));
	BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);

	LWLockAcquire(shared_queue->lock, LW_EXCLUSIVE);
	shared_queue->worker_latch = MyLatch;
	LWLockRelease(shared_queue->lock);
	before_shmem_exit(detach_worker, 0);

	run_worker_body("cachebust worker", [] {
		/* On a hot standby: follow the primary's journal until promoted. */
		StandbyFollowing following = follow_standby(shutdown_requested);
		if (!shutdown_requested) {
			Worker worker(following);
			worker.run();
		}
	});
	/*
	 * Exit code 0 would unregister the worker for good, so that a
	 * pg_terminate_backend() stopped all delivery until the next server
	 * start. With 1 the postmaster starts us again after bgw_restart_time
	 * unless it is shutting down.
	 */
	proc_exit(1);
}

} // extern "C"
