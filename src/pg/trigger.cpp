/*
 * trigger.cpp — cachebust.invalidate(), the row, statement and TRUNCATE
 * trigger.
 *
 * As a row trigger it renders its targets from the row that fired it. As a
 * statement trigger with transition tables (what watch() creates where
 * PostgreSQL allows them) it renders them from every row of the statement
 * in one call: no after-trigger event, tuple re-fetch or function call per
 * row. Both add the same targets to the transaction's pending set. With
 * the option refresh=<id> the key template's targets are row refreshes
 * (core/row_refresh.hpp); a TRUNCATE still removes them by pattern.
 *
 * A trigger's arguments are parsed and its columns resolved once, then kept
 * in a backend-local cache keyed by trigger OID, together with each
 * column's output function. A relcache invalidation of the table (ALTER
 * TABLE, CREATE OR REPLACE TRIGGER, DROP ...) marks its entries stale and
 * they are rebuilt at the next firing, so a row costs no parsing and no
 * catalog lookup.
 */
#include "pg/trigger.hpp"

#include <array>
#include <optional>
#include <unordered_map>

#include "core/glob.hpp"
#include "core/row_refresh.hpp"
#include "pg/capture.hpp"
#include "pg/guard.hpp"
#include "pg/guc.hpp"
#include "pg/queue.hpp"
#include "pg/materialize.hpp"
#include "pg/refresh_requests.hpp"

extern "C" {
#include "catalog/pg_type_d.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"
}

