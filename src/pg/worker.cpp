/*
 * worker.cpp — the cachebust background worker (one per cluster).
 *
 * It has no database connection. Each turn of its loop it drains the shared
 * queue into the coalescer, hands each closed window to the delivery engine
 * (core/delivery), starts fallbacks for whatever cannot be delivered
 * exactly, publishes progress and counters, and sleeps on its latch and the
 * engine's sockets until the next deadline. Nothing in the loop blocks on
 * Redis: the engine's I/O is non-blocking, so SIGTERM, SIGHUP and the latch
 * are always seen within one turn.
 *
 * Progress is a commit sequence number: delivered_seq advances to just
 * below the oldest commit whose targets are still held anywhere — in the
 * coalescer, the engine, or a batch not yet published — so a session's
 * wait_for_delivery() and barrier() say true only for what Redis applied or
 * a fallback that ran covered. Commits no fallback could cover are
 * published apart as uncovered (core/delivery/fallback.hpp).
 *
 * Errors: in a background worker an ERROR jumps to the handler in
 * StartBackgroundWorker and exits the process, over any live C++ object.
 * So every PostgreSQL call that can raise one goes through pg_call() (an
 * ERROR becomes an exception), and the entry point turns an exception into
 * FATAL only after the Worker is gone. SIGINT (pg_cancel_backend) is
 * ignored: there is no query to cancel. The postmaster restarts us after
 * kRestartSeconds; a worker that stopped without delivering everything
 * leaves that fact in shared memory and the next one runs the fallback.
 */
#include "pg/worker.hpp"

#include <deque>
#include <string>
#include <vector>

#include "core/batch_codec.hpp"
#include "core/coalescer.hpp"
#include "core/delivery/engine.hpp"
#include "core/delivery/fallback.hpp"
#include "core/delivery/publish_message.hpp"
#include "core/delivery/resend_schedule.hpp"
#include "core/delivery/standby_sends.hpp"
#include "pg/guard.hpp"
#include "pg/guc.hpp"
#include "pg/postgres.hpp"
#include "pg/prefix_registry.hpp"
#include "pg/queue.hpp"
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
/* The longest the loop sleeps without looking at the queue and signals. */
constexpr long kMaxSleepMs = 1000;
/* How often the standbys' replay positions are read while second sends wait
 * (walsenders do not wake us when a standby reports progress). */
constexpr long kStandbyPollMs = 10;
/* Restart delay after the worker exits. */
constexpr int kRestartSeconds = 1;

static volatile sig_atomic_t shutdown_requested = false;

