/*
 * refresh_requests.cpp — see refresh_requests.hpp.
 */
#include "pg/refresh_requests.hpp"

#include <cstring>

#include "pg/guard.hpp"
#include "pg/queue.hpp"
#include "pg/worker_state.hpp"

extern "C" {
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/timestamp.h"
}

namespace cachebust::pg {

/* A refresh worker that has not attached this long after its start failed. */
constexpr long kStartTimeoutMs = 10 * 1000;
/* Starts that failed in a row before a database is forgotten (dropped). */
constexpr int kMaxFailedStarts = 3;

static const char *const kDatabasesFile = "pg_cachebust/materialized";

namespace {

struct Entry {
	Oid database; /* InvalidOid: free */
	bool forgotten; /* nobody waits any more: freed when the running refresh ends */
	uint64 requested, taken, done;
	int taken_by; /* the refresh worker running it (pid), while taken > done */
	int key_len;
	char key[kMaxMaterializedKeyLength];
};

struct WorkerSlot {
	Oid database; /* InvalidOid: free */
	int pid;
	Latch *latch;
};

struct Database {
	Oid database; /* InvalidOid: free */
	bool warm;	  /* recompute every key */
	int starting; /* refresh workers started and not attached yet */
	int failed_starts;
	TimestampTz last_start;
};

struct RefreshShared {
	LWLock *lock;
	uint64 next_generation;
	WorkerSlot workers[kRefreshWorkerSlots];
	Database databases[kRefreshDatabases];
	Entry entries[kRefreshEntries];
};

RefreshShared *shared = nullptr;
int my_slot = -1;

class Locked
{
  public:
	Locked() { LWLockAcquire(shared->lock, LW_EXCLUSIVE); }
	~Locked() { LWLockRelease(shared->lock); }
	Locked(const Locked &) = delete;
	Locked &operator=(const Locked &) = delete;
};

Entry *
find_entry(Oid database, const std::string &key)
{
	for (Entry &e : shared->entries)
		if (e.database == database && static_cast<size_t>(e.key_len) == key.size() &&
			memcmp(e.key, key.data(), key.size()) == 0)
			return &e;
	return nullptr;
}

Database *
find_database(Oid database)
{
	for (Database &d : shared->databases)
		if (d.database == database)
			return &d;
	return nullptr;
}

Database *
add_database(Oid database)
{
	if (Database *d = find_database(database))
		return d;
	for (Database &d : shared->databases)
		if (d.database == InvalidOid) {
			memset(&d, 0, sizeof(d));
			d.database = database;
			return &d;
		}
	return nullptr;
}

void
wake_workers_of(Oid database)
{
	for (WorkerSlot &w : shared->workers)
		if (w.database == database && w.latch != nullptr)
			SetLatch(w.latch);
}

/* The list as a file: one OID per line. Called with the lock held. */
void
save_databases(int elevel)
{
	char contents[kRefreshDatabases * 12 + 1];
	size_t len = 0;
	for (const Database &d : shared->databases)
		if (d.database != InvalidOid)
			len += snprintf(contents + len, sizeof(contents) - len, "%u\n", d.database);
	(void) write_file_durably(kDatabasesFile, contents, len, elevel);
}

} // namespace

size_t
refresh_shmem_size()
{
	return sizeof(RefreshShared);
}

void
refresh_shmem_init(LWLock *lock)
{
	bool found;
	shared = static_cast<RefreshShared *>(ShmemInitStruct("cachebust refresh", refresh_shmem_size(), &found));
	if (!found) {
		memset(shared, 0, sizeof(*shared));
		shared->lock = lock;
	}
}

uint64
refresh_request(Oid database, const std::string &key)
{
	if (shared == nullptr || key.size() > static_cast<size_t>(kMaxMaterializedKeyLength))
		return 0;
	uint64 generation = 0;
	{
		Locked locked;
		Entry *e = find_entry(database, key);
		if (e == nullptr)
			for (Entry &free : shared->entries)
				if (free.database == InvalidOid) {
					e = &free;
					memset(e, 0, offsetof(Entry, key));
					e->database = database;
					e->key_len = static_cast<int>(key.size());
					memcpy(e->key, key.data(), key.size());
					break;
				}
		if (e == nullptr)
			return 0;
		e->forgotten = false;
		/* Not taken yet: this request is the waiting one. */
		if (e->requested <= e->taken)
			e->requested = ++shared->next_generation;
		generation = e->requested;
		add_database(database);
		wake_workers_of(database);
	}
	return generation;
}

uint64
refresh_done(Oid database, const std::string &key)
{
	Locked locked;
	Entry *e = find_entry(database, key);
	return e != nullptr ? e->done : 0;
}

void
refresh_forget(Oid database, const std::string &key)
{
	Locked locked;
	Entry *e = find_entry(database, key);
	if (e == nullptr)
		return;
	if (e->taken > e->done)
		e->forgotten = true; /* its refresh worker frees it */
	else
		e->database = InvalidOid;
}

void
refresh_load_databases()
{
	FILE *f = AllocateFile(kDatabasesFile, "r");
	if (f == nullptr)
		return; /* none yet */
	char line[32];
	Locked locked;
	while (fgets(line, sizeof(line), f) != nullptr) {
		unsigned long oid = strtoul(line, nullptr, 10);
		if (oid != 0)
			add_database(static_cast<Oid>(oid));
	}
	FreeFile(f);
}

void
refresh_warm_all()
{
	Locked locked;
	for (Database &d : shared->databases)
		if (d.database != InvalidOid) {
			d.warm = true;
			wake_workers_of(d.database);
		}
}

Oid
refresh_database_needing_worker(int per_database)
{
	Locked locked;
	TimestampTz now = GetCurrentTimestamp();
	for (Database &d : shared->databases) {
		if (d.database == InvalidOid)
			continue;
		if (d.starting > 0 && TimestampDifferenceExceeds(d.last_start, now, kStartTimeoutMs)) {
			/* Never attached: a failed start (a dropped database, no free worker slot). */
			d.starting = 0;
			if (++d.failed_starts >= kMaxFailedStarts && !d.warm) {
				d.database = InvalidOid;
				save_databases(LOG);
				continue;
			}
		}
		bool work = d.warm;
		for (const Entry &e : shared->entries)
			work = work || (e.database == d.database && e.requested > e.taken);
		if (!work)
			continue;
		int running = d.starting;
		for (const WorkerSlot &w : shared->workers)
			running += w.database == d.database ? 1 : 0;
		if (running >= per_database)
			continue;
		d.starting++;
		d.last_start = now;
		return d.database;
	}
	return InvalidOid;
}

void
refresh_start_failed(Oid database)
{
	Locked locked;
	if (Database *d = find_database(database)) {
		d->starting = Max(d->starting - 1, 0);
		d->failed_starts++;
	}
}

void
refresh_forget_database(Oid database)
{
	Locked locked;
	if (Database *d = find_database(database)) {
		d->database = InvalidOid;
		save_databases(LOG);
	}
}

void
refresh_note_database(Oid database)
{
	if (shared == nullptr)
		return;
	Locked locked;
	if (find_database(database) != nullptr)
		return;
	if (add_database(database) == nullptr)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("materialized keys are in use in too many databases (at most %d)", kRefreshDatabases)));
	save_databases(ERROR);
}

