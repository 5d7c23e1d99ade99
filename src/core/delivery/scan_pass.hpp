/*
 * scan_pass.hpp — every glob target, matched in one SCAN pass.
 *
 * Patterns, TRUNCATE's tag and bump patterns and the prefix fallback all
 * need to find keys by glob. One SCAN MATCH per glob would cost
 * globs × keyspace and hold everything up behind it; instead all globs
 * waiting when a pass starts are matched in one incremental SCAN of every
 * node, on our side, with Redis's own glob rules (core/glob.hpp). Globs that
 * arrive during a pass wait for the next one (a pass that started before
 * them might already have gone past their keys).
 *
 * The pass never holds up other work: it keeps one SCAN in flight per node,
 * on the node's ordinary connection, so keys, tags and bumps of later
 * windows go out between its chunks, and the worker looks at its latch and
 * signals between them. Each match becomes an ordinary target in its
 * node's lane (UNLINK; a bump pattern's INCR; a tag pattern's tag pop,
 * sets only), so refusals are resolved as for any target.
 *
 * Counts (cachebust.clear()'s first step) touch no key: they only count the
 * keys their glob matches, up to a limit. They run in a pass of their own
 * (a second ScanPass, counting_), with its own cursors on the same
 * connections, so a count neither waits for a long invalidation pass nor
 * holds one up; that pass ends as soon as every count in it is settled.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/delivery/lane.hpp"
#include "core/glob.hpp"

namespace cachebust {

/* How a count (add_count) stands. */
struct CountProgress {
	enum class State { Waiting, Counting, Complete, Limited, Failed };
	State state = State::Waiting;
	uint64_t matched = 0; /* keys matched so far in its pass (the limit at most) */
	std::string error;	  /* Failed: what Redis answered to SCAN */
	bool settled() const { return state == State::Complete || state == State::Limited || state == State::Failed; }
};

class ScanPass
{
  public:
	ScanPass(LaneHost &host, size_t scan_count) : host_(host), scan_count_(scan_count) {}

	void set_scan_count(size_t n)
	{
		scan_count_ = n;
		if (counting_)
			counting_->set_scan_count(n);
	}

	/* A glob target, held back on behalf of the commits seqs. */
	void add(Target &&glob, Stream s, const SeqSet &seqs);

	/* Starts the next pass over `nodes` if none runs and globs wait. */
	void start_if_due(const std::vector<Lane *> &nodes);
	/* Sends the node's next SCAN if it takes part in the pass and is due. */
	void step(Lane &lane);
	/* The node left the deployment (a cluster map change): its share of the
	 * pass is done by `replacement` from the start; without one, the whole
	 * pass starts over. */
	void node_replaced(Lane &lane, Lane *replacement);

	/* Slots moved while a pass runs (a new slot map, MOVED, ASK): a key may
	 * have gone to a node already scanned, so the pass runs again from the
	 * start when it ends, until one runs without a move. */
	void slots_moved();

	bool running() const { return !nodes_.empty(); }
	uint64_t min_seq(Stream s) const;
	void add_held(Stream s, SeqSet &out) const;
	size_t held_targets() const;
	/* Removes the globs that wait for the next pass (max_pending). */
	std::vector<Target> take_waiting();

	/* Counts the keys glob matches, in the next counting pass; stops at limit. */
	void add_count(uint64_t id, const std::string &glob, uint64_t limit);
	/* False when no count has that id. */
	bool count_progress(uint64_t id, CountProgress &out) const;
	/* Forgets a count (its result was taken, or nobody waits for it any more). */
	void end_count(uint64_t id);

  private:
	struct NodeScan {
		Lane *lane;
		std::string cursor = "0";
		bool in_flight = false;
		bool done = false;
	};
	struct PassGlob {
		Target target;
		Stream stream;
	};

	struct Count {
		uint64_t id;
		std::string glob;
		uint64_t limit;
		CountProgress progress;
		bool ended = false; /* end_count(): removed when no pass holds its index */
	};

	void on_reply(uint64_t pass, Lane &lane, Reply &reply);
	bool counts_settled() const;
	void remove_ended_counts();
	void match(const std::string &key);
	void finish_if_done();
	void reset_pass();
	void rerun();
	NodeScan *node_for(const Lane &lane);

	LaneHost &host_;
	size_t scan_count_;

	TargetSet waiting_[kStreams];

	/* The running pass. */
	uint64_t pass_ = 0;
	std::vector<PassGlob> globs_;
	GlobSet index_;
	std::vector<std::vector<uint32_t>> by_pattern_; /* GlobSet id → globs_ indices */
	SeqSet pass_seqs_[kStreams]; /* the commits of the running pass's globs */
	std::string match_; /* SCAN MATCH: the globs' common literal prefix, escaped, then * */
	std::vector<NodeScan> nodes_;
	bool slots_moved_ = false; /* during the running pass */

	std::vector<Count> counts_; /* in this pass (the counting one) */
	std::vector<std::vector<uint32_t>> counts_by_pattern_; /* GlobSet id → counts_ indices */
	std::unique_ptr<ScanPass> counting_; /* where add_count's counts run (created on the first) */
};

} // namespace cachebust
