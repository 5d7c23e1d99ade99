/*
 * refresh_waits.cpp — see refresh_waits.hpp.
 */
#include "core/delivery/refresh_waits.hpp"

#include <algorithm>
#include <climits>

#include "core/cpp_only.hpp"
#include "core/row_refresh.hpp"

namespace cachebust {

std::vector<RefreshNeed>
split_refreshes(std::vector<Target> &targets, std::vector<Contribution> &from)
{
	std::vector<RefreshNeed> needs;
	/* new_position[i]: where target i goes (UINT32_MAX: it is a refresh, needs[refresh_of[i]]) */
	std::vector<uint32_t> new_position;
	std::vector<uint32_t> refresh_of;
	uint32_t kept = 0;
	for (uint32_t i = 0; i < targets.size(); i++) {
		if (targets[i].kind != TargetKind::Refresh) {
			if (!new_position.empty()) {
				new_position[i] = kept;
				if (kept != i)
					targets[kept] = std::move(targets[i]);
			}
			kept++;
			continue;
		}
		if (new_position.empty()) {
			/* The first refresh: only now is the bookkeeping worth it. */
			new_position.resize(targets.size());
			refresh_of.resize(targets.size());
			for (uint32_t j = 0; j < i; j++)
				new_position[j] = j;
		}
		new_position[i] = UINT32_MAX;
		refresh_of[i] = static_cast<uint32_t>(needs.size());
		needs.push_back(RefreshNeed{std::move(targets[i]), SeqSet(), 0, 0});
	}
	if (needs.empty())
		return needs;
	targets.resize(kept);

	std::vector<Contribution> remaining;
	for (const Contribution &c : from) {
		/* Kept targets stay contributions (adjacent ones in one); refreshes record the commit. */
		bool open = false;
		for (uint32_t i = c.lo; i <= c.hi; i++) {
			if (new_position[i] == UINT32_MAX) {
				RefreshNeed &need = needs[refresh_of[i]];
				need.seqs.add(c.seq);
				need.commits++;
				continue;
			}
			if (open && remaining.back().hi + 1 == new_position[i])
				remaining.back().hi = new_position[i];
			else
				remaining.push_back(Contribution{new_position[i], new_position[i], c.seq});
			open = true;
		}
	}
	from.swap(remaining);
	return needs;
}

Target
removal_of(const Target &refresh)
{
	Target t;
	t.kind = TargetKind::Key;
	t.key = std::string(redis_key_of(refresh)); /* (a row refresh's key is a composite) */
	t.prefix_len = refresh.prefix_len;
	t.immediate = refresh.immediate;
	return t;
}

bool
RefreshWaits::add(RefreshNeed &&need, int64_t now_us, RefreshHost &host)
{
	uint64_t generation = host.request_refresh(need.target.database, need.target.key);
	if (generation == 0) {
		counters_.removed++;
		return false;
	}
	counters_.requested++;
	counters_.coalesced += need.commits > 0 ? need.commits - 1 : 0;
	Id id(need.target.database, need.target.key);
	Key &key = keys_[id];
	if (key.requests.empty())
		key.target = std::move(need.target);
	if (!key.requests.empty() && key.requests.back().generation == generation) {
		/* Not taken yet: this request rides on the waiting one. */
		Request &waiting = key.requests.back();
		waiting.seqs.merge(need.seqs);
		if (waiting.commit_wall_us == 0 || (need.commit_wall_us != 0 && need.commit_wall_us < waiting.commit_wall_us))
			waiting.commit_wall_us = need.commit_wall_us;
		counters_.coalesced += need.commits > 0 ? 1 : 0;
		return true;
	}
	key.requests.push_back(Request{generation, std::move(need.seqs), now_us + timeout_us_, need.commit_wall_us});
	return true;
}

void
RefreshWaits::poll(int64_t now_us, int64_t wall_us, RefreshHost &host, std::vector<RefreshNeed> &expired)
{
	for (auto it = keys_.begin(); it != keys_.end();) {
		Key &key = it->second;
		uint64_t done = host.refresh_done(it->first.first, it->first.second);
		while (!key.requests.empty() && key.requests.front().generation <= done) {
			/* (Commits read back from WAL have no commit time to measure from.) */
			if (key.requests.front().commit_wall_us != 0)
				counters_.latency.record(
					static_cast<uint64_t>(std::max<int64_t>(wall_us - key.requests.front().commit_wall_us, 0)));
			key.requests.pop_front();
			counters_.done++;
		}
		/* Too late: the key goes, and so do the requests after it (their
		 * removal covers them as well). */
		if (!key.requests.empty() && key.requests.front().expires_us <= now_us) {
			RefreshNeed need{std::move(key.target), SeqSet(), 0, 0};
			for (Request &r : key.requests)
				need.seqs.merge(r.seqs);
			key.requests.clear();
			counters_.removed++;
			expired.push_back(std::move(need));
		}
		if (key.requests.empty()) {
			host.refresh_forget(it->first.first, it->first.second);
			it = keys_.erase(it);
		} else
			++it;
	}
}

void
RefreshWaits::add_held(SeqSet &out) const
{
	for (const auto &entry : keys_)
		for (const Request &r : entry.second.requests)
			out.merge(r.seqs);
}

int64_t
RefreshWaits::next_expiry_us() const
{
	int64_t next = INT64_MAX;
	for (const auto &entry : keys_)
		if (!entry.second.requests.empty())
			next = std::min(next, entry.second.requests.front().expires_us);
	return next;
}

} // namespace cachebust
