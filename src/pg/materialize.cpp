/*
 * materialize.cpp — materialized keys: cachebust.materialize(),
 * dematerialize(), and the statement trigger that asks for a refresh when
 * a table they depend on changes.
 *
 * A registration is a row of cachebust._materialized (readable only by the
 * extension's owner; users see the cachebust.materialized view). The
 * functions check everything as the calling role — SELECT on each table,
 * permission to run the query, a single read-only SELECT with one column
 * of an accepted type — and then write the registration and attach the
 * triggers as the bootstrap superuser, so a role needs neither access to
 * the registry nor TRIGGER privilege on the tables. A change to a
 * depends_on table adds a Refresh target per key that depends on it; it
 * travels as any target (ring, journal, window) and the worker hands it
 * to a refresh worker of this database (refresh_worker.hpp).
 */
#include <string>
#include <vector>

#include "pg/capture.hpp"
#include "pg/trigger.hpp"
#include "pg/guard.hpp"
#include "pg/guc.hpp"
#include "pg/materialize.hpp"
#include "pg/queue.hpp"
#include "pg/refresh_requests.hpp"

extern "C" {
#include "access/relation.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type_d.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/plannodes.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/rel.h"
}

namespace cachebust::pg {

static const char *const kTriggerName = "cachebust_materialized";

/* The calling role's key_prefix + key: the Redis name of a materialized key. */
static std::string
full_key_of(const std::string &key, uint32_t &prefix_len)
{
	std::string prefix = guc_key_prefix != nullptr ? guc_key_prefix : "";
	prefix_len = static_cast<uint32_t>(prefix.size());
	if (key.empty())
		throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, "a materialized key must not be empty");
	std::string full = prefix + key;
	if (full.size() > static_cast<size_t>(kMaxMaterializedKeyLength))
		throw UserError(ERRCODE_PROGRAM_LIMIT_EXCEEDED,
						"materialized key \"" + key.substr(0, 64) + "...\" is too long",
						"With cachebust.key_prefix it has " + std::to_string(full.size()) + " bytes; the limit is " +
							std::to_string(kMaxMaterializedKeyLength) + ".");
	return full;
}

static void
refuse_during_recovery_or_unloaded(const char *fname)
{
	queue_require_preloaded(fname);
	pg_call([&] {
		if (RecoveryInProgress())
			ereport(ERROR, (errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION), errmsg("%s cannot run during recovery", fname),
							errhint("Run it on the primary.")));
	});
}

/* The types a materialized value may have (domains over them too). */
static bool
accepted_value_type(Oid type)
{
	Oid base = getBaseType(type);
	return base == TEXTOID || base == VARCHAROID || base == BPCHAROID || base == JSONOID || base == JSONBOID ||
		   base == BYTEAOID;
}

/*
 * As the caller: the query parses (with parameters $1..$nparams of
 * param_types), is one SELECT returning one column of an accepted type,
 * modifies nothing, locks nothing, and the caller may read everything it
 * reads (the refresh runs it as the caller, later). fname names the
 * function in errors.
 */
static void
check_query(const char *fname, const char *query, int nparams = 0, Oid *param_types = nullptr)
{
	const char *problem = nullptr;
	Oid bad_type = InvalidOid;
	pg_call([&] {
		SPI_connect();
		SPIPlanPtr plan = SPI_prepare(query, nparams, param_types);
		if (plan == nullptr)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		List *sources = SPI_plan_get_plan_sources(plan);
		CachedPlanSource *source = list_length(sources) == 1 ? static_cast<CachedPlanSource *>(linitial(sources))
															 : nullptr;
		if (source == nullptr || source->commandTag != CMDTAG_SELECT)
			problem = "the query must be a single SELECT";
		else if (source->resultDesc == nullptr || source->resultDesc->natts != 1)
			problem = "the query must return exactly one column";
		else if (!accepted_value_type(TupleDescAttr(source->resultDesc, 0)->atttypid)) {
			problem = "the query's column must be of type text, varchar, json, jsonb or bytea";
			bad_type = TupleDescAttr(source->resultDesc, 0)->atttypid;
		} else {
			CachedPlan *cplan = SPI_plan_get_cached_plan(plan);
			ListCell *lc;
			foreach (lc, cplan->stmt_list) {
				PlannedStmt *stmt = lfirst_node(PlannedStmt, lc);
				if (stmt->commandType != CMD_SELECT || stmt->hasModifyingCTE)
					problem = "the query must not modify data";
				else if (stmt->rowMarks != NIL)
					problem = "the query must not lock rows (FOR UPDATE/SHARE)";
				else
					(void) ExecCheckRTPerms(stmt->rtable, true);
			}
			ReleaseCachedPlan(cplan, nullptr); /* (an unsaved plan's: no resource owner) */
		}
		SPI_finish();
	});
	if (problem != nullptr) {
		std::string detail;
		if (bad_type != InvalidOid) {
			char *name = nullptr;
			pg_call([&] { name = format_type_be(bad_type); });
			detail = std::string("It returns ") + name + ".";
		}
		throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, std::string(fname) + ": " + problem, detail,
						"The query's one row and one column is the key's value; no row or NULL removes the key.");
	}
}

