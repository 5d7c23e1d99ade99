/*
 * engine.hpp — delivering targets to a Redis deployment.
 *
 * The worker hands the engine each closed coalescing window (and
 * fallbacks, publications, second sends); the engine routes every target
 * to the lane of the node that holds its key, matches globs in a shared
 * SCAN pass, and resolves what Redis refuses. It is event driven and never
 * blocks: the worker asks which sockets to wait for (poll_entries,
 * deadline_us), waits on them together with its latch, and hands back what
 * happened (on_io, on_timer).
 *
 * Progress is measured in commit sequence numbers, per stream:
 * min_held_seq(s) is the oldest commit that still has a target waiting
 * anywhere in the engine, so every commit below it is applied in Redis.
 *
 * Pure C++: no PostgreSQL here (the worker in src/pg is the only user).
 */
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/coalescer.hpp"
#include "core/delivery/failover_memory.hpp"
#include "core/delivery/lane.hpp"
#include "core/delivery/report.hpp"
#include "core/delivery/scan_pass.hpp"
#include "core/delivery/cluster_map.hpp"
#include "core/delivery/sentinel.hpp"
#include "core/redis/tls.hpp"
#include "core/redis/url.hpp"

namespace cachebust {

struct EngineSettings {
	bool configured = false; /* false: cachebust.redis_url is not set; everything waits */
	RedisUrl url;
	TlsSettings tls;
	int connect_timeout_ms = 1000;
	int command_timeout_ms = 2000;
	int retry_max_ms = 5000;
	int tag_depth = 3;
	size_t unlink_chunk = 512;
	size_t scan_count = 1000;
	std::string publish_channel;
	bool publish_sharded = false;
	/* The failover repeat: after a master changes, what each master
	 * acknowledged within this window before its last healthy contact is
	 * applied again (bounded by max_pending targets; beyond that, the
	 * fallback). 0: no repeat. */
	int failover_repeat_ms = 10000;
	size_t max_pending = 1000000;
	/* The longest a tag's receipt (tag_script.hpp) outlives the attempt that filled it. */
	int tag_receipt_ttl_ms = 3600 * 1000;
};

struct PollEntry {
	int fd;
	uint64_t socket_id; /* Connection::socket_id() */
	bool read;
	bool write;
};

/* Targets removed before they were sent (max_pending), and what they held back. */
struct DroppedTargets {
	size_t count = 0;
	std::vector<std::string> prefixes;
	uint64_t min_seq[kStreams] = {kNoSeq, kNoSeq, kNoSeq};
};

class DeliveryEngine final : private LaneHost
{
  public:
	explicit DeliveryEngine(uint64_t seed);
	~DeliveryEngine() override;
	DeliveryEngine(const DeliveryEngine &) = delete;
	DeliveryEngine &operator=(const DeliveryEngine &) = delete;

	/* Applies settings. A changed endpoint, credentials, TLS or timeouts
	 * reconnect; what was waiting or in flight is delivered to the new one. */
	void configure(const EngineSettings &settings);

	/* Targets to apply on behalf of the commits seqs (each target for all of them). */
	void submit(std::vector<Target> &&targets, Stream s, const SeqSet &seqs);
	/* A closed window: from says which commit each target came from. */
	void submit_window(std::vector<Target> &&targets, Stream s, const std::vector<Contribution> &from);
	/* The flushdb fallback: FLUSHDB on every master. */
	void submit_flushdb(Stream s, const SeqSet &seqs, uint32_t job);
	/* PUBLISH (or SPUBLISH) on publish_channel, held back as the commits seqs. */
	void publish(std::string message, const SeqSet &seqs);

	uint64_t min_held_seq(Stream s) const;
	/* Adds every commit that still has something waiting on stream s. */
	void add_held(Stream s, SeqSet &out) const;
	/* Targets held anywhere, and those not sent yet (what max_pending bounds). */
	size_t held_targets() const;
	size_t unsent_targets() const;
	DroppedTargets drop_unsent();

	void poll_entries(std::vector<PollEntry> &out) const;
	/* Monotonic time (core/redis/connection.hpp) of the next on_timer (0: none). */
	int64_t deadline_us() const;
	void on_io(int fd, bool readable, bool writable);
	void on_timer();

	/* Connected to every node. */
	bool connected() const;

