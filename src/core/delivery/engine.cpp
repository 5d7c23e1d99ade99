/*
 * engine.cpp — routing, the deployment's lanes, Sentinel following, and
 * the failover repeat. The cluster topology is in engine_cluster.cpp.
 */
#include "core/delivery/engine.hpp"

#include "core/key_slot.hpp"

#include <algorithm>
#include <cstdio>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

constexpr int64_t kRefusalLogIntervalUs = 60 * 1000 * 1000;
/* Tag receipts waiting for release; beyond this, the oldest expire on their own. */
constexpr size_t kMaxPendingReleases = 10000;
/* Sentinel: how often the sentinels are asked where the master is while it
 * answers (see follow_sentinel). */
constexpr int64_t kSentinelRecheckUs = 1000 * 1000;

/* A key as it may appear in a log line: at most 100 bytes, odd bytes escaped. */
std::string
printable_key(const std::string &key)
{
	std::string out;
	for (size_t i = 0; i < key.size() && i < 100; i++) {
		unsigned char c = static_cast<unsigned char>(key[i]);
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
			char buf[8];
			snprintf(buf, sizeof(buf), "\\x%02x", c);
			out += buf;
		} else
			out.push_back(static_cast<char>(c));
	}
	if (key.size() > 100)
		out += "...";
	return out;
}

} // namespace

void
DeliveryCounters::add(const DeliveryCounters &o)
{
	commands += o.commands;
	errors += o.errors;
	retries += o.retries;
	reconnects += o.reconnects;
	targets_failed += o.targets_failed;
	tag_members_skipped += o.tag_members_skipped;
	failovers += o.failovers;
	keys_scanned += o.keys_scanned;
	scan_passes += o.scan_passes;
}

DeliveryEngine::DeliveryEngine(uint64_t seed) : seed_(seed), scan_(static_cast<LaneHost &>(*this), 1000) {}

DeliveryEngine::~DeliveryEngine()
{
	/* Connections die without running callbacks that point into lanes. */
	lanes_.clear();
}

void
DeliveryEngine::log(LogLevel level, std::string message)
{
	report_.logs.push_back(LogLine{level, std::move(message)});
}

ConnectionSettings
DeliveryEngine::connection_settings(const Endpoint &endpoint) const
{
	ConnectionSettings cs;
	cs.endpoint = endpoint;
	cs.tls = tls_;
	cs.user = settings_.url.user;
	cs.password = settings_.url.password;
	cs.db = settings_.url.db;
	cs.connect_timeout_ms = settings_.connect_timeout_ms;
	cs.command_timeout_ms = settings_.command_timeout_ms;
	return cs;
}

void
DeliveryEngine::configure(const EngineSettings &settings)
{
	bool reconnect = !have_settings_ || settings.configured != settings_.configured ||
					 !(settings.url == settings_.url) || settings.tls != settings_.tls ||
					 settings.connect_timeout_ms != settings_.connect_timeout_ms ||
					 settings.command_timeout_ms != settings_.command_timeout_ms;
	settings_ = settings;
	have_settings_ = true;
	lane_settings_.tag_depth = settings.tag_depth;
	lane_settings_.unlink_chunk = settings.unlink_chunk;
	lane_settings_.retry_max_ms = settings.retry_max_ms;
	lane_settings_.tag_receipt_ttl_ms = settings.tag_receipt_ttl_ms;
	scan_.set_scan_count(settings.scan_count);
	if (reconnect)
		rebuild_lanes();
	remember_applied_ = settings.configured && settings.url.topology != RedisUrl::Topology::Single &&
						settings.failover_repeat_ms > 0;
	memory_.configure(remember_applied_ ? static_cast<int64_t>(settings.failover_repeat_ms) * 1000 : 0,
					  settings.max_pending);
}

