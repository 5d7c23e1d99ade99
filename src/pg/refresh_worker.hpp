/*
 * refresh_worker.hpp — the background workers that recompute materialized
 * keys (cachebust.materialize()).
 *
 * The delivery worker needs no database connection; a materialized key's
 * query does. So the worker starts, on demand, refresh workers connected
 * to the key's database (at most cachebust.refresh_workers per database),
 * and hands them requests through refresh_requests.hpp. A refresh worker
 * takes a key, runs its query as the key's owner (read-only, with
 * cachebust.refresh_timeout_ms), SETs the value through a delivery engine
 * of its own (every topology, retries) — or removes the key when the query
 * fails or returns nothing — and reports the request done once Redis
 * acknowledged it. It exits after a while without work, so DROP DATABASE
 * is not held up for long.
 */
#pragma once

#include "pg/postgres.hpp"

namespace cachebust::pg {

/* Starts a refresh worker for database (from the delivery worker); false
 * when PostgreSQL has no background worker slot free. */
bool refresh_worker_start(Oid database);

} // namespace cachebust::pg