/* Runs body as the bootstrap superuser (the registry is not the caller's to touch). */
template <typename F>
static void
as_superuser(F &&body)
{
	Oid saved_user;
	int saved_context;
	pg_call([&] {
		GetUserIdAndSecContext(&saved_user, &saved_context);
		SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID, saved_context | SECURITY_LOCAL_USERID_CHANGE);
	});
	/* (On an ERROR the transaction's abort restores the user.) */
	body();
	pg_call([&] { SetUserIdAndSecContext(saved_user, saved_context); });
}

/* The owner of the registration of full_key (InvalidOid: none); locks it. */
static Oid
registration_owner(const char *full_key)
{
	Oid owner = InvalidOid;
	pg_call([&] {
		Oid types[1] = {TEXTOID};
		Datum args[1] = {CStringGetTextDatum(full_key)};
		SPI_execute_with_args("SELECT owner::oid FROM cachebust._materialized WHERE full_key = $1 FOR UPDATE", 1, types,
							  args, nullptr, false, 1);
		if (SPI_processed == 1) {
			bool isnull;
			owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		}
	});
	return owner;
}

static void
check_may_change(const char *full_key, Oid owner, Oid caller)
{
	if (owner == InvalidOid || owner == caller)
		return;
	bool super = false;
	pg_call([&] { super = superuser_arg(caller); });
	if (super)
		return;
	char *name = nullptr;
	pg_call([&] { name = GetUserNameFromId(owner, true); });
	throw UserError(ERRCODE_INSUFFICIENT_PRIVILEGE,
					std::string("materialized key \"") + full_key + "\" belongs to role \"" +
						(name != nullptr ? name : "?") + "\"",
					{}, "Only its owner or a superuser can change or remove it.");
}

/* Attaches the statement trigger to tables a registration depends on, and
 * removes it from those none does any more. */
static void
sync_triggers(const std::vector<Oid> &tables)
{
	for (Oid relid : tables) {
		pg_call([&] {
			char *name = get_rel_name(relid);
			if (name == nullptr)
				return; /* dropped */
			char *qualified = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), name);
			Oid types[1] = {OIDOID};
			Datum args[1] = {ObjectIdGetDatum(relid)};
			SPI_execute_with_args("SELECT 1 FROM cachebust._materialized WHERE $1::regclass = ANY (depends_on) LIMIT 1",
								  1, types, args, nullptr, false, 1);
			StringInfoData sql;
			initStringInfo(&sql);
			/* ALWAYS: a change is a change whoever makes it, a logical-replication
			 * apply worker (session_replication_role = replica) included. */
			if (SPI_processed > 0)
				appendStringInfo(&sql,
								 "CREATE OR REPLACE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s "
								 "FOR EACH STATEMENT EXECUTE FUNCTION cachebust._materialized_changed(); "
								 "ALTER TABLE %s ENABLE ALWAYS TRIGGER %s",
								 kTriggerName, qualified, qualified, kTriggerName);
			else if (OidIsValid(get_trigger_oid(relid, kTriggerName, true)))
				appendStringInfo(&sql, "DROP TRIGGER %s ON %s", kTriggerName, qualified);
			else
				return; /* (already gone: dropped by hand, see cachebust_materialized_dropped) */
			SPI_execute(sql.data, false, 0);
		});
	}
}

