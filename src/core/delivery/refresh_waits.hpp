/*
 * refresh_waits.hpp — commits waiting for materialized keys to be recomputed.
 *
 * A commit that changed a table a materialized key depends on carries a
 * Refresh target for that key. When its window closes, the dispatcher takes
 * those targets out (split_refreshes) and asks the refresh worker of the
 * key's database to recompute it: the request returns a generation number,
 * and the commits stay held until that worker reports the generation done.
 * Its query then ran in a snapshot taken after it took the request — so
 * after these commits were visible — and Redis acknowledged the value (or
 * the key's removal, when the query failed). Many commits of one window ask
 * once; a request made while an earlier one runs gets a later generation.
 *
 * When no refresh worker can take a request, or none reports in time, the
 * key is removed instead (fail closed: a missing key is slow, a wrong key
 * is a bug); the commits are then held by that UNLINK like any target.
 *
 * Pure C++: the dispatcher's host does the shared-memory side.
 */
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/coalescer.hpp"
#include "core/latency_histogram.hpp"
#include "core/target.hpp"

namespace cachebust {

/* Where refresh requests go (the worker's shared memory). */
class RefreshHost
{
  public:
	virtual ~RefreshHost() = default;
	/* Asks the database's refresh worker to recompute key; the generation
	 * to wait for, or 0 when nobody can take the request. */
	virtual uint64_t request_refresh(uint32_t database, const std::string &key) = 0;
	/* The newest generation of key done. */
	virtual uint64_t refresh_done(uint32_t database, const std::string &key) = 0;
	/* Nothing waits for key any more. */
	virtual void refresh_forget(uint32_t database, const std::string &key) = 0;
};

/* A Refresh target and the commits it came from. */
struct RefreshNeed {
	Target target;
	SeqSet seqs;
	size_t commits = 0; /* how many commits asked for it in its window */
	int64_t commit_wall_us = 0; /* when the oldest of them committed (wall clock; 0: unknown) */
};

/* Moves the Refresh targets of a closed window out of targets, keeping
 * from (which commit each target came from) true for what remains. */
std::vector<RefreshNeed> split_refreshes(std::vector<Target> &targets, std::vector<Contribution> &from);

class RefreshWaits
{
  public:
	struct Counters {
		uint64_t requested = 0;		/* requests made */
		uint64_t done = 0;			/* requests reported done */
		uint64_t coalesced = 0;		/* commits whose request another one's covered */
		uint64_t removed = 0;		/* keys removed instead (no refresh worker, or too late) */
		LatencyHistogram latency{}; /* commit to value in Redis, µs */
	};

	/* How long a request may take before the key is removed instead. */
	void set_timeout_us(int64_t timeout_us) { timeout_us_ = timeout_us; }

	/* Requests need; false when it cannot be requested (remove the key instead). */
	bool add(RefreshNeed &&need, int64_t now_us, RefreshHost &host);
	/* Releases what the refresh workers report done (wall_us: now, for the
	 * latency from commit); requests older than the timeout go to expired
	 * (remove those keys instead). */
	void poll(int64_t now_us, int64_t wall_us, RefreshHost &host, std::vector<RefreshNeed> &expired);

	void add_held(SeqSet &out) const;
	bool empty() const { return keys_.empty(); }
	size_t size() const { return keys_.size(); }
	/* Monotonic time the oldest request expires (INT64_MAX: none). */
	int64_t next_expiry_us() const;
	Counters take_counters()
	{
		Counters c = std::move(counters_);
		counters_ = Counters();
		return c;
	}

  private:
	struct Request {
		uint64_t generation;
		SeqSet seqs;
		int64_t expires_us;
		int64_t commit_wall_us;
	};
	struct Key {
		Target target; /* (seqs of the first request aside, what a removal needs) */
		std::deque<Request> requests;
	};
	using Id = std::pair<uint32_t, std::string>;

	std::map<Id, Key> keys_;
	int64_t timeout_us_ = 15 * 1000 * 1000;
	Counters counters_;
};

/* A Key target that removes what need asked to recompute (a row refresh: its Redis key). */
Target removal_of(const Target &refresh);

} // namespace cachebust
