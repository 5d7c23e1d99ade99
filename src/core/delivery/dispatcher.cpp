/*
 * dispatcher.cpp — windows, progress, fallbacks and second sends.
 */
#include "core/delivery/dispatcher.hpp"

#include <algorithm>

#include "core/batch_codec.hpp"
#include "core/delivery/publish_message.hpp"
#include "core/row_refresh.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

/* The longest the worker sleeps without looking at the queue and signals. */
constexpr int64_t kMaxSleepUs = 1000 * 1000;
/* How often the standbys' replay positions are read while standby sends
 * wait (walsenders do not wake the worker when a standby reports progress). */
constexpr int64_t kStandbyPollUs = 10 * 1000;

const char *
mode_name(FallbackMode mode)
{
	static const char *const names[] = {"prefix", "generation", "flushdb", "none"};
	return names[static_cast<int>(mode)];
}

} // namespace

Dispatcher::Dispatcher(DispatcherHost &host, uint64_t seed) : host_(host), engine_(seed) {}

void
Dispatcher::log(LogLevel level, std::string message, std::string detail, std::string hint)
{
	LogLine line{level, std::move(message)};
	line.detail = std::move(detail);
	line.hint = std::move(hint);
	host_.log(line);
}

void
Dispatcher::configure(const DispatcherSettings &settings, const EngineSettings &engine)
{
	bool mode_changed = configured_ && settings.fallback != settings_.fallback;
	settings_ = settings;
	configured_ = true;
	refreshes_.set_timeout_us(settings.refresh_wait_us);
	engine_.configure(engine);
	if (mode_changed)
		retry_uncovered();
}

void
Dispatcher::resume_after(uint64_t seq)
{
	drained_upto_ = window_hi_ = seq;
}

void
Dispatcher::add_redelete(RedeleteSchedule::Entry &&entry)
{
	redeletes_.add(std::move(entry), settings_.max_pending);
}

void
Dispatcher::add_standby_send(StandbySends::Entry &&entry)
{
	standby_sends_.add(std::move(entry), settings_.max_pending);
}

void
Dispatcher::add_drained(const std::string &batches, uint64_t upto_seq, int64_t now_us)
{
	size_t offset = 0;
	DecodedBatch batch;
	while (offset < batches.size()) {
		offset += decode_batch(batches.data() + offset, batches.size() - offset, batch);
		max_drained_lsn_ = std::max(max_drained_lsn_, batch.commit_lsn);
		bool in_journal = settings_.journal && batch.first_lsn != 0;
		if (in_journal)
			horizon_.add(batch.seq, batch.first_lsn);
		if (batch.lost && in_journal) {
			read_journal(batch.first_lsn, batch.commit_lsn, SeqSet(batch.seq),
						 "a transaction's invalidations did not fit in cachebust.queue_size");
			continue;
		}
		if (batch.lost) {
			std::vector<std::string> prefixes;
			for (const Target &t : batch.targets)
				prefixes.push_back(t.key);
			start_fallback(prefixes, false, batch.seq, batch.seq,
						   "a transaction's invalidations did not fit in cachebust.queue_size");
			continue;
		}
		if (spooling_ && in_journal) {
			/* More than max_pending wait: WAL holds it until Redis takes the backlog. */
			read_journal(batch.first_lsn, batch.commit_lsn, SeqSet(batch.seq), std::string());
			continue;
		}
		if (batch.commit_time_us != 0)
			for (const Target &t : batch.targets)
				if (t.kind == TargetKind::Refresh) {
					refresh_commit_wall_us_[batch.seq] = batch.commit_time_us;
					break;
				}
		coalescer_.add_transaction(std::move(batch.targets), batch.seq, batch.commit_time_us, now_us,
								   batch.commit_lsn);
	}
	drained_upto_ = std::max(drained_upto_, upto_seq);
}

void
Dispatcher::add_unrecorded(uint64_t lo, uint64_t hi, uint64_t first_lsn, uint64_t commit_lsn)
{
	if (settings_.journal && first_lsn != 0) {
		max_drained_lsn_ = std::max(max_drained_lsn_, commit_lsn);
		read_journal(first_lsn, commit_lsn, SeqSet(lo, hi), "commits could not be recorded in the full queue");
		return;
	}
	fallback_for_all_registered(lo, hi, "commits could not be recorded in the full queue");
}