/* Runs sql ($1: a registration's full key; one OID column) and appends
 * the tables it returns to out (SPI connected). */
static void
append_tables_of(const char *sql, const std::string &full_key, std::vector<Oid> &out)
{
	pg_call([&] {
		Oid types[1] = {TEXTOID};
		Datum args[1] = {CStringGetTextDatum(full_key.c_str())};
		SPI_execute_with_args(sql, 1, types, args, nullptr, false, 0);
	});
	for (uint64 i = 0; i < SPI_processed; i++) {
		bool isnull;
		out.push_back(DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)));
	}
}

static std::vector<Oid>
table_array(ArrayType *array)
{
	Datum *elems = nullptr;
	bool *nulls = nullptr;
	int n = 0;
	pg_call([&] { deconstruct_array(array, REGCLASSOID, sizeof(Oid), true, TYPALIGN_INT, &elems, &nulls, &n); });
	std::vector<Oid> out;
	for (int i = 0; i < n; i++) {
		if (nulls[i])
			throw UserError(ERRCODE_NULL_VALUE_NOT_ALLOWED, "cachebust.materialize(): depends_on must not contain NULL");
		out.push_back(DatumGetObjectId(elems[i]));
	}
	if (out.empty())
		throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, "cachebust.materialize(): depends_on must name a table",
						{}, "The key is recomputed after every committed change to these tables.");
	return out;
}

static Target
refresh_target(const std::string &full_key, uint32_t prefix_len)
{
	Target t;
	t.kind = TargetKind::Refresh;
	t.key = full_key;
	t.prefix_len = prefix_len;
	t.database = MyDatabaseId;
	return t;
}

/* The removal of a key nothing keeps current any more (its registration is gone). */
static Target
removal_target(std::string full_key, uint32_t prefix_len)
{
	Target t;
	t.key = std::move(full_key);
	t.prefix_len = prefix_len;
	return t;
}

