/*
 * standby_follower.hpp — the worker's life on a hot standby, until it is
 * promoted.
 *
 * A standby commits nothing, so there is nothing to deliver; but if it is
 * promoted after its primary died, what that primary had not delivered yet
 * must be replayed from WAL. The primary's worker writes progress records
 * into WAL (journal_wal.hpp: from which LSN on WAL holds everything it has
 * not delivered); here the standby's worker reads them as they are
 * replayed and keeps a slot of its own at the last one, so that WAL stays
 * and the promoted server's worker knows where to start.
 *
 * A standby with a cachebust.redis_url of its own (a regional cache) does
 * more: its worker delivers what it replays (worker.cpp, standby mode);
 * following stops as soon as redis_url is set.
 */
#pragma once

#include <csignal>
#include <cstdint>

namespace cachebust::pg {

struct StandbyFollowing {
	bool followed = false; /* the worker ran on this server while it was a standby */
	/* The slot is at the primary's last known progress: a promoted worker may
	 * replay from it. False when the primary's last run was not known to
	 * write the journal (no progress record yet, or one saying it does not). */
	bool replayable = false;
	/* Still in recovery, with a redis_url: deliver what is replayed. */
	bool deliver_replayed = false;
};

/*
 * Runs while the server is in recovery; returns once it is promoted, once
 * it has a redis_url to deliver to, or when a shutdown is requested
 * (shutdown_requested, the caller's SIGTERM flag).
 */
StandbyFollowing follow_standby(volatile const sig_atomic_t &shutdown_requested);

} // namespace cachebust::pg
