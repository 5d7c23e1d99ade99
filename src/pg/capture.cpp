/*
 * capture.cpp — buffering targets per transaction and handing them to the
 * shared queue when the transaction commits.
 *
 * Like NOTIFY (async.c), everything that can fail happens before commit: at
 * XACT_EVENT_PRE_COMMIT the pending set is encoded into one flat buffer
 * (and a small "lost" batch naming the transaction's key prefixes, used if
 * the queue has no room), so the hand-off only copies bytes into shared
 * memory. It runs after the commit is visible to other sessions, which is
 * what makes "only committed changes invalidate" hold; it must never ERROR,
 * and never allocates.
 *
 * The hand-off waits until the transaction has released its locks (the
 * AFTER_LOCKS phase of the top-level resource owner's release, still before
 * COMMIT returns to the client): other writers of the same rows then never
 * wait for our copy into the ring. Transactions may therefore enter the
 * queue in another order than they committed. That is safe because a
 * delivery is a set of deletes and increments, which give the same result
 * in any order; and each commit is still queued before its client hears
 * of it, so wait_for_delivery() and barrier() cover it.
 *
 * With the WAL journal (cachebust.journal, journal_wal.hpp), PRE_COMMIT
 * also writes the same targets, in the journal's compact format
 * (batch_codec.hpp), as a transactional logical message: it is durable
 * exactly when the commit is, and gone with an abort.
 * From just before its first message until its batch is in the ring, the
 * transaction publishes where that message starts (journal_open_here), so
 * that the worker never lets the slot pass WAL it may still have to read.
 *
 * A transaction's buffer is bounded by what the queue could ever hold: once
 * it would be larger, the transaction commits as lost (a marker in the ring
 * with its prefixes and LSNs). Without the journal it stops buffering and
 * the worker covers its key prefixes with the fallback; with it, what it
 * holds is written to WAL at once (a "spill") and it goes on buffering, so
 * WAL has every target and the worker reads them back from there. Backend
 * memory stays about cachebust.queue_size however many rows change.
 *
 * Subtransaction events keep the set in step with savepoints.
 */
#include "pg/capture.hpp"

#include <algorithm>
#include <string>

#include "core/batch_codec.hpp"
#include "core/glob.hpp"
#include "pg/guard.hpp"
#include "pg/guc.hpp"
#include "pg/journal_wal.hpp"
#include "pg/prefix_registry.hpp"
#include "pg/queue.hpp"

extern "C" {
#include "access/xlog.h"
#include "utils/resowner.h"
}