namespace cachebust::pg {

namespace {

/*
 * How a column's text form is made. The common key columns skip the
 * output-function call: integers are formatted into a buffer of the slot's
 * own, and text is its stored bytes (what textout would copy).
 */
enum class TextForm : uint8_t { OutputFunction, Int2, Int4, Int8, Text };

struct CompiledTrigger {
	bool valid = false;
	Oid relid = InvalidOid;
	TriggerSpec spec;
	std::vector<AttrNumber> attnums;	/* by spec column slot */
	std::vector<TextForm> text_forms;	/* by spec column slot */
	std::vector<FmgrInfo> output_fns;	/* by spec column slot */
	std::vector<int16> typlens;			/* by spec column slot, for datumIsEqual */
	std::vector<bool> typbyvals;		/* by spec column slot */
	std::vector<std::array<char, 24>> digits; /* by spec column slot, for integers */
};

std::unordered_map<Oid, CompiledTrigger> compiled_triggers;

/* Per-row scratch, reused to avoid an allocation per row. */
RowValues row_values;

} // namespace

/* Relcache callback: only flags entries, never frees one that may be in use. */
static void
invalidate_compiled_triggers(Datum, Oid relid)
{
	for (auto &entry : compiled_triggers)
		if (relid == InvalidOid || entry.second.relid == relid)
			entry.second.valid = false;
}

void
trigger_init()
{
	CacheRegisterRelcacheCallback(invalidate_compiled_triggers, 0);
}

TriggerSpec
compile_targets(const std::vector<std::string> &args, TupleDesc tupdesc, const char *trigger_name,
				const char *table_name, std::vector<AttrNumber> &attnums)
{
	TriggerSpec spec;
	try {
		spec = TriggerSpec::parse(args);
	} catch (const TargetError &e) {
		throw UserError(ERRCODE_INVALID_PARAMETER_VALUE,
						std::string("cachebust trigger \"") + trigger_name + "\" on table \"" +
							table_name + "\": " + e.what());
	}

	attnums.assign(spec.columns.size(), InvalidAttrNumber);
	for (size_t slot = 0; slot < spec.columns.size(); slot++) {
		const std::string &name = spec.columns[slot];
		for (int i = 0; i < tupdesc->natts; i++) {
			Form_pg_attribute att = TupleDescAttr(tupdesc, i);
			if (!att->attisdropped && name == NameStr(att->attname)) {
				attnums[slot] = att->attnum;
				break;
			}
		}
		if (attnums[slot] == InvalidAttrNumber) {
			/* Name the first template that uses the column, and the closest column there is. */
			std::string tpl;
			for (const TargetTemplate &t : spec.targets)
				for (const auto &seg : t.segments)
					if (seg.is_column && seg.slot == slot && tpl.empty())
						tpl = t.source;
			std::vector<std::string> columns;
			for (int i = 0; i < tupdesc->natts; i++)
				if (!TupleDescAttr(tupdesc, i)->attisdropped)
					columns.emplace_back(NameStr(TupleDescAttr(tupdesc, i)->attname));
			std::string closest = closest_name(name, columns);
			throw UserError(ERRCODE_UNDEFINED_COLUMN,
							std::string("cachebust trigger \"") + trigger_name + "\" on table \"" +
								table_name + "\": column \"" + name + "\" in target \"" + tpl +
								"\" does not exist",
							std::string(),
							closest.empty() ? std::string()
											: "Perhaps you meant to reference the column \"" + std::string(table_name) +
												  "." + closest + "\".");
		}
	}
	return spec;
}

void
check_renderable(const TriggerSpec &spec, const KeyPrefixes &prefixes, const char *trigger_name,
				 const char *table_name)
{
	std::string where = std::string("cachebust trigger \"") + trigger_name + "\" on table \"" + table_name + "\": ";
	for (const TargetTemplate &tpl : spec.targets) {
		size_t fixed = prefixes.key_prefix.size() + (tpl.kind == TargetKind::Tag ? prefixes.tag_prefix.size() : 0);
		for (const TargetTemplate::Segment &seg : tpl.segments)
			if (!seg.is_column)
				fixed += seg.literal.size();
		if (fixed > kMaxKeyLength)
			throw UserError(ERRCODE_PROGRAM_LIMIT_EXCEEDED,
							where + "target \"" + tpl.source.substr(0, 64) + (tpl.source.size() > 64 ? "..." : "") +
								"\" can never be rendered: its fixed part with the key prefix is " +
								std::to_string(fixed) + " bytes, more than the limit of " +
								std::to_string(kMaxKeyLength));
		Target truncate;
		try {
			truncate = tpl.render_truncate(prefixes, false);
		} catch (const TargetError &e) {
			throw UserError(ERRCODE_PROGRAM_LIMIT_EXCEEDED,
							where + "target \"" + tpl.source.substr(0, 64) + (tpl.source.size() > 64 ? "..." : "") +
								"\" cannot be invalidated by TRUNCATE: " + e.what());
		}
		if (truncate.glob && !glob_has_literal_start(truncate.key))
			throw UserError(ERRCODE_INVALID_PARAMETER_VALUE,
							where + "target \"" + tpl.source + "\" has no literal start (as the pattern \"" + truncate.key +
								"\"), so with an empty cachebust.key_prefix it could invalidate the keys of every application "
								"in the Redis database",
							"A TRUNCATE turns each {column} into *; a pattern keeps its own wildcards.",
							"Set cachebust.key_prefix (per database or role), or start the template with a fixed part, e.g. 'user:{id}'.");
	}
}

/* Builds (or rebuilds) the cache entry for the firing trigger. */
static CompiledTrigger &
compiled_trigger_for(TriggerData *trigdata)
{
	Trigger *trigger = trigdata->tg_trigger;
	Relation rel = trigdata->tg_relation;
	CompiledTrigger &ct = compiled_triggers[trigger->tgoid];
	if (ct.valid)
		return ct;

	std::vector<std::string> args(trigger->tgargs, trigger->tgargs + trigger->tgnargs);
	TupleDesc tupdesc = RelationGetDescr(rel);
	ct.spec = compile_targets(args, tupdesc, trigger->tgname, RelationGetRelationName(rel), ct.attnums);
	ct.relid = RelationGetRelid(rel);
	if (ct.spec.refresh_id != 0 && !row_refresh_belongs_to(ct.spec.refresh_id, ct.relid, args))
		throw UserError(ERRCODE_INSUFFICIENT_PRIVILEGE,
						std::string("trigger \"") + trigger->tgname + "\" on table \"" + RelationGetRelationName(rel) +
							"\": refresh=" + std::to_string(ct.spec.refresh_id) +
							" is not a per-row refresh registered for this table and key template",
						{}, "Attach per-row refreshes with cachebust.watch(..., refresh => ...).");
	ct.output_fns.assign(ct.attnums.size(), FmgrInfo{});
	ct.text_forms.assign(ct.attnums.size(), TextForm::OutputFunction);
	ct.digits.resize(ct.attnums.size());
	ct.typlens.assign(ct.attnums.size(), 0);
	ct.typbyvals.assign(ct.attnums.size(), false);
	for (size_t slot = 0; slot < ct.attnums.size(); slot++) {
		Form_pg_attribute att = TupleDescAttr(tupdesc, ct.attnums[slot] - 1);
		Oid typid = att->atttypid;
		ct.typlens[slot] = att->attlen;
		ct.typbyvals[slot] = att->attbyval;
		switch (typid) {
		case INT2OID: ct.text_forms[slot] = TextForm::Int2; break;
		case INT4OID: ct.text_forms[slot] = TextForm::Int4; break;
		case INT8OID: ct.text_forms[slot] = TextForm::Int8; break;
		case TEXTOID:
		case VARCHAROID: ct.text_forms[slot] = TextForm::Text; break;
		default: break;
		}
		FmgrInfo *fn = &ct.output_fns[slot];
		pg_call([&] {
			Oid output_fn;
			bool is_varlena;
			getTypeOutputInfo(typid, &output_fn, &is_varlena);
			fmgr_info_cxt(output_fn, fn, TopMemoryContext);
		});
	}
	ct.valid = true;
	return ct;
}

/* Renders every target of the trigger for one row version. */
static void
capture_row(CompiledTrigger &ct, TupleTableSlot *slot, const KeyPrefixes &prefixes)
{
	size_t ncols = ct.attnums.size();
	row_values.assign(ncols, std::nullopt);

	/* Only PostgreSQL calls in here, and no C++ object is created. */
	pg_call([&] {
		for (size_t i = 0; i < ncols; i++) {
			bool isnull;
			Datum value = slot_getattr(slot, ct.attnums[i], &isnull);
			if (isnull)
				continue;
			char *digits = ct.digits[i].data();
			switch (ct.text_forms[i]) {
			case TextForm::Int2:
				row_values[i] = std::string_view(digits, pg_itoa(DatumGetInt16(value), digits));
				break;
			case TextForm::Int4:
				row_values[i] = std::string_view(digits, pg_ltoa(DatumGetInt32(value), digits));
				break;
			case TextForm::Int8:
				row_values[i] = std::string_view(digits, pg_lltoa(DatumGetInt64(value), digits));
				break;
			case TextForm::Text: {
				/* Detoasted (a copy only if compressed or out of line), not copied again. */
				struct varlena *text = pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(DatumGetPointer(value)));
				row_values[i] = std::string_view(VARDATA_ANY(text), VARSIZE_ANY_EXHDR(text));
				break;
			}
			case TextForm::OutputFunction:
				row_values[i] = std::string_view(OutputFunctionCall(&ct.output_fns[i], value));
				break;
			}
		}
	});

