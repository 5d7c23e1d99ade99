/*
 * trigger.hpp — compiling trigger arguments against a table.
 */
#pragma once

#include <string>
#include <vector>

#include "pg/postgres.hpp"

#include "core/template.hpp"

extern "C" {
#include "utils/rel.h"
}

namespace cachebust::pg {

/*
 * Parses `args` and resolves their columns in `tupdesc`; throws UserError
 * naming the trigger, the table and the template. attnums receives one
 * attribute number per spec column slot.
 */
TriggerSpec compile_targets(const std::vector<std::string> &args, TupleDesc tupdesc,
							const char *trigger_name, const char *table_name,
							std::vector<AttrNumber> &attnums);

/*
 * What can be known before any row fires (check_targets(), watch()): throws
 * UserError for a target whose fixed part with the prefixes is already over
 * the key limit, and for one whose TRUNCATE (or own) glob would match every
 * key of the Redis database because key_prefix is empty.
 */
void check_renderable(const TriggerSpec &spec, const KeyPrefixes &prefixes, const char *trigger_name,
					  const char *table_name);

/* Registers the relcache callback that keeps compiled triggers fresh. */
void trigger_init();

} // namespace cachebust::pg