namespace cachebust::pg {

static PendingSet pending;

/* The transaction outgrew the queue: it commits as lost (prefixes only). */
static bool overflowed = false;
static bool overflow_notice_due = false;

/* The pending set encoded at PRE_COMMIT, and how many targets it held. */
static std::string encoded_batch;
static size_t encoded_targets = 0;
static bool encoded_immediate = false;
/* The lost batch for the prefixes used, kept while they stay the same. */
static std::string encoded_lost;
static std::vector<std::string> encoded_lost_prefixes;

/* The key prefixes this transaction's targets were built with (almost always one). */
static std::vector<std::string> prefixes_used;

/* The journal message being written (its own compact format, batch_codec.hpp). */
static std::string journal_message;

/* At or before this transaction's first journal message (0: none written yet);
 * published for the worker until the batch is in the ring (journal_open_here). */
static uint64 journal_first_lsn = 0;

/* Writes a batch as this transaction's journal message. */
static void
write_journal_message(const std::string &batch)
{
	if (journal_first_lsn == 0)
		journal_first_lsn = journal_open_here();
	journal_write(batch.data(), batch.size());
}

/* Committed, not yet handed to the queue: the locks are still held. */
static bool handoff_due = false;

/* This session's commits not yet seen delivered (wait_for_delivery). */
static std::vector<uint64> unconfirmed_seqs;
/* A commit handed over since the session started or since wait_for_delivery()
 * last returned true: without one it has nothing to wait for. */
static bool committed_since_wait = false;

/* Upper bound of the encoded size of the pending set (see batch_codec.hpp). */
static size_t
encoded_size_bound()
{
	return sizeof(BatchHeader) + pending.size() * (sizeof(TargetHeader) + 7) + pending.key_bytes();
}

/*
 * Writes what the current (sub)transaction holds to WAL now, and forgets it.
 *
 * A message belongs to the subtransaction that writes it: rolling that back
 * drops the message in WAL too. So only the current level's entries go
 * (the set's tail); outer levels' stay buffered, and are spilled by their
 * own level or at PRE_COMMIT. Memory stays within the bound plus one target
 * (outer entries never exceed it on their own); the cost of a set nearly
 * full of outer entries is many small messages, one per spill.
 */
static void
spill_to_journal()
{
	int level = GetCurrentTransactionNestLevel();
	if (pending.empty() || pending.entries().back().nest_level < level)
		return;
	encode_journal_into(pending, level, journal_message);
	pg_call([&] { write_journal_message(journal_message); });
	/* In WAL now, tied to this subtransaction: drop them as its rollback would. */
	pending.abort_subtransaction(level);
}

void
capture_check_reach(const Target &target)
{
	/* Keys outside every prefix, which the fallback refuses to touch, are out of reach here too. */
	if (target.glob && !glob_has_literal_start(target.key))
		throw TargetError("the pattern \"" + target.key +
						  "\" has no literal start, so with an empty cachebust.key_prefix it could match the keys "
						  "of every application in the Redis database");
}

void
capture_add(Target &&target)
{
	capture_check_reach(target);
	if (overflowed && !journal_active())
		return; /* its prefix is recorded; that is all the fallback needs */
	pending.add(std::move(target), GetCurrentTransactionNestLevel());
	if (encoded_size_bound() > queue_max_batch_bytes()) {
		if (!overflowed)
			overflow_notice_due = true;
		overflowed = true;
		if (journal_active())
			spill_to_journal();
		else
			pending.clear();
	}
}

bool
capture_overflowed()
{
	return overflowed;
}

void
capture_warn_if_overflowed()
{
	if (!overflow_notice_due)
		return;
	overflow_notice_due = false;
	ereport(WARNING,
			(errmsg("this transaction's cachebust invalidations exceed what cachebust.queue_size can hold"),
			 journal_active()
				 ? errdetail("It writes its targets to WAL as they come (cachebust.journal), keeping its memory bounded; "
							 "after commit the worker reads them back from WAL.")
				 : errdetail("It stops buffering targets; at commit the fallback covers its key prefixes instead."),
			 errhint("Raise cachebust.queue_size, or change fewer rows per transaction.")));
}

const PendingSet &
capture_pending()
{
	return pending;
}

const std::vector<std::string> &
capture_prefixes_used()
{
	return prefixes_used;
}

KeyPrefixes
current_prefixes()
{
	KeyPrefixes prefixes{guc_key_prefix ? guc_key_prefix : "", guc_tag_prefix ? guc_tag_prefix : ""};
	if (prefixes_used.empty() || prefixes_used.back() != prefixes.key_prefix) {
		bool seen = false;
		for (const std::string &p : prefixes_used)
			seen = seen || p == prefixes.key_prefix;
		if (!seen)
			prefixes_used.emplace_back(prefixes.key_prefix);
	}
	return prefixes;
}

/* Forgets commits seen delivered; uncovered ones stay (wait_for_delivery stays false for them). */
static void
prune_confirmed()
{
	uint64 delivered = pg_atomic_read_u64(&shared_queue->delivered_seq);
	auto gone = std::remove_if(unconfirmed_seqs.begin(), unconfirmed_seqs.end(), [&](uint64 seq) {
		return seq <= delivered && !queue_any_uncovered(&seq, 1);
	});
	unconfirmed_seqs.erase(gone, unconfirmed_seqs.end());
}

/* Pruned when the list reaches this; it doubles with what stays, so a
 * session committing faster than delivery prunes O(1) per commit. */
static size_t prune_at = 32;

bool
capture_committed_since_wait()
{
	return committed_since_wait;
}

bool
capture_wait_for_delivery(int timeout_ms)
{
	if (!unconfirmed_seqs.empty()) {
		uint64 newest = *std::max_element(unconfirmed_seqs.begin(), unconfirmed_seqs.end());
		if (!queue_wait_until_delivered(newest, unconfirmed_seqs.data(), unconfirmed_seqs.size(), timeout_ms))
			return false;
	}
	unconfirmed_seqs.clear();
	prune_at = 32;
	committed_since_wait = false;
	return true;
}

/* Frees what a large transaction left behind; never throws. */
static void
reset_transaction_state() noexcept
{
	pending.clear();
	prefixes_used.clear();
	overflowed = false;
	overflow_notice_due = false;
	encoded_targets = 0;
	encoded_immediate = false;
	if (journal_first_lsn != 0) {
		journal_close_here();
		journal_first_lsn = 0;
	}
	if (encoded_batch.capacity() > 64 * 1024)
		std::string().swap(encoded_batch);
	else
		encoded_batch.clear();
	if (journal_message.capacity() > 64 * 1024)
		std::string().swap(journal_message);
	else
		journal_message.clear();
}

/* XactLastCommitEnd before this transaction's commit record, if it writes one. */
static XLogRecPtr commit_end_before = InvalidXLogRecPtr;

/* PRE_COMMIT: the last moment an error can still abort the transaction. */
static void
prepare_for_commit()
{
	commit_end_before = XactLastCommitEnd;

	/* The fallback after a crash must know every prefix in use. */
	for (const std::string &prefix : prefixes_used)
		prefix_registry_note(prefix.c_str());

	/* An overflowed transaction spilled the rest to WAL already; this is its last part. */
	bool journal_it = journal_active() && !pending.empty();
	bool failed = false;
	try {
		if (!overflowed || journal_it) {
			encode_batch_into(pending, encoded_batch);
			encoded_targets = pending.size();
			encoded_immediate = pending.any_immediate();
		}
		if (journal_it)
			encode_journal_into(pending, 0, journal_message);
		if (prefixes_used != encoded_lost_prefixes) {
			encoded_lost = encode_lost_batch(prefixes_used);
			encoded_lost_prefixes = prefixes_used;
		}
		if (unconfirmed_seqs.size() >= prune_at) {
			prune_confirmed();
			prune_at = std::max<size_t>(32, 2 * unconfirmed_seqs.size());
		}
		/* The hand-off appends without allocating. */
		if (unconfirmed_seqs.size() == unconfirmed_seqs.capacity())
			unconfirmed_seqs.reserve(std::max<size_t>(64, 2 * unconfirmed_seqs.capacity()));
	} catch (...) {
		failed = true;
	}
	if (failed)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("cachebust could not prepare %zu invalidation targets for commit", pending.size())));
	if (journal_it)
		write_journal_message(journal_message);
}