void
Dispatcher::close_window(int64_t now_us)
{
	Coalescer::Batch batch = coalescer_.take();
	/* Materialized keys are recomputed by their refresh workers, not sent;
	 * with redelete_ms, once more after it (a reader's late refill). */
	std::vector<RefreshNeed> needs = split_refreshes(batch.targets, batch.contributions);
	if (!needs.empty()) {
		for (RefreshNeed &need : needs)
			for (const SeqSet::Range &r : need.seqs.ranges())
				for (auto it = refresh_commit_wall_us_.lower_bound(r.lo);
					 it != refresh_commit_wall_us_.end() && it->first <= r.hi; ++it)
					if (need.commit_wall_us == 0 || it->second < need.commit_wall_us)
						need.commit_wall_us = it->second;
		if (settings_.redelete_ms > 0) {
			std::vector<Target> again;
			for (const RefreshNeed &need : needs)
				again.push_back(need.target);
			redeletes_.add(RedeleteSchedule::Entry{now_us + static_cast<int64_t>(settings_.redelete_ms) * 1000,
												   std::move(again), false},
						   settings_.max_pending);
		}
		request_refreshes(std::move(needs), now_us);
	}
	refresh_commit_wall_us_.erase(refresh_commit_wall_us_.begin(),
								  refresh_commit_wall_us_.upper_bound(drained_upto_));
	ClosedWindow w;
	w.lo = window_hi_ + 1;
	w.hi = drained_upto_;
	w.targets = batch.targets.size();
	w.commit_times_us = std::move(batch.commit_times_us);
	w.publish = settings_.publish;
	if (w.publish || settings_.redelete_ms > 0 || settings_.standby_sends)
		w.targets_copy = batch.targets;
	w.max_commit_lsn = batch.max_commit_lsn;
	w.commits = std::move(batch.commits);
	counters_.targets_coalesced += batch.coalesced;
	window_hi_ = w.hi;
	engine_.submit_window(std::move(batch.targets), Stream::First, batch.contributions);
	windows_.push_back(std::move(w));
}

/* Hands refresh needs to the refresh workers; what none can take is removed. */
void
Dispatcher::request_refreshes(std::vector<RefreshNeed> &&needs, int64_t now_us)
{
	for (RefreshNeed &need : needs) {
		Target removal = removal_of(need.target);
		SeqSet seqs = need.seqs;
		if (!refreshes_.add(std::move(need), now_us, host_))
			submit_removal(std::move(removal), seqs);
	}
}

/* A materialized key removed instead of recomputed, on behalf of seqs (none: a redelete's). */
void
Dispatcher::submit_removal(Target &&removal, const SeqSet &seqs)
{
	if (seqs.empty())
		engine_.submit({std::move(removal)}, Stream::Redelete, ++redelete_seq_);
	else
		engine_.submit({std::move(removal)}, Stream::First, seqs);
}

void
Dispatcher::poll_refreshes(int64_t now_us, int64_t wall_us)
{
	if (refreshes_.empty())
		return;
	std::vector<RefreshNeed> expired;
	refreshes_.poll(now_us, wall_us, host_, expired);
	for (RefreshNeed &need : expired) {
		log(LogLevel::Warning, "cachebust removed materialized key \"" + std::string(redis_key_of(need.target)) +
								   "\": its refresh did not finish in time",
			{}, "See cachebust.materialized.last_error and the server log of the refresh worker.");
		submit_removal(removal_of(need.target), need.seqs);
	}
}

/* The commits not yet delivered once. */
SeqSet
Dispatcher::first_held() const
{
	SeqSet held = coalescer_.seqs();
	engine_.add_held(Stream::First, held);
	refreshes_.add_held(held);
	return held;
}

/* Standby sends and commits waiting for a replay included: what
 * wait_for_delivery() and barrier() wait for. */
void
Dispatcher::update_held()
{
	held_ = first_held();
	standby_sends_.add_held(held_);
	engine_.add_held(Stream::Standby, held_);
	if (backlog_.active())
		held_.merge(backlog_.seqs());
}