/* Replaces the lanes for new connection settings, keeping everything they held. */
void
DeliveryEngine::rebuild_lanes()
{
	for (auto &lane : lanes_)
		lane->disconnect("cachebust's Redis settings changed");

	/* Everything in flight is back in the lanes now; keep it for the new ones. */
	for (auto &lane : lanes_) {
		scan_.node_replaced(*lane, nullptr);
		for (int s = 0; s < kStreams; s++) {
			SeqSet seqs;
			for (Target &t : lane->take_pending(static_cast<Stream>(s), seqs))
				unrouted_[s].insert(std::move(t), seqs);
		}
		for (Special &sp : lane->take_specials())
			unrouted_specials_.push_back(std::move(sp));
	}
	lanes_.clear();
	tls_.reset();

	if (!settings_.configured)
		return;
	if (settings_.url.tls) {
		try {
			tls_ = std::make_shared<TlsContext>(settings_.tls);
		} catch (const TransportError &e) {
			report_.note_error(e.what());
			log(LogLevel::Warning, std::string("cachebust worker cannot use TLS: ") + e.what());
			return; /* everything waits until the settings are fixed */
		}
	}
	sentinel_.reset();
	cluster_ask_.reset();
	cluster_map_ = ClusterMap();
	lane_settings_.group_by_slot = settings_.url.topology == RedisUrl::Topology::Cluster;
	master_known_ = false;
	sentinel_rechecking_ = false;
	unconfirmed_master_.reset();
	memory_.clear();
	if (settings_.url.topology == RedisUrl::Topology::Cluster) {
		/* Lanes come with the slot map: one per master. */
		std::vector<Endpoint> seeds;
		for (const HostPort &hp : settings_.url.hosts) {
			Endpoint e;
			e.host = hp.host;
			e.port = hp.port;
			seeds.push_back(e);
		}
		ConnectionSettings base = connection_settings(Endpoint());
		cluster_ask_ = std::make_unique<AskInTurn>(
			seeds, base, Command{"CLUSTER", "SLOTS"},
			[this](const Reply &r, const Endpoint &asked, std::string &why) {
				return cluster_answer_.load(r, asked, why);
			},
			"cluster node", "how the slots are spread", settings_.retry_max_ms, seed_);
		cluster_ask_->request();
	} else if (settings_.url.topology == RedisUrl::Topology::Sentinel) {
		std::vector<Endpoint> sentinels;
		for (const HostPort &hp : settings_.url.hosts) {
			Endpoint e;
			e.host = hp.host;
			e.port = hp.port;
			sentinels.push_back(e);
		}
		ConnectionSettings base;
		base.tls = tls_;
		base.password = settings_.url.sentinel_password;
		base.connect_timeout_ms = settings_.connect_timeout_ms;
		base.command_timeout_ms = settings_.command_timeout_ms;
		sentinel_ = std::make_unique<SentinelResolver>(sentinels, settings_.url.service, base,
													   settings_.retry_max_ms, seed_);
		/* The master, wherever the sentinels say it is; it must say so itself. */
		ConnectionSettings cs = connection_settings(Endpoint());
		cs.check = {"ROLE"};
		cs.accept_check = [](const Reply &r, std::string &why) {
			std::string role = r.type == Reply::Type::Array && !r.elements.empty() ? r.elements[0].str : "?";
			if (role == "master")
				return true;
			why = "the server the sentinels named is a " + role + ", not the master";
			return false;
		};
		lanes_.push_back(std::make_unique<Lane>(static_cast<LaneHost &>(*this), cs, seed_));
		lanes_.front()->hold(true);
		sentinel_->request();
	} else {
		Endpoint endpoint;
		if (settings_.url.transport == RedisUrl::Transport::Unix) {
			endpoint.unix_socket = true;
			endpoint.path = settings_.url.socket_path;
		} else {
			endpoint.host = settings_.url.hosts.at(0).host;
			endpoint.port = settings_.url.hosts.at(0).port;
		}
		lanes_.push_back(std::make_unique<Lane>(static_cast<LaneHost &>(*this), connection_settings(endpoint), seed_));
	}

	for (int s = 0; s < kStreams; s++) {
		SeqSet seqs;
		for (Target &t : unrouted_[s].take(seqs))
			route(std::move(t), static_cast<Stream>(s), seqs);
	}
	route_specials(std::move(unrouted_specials_));
}

Lane *
DeliveryEngine::lane_for(const std::string &key)
{
	if (!cluster())
		return lanes_.empty() ? nullptr : lanes_.front().get();
	const Endpoint *master = cluster_map_.master_for_slot(key_slot(key));
	return master == nullptr ? nullptr : &lane_at(*master);
}

std::vector<Lane *>
DeliveryEngine::masters()
{
	std::vector<Lane *> out;
	for (auto &lane : lanes_)
		out.push_back(lane.get());
	return out;
}

