/*
 * wait_set.hpp — how the worker sleeps: on its latch, postmaster death and
 * every Redis socket at once (a PostgreSQL WaitEventSet), so it is never
 * deaf to signals while Redis is slow, and never busy-waits.
 *
 * The set is rebuilt only when the sockets change; a socket that merely
 * wants to write now and not later is modified in place. Each PostgreSQL
 * call is guarded on its own (pg_call): an ERROR becomes a PgException.
 */
#pragma once

#include <vector>

#include "pg/postgres.hpp"

#include "core/delivery/engine.hpp"

namespace cachebust::pg {

class WaitSet
{
  public:
	WaitSet() = default;
	~WaitSet();
	WaitSet(const WaitSet &) = delete;
	WaitSet &operator=(const WaitSet &) = delete;

	struct Ready {
		int fd;
		bool readable;
		bool writable;
	};

	/* Waits up to timeout_ms; fills ready with the sockets that can make
	 * progress. Returns whether the latch was set (it is reset). Exits the
	 * process if the postmaster died. */
	bool wait(const std::vector<PollEntry> &sockets, long timeout_ms, std::vector<Ready> &ready);

  private:
	void rebuild(const std::vector<PollEntry> &sockets);

	WaitEventSet *set_ = nullptr;
	std::vector<PollEntry> registered_;
};

} // namespace cachebust::pg