static void
handle_sigterm(SIGNAL_ARGS)
{
	int save_errno = errno;
	shutdown_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* A closed coalescing window, until Redis applied all of it. */
struct ClosedWindow {
	uint64 lo, hi; /* the commits it covers */
	size_t targets;
	std::vector<int64> commit_times_us;
	std::string message;		 /* for publish_channel, or empty */
	std::vector<Target> resend;	 /* for redelete_ms (no bumps) */
	uint64 max_commit_lsn;		 /* what the standbys must replay before the second send */
	std::vector<Target> standby; /* for standby_names (bumps too) */
};

class Worker
{
  public:
	Worker() : engine_(static_cast<uint64_t>(MyProcPid)) {}
	void run();

  private:
	void start();
	void load_settings();
	void turn();
	void drain();
	void close_window();
	void handle_report();
	void advance();
	void send_due_resends();
	void wait_for_standbys(StandbySends::Entry &&entry);
	void send_replayed();
	void standby_fallback_for_all_registered(uint64 seq, const std::string &why);
	void enforce_max_pending();
	void start_fallback(const std::vector<std::string> &prefixes, bool incomplete, uint64 lo, uint64 hi,
						const std::string &why);
	void fallback_for_all_registered(uint64 lo, uint64 hi, const std::string &why);
	void retry_uncovered();
	uint64 first_held_from() const;
	uint64 held_from() const;
	void publish();
	long sleep_ms() const;
	void wait(long timeout_ms);
	void shut_down();
	void log(int elevel, const std::string &message);

	DeliveryEngine engine_;
	EngineSettings engine_settings_;
	Coalescer coalescer_;
	WindowPolicy policy_;
	FallbackJobs jobs_;
	ResendSchedule resends_;
	StandbySends standby_sends_;
	std::deque<ClosedWindow> windows_;
	WaitSet wait_set_;
	StatsDelta stats_;

	bool first_load_ = true;
	FallbackMode fallback_mode_ = FallbackMode::Prefix;
	int redelete_ms_ = 0;
	StandbyNames standby_names_;
	std::vector<std::string> standbys_absent_;
	std::string publish_channel_;
	uint64 drained_upto_ = 0; /* every commit <= this was drained */
	uint64 window_hi_ = 0;	  /* the last commit in a closed window */
	bool drain_blocked_ = false;
	uint64 resend_seq_ = 0; /* the redelete stream's own counter */
	std::string drain_buffer_;
	std::vector<PollEntry> sockets_;
	std::vector<WaitSet::Ready> ready_;
};

void
Worker::log(int elevel, const std::string &message)
{
	ereport(elevel, (errmsg_internal("%s", message.c_str())));
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
	policy_.debounce_us = static_cast<int64>(guc_debounce_ms) * 1000;
	policy_.max_batch = static_cast<size_t>(guc_max_batch);
	redelete_ms_ = guc_redelete_ms;
	publish_channel_ = setting(guc_publish_channel);
	/* (Switched off, what waits for the standbys goes at the next turn.) */
	standby_names_ = standby_names_parse(guc_standby_names);

	FallbackMode mode = fallback_mode_setting();
	bool mode_changed = mode != fallback_mode_;
	fallback_mode_ = mode;

	EngineSettings s;
	std::string url = setting(guc_redis_url);
	s.configured = !url.empty();
	if (s.configured)
		s.url = RedisUrl::parse(url); /* the check hook accepted it */
	if (s.url.sentinel_password.empty())
		s.url.sentinel_password = setting(guc_sentinel_password);
	s.tls.ca_file = setting(guc_tls_ca_file);
	s.tls.cert_file = setting(guc_tls_cert_file);
	s.tls.key_file = setting(guc_tls_key_file);
	s.tls.server_name = setting(guc_tls_server_name);
	s.tls.verify = guc_tls_verify == TLS_VERIFY_NONE ? TlsSettings::Verify::None
				   : guc_tls_verify == TLS_VERIFY_CA ? TlsSettings::Verify::Ca
													 : TlsSettings::Verify::Full;
	s.connect_timeout_ms = guc_connect_timeout_ms;
	s.command_timeout_ms = guc_command_timeout_ms;
	s.retry_max_ms = guc_retry_max_ms;
	s.tag_depth = guc_tag_depth;
	s.publish_channel = publish_channel_;
	s.publish_sharded = guc_publish_sharded;
	s.max_pending = static_cast<size_t>(guc_max_pending);

	bool endpoint_changed = first_load_ || !(s.url == engine_settings_.url) || s.configured != engine_settings_.configured;
	first_load_ = false;
	engine_settings_ = s;
	engine_.configure(s);
	if (endpoint_changed) {
		if (s.configured)
			log(LOG, "cachebust worker delivers to " + s.url.redacted());
		else {
			stats_.note_error("cachebust.redis_url is not set (or its value was rejected): invalidations wait until it is",
							  std::string(), GetCurrentTimestamp());
			log(WARNING, "cachebust.redis_url is not set (or its value was rejected); invalidations are held until it is");
		}
	}

	if (fallback_mode_ == FallbackMode::Prefix && setting(guc_key_prefix).empty())
		ereport(WARNING,
				(errmsg("cachebust.key_prefix is empty and cachebust.fallback is \"prefix\": a lost invalidation cannot be covered"),
				 errdetail("The prefix fallback never removes every key of the Redis database; wait_for_delivery() and barrier() report such losses as undelivered."),
				 errhint("Set cachebust.key_prefix, or choose cachebust.fallback = flushdb or generation.")));
	if (mode_changed)
		retry_uncovered();
}

static RegisteredPrefixes registered_prefixes();

/* The first turn: what the previous run left behind. */
void
Worker::start()
{
	SharedQueue *q = shared_queue;
	TimeLineID timeline = GetWALInsertionTimeLine();

	LWLockAcquire(q->lock, LW_EXCLUSIVE);
	bool previous_run_handled = q->previous_run_handled;
	bool recorded = q->state_recorded;
	bool previous_worker = q->worker_started;
	bool previous_clean = q->worker_exited_clean;
	uint64 delivered = pg_atomic_read_u64(&q->delivered_seq);
	uint64 drained = q->worker_drained_seq;
	bool standby_waited = q->standby_sends_waiting;
	/* (Copied out under the lock, into nothing that allocates.) */
	int n_uncovered = q->n_uncovered;
	uint64 uncovered_lo[kMaxUncoveredRanges], uncovered_hi[kMaxUncoveredRanges];
	for (int r = 0; r < n_uncovered; r++) {
		uncovered_lo[r] = q->uncovered_lo[r];
		uncovered_hi[r] = q->uncovered_hi[r];
	}
	q->worker_started = true;
	q->worker_exited_clean = false;
	q->timeline = timeline;
	LWLockRelease(q->lock);

	drained_upto_ = window_hi_ = drained;
	if (!previous_run_handled) {
		/* The first worker of this run of the server (or one whose predecessor could not record). */
		std::string why;
		if (!worker_state_previous_run_clean(timeline, why))
			/* Seq 0 stands for every commit before this run of the server. */
			fallback_for_all_registered(0, 0, "the previous run of the server: " + why);
		/* The postmaster could not record "running": without that record a crash
		 * could go unnoticed, so ERROR (so FATAL) rather than deliver. */
		if (!recorded)
			worker_state_record_running(timeline);
		LWLockAcquire(q->lock, LW_EXCLUSIVE);
		q->state_recorded = true;
		q->previous_run_handled = true;
		LWLockRelease(q->lock);
	} else if (previous_worker && !previous_clean) {
		/* Delivered 0 after an unclean previous run: the previous worker may
		 * still have held that run's fallback (seq 0). */
		std::string why;
		bool run_fallback_held = delivered == 0 && !worker_state_previous_run_clean(timeline, why);
		if (drained > delivered || run_fallback_held)
			fallback_for_all_registered(run_fallback_held ? 0 : delivered + 1, drained,
										"the previous worker stopped without delivering everything it held");
	}

	/* Commits earlier workers of this run left uncovered stay uncovered; shared
	 * memory keeps only their seqs, so every registered prefix stands for theirs.
	 * The fallback setting may cover them by now (changed while no worker ran). */
	if (n_uncovered > 0) {
		RegisteredPrefixes registered = registered_prefixes();
		bool incomplete = registered.overflowed || registered.prefixes.empty();
		for (int r = 0; r < n_uncovered; r++)
			jobs_.adopt_uncovered(uncovered_lo[r], uncovered_hi[r], registered.prefixes, incomplete);
		retry_uncovered();
	}

	std::vector<ResendSchedule::Entry> resends;
	if (!worker_state_load_resends(resends))
		fallback_for_all_registered(drained, drained, "the saved second sends could not be read back");
	for (ResendSchedule::Entry &e : resends)
		resends_.add(std::move(e), static_cast<size_t>(guc_max_pending));

	/* Second sends that waited for the standbys: saved at a clean stop, lost in a crash. */
	std::vector<StandbySends::Entry> waiting;
	if (!worker_state_load_standby_sends(waiting))
		standby_fallback_for_all_registered(delivered + 1, "the saved second sends for the standbys could not be read back");
	for (StandbySends::Entry &e : waiting) {
		e.seq = delivered + 1;
		e.delivered_us = monotonic_us();
		standby_sends_.add(std::move(e), static_cast<size_t>(guc_max_pending));
	}
	if (previous_worker && !previous_clean && standby_waited)
		standby_fallback_for_all_registered(delivered + 1, "the previous worker stopped while second sends waited for the standbys");
}

/* Moves every committed batch from shared memory into the coalescer. */
void
Worker::drain()
{
	QueueDrain d = queue_drain(drain_buffer_);
	drain_blocked_ = d.blocked;

	int64 now = GetCurrentTimestamp();
	size_t offset = 0;
	DecodedBatch batch;
	while (offset < drain_buffer_.size()) {
		offset += decode_batch(drain_buffer_.data() + offset, drain_buffer_.size() - offset, batch);
		if (batch.lost) {
			std::vector<std::string> prefixes;
			for (const Target &t : batch.targets)
				prefixes.push_back(t.key);
			start_fallback(prefixes, false, batch.seq, batch.seq,
						   "a transaction's invalidations did not fit in cachebust.queue_size");
			continue;
		}
		coalescer_.add_transaction(std::move(batch.targets), batch.seq, batch.commit_time_us, now,
								   batch.commit_lsn);
	}
	/* (The buffer keeps its size, at most queue_size: reused, it is not faulted in again.) */
	if (d.unrecorded_lo != 0)
		fallback_for_all_registered(d.unrecorded_lo, d.unrecorded_hi,
									"commits could not be recorded in the full queue");
	drained_upto_ = Max(drained_upto_, d.upto_seq);
}

void
Worker::close_window()
{
	Coalescer::Batch batch = coalescer_.take();
	ClosedWindow w;
	w.lo = window_hi_ + 1;
	w.hi = drained_upto_;
	w.targets = batch.targets.size();
	w.commit_times_us = std::move(batch.commit_times_us);
	if (!publish_channel_.empty())
		w.message = batch_json(batch.targets);
	if (redelete_ms_ > 0)
		for (const Target &t : batch.targets)
			if (t.kind != TargetKind::Bump)
				w.resend.push_back(t);
	w.max_commit_lsn = batch.max_commit_lsn;
	if (!standby_names_.empty())
		w.standby = batch.targets;
	stats_.counters.targets_coalesced += batch.coalesced;
	window_hi_ = w.hi;
	engine_.submit(std::move(batch.targets), Stream::First, w.lo);
	windows_.push_back(std::move(w));
}

/* The oldest commit not yet delivered once (kNoSeq: none). */
uint64
Worker::first_held_from() const
{
	uint64 held = Min(coalescer_.min_seq(), engine_.min_held_seq(Stream::First));
	return Min(held, drained_upto_ + 1);
}

/* The oldest commit whose targets something still holds, second sends for
 * the standbys included: what wait_for_delivery() and barrier() wait for. */
uint64
Worker::held_from() const
{
	uint64 held = Min(first_held_from(), standby_sends_.min_seq());
	return Min(held, engine_.min_held_seq(Stream::Standby));
}

void
Worker::start_fallback(const std::vector<std::string> &prefixes, bool incomplete, uint64 lo, uint64 hi,
					   const std::string &why)
{
	FallbackPlan plan = plan_fallback(fallback_mode_, prefixes, incomplete);
	uint32 job = jobs_.start(plan, prefixes, incomplete, lo, hi);
	static const char *const names[] = {"prefix", "generation", "flushdb", "none"};
	const char *mode = names[static_cast<int>(fallback_mode_)];

	if (!plan.covers_everything()) {
		stats_.counters.fallbacks_refused++;
		std::string refused;
		for (const std::string &p : plan.refused)
			refused += (refused.empty() ? "\"" : ", \"") + p + "\"";
		ereport(WARNING,
				(errmsg("cachebust fallback (%s) cannot cover every lost invalidation: %s", mode, why.c_str()),
				 fallback_mode_ == FallbackMode::None
					 ? errdetail("cachebust.fallback is none.")
				 : plan.incomplete
					 ? errdetail("More than %d key prefixes are in use; the others are unknown.", kMaxRegisteredPrefixes)
					 : errdetail("Key prefixes not covered: %s (an empty prefix would be the whole database).",
								 refused.c_str()),
				 errhint("Set cachebust.key_prefix, or cachebust.fallback = flushdb; wait_for_delivery() and barrier() report these commits as undelivered until a fallback covers them.")));
	}
	if (job == 0)
		return;
	stats_.counters.fallbacks++;
	ereport(LOG, (errmsg("cachebust fallback (%s) started: %s", mode, why.c_str())));
	std::vector<Target> targets = plan.targets;
	for (Target &t : targets)
		t.job = job;
	if (!targets.empty())
		engine_.submit(std::move(targets), Stream::First, lo);
	if (plan.flushdb)
		engine_.submit_flushdb(Stream::First, lo, job);
}

/*
 * Every prefix ever registered, and this server's own cachebust.key_prefix:
 * the registry file is not replicated, so a promoted standby knows only what
 * was registered when it was cloned, plus its configuration.
 */
static RegisteredPrefixes
registered_prefixes()
{
	RegisteredPrefixes registered = prefix_registry_snapshot();
	std::string own = setting(guc_key_prefix);
	if (!own.empty() &&
		std::find(registered.prefixes.begin(), registered.prefixes.end(), own) == registered.prefixes.end())
		registered.prefixes.push_back(own);
	return registered;
}

void
Worker::fallback_for_all_registered(uint64 lo, uint64 hi, const std::string &why)
{
	RegisteredPrefixes registered = registered_prefixes();
	start_fallback(registered.prefixes, registered.overflowed, lo, hi, why);
}

/* cachebust.fallback changed: try again to cover what was left uncovered. */
void
Worker::retry_uncovered()
{
	for (const FallbackJobs::Job &u : jobs_.to_retry()) {
		FallbackPlan plan = plan_fallback(fallback_mode_, u.prefixes, u.incomplete);
		if (!plan.covers_everything())
			continue;
		uint32 job = jobs_.start(plan, u.prefixes, u.incomplete, u.lo, u.hi, true);
		if (job == 0)
			continue;
		stats_.counters.fallbacks++;
		ereport(LOG, (errmsg("cachebust fallback retried for uncovered commits %llu to %llu",
							 static_cast<unsigned long long>(u.lo), static_cast<unsigned long long>(u.hi))));
		std::vector<Target> targets = plan.targets;
		for (Target &t : targets)
			t.job = job;
		if (!targets.empty())
			engine_.submit(std::move(targets), Stream::First, u.lo);
		if (plan.flushdb)
			engine_.submit_flushdb(Stream::First, u.lo, job);
	}
}

/* Turns the engine's report into logs, counters and fallbacks. */
void
Worker::handle_report()
{
	DeliveryReport report = engine_.take_report();
	TimestampTz now = GetCurrentTimestamp();
	stats_.add(report, now);
	for (const LogLine &line : report.logs)
		log(line.level == LogLevel::Warning ? WARNING : line.level == LogLevel::Log ? LOG : DEBUG1, line.message);
	for (uint32 job : report.failed_jobs) {
		jobs_.failed(job);
		stats_.counters.fallbacks_refused++;
	}
	for (const FallbackNeed &need : report.fallback_needs) {
		if (need.stream == Stream::First)
			start_fallback({need.prefix}, false, need.seq, drained_upto_,
						   "Redis refused a target and its substitute");
		else {
			/* A second send: the first one was applied; cover the prefix anyway. */
			FallbackPlan plan = plan_fallback(fallback_mode_, {need.prefix}, false);
			engine_.submit(std::move(plan.targets), need.stream, need.seq);
		}
	}
}

/* Windows Redis applied are published, measured, scheduled for redelete
 * and queued for the standbys. */
void
Worker::advance()
{
	uint64 held = first_held_from();
	int64 now_mono = monotonic_us();
	TimestampTz now = GetCurrentTimestamp();

	while (!windows_.empty() && windows_.front().hi < held) {
		ClosedWindow &w = windows_.front();
		if (!w.message.empty())
			engine_.publish(std::move(w.message), w.lo); /* holds w.lo until Redis took it */
		for (int64 commit_time : w.commit_times_us)
			stats_.counters.latency.record(static_cast<uint64>(Max(now - commit_time, 0)));
		stats_.counters.targets_delivered += w.targets;
		stats_.last_delivery = now;
		if (redelete_ms_ > 0 && !w.resend.empty()) {
			ResendSchedule::Entry e{now_mono + static_cast<int64>(redelete_ms_) * 1000, std::move(w.resend), false};
			if (!resends_.add(std::move(e), static_cast<size_t>(guc_max_pending)))
				log(WARNING, "cachebust worker skipped a delayed re-invalidation: more than cachebust.max_pending targets wait for one");
		}
		if (!standby_names_.empty() && !w.standby.empty()) {
			StandbySends::Entry e;
			e.lsn = w.max_commit_lsn;
			e.seq = w.lo;
			e.delivered_us = now_mono;
			e.targets = std::move(w.standby);
			wait_for_standbys(std::move(e));
		}
		windows_.pop_front();
	}

	held = first_held_from();
	for (FallbackJobs::Job &job : jobs_.settle(held)) {
		if (job.failed)
			continue;
		ereport(LOG, (errmsg("cachebust fallback done")));
		/* A fallback races with readers refilling old values just like a delivery. */
		if (redelete_ms_ > 0 && !job.retry) {
			std::vector<Target> again;
			for (Target &t : job.sent) {
				t.job = 0;
				again.push_back(std::move(t));
			}
			ResendSchedule::Entry e{now_mono + static_cast<int64>(redelete_ms_) * 1000, std::move(again),
									job.flushdb};
			resends_.add(std::move(e), static_cast<size_t>(guc_max_pending));
		}
		/* ... and with readers on standbys, like a delivery too. The commits
		 * it covers are not known one by one: all WAL so far must replay. */
		if (!standby_names_.empty() && !job.retry) {
			StandbySends::Entry e;
			e.lsn = GetXLogInsertRecPtr();
			e.seq = job.lo;
			e.delivered_us = now_mono;
			e.targets = std::move(job.sent);
			for (Target &t : e.targets)
				t.job = 0;
			e.flushdb = job.flushdb;
			wait_for_standbys(std::move(e));
		}
	}
}

void
Worker::wait_for_standbys(StandbySends::Entry &&entry)
{
	size_t before = standby_sends_.targets();
	size_t count = entry.targets.size();
	standby_sends_.add(std::move(entry), static_cast<size_t>(guc_max_pending));
	if (standby_sends_.targets() == before && count > 0)
		log(LOG, "cachebust worker keeps only the key prefixes of a window for its second send: "
				 "more than cachebust.max_pending targets wait for the standbys");
}

/* Second sends whose commits every standby waited for has replayed (or
 * that waited standby_max_wait_ms) go out now. */
void
Worker::send_replayed()
{
	if (standby_sends_.empty()) {
		standbys_absent_.clear();
		return;
	}
	std::vector<std::string> absent;
	StandbyReplay replay = standby_replay(standby_names_, absent);
	if (absent != standbys_absent_ && !absent.empty()) {
		std::string names;
		for (const std::string &n : absent)
			names += (names.empty() ? "" : ", ") + n;
		log(WARNING, "cachebust.standby_names lists standbys that are not streaming: " + names +
						 "; second sends wait up to cachebust.standby_max_wait_ms for them");
	}
	standbys_absent_ = std::move(absent);

	int64 max_wait_us = static_cast<int64>(guc_standby_max_wait_ms) * 1000;
	for (StandbySends::Released &r : standby_sends_.take_ready(replay, monotonic_us(), max_wait_us)) {
		StandbySends::Entry &e = r.entry;
		stats_.counters.second_sends++;
		if (r.timed_out)
			stats_.counters.standby_timeouts++;
		else
			stats_.counters.standby_lag.record(static_cast<uint64>(r.waited_us));
		if (!e.prefixes.empty()) {
			FallbackPlan plan = plan_fallback(fallback_mode_, e.prefixes, false);
			e.targets.insert(e.targets.end(), plan.targets.begin(), plan.targets.end());
			e.flushdb = e.flushdb || plan.flushdb;
		}
		if (e.flushdb)
			engine_.submit_flushdb(Stream::Standby, e.seq, 0);
		if (!e.targets.empty())
			engine_.submit(std::move(e.targets), Stream::Standby, e.seq);
	}
}

/* Every registered prefix, once the standbys replayed what is written now. */
void
Worker::standby_fallback_for_all_registered(uint64 seq, const std::string &why)
{
	if (standby_names_.empty())
		return;
	RegisteredPrefixes registered = registered_prefixes();
	ereport(LOG, (errmsg("cachebust fallback for the standbys scheduled: %s", why.c_str())));
	StandbySends::Entry e;
	e.lsn = GetXLogInsertRecPtr();
	e.seq = seq;
	e.delivered_us = monotonic_us();
	e.prefixes = std::move(registered.prefixes);
	standby_sends_.add(std::move(e), static_cast<size_t>(guc_max_pending));
}

void
Worker::send_due_resends()
{
	if (redelete_ms_ <= 0 && !resends_.empty())
		resends_.take_all(); /* switched off on reload */
	for (ResendSchedule::Entry &e : resends_.take_due(monotonic_us())) {
		uint64 seq = ++resend_seq_;
		if (e.flushdb)
			engine_.submit_flushdb(Stream::Redelete, seq, 0);
		engine_.submit(std::move(e.targets), Stream::Redelete, seq);
	}
}

/* More than max_pending targets waiting (Redis away for long): cover them instead. */
void
Worker::enforce_max_pending()
{
	size_t waiting = coalescer_.size() + engine_.unsent_targets();
	if (waiting <= static_cast<size_t>(guc_max_pending))
		return;
	std::vector<std::string> prefixes;
	auto note = [&](const std::string &p) {
		if (std::find(prefixes.begin(), prefixes.end(), p) == prefixes.end())
			prefixes.push_back(p);
	};
	for (const Target &t : coalescer_.targets())
		note(target_prefix(t));
	uint64 lo = Min(coalescer_.min_seq(), engine_.min_held_seq(Stream::First));
	DroppedTargets dropped = engine_.drop_unsent();
	for (const std::string &p : dropped.prefixes)
		note(p);
	coalescer_.clear();
	ereport(WARNING,
			(errmsg("cachebust worker holds %zu targets, more than cachebust.max_pending (%d); running the fallback",
					waiting, guc_max_pending)));
	start_fallback(prefixes, false, lo == kNoSeq ? drained_upto_ : lo, drained_upto_,
				   "more than cachebust.max_pending targets were waiting");
}

/* Progress and counters to shared memory. */
void
Worker::publish()
{
	uint64 held = held_from();
	uint64 delivered = held == kNoSeq ? drained_upto_ : (held == 0 ? 0 : held - 1);
	queue_publish_progress(delivered, jobs_.uncovered(), !standby_sends_.empty());
	StatsGauges gauges{coalescer_.size() + engine_.held_targets() + standby_sends_.targets(),
					   jobs_.uncovered_batches(), engine_.connected(), standbys_absent_};
	worker_stats_publish(stats_, gauges);
}

long
Worker::sleep_ms() const
{
	if (drain_blocked_)
		return 1; /* a batch is being copied in right now */
	int64 sleep_us = kMaxSleepMs * 1000;
	if (!coalescer_.empty())
		sleep_us = Min(sleep_us, coalescer_.time_to_close_us(GetCurrentTimestamp(), policy_));
	int64 now = monotonic_us();
	if (engine_.deadline_us() != 0)
		sleep_us = Min(sleep_us, engine_.deadline_us() - now);
	if (!resends_.empty())
		sleep_us = Min(sleep_us, resends_.next_due_us() - now);
	if (!standby_sends_.empty())
		sleep_us = Min(sleep_us, kStandbyPollMs * 1000);
	/* Round up so we do not wake a hair before the deadline and spin. */
	return static_cast<long>(Max((sleep_us + 999) / 1000, 0));
}

/* Sleeps until a deadline, the latch, or a socket; hands socket events to the engine. */
void
Worker::wait(long timeout_ms)
{
	/*
	 * Committing backends need not wake us while a window is open: we drain
	 * at its end (they still do for an immediate target, a half-full ring or
	 * max_batch). Without a window, what arrived while we worked is drained
	 * now; the flag is cleared under the same lock, so no commit is left
	 * waiting unseen.
	 */
	SharedQueue *q = shared_queue;
	bool deadline_ahead = !coalescer_.empty() && !coalescer_.window_closed(GetCurrentTimestamp(), policy_);
	LWLockAcquire(q->lock, LW_EXCLUSIVE);
	bool arrived = q->tail != q->head || q->unrecorded_hi != 0;
	q->worker_waits_for_deadline = deadline_ahead;
	LWLockRelease(q->lock);
	if (arrived && !deadline_ahead)
		timeout_ms = 0;

	sockets_.clear();
	engine_.poll_entries(sockets_);
	wait_set_.wait(sockets_, timeout_ms, ready_);
	for (const WaitSet::Ready &r : ready_)
		engine_.on_io(r.fd, r.readable, r.writable);
	engine_.on_timer();
}

/* One turn of the loop: everything but the sleep. */
void
Worker::turn()
{
	if (pg_atomic_exchange_u32(&shared_queue->flush_requested, 0) != 0)
		coalescer_.request_flush();
	drain();
	if (coalescer_.window_closed(GetCurrentTimestamp(), policy_))
		close_window();
	engine_.on_timer();
	handle_report();
	send_due_resends();
	advance();
	send_replayed();
	enforce_max_pending();
	handle_report();
	publish();
}

void
Worker::run()
{
	pg_call([&] { load_settings(); });
	pg_call([&] { start(); });

	for (;;) {
		pg_call([&] {
			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending) {
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
				load_settings();
				/* (Tests wait for this line rather than for a guessed time.) */
				ereport(LOG, (errmsg("cachebust worker reloaded its settings")));
			}
		});
		if (shutdown_requested) {
			pg_call([&] { shut_down(); });
			return;
		}
		pg_call([&] { turn(); });
		long timeout = sleep_ms();
		pg_call([&] { wait(timeout); });
	}
}

