/*
 * worker_journal.cpp — the worker's side of the WAL journal: the slot that keeps
 * the WAL a replay may need, reading batches back, and the progress records
 * standbys follow (journal_wal.hpp has the WAL itself). See worker_impl.hpp.
 */
#include "pg/worker_impl.hpp"

#include <algorithm>

#include "core/batch_codec.hpp"
#include "pg/guard.hpp"
#include "pg/queue.hpp"
#include "pg/worker_state.hpp"

extern "C" {
#include "access/xlog.h"
}

namespace cachebust::pg {

/*
 * The journal's slot at start. Returns whether WAL from the slot's position
 * on holds every batch a previous run or worker may have left undelivered,
 * so that they can be read back instead of covered by the fallback.
 */
bool
Worker::start_journal(const PreviousRun &p, bool gap_recorded, std::string &why_not)
{
	if (!journal_active()) {
		why_not = "cachebust.journal is off";
		pg_call([] {
			/* A slot left by a run with the journal would keep WAL for ever. */
			journal_slot_drop();
			/* (The fallback, run or not needed, covers what a gap stood for.) */
			worker_state_clear_journal_gap();
			/* Standbys: from here on, this primary's commits are not in the journal. */
			if (XLogIsNeeded())
				(void) journal_write_progress(0);
		});
		return false;
	}
	JournalSlot before, slot;
	pg_call([&] { before = journal_slot_position(); });
	/* Promoted: the slot follows the old primary's progress records (standby_follower.hpp). */
	bool trusted = following_.followed ? following_.replayable : p.handled || p.journal;
	bool replayable = before.exists && !before.invalidated && before.restart_lsn != 0 && trusted && !gap_recorded;
	why_not = !before.exists ? "the WAL journal's slot did not exist yet"
			  : before.invalidated ? "the WAL journal's slot was invalidated by max_slot_wal_keep_size: its WAL is gone"
			  : gap_recorded ? "when the server stopped, the WAL journal's slot did not reach back to every undelivered "
							   "commit (its WAL had been lost, or a fallback had not finished)"
			  : !trusted && following_.followed
				  ? "this server was promoted without a replayable position from its primary's journal (no progress "
					"record replayed yet, or the primary's journal had a gap)"
			  : !trusted ? "the run before did not write the WAL journal"
						 : "";
	/* A slot made now starts after what the fallback has to cover: the gap is
	 * recorded first, so that a crash before that fallback ran is not taken
	 * for a replayable stop (start() clears it when nothing is to be covered). */
	bool remake = before.exists && (before.invalidated || (!p.handled && !trusted));
	if (!before.exists || before.restart_lsn == 0 || remake)
		pg_call([&] { worker_state_record_journal_gap(p.timeline); });
	pg_call([&] { slot = journal_slot_ensure(); });
	if (before.invalidated)
		warn_slot_invalidated(before, "max_slot_wal_keep_size was exceeded. Invalidations that WAL held are covered by "
									  "the fallback; the slot is created again.");
	/* (Not invalidated: kept by a run without the journal, or by one before it; its position says nothing.) */
	if (remake)
		pg_call([&] { slot = journal_slot_recreate(); });
	slot_usable_ = slot.exists && !slot.invalidated;
	slot_restart_lsn_ = replayable ? before.restart_lsn : slot.restart_lsn;
	return replayable;
}

/* Opens the journal gap, or widens it: recorded on disk before it returns. */
void
Worker::open_journal_gap(uint64 upto_seq, uint64 restart_lsn)
{
	bool was_open = gap_.is_open();
	if (!was_open) {
		uint32 timeline = shared_queue->timeline; /* (0 on a standby; this worker writes it) */
		pg_call([&] { worker_state_record_journal_gap(timeline); });
	}
	gap_.open(upto_seq, restart_lsn);
	if (!was_open)
		write_progress();
}

/* The gap closes once what it stood for is delivered or covered. */
void
Worker::close_journal_gap_if_covered()
{
	if (!gap_.is_open() || !gap_.covered(dispatcher_.held(), !dispatcher_.uncovered().empty(), delivered_bound()))
		return;
	pg_call([] { worker_state_clear_journal_gap(); });
	gap_.close();
	log(LogLine{LogLevel::Log, "cachebust journal: its slot reaches back to every undelivered commit again",
				"A restart from here on replays from WAL instead of running the fallback."});
	write_progress();
}

/* Tells the standbys where a replay would start if they were promoted:
 * nowhere (0) while the journal has a gap. */
void
Worker::write_progress()
{
	if (standby_ || !slot_usable_)
		return;
	uint64 lsn = gap_.is_open() ? 0 : slot_restart_lsn_;
	pg_call([&] {
		progress_lsn_ = lsn;
		progress_end_ = journal_write_progress(lsn);
	});
}

/*
 * Reads WAL for the dispatcher's backlog: bounded per turn, and only while
 * the engine has room, so memory stays bounded however much WAL there is.
 */
void
Worker::read_journal()
{
	journal_waits_for_wal_ = false;
	if (!dispatcher_.journal_wants_read())
		return;
	JournalBacklog &backlog = dispatcher_.journal_backlog();
	if (reader_ == nullptr || backlog.restart_needed()) {
		reader_ = std::make_unique<JournalReader>(backlog.from());
		backlog.started_reading(backlog.from());
	}
	int64 now = monotonic_us();
	int64 until = now + kJournalReadBudgetUs;
	auto deliver = [&](JournalCommit &&commit) {
		std::vector<Target> targets;
		for (const std::string &bytes : commit.batches)
			decode_journal_message(bytes.data(), bytes.size(), targets);
		dispatcher_.add_replayed(std::move(targets), commit.commit_lsn, now);
		return dispatcher_.journal_wants_read(); /* (the engine's room, commit by commit) */
	};
	JournalReadStatus status;
	do {
		status = reader_->read(backlog.to(), kJournalRecordsPerRead, deliver);
		backlog.read_to(reader_->position());
		now = monotonic_us();
	} while (status == JournalReadStatus::more && dispatcher_.journal_wants_read() && now < until);

	if (status == JournalReadStatus::wal_missing || status == JournalReadStatus::failed) {
		dispatcher_.journal_lost(reader_->error());
		/* The slot may move past what the fallback now covers. */
		open_journal_gap(dispatcher_.drained_upto(), 0);
		reader_.reset();
	} else if (backlog.read_done() || !backlog.active()) {
		reader_.reset(); /* (the next backlog starts where it needs to) */
	} else if (status == JournalReadStatus::caught_up) {
		/* The commits it waits for are not flushed yet (synchronous_commit = off). */
		journal_waits_for_wal_ = true;
	}
}

/*
 * Everything whose commit record ends at or before the returned LSN is
 * delivered (0: not known now). On a primary: the oldest of what the
 * dispatcher holds or must read, what transactions writing now have put in
 * WAL before their batch reached the ring, and otherwise the insert
 * position read before the last drain — only after a drain that reached
 * the end of the ring (a batch still in it is accounted for by nobody). On
 * a standby delivering what it replays: the oldest of what the dispatcher
 * holds and what the reader holds of transactions still open.
 */
uint64
Worker::delivered_bound() const
{
	if (!journal_active())
		return 0;
	uint64 bound;
	if (standby_) {
		if (replayed_ == nullptr)
			return 0;
		bound = replayed_->safe_restart_lsn();
	} else {
		if (drain_blocked_ || insert_before_drain_ == 0)
			return 0;
		bound = insert_before_drain_;
		if (open_before_drain_ != 0 && open_before_drain_ < bound)
			bound = open_before_drain_;
	}
	uint64 held = dispatcher_.journal_restart_lsn();
	return held != 0 && held < bound ? held : bound;
}

/*
 * Moves the slot to the oldest WAL anything may still need: what the
 * dispatcher holds or must read, what transactions writing now have put in
 * WAL before their batch reached the ring, and otherwise the insert
 * position read before the last drain. Only after a drain that reached the
 * end of the ring: a batch still in it is accounted for by nobody.
 */
void
Worker::advance_slot(bool now)
{
	int64 t = monotonic_us();
	uint64 bound = delivered_bound();
	if (bound == 0 || (!now && t < next_slot_advance_us_))
		return;
	next_slot_advance_us_ = t + kSlotAdvanceUs;
	JournalSlot slot;
	uint64 insert = 0;
	pg_call([&] {
		slot = slot_usable_ ? journal_slot_advance(bound) : journal_slot_ensure();
		insert = journal_insert_end();
	});
	if (slot.invalidated) {
		warn_slot_invalidated(slot, "max_slot_wal_keep_size was exceeded while Redis could not take the backlog. What "
									"only that WAL held is covered by the fallback; the slot is created again.");
		reader_.reset();
		dispatcher_.journal_lost("the slot was invalidated by max_slot_wal_keep_size");
		/* What is held now is in no WAL the new slot keeps: recorded before it is made. */
		open_journal_gap(dispatcher_.drained_upto(), 0);
		pg_call([&] { slot = journal_slot_recreate(); });
		open_journal_gap(0, slot.restart_lsn); /* (widens it) */
	}
	slot_usable_ = slot.exists && !slot.invalidated;
	slot_restart_lsn_ = slot.restart_lsn;
	slot_lag_bytes_ = slot_usable_ && insert > slot.restart_lsn ? insert - slot.restart_lsn : 0;

	/* Said to the standbys when the slot moved for WAL other than our own
	 * last record: an idle server writes nothing. */
	if (!gap_.is_open() && slot.restart_lsn > progress_lsn_ && insert_before_drain_ > progress_end_)
		write_progress();
}

/* The slot says its WAL was removed (max_slot_wal_keep_size). */
void
Worker::warn_slot_invalidated(const JournalSlot &slot, const char *detail)
{
	log(LogLine{LogLevel::Warning,
				"cachebust journal slot \"" + std::string(kJournalSlotName) + "\" was invalidated: the WAL it kept from " +
					lsn_text(slot.invalidated_at) + " on was removed",
				detail, "Raise max_slot_wal_keep_size (or set it to -1), or keep Redis outages shorter."});
}

} // namespace cachebust::pg
