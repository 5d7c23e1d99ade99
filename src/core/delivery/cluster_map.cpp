/*
 * cluster_map.cpp — the slot map.
 */
#include "core/delivery/cluster_map.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

ClusterMap::ClusterMap() : slot_master_(kClusterSlots, -1) {}

int
ClusterMap::index_of(const Endpoint &e)
{
	for (size_t i = 0; i < masters_.size(); i++)
		if (masters_[i] == e)
			return static_cast<int>(i);
	masters_.push_back(e);
	return static_cast<int>(masters_.size() - 1);
}

bool
ClusterMap::load(const Reply &slots, const Endpoint &asked, std::string &why)
{
	ClusterMap fresh;
	if (slots.type != Reply::Type::Array || slots.elements.empty()) {
		why = "no slots are assigned";
		return false;
	}
	for (const Reply &range : slots.elements) {
		/* [start, end, [host, port, id, ...], replicas...] */
		if (range.type != Reply::Type::Array || range.elements.size() < 3 ||
			range.elements[0].type != Reply::Type::Integer || range.elements[1].type != Reply::Type::Integer ||
			range.elements[2].type != Reply::Type::Array || range.elements[2].elements.size() < 2) {
			why = "a malformed CLUSTER SLOTS reply";
			return false;
		}
		long long start = range.elements[0].integer, end = range.elements[1].integer;
		const Reply &node = range.elements[2];
		Endpoint master;
		/* An empty host means "the address you reached me at". */
		master.host = node.elements[0].str.empty() ? asked.host : node.elements[0].str;
		master.port = static_cast<int>(node.elements[1].integer);
		if (start < 0 || end >= kClusterSlots || start > end || master.port <= 0 || master.port > 65535) {
			why = "a malformed CLUSTER SLOTS reply";
			return false;
		}
		int16_t index = static_cast<int16_t>(fresh.index_of(master));
		for (long long slot = start; slot <= end; slot++)
			fresh.slot_master_[slot] = index;
	}
	*this = std::move(fresh);
	return true;
}

bool
ClusterMap::complete() const
{
	for (int16_t m : slot_master_)
		if (m < 0)
			return false;
	return true;
}

const Endpoint *
ClusterMap::master_for_slot(int slot) const
{
	if (slot < 0 || slot >= kClusterSlots || slot_master_[slot] < 0)
		return nullptr;
	return &masters_[slot_master_[slot]];
}

bool
ClusterMap::same_slots(const ClusterMap &other) const
{
	for (int slot = 0; slot < kClusterSlots; slot++) {
		const Endpoint *a = master_for_slot(slot), *b = other.master_for_slot(slot);
		if ((a == nullptr) != (b == nullptr) || (a != nullptr && !(*a == *b)))
			return false;
	}
	return true;
}

void
ClusterMap::move_slot(int slot, const Endpoint &to)
{
	if (slot >= 0 && slot < kClusterSlots)
		slot_master_[slot] = static_cast<int16_t>(index_of(to));
}

} // namespace cachebust