void
DeliveryEngine::route(Target &&t, Stream s, const SeqSet &seqs)
{
	if (t.glob) {
		scan_.add(std::move(t), s, seqs);
		return;
	}
	Lane *lane = lane_for(t.key);
	if (lane == nullptr)
		unrouted_[static_cast<int>(s)].insert(std::move(t), seqs);
	else
		lane->add(std::move(t), s, seqs);
}

void
DeliveryEngine::submit(std::vector<Target> &&targets, Stream s, const SeqSet &seqs)
{
	if (!targets.empty())
		submit_shares(std::move(targets), s, nullptr, seqs);
}

void
DeliveryEngine::submit_window(std::vector<Target> &&targets, Stream s, const std::vector<Contribution> &from)
{
	if (!targets.empty())
		submit_shares(std::move(targets), s, &from, SeqSet());
}

/*
 * Splits distinct targets by where they go — a node's lane, the SCAN pass,
 * or "unrouted" while no node serves them — and gives each share the
 * commits its targets came from (from: per target; else `all` for every
 * target). A commit is then held back only where its own targets wait.
 * Shares stay distinct, so lanes adopt them without hashing; each slot's
 * master is looked up once.
 */
void
DeliveryEngine::submit_shares(std::vector<Target> &&targets, Stream s, const std::vector<Contribution> *from,
							  const SeqSet &all)
{
	constexpr int kUnknown = -1;
	std::vector<int> share_of_slot(cluster() ? kClusterSlots : 0, kUnknown);
	/* Share 0: the SCAN pass; 1: unrouted; then one per lane. */
	std::vector<Lane *> share_lane{nullptr, nullptr};
	std::vector<uint32_t> share_of(targets.size());
	auto share_for_lane = [&](Lane *lane) {
		if (lane == nullptr)
			return 1;
		auto known = std::find(share_lane.begin() + 2, share_lane.end(), lane);
		if (known != share_lane.end())
			return static_cast<int>(known - share_lane.begin());
		share_lane.push_back(lane);
		return static_cast<int>(share_lane.size() - 1);
	};
	for (size_t i = 0; i < targets.size(); i++) {
		const Target &t = targets[i];
		int share;
		if (t.glob)
			share = 0;
		else if (cluster()) {
			int &known = share_of_slot[key_slot(t.key)];
			if (known == kUnknown)
				known = share_for_lane(lane_for(t.key));
			share = known;
		} else
			share = share_for_lane(lane_for(t.key));
		share_of[i] = static_cast<uint32_t>(share);
	}

	std::vector<SeqSet> seqs(share_lane.size(), all);
	if (from != nullptr)
		for (const Contribution &c : *from)
			for (uint32_t i = c.lo; i <= c.hi && i < targets.size(); i++)
				seqs[share_of[i]].add(c.seq);

	std::vector<std::vector<Target>> shares(share_lane.size());
	for (size_t i = 0; i < targets.size(); i++)
		shares[share_of[i]].push_back(std::move(targets[i]));
	for (Target &t : shares[0])
		scan_.add(std::move(t), s, seqs[0]);
	for (Target &t : shares[1])
		unrouted_[static_cast<int>(s)].insert(std::move(t), seqs[1]);
	for (size_t i = 2; i < shares.size(); i++)
		share_lane[i]->add_batch(std::move(shares[i]), s, seqs[i]);
	pump();
}

void
DeliveryEngine::submit_flushdb(Stream s, const SeqSet &seqs, uint32_t job)
{
	route_special(Special{Special::Kind::FlushDb, {"FLUSHDB", "ASYNC"}, s, seqs, job});
	pump();
}

void
DeliveryEngine::publish(std::string message, const SeqSet &seqs)
{
	route_special(Special{Special::Kind::Publish,
						  {settings_.publish_sharded ? "SPUBLISH" : "PUBLISH", settings_.publish_channel,
						   std::move(message)},
						  Stream::First, seqs, 0});
	pump();
}

/* FLUSHDB goes to every master; a publication to the master of its
 * channel's slot (SPUBLISH must, PUBLISH may go anywhere). Without a lane
 * to take it (no slot map yet, no deployment) it waits unrouted. */
void
DeliveryEngine::route_special(Special &&sp)
{
	if (sp.kind == Special::Kind::FlushDb) {
		if (lanes_.empty())
			unrouted_specials_.push_back(std::move(sp));
		else
			for (Lane *lane : masters())
				lane->add_special(Special(sp));
		return;
	}
	Lane *lane = lane_for(sp.command.at(1));
	if (lane == nullptr)
		unrouted_specials_.push_back(std::move(sp));
	else
		lane->add_special(std::move(sp));
}

