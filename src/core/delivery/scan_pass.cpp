/*
 * scan_pass.cpp — the incremental SCAN and the local matching.
 */
#include "core/delivery/scan_pass.hpp"

#include <algorithm>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

/* The longest common prefix of a and b. */
std::string
common_prefix(const std::string &a, const std::string &b)
{
	size_t n = 0;
	while (n < a.size() && n < b.size() && a[n] == b[n])
		n++;
	return a.substr(0, n);
}

} // namespace

void
ScanPass::add(Target &&glob, Stream s, const SeqSet &seqs)
{
	waiting_[static_cast<int>(s)].insert(std::move(glob), seqs);
}

void
ScanPass::start_if_due(const std::vector<Lane *> &nodes)
{
	if (counting_)
		counting_->start_if_due(nodes);
	if (running() || nodes.empty())
		return;
	remove_ended_counts();
	bool any = false;
	for (const TargetSet &set : waiting_)
		any = any || !set.empty();
	for (const Count &c : counts_)
		any = any || c.progress.state == CountProgress::State::Waiting;
	if (!any)
		return;

	pass_++;
	globs_.clear();
	index_.clear();
	by_pattern_.clear();
	for (int s = 0; s < kStreams; s++) {
		for (Target &t : waiting_[s].take(pass_seqs_[s]))
			globs_.push_back(PassGlob{std::move(t), static_cast<Stream>(s)});
	}

	std::string prefix;
	for (uint32_t i = 0; i < globs_.size(); i++) {
		size_t id = index_.add(globs_[i].target.key);
		if (id >= by_pattern_.size())
			by_pattern_.resize(id + 1);
		by_pattern_[id].push_back(i);
		const std::string &literal = index_.glob(id).literal_prefix();
		prefix = i == 0 ? literal : common_prefix(prefix, literal);
	}
	bool first = globs_.empty();
	for (uint32_t i = 0; i < counts_.size(); i++) {
		Count &c = counts_[i];
		if (c.progress.state != CountProgress::State::Waiting)
			continue;
		c.progress.state = CountProgress::State::Counting;
		c.progress.matched = 0;
		size_t id = index_.add(c.glob);
		if (id >= counts_by_pattern_.size())
			counts_by_pattern_.resize(id + 1);
		counts_by_pattern_[id].push_back(i);
		const std::string &literal = index_.glob(id).literal_prefix();
		prefix = first ? literal : common_prefix(prefix, literal);
		first = false;
	}
	by_pattern_.resize(index_.size());
	counts_by_pattern_.resize(index_.size());
	/* Let Redis skip what no glob can match; the rest is decided here. */
	match_ = prefix.empty() ? std::string() : glob_escape(prefix) + "*";

	nodes_.clear();
	for (Lane *lane : nodes)
		nodes_.push_back(NodeScan{lane});
}

ScanPass::NodeScan *
ScanPass::node_for(const Lane &lane)
{
	for (NodeScan &n : nodes_)
		if (n.lane == &lane)
			return &n;
	return nullptr;
}

void
ScanPass::step(Lane &lane)
{
	if (counting_)
		counting_->step(lane);
	NodeScan *node = node_for(lane);
	if (node == nullptr || node->done || node->in_flight || !lane.sending())
		return;
	Command scan = {"SCAN", node->cursor, "COUNT", std::to_string(scan_count_)};
	if (!match_.empty()) {
		scan.push_back("MATCH");
		scan.push_back(match_);
	}
	node->in_flight = true;
	lane.send_raw(scan, [this, pass = pass_, &lane](Reply &r) { on_reply(pass, lane, r); });
}