static std::string
text_arg(FunctionCallInfo fcinfo, int n, const char *what)
{
	if (PG_ARGISNULL(n))
		throw UserError(ERRCODE_NULL_VALUE_NOT_ALLOWED, std::string("cachebust.materialize(): ") + what +
															" must not be NULL");
	text *t = PG_GETARG_TEXT_PP(n);
	return std::string(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/* The highest $n the (first) statement of query refers to. */
static int
parameters_used(const char *query)
{
	int used = 0;
	pg_call([&] {
		List *statements = raw_parser(query, RAW_PARSE_DEFAULT);
		if (statements == NIL)
			return;
		Oid *types = nullptr;
		(void) parse_analyze_varparams(linitial_node(RawStmt, statements), query, &types, &used, nullptr);
	});
	return used;
}

/*
 * The search_path of watch()'s caller. watch() runs with SET search_path
 * (its own names resolve in pg_catalog only), which saved the caller's
 * value on the GUC stack; the refresh query is the caller's and resolves
 * in the caller's path, now and at every refresh. Without such an entry
 * (called some other way): the current value.
 */
static const char *
caller_search_path()
{
	const char *path = nullptr;
	pg_call([&] {
		struct config_generic **vars = get_guc_variables();
		for (int i = 0; i < GetNumConfigOptions() && path == nullptr; i++) {
			if (strcmp(vars[i]->name, "search_path") != 0)
				continue;
			GucStack *top = vars[i]->stack;
			if (vars[i]->vartype == PGC_STRING && top != nullptr && top->state == GUC_SAVE &&
				top->prior.val.stringval != nullptr)
				path = pstrdup(top->prior.val.stringval);
			break;
		}
		if (path == nullptr)
			path = GetConfigOption("search_path", false, false);
	});
	return path;
}

/*
 * watch(..., refresh => query): checks, as the caller, that query can
 * compute the keys of key_template on relid — $1..$n bound to the
 * template's columns, in order, typed as the table's columns — and
 * registers it; returns the registration's id (the triggers' refresh=<id>).
 */
static int32
register_row_refresh(Oid relid, const std::string &key_template, const std::string &query)
{
	const char *fname = "cachebust.watch()";
	TupleDesc tupdesc = nullptr;
	const char *table_name = nullptr;
	pg_call([&] {
		Relation rel = relation_open(relid, AccessShareLock);
		tupdesc = CreateTupleDescCopy(RelationGetDescr(rel));
		table_name = pstrdup(RelationGetRelationName(rel));
		relation_close(rel, AccessShareLock);
	});
	std::vector<AttrNumber> attnums;
	/* (refresh=1 only to have the template checked and its columns ordered) */
	TriggerSpec spec = compile_targets({key_template, "refresh=1"}, tupdesc, "watch", table_name, attnums);
	std::vector<Oid> types;
	std::string columns;
	for (size_t slot : spec.refresh_slots) {
		types.push_back(TupleDescAttr(tupdesc, attnums[slot] - 1)->atttypid);
		columns += (columns.empty() ? "" : ", ") + spec.columns[slot];
	}
	/* The query is parsed and checked in the caller's search_path (the one its refreshes use). */
	const char *search_path = caller_search_path();
	int nest_level = 0;
	pg_call([&] {
		nest_level = NewGUCNestLevel();
		(void) set_config_option("search_path", search_path, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
								 false);
	});
	int used = parameters_used(query.c_str());
	if (used != static_cast<int>(types.size()))
		throw UserError(ERRCODE_INVALID_PARAMETER_VALUE,
						std::string(fname) + ": the refresh query uses " + std::to_string(used) +
							" parameters, but the key template \"" + key_template + "\" has " +
							std::to_string(types.size()) + " columns",
						columns.empty() ? std::string("It has none.") : "They are, in order: " + columns + ".",
						"$1..$n are bound to the key template's columns, in the order they first appear.");
	check_query(fname, query.c_str(), static_cast<int>(types.size()), types.data());
	/* (An error above leaves the nest level to the transaction's abort.) */
	pg_call([&] { AtEOXact_GUC(true, nest_level); });

	Oid caller = InvalidOid;
	pg_call([&] { caller = GetUserId(); });
	int32 id = 0;
	pg_call([] { SPI_connect(); });
	as_superuser([&] {
		pg_call([&] {
			Datum *elems = static_cast<Datum *>(palloc(sizeof(Datum) * Max(types.size(), 1)));
			for (size_t i = 0; i < types.size(); i++)
				elems[i] = ObjectIdGetDatum(types[i]);
			ArrayType *param_types = construct_array(elems, static_cast<int>(types.size()), REGTYPEOID, sizeof(Oid),
													 true, TYPALIGN_INT);
			Oid argtypes[6] = {OIDOID, TEXTOID, REGTYPEARRAYOID, OIDOID, TEXTOID, TEXTOID};
			Datum args[6] = {ObjectIdGetDatum(relid), CStringGetTextDatum(query.c_str()), PointerGetDatum(param_types),
							 ObjectIdGetDatum(caller), CStringGetTextDatum(search_path != nullptr ? search_path : ""),
							 CStringGetTextDatum(key_template.c_str())};
			SPI_execute_with_args("INSERT INTO cachebust._row_refresh (tbl, query, param_types, owner, search_path, "
								  "key_template) VALUES ($1::regclass, $2, $3, $4::regrole, $5, $6) RETURNING id",
								  6, argtypes, args, nullptr, false, 1);
			bool isnull;
			id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		});
	});
	pg_call([] { SPI_finish(); });
	return id;
}

/*
 * Whether registration id belongs to the table relid (or one it is a
 * partition of) and to a key template among the trigger's arguments. A
 * role that may attach cachebust.invalidate() could otherwise name another
 * owner's registration and have its query run — as that owner — with
 * parameters of its choosing, into keys it can read.
 */
bool
row_refresh_belongs_to(uint32_t id, Oid relid, const std::vector<std::string> &trigger_args)
{
	bool belongs = false;
	pg_call([] { SPI_connect(); });
	as_superuser([&] {
		pg_call([&] {
			Datum *elems = static_cast<Datum *>(palloc(sizeof(Datum) * Max(trigger_args.size(), 1)));
			for (size_t i = 0; i < trigger_args.size(); i++)
				elems[i] = CStringGetTextDatum(trigger_args[i].c_str());
			ArrayType *args_array = construct_array(elems, static_cast<int>(trigger_args.size()), TEXTOID, -1,
													false, TYPALIGN_INT);
			Oid types[3] = {INT4OID, OIDOID, TEXTARRAYOID};
			Datum args[3] = {Int32GetDatum(static_cast<int32>(id)), ObjectIdGetDatum(relid), PointerGetDatum(args_array)};
			SPI_execute_with_args("SELECT 1 FROM cachebust._row_refresh r WHERE r.id = $1 "
								  "AND (r.tbl = $2::regclass "
								  "OR r.tbl IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors($2::regclass) a)) "
								  "AND (r.key_template = ANY ($3) OR 'key=' || r.key_template = ANY ($3))",
								  3, types, args, nullptr, true, 1);
			belongs = SPI_processed == 1;
		});
	});
	pg_call([] { SPI_finish(); });
	return belongs;
}

} // namespace cachebust::pg

using namespace cachebust;
using namespace cachebust::pg;

extern "C" {

PG_FUNCTION_INFO_V1(cachebust_materialize);
PG_FUNCTION_INFO_V1(cachebust_dematerialize);
PG_FUNCTION_INFO_V1(cachebust_materialized_changed);
PG_FUNCTION_INFO_V1(cachebust_materialized_dropped);
PG_FUNCTION_INFO_V1(cachebust_row_refresh_register);

PGDLLEXPORT Datum
cachebust_materialize(PG_FUNCTION_ARGS)
{
	refuse_during_recovery_or_unloaded("cachebust.materialize()");
	return guarded([&]() -> Datum {
		std::string key = text_arg(fcinfo, 0, "key");
		std::string query = text_arg(fcinfo, 1, "query");
		if (PG_ARGISNULL(2))
			throw UserError(ERRCODE_NULL_VALUE_NOT_ALLOWED, "cachebust.materialize(): depends_on must not be NULL");
		std::vector<Oid> tables = table_array(PG_GETARG_ARRAYTYPE_P(2));
		int ttl_ms = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3);
		if (ttl_ms < 0)
			throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, "cachebust.materialize(): ttl_ms must not be negative");
		uint32_t prefix_len = 0;
		std::string full_key = full_key_of(key, prefix_len);
		Oid caller = InvalidOid;
		pg_call([&] { caller = GetUserId(); });

		for (Oid relid : tables) {
			char kind = 0;
			AclResult acl = ACLCHECK_OK;
			pg_call([&] {
				kind = get_rel_relkind(relid);
				acl = pg_class_aclcheck(relid, caller, ACL_SELECT);
			});
			if (kind != RELKIND_RELATION && kind != RELKIND_PARTITIONED_TABLE)
				throw UserError(ERRCODE_WRONG_OBJECT_TYPE,
								"cachebust.materialize(): depends_on must list tables",
								"A view or other relation has no triggers to say when it changed.",
								"List the tables the query reads.");
			if (acl != ACLCHECK_OK)
				pg_call([&] { aclcheck_error(acl, OBJECT_TABLE, get_rel_name(relid)); });
		}
		check_query("cachebust.materialize()", query.c_str());

		const char *search_path = nullptr;
		pg_call([&] { search_path = GetConfigOption("search_path", false, false); });
		std::vector<Oid> touched = tables;
		pg_call([] { SPI_connect(); });
		as_superuser([&] {
			Oid owner = registration_owner(full_key.c_str());
			check_may_change(full_key.c_str(), owner, caller);
			if (owner != InvalidOid) {
				/* Tables the old registration depended on may lose their trigger. */
				append_tables_of("SELECT unnest(depends_on)::oid FROM cachebust._materialized WHERE full_key = $1",
								 full_key, touched);
			}
			pg_call([&] {
				Datum *elems = static_cast<Datum *>(palloc(sizeof(Datum) * tables.size()));
				for (size_t i = 0; i < tables.size(); i++)
					elems[i] = ObjectIdGetDatum(tables[i]);
				ArrayType *deps = construct_array(elems, static_cast<int>(tables.size()), REGCLASSOID, sizeof(Oid), true,
												  TYPALIGN_INT);
				Oid types[8] = {TEXTOID, TEXTOID, INT4OID, TEXTOID, REGCLASSARRAYOID, INT4OID, OIDOID, TEXTOID};
				Datum args[8] = {CStringGetTextDatum(full_key.c_str()),
								 CStringGetTextDatum(key.c_str()),
								 Int32GetDatum(static_cast<int32>(prefix_len)),
								 CStringGetTextDatum(query.c_str()),
								 PointerGetDatum(deps),
								 Int32GetDatum(ttl_ms),
								 ObjectIdGetDatum(caller),
								 CStringGetTextDatum(search_path != nullptr ? search_path : "")};
				SPI_execute_with_args(
					"INSERT INTO cachebust._materialized AS m (full_key, key, prefix_len, query, depends_on, ttl_ms, "
					"owner, search_path) VALUES ($1, $2, $3, $4, $5, $6, $7::regrole, $8) "
					"ON CONFLICT (full_key) DO UPDATE SET key = $2, prefix_len = $3, query = $4, depends_on = $5, "
					"ttl_ms = $6, owner = $7::regrole, search_path = $8, registered = now(), last_error = NULL",
					8, types, args, nullptr, false, 0);
			});
			sync_triggers(touched);
		});
		pg_call([] { SPI_finish(); });
		refresh_note_database(MyDatabaseId);
		/* Computed once committed, like after any change. */
		capture_add(refresh_target(full_key, prefix_len));
		PG_RETURN_VOID();
	});
}