	/* cachebust.clear()'s count of the keys glob matches (scan_pass.hpp).
	 * False, with why, when there is no Redis to ask right now. */
	bool start_count(uint64_t id, const std::string &glob, uint64_t limit, std::string &why);
	bool count_progress(uint64_t id, CountProgress &out) const { return scan_.count_progress(id, out); }
	void end_count(uint64_t id) { scan_.end_count(id); }

	/* What happened since the last call. */
	DeliveryReport take_report();

  private:
	/* LaneHost */
	const LaneSettings &lane_settings() const override { return lane_settings_; }
	DeliveryReport &report() override { return report_; }
	void route(Target &&t, Stream s, const SeqSet &seqs) override;
	void unresolvable(const Target &t, Stream s, const SeqSet &seqs, const std::string &why) override;
	void redirected(Lane &from, Target &&t, Stream s, const SeqSet &seqs, const Classified &c) override;
	void special_redirected(Lane &from, Special &&sp, const Classified &c) override;
	void lane_failed(Lane &lane, const std::string &why, bool reresolve) override;
	void lane_recovered(Lane &lane) override;
	void note_refusal(const std::string &command, const std::string &key, const std::string &error,
					  const char *resolution) override;
	void job_failed(uint32_t job) override;
	void applied(Lane &lane, std::vector<Target> &&targets) override;
	bool remembers_applied() const override { return remember_applied_; }
	void release_when_applied(TagRelease &&release, Stream s, const SeqSet &seqs) override;
	void contact(Lane &lane) override;

	/* Sentinel (engine.cpp) */
	void follow_sentinel();
	void master_changed(Lane &lane, const Endpoint &from, const Endpoint &to);
	void repeat_recent();

	/* Cluster topology (engine_cluster.cpp) */
	void follow_cluster();
	void apply_cluster_map(const ClusterMap &map);
	Lane &lane_at(const Endpoint &endpoint);
	void retire_lane(size_t index);
	bool cluster() const { return settings_.configured && settings_.url.topology == RedisUrl::Topology::Cluster; }
	/* Where a redirection sent to `from` points. */
	static Endpoint redirect_target(const Lane &from, const Classified &c);

	void rebuild_lanes();
	ConnectionSettings connection_settings(const Endpoint &endpoint) const;
	Lane *lane_for(const std::string &key);
	void submit_shares(std::vector<Target> &&targets, Stream s, const std::vector<Contribution> *from,
					   const SeqSet &all);
	/* Puts a special where it goes now (or unrouted while no lane serves it). */
	void route_special(Special &&sp);
	void route_specials(std::deque<Special> &&specials);
	std::vector<Lane *> masters();
	void pump();
	void release_tag_receipts();
	void log(LogLevel level, std::string message);

	uint64_t seed_;
	EngineSettings settings_;
	bool have_settings_ = false;
	LaneSettings lane_settings_;
	std::shared_ptr<TlsContext> tls_;
	DeliveryReport report_;

	std::vector<std::unique_ptr<Lane>> lanes_;
	ScanPass scan_;
	/* Waiting while there is no deployment to route to (no URL, bad TLS files). */
	TargetSet unrouted_[kStreams];
	std::deque<Special> unrouted_specials_;
	/* Held back until the worker has taken the fallback needs from the report. */
	SeqSet needs_held_[kStreams];

	/* Sentinel: who says where the master is. */
	std::unique_ptr<SentinelResolver> sentinel_;
	bool master_known_ = false;
	bool sentinel_failing_ = false;
	int64_t next_sentinel_check_us_ = 0; /* asked again then, while the master answers */
	bool sentinel_rechecking_ = false; /* the answer awaited is such a check's */
	std::optional<Endpoint> unconfirmed_master_; /* named by one check, not yet by the next */

	/* Cluster: the slot map, who is asked for it, and when next. */
	ClusterMap cluster_map_;
	ClusterMap cluster_answer_;
	std::unique_ptr<AskInTurn> cluster_ask_;
	int64_t next_map_refresh_us_ = 0;
	bool cluster_failing_ = false;

	/* What the masters acknowledged lately, for the failover repeat (with Sentinel and Cluster). */
	FailoverMemory memory_;
	bool remember_applied_ = false;

	/* Tag receipts to release once the commits their members belong to are
	 * applied (bounded: the oldest are left to their TTL). */
	struct PendingRelease {
		TagRelease release;
		Stream stream;
		SeqSet seqs;
	};
	std::deque<PendingRelease> releases_;

	/* Refusals are logged at most once a minute, with how many followed. */
	int64_t refusal_logged_at_us_ = 0;
	uint64_t refusals_unlogged_ = 0;
};

} // namespace cachebust
