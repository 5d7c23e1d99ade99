/*
 * journal_wal.cpp — every PostgreSQL call of the WAL journal, for
 * PostgreSQL 15 (see journal_wal.hpp for what each function promises).
 *
 * What changes in later versions, and so is kept here:
 *  - LogLogicalMessage gains a `flush` argument in 17.
 *  - ReplicationSlotCreate gains `failover` in 17 and `synced` in 18;
 *    ReplicationSlotAcquire gains `error_if_invalid` in 18.
 *  - A slot's invalidation is `data.invalidated` (a cause) from 16; in 15
 *    it is restart_lsn reset to invalid with invalidated_at set.
 *  - The XLogReader, read_local_xlog_page_no_wait and ParseCommitRecord are
 *    as in 15 up to 18.
 */
#include "pg/journal_wal.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <utility>

#include "pg/guard.hpp"
#include "pg/guc.hpp"

extern "C" {
#include "access/rmgr.h"
#include "access/transam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogreader.h"
#include "access/xlogrecovery.h"
#include "access/xlogutils.h"
#include "catalog/pg_control.h"
#include "replication/message.h"
#include "replication/slot.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/standbydefs.h"
}

namespace cachebust::pg {

static bool journal_on = false;

void
journal_init()
{
	journal_on = false;
	if (!guc_journal)
		return;
	if (wal_level < WAL_LEVEL_REPLICA) {
		ereport(WARNING,
				(errmsg("cachebust.journal is off: wal_level is \"minimal\""),
				 errdetail("Invalidations lost in a crash, an overflow or a failover are covered by the fallback "
						   "(cachebust.fallback) instead of being replayed from WAL."),
				 errhint("Set wal_level to \"replica\" or \"logical\", or cachebust.journal to off to silence this.")));
		return;
	}
	if (max_replication_slots < 1) {
		ereport(WARNING,
				(errmsg("cachebust.journal is off: max_replication_slots is 0"),
				 errdetail("The journal keeps its WAL with a replication slot. Invalidations lost in a crash, an "
						   "overflow or a failover are covered by the fallback (cachebust.fallback) instead."),
				 errhint("Raise max_replication_slots by one, or set cachebust.journal to off to silence this.")));
		return;
	}
	journal_on = true;
}

bool
journal_active()
{
	return journal_on;
}

uint64_t
journal_write(const char *batch, size_t len)
{
	return LogLogicalMessage(kJournalPrefix, batch, len, true);
}

uint64_t
journal_write_progress(uint64_t restart_lsn)
{
	char payload[sizeof(uint64_t)];
	memcpy(payload, &restart_lsn, sizeof(payload));
	XLogRecPtr end = LogLogicalMessage(kProgressPrefix, payload, sizeof(payload), false);
	/*
	 * Not a commit: nothing would flush it until the next commit or the
	 * bgwriter's running-transactions record (up to 15 s). Meanwhile a
	 * writer's pg_current_wal_insert_lsn() includes it, and a standby's
	 * wait_for_lsn() could not see it replayed. The WAL writer flushes it
	 * within wal_writer_delay, without a wait here (as LogCurrentRunningXacts).
	 */
	XLogSetAsyncXactLSN(end);
	return end;
}

uint64_t
journal_readable_end()
{
	return RecoveryInProgress() ? GetXLogReplayRecPtr(nullptr) : GetFlushRecPtr(nullptr);
}

uint64_t
journal_record_start(uint64_t lsn)
{
	if (lsn == 0 || lsn % XLOG_BLCKSZ != 0)
		return lsn;
	return lsn + (XLogSegmentOffset(lsn, wal_segment_size) == 0 ? SizeOfXLogLongPHD : SizeOfXLogShortPHD);
}

/* ---- transactions writing now ----------------------------------------- */

/* One entry per PGPROC (indexed by pgprocno; 17 calls it MyProcNumber). */
static pg_atomic_uint64 *open_lsns = nullptr;

static size_t
open_entries()
{
	return static_cast<size_t>(MaxBackends) + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

size_t
journal_open_shmem_size()
{
	return mul_size(open_entries(), sizeof(pg_atomic_uint64));
}

void
journal_open_shmem_init()
{
	bool found;
	open_lsns = static_cast<pg_atomic_uint64 *>(ShmemInitStruct("cachebust journal", journal_open_shmem_size(), &found));
	if (!found)
		for (size_t i = 0; i < open_entries(); i++)
			pg_atomic_init_u64(&open_lsns[i], 0);
}

uint64_t
journal_open_here()
{
	uint64_t lsn = GetXLogInsertRecPtr();
	if (open_lsns != nullptr && MyProc != nullptr) {
		pg_atomic_write_u64(&open_lsns[MyProc->pgprocno], lsn);
		/* Published before our message is inserted: a worker that does not
		 * see it read the insert position before we inserted. */
		pg_memory_barrier();
	}
	return lsn;
}

void
journal_close_here()
{
	if (open_lsns != nullptr && MyProc != nullptr)
		pg_atomic_write_u64(&open_lsns[MyProc->pgprocno], 0);
}

uint64_t
journal_oldest_open()
{
	if (open_lsns == nullptr)
		return 0;
	pg_memory_barrier();
	uint64_t oldest = 0;
	for (size_t i = 0; i < open_entries(); i++) {
		uint64_t lsn = pg_atomic_read_u64(&open_lsns[i]);
		if (lsn != 0 && (oldest == 0 || lsn < oldest))
			oldest = lsn;
	}
	return oldest;
}

uint64_t
journal_insert_end()
{
	return RecoveryInProgress() ? GetXLogReplayRecPtr(nullptr) : GetXLogInsertRecPtr();
}

/* ---- reading ---------------------------------------------------------- */

namespace {

struct OpenTransaction {
	uint64_t first_lsn = 0; /* where its first message starts */
	bool prepared = false;	/* survives shutdowns, ends with COMMIT/ROLLBACK PREPARED */
	std::vector<std::pair<uint64_t, std::string>> messages; /* (record start, batch) */
};

/* TimestampTz is microseconds since 2000-01-01, the ring's unit as well. */

} // namespace

struct JournalReader::State {
	MemoryContext context = nullptr;
	XLogReaderState *reader = nullptr;
	ReadLocalXLogPageNoWaitPrivate page_private{};
	std::unordered_map<TransactionId, OpenTransaction> open;
};

JournalReader::JournalReader(uint64_t from_lsn) : state_(new State), next_lsn_(from_lsn) {}

JournalReader::~JournalReader()
{
	/* Freeing cannot ERROR; the context holds the reader and its buffers. */
	if (state_->context != nullptr)
		MemoryContextDelete(state_->context);
}

uint64_t
JournalReader::safe_restart_lsn() const
{
	uint64_t lsn = next_lsn_;
	for (const auto &entry : state_->open)
		lsn = std::min(lsn, entry.second.first_lsn);
	return lsn;
}

size_t
JournalReader::open_transactions() const
{
	return state_->open.size();
}

/* The messages of xid and its subtransactions, removed from the open set. */
static std::vector<std::pair<uint64_t, std::string>>
take_messages(std::unordered_map<TransactionId, OpenTransaction> &open, TransactionId xid,
			  const TransactionId *subxacts, int nsubxacts, size_t &held_bytes)
{
	std::vector<std::pair<uint64_t, std::string>> taken;
	auto take = [&](TransactionId id) {
		auto it = open.find(id);
		if (it == open.end())
			return;
		for (auto &m : it->second.messages) {
			held_bytes -= m.second.size();
			taken.push_back(std::move(m));
		}
		open.erase(it);
	};
	take(xid);
	for (int i = 0; i < nsubxacts; i++)
		take(subxacts[i]);
	std::sort(taken.begin(), taken.end(),
			  [](const auto &a, const auto &b) { return a.first < b.first; });
	return taken;
}

/* Forgets open transactions that can no longer commit (keep(xid, t) false). */
template <typename Keep>
static void
forget_open(std::unordered_map<TransactionId, OpenTransaction> &open, size_t &held_bytes, Keep keep)
{
	for (auto it = open.begin(); it != open.end();) {
		if (keep(it->first, it->second)) {
			++it;
			continue;
		}
		for (const auto &m : it->second.messages)
			held_bytes -= m.second.size();
		it = open.erase(it);
	}
}

/* A progress record's restart LSN, or false. */
static bool
progress_message(XLogReaderState *reader, uint64_t &restart_lsn)
{
	if (XLogRecGetRmid(reader) != RM_LOGICALMSG_ID ||
		(XLogRecGetInfo(reader) & ~XLR_INFO_MASK) != XLOG_LOGICAL_MESSAGE)
		return false;
	const auto *msg = reinterpret_cast<const xl_logical_message *>(XLogRecGetData(reader));
	size_t prefix_size = std::strlen(kProgressPrefix) + 1;
	if (msg->transactional || msg->prefix_size != prefix_size ||
		std::memcmp(msg->message, kProgressPrefix, prefix_size) != 0 || msg->message_size != sizeof(uint64_t))
		return false;
	memcpy(&restart_lsn, msg->message + prefix_size, sizeof(uint64_t));
	return true;
}

/* A "cachebust" transactional message's payload, or nullptr. */
static const char *
journal_message(XLogReaderState *reader, size_t &len)
{
	if (XLogRecGetRmid(reader) != RM_LOGICALMSG_ID ||
		(XLogRecGetInfo(reader) & ~XLR_INFO_MASK) != XLOG_LOGICAL_MESSAGE)
		return nullptr;
	const auto *msg = reinterpret_cast<const xl_logical_message *>(XLogRecGetData(reader));
	size_t prefix_size = std::strlen(kJournalPrefix) + 1;
	if (!msg->transactional || msg->prefix_size != prefix_size ||
		std::memcmp(msg->message, kJournalPrefix, prefix_size) != 0)
		return nullptr;
	len = msg->message_size;
	return msg->message + prefix_size;
}

JournalReadStatus
JournalReader::read(uint64_t to_lsn, size_t max_records, const Deliver &deliver)
{
	State &s = *state_;
	error_.clear();
	/* A PostgreSQL ERROR inside a call below: its message, then a status. */
	auto failed = [&](const PgException &e) {
		bool missing = e.edata->sqlerrcode == ERRCODE_UNDEFINED_FILE;
		error_ = e.edata->message ? e.edata->message : "unknown error";
		FreeErrorData(e.edata);
		positioned_ = false;
		return missing ? JournalReadStatus::wal_missing : JournalReadStatus::failed;
	};

	try {
		if (s.reader == nullptr) {
			pg_call([&] {
				s.context = AllocSetContextCreate(TopMemoryContext, "cachebust journal reader",
												  ALLOCSET_DEFAULT_SIZES);
				MemoryContext old = MemoryContextSwitchTo(s.context);
				/* Built field by field: XL_ROUTINE is a C compound literal. */
				XLogReaderRoutine routine{};
				routine.page_read = read_local_xlog_page_no_wait;
				routine.segment_open = wal_segment_open;
				routine.segment_close = wal_segment_close;
				s.reader = XLogReaderAllocate(wal_segment_size, nullptr, &routine, &s.page_private);
				MemoryContextSwitchTo(old);
			});
			if (s.reader == nullptr) {
				error_ = "out of memory allocating a WAL reader";
				return JournalReadStatus::failed;
			}
		}

		if (!positioned_) {
			if (to_lsn != 0 && next_lsn_ >= to_lsn)
				return JournalReadStatus::caught_up;
			/* A record at or after next_lsn_ ends past it: none is readable
			 * yet. Said without the search below, which reads the page again
			 * from its first record (a standby looks every 10 ms). */
			if (journal_readable_end() <= next_lsn_)
				return JournalReadStatus::caught_up;
			XLogRecPtr found = InvalidXLogRecPtr;
			s.page_private.end_of_wal = false;
			pg_call([&] {
				MemoryContext old = MemoryContextSwitchTo(s.context);
				found = XLogFindNextRecord(s.reader, next_lsn_);
				MemoryContextSwitchTo(old);
			});
			if (XLogRecPtrIsInvalid(found)) {
				if (s.page_private.end_of_wal)
					return JournalReadStatus::caught_up;
				error_ = "no WAL record at or after the read position";
				return JournalReadStatus::failed;
			}
			next_lsn_ = found;
			positioned_ = true;
		}

		for (size_t n = 0; n < max_records; n++) {
			if (to_lsn != 0 && next_lsn_ >= to_lsn)
				return JournalReadStatus::caught_up;
			XLogRecord *record = nullptr;
			char *errormsg = nullptr;
			s.page_private.end_of_wal = false;
			pg_call([&] {
				MemoryContext old = MemoryContextSwitchTo(s.context);
				record = XLogReadRecord(s.reader, &errormsg);
				MemoryContextSwitchTo(old);
			});
			if (record == nullptr) {
				/* Found again from next_lsn_ next time: the reader's state after a failed read is not reused. */
				positioned_ = false;
				if (s.page_private.end_of_wal)
					return JournalReadStatus::caught_up;
				error_ = errormsg ? errormsg : "could not read a WAL record";
				return JournalReadStatus::failed;
			}
			XLogReaderState *r = s.reader;
			uint64_t start = r->ReadRecPtr;
			next_lsn_ = r->EndRecPtr;
			RmgrId rmid = XLogRecGetRmid(r);
			uint8 info = XLogRecGetInfo(r) & ~XLR_INFO_MASK;

			size_t len = 0;
			uint64_t progress_lsn = 0;
			if (progress_message(r, progress_lsn)) {
				progress_.known = true;
				progress_.restart_lsn = progress_lsn;
			} else if (rmid == RM_XLOG_ID && info == XLOG_CHECKPOINT_SHUTDOWN) {
				/* Nothing runs across a shutdown checkpoint but prepared transactions;
				 * and the next run of the primary has not said yet whether it journals. */
				progress_.known = false;
				forget_open(s.open, held_bytes_, [](TransactionId, const OpenTransaction &t) { return t.prepared; });
			} else if (progress_only_) {
				continue;
			} else if (const char *payload = journal_message(r, len)) {
				/* The record's xid is the (sub)transaction that wrote it. */
				OpenTransaction &t = s.open[XLogRecGetXid(r)];
				if (t.messages.empty())
					t.first_lsn = start;
				t.messages.emplace_back(start, std::string(payload, len));
				held_bytes_ += len;
			} else if (rmid == RM_XACT_ID) {
				uint8 op = info & XLOG_XACT_OPMASK;
				if (op == XLOG_XACT_COMMIT || op == XLOG_XACT_COMMIT_PREPARED) {
					xl_xact_parsed_commit parsed;
					ParseCommitRecord(XLogRecGetInfo(r), reinterpret_cast<xl_xact_commit *>(XLogRecGetData(r)),
									  &parsed);
					TransactionId xid = op == XLOG_XACT_COMMIT_PREPARED ? parsed.twophase_xid : XLogRecGetXid(r);
					auto taken = take_messages(s.open, xid, parsed.subxacts, parsed.nsubxacts, held_bytes_);
					if (!taken.empty()) {
						JournalCommit commit;
						commit.commit_lsn = next_lsn_;
						commit.first_lsn = taken.front().first;
						commit.commit_time_us = parsed.xact_time;
						commit.xid = xid;
						commit.batches.reserve(taken.size());
						for (auto &m : taken)
							commit.batches.push_back(std::move(m.second));
						if (!deliver(std::move(commit)))
							return JournalReadStatus::more;
					}
				} else if (op == XLOG_XACT_ABORT || op == XLOG_XACT_ABORT_PREPARED) {
					/* Also a rolled-back subtransaction: its record lists its own committed children. */
					xl_xact_parsed_abort parsed;
					ParseAbortRecord(XLogRecGetInfo(r), reinterpret_cast<xl_xact_abort *>(XLogRecGetData(r)),
									 &parsed);
					TransactionId xid = op == XLOG_XACT_ABORT_PREPARED ? parsed.twophase_xid : XLogRecGetXid(r);
					take_messages(s.open, xid, parsed.subxacts, parsed.nsubxacts, held_bytes_);
				} else if (op == XLOG_XACT_PREPARE) {
					/* Refused with targets (capture.cpp), kept correct anyway: the
					 * subtransactions' messages join the top transaction's. */
					xl_xact_parsed_prepare parsed;
					ParsePrepareRecord(XLogRecGetInfo(r), reinterpret_cast<xl_xact_prepare *>(XLogRecGetData(r)),
									   &parsed);
					TransactionId xid = XLogRecGetXid(r);
					auto taken = take_messages(s.open, xid, parsed.subxacts, parsed.nsubxacts, held_bytes_);
					if (!taken.empty()) {
						OpenTransaction &t = s.open[xid];
						t.prepared = true;
						t.first_lsn = taken.front().first;
						for (auto &m : taken)
							held_bytes_ += m.second.size();
						t.messages = std::move(taken);
					}
				}
			} else if (rmid == RM_STANDBY_ID && info == XLOG_RUNNING_XACTS) {
				/* Older than the oldest running xid and not committed: it crashed (no abort record). */
				const auto *running = reinterpret_cast<const xl_running_xacts *>(XLogRecGetData(r));
				TransactionId oldest = running->oldestRunningXid;
				forget_open(s.open, held_bytes_, [&](TransactionId xid, const OpenTransaction &t) {
					return t.prepared || !TransactionIdPrecedes(xid, oldest);
				});
			} else if (rmid == RM_XLOG_ID && info == XLOG_END_OF_RECOVERY) {
				/* Nothing runs across the end of recovery but prepared transactions. */
				forget_open(s.open, held_bytes_, [](TransactionId, const OpenTransaction &t) { return t.prepared; });
			}
		}
		return JournalReadStatus::more;
	} catch (const PgException &e) {
		return failed(e);
	}
}

/* ---- the slot ----------------------------------------------------------- */

/* The slot's fields, read under its mutex (PostgreSQL 15's invalidation marks). */
static JournalSlot
slot_state(ReplicationSlot *slot)
{
	JournalSlot out;
	out.exists = true;
	SpinLockAcquire(&slot->mutex);
	XLogRecPtr restart = slot->data.restart_lsn;
	XLogRecPtr invalidated_at = slot->data.invalidated_at;
	SpinLockRelease(&slot->mutex);
	out.invalidated = XLogRecPtrIsInvalid(restart) && !XLogRecPtrIsInvalid(invalidated_at);
	out.restart_lsn = restart;
	out.invalidated_at = invalidated_at;
	return out;
}

JournalSlot
journal_slot_position()
{
	JournalSlot out;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	ReplicationSlot *slot = SearchNamedReplicationSlot(kJournalSlotName, false);
	if (slot != nullptr)
		out = slot_state(slot);
	LWLockRelease(ReplicationSlotControlLock);
	return out;
}

/* Reserves WAL for the slot this process holds, and writes it to disk. */
static void
reserve_and_save()
{
	ReplicationSlotReserveWal();
	ReplicationSlotMarkDirty();
	ReplicationSlotSave();
}

JournalSlot
journal_slot_ensure()
{
	JournalSlot before = journal_slot_position();
	if (before.exists && (before.restart_lsn != 0 || before.invalidated))
		return before;

	CheckSlotRequirements();
	/* The slot is ours only inside this call: released on error too. */
	PG_TRY();
	{
		if (before.exists) {
			/* Created, but WAL never reserved (an error in between). */
			ReplicationSlotAcquire(kJournalSlotName, true);
		} else {
			ReplicationSlotCreate(kJournalSlotName, false, RS_PERSISTENT, false);
		}
		reserve_and_save();
	}
	PG_FINALLY();
	{
		if (MyReplicationSlot != nullptr)
			ReplicationSlotRelease();
	}
	PG_END_TRY();
	return journal_slot_position();
}

JournalSlot
journal_slot_recreate()
{
	if (journal_slot_position().exists)
		ReplicationSlotDrop(kJournalSlotName, true);
	return journal_slot_ensure();
}

void
journal_slot_drop()
{
	if (journal_slot_position().exists)
		ReplicationSlotDrop(kJournalSlotName, true);
}

JournalSlot
journal_slot_advance(uint64_t lsn)
{
	ReplicationSlotAcquire(kJournalSlotName, true);
	PG_TRY();
	{
		ReplicationSlot *slot = MyReplicationSlot;
		XLogRecPtr target = std::min<XLogRecPtr>(lsn, journal_readable_end());
		/* An invalidated slot (restart_lsn invalid) is left alone. */
		if (!XLogRecPtrIsInvalid(slot->data.restart_lsn) && target > slot->data.restart_lsn) {
			SpinLockAcquire(&slot->mutex);
			slot->data.restart_lsn = target;
			SpinLockRelease(&slot->mutex);
			/* Written by the next checkpoint, before it removes the WAL this frees. */
			ReplicationSlotMarkDirty();
			ReplicationSlotsComputeRequiredLSN();
		}
	}
	PG_FINALLY();
	{
		ReplicationSlotRelease();
	}
	PG_END_TRY();
	return journal_slot_position();
}

} // namespace cachebust::pg
