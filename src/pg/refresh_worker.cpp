/*
 * refresh_worker.cpp — see refresh_worker.hpp.
 *
 * Errors: every PostgreSQL call goes through pg_call() on its own, so an
 * ERROR (a failing query, the statement timeout) becomes a PgException
 * here; the refresh then aborts its transaction, removes the key and
 * records the error. SIGTERM is die(): it cancels a running query and
 * ends the process at the next CHECK_FOR_INTERRUPTS.
 */
#include "pg/refresh_worker.hpp"

#include <map>
#include <string>
#include <vector>

#include "core/delivery/engine.hpp"
#include "core/redis/connection.hpp"
#include "core/row_refresh.hpp"
#include "pg/engine_settings.hpp"
#include "pg/guard.hpp"
#include "pg/guc.hpp"
#include "pg/refresh_requests.hpp"
#include "pg/wait_set.hpp"
#include "pg/worker_stats.hpp"

extern "C" {
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
}

namespace cachebust::pg {

/* A refresh worker without work for this long exits. */
constexpr int64 kIdleExitUs = 10 * 1000 * 1000;
/* A key with a TTL is recomputed when this share of it has passed. */
constexpr double kRefreshAheadShare = 0.75;

namespace {

/* What a refresh found. */
struct Outcome {
	bool registered = false; /* the key is (still) materialized; a row refresh always is */
	bool has_value = false;	 /* false: no row, or NULL: the key is removed */
	std::string redis_key;	 /* the key to SET or remove (a row refresh's key is a composite) */
	std::string value;
	int ttl_ms = 0;
	uint32_t prefix_len = 0;
	std::string error; /* the query failed: the key is removed */
};

/* Plain C storage filled inside pg_call (no C++ object may be live across an ERROR). */
struct Registration {
	char *query;
	char *search_path;
	Oid owner;
	int ttl_ms;
	int prefix_len;
	int nparams; /* a row refresh: $1..$nparams, read with the input functions of param_types */
	Oid *param_types;
};

/* What the query returned, in the refresh's memory context. */
struct QueryValue {
	bool has_value;
	char *value;
	size_t value_len;
	const char *problem; /* the result is not one row of one column */
};

/*
 * Runs reg's query in the current transaction as its owner, read-only,
 * with its search_path and cachebust.refresh_timeout_ms, in a snapshot
 * taken now (after every commit that asked for the refresh); params are
 * the text forms of $1..$n. Called inside pg_call.
 */
void
run_refresh_query(const Registration &reg, const char *const *params, MemoryContext keep, QueryValue &out)
{
	/* DROP ROLE does not know our registrations: never run one as a role that is gone. */
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(reg.owner))) {
		out.problem = "its owner role no longer exists";
		return;
	}
	Oid saved_user;
	int saved_context;
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(reg.owner, saved_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	if (reg.search_path != nullptr)
		(void) set_config_option("search_path", reg.search_path, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true,
								 0, false);
	XactReadOnly = true;
	Datum *args = static_cast<Datum *>(palloc(sizeof(Datum) * Max(reg.nparams, 1)));
	for (int i = 0; i < reg.nparams; i++) {
		Oid input_fn, ioparam;
		getTypeInputInfo(reg.param_types[i], &input_fn, &ioparam);
		args[i] = OidInputFunctionCall(input_fn, const_cast<char *>(params[i]), ioparam, -1);
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	enable_timeout_after(STATEMENT_TIMEOUT, guc_refresh_timeout_ms);
	int rc = SPI_execute_with_args(reg.query, reg.nparams, reg.param_types, args, nullptr, true, 2);
	disable_timeout(STATEMENT_TIMEOUT, false);
	if (rc != SPI_OK_SELECT)
		out.problem = "the query is not a SELECT";
	else if (SPI_processed > 1)
		out.problem = "the query returned more than one row";
	else if (SPI_tuptable->tupdesc->natts != 1)
		out.problem = "the query returned more than one column";
	else if (SPI_processed == 1) {
		bool isnull;
		Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull) {
			Oid type = SPI_gettypeid(SPI_tuptable->tupdesc, 1);
			MemoryContext old = MemoryContextSwitchTo(keep);
			if (type == BYTEAOID) {
				bytea *b = DatumGetByteaPP(d);
				out.value_len = VARSIZE_ANY_EXHDR(b);
				out.value = static_cast<char *>(palloc(out.value_len + 1));
				memcpy(out.value, VARDATA_ANY(b), out.value_len);
			} else {
				out.value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
				out.value_len = strlen(out.value);
			}
			MemoryContextSwitchTo(old);
			out.has_value = true;
		}
	}
	PopActiveSnapshot();
	SetUserIdAndSecContext(saved_user, saved_context);
}

class RefreshWorker
{
  public:
	explicit RefreshWorker(Oid database) : database_(database), engine_(static_cast<uint64_t>(MyProcPid)) {}
	void run();

