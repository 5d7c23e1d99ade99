/*
 * sql_functions.cpp — the SQL-callable functions besides the trigger:
 * manual invalidation, pending(), flush(), wait_for_delivery(), stats(),
 * reset_stats(), version(), and the helpers behind watch() and the watches view.
 */
#include <string>
#include <vector>

#include "core/row_refresh.hpp"
#include "pg/capture.hpp"
#include "pg/guard.hpp"
#include "pg/guc.hpp"
#include "pg/journal_wal.hpp"
#include "pg/queue.hpp"
#include "pg/trigger.hpp"

extern "C" {
#include "access/relation.h"
#include "catalog/pg_authid.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "utils/pg_lsn.h"
#include "mb/pg_wchar.h"
#include "utils/acl.h"
#include "catalog/pg_type_d.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
}

namespace cachebust::pg {

/* The non-null elements of a text[] as strings; NULL elements are an error. */
static std::vector<std::string>
text_array_elements(ArrayType *array, const char *what)
{
	Datum *elems = nullptr;
	bool *nulls = nullptr;
	int n = 0;

	pg_call([&] { deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n); });

	std::vector<std::string> out;
	out.reserve(n);
	for (int i = 0; i < n; i++) {
		if (nulls[i])
			throw UserError(ERRCODE_NULL_VALUE_NOT_ALLOWED,
							std::string(what) + ": array elements must not be NULL");
		text *t = DatumGetTextPP(elems[i]);
		out.emplace_back(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	}
	return out;
}

/* No worker runs on a standby: an invalidation there would silently go nowhere. */
static void
refuse_during_recovery(const char *fname)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("%s cannot run during recovery", fname),
				 errdetail("A standby commits nothing: its changes come from the primary, whose triggers invalidate them "
						   "(delivered by the standby too when it has a cachebust.redis_url of its own)."),
				 errhint("Run it on the primary.")));
}

/* Buffers manual targets in the current transaction, like the trigger. */
static Datum
capture_manual(FunctionCallInfo fcinfo, TargetKind kind, bool glob, const char *fname)
{
	queue_require_preloaded(fname);
	refuse_during_recovery(fname);
	if (!guc_enabled)
		PG_RETURN_VOID();

	ArrayType *array = PG_GETARG_ARRAYTYPE_P(0);
	Datum result = guarded([&]() -> Datum {
		KeyPrefixes prefixes = current_prefixes();
		for (const std::string &text : text_array_elements(array, fname)) {
			try {
				capture_add(make_target(kind, glob, text, prefixes, false));
			} catch (const TargetError &e) {
				throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, std::string(fname) + ": " + e.what());
			}
		}
		PG_RETURN_VOID();
	});
	capture_warn_if_overflowed();
	return result;
}

extern "C" {

PG_FUNCTION_INFO_V1(cachebust_invalidate_key);
PG_FUNCTION_INFO_V1(cachebust_invalidate_tag);
PG_FUNCTION_INFO_V1(cachebust_invalidate_pattern);
PG_FUNCTION_INFO_V1(cachebust_bump);
PG_FUNCTION_INFO_V1(cachebust_pending);
PG_FUNCTION_INFO_V1(cachebust_flush);
PG_FUNCTION_INFO_V1(cachebust_wait_for_delivery);
PG_FUNCTION_INFO_V1(cachebust_barrier);
PG_FUNCTION_INFO_V1(cachebust_wait_for_lsn);
PG_FUNCTION_INFO_V1(cachebust_full_key);
PG_FUNCTION_INFO_V1(cachebust_version);
PG_FUNCTION_INFO_V1(cachebust_stats);
PG_FUNCTION_INFO_V1(cachebust_reset_stats);
PG_FUNCTION_INFO_V1(cachebust_check_targets);
PG_FUNCTION_INFO_V1(cachebust_trigger_targets);

PGDLLEXPORT Datum
cachebust_invalidate_key(PG_FUNCTION_ARGS)
{
	return capture_manual(fcinfo, TargetKind::Key, false, "cachebust.invalidate_key()");
}

PGDLLEXPORT Datum
cachebust_invalidate_tag(PG_FUNCTION_ARGS)
{
	return capture_manual(fcinfo, TargetKind::Tag, false, "cachebust.invalidate_tag()");
}

PGDLLEXPORT Datum
cachebust_bump(PG_FUNCTION_ARGS)
{
	return capture_manual(fcinfo, TargetKind::Bump, false, "cachebust.bump()");
}

/* invalidate_pattern(text): one pattern, its wildcards are the caller's. */
PGDLLEXPORT Datum
cachebust_invalidate_pattern(PG_FUNCTION_ARGS)
{
	const char *fname = "cachebust.invalidate_pattern()";
	queue_require_preloaded(fname);
	refuse_during_recovery(fname);
	if (!guc_enabled)
		PG_RETURN_VOID();

	text *pattern = PG_GETARG_TEXT_PP(0);
	return guarded([&]() -> Datum {
		std::string_view text(VARDATA_ANY(pattern), VARSIZE_ANY_EXHDR(pattern));
		try {
			capture_add(make_target(TargetKind::Key, true, text, current_prefixes(), false));
		} catch (const TargetError &e) {
			throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, std::string(fname) + ": " + e.what());
		}
		PG_RETURN_VOID();
	});
}

