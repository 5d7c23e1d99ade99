/*
 * journal_wal.hpp — the WAL journal's calls into PostgreSQL (issue 23).
 *
 * Each committing transaction with targets writes its encoded batch into WAL
 * as a transactional logical message (prefix "cachebust"); a physical
 * replication slot, also named "cachebust", keeps the WAL that recovery may
 * still need; after a failure the worker reads the committed batches back.
 *
 * Every call whose signature or behaviour differs between PostgreSQL
 * versions (messages, the XLogReader, slots, flush and replay positions)
 * lives in journal_wal.cpp, behind these plain C++ types: following a new
 * major version means changing that one file.
 *
 * LSNs are uint64_t (XLogRecPtr), 0 meaning "none" (InvalidXLogRecPtr).
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace cachebust::pg {

/* The logical message prefix of every journal record. */
constexpr const char *kJournalPrefix = "cachebust";
/* The prefix of the worker's progress records (non-transactional messages). */
constexpr const char *kProgressPrefix = "cachebust.progress";
/* The worker's physical replication slot. */
constexpr const char *kJournalSlotName = "cachebust";

/*
 * Decides, in the postmaster while shared_preload_libraries load, whether
 * the journal runs: cachebust.journal on, wal_level replica or higher and
 * max_replication_slots > 0. Otherwise logs a WARNING saying what was found
 * and that invalidations lost in a crash fall back as before.
 */
void journal_init();

/* Whether transactions write their batches to WAL (fixed at server start). */
bool journal_active();

/*
 * Writes one encoded batch as a transactional "cachebust" message of the
 * current (sub)transaction, assigning it an xid if it has none. Call before
 * commit (it may ERROR, which must still be able to abort); from C++
 * scopes only through pg_call. Returns where the record ends.
 */
uint64_t journal_write(const char *batch, size_t len);

/*
 * A progress record: from restart_lsn on, WAL holds every batch the
 * primary's worker has not delivered (0: this run of the server does not
 * write the journal). Written about once a second while the slot moves, so
 * that a standby knows where a replay must start if it is promoted.
 * Returns where the record ends.
 */
uint64_t journal_write_progress(uint64_t restart_lsn);

/* ---- transactions writing now ------------------------------------------
 * Between its first message and the moment its batch is in the ring, a
 * transaction is known to nobody but itself. Each backend publishes, in
 * shared memory, an LSN at or before its first message for that time; the
 * worker keeps the slot at or before the oldest one.
 */

size_t journal_open_shmem_size();
/* In the shared memory start-up hook, under AddinShmemInitLock. */
void journal_open_shmem_init();
/* Before this transaction's first message: publishes and returns an LSN at
 * or before where it will start. Never fails. */
uint64_t journal_open_here();
/* The transaction's batch is in the ring, or it aborted. Never fails. */
void journal_close_here();
/* The oldest LSN published by a transaction writing now (0: none). Read it
 * after the WAL insert position and before draining the ring. */
uint64_t journal_oldest_open();

/* The end of WAL inserted so far (a record starting later starts at or after it). */
uint64_t journal_insert_end();

/* ---- reading ---------------------------------------------------------- */

/* A committed transaction's journal messages, as its commit record says. */
struct JournalCommit {
	uint64_t commit_lsn = 0;	/* end of the commit record (what the ring calls commit_lsn) */
	uint64_t first_lsn = 0;		/* where its first message starts */
	int64_t commit_time_us = 0; /* commit timestamp, microseconds since the Unix epoch */
	uint32_t xid = 0;			/* top-level transaction id */
	/* Encoded batches (core/batch_codec.hpp, seq/time/LSN zero) in WAL order:
	 * usually one; more when the transaction spilled early. */
	std::vector<std::string> batches;
};

enum class JournalReadStatus {
	more,		/* stopped at the per-call bound: call again */
	caught_up,	/* reached to_lsn, or the end of flushed (on a standby: replayed) WAL */
	wal_missing, /* the WAL at the read position was removed: what it held is lost */
	failed,		/* any other error (message in error()) */
};

/*
 * Reads local WAL forward from a start position and hands over, at each
 * commit record, the cachebust messages of that transaction (its
 * subtransactions' included, in WAL order). Aborted transactions (and
 * aborted subtransactions) are dropped; transactions that never commit
 * (crashed in progress) are never delivered, and are forgotten once a
 * running-transactions record or a shutdown checkpoint shows them gone.
 *
 * It needs no database connection (no catalog access): only shared memory
 * and the WAL files. It never waits for WAL and never calls
 * CHECK_FOR_INTERRUPTS; each read() is bounded, so the caller keeps looking
 * at its latch and signals between calls. PostgreSQL errors are caught and
 * reported as a status. Memory: the messages of transactions still open at
 * the read position are held until their commit or abort.
 */
