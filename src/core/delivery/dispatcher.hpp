/*
 * dispatcher.hpp — everything the worker decides, without PostgreSQL.
 *
 * The worker (src/pg/worker.cpp) drains committed batches from shared
 * memory and hands them here; the dispatcher coalesces them into windows,
 * hands each closed window to the delivery engine, covers what cannot be
 * delivered exactly with a fallback, schedules the two kinds of second
 * send, and keeps the progress that wait_for_delivery() and barrier()
 * read. The worker publishes that progress and the counters, and sleeps
 * until deadline_us().
 *
 * Words, one per concept:
 *   window       a closed coalescing window: the commits [lo, hi] it covers
 *   redelete     the same targets sent again cachebust.redelete_ms after
 *                delivery (a reader's late refill of an old value)
 *   standby send the same targets sent again once the standbys in
 *                cachebust.standby_names have replayed the window
 *   fallback     what covers commits that cannot be delivered exactly
 *   replay       commits read back from the WAL journal because their
 *                batches are not held (core/delivery/journal_backlog.hpp)
 *   (the engine's "failover repeat" is the fourth: recent work sent again
 *   to a new Redis master)
 *
 * Progress: every commit has a sequence number, and everything that holds
 * targets back records which commits they came from (core/seq_set.hpp):
 * the coalescer, the engine's lanes, SCAN pass and commands in flight, a
 * standby send waiting. held() is their union after each turn. A commit
 * that was drained and is not held is applied in Redis or covered by a
 * fallback that ran, except those listed as uncovered; delivered_seq() is
 * the watermark below which every commit is. So a session waits for its
 * own commits only: a dead shard or a long SCAN pass holds back only the
 * commits that have targets there.
 *
 * Clocks: windows, deadlines and second sends use the monotonic clock
 * (now_us arguments); commit times and latencies use the wall clock the
 * backends stamped batches with (wall_us arguments), for users to read.
 */
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "core/coalescer.hpp"
#include "core/delivery/engine.hpp"
#include "core/delivery/fallback.hpp"
#include "core/delivery/journal_backlog.hpp"
#include "core/delivery/redelete_schedule.hpp"
#include "core/delivery/refresh_waits.hpp"
#include "core/delivery/standby_sends.hpp"
#include "core/latency_histogram.hpp"

namespace cachebust {

/* The key prefixes the fallback must cover when every commit is concerned. */
struct PrefixList {
	std::vector<std::string> prefixes;
	bool incomplete = false; /* more prefixes were used than could be remembered */
};

/* What the dispatcher asks of its surroundings (PostgreSQL, in the worker).
 * Refresh requests go to the refresh workers (by default there are none,
 * and a materialized key whose tables changed is removed instead). */
class DispatcherHost : public RefreshHost
{
  public:
	~DispatcherHost() override = default;
	uint64_t request_refresh(uint32_t, const std::string &) override { return 0; }
	uint64_t refresh_done(uint32_t, const std::string &) override { return 0; }
	void refresh_forget(uint32_t, const std::string &) override {}
	virtual void log(const LogLine &line) = 0;
	/* Every key prefix in use (the registry, and this server's own). */
	virtual PrefixList registered_prefixes() = 0;
	/* The end of WAL written so far: what the standbys must replay to have
	 * seen everything committed now. */
	virtual uint64_t wal_insert_lsn() = 0;
	/* Where the standbys waited for have replayed to; absent receives the
	 * listed ones that are not streaming. */
	virtual StandbyReplay standby_replay(std::vector<std::string> &absent) = 0;
};

struct DispatcherSettings {
	WindowPolicy window;
	FallbackMode fallback = FallbackMode::Prefix;
	int redelete_ms = 0;
	bool publish = false; /* cachebust.publish_channel is set */
	bool standby_sends = false; /* cachebust.standby_names is set */
	int64_t standby_max_wait_us = 60 * 1000 * 1000;
	size_t max_pending = 1000000;
	/* Every commit is also in the WAL journal (cachebust.journal, fixed for
	 * a run of the server): what cannot be held is read back from WAL. */
	bool journal = false;
	/* The worker reads no more than max_pending allows (a standby reading
	 * replayed WAL, which its slot keeps): nothing to let go or cover. */
	bool source_throttled = false;
	/* How long a materialized key's refresh may take before the key is
	 * removed instead (core/delivery/refresh_waits.hpp). */
	int64_t refresh_wait_us = 15 * 1000 * 1000;
};

/* What the worker adds to the shared counters after a turn. */
struct DispatchCounters {
	uint64_t targets_coalesced = 0;
	uint64_t targets_delivered = 0;
	uint64_t fallbacks = 0;
	uint64_t fallbacks_done = 0; /* ... that Redis applied (what they removed can be computed again) */
	uint64_t fallbacks_refused = 0;
	uint64_t second_sends = 0; /* standby sends */
	uint64_t standby_timeouts = 0;
	LatencyHistogram latency{};	  /* commit to acknowledgement, µs */
	LatencyHistogram standby_lag{}; /* first delivery to the standbys' replay, µs */
	int64_t last_delivery_wall_us = 0;
	uint64_t journal_replayed_batches = 0; /* transactions read back from WAL */
	uint64_t journal_replay_us = 0;		   /* time from a replay's start to its end */
	RefreshWaits::Counters refreshes;
};

class Dispatcher
{
  public:
	Dispatcher(DispatcherHost &host, uint64_t seed);
	Dispatcher(const Dispatcher &) = delete;
	Dispatcher &operator=(const Dispatcher &) = delete;