uint64_t
Dispatcher::delivered_seq() const
{
	uint64_t held = std::min(held_.min(), drained_upto_ + 1);
	return held == 0 ? 0 : held - 1;
}

size_t
Dispatcher::pending_targets() const
{
	return coalescer_.size() + engine_.held_targets() + standby_sends_.targets();
}

/* Sends a fallback's plan on stream s on behalf of commit seq. */
void
Dispatcher::submit_plan(const FallbackPlan &plan, Stream s, const SeqSet &seqs, uint32_t job)
{
	std::vector<Target> targets = plan.targets;
	for (Target &t : targets)
		t.job = job;
	if (!targets.empty())
		engine_.submit(std::move(targets), s, seqs);
	if (plan.flushdb)
		engine_.submit_flushdb(s, seqs, job);
}

void
Dispatcher::start_fallback(const std::vector<std::string> &prefixes, bool incomplete, uint64_t lo, uint64_t hi,
						   const std::string &why)
{
	FallbackPlan plan = plan_fallback(settings_.fallback, prefixes, incomplete);
	uint32_t job = jobs_.start(plan, prefixes, incomplete, lo, hi);
	const char *mode = mode_name(settings_.fallback);

	if (!plan.covers_everything()) {
		counters_.fallbacks_refused++;
		std::string refused;
		for (const std::string &p : plan.refused)
			refused += (refused.empty() ? "\"" : ", \"") + p + "\"";
		std::string detail = settings_.fallback == FallbackMode::None ? "cachebust.fallback is none."
							 : plan.incomplete ? "More key prefixes are in use than cachebust remembers; the others are unknown."
											   : "Key prefixes not covered: " + refused +
													 " (an empty prefix would be the whole database).";
		log(LogLevel::Warning,
			std::string("cachebust fallback (") + mode + ") cannot cover every lost invalidation: " + why, detail,
			"Set cachebust.key_prefix, or cachebust.fallback = flushdb; wait_for_delivery() and barrier() report these "
			"commits as undelivered until a fallback covers them.");
	}
	if (job == 0)
		return;
	counters_.fallbacks++;
	log(LogLevel::Log, std::string("cachebust fallback (") + mode + ") started: " + why);
	submit_plan(plan, Stream::First, SeqSet(lo, hi), job);
}

void
Dispatcher::fallback_for_all_registered(uint64_t lo, uint64_t hi, const std::string &why)
{
	PrefixList registered = host_.registered_prefixes();
	start_fallback(registered.prefixes, registered.incomplete, lo, hi, why);
}

void
Dispatcher::adopt_uncovered(const std::vector<SeqRange> &ranges)
{
	if (ranges.empty())
		return;
	PrefixList registered = host_.registered_prefixes();
	bool incomplete = registered.incomplete || registered.prefixes.empty();
	for (const SeqRange &r : ranges)
		jobs_.adopt_uncovered(r.lo, r.hi, registered.prefixes, incomplete);
	retry_uncovered();
}

/* cachebust.fallback changed: try again to cover what was left uncovered. */
void
Dispatcher::retry_uncovered()
{
	for (const FallbackJobs::Job &u : jobs_.to_retry()) {
		FallbackPlan plan = plan_fallback(settings_.fallback, u.prefixes, u.incomplete);
		if (!plan.covers_everything())
			continue;
		uint32_t job = jobs_.start(plan, u.prefixes, u.incomplete, u.lo, u.hi, true);
		if (job == 0)
			continue;
		counters_.fallbacks++;
		log(LogLevel::Log, "cachebust fallback retried for uncovered commits " + std::to_string(u.lo) + " to " +
							   std::to_string(u.hi));
		submit_plan(plan, Stream::First, SeqSet(u.lo, u.hi), job);
	}
}

/* Turns the engine's report into counters and fallbacks; its logs go out at once. */
void
Dispatcher::handle_report()
{
	DeliveryReport report = engine_.take_report();
	for (const LogLine &line : report.logs)
		host_.log(line);
	for (uint32_t job : report.failed_jobs) {
		jobs_.failed(job);
		counters_.fallbacks_refused++;
	}
	for (const FallbackNeed &need : report.fallback_needs)
		cover(need);
	engine_report_.counters.add(report.counters);
	if (report.new_error)
		engine_report_.note_error(std::move(report.last_error), std::move(report.last_error_endpoint),
								  std::move(report.last_error_key));
}