	for (const TargetTemplate &tpl : ct.spec.targets) {
		std::optional<Target> target = tpl.render(prefixes, row_values, ct.spec.immediate);
		if (!target)
			continue;
		/* watch(..., refresh => ...): the key is recomputed from this row's key columns. */
		if (ct.spec.refreshes(tpl))
			make_row_refresh(*target, ct.spec.refresh_id, MyDatabaseId, ct.spec.refresh_slots, row_values,
							 kMaxMaterializedKeyLength);
		capture_add(std::move(*target));
	}
}

/*
 * Whether two versions of a row hold the same bytes in every column the
 * templates use, so they render the same targets. Most UPDATEs leave the
 * key columns alone; then the new version is not rendered again. Bytes that
 * differ for an equal value (one version compressed, say) only cost a
 * second rendering, which the pending set merges.
 */
static bool
same_template_values(const CompiledTrigger &ct, TupleTableSlot *a, TupleTableSlot *b)
{
	bool same = true;
	pg_call([&] {
		for (size_t i = 0; i < ct.attnums.size() && same; i++) {
			bool a_null, b_null;
			Datum a_value = slot_getattr(a, ct.attnums[i], &a_null);
			Datum b_value = slot_getattr(b, ct.attnums[i], &b_null);
			same = a_null == b_null && (a_null || datumIsEqual(a_value, b_value, ct.typbyvals[i], ct.typlens[i]));
		}
	});
	return same;
}