class JournalReader
{
  public:
	/* from_lsn: any WAL position at or before the first record wanted
	 * (a slot's restart_lsn is fine; it need not be a record start). */
	explicit JournalReader(uint64_t from_lsn);
	~JournalReader();
	JournalReader(const JournalReader &) = delete;
	JournalReader &operator=(const JournalReader &) = delete;

	/* Returns false to stop after this commit (read() returns more). */
	using Deliver = std::function<bool(JournalCommit &&)>;

	/*
	 * Reads records until to_lsn (0: no limit), the end of readable WAL, or
	 * max_records records, calling deliver for each commit found. A later
	 * call resumes where this one stopped, also after caught_up (WAL grows).
	 */
	JournalReadStatus read(uint64_t to_lsn, size_t max_records, const Deliver &deliver);

	/* Only follow progress records (a standby's worker): batches are not kept. */
	void follow_progress_only() { progress_only_ = true; }

	/* The last progress record read: known is false before the first one,
	 * and again after a shutdown checkpoint (a new run of the primary, not
	 * known to write the journal until its worker says so). */
	struct Progress {
		bool known = false;
		uint64_t restart_lsn = 0;
	};
	const Progress &progress() const { return progress_; }

	/* Where the next record will be read from. */
	uint64_t position() const { return next_lsn_; }
	/*
	 * The oldest position a new reader must start from to see everything
	 * not yet delivered: position(), or the first message of a transaction
	 * still open there. Advance the slot no further than this.
	 */
	uint64_t safe_restart_lsn() const;
	size_t open_transactions() const;
	/* Bytes of messages held for open transactions. */
	size_t held_bytes() const { return held_bytes_; }
	/* The last error's message, for failed and wal_missing. */
	const std::string &error() const { return error_; }

	struct State; /* PostgreSQL-side state, in journal_wal.cpp */

  private:
	std::unique_ptr<State> state_;
	uint64_t next_lsn_;
	bool positioned_ = false; /* next_lsn_ is a record start already found */
	bool progress_only_ = false;
	Progress progress_;
	size_t held_bytes_ = 0;
	std::string error_;
};

/* ---- the slot -----------------------------------------------------------
 * The slot is acquired only for the duration of each call, so it shows as
 * inactive in pg_replication_slots between calls, and these functions may
 * be called from the worker or a backend. None needs a database connection.
 * They may ERROR: call them through pg_call.
 */

struct JournalSlot {
	bool exists = false;
	bool invalidated = false; /* its WAL was removed (max_slot_wal_keep_size) */
	uint64_t restart_lsn = 0; /* 0 when invalidated */
	uint64_t invalidated_at = 0; /* restart_lsn when it was invalidated */
};

/*
 * Creates the persistent physical slot with WAL reserved from the current
 * insert (on a standby: replay) position when it does not exist; returns
 * its state either way. An invalidated slot is left as it is: the caller
 * reports the loss, then may journal_slot_recreate().
 */
JournalSlot journal_slot_ensure();

/* Drops the slot (invalidated or not) and creates it again. */
JournalSlot journal_slot_recreate();

/* Drops the slot if it exists (the journal is off: it must not keep WAL). */
void journal_slot_drop();

/* The slot's state, without acquiring it. */
JournalSlot journal_slot_position();

/*
 * Moves restart_lsn forward to lsn (never backwards, never past the WAL
 * flushed, on a standby replayed). The new position reaches disk at the
 * next checkpoint — the one that could remove WAL it frees — so after a
 * crash the slot is at most back where it was, which only replays more.
 * Returns the slot's state afterwards (invalidated: nothing moved).
 */
JournalSlot journal_slot_advance(uint64_t lsn);

/* The end of WAL readable now: flushed on a primary, replayed on a standby. */
uint64_t journal_readable_end();

/*
 * Where a record written at lsn would start: past the page header when lsn
 * is at a page boundary, as pg_current_wal_insert_lsn() says; lsn otherwise.
 * A record that ends at a boundary ends before that header.
 */
uint64_t journal_record_start(uint64_t lsn);

} // namespace cachebust::pg