PGDLLEXPORT Datum
cachebust_dematerialize(PG_FUNCTION_ARGS)
{
	refuse_during_recovery_or_unloaded("cachebust.dematerialize()");
	return guarded([&]() -> Datum {
		std::string key = text_arg(fcinfo, 0, "key");
		uint32_t prefix_len = 0;
		std::string full_key = full_key_of(key, prefix_len);
		Oid caller = InvalidOid;
		pg_call([&] { caller = GetUserId(); });
		std::vector<Oid> touched;
		pg_call([] { SPI_connect(); });
		as_superuser([&] {
			Oid owner = registration_owner(full_key.c_str());
			if (owner == InvalidOid)
				throw UserError(ERRCODE_UNDEFINED_OBJECT, "materialized key \"" + full_key + "\" does not exist",
								{}, "See cachebust.materialized (keys include cachebust.key_prefix).");
			check_may_change(full_key.c_str(), owner, caller);
			append_tables_of("WITH gone AS (DELETE FROM cachebust._materialized WHERE full_key = $1 "
							 "RETURNING depends_on) SELECT unnest(depends_on)::oid FROM gone",
							 full_key, touched);
			sync_triggers(touched);
		});
		pg_call([] { SPI_finish(); });
		/* Nobody refreshes it any more: its last value must not linger. */
		capture_add(removal_target(full_key, prefix_len));
		PG_RETURN_VOID();
	});
}

/* AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ... FOR EACH STATEMENT on a depends_on table. */
PGDLLEXPORT Datum
cachebust_materialized_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
						errmsg("cachebust._materialized_changed() must be called as a trigger")));
	queue_require_preloaded("cachebust._materialized_changed()");
	if (!guc_enabled)
		return PointerGetDatum(nullptr);
	Oid relid = RelationGetRelid(reinterpret_cast<TriggerData *>(fcinfo->context)->tg_relation);
	return guarded([&]() -> Datum {
		std::vector<Target> refreshes;
		pg_call([] { SPI_connect(); });
		as_superuser([&] {
			pg_call([&] {
				Oid types[1] = {OIDOID};
				Datum args[1] = {ObjectIdGetDatum(relid)};
				SPI_execute_with_args("SELECT full_key, prefix_len FROM cachebust._materialized "
									  "WHERE $1::regclass = ANY (depends_on)",
									  1, types, args, nullptr, true, 0);
			});
			for (uint64 i = 0; i < SPI_processed; i++) {
				char *key = nullptr;
				bool isnull;
				int32 prefix_len = 0;
				pg_call([&] {
					key = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
					prefix_len = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
				});
				refreshes.push_back(refresh_target(key, static_cast<uint32_t>(prefix_len)));
			}
		});
		pg_call([] { SPI_finish(); });
		for (Target &t : refreshes)
			capture_add(std::move(t));
		return PointerGetDatum(nullptr);
	});
}

