/*
 * refresh_requests.hpp — how the worker asks refresh workers to recompute
 * materialized keys (shared memory).
 *
 * The worker has no database connection; a materialized key's query runs
 * in a refresh worker connected to the key's database (refresh_worker.hpp),
 * started on demand. They meet here:
 *
 *   - one entry per key with a request outstanding: generations requested,
 *     taken (a refresh worker runs the query) and done (Redis has the value
 *     or the key's removal). A request made while an earlier one is taken
 *     gets a new generation; one not taken yet is shared. A key is taken by
 *     one refresh worker at a time, so its values reach Redis in order.
 *   - one slot per running refresh worker (its database and latch);
 *   - the databases that have materialized keys (also in
 *     PGDATA/pg_cachebust/materialized, so the worker can warm their keys
 *     when it starts), each with a flag "recompute every key".
 *
 * Everything is under one LWLock; every operation is short.
 */
#pragma once

#include <string>

#include "pg/postgres.hpp"

namespace cachebust::pg {

/* Longest full key (key_prefix included) a materialized key may have. */
constexpr int kMaxMaterializedKeyLength = 1024;
/* Keys with a request outstanding at once (beyond: removed instead). */
constexpr int kRefreshEntries = 256;
/* Refresh workers running at once, and databases with materialized keys. */
constexpr int kRefreshWorkerSlots = 64;
constexpr int kRefreshDatabases = 64;

size_t refresh_shmem_size();
void refresh_shmem_init(LWLock *lock);

/* ---- the worker ---- */

/* The generation to wait for, 0 when the table is full. */
uint64 refresh_request(Oid database, const std::string &key);
uint64 refresh_done(Oid database, const std::string &key);
void refresh_forget(Oid database, const std::string &key);
/* Reads the database list written by earlier runs. */
void refresh_load_databases();
/* Every known database recomputes every key (worker start, after a fallback). */
void refresh_warm_all();
/* A database whose refresh workers have work and fewer than `per_database`
 * workers (running or starting); InvalidOid when none. Counts a start. */
Oid refresh_database_needing_worker(int per_database);
/* A start failed or the worker exited before it attached. */
void refresh_start_failed(Oid database);
/* A database that cannot be connected to (dropped) is forgotten. */
void refresh_forget_database(Oid database);

/* ---- backends ---- */

/* materialize() was called in this database: remember it (file included). */
void refresh_note_database(Oid database);

/* ---- refresh workers ---- */

struct RefreshJob {
	int index = -1;
	uint64 generation = 0;
	std::string key;
};

/* Takes a slot for this process; false when none is free. */
bool refresh_attach(Oid database, Latch *latch);
void refresh_detach();
/* A key of this database to recompute now, if any. */
bool refresh_take(Oid database, RefreshJob &job);
/* Its generation is done; wakes the worker. */
void refresh_finish(const RefreshJob &job);
/* Whether every key of this database is to be recomputed (clears the flag). */
bool refresh_take_warm(Oid database);

} // namespace cachebust::pg