/* Specials whose lane went (new settings, a node retired, a new slot map): routed again. */
void
DeliveryEngine::route_specials(std::deque<Special> &&specials)
{
	std::deque<Special> taken;
	taken.swap(specials); /* (it may be unrouted_specials_ itself) */
	for (Special &sp : taken)
		route_special(std::move(sp));
}

void
DeliveryEngine::unresolvable(const Target &t, Stream s, const SeqSet &seqs, const std::string &)
{
	report_.fallback_needs.push_back(FallbackNeed{target_prefix(t), s, seqs});
	needs_held_[static_cast<int>(s)].merge(seqs);
}

void
DeliveryEngine::job_failed(uint32_t job)
{
	report_.failed_jobs.push_back(job);
}

void
DeliveryEngine::lane_failed(Lane &lane, const std::string &why, bool reresolve)
{
	if (sentinel_ && reresolve) {
		/* Ask where the master is before connecting again. */
		lane.hold(true);
		sentinel_->request();
	}
	if (cluster_ask_ && reresolve)
		cluster_ask_->request(); /* a failover moves the node's slots to its replica */
	std::string endpoint = lane.endpoint().describe();
	report_.note_error(why, endpoint);
	/* One LOG line per outage, not one per retry. */
	log(lane.failing() ? LogLevel::Debug : LogLevel::Log,
		"cachebust worker: delivery to Redis at " + endpoint + " failed: " + why + "; retrying with backoff");
}

void
DeliveryEngine::lane_recovered(Lane &lane)
{
	log(LogLevel::Log, "cachebust worker: delivery to Redis at " + lane.endpoint().describe() + " resumed");
}

void
DeliveryEngine::note_refusal(const std::string &command, const std::string &key, const std::string &error,
							 const char *resolution)
{
	/* The key goes to the log, and to stats.last_error only for some roles. */
	std::string shown_key = key.empty() ? std::string() : printable_key(key);
	report_.note_error("Redis refused " + command + ": " + error, std::string(), shown_key);

	int64_t now = monotonic_us();
	if (refusal_logged_at_us_ != 0 && now - refusal_logged_at_us_ < kRefusalLogIntervalUs) {
		refusals_unlogged_++;
		return;
	}
	std::string message = "cachebust worker: Redis refused " + command +
						  (key.empty() ? "" : " on \"" + shown_key + "\"") + ": " + error + "; " + resolution;
	if (refusals_unlogged_ > 0)
		message += " (" + std::to_string(refusals_unlogged_) + " more refusals since the last report)";
	log(LogLevel::Warning, std::move(message));
	refusal_logged_at_us_ = now;
	refusals_unlogged_ = 0;
}

uint64_t
DeliveryEngine::min_held_seq(Stream s) const
{
	int i = static_cast<int>(s);
	uint64_t min = std::min({needs_held_[i].min(), unrouted_[i].min_seq(), scan_.min_seq(s)});
	for (const Special &sp : unrouted_specials_)
		if (sp.stream == s)
			min = std::min(min, sp.seqs.min());
	for (const auto &lane : lanes_)
		min = std::min(min, lane->min_seq(s));
	return min;
}

void
DeliveryEngine::add_held(Stream s, SeqSet &out) const
{
	int i = static_cast<int>(s);
	out.merge(needs_held_[i]);
	out.merge(unrouted_[i].seqs());
	scan_.add_held(s, out);
	for (const Special &sp : unrouted_specials_)
		if (sp.stream == s)
			out.merge(sp.seqs);
	for (const auto &lane : lanes_)
		lane->add_held(s, out);
}

size_t
DeliveryEngine::held_targets() const
{
	size_t n = scan_.held_targets();
	for (const TargetSet &set : unrouted_)
		n += set.size();
	for (const auto &lane : lanes_)
		n += lane->held_targets();
	return n;
}

size_t
DeliveryEngine::unsent_targets() const
{
	size_t n = scan_.held_targets();
	for (const TargetSet &set : unrouted_)
		n += set.size();
	for (const auto &lane : lanes_)
		n += lane->unsent_targets();
	return n;
}

