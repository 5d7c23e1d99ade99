/*
 * worker_impl.hpp — the Worker class, private to the worker's own files:
 *
 *   worker.cpp          the loop: start, drain, turn, publish, wait, stop
 *   worker_journal.cpp  the WAL journal: its slot, reads, progress records
 *   worker_standby.cpp  a hot standby delivering what it replays; promotion
 *   worker_refresh.cpp  requests to the refresh workers of materialized keys
 *
 * What is decided lives in the dispatcher (core/delivery/dispatcher.hpp);
 * these files are its PostgreSQL side.
 */
#pragma once

#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "core/delivery/dispatcher.hpp"
#include "pg/journal_wal.hpp"
#include "pg/postgres.hpp"
#include "pg/standby_follower.hpp"
#include "pg/standby_progress.hpp"
#include "pg/wait_set.hpp"
#include "pg/worker_stats.hpp"

namespace cachebust::pg {

/* How often the journal's slot is moved forward (and its lag measured). */
constexpr int64 kSlotAdvanceUs = 1000 * 1000;
/* WAL records read per call, and the time a turn may spend reading. */
constexpr size_t kJournalRecordsPerRead = 1024;
constexpr int64 kJournalReadBudgetUs = 50 * 1000;
/* How soon to look again when the WAL a read needs is not flushed yet. */
constexpr int64 kJournalWalWaitUs = 10 * 1000;
/* How often to look for databases whose refresh workers must be started. */
constexpr int64 kRefreshStartCheckUs = 1000 * 1000;

/* SIGTERM arrived: deliver what is held, then exit. */
extern volatile sig_atomic_t shutdown_requested;

/* What the run of the server, or the previous worker, left behind. */
struct PreviousRun {
	bool handled;		  /* a worker of this run already dealt with the previous run */
	bool recorded;		  /* the state file says "running" for this run */
	bool worker;		  /* a worker ran before us in this run of the server */
	bool clean;			  /* ... and delivered everything it held */
	uint64 delivered;
	uint64 drained;
	bool standby_waited;
	bool journal;		  /* the previous run of the server wrote the WAL journal */
	TimeLineID timeline;
	std::vector<SeqRange> uncovered; /* what earlier workers of this run left uncovered */
};

/* Reads (and takes over) what the previous worker left in shared memory. */
PreviousRun take_over_shared_state();

class Worker final : private DispatcherHost
{
  public:
	explicit Worker(const StandbyFollowing &following)
		: dispatcher_(*this, static_cast<uint64_t>(MyProcPid)), following_(following),
		  standby_(following.deliver_replayed)
	{
	}
	void run();

  private:
	/* DispatcherHost */
	void log(const LogLine &line) override;
	PrefixList registered_prefixes() override;
	uint64_t wal_insert_lsn() override;
	StandbyReplay standby_replay(std::vector<std::string> &absent) override;
	uint64_t request_refresh(uint32_t database, const std::string &key) override;
	uint64_t refresh_done(uint32_t database, const std::string &key) override;
	void refresh_forget(uint32_t database, const std::string &key) override;
	void start_refresh_workers();

	void load_settings();
	void warn_if_empty_prefix_recorded();
	void start();
	bool start_journal(const PreviousRun &p, bool gap_recorded, std::string &why_not);
	void open_journal_gap(uint64 upto_seq, uint64 restart_lsn);
	void close_journal_gap_if_covered();
	void write_progress();
	void start_standby();
	void cover_lost_standby_wal();
	void warn_slot_invalidated(const JournalSlot &slot, const char *detail);
	void promoted();
	void drain();
	void read_replayed();
	void read_journal();
	uint64 delivered_bound() const;
	void advance_slot(bool now);
	void turn();
	void publish();
	void wait(int64 deadline_us);
	void shut_down();

	Dispatcher dispatcher_;
	EngineSettings engine_settings_;
	StandbyNames standby_names_;
	bool first_load_ = true;
	bool prefix_mode_ = false; /* cachebust.fallback was prefix at the last load */
	bool drain_blocked_ = false;
	int64 next_refresh_start_us_ = 0; /* when to look for databases needing a refresh worker */
	std::string drain_buffer_;
	StatsDelta stats_;
	WaitSet wait_set_;
	std::vector<PollEntry> sockets_;
	std::vector<WaitSet::Ready> ready_;

	/* The WAL journal (journal_wal.hpp) */
	StandbyFollowing following_; /* what this worker saw before a promotion */
	/* A standby delivering to its own Redis: batches come from the WAL it
	 * replays (replayed_), not from the ring; until it is promoted. */
	bool standby_ = false;
	std::unique_ptr<JournalReader> replayed_;
	bool replayed_caught_up_ = false;
	std::unique_ptr<JournalReader> reader_;
	bool journal_waits_for_wal_ = false; /* the read needs WAL not flushed yet */
	bool slot_usable_ = false;			 /* the slot exists and is not invalidated */
	uint64 slot_restart_lsn_ = 0;
	int64 next_slot_advance_us_ = 0;
	/* Read before each drain, for the slot's bound (advance_slot). */
	uint64 insert_before_drain_ = 0;
	uint64 open_before_drain_ = 0;
	uint64 slot_lag_bytes_ = 0;
	/* The last progress record written (journal_write_progress), for standbys. */
	uint64 progress_lsn_ = 0;
	uint64 progress_end_ = 0;
	/* Recorded in pg_cachebust/journal_gap while open (worker_state.hpp). */
	JournalGap gap_;
};

} // namespace cachebust::pg
