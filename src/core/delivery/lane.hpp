/*
 * lane.hpp — delivery to one Redis node.
 *
 * A lane owns the connection to one node (the server, the Sentinel's
 * current master, or one cluster master), the targets waiting for it
 * (deduplicated, per stream), the commands in flight, and its own backoff.
 * Lanes never wait for each other: a slow or failing node only holds back
 * its own targets.
 *
 * What a reply means is decided here, target by target (DESIGN.md,
 * promise 5): success; transient trouble → the target waits in the lane
 * and the lane backs off; a permanent refusal → the documented substitute
 * (a multi-key UNLINK is split so the refused key is found; a bump or tag
 * on a key of the wrong type → UNLINK of that key), and when even that is
 * refused the owner runs the fallback for the target's prefix. Nothing is
 * ever retried forever, and one refused target never holds back the others.
 * A tag script whose reply was lost may have popped the set: its retry is
 * answered by the tag's receipt (tag_script.hpp), or, where the node keeps
 * no receipt or the retry comes too late, the fallback covers the tag.
 */
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "core/backoff.hpp"
#include "core/delivery/report.hpp"
#include "core/redis/connection.hpp"
#include "core/redis/errors.hpp"
#include "core/target_set.hpp"

namespace cachebust {

class Lane;

/* What every lane shares: settings that shape commands. */
struct LaneSettings {
	int tag_depth = 3;
	size_t unlink_chunk = 512;
	int retry_max_ms = 5000;
	bool group_by_slot = false; /* Redis Cluster: a multi-key command stays in one slot */
	int tag_receipt_ttl_ms = 3600 * 1000; /* the longest a tag's receipt outlives its last attempt */
};

/* A tag's receipt (tag_script.hpp), to release once the members the
 * attempt returned are applied. */
struct TagRelease {
	std::string tag;
	uint32_t prefix_len;
	std::string attempt;
};

/* A command that is not built from targets: PUBLISH (or SPUBLISH), FLUSHDB. */
struct Special {
	enum class Kind { Publish, FlushDb };
	Kind kind;
	Command command; /* a publication's channel is command[1] */
	Stream stream;
	SeqSet seqs; /* the commits it holds back */
	uint32_t job;
	uint8_t redirects = 0; /* MOVED and ASK followed so far */
	bool asking = false;   /* sent after ASKING (to the node importing its slot) */
};

/* The lane's owner (the engine): routing and everything that spans nodes. */
class LaneHost
{
  public:
	virtual ~LaneHost() = default;
	virtual const LaneSettings &lane_settings() const = 0;
	virtual DeliveryReport &report() = 0;
	/* A target a reply produced (a tag member, a substitute, a retry after
	 * a redirect): deliver it on whichever node holds it now. */
	virtual void route(Target &&t, Stream s, const SeqSet &seqs) = 0;
	/* Refused for good, substitute included: the fallback must cover it. */
	virtual void unresolvable(const Target &t, Stream s, const SeqSet &seqs, const std::string &why) = 0;
	/* MOVED or ASK for a target, or for a special, sent on `from`. */
	virtual void redirected(Lane &from, Target &&t, Stream s, const SeqSet &seqs, const Classified &c) = 0;
	virtual void special_redirected(Lane &from, Special &&sp, const Classified &c) = 0;
	/* The lane lost its connection, or the server told it to go elsewhere. */
	virtual void lane_failed(Lane &lane, const std::string &why, bool reresolve) = 0;
	virtual void lane_recovered(Lane &lane) = 0;
	/* A permanent refusal and how it was resolved (for the rate-limited log). */
	virtual void note_refusal(const std::string &command, const std::string &key,
							  const std::string &error, const char *resolution) = 0;
	/* A fallback could not run completely. */
	virtual void job_failed(uint32_t job) = 0;
	/* Redis acknowledged these targets on this lane (remembered, with
	 * Sentinel and Cluster, for the failover repeat). */
	virtual void applied(Lane &lane, std::vector<Target> &&targets) = 0;
	virtual bool remembers_applied() const = 0;
	/* Once none of the commits seqs has anything waiting on stream s, release
	 * the receipt on the tag's node (best effort: its TTL covers the rest). */
	virtual void release_when_applied(TagRelease &&release, Stream s, const SeqSet &seqs) = 0;
	/* The lane's node answered successfully (its last healthy contact,
	 * where the failover repeat window ends). Only while remembers_applied(). */
	virtual void contact(Lane &lane) = 0;
};

class Lane
{
  public:
	Lane(LaneHost &host, ConnectionSettings settings, uint64_t seed);
	~Lane();
	Lane(const Lane &) = delete;
	Lane &operator=(const Lane &) = delete;