void
ScanPass::on_reply(uint64_t pass, Lane &lane, Reply &reply)
{
	NodeScan *node = pass == pass_ ? node_for(lane) : nullptr;
	if (node == nullptr)
		return; /* a pass or node that no longer exists */
	node->in_flight = false;

	Classified c = classify_reply(reply);
	if (c.kind == ReplyClass::Transient || c.kind == ReplyClass::Moved || c.kind == ReplyClass::Ask) {
		/* A cursor is only valid on the connection's server: after a
		 * reconnect the node is scanned from the start. */
		if (reply.type == Reply::Type::Failed || c.reconnect)
			node->cursor = "0";
		else {
			host_.report().counters.errors++;
			lane.back_off();
		}
		return;
	}
	if (c.kind != ReplyClass::Ok || reply.type != Reply::Type::Array || reply.elements.size() != 2 ||
		reply.elements[1].type != Reply::Type::Array) {
		/* SCAN itself refused (an ACL without it): nothing here can be matched. */
		host_.report().counters.errors++;
		std::string error = reply.type == Reply::Type::Error ? reply.str : "unexpected SCAN reply";
		if (!globs_.empty())
			host_.note_refusal("SCAN", std::string(), error, "the glob targets are covered by the fallback");
		for (Count &c : counts_)
			if (c.progress.state == CountProgress::State::Counting) {
				c.progress.state = CountProgress::State::Failed;
				c.progress.error = error;
			}
		for (const PassGlob &g : globs_) {
			if (g.target.job != 0)
				host_.job_failed(g.target.job);
			else
				host_.unresolvable(g.target, g.stream, pass_seqs_[static_cast<int>(g.stream)], error);
		}
		node->done = true;
		finish_if_done();
		return;
	}

	host_.report().counters.keys_scanned += reply.elements[1].elements.size();
	for (const Reply &key : reply.elements[1].elements)
		if (key.type == Reply::Type::String)
			match(key.str);
	node->cursor = reply.elements[0].str;
	if (node->cursor == "0") {
		node->done = true;
		finish_if_done();
	} else if (globs_.empty() && counts_settled()) {
		reset_pass(); /* a counting pass whose counts all reached their limit */
	}
}

/* Routes what the globs matching key ask for: a bump wins (a generation
 * key must never go back), then a tag pop, then UNLINK. One target per
 * stream, so each stream's delivery position is held back correctly. */
void
ScanPass::match(const std::string &key)
{
	const PassGlob *chosen[kStreams] = {nullptr, nullptr, nullptr};
	index_.for_each_match(key, [&](size_t id) {
		for (uint32_t i : counts_by_pattern_[id]) {
			CountProgress &p = counts_[i].progress;
			if (p.state == CountProgress::State::Counting && !counts_[i].ended &&
				++p.matched >= counts_[i].limit)
				p.state = CountProgress::State::Limited;
		}
		for (uint32_t i : by_pattern_[id]) {
			const PassGlob &g = globs_[i];
			const PassGlob *&c = chosen[static_cast<int>(g.stream)];
			auto rank = [](TargetKind k) { return k == TargetKind::Bump ? 2 : k == TargetKind::Tag ? 1 : 0; };
			if (c == nullptr || rank(g.target.kind) > rank(c->target.kind))
				c = &g;
		}
	});
	for (int s = 0; s < kStreams; s++) {
		if (chosen[s] == nullptr)
			continue;
		const Target &glob = chosen[s]->target;
		Target t;
		t.kind = glob.kind;
		t.key = key;
		t.prefix_len = static_cast<uint32_t>(target_prefix(glob).size());
		t.tag_prefix_len = glob.tag_prefix_len;
		t.job = glob.job;
		if (glob.kind == TargetKind::Tag)
			t.delivery = kDeliverSetsOnly;
		host_.route(std::move(t), static_cast<Stream>(s), pass_seqs_[s]);
	}
}

void
ScanPass::finish_if_done()
{
	for (const NodeScan &n : nodes_)
		if (!n.done)
			return;
	if (slots_moved_) {
		host_.report().logs.push_back(
			LogLine{LogLevel::Log, "cachebust worker: slots moved during a SCAN pass; matching its globs again"});
		rerun();
		return;
	}
	for (Count &c : counts_)
		if (c.progress.state == CountProgress::State::Counting)
			c.progress.state = CountProgress::State::Complete;
	if (!globs_.empty())
		host_.report().counters.scan_passes++;
	reset_pass();
}

