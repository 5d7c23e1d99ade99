/*
 * engine_settings.hpp — the delivery engine's settings, read from the
 * cachebust.* GUCs. Every process that talks to Redis (the worker, the
 * refresh workers) configures its engine from the same place.
 */
#pragma once

#include "core/delivery/engine.hpp"

namespace cachebust::pg {

/* The current settings (cachebust.redis_url empty or rejected: not configured). */
EngineSettings engine_settings_from_gucs();

} // namespace cachebust::pg