/* pending(): the current transaction's buffered targets, prefix applied. */
PGDLLEXPORT Datum
cachebust_pending(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	InitMaterializedSRF(fcinfo, 0);

	auto put = [&](const char *kind, std::string_view target) {
		Datum values[2];
		bool nulls[2] = {false, false};
		values[0] = CStringGetTextDatum(kind);
		values[1] = PointerGetDatum(cstring_to_text_with_len(target.data(), static_cast<int>(target.size())));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	};
	/* Too large for the queue: at commit the fallback covers these prefixes instead. */
	if (capture_overflowed()) {
		for (const std::string &prefix : capture_prefixes_used())
			put("fallback", prefix);
		return static_cast<Datum>(0);
	}
	for (const PendingSet::Entry &entry : capture_pending().entries())
		put(target_kind_name(entry.target.kind, entry.target.glob), redis_key_of(entry.target));
	return static_cast<Datum>(0);
}

PGDLLEXPORT Datum
cachebust_flush(PG_FUNCTION_ARGS)
{
	queue_require_preloaded("cachebust.flush()");
	queue_request_flush();
	PG_RETURN_VOID();
}

static void
check_timeout(int timeout_ms)
{
	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must not be negative")));
}

PGDLLEXPORT Datum
cachebust_wait_for_delivery(PG_FUNCTION_ARGS)
{
	int timeout_ms = PG_GETARG_INT32(0);

	queue_require_preloaded("cachebust.wait_for_delivery()");
	check_timeout(timeout_ms);
	if (IsTransactionBlock() && (!capture_pending().empty() || capture_overflowed()))
		ereport(WARNING,
				(errmsg("wait_for_delivery() does not wait for this transaction's own targets"),
				 errdetail("They are sent only after COMMIT.")));
	else if (!capture_committed_since_wait())
		/* The usual cause: the write went through another connection (a pool, a pooler). */
		ereport(NOTICE,
				(errmsg("wait_for_delivery(): this session has committed no invalidation to wait for"),
				 errdetail("It waits only for invalidations committed on this database connection since it "
						   "opened or since wait_for_delivery() last returned true, so it returns true at once."),
				 errhint("After a write on another connection (a connection pool, an ORM session that returns "
						 "its connection at commit, a pooler in transaction mode), call cachebust.barrier(), "
						 "which waits for the commits of every session.")));
	PG_RETURN_BOOL(capture_wait_for_delivery(timeout_ms));
}

/* barrier(): every commit of any session before the call is delivered (or covered). */
PGDLLEXPORT Datum
cachebust_barrier(PG_FUNCTION_ARGS)
{
	int timeout_ms = PG_GETARG_INT32(0);

	queue_require_preloaded("cachebust.barrier()");
	check_timeout(timeout_ms);
	if (IsTransactionBlock() && (!capture_pending().empty() || capture_overflowed()))
		ereport(WARNING,
				(errmsg("barrier() does not wait for this transaction's own targets"),
				 errdetail("They are sent only after COMMIT.")));
	/* A standby commits nothing: everything replayed before the call. */
	if (RecoveryInProgress())
		PG_RETURN_BOOL(queue_wait_until_lsn(GetXLogReplayRecPtr(nullptr), timeout_ms));
	PG_RETURN_BOOL(queue_wait_until_delivered(queue_last_seq(), nullptr, 0, timeout_ms));
}

