/*
 * journal_functions.cpp — internal SQL functions over the WAL journal, for
 * tests and diagnosis (superuser only, not PUBLIC):
 *
 *   cachebust._journal_scan(from pg_lsn) — the committed journal targets in
 *     WAL from `from` to the end of WAL readable now, one row per target,
 *     and a NOTICE with the transactions still open there and the position
 *     a new reader would have to start from;
 *   cachebust._journal_slot(advance_to pg_lsn) — creates the "cachebust"
 *     slot if missing, advances it when advance_to is given, returns its
 *     restart_lsn (NULL when invalidated).
 *
 * Both run the same code the worker uses (journal_wal.hpp).
 */
#include <string>
#include <vector>

#include "core/batch_codec.hpp"
#include "core/row_refresh.hpp"
#include "pg/guard.hpp"
#include "pg/journal_wal.hpp"

extern "C" {
#include "utils/pg_lsn.h"
}

namespace cachebust::pg {

static void
require_superuser(const char *fname)
{
	if (!superuser())
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE), errmsg("only superusers may call %s", fname)));
}

/* Records read between interrupt checks. */
constexpr size_t kScanRecordsPerCall = 1000;

extern "C" {

PG_FUNCTION_INFO_V1(cachebust_journal_scan);
PG_FUNCTION_INFO_V1(cachebust_journal_slot);

PGDLLEXPORT Datum
cachebust_journal_scan(PG_FUNCTION_ARGS)
{
	require_superuser("cachebust._journal_scan()");
	XLogRecPtr from = PG_GETARG_LSN(0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	InitMaterializedSRF(fcinfo, 0);

	return guarded([&]() -> Datum {
		uint64_t to = 0;
		pg_call([&] { to = journal_readable_end(); });
		JournalReader reader(from);
		std::vector<Target> targets;
		auto deliver = [&](JournalCommit &&commit) {
			for (const std::string &bytes : commit.batches) {
				targets.clear();
				decode_journal_message(bytes.data(), bytes.size(), targets);
				for (const Target &t : targets) {
					pg_call([&] {
						Datum values[4];
						bool nulls[4] = {false, false, false, false};
						values[0] = LSNGetDatum(commit.commit_lsn);
						values[1] = TransactionIdGetDatum(commit.xid);
						values[2] = CStringGetTextDatum(target_kind_name(t.kind, t.glob));
						std::string_view key = redis_key_of(t); /* (text holds no NUL: a row refresh shows its key) */
						values[3] = PointerGetDatum(cstring_to_text_with_len(key.data(), static_cast<int>(key.size())));
						tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
					});
				}
			}
			return true;
		};
		for (;;) {
			JournalReadStatus status = reader.read(to, kScanRecordsPerCall, deliver);
			if (status == JournalReadStatus::caught_up)
				break;
			if (status != JournalReadStatus::more)
				throw UserError(status == JournalReadStatus::wal_missing ? ERRCODE_UNDEFINED_FILE : ERRCODE_INTERNAL_ERROR,
								"cachebust._journal_scan(): " + reader.error());
			pg_call([] { CHECK_FOR_INTERRUPTS(); });
		}
		/* What a worker would keep the slot at: tests read it from here. */
		size_t open = reader.open_transactions();
		uint64_t position = reader.position();
		uint64_t safe = reader.safe_restart_lsn();
		pg_call([&] {
			ereport(NOTICE,
					(errmsg("journal read to %X/%X: %zu transactions still open, safe restart at %X/%X", static_cast<uint32>(position >> 32), static_cast<uint32>(position),
							open, static_cast<uint32>(safe >> 32), static_cast<uint32>(safe))));
		});
		return static_cast<Datum>(0);
	});
}

PGDLLEXPORT Datum
cachebust_journal_slot(PG_FUNCTION_ARGS)
{
	require_superuser("cachebust._journal_slot()");
	JournalSlot slot = journal_slot_ensure();
	if (!PG_ARGISNULL(0) && slot.exists && !slot.invalidated)
		slot = journal_slot_advance(PG_GETARG_LSN(0));
	if (!slot.exists || slot.invalidated || slot.restart_lsn == 0)
		PG_RETURN_NULL();
	PG_RETURN_LSN(slot.restart_lsn);
}

} // extern "C"

} // namespace cachebust::pg
