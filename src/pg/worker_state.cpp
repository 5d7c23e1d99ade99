/*
 * worker_state.cpp — the state and redelete files, and the postmaster's
 * decision that a run ended cleanly.
 *
 * Files are written to a temporary name, fsynced, renamed into place, and
 * the directory fsynced. What the postmaster runs (at shared memory set-up
 * and exit) logs its failures instead of raising them: an ERROR there would
 * stop the postmaster, even at a crash restart.
 */
#include "pg/worker_state.hpp"

#include "pg/guard.hpp"

#include <sys/stat.h>

#include "core/batch_codec.hpp"
#include "pg/journal_wal.hpp"
#include "pg/queue.hpp"

extern "C" {
#include "storage/fd.h"
}

namespace cachebust::pg {

static const char *const kDirectory = "pg_cachebust";
/* (Plain strings: the postmaster uses them, where nothing may allocate C++ memory.) */
static const char *const kStateFile = "pg_cachebust/state";
static const char *const kPrefixFile = "pg_cachebust/prefixes";
/* Present while runs write every batch to the WAL journal: a replay after a
 * crash can trust WAL only if the crashed run wrote it. */
static const char *const kJournalFile = "pg_cachebust/journal";
/* See worker_state.hpp: "gap <timeline>". */
static const char *const kJournalGapFile = "pg_cachebust/journal_gap";
/* Where 0.1.0 kept its files, at the top of the data directory. */
static const char *const kOldStateFile = "pg_cachebust.state";
static const char *const kOldPrefixFile = "pg_cachebust.prefixes";

std::string
worker_state_path(const char *name)
{
	return std::string(kDirectory) + "/" + name;
}

/*
 * Writes contents to path atomically and durably: a temporary file, synced,
 * renamed over path, and the directory synced. (Not durable_rename: it first
 * syncs the file it replaces, so an unreadable old file could never be
 * replaced.) false, logged at elevel, on failure. No C++ allocation: the
 * postmaster calls this.
 */
bool
write_file_durably(const char *path, const char *contents, size_t len, int elevel)
{
	char tmp[MAXPGPATH];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = AllocateFile(tmp, PG_BINARY_W);
	if (f == nullptr) {
		ereport(elevel, (errcode_for_file_access(), errmsg("could not create cachebust file \"%s\": %m", tmp)));
		return false;
	}
	bool ok = fwrite(contents, 1, len, f) == len && fflush(f) == 0 && pg_fsync(fileno(f)) == 0;
	int write_errno = errno;
	if (FreeFile(f) != 0 && ok) {
		ok = false;
		write_errno = errno;
	}
	if (!ok) {
		errno = write_errno;
		ereport(elevel, (errcode_for_file_access(), errmsg("could not write cachebust file \"%s\": %m", tmp)));
		unlink(tmp);
		return false;
	}
	if (rename(tmp, path) != 0) {
		ereport(elevel, (errcode_for_file_access(),
						 errmsg("could not rename cachebust file \"%s\" to \"%s\": %m", tmp, path)));
		unlink(tmp);
		return false;
	}
	return fsync_fname_ext(kDirectory, true, false, elevel) == 0;
}

/* Removes a file of ours, if it is there, and makes that durable;
 * failures are logged at elevel. No C++ allocation: the postmaster calls this. */
static void
remove_file_durably(const char *path, int elevel)
{
	if (unlink(path) != 0) {
		if (errno != ENOENT)
			ereport(elevel, (errcode_for_file_access(), errmsg("could not remove cachebust file \"%s\": %m", path)));
		return;
	}
	(void) fsync_fname_ext(kDirectory, true, false, elevel);
}

/* The whole file, or false if it does not exist (or cannot be read). */
static bool
read_file(const std::string &path, std::string &contents)
{
	/* (Each PostgreSQL call guarded on its own: path and contents are alive.) */
	FILE *f = nullptr;
	pg_call([&] { f = AllocateFile(path.c_str(), PG_BINARY_R); });
	if (f == nullptr)
		return false;
	char buf[8192];
	size_t n;
	contents.clear();
	try {
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			contents.append(buf, n);
	} catch (...) {
		pg_call([&] { FreeFile(f); });
		throw;
	}
	bool ok = !ferror(f);
	pg_call([&] { FreeFile(f); });
	return ok;
}

/* ---- the state file (the postmaster's) ---- */

static const char kRunning[] = "running\n";

/* Reads the state file into buf (NUL-terminated, at most size - 1 bytes): 0, or the errno. */
static int
read_state_file(char *buf, size_t size, size_t &len)
{
	len = 0;
	buf[0] = '\0';
	FILE *f = AllocateFile(kStateFile, PG_BINARY_R);
	if (f == nullptr)
		return errno;
	errno = 0;
	len = fread(buf, 1, size - 1, f);
	int err = ferror(f) ? (errno != 0 ? errno : EIO) : 0;
	FreeFile(f);
	buf[len] = '\0';
	return err;
}

/* "running", "clean" (0.1.0) or either followed by " <timeline>", then a newline; false for anything else. */
static bool
parse_state(const char *buf, size_t len, bool &clean, uint32 &timeline)
{
	if (len == 0 || strlen(buf) != len)
		return false; /* empty, or a NUL byte inside */
	char word[16];
	int consumed = 0;
	if (sscanf(buf, "%15[a-z]%n", word, &consumed) != 1)
		return false;
	const char *rest = buf + consumed;
	unsigned int recorded = 0;
	if (*rest == ' ') {
		int n = 0;
		if (sscanf(rest, " %u%n", &recorded, &n) != 1)
			return false;
		rest += n;
	}
	if (strcmp(rest, "\n") != 0)
		return false;
	if (strcmp(word, "clean") == 0)
		clean = true;
	else if (strcmp(word, "running") == 0)
		clean = false;
	else
		return false;
	timeline = recorded;
	return true;
}

static void
set_previous_run(SharedQueue *q, bool clean, uint32 timeline, const char *why)
{
	q->previous_run_clean = clean;
	q->previous_run_timeline = timeline;
	strlcpy(q->previous_run_why, why, sizeof(q->previous_run_why));
}

/* What the state file says about the previous run; unreadable or damaged is unclean, and a WARNING says so. */
static void
judge_previous_run(SharedQueue *q)
{
	char buf[64];
	size_t len;
	int err = read_state_file(buf, sizeof(buf), len);
	if (err == ENOENT) {
		/* Never recorded: the first start with cachebust in this cluster. */
		set_previous_run(q, true, 0, "");
		return;
	}
	if (err != 0) {
		errno = err;
		ereport(WARNING, (errcode_for_file_access(), errmsg("could not read cachebust state file \"%s\": %m", kStateFile),
						  errdetail("The previous run of the server is taken as not ended cleanly: the fallback runs.")));
		set_previous_run(q, false, 0, "its state file could not be read");
		return;
	}
	bool clean = false;
	uint32 timeline = 0;
	if (!parse_state(buf, len, clean, timeline)) {
		ereport(WARNING, (errcode(ERRCODE_DATA_CORRUPTED), errmsg("cachebust state file \"%s\" is damaged", kStateFile),
						  errdetail("The previous run of the server is taken as not ended cleanly: the fallback runs.")));
		set_previous_run(q, false, 0, "its state file is damaged");
		return;
	}
	set_previous_run(q, clean, timeline,
					 clean ? "" : "it did not end cleanly (a crash, an immediate shutdown, or invalidations left undelivered or uncovered)");
}

/*
 * "running" written over the old file in place, when it cannot be replaced
 * (a read-only directory, a full disk): best effort, so that a stale "clean"
 * does not outlive this run. A torn write reads as damaged: unclean too.
 */
static void
overwrite_state_in_place()
{
	int fd = OpenTransientFile(kStateFile, O_WRONLY | O_TRUNC | PG_BINARY);
	if (fd < 0)
		return;
	if (write(fd, kRunning, strlen(kRunning)) == static_cast<ssize_t>(strlen(kRunning)))
		(void) pg_fsync(fd);
	CloseTransientFile(fd);
}

/*
 * The postmaster exits: the run ended cleanly if every worker of it stopped
 * having delivered everything and nothing arrived after (every backend is
 * gone now, so nothing can), or, when no worker ran at all (a standby,
 * max_worker_processes), if nothing was committed and the run before was
 * clean. Anything else leaves "running" for the next start.
 */
static void
postmaster_exit(int code, Datum)
{
	SharedQueue *q = shared_queue;
	if (code != 0 || q == nullptr)
		return; /* a crash: leave "running" */
	bool clean;
	uint32 timeline;
	if (q->worker_started) {
		clean = q->worker_exited_clean && q->head == q->tail && q->unrecorded_hi == 0 && q->n_uncovered == 0 &&
				pg_atomic_read_u64(&q->delivered_seq) == q->last_seq;
		timeline = q->timeline;
	} else {
		clean = q->previous_run_clean && q->last_seq == 0 && q->unrecorded_hi == 0;
		timeline = q->previous_run_timeline;
	}
	if (!clean) {
		ereport(LOG, (errmsg("cachebust: undelivered (or uncovered) invalidations at shutdown; the fallback runs at the next start")));
		return;
	}
	char contents[32];
	snprintf(contents, sizeof(contents), "clean %u\n", timeline);
	write_file_durably(kStateFile, contents, strlen(contents), LOG);
}

/* The journal marker follows this run's setting, before any backend can commit. */
static void
record_journal_setting()
{
	struct stat st;
	bool present = stat(kJournalFile, &st) == 0;
	if (journal_active() && !present)
		(void) write_file_durably(kJournalFile, "on\n", 3, WARNING);
	else if (!journal_active() && present)
		remove_file_durably(kJournalFile, WARNING);
}

void
worker_state_shmem_startup(SharedQueue *q)
{
	/* Postmaster memory survives a crash restart, which runs this again on new shared memory. */
	static bool ran_before = false;

	if (IsUnderPostmaster)
		return;
	/* Errors here are WARNINGs: a FATAL would stop the postmaster, even at a crash restart. */
	if (MakePGDirectory(kDirectory) == 0) {
		/* A new directory: its entry in the data directory must be durable before files in it count. */
		(void) fsync_fname_ext(kDirectory, true, false, WARNING);
		(void) fsync_fname_ext(".", true, false, WARNING);
	} else if (errno != EEXIST)
		ereport(WARNING, (errcode_for_file_access(), errmsg("could not create directory \"%s\": %m", kDirectory)));
	/* Files of 0.1.0 move into our directory. */
	struct stat st;
	if (stat(kOldPrefixFile, &st) == 0 && stat(kPrefixFile, &st) != 0)
		(void) durable_rename(kOldPrefixFile, kPrefixFile, LOG);
	if (stat(kOldStateFile, &st) == 0 && stat(kStateFile, &st) != 0)
		(void) durable_rename(kOldStateFile, kStateFile, LOG);

	if (ran_before)
		set_previous_run(q, false, 0, "it restarted after a crash (a backend or the worker died)");
	else
		judge_previous_run(q);
	q->previous_run_journal = ran_before ? journal_active() : stat(kJournalFile, &st) == 0;
	if (!ran_before)
		record_journal_setting();
	ran_before = true;

	/* "running" before any backend can commit: a crash from here on is never taken for a clean stop. */
	q->state_recorded = write_file_durably(kStateFile, kRunning, strlen(kRunning), WARNING);
	if (!q->state_recorded) {
		overwrite_state_in_place();
		ereport(WARNING, (errmsg("cachebust cannot record that the server runs in \"%s\"", kStateFile),
						  errdetail("Without it a crash could go unnoticed and leave stale cache entries; the worker does not deliver until it can record it.")));
	}
	/* At every initialisation: a crash restart empties the list. */
	on_shmem_exit(postmaster_exit, 0);
}

bool
worker_state_previous_run_clean(uint32 timeline, std::string &why)
{
	const SharedQueue *q = shared_queue;
	if (!q->previous_run_clean) {
		why = q->previous_run_why;
		return false;
	}
	/* 0.1.0 wrote "clean" without a timeline. */
	uint32 recorded = q->previous_run_timeline;
	if (recorded != 0 && recorded != timeline) {
		why = "the server was promoted since (timeline " + std::to_string(recorded) + " → " +
			  std::to_string(timeline) + "); the old primary's undelivered invalidations are lost";
		return false;
	}
	return true;
}

void
worker_state_record_running(uint32)
{
	if (!write_file_durably(kStateFile, kRunning, strlen(kRunning), WARNING))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("cachebust worker cannot record its state in \"%s\"", kStateFile),
				 errdetail("Without it a crash could go unnoticed and leave stale cache entries; the worker does not deliver.")));
}

