/*
 * standby_follower.cpp — following the primary's journal progress on a hot
 * standby (see standby_follower.hpp).
 */
#include "pg/standby_follower.hpp"

#include <memory>

#include "pg/guard.hpp"
#include "pg/guc.hpp"
#include "pg/journal_wal.hpp"
#include "pg/postgres.hpp"

extern "C" {
#include "access/xlog.h"
#include "postmaster/interrupt.h"
#include "utils/wait_event.h"
}

namespace cachebust::pg {

/* WAL records read per call, and how often to look again once caught up. */
constexpr size_t kRecordsPerRead = 4096;
constexpr long kPollMs = 100;

namespace {

class Follower
{
  public:
	/* One step: reads what was replayed since the last one; false when caught up. */
	bool step(StandbyFollowing &out, uint64_t to_lsn);

  private:
	std::unique_ptr<JournalReader> reader_;
	JournalSlot slot_;
	bool warned_ = false;
};

bool
Follower::step(StandbyFollowing &out, uint64_t to_lsn)
{
	if (reader_ == nullptr) {
		pg_call([&] {
			slot_ = journal_slot_ensure();
			if (slot_.invalidated)
				slot_ = journal_slot_recreate();
		});
		reader_ = std::make_unique<JournalReader>(slot_.restart_lsn);
		reader_->follow_progress_only();
	}
	JournalReadStatus status = reader_->read(to_lsn, kRecordsPerRead, [](JournalCommit &&) { return true; });
	if (status == JournalReadStatus::wal_missing || status == JournalReadStatus::failed) {
		if (!warned_) {
			std::string error = reader_->error();
			pg_call([&] {
				ereport(WARNING, (errmsg("cachebust worker cannot follow the journal's progress on this standby: %s",
										 error.c_str()),
								  errdetail("If this standby is promoted, the fallback covers what its primary had "
											"not delivered.")));
			});
			warned_ = true;
		}
		reader_.reset();
		out.replayable = false;
		return false;
	}
	/* The slot keeps WAL from the primary's last progress on: only then can a promotion replay it. */
	const JournalReader::Progress &p = reader_->progress();
	bool known = p.known && p.restart_lsn != 0 && slot_.exists && !slot_.invalidated &&
				 p.restart_lsn >= slot_.restart_lsn;
	if (known && p.restart_lsn > slot_.restart_lsn)
		pg_call([&] { slot_ = journal_slot_advance(p.restart_lsn); });
	out.replayable = known && !slot_.invalidated;
	return status == JournalReadStatus::more;
}

} // namespace

StandbyFollowing
follow_standby(volatile const sig_atomic_t &shutdown_requested)
{
	StandbyFollowing out;
	bool in_recovery = true;
	pg_call([&] { in_recovery = RecoveryInProgress(); });
	if (!in_recovery)
		return out;
	out.followed = true;
	Follower follower;

	for (;;) {
		pg_call([&] {
			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending) {
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
			in_recovery = RecoveryInProgress();
		});
		if (shutdown_requested || !in_recovery)
			break;
		if (journal_active() && guc_redis_url != nullptr && guc_redis_url[0] != '\0') {
			out.deliver_replayed = true;
			return out;
		}
		bool more = journal_active() && follower.step(out, 0);
		if (!more)
			pg_call([] {
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, kPollMs, PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
			});
	}

	/* Promoted: what was replayed last may hold the last progress record. */
	if (!in_recovery && journal_active()) {
		uint64_t end = 0;
		pg_call([&] { end = journal_readable_end(); });
		while (follower.step(out, end) && !shutdown_requested) {
		}
	}
	return out;
}

} // namespace cachebust::pg
