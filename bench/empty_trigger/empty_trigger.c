/*
 * empty_trigger.c — benchmark-only trigger functions that do (almost) nothing.
 *
 * bench_empty_c() is the floor for every trigger-based configuration in
 * bench/cpu_cost.sh: what PostgreSQL itself spends on an AFTER trigger
 * (queueing the event, the transition tables, calling a C function through
 * fmgr), with no work of ours.
 *
 * bench_wal_message() is the same trigger plus one transactional logical
 * message of the size cachebust's WAL journal writes for a one-row UPDATE
 * with a key and a tag (issue 23): PostgreSQL's own cost of that WAL record,
 * with none of cachebust's code around it. Its prefix has the length of
 * "cachebust" but is not it, so a cachebust journal replay ignores it.
 *
 * Not installed: the benchmark builds this and loads it by absolute path.
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "replication/message.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(bench_empty_c);
PG_FUNCTION_INFO_V1(bench_wal_message);

/* The payload size of cachebust's journal message for W1's key and tag. */
#define BENCH_MESSAGE_BYTES 45

static void
check_trigger(FunctionCallInfo fcinfo, const char *name)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s() must be called as a trigger", name)));
}

Datum
bench_empty_c(PG_FUNCTION_ARGS)
{
	check_trigger(fcinfo, "bench_empty_c");
	return PointerGetDatum(NULL);
}

Datum
bench_wal_message(PG_FUNCTION_ARGS)
{
	static const char payload[BENCH_MESSAGE_BYTES] = {0};

	check_trigger(fcinfo, "bench_wal_message");
	LogLogicalMessage("benchmsg_", payload, sizeof(payload), true);
	return PointerGetDatum(NULL);
}