/* Reads a file of encoded batches and removes it; false if it is damaged. */
static bool
load_batches(const char *name, std::vector<DecodedBatch> &out)
{
	std::string path = worker_state_path(name);
	std::string contents;
	if (!read_file(path, contents))
		return true; /* nothing was pending */
	bool ok = true;
	try {
		size_t offset = 0;
		while (offset < contents.size()) {
			DecodedBatch batch;
			offset += decode_batch(contents.data() + offset, contents.size() - offset, batch);
			out.push_back(std::move(batch));
		}
	} catch (const std::exception &) {
		ok = false;
	}
	unlink(path.c_str());
	return ok;
}

static bool
save_batches(const char *name, const std::string &contents)
{
	std::string path = worker_state_path(name);
	if (contents.empty()) {
		unlink(path.c_str());
		return true;
	}
	bool ok = false;
	pg_call([&] { ok = write_file_durably(path.c_str(), contents.data(), contents.size(), WARNING); });
	return ok;
}

bool
worker_state_load_redeletes(std::vector<RedeleteSchedule::Entry> &out)
{
	std::vector<DecodedBatch> batches;
	bool ok = load_batches("resend", batches);
	for (DecodedBatch &batch : batches) {
		RedeleteSchedule::Entry e;
		e.due_us = 0; /* due at once: their time passed while we were down */
		e.flushdb = batch.flushdb;
		e.targets = std::move(batch.targets);
		out.push_back(std::move(e));
	}
	return ok;
}

