/*
 * failover_memory.hpp — what the masters acknowledged lately, for the
 * failover repeat.
 *
 * Redis replication is asynchronous: a replica promoted to master may lack
 * writes the old master acknowledged just before it failed. So with
 * Sentinel and Cluster the engine remembers what each node acknowledged,
 * and after a failover applies again (the "failover repeat") what each node
 * acknowledged within `window` before its LAST HEALTHY CONTACT — its last
 * successful reply. Measuring back from when the failover is noticed would
 * miss exactly those writes: detection comes a timeout after the failure
 * (Sentinel's down-after-milliseconds is 30 s by default, Cluster's
 * cluster-node-timeout 15 s).
 *
 * Memory is bounded by max_targets; the oldest acknowledgements go first,
 * and the key prefixes of what the bound made it forget are covered by the
 * fallback instead when a repeat would have included them.
 *
 * Time is handed in (monotonic microseconds), so this is tested without
 * waiting. Pure C++.
 */
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "core/redis/transport.hpp"
#include "core/target.hpp"

namespace cachebust {

class FailoverMemory
{
  public:
	/* A window of 0 remembers nothing (no failover repeat). */
	void configure(int64_t window_us, size_t max_targets);
	/* Forgets everything (another deployment). */
	void clear();
	bool enabled() const { return window_us_ > 0; }

	/* node answered successfully at now_us. */
	void contact(const Endpoint &node, int64_t now_us);
	/* node acknowledged these targets at now_us (a contact too). */
	void applied(const Endpoint &node, int64_t now_us, std::vector<Target> &&targets);

	struct Repeat {
		std::vector<Target> targets;			/* to apply again, wherever they live now */
		std::vector<std::string> prefixes;		/* forgotten by the bound: for the fallback */
	};
	/* After a failover: what every node acknowledged within the window
	 * before its last contact. The memory starts over; what is repeated
	 * is remembered again when it is acknowledged. */
	Repeat take_repeat();

	size_t targets() const { return targets_; }

  private:
	struct Applied {
		int64_t at_us;
		std::vector<Target> targets; /* one acknowledged command's */
	};
	struct Node {
		Endpoint endpoint;
		int64_t last_contact_us = 0;
		std::deque<Applied> applied;
		std::vector<std::pair<std::string, int64_t>> forgotten; /* prefix, when acknowledged */
	};

	Node &node(const Endpoint &endpoint);
	void prune(Node &n);
	void forget_oldest();

	int64_t window_us_ = 0;
	size_t max_targets_ = 0;
	std::vector<Node> nodes_; /* a handful: the masters, old and new */
	size_t targets_ = 0;
};

} // namespace cachebust