  private:
	void configure();
	void interrupts();
	bool refresh(const std::string &key, bool ahead_of_ttl);
	void compute(const std::string &key, Outcome &out);
	void deliver(Target &&t);
	void record(const std::string &key, const std::string &error);
	std::vector<std::string> registered_keys();
	void wait(long timeout_ms);

	Oid database_;
	DeliveryEngine engine_;
	WaitSet wait_set_;
	std::vector<PollEntry> sockets_;
	std::vector<WaitSet::Ready> ready_;
	uint64_t delivered_seq_ = 0;
	MemoryContext refresh_context_ = nullptr;
	/* Keys with a TTL and when (monotonic µs) to recompute them ahead of it. */
	std::map<std::string, int64_t> ahead_due_;
};

void
RefreshWorker::configure()
{
	EngineSettings s = engine_settings_from_gucs();
	s.publish_channel.clear(); /* values are not announced */
	s.failover_repeat_ms = 0;  /* a repeated SET could be older than the next one */
	engine_.configure(s);
}

void
RefreshWorker::interrupts()
{
	pg_call([] { CHECK_FOR_INTERRUPTS(); });
	if (ConfigReloadPending) {
		ConfigReloadPending = false;
		pg_call([] { ProcessConfigFile(PGC_SIGHUP); });
		configure();
	}
}

void
RefreshWorker::wait(long timeout_ms)
{
	sockets_.clear();
	engine_.poll_entries(sockets_);
	wait_set_.wait(sockets_, timeout_ms, ready_);
	for (const WaitSet::Ready &r : ready_)
		engine_.on_io(r.fd, r.readable, r.writable);
	engine_.on_timer();
	for (const LogLine &line : engine_.take_report().logs) {
		int elevel = line.level == LogLevel::Warning ? WARNING : line.level == LogLevel::Log ? LOG : DEBUG1;
		const char *message = line.message.c_str();
		pg_call([&] { ereport(elevel, (errmsg_internal("cachebust refresh worker: %s", message))); });
	}
}

/* Hands t to Redis and waits until Redis acknowledged it. */
void
RefreshWorker::deliver(Target &&t)
{
	uint64_t seq = ++delivered_seq_;
	engine_.submit({std::move(t)}, Stream::First, SeqSet(seq));
	while (engine_.min_held_seq(Stream::First) <= seq) {
		interrupts();
		int64_t now = monotonic_us();
		int64_t deadline = engine_.deadline_us();
		long timeout_ms = deadline == 0 ? 1000 : static_cast<long>(Max((deadline - now + 999) / 1000, 0));
		wait(Min(timeout_ms, 1000L));
	}
	/* (A removal Redis refused — NOPERM — is logged by the engine; nothing else can cover it here.) */
	engine_.take_report();
}

void
RefreshWorker::compute(const std::string &key, Outcome &out)
{
	/* A key with a NUL is a row refresh (core/row_refresh.hpp); else a materialized key. */
	uint32_t row_id = 0;
	std::vector<std::string> row_params;
	bool row = parse_row_refresh_key(key, out.redis_key, row_id, row_params);
	if (!row)
		out.redis_key = key;
	std::vector<const char *> params;
	for (const std::string &p : row_params)
		params.push_back(p.c_str());

	const char *key_c = out.redis_key.c_str();
	Registration reg{};
	bool found = false;
	QueryValue result{};
	MemoryContext keep = refresh_context_;

	pg_call([&] { MemoryContextReset(keep); });
	try {
		pg_call([&] {
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			pgstat_report_activity(STATE_RUNNING, key_c);
			SPI_connect();
			PushActiveSnapshot(GetTransactionSnapshot());
			if (row) {
				Oid types[1] = {INT4OID};
				Datum args[1] = {Int32GetDatum(static_cast<int32>(row_id))};
				SPI_execute_with_args("SELECT query, owner::oid, 0, 0, search_path, param_types::oid[] "
									  "FROM cachebust._row_refresh WHERE id = $1",
									  1, types, args, nullptr, true, 1);
			} else {
				Oid types[1] = {TEXTOID};
				Datum args[1] = {CStringGetTextDatum(key_c)};
				SPI_execute_with_args("SELECT query, owner::oid, ttl_ms, prefix_len, search_path, '{}'::oid[] "
									  "FROM cachebust._materialized WHERE full_key = $1",
									  1, types, args, nullptr, true, 1);
			}
			if (SPI_processed == 1) {
				HeapTuple tuple = SPI_tuptable->vals[0];
				TupleDesc desc = SPI_tuptable->tupdesc;
				bool isnull;
				MemoryContext old = MemoryContextSwitchTo(keep);
				reg.query = SPI_getvalue(tuple, desc, 1);
				reg.owner = DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull));
				reg.ttl_ms = DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull));
				reg.prefix_len = DatumGetInt32(SPI_getbinval(tuple, desc, 4, &isnull));
				reg.search_path = SPI_getvalue(tuple, desc, 5);
				Datum *elems;
				bool *nulls;
				deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tuple, desc, 6, &isnull)), OIDOID, sizeof(Oid), true,
								  TYPALIGN_INT, &elems, &nulls, &reg.nparams);
				reg.param_types = static_cast<Oid *>(palloc(sizeof(Oid) * Max(reg.nparams, 1)));
				for (int i = 0; i < reg.nparams; i++)
					reg.param_types[i] = DatumGetObjectId(elems[i]);
				MemoryContextSwitchTo(old);
				found = true;
			}
			PopActiveSnapshot();
		});
		if (found && row && reg.nparams != static_cast<int>(params.size()))
			result.problem = "the key's values do not match the registration's parameters";
		else if (found)
			pg_call([&] { run_refresh_query(reg, params.data(), keep, result); });
		pg_call([] {
			SPI_finish();
			CommitTransactionCommand();
			pgstat_report_activity(STATE_IDLE, nullptr);
		});
	} catch (const PgException &e) {
		out.error = e.edata->message != nullptr ? e.edata->message : "unknown error";
		pg_call([] {
			disable_timeout(STATEMENT_TIMEOUT, false);
			AbortCurrentTransaction();
			pgstat_report_activity(STATE_IDLE, nullptr);
		});
		found = true; /* (a failing registration lookup is a failure too: the key goes) */
	}
	/* A row refresh whose registration is gone (unwatch()) removes its key. */
	out.registered = found || row;
	out.ttl_ms = reg.ttl_ms;
	out.prefix_len = static_cast<uint32_t>(Max(reg.prefix_len, 0));
	if (result.problem != nullptr)
		out.error = result.problem;
	else if (out.error.empty() && result.has_value) {
		out.has_value = true;
		out.value.assign(result.value, result.value_len);
	}
}

