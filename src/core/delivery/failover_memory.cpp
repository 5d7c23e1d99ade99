/*
 * failover_memory.cpp — the acknowledgements a failover repeats.
 */
#include "core/delivery/failover_memory.hpp"

#include <algorithm>

#include "core/cpp_only.hpp"

namespace cachebust {

void
FailoverMemory::configure(int64_t window_us, size_t max_targets)
{
	window_us_ = window_us > 0 ? window_us : 0;
	max_targets_ = max_targets;
	if (window_us_ == 0)
		clear();
}

void
FailoverMemory::clear()
{
	nodes_.clear();
	targets_ = 0;
}

FailoverMemory::Node &
FailoverMemory::node(const Endpoint &endpoint)
{
	for (Node &n : nodes_)
		if (n.endpoint == endpoint)
			return n;
	nodes_.push_back(Node());
	nodes_.back().endpoint = endpoint;
	return nodes_.back();
}

/* What a node acknowledged before its window can never be repeated: gone. */
void
FailoverMemory::prune(Node &n)
{
	int64_t since = n.last_contact_us - window_us_;
	while (!n.applied.empty() && n.applied.front().at_us < since) {
		targets_ -= n.applied.front().targets.size();
		n.applied.pop_front();
	}
	std::vector<std::pair<std::string, int64_t>> kept;
	for (auto &f : n.forgotten)
		if (f.second >= since)
			kept.push_back(std::move(f));
	n.forgotten.swap(kept);
}

void
FailoverMemory::contact(const Endpoint &endpoint, int64_t now_us)
{
	if (!enabled())
		return;
	Node &n = node(endpoint);
	if (now_us > n.last_contact_us)
		n.last_contact_us = now_us;
	prune(n);
}

void
FailoverMemory::applied(const Endpoint &endpoint, int64_t now_us, std::vector<Target> &&targets)
{
	if (!enabled() || targets.empty())
		return;
	contact(endpoint, now_us);
	Node &n = node(endpoint);
	targets_ += targets.size();
	n.applied.push_back(Applied{now_us, std::move(targets)});
	size_t entries = 0;
	for (const Node &each : nodes_)
		entries += each.applied.size();
	while (targets_ > max_targets_ && entries-- > 1)
		forget_oldest();
}

/* Bounded memory: the oldest acknowledgement is forgotten, its prefixes kept for the fallback. */
void
FailoverMemory::forget_oldest()
{
	Node *oldest = nullptr;
	for (Node &n : nodes_)
		if (!n.applied.empty() && (oldest == nullptr || n.applied.front().at_us < oldest->applied.front().at_us))
			oldest = &n;
	if (oldest == nullptr)
		return;
	const Applied &a = oldest->applied.front();
	for (const Target &t : a.targets) {
		std::string prefix = target_prefix(t);
		bool known = false;
		for (auto &f : oldest->forgotten)
			if (f.first == prefix) {
				f.second = std::max(f.second, a.at_us);
				known = true;
			}
		if (!known)
			oldest->forgotten.push_back({prefix, a.at_us});
	}
	targets_ -= a.targets.size();
	oldest->applied.pop_front();
}

FailoverMemory::Repeat
FailoverMemory::take_repeat()
{
	Repeat out;
	for (Node &n : nodes_) {
		prune(n);
		for (Applied &a : n.applied)
			for (Target &t : a.targets)
				out.targets.push_back(std::move(t));
		for (auto &f : n.forgotten) {
			bool known = false;
			for (const std::string &p : out.prefixes)
				known = known || p == f.first;
			if (!known)
				out.prefixes.push_back(std::move(f.first));
		}
	}
	clear();
	return out;
}

} // namespace cachebust