DroppedTargets
DeliveryEngine::drop_unsent()
{
	DroppedTargets dropped;
	for (int s = 0; s < kStreams; s++)
		dropped.min_seq[s] = min_held_seq(static_cast<Stream>(s));
	std::vector<Target> all = scan_.take_waiting();
	for (auto &lane : lanes_)
		for (Target &t : lane->take_unsent())
			all.push_back(std::move(t));
	for (TargetSet &set : unrouted_)
		for (Target &t : set.take())
			all.push_back(std::move(t));
	dropped.count = all.size();
	for (const Target &t : all) {
		std::string prefix = target_prefix(t);
		if (std::find(dropped.prefixes.begin(), dropped.prefixes.end(), prefix) == dropped.prefixes.end())
			dropped.prefixes.push_back(std::move(prefix));
	}
	return dropped;
}

/* Takes the sentinels' answer: a master found (maybe a new one), or none. */
void
DeliveryEngine::follow_sentinel()
{
	if (!sentinel_)
		return;
	/* A switchover (SENTINEL FAILOVER) leaves the old master answering as a
	 * master until the sentinels demote it, their INFO period (10 s) later;
	 * what it acknowledges meanwhile is lost when it resyncs. So the
	 * sentinels are asked again every second while it answers, not only
	 * when it fails us. */
	if (master_known_ && !sentinel_->busy() && monotonic_us() >= next_sentinel_check_us_) {
		sentinel_rechecking_ = true;
		sentinel_->request();
	}
	bool found;
	Endpoint master;
	std::string error;
	if (!sentinel_->take_result(found, master, error) || lanes_.empty())
		return;
	bool recheck = sentinel_rechecking_;
	sentinel_rechecking_ = false;
	Lane &lane = *lanes_.front();
	if (!found) {
		report_.note_error(sentinel_->error_without_addresses(), sentinel_->error_addresses());
		log(sentinel_failing_ ? LogLevel::Debug : LogLevel::Log,
			"cachebust worker: " + error + "; asking again with backoff");
		sentinel_failing_ = true;
		return;
	}
	sentinel_failing_ = false;
	next_sentinel_check_us_ = monotonic_us() + kSentinelRecheckUs;
	Endpoint before = lane.endpoint();
	/* Another master named while ours answers is asked of the next sentinel
	 * too: one that has not heard of a failover (or never will) must not
	 * move us back and forth. */
	if (recheck && master_known_ && master != before && lane.ready() && unconfirmed_master_ != master) {
		unconfirmed_master_ = master;
		sentinel_rechecking_ = true;
		sentinel_->request();
		return;
	}
	unconfirmed_master_.reset();
	if (master_known_ && master != before)
		master_changed(lane, before, master);
	else if (!master_known_)
		log(LogLevel::Log, "cachebust worker: the sentinels name " + master.describe() + " as the master of \"" +
							   settings_.url.service + "\"");
	master_known_ = true;
	lane.retarget(master);
	lane.hold(false);
}

/* A failover: count it, and repeat what the new master may have missed. */
void
DeliveryEngine::master_changed(Lane &lane, const Endpoint &from, const Endpoint &to)
{
	report_.counters.failovers++;
	log(LogLevel::Log, "cachebust worker: the master moved from " + from.describe() + " to " + to.describe() +
						   "; repeating what the old master acknowledged in the last " +
						   std::to_string(settings_.failover_repeat_ms) + " ms before its last reply");
	(void) lane;
	repeat_recent();
}

/* The failover repeat: what the old masters acknowledged lately goes
 * again, to whoever serves it now (replication is asynchronous). */
void
DeliveryEngine::repeat_recent()
{
	FailoverMemory::Repeat repeat = memory_.take_repeat();
	for (Target &t : repeat.targets) {
		t.delivery &= static_cast<uint8_t>(~(kDeliverSubstitute | kDeliverAsking));
		route(std::move(t), Stream::Redelete, 0);
	}
	for (std::string &prefix : repeat.prefixes)
		report_.fallback_needs.push_back(FallbackNeed{std::move(prefix), Stream::Redelete, 0});
}

void
DeliveryEngine::applied(Lane &lane, std::vector<Target> &&targets)
{
	if (remember_applied_)
		memory_.applied(lane.endpoint(), monotonic_us(), std::move(targets));
}

void
DeliveryEngine::contact(Lane &lane)
{
	if (remember_applied_)
		memory_.contact(lane.endpoint(), monotonic_us());
}