bool
worker_state_save_redeletes(const std::vector<RedeleteSchedule::Entry> &entries)
{
	std::string contents;
	for (const RedeleteSchedule::Entry &e : entries)
		contents += encode_targets(e.targets, e.flushdb ? kBatchFlushDb : 0);
	return save_batches("resend", contents);
}

bool
worker_state_load_standby_sends(std::vector<StandbySends::Entry> &out)
{
	std::vector<DecodedBatch> batches;
	bool ok = load_batches("standby", batches);
	for (DecodedBatch &batch : batches) {
		StandbySends::Entry e;
		e.lsn = batch.commit_lsn;
		e.flushdb = batch.flushdb;
		if (batch.lost)
			for (Target &t : batch.targets)
				e.prefixes.push_back(std::move(t.key));
		else
			e.targets = std::move(batch.targets);
		out.push_back(std::move(e));
	}
	return ok;
}

bool
worker_state_save_standby_sends(const std::vector<StandbySends::Entry> &entries)
{
	std::string contents;
	for (const StandbySends::Entry &e : entries) {
		/* Targets, and (as a lost batch) the prefixes that stand for those over the bound. */
		std::vector<std::string> batches;
		if (!e.targets.empty() || e.flushdb)
			batches.push_back(encode_targets(e.targets, e.flushdb ? kBatchFlushDb : 0));
		if (!e.prefixes.empty())
			batches.push_back(encode_lost_batch(e.prefixes));
		for (std::string &b : batches) {
			stamp_batch(b.data(), 0, 0, e.lsn);
			contents += b;
		}
	}
	return save_batches("standby", contents);
}

/* ---- the journal gap ---- */

void
worker_state_record_journal_gap(uint32 timeline)
{
	char contents[32];
	snprintf(contents, sizeof(contents), "gap %u\n", timeline);
	/* Before the slot is made again: without the file a crash would replay from the new slot. */
	if (!write_file_durably(kJournalGapFile, contents, strlen(contents), WARNING))
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("cachebust worker cannot record in \"%s\" that its journal has a gap", kJournalGapFile)));
}

bool
worker_state_journal_gap_recorded(uint32 timeline)
{
	struct stat st;
	if (stat(kJournalGapFile, &st) != 0)
		return errno != ENOENT; /* (cannot tell: as if recorded) */
	std::string contents;
	/* A damaged file counts: falling back is the safe side. */
	if (!read_file(kJournalGapFile, contents))
		return true;
	unsigned recorded = 0;
	char end = '\0';
	if (sscanf(contents.c_str(), "gap %u%c", &recorded, &end) != 2 || end != '\n')
		return true;
	return recorded == timeline;
}

void
worker_state_clear_journal_gap()
{
	remove_file_durably(kJournalGapFile, WARNING);
}

} // namespace cachebust::pg
