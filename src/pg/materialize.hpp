/*
 * materialize.hpp — what the trigger asks of the materialized keys' registry
 * (materialize.cpp).
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pg/postgres.hpp"

namespace cachebust::pg {

/* Whether the per-row refresh registration id belongs to the table relid
 * (or a table it is a partition of) and to one of the trigger's key
 * templates (trigger_args: the trigger's arguments). */
bool row_refresh_belongs_to(uint32_t id, Oid relid, const std::vector<std::string> &trigger_args);

} // namespace cachebust::pg