/*
 * wait_for_lsn(lsn, timeout_ms): everything committed up to lsn is
 * delivered by this server's worker — on a primary, and on a standby that
 * delivers what it replays to its own Redis. Needs the WAL journal, which
 * is how the worker knows where each commit lies in WAL.
 */
PGDLLEXPORT Datum
cachebust_wait_for_lsn(PG_FUNCTION_ARGS)
{
	XLogRecPtr lsn = PG_GETARG_LSN(0);
	int timeout_ms = PG_GETARG_INT32(1);

	queue_require_preloaded("cachebust.wait_for_lsn()");
	check_timeout(timeout_ms);
	if (!journal_active())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cachebust.wait_for_lsn() needs the WAL journal"),
				 errdetail("cachebust.journal is off, or wal_level is \"minimal\"."),
				 errhint("Use cachebust.barrier() on the primary instead.")));
	PG_RETURN_BOOL(queue_wait_until_lsn(lsn, timeout_ms));
}

/* full_key(text): the Redis name a key target gets in this session. */
PGDLLEXPORT Datum
cachebust_full_key(PG_FUNCTION_ARGS)
{
	text *key = PG_GETARG_TEXT_PP(0);
	const char *prefix = guc_key_prefix ? guc_key_prefix : "";
	StringInfoData full;
	initStringInfo(&full);
	appendStringInfoString(&full, prefix);
	appendBinaryStringInfo(&full, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(full.data, full.len));
}

/*
 * version(): the version this library was built as, the control file's
 * default_version (the Makefile passes it as CACHEBUST_VERSION).
 */
PGDLLEXPORT Datum
cachebust_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(CACHEBUST_VERSION));
}

/* p50, p99 and max of a histogram in ms, as three columns (NULL when empty). */
static void
put_quantiles_ms(const LatencyHistogram &h, Datum *values, bool *nulls, int &i)
{
	bool empty = h.count() == 0;
	for (double q : {50.0, 99.0}) {
		values[i] = Float8GetDatum(h.percentile(q) / 1000.0);
		nulls[i++] = empty;
	}
	values[i] = Float8GetDatum(h.max() / 1000.0);
	nulls[i++] = empty;
}

static Datum
timestamp_or_null(TimestampTz ts, bool *isnull)
{
	*isnull = (ts == 0);
	return TimestampTzGetDatum(ts);
}

