/*
 * standby_progress.hpp — how far the read replicas have replayed, read
 * from the walsenders' shared memory (what pg_stat_replication shows),
 * without a database connection.
 */
#pragma once

#include <string>
#include <vector>

#include "pg/postgres.hpp"

#include "core/delivery/standby_sends.hpp"

namespace cachebust::pg {

/* cachebust.standby_names, parsed. */
struct StandbyNames {
	bool every = false;				/* `*`: every streaming physical standby */
	std::vector<std::string> names; /* application_names, matched case-insensitively */

	bool empty() const { return !every && names.empty(); }
	bool operator==(const StandbyNames &o) const { return every == o.every && names == o.names; }
};

/* Parses a list the GUC check hook accepted. */
StandbyNames standby_names_parse(const char *value);
/* The check hook's test: a list of names, or `*` alone; why otherwise. */
bool standby_names_valid(const char *value, std::string &why);

/*
 * The replay position of the slowest standby waited for (a standby's own
 * report of its replay LSN, sent with its write/flush feedback and at
 * least every wal_receiver_status_interval). Listed standbys that are not
 * streaming are added to absent.
 */
StandbyReplay standby_replay(const StandbyNames &names, std::vector<std::string> &absent);

} // namespace cachebust::pg