	const Endpoint &endpoint() const { return conn_.settings().endpoint; }
	Connection &connection() { return conn_; }
	const Connection &connection() const { return conn_; }
	bool ready() const { return conn_.ready(); }
	/* In an outage (its first failure was logged, the rest are not). */
	bool failing() const { return failing_; }
	/* Due to send now (connected and not backing off). */
	bool sending() const;

	void add(Target &&t, Stream s, const SeqSet &seqs);
	/* Targets distinct among themselves (a closed window), taken as a whole. */
	void add_batch(std::vector<Target> &&targets, Stream s, const SeqSet &seqs);
	void add_special(Special &&sp);
	/* Sends `cmd` on this lane's connection outside of any batch (SCAN):
	 * the reply goes to cb. Counted as a command. */
	void send_raw(const Command &cmd, Connection::Callback cb);
	/* Releases a tag's receipt (fire and forget). */
	void release_tag_receipt(const TagRelease &release);

	/* Connects when due, sends what waits when connected. */
	void pump();
	int64_t deadline_us() const;
	void on_timer();
	/* Closes the connection; what was in flight waits in the lane again. */
	void disconnect(const std::string &why);
	/* Backs off after a transient refusal (the connection stays). */
	void back_off();
	/* Moves the lane to another node (a new master); reconnects. */
	void retarget(const Endpoint &endpoint);
	/* While held, a closed lane does not reconnect (its node is being looked up). */
	void hold(bool held) { held_ = held; }

	uint64_t min_seq(Stream s) const;
	/* Adds the commits whose targets this lane still holds on stream s. */
	void add_held(Stream s, SeqSet &out) const;
	size_t held_targets() const;
	size_t unsent_targets() const;
	/* Removes the targets that have not been sent (max_pending). */
	std::vector<Target> take_unsent();
	/* Removes one stream's waiting targets; seqs receives what they held back. */
	std::vector<Target> take_pending(Stream s, SeqSet &seqs);
	std::deque<Special> take_specials();

  private:
	struct InFlight {
		Stream stream;
		SeqSet seqs;
		std::vector<Target> targets;
		std::vector<uint8_t> acked; /* per target, when the host remembers what was applied */
		size_t outstanding = 0;
		int64_t sent_us = 0;
	};
	/* Whether this node keeps tag receipts (the ACL may refuse their commands). */
	enum class Receipts { Unknown, Kept, Refused };
	enum class Op { Unlink, Incr, TagPop, Set };

	void connect();
	void connection_lost(const std::string &why);
	void send_targets(Stream s);
	void send_special(Special &&sp);
	void send_for(const std::shared_ptr<InFlight> &flight, Op op, std::vector<uint32_t> indices,
				  const std::vector<std::string_view> &argv, std::string attempt = std::string());
	void send_tag(const std::shared_ptr<InFlight> &flight, uint32_t index);
	void send_set(const std::shared_ptr<InFlight> &flight, uint32_t index);
	void on_reply(InFlight &flight, Op op, const std::vector<uint32_t> &indices, Reply &reply,
				  const std::string &attempt);
	void on_refused(InFlight &flight, Op op, const std::vector<uint32_t> &indices, const Reply &reply);
	void on_tag_reply(InFlight &flight, Target &tag, Reply &reply, const std::string &attempt);
	void route_tag_members(InFlight &flight, const Target &tag, std::vector<Reply> &members);
	void finish(const std::shared_ptr<InFlight> &flight);
	void requeue(InFlight &flight, const std::vector<uint32_t> &indices, uint8_t extra_flags);
	void note_success();
	void ensure_script();

	LaneHost &host_;
	Connection conn_;
	Backoff backoff_;
	int64_t retry_at_us_ = 0; /* monotonic; 0: not backing off */
	bool failing_ = false;	  /* in an outage (logged once) */
	bool ever_connected_ = false;
	bool script_loaded_ = false; /* on this connection */
	bool script_refused_ = false;
	Receipts receipts_ = Receipts::Unknown;

	TargetSet pending_[kStreams];
	std::deque<Special> specials_;
	std::vector<std::shared_ptr<InFlight>> in_flight_;
	std::vector<std::shared_ptr<Special>> specials_in_flight_;
	bool open_ = false;		 /* opened, and its closing not yet handled */
	bool held_ = false;
	bool was_ready_ = false; /* the current connection became ready */
};

} // namespace cachebust