/* Registrations' status, for the cachebust.materialized view (the primary only). */
void
RefreshWorker::record(const std::string &key, const std::string &error)
{
	bool standby = false;
	pg_call([&] { standby = RecoveryInProgress(); });
	if (standby)
		return;
	const char *key_c = key.c_str();
	const char *error_c = error.empty() ? nullptr : error.c_str();
	try {
		pg_call([&] {
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			SPI_connect();
			PushActiveSnapshot(GetTransactionSnapshot());
			Oid types[2] = {TEXTOID, TEXTOID};
			Datum args[2] = {CStringGetTextDatum(key_c), error_c != nullptr ? CStringGetTextDatum(error_c) : 0};
			const char nulls[2] = {' ', error_c != nullptr ? ' ' : 'n'};
			SPI_execute_with_args("UPDATE cachebust._materialized SET last_refreshed = now(), last_error = $2, "
								  "refreshes = refreshes + 1, failures = failures + ($2 IS NOT NULL)::int "
								  "WHERE full_key = $1",
								  2, types, args, nulls, false, 0);
			PopActiveSnapshot();
			SPI_finish();
			CommitTransactionCommand();
		});
	} catch (const PgException &e) {
		const char *message = e.edata->message;
		pg_call([&] {
			AbortCurrentTransaction();
			ereport(LOG, (errmsg("cachebust refresh worker could not record the status of \"%s\": %s", key_c,
								 message != nullptr ? message : "unknown error")));
		});
	}
}

/* Recomputes key; false when it is no longer materialized. */
bool
RefreshWorker::refresh(const std::string &key, bool ahead_of_ttl)
{
	Outcome out;
	compute(key, out);
	if (!out.registered) {
		ahead_due_.erase(key);
		return false;
	}
	bool row = out.redis_key != key;
	Target t;
	t.key = out.redis_key;
	t.prefix_len = out.prefix_len; /* (a row refresh: 0; this engine's fallbacks are not used) */
	if (out.has_value) {
		auto set = std::make_shared<SetValue>();
		set->value = std::move(out.value);
		set->ttl_ms = out.ttl_ms;
		set->only_if_exists = ahead_of_ttl;
		t.kind = TargetKind::Set;
		t.set = std::move(set);
	} else {
		t.kind = TargetKind::Key; /* no row, NULL, or a failure: fail closed */
	}
	if (!out.error.empty()) {
		const char *key_c = out.redis_key.c_str();
		const char *error_c = out.error.c_str();
		const char *what = row ? "key" : "materialized key";
		pg_call([&] {
			ereport(WARNING, (errmsg("cachebust could not refresh %s \"%s\": %s", what, key_c, error_c),
							  errdetail("The key was removed; it is computed again at the next change.")));
		});
	}
	deliver(std::move(t));
	if (out.ttl_ms > 0 && out.has_value)
		ahead_due_[key] = monotonic_us() + static_cast<int64_t>(out.ttl_ms * 1000 * kRefreshAheadShare);
	else
		ahead_due_.erase(key);
	if (!row) /* (no status per row: too many keys) */
		record(key, out.error);
	worker_stats_count_refresh(!out.error.empty());
	return true;
}