/* After COMMIT: the transaction is already visible; nothing here may ERROR. */
static void
enqueue_committed() noexcept
{
	if (shared_queue == nullptr)
		return;
	char *batch = nullptr;
	uint32 len = 0;
	/* Targets added after PRE_COMMIT could not be encoded: the whole batch counts as lost. */
	if (!overflowed && encoded_targets == pending.size() && !encoded_batch.empty()) {
		batch = encoded_batch.data();
		len = static_cast<uint32>(encoded_batch.size());
	}
	bool lost_ready = encoded_lost_prefixes == prefixes_used && !encoded_lost.empty();
	/*
	 * What a standby must have replayed to show this transaction's effects
	 * (cachebust.standby_names): the end of its commit record. A transaction
	 * that wrote none (no xid: only manual invalidations) left
	 * XactLastCommitEnd unchanged; the WAL written so far is then what its
	 * invalidations can be about.
	 */
	XLogRecPtr commit_lsn = XactLastCommitEnd != commit_end_before ? XactLastCommitEnd : GetXLogInsertRecPtr();
	uint64 seq = queue_enqueue_committed(batch, len, static_cast<uint32>(encoded_targets), encoded_immediate,
										 lost_ready ? encoded_lost.data() : nullptr,
										 lost_ready ? static_cast<uint32>(encoded_lost.size()) : 0,
										 commit_lsn, journal_first_lsn);
	if (unconfirmed_seqs.size() < unconfirmed_seqs.capacity())
		unconfirmed_seqs.push_back(seq);
	committed_since_wait = true;
}

static bool
has_work()
{
	return !pending.empty() || overflowed;
}

static void
xact_callback(XactEvent event, void *)
{
	switch (event) {
	case XACT_EVENT_PRE_COMMIT:
		if (has_work())
			prepare_for_commit();
		break;
	case XACT_EVENT_COMMIT:
		/* Handed off once the locks are released (release_callback). */
		handoff_due = has_work();
		if (!handoff_due)
			reset_transaction_state();
		break;
	case XACT_EVENT_PRE_PREPARE:
		if (has_work())
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that has buffered cachebust invalidations"),
					 errdetail_plural("The transaction buffered %zu invalidation target.",
									  "The transaction buffered %zu invalidation targets.",
									  pending.size(), pending.size()),
					 errhint("Extensions cannot carry state through two-phase commit; commit this transaction directly.")));
		break;
	case XACT_EVENT_ABORT:
	case XACT_EVENT_PARALLEL_ABORT:
	case XACT_EVENT_PREPARE:
		handoff_due = false;
		reset_transaction_state();
		break;
	default:
		break;
	}
}

static void
subxact_callback(SubXactEvent event, SubTransactionId, SubTransactionId, void *)
{
	/* The nesting level is still the subtransaction's own here. */
	int level = GetCurrentTransactionNestLevel();

	switch (event) {
	case SUBXACT_EVENT_ABORT_SUB:
		/* (An overflow stays: the transaction may still be too large, and covering more is safe.) */
		pending.abort_subtransaction(level);
		break;
	case SUBXACT_EVENT_COMMIT_SUB:
		pending.commit_subtransaction(level);
		break;
	default:
		break;
	}
}

/*
 * The committed transaction's locks are gone once the top-level resource
 * owner has passed RESOURCE_RELEASE_LOCKS; the first AFTER_LOCKS call of a
 * commit (one per resource owner, children first) hands the batch off.
 */
static void
release_callback(ResourceReleasePhase phase, bool is_commit, bool is_top_level, void *)
{
	if (phase != RESOURCE_RELEASE_AFTER_LOCKS || !is_commit || !is_top_level || !handoff_due)
		return;
	handoff_due = false;
	enqueue_committed();
	reset_transaction_state();
}

void
capture_init()
{
	RegisterXactCallback(xact_callback, nullptr);
	RegisterSubXactCallback(subxact_callback, nullptr);
	RegisterResourceReleaseCallback(release_callback, nullptr);
}

} // namespace cachebust::pg
