/*
 * capture.cpp — buffering targets per transaction and handing them to the
 * shared queue when the transaction commits.
 *
 * Like NOTIFY (async.c), everything that can fail happens before commit: at
 * XACT_EVENT_PRE_COMMIT the pending set is encoded into one flat buffer, so
 * the XACT_EVENT_COMMIT callback only copies bytes into shared memory. That
 * callback runs after the commit is visible to other sessions, which is what
 * makes "only committed changes invalidate" hold; it must never ERROR.
 * Subtransaction events keep the set in step with savepoints.
 */
#include "pg/capture.hpp"

#include <string>

#include "core/batch_codec.hpp"
#include "pg/guard.hpp"
#include "pg/guc.hpp"
#include "pg/prefix_registry.hpp"
#include "pg/queue.hpp"

namespace cachebust::pg {

static PendingSet pending;

/* The pending set encoded at PRE_COMMIT, and how many targets it held. */
static std::string encoded_batch;
static size_t encoded_targets = 0;
static bool encoded_immediate = false;

static uint64 last_committed_seq = 0;

/* The key prefixes this transaction's targets were built with (almost always one). */
static std::vector<std::string> prefixes_used;

void
capture_add(Target &&target)
{
	pending.add(std::move(target), GetCurrentTransactionNestLevel());
}

const PendingSet &
capture_pending()
{
	return pending;
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

uint64
capture_last_committed_seq()
{
	return last_committed_seq;
}

/* Frees what a large transaction left behind; never throws. */
static void
reset_transaction_state() noexcept
{
	pending.clear();
	prefixes_used.clear();
	encoded_targets = 0;
	encoded_immediate = false;
	if (encoded_batch.capacity() > 64 * 1024)
		std::string().swap(encoded_batch);
	else
		encoded_batch.clear();
}

/* PRE_COMMIT: the last moment an error can still abort the transaction. */
static void
encode_before_commit()
{
	bool failed = false;

	try {
		encoded_batch = encode_batch(pending);
		encoded_targets = pending.size();
		encoded_immediate = pending.any_immediate();
	} catch (...) {
		failed = true;
	}
	if (failed)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("cachebust could not prepare %zu invalidation targets for commit", pending.size())));
}

/* COMMIT: the transaction is already visible; nothing here may ERROR. */
static void
enqueue_at_commit() noexcept
{
	if (shared_queue == nullptr)
		return;
	if (encoded_targets == pending.size() && !encoded_batch.empty())
		last_committed_seq = queue_enqueue_committed(encoded_batch.data(),
													 static_cast<uint32>(encoded_batch.size()),
													 static_cast<uint32>(encoded_targets),
													 encoded_immediate);
	else
		/* Targets added after PRE_COMMIT cannot be encoded safely now. */
		last_committed_seq = queue_enqueue_overflow();
}

static void
xact_callback(XactEvent event, void *)
{
	switch (event) {
	case XACT_EVENT_PRE_COMMIT:
		if (!pending.empty()) {
			/* The fallback after a crash must know every prefix in use. */
			for (const std::string &prefix : prefixes_used)
				prefix_registry_note(prefix.c_str());
			encode_before_commit();
		}
		break;
	case XACT_EVENT_COMMIT:
		if (!pending.empty())
			enqueue_at_commit();
		reset_transaction_state();
		break;
	case XACT_EVENT_PRE_PREPARE:
		if (!pending.empty())
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
		pending.abort_subtransaction(level);
		break;
	case SUBXACT_EVENT_COMMIT_SUB:
		pending.commit_subtransaction(level);
		break;
	default:
		break;
	}
}

void
capture_init()
{
	RegisterXactCallback(xact_callback, nullptr);
	RegisterSubXactCallback(subxact_callback, nullptr);
}

} // namespace cachebust::pg
