/*
 * standby_progress.cpp — the standbys' replay positions, for second sends.
 *
 * The walsender array (WalSndCtl) holds each standby's reported apply LSN;
 * its application_name lives in the backend status array, found by the
 * walsender's pid, as the pg_stat_replication view joins them. Logical
 * walsenders (connected to a database) are not read replicas and are
 * skipped.
 */
#include "pg/standby_progress.hpp"

#include <algorithm>

#include "pg/guard.hpp"

extern "C" {
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "utils/backend_status.h"
#include "utils/varlena.h"
}

namespace cachebust::pg {

/* Splits the list as PostgreSQL splits identifier lists (quotes, case folding). */
static bool
split_names(const char *value, std::vector<std::string> &out)
{
	bool ok = false;
	char *copy = nullptr;
	List *items = NIL;
	pg_call([&] {
		copy = pstrdup(value != nullptr ? value : "");
		ok = SplitIdentifierString(copy, ',', &items);
	});
	/* (No PostgreSQL call between the two: a C++ exception must not cross PG_TRY.) */
	if (ok)
		for (int i = 0; i < list_length(items); i++)
			out.emplace_back(static_cast<const char *>(list_nth(items, i)));
	pg_call([&] {
		list_free(items);
		pfree(copy);
	});
	return ok;
}

bool
standby_names_valid(const char *value, std::string &why)
{
	std::vector<std::string> names;
	if (!split_names(value, names)) {
		why = "cachebust.standby_names must be a comma-separated list of standby application_names, or *";
		return false;
	}
	bool star = std::find(names.begin(), names.end(), "*") != names.end();
	if (star && names.size() > 1) {
		why = "cachebust.standby_names: * stands for every standby and cannot be combined with names";
		return false;
	}
	return true;
}

StandbyNames
standby_names_parse(const char *value)
{
	StandbyNames parsed;
	split_names(value, parsed.names);
	if (parsed.names.size() == 1 && parsed.names[0] == "*") {
		parsed.every = true;
		parsed.names.clear();
	}
	return parsed;
}

namespace {

struct Sender {
	int pid;
	std::string application_name;
};

/* Physical walsenders' pids and application_names (one snapshot of the
 * backend status array, released at once: the worker runs no transaction
 * that would release it). */
std::vector<Sender>
physical_senders()
{
	std::vector<Sender> senders;
	int count = 0;
	pg_call([&] {
		pgstat_clear_backend_activity_snapshot();
		count = pgstat_fetch_stat_numbackends();
	});
	senders.reserve(static_cast<size_t>(count));
	for (int i = 1; i <= count; i++) {
		const char *name = nullptr;
		int pid = 0;
		pg_call([&] {
			LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);
			if (local == nullptr)
				return;
			PgBackendStatus *be = &local->backendStatus;
			if (be->st_backendType == B_WAL_SENDER && be->st_databaseid == InvalidOid) {
				pid = be->st_procpid;
				name = be->st_appname;
			}
		});
		if (pid != 0)
			senders.push_back(Sender{pid, name != nullptr ? name : ""});
	}
	pg_call([] { pgstat_clear_backend_activity_snapshot(); });
	return senders;
}

bool
same_name(const std::string &a, const std::string &b)
{
	return a.size() == b.size() && pg_strncasecmp(a.c_str(), b.c_str(), a.size()) == 0;
}

} // namespace

StandbyReplay
standby_replay(const StandbyNames &names, std::vector<std::string> &absent)
{
	StandbyReplay replay;
	replay.lsn = StandbyReplay::kAllReplayed;
	if (names.empty())
		return replay;

	std::vector<Sender> senders = physical_senders();
	std::vector<bool> seen(names.names.size(), false);
	for (int i = 0; i < max_wal_senders; i++) {
		WalSnd *walsnd = &WalSndCtl->walsnds[i];
		SpinLockAcquire(&walsnd->mutex);
		pid_t pid = walsnd->pid;
		WalSndState state = walsnd->state;
		XLogRecPtr apply = walsnd->apply;
		SpinLockRelease(&walsnd->mutex);
		/* A standby catching up is connected and reports its replay too. */
		if (pid == 0 || (state != WALSNDSTATE_STREAMING && state != WALSNDSTATE_CATCHUP))
			continue;
		auto sender = std::find_if(senders.begin(), senders.end(), [&](const Sender &s) { return s.pid == pid; });
		if (sender == senders.end())
			continue; /* logical, or gone since the snapshot */
		bool waited_for = names.every;
		for (size_t n = 0; n < names.names.size(); n++)
			if (same_name(names.names[n], sender->application_name)) {
				seen[n] = true;
				waited_for = true;
			}
		if (waited_for)
			replay.lsn = std::min<uint64_t>(replay.lsn, apply); /* InvalidXLogRecPtr (0): not reported yet */
	}
	for (size_t n = 0; n < names.names.size(); n++)
		if (!seen[n]) {
			absent.push_back(names.names[n]);
			replay.lsn = 0;
		}
	return replay;
}

} // namespace cachebust::pg