void
DeliveryEngine::release_when_applied(TagRelease &&release, Stream s, const SeqSet &seqs)
{
	if (releases_.size() >= kMaxPendingReleases)
		releases_.pop_front();
	releases_.push_back(PendingRelease{std::move(release), s, seqs});
}

/* A receipt is kept until no commit its members belong to is held any more
 * (then a worker crash cannot need it again), and its node is reachable. */
void
DeliveryEngine::release_tag_receipts()
{
	if (releases_.empty())
		return;
	SeqSet held[kStreams];
	for (int s = 0; s < kStreams; s++)
		add_held(static_cast<Stream>(s), held[s]);
	std::deque<PendingRelease> waiting;
	for (PendingRelease &r : releases_) {
		bool applied = true;
		for (const SeqSet::Range &range : r.seqs.ranges())
			applied = applied && !held[static_cast<int>(r.stream)].intersects(range.lo, range.hi);
		Lane *lane = applied ? lane_for(r.release.tag) : nullptr;
		if (lane != nullptr && lane->sending())
			lane->release_tag_receipt(r.release);
		else
			waiting.push_back(std::move(r));
	}
	releases_.swap(waiting);
}

void
DeliveryEngine::pump()
{
	follow_sentinel();
	follow_cluster();
	scan_.start_if_due(masters());
	release_tag_receipts();
	for (size_t i = 0; i < lanes_.size(); i++) {
		Lane *lane = lanes_[i].get();
		lane->pump();
		scan_.step(*lane);
		lane->connection().flush();
	}
}

void
DeliveryEngine::poll_entries(std::vector<PollEntry> &out) const
{
	if (sentinel_)
		sentinel_->poll_entries(out);
	if (cluster_ask_)
		cluster_ask_->poll_entries(out);
	for (const auto &lane : lanes_) {
		const Connection &c = lane->connection();
		if (c.fd() >= 0 && (c.want_read() || c.want_write()))
			out.push_back(PollEntry{c.fd(), c.socket_id(), c.want_read(), c.want_write()});
	}
}

int64_t
DeliveryEngine::deadline_us() const
{
	int64_t deadline = sentinel_ ? sentinel_->deadline_us() : 0;
	if (cluster_ask_) {
		int64_t d = cluster_ask_->deadline_us();
		if (d == 0 || next_map_refresh_us_ < d)
			d = next_map_refresh_us_;
		if (d != 0 && (deadline == 0 || d < deadline))
			deadline = d;
	}
	for (const auto &lane : lanes_) {
		int64_t d = lane->deadline_us();
		if (d != 0 && (deadline == 0 || d < deadline))
			deadline = d;
	}
	return deadline;
}

void
DeliveryEngine::on_io(int fd, bool readable, bool writable)
{
	if (sentinel_)
		sentinel_->on_io(fd, readable, writable);
	if (cluster_ask_)
		cluster_ask_->on_io(fd, readable, writable);
	/* (By index: a reply may add a lane, a MOVED to a new node.) */
	for (size_t i = 0; i < lanes_.size(); i++) {
		Lane *lane = lanes_[i].get();
		if (lane->connection().fd() == fd) {
			lane->connection().on_io(readable, writable);
			break;
		}
	}
	pump();
}

void
DeliveryEngine::on_timer()
{
	if (sentinel_)
		sentinel_->on_timer();
	if (cluster_ask_)
		cluster_ask_->on_timer();
	for (size_t i = 0; i < lanes_.size(); i++)
		lanes_[i]->on_timer();
	pump();
}

bool
DeliveryEngine::connected() const
{
	if (lanes_.empty())
		return false;
	for (const auto &lane : lanes_)
		if (!lane->ready())
			return false;
	return true;
}

bool
DeliveryEngine::start_count(uint64_t id, const std::string &glob, uint64_t limit, std::string &why)
{
	if (!settings_.configured)
		why = "cachebust.redis_url is not set";
	else if (!connected())
		why = "the cachebust worker is not connected to Redis right now";
	else {
		scan_.add_count(id, glob, limit);
		pump();
		return true;
	}
	return false;
}

DeliveryReport
DeliveryEngine::take_report()
{
	DeliveryReport out = std::move(report_);
	report_ = DeliveryReport();
	for (SeqSet &s : needs_held_)
		s.clear();
	return out;
}

} // namespace cachebust
