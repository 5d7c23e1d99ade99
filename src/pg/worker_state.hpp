/*
 * worker_state.hpp — what survives the worker and the server: whether the
 * last run ended with everything delivered, and the second sends that were
 * not due yet when it ended.
 *
 * Files live in PGDATA/pg_cachebust/ (as pg_stat_statements keeps
 * pg_stat/): `state` ("running" or "clean <timeline>"),
 * `prefixes` (prefix_registry.cpp), `resend` (redeletes not yet due; the
 * name predates the word), `standby` (second sends waiting for the
 * standbys), `journal` (runs write the WAL journal) and `journal_gap`
 * (below).
 *
 * The postmaster reads `state` when it sets up shared memory, keeps what it
 * said there for the worker, and durably writes "running" before any
 * backend can commit (a crash restart, which runs that set-up again, counts
 * as unclean by itself). A missing file is a first start (clean); one that
 * cannot be read or parsed is unclean, with a WARNING.
 *
 * "clean" is written by the postmaster itself as it exits normally, after
 * every backend and the worker are gone, and only when the queue is empty
 * and everything in it was delivered (or covered: commits no fallback
 * covered leave "running"): a fast shutdown stops backends and the worker
 * at the same time, and a backend still committing can hand a batch over
 * after the worker's last drain. Any other end (a crash, an immediate
 * shutdown, such a late batch) leaves "running", and the next worker runs
 * the fallback. A "clean" state written on another timeline (a base
 * backup's copy, before a standby was promoted) counts as unclean.
 */
#pragma once

#include <string>
#include <vector>

#include "pg/postgres.hpp"

#include "core/delivery/redelete_schedule.hpp"
#include "core/delivery/standby_sends.hpp"

namespace cachebust::pg {

struct SharedQueue;

/* Postmaster, at every shared memory set-up (start, crash restart): the
 * directory, the previous run's state into q, "running", and the exit hook. */
void worker_state_shmem_startup(SharedQueue *q);

/* Whether the previous run of the server ended cleanly on `timeline` (as the
 * postmaster found it at start); why not, if not. */
bool worker_state_previous_run_clean(uint32 timeline, std::string &why);

/* Durably records "running", when the postmaster could not. ERROR if it cannot. */
void worker_state_record_running(uint32 timeline);

/* Second sends that were not due at the last clean stop (the file is removed).
 * false when the file exists but cannot be read back (then run the fallback). */
bool worker_state_load_redeletes(std::vector<RedeleteSchedule::Entry> &out);

/* Writes them for the next start; false if that failed (then we did not stop cleanly). */
bool worker_state_save_redeletes(const std::vector<RedeleteSchedule::Entry> &entries);

/* The same for second sends that waited for the standbys (file `standby`):
 * each keeps the LSN the standbys must replay. */
bool worker_state_load_standby_sends(std::vector<StandbySends::Entry> &out);
bool worker_state_save_standby_sends(const std::vector<StandbySends::Entry> &entries);

/*
 * The journal gap (file `journal_gap`): present while the journal's slot
 * does not reach back to every commit that is not delivered yet — its WAL
 * was lost and the slot made again, or a fallback stands in for a replay
 * and has not run. A restart then must not replay from the slot: it runs
 * the fallback. It names the timeline it was written on (0 on a standby);
 * one written on another timeline (a base backup's copy) does not count.
 */
void worker_state_record_journal_gap(uint32 timeline); /* ERROR if it cannot */
bool worker_state_journal_gap_recorded(uint32 timeline); /* (guards its PostgreSQL calls) */
void worker_state_clear_journal_gap();

/* Path of a file of ours, e.g. "pg_cachebust/prefixes". */
std::string worker_state_path(const char *name);

/* Writes contents to path (under PGDATA) atomically and durably; false,
 * logged at elevel, on failure. */
bool write_file_durably(const char *path, const char *contents, size_t len, int elevel);

} // namespace cachebust::pg