/*
 * Whether an UPDATE left the row as it was: every column holds the same
 * bytes in both versions. Such a row invalidates nothing, not even targets
 * without columns (README, "Templates"): whatever a cache built from it is
 * still right. Raw datums are compared first, which settles almost every
 * row; a variable-length value whose stored form differs (written again, so
 * compressed or moved out of line anew) is compared by its content after
 * that, and only if no fixed-length column already differs.
 */
static bool
row_unchanged(TupleTableSlot *old_row, TupleTableSlot *new_row)
{
	bool same = true;
	pg_call([&] {
		TupleDesc desc = old_row->tts_tupleDescriptor;
		slot_getallattrs(old_row);
		slot_getallattrs(new_row);
		bool content_check_due = false;
		for (int i = 0; i < desc->natts && same; i++) {
			Form_pg_attribute att = TupleDescAttr(desc, i);
			if (att->attisdropped)
				continue;
			bool old_null = old_row->tts_isnull[i], new_null = new_row->tts_isnull[i];
			if (old_null || new_null) {
				same = old_null == new_null;
				continue;
			}
			if (datumIsEqual(old_row->tts_values[i], new_row->tts_values[i], att->attbyval, att->attlen))
				continue;
			if (att->attlen == -1)
				content_check_due = true;
			else
				same = false;
		}
		for (int i = 0; i < desc->natts && same && content_check_due; i++) {
			Form_pg_attribute att = TupleDescAttr(desc, i);
			if (att->attisdropped || att->attlen != -1 || old_row->tts_isnull[i])
				continue;
			Datum old_value = old_row->tts_values[i], new_value = new_row->tts_values[i];
			/* (An unchanged out-of-line value keeps its pointer: never fetched.) */
			same = datumIsEqual(old_value, new_value, false, -1) || datum_image_eq(old_value, new_value, false, -1);
		}
	});
	return same;
}

/*
 * An UPDATE's old and new row versions: nothing when the row is unchanged,
 * else both render, the new one only where a template column differs.
 */
static void
capture_update(CompiledTrigger &ct, TupleTableSlot *old_row, TupleTableSlot *new_row, const KeyPrefixes &prefixes)
{
	if (row_unchanged(old_row, new_row))
		return;
	capture_row(ct, old_row, prefixes);
	if (!same_template_values(ct, old_row, new_row))
		capture_row(ct, new_row, prefixes);
}

/* Restores the memory context however the scope is left. */
class MemoryContextScope
{
  public:
	explicit MemoryContextScope(MemoryContext cxt) : previous_(MemoryContextSwitchTo(cxt)) {}
	~MemoryContextScope() { MemoryContextSwitchTo(previous_); }
	MemoryContextScope(const MemoryContextScope &) = delete;
	MemoryContextScope &operator=(const MemoryContextScope &) = delete;

  private:
	MemoryContext previous_;
};

/*
 * Reads a transition table from its start with a read pointer of its own
 * (other triggers of the statement read the same table) into a slot of its
 * own.
 */
struct TransitionReader {
	Tuplestorestate *table = nullptr;
	TupleTableSlot *slot = nullptr;

	void open(Tuplestorestate *t, TupleDesc tupdesc)
	{
		table = t;
		pg_call([&] {
			slot = MakeSingleTupleTableSlot(tupdesc, &TTSOpsMinimalTuple);
			tuplestore_select_read_pointer(table, tuplestore_alloc_read_pointer(table, EXEC_FLAG_REWIND));
			tuplestore_rescan(table);
		});
	}
	bool next()
	{
		bool got = false;
		pg_call([&] { got = tuplestore_gettupleslot(table, true, false, slot); });
		return got;
	}
	void close()
	{
		pg_call([&] { ExecDropSingleTupleTableSlot(slot); });
		slot = nullptr;
	}
};