	/* Settings; a changed fallback mode retries what is uncovered. */
	void configure(const DispatcherSettings &settings, const EngineSettings &engine);

	/* ---- start ---- */

	/* Commits up to `seq` left the queue in an earlier worker's time. */
	void resume_after(uint64_t seq);
	/* Covers commits [lo, hi] for every registered prefix (seq 0 stands
	 * for every commit before this run of the server). */
	void fallback_for_all_registered(uint64_t lo, uint64_t hi, const std::string &why);
	/* The same, for readers on the standbys: once they replayed all WAL so far. */
	void standby_fallback_for_all_registered(uint64_t seq, int64_t now_us, const std::string &why);
	/* Commits earlier workers left uncovered (shared memory keeps only their
	 * ranges, so every registered prefix stands for theirs); tried again at
	 * once in case the fallback setting can cover them now. */
	void adopt_uncovered(const std::vector<SeqRange> &ranges);
	void add_redelete(RedeleteSchedule::Entry &&entry);
	void add_standby_send(StandbySends::Entry &&entry);

	/* ---- each turn ---- */

	/* Batches the worker drained (concatenated, batch_codec.hpp); every
	 * commit <= upto_seq has been drained. */
	void add_drained(const std::string &batches, uint64_t upto_seq, int64_t now_us);
	/* Commits lost without a trace in the queue (the journal has their
	 * batches between first_lsn and commit_lsn, when they are not 0). */
	void add_unrecorded(uint64_t lo, uint64_t hi, uint64_t first_lsn = 0, uint64_t commit_lsn = 0);
	void request_flush() { coalescer_.request_flush(); }
	/* A refresh worker reported progress: see what it released. */
	void poll_refreshes(int64_t now_us, int64_t wall_us);
	/* A target that could not be applied even in substitute form (the
	 * engine's report), or a prefix a failover made the engine forget:
	 * the fallback covers its prefix on the target's stream. */
	void cover(const FallbackNeed &need);
	/* Everything but the sleep. */
	void turn(int64_t now_us, int64_t wall_us);

	/* ---- the WAL journal ---- */

	/* Commits seqs are to be read back from WAL between from_lsn and to_lsn. */
	void read_journal(uint64_t from_lsn, uint64_t to_lsn, const SeqSet &seqs, const std::string &why);
	/* Whether the worker should read more WAL now: a read is due and the
	 * engine has room (it reads again as targets leave). */
	bool journal_wants_read() const;
	JournalBacklog &journal_backlog() { return backlog_; }
	/* A committed transaction read back from WAL. */
	void add_replayed(std::vector<Target> targets, uint64_t commit_lsn, int64_t now_us);
	/* The WAL a read needs is gone: the fallback covers its commits. */
	void journal_lost(const std::string &why);
	/* The oldest WAL that what was drained and is not delivered still needs
	 * (0: none); the worker keeps the slot there or earlier. */
	uint64_t journal_restart_lsn() const;

	/* ---- waiting ---- */