/* A target Redis refused even in substitute form, or that a failover made us forget. */
void
Dispatcher::cover(const FallbackNeed &need)
{
	if (need.stream == Stream::First) {
		start_fallback({need.prefix}, false, need.seqs.min(), need.seqs.max(),
					   "Redis refused a target and its substitute");
		return;
	}
	/* A second send (the first one was applied): cover the prefix anyway,
	 * flushdb included, and say so when the fallback cannot. */
	FallbackPlan plan = plan_fallback(settings_.fallback, {need.prefix}, false);
	if (!plan.covers_everything()) {
		counters_.fallbacks_refused++;
		log(LogLevel::Warning,
			std::string("cachebust fallback (") + mode_name(settings_.fallback) +
				") cannot cover a second send Redis refused or a failover made us forget",
			"Key prefix \"" + need.prefix + "\".",
			"Set cachebust.key_prefix, or cachebust.fallback = flushdb or generation.");
	}
	submit_plan(plan, need.stream, need.seqs, 0);
}

/* Windows Redis applied are measured, published, and queued for their second sends. */
void
Dispatcher::advance(int64_t now_us, int64_t wall_us)
{
	SeqSet held = first_held();

	/* In any order: a window stuck on a dead shard does not hold back the next. */
	for (auto it = windows_.begin(); it != windows_.end();) {
		bool applied = true;
		for (const SeqSet::Range &r : it->commits.ranges())
			applied = applied && !held.intersects(r.lo, r.hi);
		if (!applied) {
			++it;
			continue;
		}
		ClosedWindow &w = *it;
		if (w.publish) {
			/* Its commits are held back until Redis took it. */
			engine_.publish(batch_json(w.targets_copy), w.commits);
		}
		for (int64_t commit_time : w.commit_times_us)
			counters_.latency.record(static_cast<uint64_t>(std::max<int64_t>(wall_us - commit_time, 0)));
		counters_.targets_delivered += w.targets;
		counters_.last_delivery_wall_us = wall_us;
		if (settings_.redelete_ms > 0) {
			std::vector<Target> again;
			for (const Target &t : w.targets_copy)
				if (t.kind != TargetKind::Bump) /* an INCR twice is not the same effect */
					again.push_back(t);
			if (!again.empty() &&
				!redeletes_.add(RedeleteSchedule::Entry{now_us + static_cast<int64_t>(settings_.redelete_ms) * 1000,
														std::move(again), false},
								settings_.max_pending))
				log(LogLevel::Warning, "cachebust worker skipped a redelete: more than cachebust.max_pending targets "
									   "wait for one");
		}
		if (settings_.standby_sends && !w.targets_copy.empty()) {
			StandbySends::Entry e;
			e.lsn = w.max_commit_lsn;
			e.seqs = w.commits;
			e.delivered_us = now_us;
			e.targets = std::move(w.targets_copy);
			wait_for_standbys(std::move(e));
		}
		it = windows_.erase(it);
	}

	for (FallbackJobs::Job &job : jobs_.settle(first_held())) {
		if (job.failed)
			continue;
		log(LogLevel::Log, "cachebust fallback done");
		counters_.fallbacks_done++;
		for (Target &t : job.sent)
			t.job = 0;
		/* A fallback races with readers refilling old values just like a delivery. */
		if (settings_.redelete_ms > 0 && !job.retry)
			redeletes_.add(RedeleteSchedule::Entry{now_us + static_cast<int64_t>(settings_.redelete_ms) * 1000,
												   job.sent, job.flushdb},
						   settings_.max_pending);
		/* ... and with readers on standbys, like a delivery too. The commits
		 * it covers are not known one by one: all WAL so far must replay. */
		if (settings_.standby_sends && !job.retry) {
			StandbySends::Entry e;
			e.lsn = host_.wal_insert_lsn();
			e.seqs = SeqSet(job.lo, job.hi);
			e.delivered_us = now_us;
			e.targets = std::move(job.sent);
			e.flushdb = job.flushdb;
			wait_for_standbys(std::move(e));
		}
	}
}

