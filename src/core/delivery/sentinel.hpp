/*
 * sentinel.hpp — finding the master of a Redis Sentinel deployment.
 *
 * The sentinels are asked in turn (`SENTINEL get-master-addr-by-name
 * <service>`) until one answers (core/delivery/ask_in_turn.hpp). The lane
 * then connects to the answer and checks that `ROLE` says master before it
 * sends anything. We ask again whenever the master's connection is lost or
 * it answers READONLY or a redirection, and every second while it answers:
 * a switchover (SENTINEL FAILOVER) leaves the old master answering as a
 * master until the sentinels demote it, about 10 s later, and what it
 * acknowledges meanwhile is lost (DeliveryEngine::follow_sentinel). Asking
 * needs no connection kept open, unlike a subscription to +switch-master.
 */
#pragma once

#include "core/delivery/ask_in_turn.hpp"

namespace cachebust {

class SentinelResolver
{
  public:
	/* base: TLS, timeouts and the sentinels' own password (no user, no db). */
	SentinelResolver(std::vector<Endpoint> sentinels, std::string service, ConnectionSettings base,
					 int retry_max_ms, uint64_t seed);

	void request() { ask_.request(); }
	bool busy() const { return ask_.busy(); }
	/* A finished resolution, once: true with the master, false with why not. */
	bool take_result(bool &found, Endpoint &master, std::string &error);
	/* The last failure apart from the sentinels' addresses (see AskInTurn). */
	const std::string &error_without_addresses() const { return ask_.error_without_addresses(); }
	const std::string &error_addresses() const { return ask_.error_addresses(); }

	void poll_entries(std::vector<PollEntry> &out) const { ask_.poll_entries(out); }
	int64_t deadline_us() const { return ask_.deadline_us(); }
	void on_io(int fd, bool readable, bool writable) { ask_.on_io(fd, readable, writable); }
	void on_timer() { ask_.on_timer(); }

  private:
	Endpoint answer_;
	AskInTurn ask_;
};

} // namespace cachebust