	/* Monotonic time of the next thing to do (now_us + kMaxSleep at most). */
	int64_t deadline_us(int64_t now_us) const;
	/* A window is open and will close by time: a commit need not wake us. */
	bool waits_for_window(int64_t now_us) const;
	DeliveryEngine &engine() { return engine_; }

	/* ---- what the worker publishes ---- */

	/* Every commit <= this is applied or covered (uncovered ones apart). */
	uint64_t delivered_seq() const;
	/* The commits above delivered_seq() (and <= drained_upto()) still held back. */
	const SeqSet &held() const { return held_; }
	const std::vector<SeqRange> &uncovered() const { return jobs_.uncovered(); }
	uint64_t uncovered_batches() const { return jobs_.uncovered_batches(); }
	bool standby_sends_waiting() const { return !standby_sends_.empty(); }
	size_t pending_targets() const;
	uint64_t drained_upto() const { return drained_upto_; }
	const std::vector<std::string> &standbys_absent() const { return standbys_absent_; }
	DispatchCounters take_counters();
	DeliveryReport take_engine_report();

	/* ---- stop ---- */

	/* Nothing is held back but second sends not due yet. */
	bool all_delivered() const;
	std::vector<RedeleteSchedule::Entry> take_redeletes() { return redeletes_.take_all(); }
	std::vector<StandbySends::Entry> take_standby_sends() { return standby_sends_.take_all(); }
	/* Recomputes held() after take_standby_sends(), once the caller saved them
	 * for the next start: their commits then count as delivered. */
	void update_progress() { update_held(); }
	size_t standby_sends_count() const { return standby_sends_.size(); }

  private:
	/* A closed coalescing window, until Redis applied all of it. */
	struct ClosedWindow {
		uint64_t lo, hi;   /* the commits it covers, lost ones included */
		SeqSet commits;	   /* the commits whose targets it holds */
		size_t targets;
		std::vector<int64_t> commit_times_us;
		bool publish;
		std::vector<Target> targets_copy; /* for redelete_ms and standby sends */
		uint64_t max_commit_lsn;		  /* what the standbys must replay before the standby send */
	};

	void log(LogLevel level, std::string message, std::string detail = {}, std::string hint = {});
	void close_window(int64_t now_us);
	void request_refreshes(std::vector<RefreshNeed> &&needs, int64_t now_us);
	void submit_removal(Target &&removal, const SeqSet &seqs);
	void handle_report();
	void advance(int64_t now_us, int64_t wall_us);
	void wait_for_standbys(StandbySends::Entry &&entry);
	void send_replayed(int64_t now_us);
	void send_due_redeletes(int64_t now_us);
	void enforce_max_pending();
	void let_go_to_journal(size_t waiting);
	void finish_replay(int64_t now_us);
	void start_fallback(const std::vector<std::string> &prefixes, bool incomplete, uint64_t lo, uint64_t hi,
						const std::string &why);
	void submit_plan(const FallbackPlan &plan, Stream s, const SeqSet &seqs, uint32_t job);
	void retry_uncovered();
	SeqSet first_held() const;
	void update_held();

	DispatcherHost &host_;
	DeliveryEngine engine_;
	DispatcherSettings settings_;
	bool configured_ = false;
	Coalescer coalescer_;
	FallbackJobs jobs_;
	RedeleteSchedule redeletes_;
	StandbySends standby_sends_;
	RefreshWaits refreshes_;
	/* Commit times of drained commits that asked for refreshes, until their window closes. */
	std::map<uint64_t, int64_t> refresh_commit_wall_us_;
	std::deque<ClosedWindow> windows_;
	DispatchCounters counters_;
	DeliveryReport engine_report_; /* counters and errors, for the worker's stats */
	std::vector<std::string> standbys_absent_;

	uint64_t drained_upto_ = 0; /* every commit <= this was drained */
	uint64_t window_hi_ = 0;	/* the last commit in a closed window */
	uint64_t redelete_seq_ = 0; /* the redelete stream's own counter */
	SeqSet held_;				/* after the last turn: what delivered_seq() and waits read */

	LsnHorizon horizon_;		  /* first-message LSNs of drained commits not delivered */
	JournalBacklog backlog_;	  /* WAL to read back */
	bool spooling_ = false;		  /* drained batches go to the backlog, not to memory */
	uint64_t max_drained_lsn_ = 0; /* the newest commit LSN drained */
};

} // namespace cachebust