bool
refresh_attach(Oid database, Latch *latch)
{
	Locked locked;
	Database *d = find_database(database);
	if (d != nullptr) {
		d->starting = Max(d->starting - 1, 0);
		d->failed_starts = 0;
	}
	for (int i = 0; i < kRefreshWorkerSlots; i++) {
		WorkerSlot &w = shared->workers[i];
		if (w.database == InvalidOid) {
			w.database = database;
			w.pid = MyProcPid;
			w.latch = latch;
			my_slot = i;
			return true;
		}
	}
	return false;
}

void
refresh_detach()
{
	if (shared == nullptr || my_slot < 0)
		return;
	Locked locked;
	WorkerSlot &w = shared->workers[my_slot];
	/* A refresh this process took and did not finish can be taken again. */
	for (Entry &e : shared->entries)
		if (e.database != InvalidOid && e.taken > e.done && e.taken_by == MyProcPid) {
			e.taken = e.done;
			if (e.forgotten)
				e.database = InvalidOid; /* (else requested > taken again: the next worker takes it) */
		}
	memset(&w, 0, sizeof(w));
	my_slot = -1;
}

bool
refresh_take(Oid database, RefreshJob &job)
{
	Locked locked;
	for (int i = 0; i < kRefreshEntries; i++) {
		Entry &e = shared->entries[i];
		/* One refresh of a key at a time: its values reach Redis in order. */
		if (e.database != database || e.forgotten || e.requested <= e.taken || e.taken > e.done)
			continue;
		e.taken = e.requested;
		e.taken_by = MyProcPid;
		job.index = i;
		job.generation = e.taken;
		job.key.assign(e.key, e.key_len);
		return true;
	}
	return false;
}

void
refresh_finish(const RefreshJob &job)
{
	{
		Locked locked;
		Entry &e = shared->entries[job.index];
		if (e.database != InvalidOid && e.taken == job.generation &&
			job.key.size() == static_cast<size_t>(e.key_len) && memcmp(e.key, job.key.data(), job.key.size()) == 0) {
			e.done = job.generation;
			if (e.forgotten)
				e.database = InvalidOid;
		}
	}
	queue_wake_worker();
}

bool
refresh_take_warm(Oid database)
{
	Locked locked;
	Database *d = find_database(database);
	if (d == nullptr || !d->warm)
		return false;
	d->warm = false;
	return true;
}

} // namespace cachebust::pg
