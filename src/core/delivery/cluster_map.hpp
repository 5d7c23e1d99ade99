/*
 * cluster_map.hpp — which master serves each of a Redis Cluster's 16384
 * slots, learnt from `CLUSTER SLOTS` (asked of the known nodes in turn,
 * core/delivery/ask_in_turn.hpp) and corrected by MOVED replies.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/key_slot.hpp"
#include "core/redis/resp.hpp"
#include "core/redis/transport.hpp"

namespace cachebust {

class ClusterMap
{
  public:
	ClusterMap();

	/* Reads a CLUSTER SLOTS reply from `asked`; false (and unchanged) with why if it is not one. */
	bool load(const Reply &slots, const Endpoint &asked, std::string &why);
	bool empty() const { return masters_.empty(); }
	/* Every slot has a master. */
	bool complete() const;

	/* The master serving slot (nullptr: none known). */
	const Endpoint *master_for_slot(int slot) const;
	const std::vector<Endpoint> &masters() const { return masters_; }
	/* MOVED: the slot is served elsewhere now. */
	void move_slot(int slot, const Endpoint &to);
	/* Whether every slot has the same master in both maps. */
	bool same_slots(const ClusterMap &other) const;

  private:
	int index_of(const Endpoint &e);

	std::vector<Endpoint> masters_;
	std::vector<int16_t> slot_master_; /* index into masters_, -1: none */
};

} // namespace cachebust
