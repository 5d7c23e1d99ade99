/*
 * worker.hpp — the background worker that delivers invalidations to Redis.
 */
#pragma once

namespace cachebust::pg {

/* Registers the worker; called from _PG_init when preloaded. */
void worker_register();

} // namespace cachebust::pg
