/*
 * worker_standby.cpp — a hot standby's worker delivering to its own Redis:
 * batches come from the WAL it replays, never ahead of replay; on promotion
 * it goes on as a primary. See worker_impl.hpp.
 */
#include "pg/worker_impl.hpp"

#include "core/batch_codec.hpp"
#include "pg/guard.hpp"
#include "pg/guc.hpp"
#include "pg/queue.hpp"
#include "pg/refresh_requests.hpp"
#include "pg/worker_state.hpp"

extern "C" {
#include "access/xlog.h"
#include "access/xlogrecovery.h"
}

namespace cachebust::pg {

/*
 * A standby delivering to its own Redis: the batches of the transactions
 * it has replayed, read from WAL (never past the replay position), get
 * sequence numbers of the ring's numbering and go to the dispatcher as if
 * drained. Read only while the engine has room: the slot keeps the rest.
 */
void
Worker::read_replayed()
{
	size_t room = std::max<size_t>(static_cast<size_t>(guc_max_pending) / 2, 1);
	if (replayed_ == nullptr || dispatcher_.pending_targets() >= room)
		return;
	std::string batches;
	uint64 upto = 0;
	size_t collected = 0;
	int64 wall = GetCurrentTimestamp();
	auto deliver = [&](JournalCommit &&commit) {
		std::vector<Target> targets;
		for (const std::string &bytes : commit.batches)
			decode_journal_message(bytes.data(), bytes.size(), targets);
		collected += targets.size();
		std::string batch = encode_targets(targets, 0);
		uint64 seq = 0;
		pg_call([&] { seq = queue_reserve_seq(); });
		/* Stamped with the time it was read, about when it was replayed:
		 * latencies are replay to delivery. */
		stamp_batch(batch.data(), seq, wall, commit.commit_lsn, commit.first_lsn);
		batches += batch;
		upto = seq;
		return dispatcher_.pending_targets() + collected < room;
	};
	int64 until = monotonic_us() + kJournalReadBudgetUs;
	JournalReadStatus status;
	do
		status = replayed_->read(0, kJournalRecordsPerRead, deliver);
	while (status == JournalReadStatus::more && dispatcher_.pending_targets() + collected < room &&
		   monotonic_us() < until);
	replayed_caught_up_ = status == JournalReadStatus::caught_up;
	if (!batches.empty())
		dispatcher_.add_drained(batches, upto, monotonic_us());

	if (status == JournalReadStatus::wal_missing || status == JournalReadStatus::failed) {
		std::string error = replayed_->error();
		log(LogLine{LogLevel::Warning, "cachebust worker cannot read the WAL this standby replayed: " + error,
					"The fallback covers this server's key prefixes in its Redis; it goes on from the replay position.",
					"Keep max_slot_wal_keep_size large enough for the longest Redis outage, or -1."});
		uint64 from = 0;
		open_journal_gap(dispatcher_.drained_upto(), 0); /* (before the slot is made again) */
		pg_call([&] { from = journal_slot_recreate().restart_lsn; });
		cover_lost_standby_wal();
		replayed_ = std::make_unique<JournalReader>(from);
	}
}

/*
 * A standby lost WAL it had still to deliver: the fallback covers this
 * server's prefixes, under a sequence number of its own (so waits see it).
 */
void
Worker::cover_lost_standby_wal()
{
	uint64 seq = 0;
	pg_call([&] { seq = queue_reserve_seq(); });
	dispatcher_.add_drained(std::string(), seq, monotonic_us());
	dispatcher_.fallback_for_all_registered(seq, seq, "the WAL this standby had to deliver is gone");
	/* Until it ran, a restart of this standby must run it again. */
	open_journal_gap(seq, 0);
}

/* The first turn of a standby that delivers what it replays: from its slot on. */
void
Worker::start_standby()
{
	PreviousRun p = take_over_shared_state();
	dispatcher_.resume_after(p.drained);
	JournalSlot slot;
	pg_call([&] { slot = journal_slot_ensure(); });
	if (slot.invalidated) {
		log(LogLine{LogLevel::Warning,
					"cachebust journal slot \"" + std::string(kJournalSlotName) +
						"\" on this standby was invalidated: the WAL it kept was removed",
					"The fallback covers this server's key prefixes in its Redis.",
					"Raise max_slot_wal_keep_size (or set it to -1)."});
		open_journal_gap(p.drained, 0); /* (before the slot is made again) */
		pg_call([&] { slot = journal_slot_recreate(); });
		cover_lost_standby_wal();
	} else if (worker_state_journal_gap_recorded(0)) {
		/* A fallback of an earlier run of this standby had not run. */
		log(LogLine{LogLevel::Log, "cachebust worker: a fallback of this standby's previous run had not finished; "
								   "it runs again"});
		cover_lost_standby_wal();
	} else {
		pg_call([] { worker_state_clear_journal_gap(); });
	}
	slot_usable_ = slot.exists && !slot.invalidated;
	slot_restart_lsn_ = slot.restart_lsn;
	replayed_ = std::make_unique<JournalReader>(slot.restart_lsn);
	log(LogLine{LogLevel::Log, "cachebust worker delivers what this standby replays, from WAL " +
								   lsn_text(slot.restart_lsn) + " on"});
}

/*
 * The standby was promoted: what was replayed up to the end of recovery is
 * read, and from here on batches come from the ring, with no gap (a commit
 * after the promotion is in both: delivered twice at most) and no fallback.
 */
void
Worker::promoted()
{
	uint64 end = 0;
	pg_call([&] { end = journal_readable_end(); });
	while (replayed_ != nullptr && replayed_->position() < end) {
		turn(); /* (reads, bounded by the engine's room, and delivers) */
		if (replayed_caught_up_ || shutdown_requested)
			break;
		wait(dispatcher_.deadline_us(monotonic_us()));
	}
	standby_ = false;
	replayed_.reset();
	load_settings();
	TimeLineID timeline = 0;
	pg_call([&] {
		timeline = GetWALInsertionTimeLine();
		worker_state_record_running(timeline);
		LWLockAcquire(shared_queue->lock, LW_EXCLUSIVE);
		shared_queue->timeline = timeline;
		shared_queue->state_recorded = true;
		shared_queue->previous_run_handled = true;
		LWLockRelease(shared_queue->lock);
		/* Its Redis had materialized keys removed rather than recomputed: warm them. */
		refresh_load_databases();
		refresh_warm_all();
	});
	write_progress();
	log(LogLine{LogLevel::Log, "cachebust worker: this server was promoted; it goes on delivering as a primary"});
}

} // namespace cachebust::pg