void
Dispatcher::wait_for_standbys(StandbySends::Entry &&entry)
{
	size_t before = standby_sends_.targets();
	size_t count = entry.targets.size();
	standby_sends_.add(std::move(entry), settings_.max_pending);
	if (standby_sends_.targets() == before && count > 0)
		log(LogLevel::Log, "cachebust worker keeps only the key prefixes of a window for its standby send: "
						   "more than cachebust.max_pending targets wait for the standbys");
}

/* Standby sends whose commits every standby waited for has replayed (or
 * that waited standby_max_wait_ms) go out now. */
void
Dispatcher::send_replayed(int64_t now_us)
{
	if (standby_sends_.empty()) {
		standbys_absent_.clear();
		return;
	}
	std::vector<std::string> absent;
	StandbyReplay replay = host_.standby_replay(absent);
	if (absent != standbys_absent_ && !absent.empty()) {
		std::string names;
		for (const std::string &n : absent)
			names += (names.empty() ? "" : ", ") + n;
		log(LogLevel::Warning, "cachebust.standby_names lists standbys that are not streaming: " + names +
								   "; standby sends wait up to cachebust.standby_max_wait_ms for them");
	}
	standbys_absent_ = std::move(absent);

	for (StandbySends::Released &r : standby_sends_.take_ready(replay, now_us, settings_.standby_max_wait_us)) {
		StandbySends::Entry &e = r.entry;
		counters_.second_sends++;
		if (r.timed_out)
			counters_.standby_timeouts++;
		else
			counters_.standby_lag.record(static_cast<uint64_t>(r.waited_us));
		if (!e.prefixes.empty()) {
			FallbackPlan plan = plan_fallback(settings_.fallback, e.prefixes, false);
			e.targets.insert(e.targets.end(), plan.targets.begin(), plan.targets.end());
			e.flushdb = e.flushdb || plan.flushdb;
		}
		if (e.flushdb)
			engine_.submit_flushdb(Stream::Standby, e.seqs, 0);
		if (!e.targets.empty())
			engine_.submit(std::move(e.targets), Stream::Standby, e.seqs);
	}
}

/* Every registered prefix, once the standbys replayed what is written now. */
void
Dispatcher::standby_fallback_for_all_registered(uint64_t seq, int64_t now_us, const std::string &why)
{
	if (!settings_.standby_sends)
		return;
	PrefixList registered = host_.registered_prefixes();
	log(LogLevel::Log, "cachebust fallback for the standbys scheduled: " + why);
	StandbySends::Entry e;
	e.lsn = host_.wal_insert_lsn();
	e.seqs = SeqSet(seq);
	e.delivered_us = now_us;
	e.prefixes = std::move(registered.prefixes);
	standby_sends_.add(std::move(e), settings_.max_pending);
}

void
Dispatcher::send_due_redeletes(int64_t now_us)
{
	if (settings_.redelete_ms <= 0 && !redeletes_.empty())
		redeletes_.take_all(); /* switched off on reload */
	for (RedeleteSchedule::Entry &e : redeletes_.take_due(now_us)) {
		/* A materialized key's second send is its refresh, run again (no commit waits for it). */
		auto refresh = std::stable_partition(e.targets.begin(), e.targets.end(),
											 [](const Target &t) { return t.kind != TargetKind::Refresh; });
		if (refresh != e.targets.end()) {
			std::vector<RefreshNeed> needs;
			for (auto it = refresh; it != e.targets.end(); ++it)
				needs.push_back(RefreshNeed{std::move(*it), SeqSet(), 0, 0});
			e.targets.erase(refresh, e.targets.end());
			request_refreshes(std::move(needs), now_us);
		}
		if (e.targets.empty() && !e.flushdb)
			continue;
		uint64_t seq = ++redelete_seq_;
		if (e.flushdb)
			engine_.submit_flushdb(Stream::Redelete, seq, 0);
		engine_.submit(std::move(e.targets), Stream::Redelete, seq);
	}
}

