/*
 * engine_cluster.cpp — following a Redis Cluster's topology: the slot map,
 * one lane per master, and what MOVED and ASK say about where a key (or a
 * sharded channel) lives now.
 */
#include "core/delivery/engine.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

/* A cluster's slot map is asked for again this often (and at every trouble). */
constexpr int64_t kMapRefreshUs = 10 * 1000 * 1000;
/* A special redirected this often was never applied: nodes disagree, or
 * keep moving its slot. It is given up rather than retried forever. */
constexpr int kMaxSpecialRedirects = 16;

} // namespace

/* The lane of a cluster node, made on first use. */
Lane &
DeliveryEngine::lane_at(const Endpoint &endpoint)
{
	for (auto &lane : lanes_)
		if (lane->endpoint() == endpoint)
			return *lane;
	lanes_.push_back(std::make_unique<Lane>(static_cast<LaneHost &>(*this), connection_settings(endpoint),
											seed_ + lanes_.size()));
	return *lanes_.back();
}

/* A node that no longer serves slots: what waits for it goes where its slots went. */
void
DeliveryEngine::retire_lane(size_t index)
{
	std::unique_ptr<Lane> lane = std::move(lanes_[index]);
	lanes_.erase(lanes_.begin() + static_cast<long>(index));
	lane->disconnect("the node no longer serves slots");
	scan_.node_replaced(*lane, nullptr);
	for (int s = 0; s < kStreams; s++) {
		SeqSet seqs;
		for (Target &t : lane->take_pending(static_cast<Stream>(s), seqs)) {
			t.delivery &= static_cast<uint8_t>(~kDeliverAsking);
			route(std::move(t), static_cast<Stream>(s), seqs);
		}
	}
	route_specials(lane->take_specials());
}

/* Takes a new slot map: lanes for new masters, none for old ones, waiting targets routed. */
void
DeliveryEngine::apply_cluster_map(const ClusterMap &map)
{
	bool first = cluster_map_.empty();
	if (!first && !map.same_slots(cluster_map_))
		scan_.slots_moved();
	cluster_map_ = map;
	for (const Endpoint &master : map.masters())
		lane_at(master);
	std::vector<std::string> gone;
	for (size_t i = lanes_.size(); i-- > 0;) {
		bool serves = false;
		for (const Endpoint &master : map.masters())
			serves = serves || lanes_[i]->endpoint() == master;
		if (!serves) {
			gone.push_back(lanes_[i]->endpoint().describe());
			retire_lane(i);
		}
	}
	if (first)
		log(LogLevel::Log, "cachebust worker: the cluster has " + std::to_string(map.masters().size()) + " masters");
	else if (!gone.empty()) {
		/* A master replaced (a failover) or emptied (resharding): the failover repeat, it is cheap. */
		report_.counters.failovers += gone.size();
		std::string list;
		for (const std::string &g : gone)
			list += (list.empty() ? "" : ", ") + g;
		log(LogLevel::Log, "cachebust worker: cluster node(s) " + list +
							   " no longer serve slots; their targets go to the new owners, and what the masters "
							   "acknowledged in the last " +
							   std::to_string(settings_.failover_repeat_ms) +
							   " ms before they stopped answering is repeated");
		repeat_recent();
	}
	for (int s = 0; s < kStreams; s++) {
		SeqSet seqs;
		std::vector<Target> waiting = unrouted_[s].take(seqs);
		for (Target &t : waiting)
			route(std::move(t), static_cast<Stream>(s), seqs);
	}
	route_specials(std::move(unrouted_specials_));
}

void
DeliveryEngine::follow_cluster()
{
	if (!cluster_ask_)
		return;
	if (monotonic_us() >= next_map_refresh_us_) {
		cluster_ask_->request();
		next_map_refresh_us_ = monotonic_us() + kMapRefreshUs;
	}
	bool answered;
	std::string error;
	if (!cluster_ask_->take_result(answered, error))
		return;
	if (!answered) {
		report_.note_error(cluster_ask_->error_without_addresses(), cluster_ask_->error_addresses());
		log(cluster_failing_ ? LogLevel::Debug : LogLevel::Log, "cachebust worker: " + error + "; asking again with backoff");
		cluster_failing_ = true;
		return;
	}
	cluster_failing_ = false;
	apply_cluster_map(cluster_answer_);
	/* Ask the nodes we know now, the seeds last. */
	std::vector<Endpoint> servers = cluster_map_.masters();
	for (const HostPort &hp : settings_.url.hosts) {
		Endpoint e;
		e.host = hp.host;
		e.port = hp.port;
		servers.push_back(e);
	}
	cluster_ask_->set_servers(servers);
}

Endpoint
DeliveryEngine::redirect_target(const Lane &from, const Classified &c)
{
	Endpoint to = c.target;
	if (c.same_host)
		to.host = from.endpoint().host;
	return to;
}

void
DeliveryEngine::redirected(Lane &from, Target &&t, Stream s, const SeqSet &seqs, const Classified &c)
{
	if (cluster()) {
		Endpoint to = redirect_target(from, c);
		if (c.kind == ReplyClass::Ask) {
			/* The slot is migrating and this key has moved: ask the importing node, this once.
			 * (Keys are moving: a SCAN pass running now may miss some.) */
			scan_.slots_moved();
			t.delivery |= kDeliverAsking | kDeliverAlone;
			lane_at(to).add(std::move(t), s, seqs);
			return;
		}
		/* MOVED: the slot lives elsewhere now; correct the map, refresh it, route again. */
		cluster_map_.move_slot(c.slot, to);
		scan_.slots_moved();
		cluster_ask_->request();
		t.delivery &= static_cast<uint8_t>(~kDeliverAsking);
		route(std::move(t), s, seqs);
		return;
	}
	/* Not a cluster: a redirection means we talk to the wrong server. */
	from.add(std::move(t), s, seqs);
	from.disconnect("Redis answered with a cluster redirection; cachebust.redis_url does not name a cluster");
	lane_failed(from, "Redis answered with a cluster redirection (use a redis-cluster:// URL)", false);
}

/* A special follows MOVED and ASK like a target, a bounded number of times. */
void
DeliveryEngine::special_redirected(Lane &from, Special &&sp, const Classified &c)
{
	if (!cluster()) {
		from.add_special(std::move(sp));
		from.disconnect("Redis answered with a cluster redirection; cachebust.redis_url does not name a cluster");
		lane_failed(from, "Redis answered with a cluster redirection (use a redis-cluster:// URL)", false);
		return;
	}
	if (++sp.redirects > kMaxSpecialRedirects) {
		report_.counters.errors++;
		report_.note_error(sp.command[0] + " was redirected " + std::to_string(kMaxSpecialRedirects) +
						   " times without being applied");
		bool publication = sp.kind == Special::Kind::Publish;
		log(LogLevel::Warning, "cachebust worker: " + report_.last_error + " (the cluster's nodes disagree on slot " +
								   std::to_string(c.slot) + "); " +
								   (publication ? "the message was dropped" : "the fallback is incomplete"));
		if (!publication)
			job_failed(sp.job);
		return;
	}
	Endpoint to = redirect_target(from, c);
	if (c.kind == ReplyClass::Ask || sp.kind == Special::Kind::FlushDb) {
		/* The channel's slot is migrating: the importing node, this once. */
		sp.asking = c.kind == ReplyClass::Ask;
		lane_at(to).add_special(std::move(sp));
		return;
	}
	cluster_map_.move_slot(c.slot, to);
	scan_.slots_moved();
	cluster_ask_->request();
	sp.asking = false;
	route_special(std::move(sp));
}

} // namespace cachebust
