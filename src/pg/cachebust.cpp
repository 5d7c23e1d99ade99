/*
 * cachebust.cpp — module entry point.
 *
 * Settings and transaction hooks are installed in every process that loads
 * the library. Shared memory and the worker exist only when the library is
 * in shared_preload_libraries; without that, CREATE EXTENSION still works
 * but the trigger and the functions that need the queue raise an ERROR with
 * a hint (never a silent no-op).
 */
#include "pg/capture.hpp"
#include "pg/clear.hpp"
#include "pg/guc.hpp"
#include "pg/journal_wal.hpp"
#include "pg/postgres.hpp"
#include "pg/queue.hpp"
#include "pg/trigger.hpp"
#include "pg/worker.hpp"

extern "C" {

PG_MODULE_MAGIC;

PGDLLEXPORT void _PG_init(void);

void
_PG_init(void)
{
	using namespace cachebust::pg;

	/* First: defining the GUCs can already log a rejected redis_url. */
	install_log_redaction();
	define_gucs();
	capture_init();
	trigger_init();

	if (!process_shared_preload_libraries_in_progress)
		return;
	journal_init();
	queue_request_shmem();
	clear_request_shmem();
	if (!IsBinaryUpgrade)
		worker_register();
}

} // extern "C"