/* More than max_pending targets waiting (Redis away for long): cover them instead. */
void
Dispatcher::enforce_max_pending()
{
	size_t waiting = coalescer_.size() + engine_.unsent_targets();
	if (waiting <= settings_.max_pending || settings_.source_throttled)
		return;
	if (settings_.journal) {
		let_go_to_journal(waiting);
		return;
	}
	std::vector<std::string> prefixes;
	auto note = [&](const std::string &p) {
		if (std::find(prefixes.begin(), prefixes.end(), p) == prefixes.end())
			prefixes.push_back(p);
	};
	for (const Target &t : coalescer_.targets())
		note(target_prefix(t));
	uint64_t lo = std::min(coalescer_.min_seq(), engine_.min_held_seq(Stream::First));
	DroppedTargets dropped = engine_.drop_unsent();
	for (const std::string &p : dropped.prefixes)
		note(p);
	coalescer_.clear();
	log(LogLevel::Warning, "cachebust worker holds " + std::to_string(waiting) +
							   " targets, more than cachebust.max_pending (" + std::to_string(settings_.max_pending) +
							   "); running the fallback");
	start_fallback(prefixes, false, lo == kNoSeq ? drained_upto_ : lo, drained_upto_,
				   "more than cachebust.max_pending targets were waiting");
}

/* ---- the WAL journal ---- */

void
Dispatcher::read_journal(uint64_t from_lsn, uint64_t to_lsn, const SeqSet &seqs, const std::string &why)
{
	bool starting = !backlog_.active();
	backlog_.add(from_lsn, std::max(from_lsn, to_lsn), seqs, why.empty() ? std::string("a backlog") : why);
	if (starting)
		log(LogLevel::Log, "cachebust journal replay started: " + backlog_.why(),
			"Reading WAL from " + lsn_text(backlog_.from()) + " to " + lsn_text(backlog_.to()) + ".");
}

bool
Dispatcher::journal_wants_read() const
{
	if (!backlog_.active() || (backlog_.read_done() && !backlog_.restart_needed()))
		return false;
	/* Room: half of max_pending, so that live commits still fit beside. */
	return pending_targets() < std::max<size_t>(settings_.max_pending / 2, 1);
}

void
Dispatcher::add_replayed(std::vector<Target> targets, uint64_t commit_lsn, int64_t now_us)
{
	counters_.journal_replayed_batches++;
	backlog_.batches++;
	backlog_.targets += targets.size();
	/* (No commit time: their latency is the replay's, journal_replay_ms.) */
	coalescer_.add_transaction(std::move(targets), kReplaySeq, 0, now_us, commit_lsn);
}

void
Dispatcher::journal_lost(const std::string &why)
{
	if (!backlog_.active())
		return;
	log(LogLevel::Warning, "cachebust journal replay failed: " + why,
		"The fallback covers the commits it would have delivered (WAL from " + lsn_text(backlog_.from()) + " to " +
			lsn_text(backlog_.to()) + ").",
		"Keep max_slot_wal_keep_size large enough for the longest Redis outage, or -1.");
	const SeqSet &seqs = backlog_.seqs();
	uint64_t lo = seqs.empty() ? kReplaySeq : seqs.min();
	uint64_t hi = seqs.empty() ? kReplaySeq : seqs.max();
	/* What was read already may be applied; covering it again is harmless. */
	fallback_for_all_registered(lo, hi, "the WAL journal it needed is gone (" + why + ")");
	backlog_.finish();
	spooling_ = false;
}

uint64_t
Dispatcher::journal_restart_lsn() const
{
	uint64_t lsn = horizon_.oldest();
	if (backlog_.active() && (lsn == 0 || backlog_.from() < lsn))
		lsn = backlog_.from();
	return lsn;
}

/*
 * More than max_pending targets wait (Redis away for long): let them go and
 * read them back from WAL once Redis takes targets again. Until the read
 * has caught up, drained batches join it instead of memory. (Second sends
 * waiting go too: the replay sends every target again later anyway.)
 */
