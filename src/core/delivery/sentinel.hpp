/*
 * sentinel.hpp — finding the master of a Redis Sentinel deployment.
 *
 * The sentinels are asked in turn (`SENTINEL get-master-addr-by-name
 * <service>`) until one answers; a round in which none does is retried with
 * backoff. The lane then connects to the answer and checks `ROLE` says
 * master before it sends anything. We re-ask whenever the master's
 * connection is lost or it answers READONLY or a redirection: the
 * "re-ask on error" choice. A subscription to +switch-master would learn of
 * a failover a little sooner, but only while a sentinel connection is up;
 * a failover always breaks or demotes the old master, which we notice on
 * our next command anyway.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/backoff.hpp"
#include "core/redis/connection.hpp"

namespace cachebust {

struct PollEntry;

class SentinelResolver
{
  public:
	/* base: TLS, timeouts and the sentinels' own password (no user, no db). */
	SentinelResolver(std::vector<Endpoint> sentinels, std::string service, ConnectionSettings base,
					 int retry_max_ms, uint64_t seed);
	~SentinelResolver();

	/* Starts finding the master, unless that is under way. */
	void request();
	bool busy() const { return state_ != State::Idle; }
	/* A finished resolution, once: true with the master, false with why not. */
	bool take_result(bool &found, Endpoint &master, std::string &error);

	void poll_entries(std::vector<PollEntry> &out) const;
	int64_t deadline_us() const;
	void on_io(int fd, bool readable, bool writable);
	void on_timer();

  private:
	enum class State { Idle, Asking, BackingOff };

	void ask_next();
	void answered(Reply &reply);
	void failed(const std::string &why);
	void finish_round_failed();

	std::vector<Endpoint> sentinels_;
	std::string service_;
	ConnectionSettings base_;
	Backoff backoff_;
	State state_ = State::Idle;
	size_t next_ = 0;			 /* the sentinel asked next */
	size_t asked_this_round_ = 0;
	int64_t retry_at_us_ = 0;
	std::unique_ptr<Connection> conn_;
	/* Closed, maybe from inside their own callbacks: freed in on_timer(). */
	std::vector<std::unique_ptr<Connection>> retired_;
	std::vector<std::string> errors_;	  /* this round's, for the message */

	bool have_result_ = false;
	bool found_ = false;
	Endpoint master_;
	std::string error_;
};

} // namespace cachebust