void
ScanPass::slots_moved()
{
	if (counting_)
		counting_->slots_moved();
	if (running())
		slots_moved_ = true;
}

/* Every glob of the running pass waits for the next one, matched from the start. */
void
ScanPass::rerun()
{
	for (PassGlob &g : globs_)
		add(std::move(g.target), g.stream, pass_seqs_[static_cast<int>(g.stream)]);
	for (Count &c : counts_)
		if (c.progress.state == CountProgress::State::Counting)
			c.progress = CountProgress();
	reset_pass();
}

void
ScanPass::reset_pass()
{
	nodes_.clear();
	globs_.clear();
	index_.clear();
	by_pattern_.clear();
	match_.clear();
	for (SeqSet &s : pass_seqs_)
		s.clear();
	slots_moved_ = false;
	counts_by_pattern_.clear();
	/* Counts still counting when a pass is cut short (their limits reached,
	 * or ended) have nothing more to learn from it. */
	remove_ended_counts();
}

void
ScanPass::node_replaced(Lane &lane, Lane *replacement)
{
	if (counting_)
		counting_->node_replaced(lane, replacement);
	NodeScan *node = node_for(lane);
	if (node == nullptr)
		return;
	if (replacement != nullptr && node_for(*replacement) == nullptr) {
		*node = NodeScan{replacement};
		return;
	}
	/* Keys may have moved anywhere: match every glob again from the start. */
	rerun();
}

uint64_t
ScanPass::min_seq(Stream s) const
{
	return std::min(pass_seqs_[static_cast<int>(s)].min(), waiting_[static_cast<int>(s)].min_seq());
}

void
ScanPass::add_held(Stream s, SeqSet &out) const
{
	out.merge(pass_seqs_[static_cast<int>(s)]);
	out.merge(waiting_[static_cast<int>(s)].seqs());
}

size_t
ScanPass::held_targets() const
{
	size_t n = globs_.size();
	for (const TargetSet &set : waiting_)
		n += set.size();
	return n;
}

std::vector<Target>
ScanPass::take_waiting()
{
	std::vector<Target> out;
	for (TargetSet &set : waiting_)
		for (Target &t : set.take())
			out.push_back(std::move(t));
	return out;
}

void
ScanPass::add_count(uint64_t id, const std::string &glob, uint64_t limit)
{
	if (!counting_)
		counting_ = std::make_unique<ScanPass>(host_, scan_count_);
	counting_->counts_.push_back(Count{id, glob, std::max<uint64_t>(limit, 1), CountProgress()});
}

bool
ScanPass::count_progress(uint64_t id, CountProgress &out) const
{
	if (!counting_)
		return false;
	for (const Count &c : counting_->counts_)
		if (c.id == id && !c.ended) {
			out = c.progress;
			return true;
		}
	return false;
}

void
ScanPass::end_count(uint64_t id)
{
	if (!counting_)
		return;
	for (Count &c : counting_->counts_)
		if (c.id == id)
			c.ended = true;
	if (!counting_->running())
		counting_->remove_ended_counts();
	else if (counting_->globs_.empty() && counting_->counts_settled())
		counting_->reset_pass(); /* nobody waits for what it would find */
}

/* No count of the running pass is still counting. */
bool
ScanPass::counts_settled() const
{
	for (const Count &c : counts_)
		if (c.progress.state == CountProgress::State::Counting && !c.ended)
			return false;
	return true;
}

/* (Only while counts_by_pattern_ holds no index into counts_.) */
void
ScanPass::remove_ended_counts()
{
	if (!counts_by_pattern_.empty())
		return;
	counts_.erase(std::remove_if(counts_.begin(), counts_.end(), [](const Count &c) { return c.ended; }),
				  counts_.end());
}

} // namespace cachebust
