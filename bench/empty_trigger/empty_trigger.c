/*
 * empty_trigger.c — a benchmark-only AFTER ROW trigger that does nothing.
 *
 * It is the floor for every trigger-based configuration in bench/run.sh:
 * what PostgreSQL itself spends per row on an AFTER ROW trigger (queueing
 * the event, fetching the old and new tuples again at the end of the
 * statement, calling a C function through fmgr), with no work of ours.
 * Not installed: bench/run.sh builds it and loads it by absolute path.
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(bench_empty_c);

Datum
bench_empty_c(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("bench_empty_c() must be called as a trigger")));
	return PointerGetDatum(NULL);
}