/* Emptied before every row (pair) of a transition table; made once per backend. */
static MemoryContext
transition_row_context()
{
	static MemoryContext row_cxt = nullptr;
	if (row_cxt == nullptr)
		pg_call([&] {
			row_cxt = AllocSetContextCreate(TopMemoryContext, "cachebust transition rows", ALLOCSET_SMALL_SIZES);
		});
	return row_cxt;
}

/* Before each row: a chance to cancel, and the previous row's memory freed. */
static void
start_transition_row(MemoryContext row_cxt)
{
	pg_call([&] {
		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(row_cxt);
	});
}

/*
 * Renders every row of a transition table. Each row's text values live in a
 * context reset per row, so a million-row statement uses the memory of one.
 */
static void
capture_transition_table(CompiledTrigger &ct, Tuplestorestate *table, TupleDesc tupdesc,
						 const KeyPrefixes &prefixes)
{
	if (table == nullptr)
		return;
	MemoryContext row_cxt = transition_row_context();
	TransitionReader rows;
	rows.open(table, tupdesc);
	for (;;) {
		start_transition_row(row_cxt);
		if (!rows.next())
			break;
		MemoryContextScope in_row(row_cxt);
		capture_row(ct, rows.slot, prefixes);
	}
	rows.close();
	pg_call([&] { MemoryContextReset(row_cxt); });
}

/*
 * An UPDATE statement's transition tables. PostgreSQL appends each updated
 * row's old and new versions to them together, so on a plain table (the
 * only kind statement capture is used for) the n-th rows of both are one
 * row's versions, read in step so that an unchanged key renders once. If
 * the counts differ (never expected), each table renders on its own, which
 * is what the row trigger would have done anyway.
 */
static void
capture_update_tables(CompiledTrigger &ct, Tuplestorestate *old_table, Tuplestorestate *new_table,
					  TupleDesc tupdesc, const KeyPrefixes &prefixes)
{
	int64 old_count = 0, new_count = 0;
	if (old_table != nullptr && new_table != nullptr)
		pg_call([&] {
			old_count = tuplestore_tuple_count(old_table);
			new_count = tuplestore_tuple_count(new_table);
		});
	if (old_table == nullptr || new_table == nullptr || old_count != new_count) {
		capture_transition_table(ct, old_table, tupdesc, prefixes);
		capture_transition_table(ct, new_table, tupdesc, prefixes);
		return;
	}
	MemoryContext row_cxt = transition_row_context();
	TransitionReader old_rows, new_rows;
	old_rows.open(old_table, tupdesc);
	new_rows.open(new_table, tupdesc);
	for (;;) {
		start_transition_row(row_cxt);
		if (!old_rows.next() || !new_rows.next())
			break;
		MemoryContextScope in_row(row_cxt);
		capture_update(ct, old_rows.slot, new_rows.slot, prefixes);
	}
	old_rows.close();
	new_rows.close();
	pg_call([&] { MemoryContextReset(row_cxt); });
}

static void
capture_truncate(CompiledTrigger &ct, const KeyPrefixes &prefixes)
{
	for (const TargetTemplate &tpl : ct.spec.targets)
		capture_add(tpl.render_truncate(prefixes, ct.spec.immediate));
}