/* Clean stop: deliver what is held, within kShutdownBudgetUs. */
void
Worker::shut_down()
{
	int64 deadline = monotonic_us() + kShutdownBudgetUs;
	bool done = false;
	for (;;) {
		coalescer_.request_flush();
		turn();
		done = coalescer_.empty() && windows_.empty() && !drain_blocked_ && !jobs_.busy() &&
			   engine_.min_held_seq(Stream::First) == kNoSeq && engine_.min_held_seq(Stream::Standby) == kNoSeq;
		int64 now = monotonic_us();
		if (done || now >= deadline)
			break;
		/* Every wait is bounded by what is left of the budget. */
		wait(Min(sleep_ms(), static_cast<long>((deadline - now + 999) / 1000)));
	}

	/* Second sends not yet due, or still waiting for the standbys: kept for the next start. */
	bool saved = worker_state_save_resends(resends_.take_all());
	size_t for_standbys = standby_sends_.size();
	saved = worker_state_save_standby_sends(standby_sends_.take_all()) && saved;
	bool clean = done && saved;
	if (clean && for_standbys > 0)
		ereport(LOG, (errmsg("cachebust worker shut down with everything delivered once; "
							 "%zu second sends still wait for the standbys and are kept for the next start",
							 for_standbys)));
	else if (clean)
		ereport(LOG, (errmsg("cachebust worker shut down with everything delivered")));
	else
		ereport(WARNING,
				(errmsg("cachebust worker shutting down with %zu undelivered targets",
						coalescer_.size() + engine_.held_targets()),
				 errdetail("The fallback runs when the worker starts again.")));
	publish();
	LWLockAcquire(shared_queue->lock, LW_EXCLUSIVE);
	shared_queue->worker_exited_clean = clean;
	LWLockRelease(shared_queue->lock);
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
	/* A standby commits nothing; a promoted one starts us (and we run the fallback). */
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

	CaughtError error;
	error.pg_error = nullptr;
	bool failed = false;
	try {
		Worker worker;
		worker.run();
	} catch (...) {
		catch_current_exception(error);
		failed = true;
	}
	/* Every C++ object is gone here. */
	if (failed) {
		const char *message = error.pg_error != nullptr ? error.pg_error->message : error.message;
		ereport(FATAL, (errmsg("cachebust worker failed: %s", message != nullptr ? message : "unknown error")));
	}
	/*
	 * Exit code 0 would unregister the worker for good, so that a
	 * pg_terminate_backend() stopped all delivery until the next server
	 * start. With 1 the postmaster starts us again after bgw_restart_time
	 * unless it is shutting down.
	 */
	proc_exit(1);
}

} // extern "C"
