/*
 * clear.hpp — cachebust.clear(), the emergency clear in two steps.
 *
 * clear(pattern) asks the worker to count the keys the pattern matches
 * under the caller's key_prefix (backends never talk to Redis) and returns
 * a confirmation token; clear(pattern, token) within 60 s enqueues the
 * pattern like invalidate_pattern() (removed at commit, through the SCAN
 * pass) and logs who did it. See README "Emergency clear".
 */
#pragma once

#include "pg/postgres.hpp"

namespace cachebust {
class DeliveryEngine;
}

namespace cachebust::pg {

/* Reserves the shared memory (count requests, tokens); called from _PG_init. */
void clear_request_shmem();

/* The worker's side, once per turn: starts the counts backends asked for,
 * posts their progress, and ends those nobody waits for any more. */
void clear_serve_counts(DeliveryEngine &engine);

} // namespace cachebust::pg