PGDLLEXPORT Datum
cachebust_stats(PG_FUNCTION_ARGS)
{
	queue_require_preloaded("cachebust.stats()");
	SharedQueue *q = shared_queue;

	TupleDesc tupdesc;
	if (get_call_result_type(fcinfo, nullptr, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	LWLockAcquire(q->lock, LW_SHARED);
	uint64 transactions = q->transactions_enqueued;
	uint64 targets = q->targets_enqueued;
	uint64 overflows = q->overflows;
	uint64 used = q->tail - q->head;
	uint64 high_water = q->high_water;
	uint64 capacity = q->capacity;
	uint64 last_seq = q->last_seq;
	TimestampTz stats_reset = q->stats_reset;
	LWLockRelease(q->lock);

	WorkerStats w;
	SpinLockAcquire(&q->stats_mutex);
	w = q->worker;
	SpinLockRelease(&q->stats_mutex);

	/* Where the error happened is for roles that may read cachebust.redis_url;
	 * which key it concerned (maybe another tenant's) for roles that may read
	 * every session's statistics. */
	bool show_endpoint = superuser() || has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_SETTINGS);
	bool show_key = superuser() || has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	char last_error[sizeof(w.last_error) + sizeof(w.last_error_key) + sizeof(w.last_error_endpoint) + 16];
	strlcpy(last_error, w.last_error, sizeof(last_error));
	if (show_key && w.last_error_key[0] != '\0')
		snprintf(last_error + strlen(last_error), sizeof(last_error) - strlen(last_error), " (key \"%s\")",
				 w.last_error_key);
	if (show_endpoint && w.last_error_endpoint[0] != '\0')
		snprintf(last_error + strlen(last_error), sizeof(last_error) - strlen(last_error), " (at %s)",
				 w.last_error_endpoint);

	Datum values[46];
	bool nulls[46] = {};
	int i = 0;
	values[i++] = Int64GetDatum(transactions);
	values[i++] = Int64GetDatum(targets);
	values[i++] = Int64GetDatum(w.targets_coalesced);
	values[i++] = Int64GetDatum(w.targets_delivered);
	values[i++] = Int64GetDatum(w.redis_commands);
	values[i++] = Int64GetDatum(w.redis_errors);
	values[i++] = Int64GetDatum(w.retries);
	values[i++] = Int64GetDatum(w.reconnects);
	values[i++] = Int64GetDatum(overflows);
	values[i++] = Int64GetDatum(w.fallbacks);
	values[i++] = Int64GetDatum(w.fallbacks_refused);
	values[i++] = Int64GetDatum(used);
	values[i++] = Int64GetDatum(capacity);
	values[i++] = Int64GetDatum(high_water);
	values[i++] = Int64GetDatum(w.pending_targets);
	values[i++] = BoolGetDatum(w.connected);
	values[i] = timestamp_or_null(w.last_delivery, &nulls[i]);
	i++;
	nulls[i] = (last_error[0] == '\0');
	values[i++] = CStringGetTextDatum(last_error);
	values[i] = timestamp_or_null(w.last_error_time, &nulls[i]);
	i++;
	put_quantiles_ms(w.latency, values, nulls, i);
	values[i++] = Int64GetDatum(last_seq);
	values[i++] = Int64GetDatum(pg_atomic_read_u64(&q->delivered_seq));
	values[i] = timestamp_or_null(stats_reset, &nulls[i]);
	i++;
	values[i++] = Int64GetDatum(w.targets_failed);
	values[i++] = Int64GetDatum(w.tag_members_skipped);
	values[i++] = Int64GetDatum(w.failovers);
	values[i++] = Int64GetDatum(w.uncovered_batches);
	values[i++] = Int64GetDatum(w.second_sends);
	values[i++] = Int64GetDatum(w.standby_timeouts);
	put_quantiles_ms(w.standby_lag, values, nulls, i);
	nulls[i] = (w.standbys_absent[0] == '\0');
	values[i++] = CStringGetTextDatum(w.standbys_absent);
	values[i++] = Int64GetDatum(w.journal_replayed_batches);
	values[i++] = Int64GetDatum(w.journal_replay_us / 1000);
	values[i++] = Int64GetDatum(w.slot_lag_bytes);
	/* Delivered through: on a standby, of what it replayed. */
	uint64 delivered_lsn = pg_atomic_read_u64(&q->delivered_lsn);
	XLogRecPtr end = RecoveryInProgress() ? GetXLogReplayRecPtr(nullptr) : GetXLogInsertRecPtr();
	nulls[i] = delivered_lsn == 0;
	values[i++] = LSNGetDatum(delivered_lsn);
	nulls[i] = delivered_lsn == 0;
	values[i++] = Int64GetDatum(end > delivered_lsn ? static_cast<int64>(end - delivered_lsn) : 0);
	values[i++] = Int64GetDatum(w.refreshes);
	values[i++] = Int64GetDatum(w.refresh_failures);
	values[i++] = Int64GetDatum(w.refreshes_coalesced);
	put_quantiles_ms(w.refresh_latency, values, nulls, i);
	/* (0.1.0's stats() declares fewer columns: they are the first ones.) */
	Assert(i >= tupdesc->natts);

	HeapTuple tuple = heap_form_tuple(tupdesc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

PGDLLEXPORT Datum
cachebust_reset_stats(PG_FUNCTION_ARGS)
{
	queue_require_preloaded("cachebust.reset_stats()");
	SharedQueue *q = shared_queue;

	LWLockAcquire(q->lock, LW_EXCLUSIVE);
	q->transactions_enqueued = 0;
	q->targets_enqueued = 0;
	q->overflows = 0;
	q->high_water = q->tail - q->head;
	q->stats_reset = GetCurrentTimestamp();
	LWLockRelease(q->lock);

	/* Gauges (pending, connected) and the last error stay. */
	SpinLockAcquire(&q->stats_mutex);
	WorkerStats &w = q->worker;
	w.targets_coalesced = w.targets_delivered = w.targets_failed = w.tag_members_skipped = 0;
	w.redis_commands = w.redis_errors = w.retries = w.reconnects = w.failovers = 0;
	w.fallbacks = w.fallbacks_refused = 0;
	w.second_sends = w.standby_timeouts = 0;
	w.journal_replayed_batches = w.journal_replay_us = 0;
	w.refreshes = w.refresh_failures = w.refreshes_coalesced = 0;
	w.refresh_latency.reset();
	w.latency.reset();
	w.standby_lag.reset();
	SpinLockRelease(&q->stats_mutex);
	PG_RETURN_VOID();
}

/*
 * check_targets(tbl, targets, trigger_name): what the trigger would say,
 * before it exists; also what could never work (a fixed part longer than
 * the key limit, a glob matching every key with an empty key_prefix).
 * Needs the privilege CREATE TRIGGER needs.
 */
PGDLLEXPORT Datum
cachebust_check_targets(PG_FUNCTION_ARGS)
{
	Oid relid = PG_GETARG_OID(0);
	ArrayType *array = PG_GETARG_ARRAYTYPE_P(1);
	const char *trigger_name = text_to_cstring(PG_GETARG_TEXT_PP(2));

	if (pg_class_aclcheck(relid, GetUserId(), ACL_TRIGGER) != ACLCHECK_OK && !pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NO_PRIV, get_relkind_objtype(get_rel_relkind(relid)), get_rel_name(relid));

	Relation rel = relation_open(relid, AccessShareLock);
	TupleDesc tupdesc = CreateTupleDescCopy(RelationGetDescr(rel));
	char *table_name = pstrdup(RelationGetRelationName(rel));
	relation_close(rel, AccessShareLock);

	return guarded([&]() -> Datum {
		std::vector<AttrNumber> attnums;
		TriggerSpec spec = compile_targets(text_array_elements(array, "cachebust.check_targets()"), tupdesc,
										   trigger_name, table_name, attnums);
		check_renderable(spec, current_prefixes(), trigger_name, table_name);
		PG_RETURN_VOID();
	});
}

/*
 * _trigger_targets(tgargs bytea), of 0.1.0: its watches view calls it until
 * ALTER EXTENSION cachebust UPDATE replaces both. Bytes that are not valid in
 * the database encoding come out as \xNN, so the text is always valid.
 */
PGDLLEXPORT Datum
cachebust_trigger_targets(PG_FUNCTION_ARGS)
{
	bytea *args = PG_GETARG_BYTEA_PP(0);
	const char *p = VARDATA_ANY(args);
	const char *end = p + VARSIZE_ANY_EXHDR(args);
	ArrayBuildState *astate = nullptr;

	while (p < end) {
		int len = static_cast<int>(strnlen(p, end - p));
		StringInfoData arg;
		initStringInfo(&arg);
		for (int i = 0; i < len;) {
			int valid = pg_encoding_verifymbstr(GetDatabaseEncoding(), p + i, len - i);
			appendBinaryStringInfo(&arg, p + i, valid);
			i += valid;
			if (i < len) {
				appendStringInfo(&arg, "\\x%02x", static_cast<unsigned char>(p[i]));
				i++;
			}
		}
		astate = accumArrayResult(astate, PointerGetDatum(cstring_to_text_with_len(arg.data, arg.len)), false,
								  TEXTOID, CurrentMemoryContext);
		p += len + 1;
	}
	if (astate == nullptr)
		PG_RETURN_DATUM(PointerGetDatum(construct_empty_array(TEXTOID)));
	PG_RETURN_DATUM(makeArrayResult(astate, CurrentMemoryContext));
}

} // extern "C"

} // namespace cachebust::pg