void
Dispatcher::let_go_to_journal(size_t waiting)
{
	if (spooling_)
		return; /* what waits now is the replay's, bounded by journal_wants_read() */
	if (first_held().max() == kReplaySeq)
		return; /* only replayed targets: one transaction larger than max_pending, read once */
	uint64_t lo = std::min(coalescer_.min_seq(), engine_.min_held_seq(Stream::First));
	uint64_t from = journal_restart_lsn();
	bool was_reading = backlog_.active();
	engine_.drop_unsent();
	coalescer_.clear();
	spooling_ = true;
	log(LogLevel::Log, "cachebust worker holds " + std::to_string(waiting) +
						   " targets, more than cachebust.max_pending (" + std::to_string(settings_.max_pending) +
						   "): it lets them go and reads them back from the WAL journal when Redis takes them");
	if (from == 0)
		from = max_drained_lsn_; /* (nothing drained needs WAL) */
	SeqSet seqs(lo == kNoSeq || lo == kReplaySeq ? drained_upto_ : lo, drained_upto_);
	read_journal(from, max_drained_lsn_, seqs, "more than cachebust.max_pending targets were waiting");
	if (was_reading)
		backlog_.restart(); /* replayed targets went too */
}

/* The read is over and every target it found is applied. */
void
Dispatcher::finish_replay(int64_t now_us)
{
	int64_t took_us = std::max<int64_t>(now_us - backlog_.started_us, 0);
	counters_.journal_replay_us += static_cast<uint64_t>(took_us);
	log(LogLevel::Log, "cachebust journal replay done: " + std::to_string(backlog_.batches) + " transactions, " +
						   std::to_string(backlog_.targets) + " targets from WAL " + lsn_text(backlog_.from()) +
						   " to " + lsn_text(backlog_.to()) + " in " + std::to_string(took_us / 1000) + " ms");
	backlog_.finish();
}

void
Dispatcher::turn(int64_t now_us, int64_t wall_us)
{
	if (coalescer_.window_closed(now_us, settings_.window))
		close_window(now_us);
	poll_refreshes(now_us, wall_us);
	engine_.on_timer();
	handle_report();
	send_due_redeletes(now_us);
	advance(now_us, wall_us);
	send_replayed(now_us);
	enforce_max_pending();
	handle_report();
	if (backlog_.active()) {
		if (backlog_.started_us == 0)
			backlog_.started_us = now_us;
		if (backlog_.read_done() && !backlog_.restart_needed()) {
			spooling_ = false; /* caught up: drained batches are held in memory again */
			if (!coalescer_.seqs().contains(kReplaySeq) && !first_held().contains(kReplaySeq))
				finish_replay(now_us);
		}
	}
	update_held();
	horizon_.release_upto(delivered_seq());
}

int64_t
Dispatcher::deadline_us(int64_t now_us) const
{
	int64_t deadline = now_us + kMaxSleepUs;
	if (!coalescer_.empty())
		deadline = std::min(deadline, now_us + coalescer_.time_to_close_us(now_us, settings_.window));
	if (engine_.deadline_us() != 0)
		deadline = std::min(deadline, engine_.deadline_us());
	if (!redeletes_.empty())
		deadline = std::min(deadline, redeletes_.next_due_us());
	if (!standby_sends_.empty())
		deadline = std::min(deadline, now_us + kStandbyPollUs);
	if (journal_wants_read())
		deadline = now_us;
	if (!refreshes_.empty())
		deadline = std::min(deadline, refreshes_.next_expiry_us());
	return deadline;
}

bool
Dispatcher::waits_for_window(int64_t now_us) const
{
	return !coalescer_.empty() && !coalescer_.window_closed(now_us, settings_.window);
}

DispatchCounters
Dispatcher::take_counters()
{
	DispatchCounters out = std::move(counters_);
	counters_ = DispatchCounters();
	out.refreshes = refreshes_.take_counters();
	return out;
}

DeliveryReport
Dispatcher::take_engine_report()
{
	DeliveryReport out = std::move(engine_report_);
	engine_report_ = DeliveryReport();
	return out;
}

bool
Dispatcher::all_delivered() const
{
	return coalescer_.empty() && windows_.empty() && !jobs_.busy() && !backlog_.active() && refreshes_.empty() &&
		   engine_.min_held_seq(Stream::First) == kNoSeq && engine_.min_held_seq(Stream::Standby) == kNoSeq;
}

} // namespace cachebust