std::vector<std::string>
RefreshWorker::registered_keys()
{
	List *keys = NIL;
	MemoryContext keep = refresh_context_;
	try {
		pg_call([&] {
			MemoryContextReset(keep);
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			SPI_connect();
			PushActiveSnapshot(GetTransactionSnapshot());
			SPI_execute("SELECT full_key FROM cachebust._materialized ORDER BY full_key", true, 0);
			MemoryContext old = MemoryContextSwitchTo(keep);
			for (uint64 i = 0; i < SPI_processed; i++)
				keys = lappend(keys, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
			MemoryContextSwitchTo(old);
			PopActiveSnapshot();
			SPI_finish();
			CommitTransactionCommand();
		});
	} catch (const PgException &e) {
		/* (Not installed in this database any more, for one.) */
		pg_call([] { AbortCurrentTransaction(); });
		keys = NIL;
	}
	std::vector<std::string> out;
	ListCell *lc;
	foreach (lc, keys)
		out.emplace_back(static_cast<const char *>(lfirst(lc)));
	return out;
}

void
RefreshWorker::run()
{
	pg_call([&] {
		refresh_context_ = AllocSetContextCreate(TopMemoryContext, "cachebust refresh", ALLOCSET_DEFAULT_SIZES);
	});
	configure();
	int64_t idle_since = monotonic_us();
	for (;;) {
		interrupts();
		bool worked = false;
		if (refresh_take_warm(database_)) {
			for (const std::string &key : registered_keys())
				refresh(key, false);
			worked = true;
		}
		RefreshJob job;
		while (refresh_take(database_, job)) {
			refresh(job.key, false);
			refresh_finish(job);
			interrupts();
			worked = true;
		}
		int64_t now = monotonic_us();
		std::vector<std::string> due;
		for (const auto &entry : ahead_due_)
			if (entry.second <= now)
				due.push_back(entry.first);
		for (const std::string &key : due) {
			refresh(key, true);
			worked = true;
		}
		int64_t next_due = INT64_MAX;
		for (const auto &entry : ahead_due_)
			next_due = Min(next_due, entry.second);
		now = monotonic_us();
		if (worked)
			idle_since = now;
		else if (ahead_due_.empty() && now - idle_since >= kIdleExitUs)
			break;
		long timeout_ms = static_cast<long>(Max(Min(next_due - now, kIdleExitUs), 0) / 1000) + 1;
		int64_t deadline = engine_.deadline_us();
		if (deadline != 0)
			timeout_ms = Min(timeout_ms, static_cast<long>(Max((deadline - now + 999) / 1000, 0)));
		wait(timeout_ms);
	}
}

void
detach_refresh_worker(int, Datum)
{
	refresh_detach();
}

} // namespace

bool
refresh_worker_start(Oid database)
{
	BackgroundWorker worker;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART; /* the worker starts it again when there is work */
	strlcpy(worker.bgw_library_name, "cachebust", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "cachebust_refresh_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "cachebust refresh worker for database %u", database);
	strlcpy(worker.bgw_type, "cachebust refresh worker", BGW_MAXLEN);
	worker.bgw_main_arg = ObjectIdGetDatum(database);
	worker.bgw_notify_pid = 0;
	return RegisterDynamicBackgroundWorker(&worker, nullptr);
}

} // namespace cachebust::pg

using namespace cachebust::pg;

extern "C" {

PGDLLEXPORT void cachebust_refresh_worker_main(Datum);

void
cachebust_refresh_worker_main(Datum arg)
{
	Oid database = DatumGetObjectId(arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(database, InvalidOid, 0);
	pgstat_report_appname("cachebust refresh worker");

	if (!refresh_attach(database, MyLatch)) {
		ereport(LOG, (errmsg("cachebust refresh worker exits: every refresh worker slot is taken")));
		proc_exit(0);
	}
	before_shmem_exit(detach_refresh_worker, 0);

	run_worker_body("cachebust refresh worker", [database] {
		RefreshWorker worker(database);
		worker.run();
	});
	proc_exit(0);
}

} // extern "C"
