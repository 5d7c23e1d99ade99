/*
 * worker_state.cpp — the state and resend files, and the postmaster's
 * decision that a run ended cleanly.
 *
 * Files are written to a temporary name and moved into place with
 * durable_rename, which fsyncs the file and the directory.
 */
#include "pg/worker_state.hpp"

#include <sys/stat.h>

#include "core/batch_codec.hpp"
#include "pg/queue.hpp"

extern "C" {
#include "storage/fd.h"
}

namespace cachebust::pg {

static const char *const kDirectory = "pg_cachebust";
/* Where 0.1.0 kept its files, at the top of the data directory. */
static const char *const kOldStateFile = "pg_cachebust.state";
static const char *const kOldPrefixFile = "pg_cachebust.prefixes";

std::string
worker_state_path(const char *name)
{
	return std::string(kDirectory) + "/" + name;
}

/* Writes contents to path atomically and durably; false (logged) on failure. */
static bool
write_file_durably(const std::string &path, const std::string &contents, int elevel)
{
	std::string tmp = path + ".tmp";
	FILE *f = AllocateFile(tmp.c_str(), PG_BINARY_W);
	if (f == nullptr) {
		ereport(elevel, (errcode_for_file_access(), errmsg("could not create cachebust file \"%s\": %m", tmp.c_str())));
		return false;
	}
	bool ok = fwrite(contents.data(), 1, contents.size(), f) == contents.size() && fflush(f) == 0;
	if (FreeFile(f) != 0)
		ok = false;
	if (!ok) {
		ereport(elevel, (errcode_for_file_access(), errmsg("could not write cachebust file \"%s\": %m", tmp.c_str())));
		unlink(tmp.c_str());
		return false;
	}
	return durable_rename(tmp.c_str(), path.c_str(), elevel) == 0;
}

/* The whole file, or false if it does not exist (or cannot be read). */
static bool
read_file(const std::string &path, std::string &contents)
{
	FILE *f = AllocateFile(path.c_str(), PG_BINARY_R);
	if (f == nullptr)
		return false;
	char buf[8192];
	size_t n;
	contents.clear();
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		contents.append(buf, n);
	bool ok = !ferror(f);
	FreeFile(f);
	return ok;
}

/*
 * The postmaster exits: if a worker ran in this run, it stopped having
 * delivered everything, and nothing arrived after (every backend is gone
 * now, so nothing can), the run ended cleanly.
 */
static void
postmaster_exit(int code, Datum)
{
	SharedQueue *q = shared_queue;
	if (code != 0 || q == nullptr || !q->state_recorded)
		return; /* a crash, or no worker ever ran (a standby): leave the file as it is */
	bool clean = q->worker_exited_clean && q->head == q->tail && q->unrecorded_hi == 0 &&
				 q->n_uncovered == 0 && pg_atomic_read_u64(&q->delivered_seq) == q->last_seq;
	if (!clean) {
		ereport(LOG, (errmsg("cachebust: undelivered invalidations at shutdown; the fallback runs at the next start")));
		return;
	}
	write_file_durably(worker_state_path("state"), "clean " + std::to_string(q->timeline) + "\n", LOG);
}

void
worker_state_shmem_startup()
{
	static bool exit_hook_registered = false;

	if (IsUnderPostmaster)
		return;
	if (MakePGDirectory(kDirectory) != 0 && errno != EEXIST)
		ereport(FATAL, (errcode_for_file_access(), errmsg("could not create directory \"%s\": %m", kDirectory)));
	/* Files of 0.1.0 move into our directory. */
	struct stat st;
	if (stat(kOldPrefixFile, &st) == 0 && stat(worker_state_path("prefixes").c_str(), &st) != 0)
		(void) durable_rename(kOldPrefixFile, worker_state_path("prefixes").c_str(), LOG);
	if (stat(kOldStateFile, &st) == 0 && stat(worker_state_path("state").c_str(), &st) != 0)
		(void) durable_rename(kOldStateFile, worker_state_path("state").c_str(), LOG);
	/* Once: the hook survives crash restarts, which run this again. */
	if (!exit_hook_registered) {
		on_shmem_exit(postmaster_exit, 0);
		exit_hook_registered = true;
	}
}

bool
worker_state_previous_run_clean(uint32 timeline, std::string &why)
{
	std::string contents;
	if (!read_file(worker_state_path("state"), contents)) {
		/* Never recorded: the first start with cachebust in this cluster. */
		return true;
	}
	unsigned int recorded_timeline = 0;
	char word[16] = {};
	if (sscanf(contents.c_str(), "%15s %u", word, &recorded_timeline) < 1) {
		why = "its state file is damaged";
		return false;
	}
	/* 0.1.0 wrote "clean" without a timeline. */
	if (strcmp(word, "clean") != 0) {
		why = "it did not end cleanly (a crash, an immediate shutdown, or commits after its last delivery)";
		return false;
	}
	if (recorded_timeline != 0 && recorded_timeline != timeline) {
		why = "the server was promoted since (timeline " + std::to_string(recorded_timeline) + " → " +
			  std::to_string(timeline) + "); the old primary's undelivered invalidations are lost";
		return false;
	}
	return true;
}

void
worker_state_record_running(uint32 timeline)
{
	if (!write_file_durably(worker_state_path("state"), "running " + std::to_string(timeline) + "\n", WARNING))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("cachebust worker cannot record its state in \"%s\"", worker_state_path("state").c_str()),
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
	return write_file_durably(path, contents, WARNING);
}

bool
worker_state_load_resends(std::vector<RedeleteSchedule::Entry> &out)
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
worker_state_save_resends(const std::vector<RedeleteSchedule::Entry> &entries)
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

} // namespace cachebust::pg