/*
 * ON sql_drop: a registration that depends on a dropped table, or on a table
 * that lost its cachebust_materialized trigger, can no longer be kept
 * current. It goes, and its key is removed at commit, with a WARNING
 * (failing closed, as a failed refresh does); registering it again with
 * materialize() attaches the trigger again.
 */
PGDLLEXPORT Datum
cachebust_materialized_dropped(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
						errmsg("cachebust._materialized_dropped() must be called as an event trigger")));
	return guarded([&]() -> Datum {
		struct Gone {
			std::string full_key;
			uint32_t prefix_len;
			std::string tables;
		};
		std::vector<Gone> gone;
		std::vector<Oid> touched;
		pg_call([] { SPI_connect(); });
		as_superuser([&] {
			pg_call([&] {
				SPI_execute("WITH dropped AS ("
							"  SELECT objid AS rel, 'table ' || object_identity AS name"
							"  FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table'"
							"  UNION ALL"
							"  SELECT to_regclass(quote_ident(address_names[1]) || '.' || quote_ident(address_names[2])),"
							"         'trigger ' || object_identity FROM pg_event_trigger_dropped_objects()"
							"  WHERE object_type = 'trigger' AND address_names[3] = 'cachebust_materialized'),"
							" gone AS (DELETE FROM cachebust._materialized m"
							"  WHERE m.depends_on::oid[] && ARRAY(SELECT rel FROM dropped WHERE rel IS NOT NULL)"
							"  RETURNING full_key, prefix_len, depends_on)"
							" SELECT g.full_key, g.prefix_len,"
							"  (SELECT string_agg(d.name, ' and ') FROM dropped d WHERE d.rel = ANY (g.depends_on::oid[])),"
							"  g.depends_on::oid[]"
							" FROM gone g",
							false, 0);
			});
			for (uint64 i = 0; i < SPI_processed; i++) {
				Gone g;
				pg_call([&] {
					HeapTuple tuple = SPI_tuptable->vals[i];
					TupleDesc desc = SPI_tuptable->tupdesc;
					bool isnull;
					g.full_key = SPI_getvalue(tuple, desc, 1);
					g.prefix_len = static_cast<uint32_t>(DatumGetInt32(SPI_getbinval(tuple, desc, 2, &isnull)));
					char *tables = SPI_getvalue(tuple, desc, 3);
					g.tables = tables != nullptr ? tables : "";
					Datum *elems;
					bool *nulls;
					int n;
					deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tuple, desc, 4, &isnull)), OIDOID, sizeof(Oid),
									  true, TYPALIGN_INT, &elems, &nulls, &n);
					for (int j = 0; j < n; j++)
						touched.push_back(DatumGetObjectId(elems[j]));
				});
				gone.push_back(std::move(g));
			}
			/* Tables the gone registrations shared with none left: their trigger goes too. */
			sync_triggers(touched);
		});
		pg_call([] { SPI_finish(); });
		if (gone.empty())
			return PointerGetDatum(nullptr);
		queue_require_preloaded("cachebust's sql_drop event trigger");
		for (Gone &g : gone) {
			pg_call([&] {
				ereport(WARNING,
						(errmsg("materialized key \"%s\" is removed: %s was dropped",
								g.full_key.c_str(), g.tables.c_str()),
						 errhint("Nothing would keep it current. Register it again with cachebust.materialize().")));
			});
			/* (Even with cachebust.enabled off, as dematerialize(): the WARNING says it is removed.) */
			capture_add(removal_target(std::move(g.full_key), g.prefix_len));
		}
		return PointerGetDatum(nullptr);
	});
}

/* _row_refresh_register(tbl regclass, key_template text, query text) RETURNS integer, for watch(). */
PGDLLEXPORT Datum
cachebust_row_refresh_register(PG_FUNCTION_ARGS)
{
	refuse_during_recovery_or_unloaded("cachebust.watch()");
	return guarded([&]() -> Datum {
		Oid relid = PG_GETARG_OID(0);
		std::string key_template = text_arg(fcinfo, 1, "the key template");
		std::string query = text_arg(fcinfo, 2, "refresh");
		PG_RETURN_INT32(register_row_refresh(relid, key_template, query));
	});
}

} // extern "C"