/* Attaches trigger context to a user error raised while rendering. */
static void
render_or_explain(TriggerData *trigdata, CompiledTrigger &ct, const KeyPrefixes &prefixes)
{
	TriggerEvent event = trigdata->tg_event;
	try {
		if (TRIGGER_FIRED_BY_TRUNCATE(event)) {
			capture_truncate(ct, prefixes);
		} else if (!TRIGGER_FIRED_FOR_ROW(event)) {
			/* INSERT has only new rows, DELETE only old ones, UPDATE both. */
			TupleDesc tupdesc = RelationGetDescr(trigdata->tg_relation);
			if (TRIGGER_FIRED_BY_UPDATE(event)) {
				capture_update_tables(ct, trigdata->tg_oldtable, trigdata->tg_newtable, tupdesc, prefixes);
			} else {
				capture_transition_table(ct, trigdata->tg_oldtable, tupdesc, prefixes);
				capture_transition_table(ct, trigdata->tg_newtable, tupdesc, prefixes);
			}
		} else if (TRIGGER_FIRED_BY_INSERT(event)) {
			capture_row(ct, trigdata->tg_trigslot, prefixes);
		} else if (TRIGGER_FIRED_BY_DELETE(event)) {
			capture_row(ct, trigdata->tg_trigslot, prefixes);
		} else {
			/* UPDATE: the old key and the new key both go stale. */
			capture_update(ct, trigdata->tg_trigslot, trigdata->tg_newslot, prefixes);
		}
	} catch (const TargetError &e) {
		throw UserError(ERRCODE_PROGRAM_LIMIT_EXCEEDED,
						std::string("cachebust trigger \"") + trigdata->tg_trigger->tgname +
							"\" on table \"" + RelationGetRelationName(trigdata->tg_relation) +
							"\": " + e.what());
	}
}

/*
 * Where the function may be attached: AFTER ... FOR EACH ROW; AFTER TRUNCATE
 * ... FOR EACH STATEMENT; or AFTER INSERT, UPDATE or DELETE ... FOR EACH
 * STATEMENT with the transition tables that event has (NEW TABLE, OLD and
 * NEW TABLE, OLD TABLE), which hold the statement's rows.
 */
static void
check_trigger_context(FunctionCallInfo fcinfo)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cachebust.invalidate() must be called as a trigger")));

	TriggerData *trigdata = reinterpret_cast<TriggerData *>(fcinfo->context);
	TriggerEvent event = trigdata->tg_event;
	Trigger *trigger = trigdata->tg_trigger;
	bool ok = TRIGGER_FIRED_AFTER(event);
	if (ok && !TRIGGER_FIRED_FOR_ROW(event) && !TRIGGER_FIRED_BY_TRUNCATE(event)) {
		bool old_needed = TRIGGER_FIRED_BY_UPDATE(event) || TRIGGER_FIRED_BY_DELETE(event);
		bool new_needed = TRIGGER_FIRED_BY_UPDATE(event) || TRIGGER_FIRED_BY_INSERT(event);
		ok = (!old_needed || trigger->tgoldtable != nullptr) && (!new_needed || trigger->tgnewtable != nullptr);
	} else if (ok) {
		ok = TRIGGER_FIRED_FOR_ROW(event) != TRIGGER_FIRED_BY_TRUNCATE(event);
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cachebust trigger \"%s\" on table \"%s\" must be AFTER ... FOR EACH ROW, AFTER TRUNCATE ... FOR EACH STATEMENT, "
						"or AFTER INSERT, UPDATE or DELETE ... FOR EACH STATEMENT with the event's transition tables",
						trigger->tgname, RelationGetRelationName(trigdata->tg_relation)),
				 errhint("Use cachebust.watch() to create the triggers.")));
}

extern "C" {

PG_FUNCTION_INFO_V1(cachebust_invalidate);

PGDLLEXPORT Datum
cachebust_invalidate(PG_FUNCTION_ARGS)
{
	check_trigger_context(fcinfo);
	queue_require_preloaded("cachebust.invalidate()");
	if (!guc_enabled)
		return PointerGetDatum(nullptr);

	TriggerData *trigdata = reinterpret_cast<TriggerData *>(fcinfo->context);
	Datum result = guarded([&]() -> Datum {
		CompiledTrigger &ct = compiled_trigger_for(trigdata);
		render_or_explain(trigdata, ct, current_prefixes());
		return PointerGetDatum(nullptr);
	});
	capture_warn_if_overflowed();
	return result;
}

} // extern "C"

} // namespace cachebust::pg
