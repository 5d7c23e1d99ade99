/*
 * lane.cpp — one node's connection, its waiting targets, and what each
 * reply means for them.
 */
#include "core/delivery/lane.hpp"

#include <algorithm>

#include "core/delivery/tag_script.hpp"
#include "core/key_slot.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

bool
starts_with(std::string_view s, std::string_view prefix)
{
	return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

const char *
op_name(int op)
{
	static const char *const names[] = {"UNLINK", "INCR", "the tag script", "SET"};
	return names[op];
}

} // namespace

Lane::Lane(LaneHost &host, ConnectionSettings settings, uint64_t seed)
	: host_(host), conn_(std::move(settings)), backoff_(50, host.lane_settings().retry_max_ms, seed)
{
}

Lane::~Lane() = default;

bool
Lane::sending() const
{
	return conn_.ready() && (retry_at_us_ == 0 || monotonic_us() >= retry_at_us_);
}

void
Lane::add(Target &&t, Stream s, const SeqSet &seqs)
{
	pending_[static_cast<int>(s)].insert(std::move(t), seqs);
}

void
Lane::add_batch(std::vector<Target> &&targets, Stream s, const SeqSet &seqs)
{
	pending_[static_cast<int>(s)].insert_distinct(std::move(targets), seqs);
}

void
Lane::add_special(Special &&sp)
{
	specials_.push_back(std::move(sp));
}

void
Lane::connect()
{
	open_ = true;
	was_ready_ = false;
	script_loaded_ = false;
	script_refused_ = false;
	conn_.open();
}

void
Lane::connection_lost(const std::string &why)
{
	open_ = false;
	backoff_.set_cap(host_.lane_settings().retry_max_ms);
	retry_at_us_ = monotonic_us() + static_cast<int64_t>(backoff_.next_delay_ms()) * 1000;
	host_.report().counters.errors++;
	host_.lane_failed(*this, why, true);
	failing_ = true;
}

void
Lane::back_off()
{
	backoff_.set_cap(host_.lane_settings().retry_max_ms);
	retry_at_us_ = monotonic_us() + static_cast<int64_t>(backoff_.next_delay_ms()) * 1000;
}

void
Lane::disconnect(const std::string &why)
{
	/* Deliberate: not an outage, so no backoff and nothing logged. */
	open_ = false;
	retry_at_us_ = 0;
	conn_.close(why);
}

void
Lane::retarget(const Endpoint &endpoint)
{
	if (endpoint == conn_.settings().endpoint)
		return;
	disconnect("the node moved to " + endpoint.describe());
	ConnectionSettings settings = conn_.settings();
	settings.endpoint = endpoint;
	conn_.set_settings(std::move(settings));
}

void
Lane::note_success()
{
	if (host_.remembers_applied())
		host_.contact(*this);
	backoff_.reset();
	if (failing_) {
		failing_ = false;
		host_.lane_recovered(*this);
	}
}

void
Lane::pump()
{
	if (conn_.closed()) {
		if (open_)
			connection_lost(conn_.error());
		if (held_ || (retry_at_us_ != 0 && monotonic_us() < retry_at_us_))
			return;
		connect();
	}
	if (!conn_.ready())
		return;
	if (!was_ready_) {
		was_ready_ = true;
		if (ever_connected_)
			host_.report().counters.reconnects++;
		ever_connected_ = true;
	}
	if (retry_at_us_ != 0) {
		if (monotonic_us() < retry_at_us_)
			return;
		retry_at_us_ = 0;
		if (held_targets() > 0 || !specials_.empty())
			host_.report().counters.retries++;
	}
	while (!specials_.empty() && conn_.ready()) {
		Special sp = std::move(specials_.front());
		specials_.pop_front();
		send_special(std::move(sp));
	}
	for (int s = 0; s < kStreams && conn_.ready(); s++)
		if (!pending_[s].empty())
			send_targets(static_cast<Stream>(s));
	conn_.flush();
}

void
Lane::send_raw(const Command &cmd, Connection::Callback cb)
{
	host_.report().counters.commands++;
	conn_.send(cmd, [this, cb = std::move(cb)](Reply &r) {
		if (r.type != Reply::Type::Failed && r.type != Reply::Type::Error && host_.remembers_applied())
			host_.contact(*this);
		cb(r);
	});
}

void
Lane::ensure_script()
{
	if (script_loaded_)
		return;
	script_loaded_ = true;
	send_raw({"SCRIPT", "LOAD", kTagPopScript}, [this](Reply &r) {
		if (r.type == Reply::Type::Error) {
			/* e.g. NOPERM: tags are then resolved by their substitute. */
			script_refused_ = true;
			host_.report().counters.errors++;
			host_.note_refusal("SCRIPT LOAD", std::string(), r.str, "tags are removed without their members");
		}
	});
}

void
Lane::release_tag_receipt(const TagRelease &release)
{
	TagReceipt receipt;
	if (!tag_receipt_keys(release.tag, release.prefix_len, receipt))
		return;
	ensure_script();
	/* Nothing to do with the reply: a receipt not released expires. */
	send_raw({"EVALSHA", tag_pop_sha(), "3", release.tag, receipt.set, receipt.owner, "release", release.attempt},
			 [](Reply &) {});
}

void
Lane::send_for(const std::shared_ptr<InFlight> &flight, Op op, std::vector<uint32_t> indices,
			   const std::vector<std::string_view> &argv, std::string attempt)
{
	flight->outstanding++;
	host_.report().counters.commands++;
	conn_.send_views(argv, [this, flight, op, indices = std::move(indices), attempt = std::move(attempt)](Reply &r) {
		on_reply(*flight, op, indices, r, attempt);
		finish(flight);
	});
}

/* The tag script, with the tag's receipt when its name fits the tag's slot. */
void
Lane::send_tag(const std::shared_ptr<InFlight> &flight, uint32_t index)
{
	const Target &t = flight->targets[index];
	ensure_script();
	const char *mode = (t.delivery & kDeliverSetsOnly)	 ? "sets"
					   : (t.delivery & kDeliverKeepSets) ? "keep"
														 : "pop";
	TagReceipt receipt;
	if (!tag_receipt_keys(t.key, t.prefix_len, receipt)) {
		send_for(flight, Op::TagPop, {index}, {"EVALSHA", tag_pop_sha(), "1", t.key, mode});
		return;
	}
	std::string attempt = new_tag_attempt_id();
	std::string ttl = std::to_string(host_.lane_settings().tag_receipt_ttl_ms);
	const char *retry = t.reply_lost_us != 0 ? "retry" : "first";
	send_for(flight, Op::TagPop, {index},
			 {"EVALSHA", tag_pop_sha(), "3", t.key, receipt.set, receipt.owner, mode, attempt, ttl, retry}, attempt);
}

void
Lane::finish(const std::shared_ptr<InFlight> &flight)
{
	if (--flight->outstanding > 0)
		return;
	auto it = std::find(in_flight_.begin(), in_flight_.end(), flight);
	if (it != in_flight_.end())
		in_flight_.erase(it);
	if (!flight->acked.empty()) {
		/* Hand the acknowledged targets over whole (requeued ones are gone). */
		std::vector<Target> &targets = flight->targets;
		size_t kept = 0;
		for (size_t i = 0; i < targets.size(); i++)
			if (flight->acked[i] && kept++ != i)
				targets[kept - 1] = std::move(targets[i]);
		targets.resize(kept);
		host_.applied(*this, std::move(targets));
	}
}

/* SET key value [PX ttl] [XX]: a materialized key's new value. */
void
Lane::send_set(const std::shared_ptr<InFlight> &flight, uint32_t index)
{
	const Target &t = flight->targets[index];
	std::vector<std::string_view> argv{"SET", t.key, t.set->value};
	std::string ttl;
	if (t.set->ttl_ms > 0) {
		ttl = std::to_string(t.set->ttl_ms);
		argv.push_back("PX");
		argv.push_back(ttl);
	}
	if (t.set->only_if_exists)
		argv.push_back("XX");
	send_for(flight, Op::Set, {index}, argv);
}

void
Lane::send_targets(Stream s)
{
	TargetSet &set = pending_[static_cast<int>(s)];
	auto flight = std::make_shared<InFlight>();
	flight->stream = s;
	flight->targets = set.take(flight->seqs);
	flight->sent_us = monotonic_us();
	if (host_.remembers_applied())
		flight->acked.assign(flight->targets.size(), 0);
	flight->outstanding = 1; /* held while the commands are being built */
	in_flight_.push_back(flight);

	const LaneSettings &settings = host_.lane_settings();
	std::vector<uint32_t> keys;
	keys.reserve(flight->targets.size());
	for (uint32_t i = 0; i < flight->targets.size(); i++) {
		const Target &t = flight->targets[i];
		/* A migrating slot: the importing node takes the next command only after ASKING. */
		if (t.delivery & kDeliverAsking)
			send_raw({"ASKING"}, [](Reply &) {});
		switch (t.kind) {
		case TargetKind::Set:
			send_set(flight, i);
			break;
		case TargetKind::Refresh: /* (the dispatcher hands these to refresh workers; never sent) */
		case TargetKind::Key:
			if (t.delivery & kDeliverAlone)
				send_for(flight, Op::Unlink, {i}, {"UNLINK", t.key});
			else
				keys.push_back(i);
			break;
		case TargetKind::Bump:
			send_for(flight, Op::Incr, {i}, {"INCR", t.key});
			break;
		case TargetKind::Tag:
			send_tag(flight, i);
			break;
		}
	}

	/* Multi-key UNLINKs; in a cluster each stays within one slot. */
	std::vector<uint16_t> slots;
	if (settings.group_by_slot) {
		/* A counting sort by slot: linear, and keys stay in order within a slot. */
		slots.resize(flight->targets.size());
		std::vector<uint32_t> starts(kClusterSlots + 1, 0);
		for (uint32_t i : keys) {
			slots[i] = key_slot(flight->targets[i].key);
			starts[slots[i] + 1]++;
		}
		for (int slot = 0; slot < kClusterSlots; slot++)
			starts[slot + 1] += starts[slot];
		std::vector<uint32_t> by_slot(keys.size());
		for (uint32_t i : keys)
			by_slot[starts[slots[i]]++] = i;
		keys.swap(by_slot);
	}
	size_t chunk = std::max<size_t>(settings.unlink_chunk, 1);
	std::vector<std::string_view> argv;
	for (size_t start = 0; start < keys.size();) {
		size_t end = start + 1;
		while (end < keys.size() && end - start < chunk &&
			   (!settings.group_by_slot || slots[keys[end]] == slots[keys[start]]))
			end++;
		argv.clear();
		argv.push_back("UNLINK");
		std::vector<uint32_t> indices(keys.begin() + start, keys.begin() + end);
		for (uint32_t i : indices)
			argv.push_back(flight->targets[i].key);
		send_for(flight, Op::Unlink, std::move(indices), argv);
		start = end;
	}
	finish(flight);
}

void
Lane::requeue(InFlight &flight, const std::vector<uint32_t> &indices, uint8_t extra_flags)
{
	for (uint32_t i : indices) {
		Target t = std::move(flight.targets[i]);
		t.delivery |= extra_flags;
		pending_[static_cast<int>(flight.stream)].insert(std::move(t), flight.seqs);
	}
}

void
Lane::on_reply(InFlight &flight, Op op, const std::vector<uint32_t> &indices, Reply &reply,
			   const std::string &attempt)
{
	Classified c = classify_reply(reply);
	switch (c.kind) {
	case ReplyClass::Ok:
		note_success();
		if (!flight.acked.empty())
			for (uint32_t i : indices)
				flight.acked[i] = 1;
		if (op == Op::TagPop)
			on_tag_reply(flight, flight.targets[indices[0]], reply, attempt);
		return;
	case ReplyClass::Transient:
		if (op == Op::TagPop && reply.type == Reply::Type::Failed) {
			/* The script may have run and popped the set: the retry must be
			 * answered by the receipt, or the fallback covers the tag.
			 * (In "keep" mode it never pops a set.) */
			Target &t = flight.targets[indices[0]];
			if (t.reply_lost_us == 0 && !(t.delivery & kDeliverKeepSets))
				t.reply_lost_us = flight.sent_us;
		}
		requeue(flight, indices, 0);
		if (reply.type == Reply::Type::Failed)
			return; /* the connection is gone; pump() notices and backs off */
		host_.report().counters.errors++;
		if (c.reconnect) {
			/* READONLY and friends: this is no longer the master. */
			conn_.close("Redis replied " + reply.str.substr(0, 200));
			return;
		}
		if (!failing_)
			host_.lane_failed(*this, "Redis replied " + reply.str.substr(0, 200), false);
		failing_ = true;
		back_off();
		return;
	case ReplyClass::NoScript:
		script_loaded_ = false;
		if (script_refused_)
			on_refused(flight, op, indices, reply);
		else
			requeue(flight, indices, 0);
		return;
	case ReplyClass::Moved:
	case ReplyClass::Ask:
		for (uint32_t i : indices)
			host_.redirected(*this, std::move(flight.targets[i]), flight.stream, flight.seqs, c);
		return;
	case ReplyClass::Permanent:
		host_.report().counters.errors++;
		on_refused(flight, op, indices, reply);
		return;
	}
}

void
Lane::on_refused(InFlight &flight, Op op, const std::vector<uint32_t> &indices, const Reply &reply)
{
	std::string error = reply.str.substr(0, 200);
	if (op == Op::Unlink && indices.size() > 1) {
		/* Find the refused key: each goes again on its own. */
		requeue(flight, indices, kDeliverAlone);
		return;
	}
	for (uint32_t i : indices) {
		Target &t = flight.targets[i];
		if (t.job != 0) {
			/* A fallback's own command: no further substitute. */
			host_.note_refusal(op_name(static_cast<int>(op)), t.key, error, "the fallback is incomplete");
			host_.job_failed(t.job);
			continue;
		}
		bool counted = (t.delivery & kDeliverSubstitute) != 0;
		if (!counted)
			host_.report().counters.targets_failed++;
		if (op == Op::Unlink) {
			host_.note_refusal("UNLINK", t.key, error, "the fallback covers its key prefix");
			host_.unresolvable(t, flight.stream, flight.seqs, error);
			continue;
		}
		/* A bump or tag on a key of the wrong type: remove the key, the next read rebuilds it. */
		host_.note_refusal(op_name(static_cast<int>(op)), t.key, error, "the key was removed instead");
		Target substitute = std::move(t);
		substitute.kind = TargetKind::Key;
		substitute.glob = false;
		substitute.depth = 0;
		substitute.delivery = kDeliverAlone | kDeliverSubstitute;
		pending_[static_cast<int>(flight.stream)].insert(std::move(substitute), flight.seqs);
	}
}

void
Lane::on_tag_reply(InFlight &flight, Target &tag, Reply &reply, const std::string &attempt)
{
	int64_t reply_lost_us = tag.reply_lost_us;
	tag.reply_lost_us = 0; /* answered now */
	bool held = false;	   /* the members are held in the tag's receipt */
	if (reply.type == Reply::Type::Integer) {
		/* -1: the tag's own key held something else and was removed. */
		if (reply.integer == -1 && tag.depth == 0) {
			host_.report().counters.targets_failed++;
			host_.note_refusal("the tag script", tag.key, "the key is not a set", "the key was removed");
		}
	} else if (reply.type == Reply::Type::Array && reply.elements.size() == 2 &&
			   reply.elements[0].type == Reply::Type::Integer && reply.elements[1].type == Reply::Type::Array) {
		held = reply.elements[0].integer == 1;
		if (!attempt.empty())
			receipts_ = held ? Receipts::Kept : Receipts::Refused;
		route_tag_members(flight, tag, reply.elements[1].elements);
	}
	if (held)
		host_.release_when_applied(TagRelease{tag.key, tag.prefix_len, attempt}, flight.stream, flight.seqs);

	if (reply_lost_us != 0) {
		/* An earlier attempt may have popped the set and lost its reply: what
		 * it took came back only if this node keeps receipts, and in time. */
		int64_t ttl_us = static_cast<int64_t>(host_.lane_settings().tag_receipt_ttl_ms) * 1000;
		bool answered = !attempt.empty() && receipts_ == Receipts::Kept && monotonic_us() - reply_lost_us < ttl_us;
		if (!answered) {
			host_.report().logs.push_back(
				LogLine{LogLevel::Log, "cachebust worker: the reply of a tag script was lost and no receipt can "
									   "replace it; the fallback covers the tag's key prefix"});
			host_.unresolvable(tag, flight.stream, flight.seqs, "the reply of the tag script was lost");
		}
	}
}

void
Lane::route_tag_members(InFlight &flight, const Target &tag, std::vector<Reply> &members)
{
	std::string_view prefix(tag.key.data(), std::min<size_t>(tag.prefix_len, tag.key.size()));
	std::string_view tag_prefix(tag.key.data(), std::min<size_t>(tag.tag_prefix_len, tag.key.size()));
	int max_depth = host_.lane_settings().tag_depth;
	for (Reply &member : members) {
		if (member.type != Reply::Type::String)
			continue;
		if (!starts_with(member.str, prefix)) {
			/* Another tenant's key (or a typo): never ours to delete. */
			host_.report().counters.tag_members_skipped++;
			continue;
		}
		Target t;
		t.key = std::move(member.str);
		t.prefix_len = tag.prefix_len;
		t.job = tag.job;
		if (tag.tag_prefix_len > 0 && starts_with(t.key, tag_prefix)) {
			/* Possibly a nested tag set: expanded while within tag_depth. */
			t.kind = TargetKind::Tag;
			t.tag_prefix_len = tag.tag_prefix_len;
			if (tag.depth < max_depth)
				t.depth = static_cast<uint8_t>(tag.depth + 1);
			else {
				t.depth = tag.depth;
				t.delivery = kDeliverKeepSets;
			}
		}
		host_.route(std::move(t), flight.stream, flight.seqs);
	}
}

void
Lane::send_special(Special &&sp)
{
	auto special = std::make_shared<Special>(std::move(sp));
	specials_in_flight_.push_back(special);
	/* A migrating slot: the importing node takes the next command only after ASKING. */
	if (special->asking)
		send_raw({"ASKING"}, [](Reply &) {});
	send_raw(special->command, [this, special](Reply &r) {
		Classified c = classify_reply(r);
		if (c.kind == ReplyClass::Ok)
			note_success();
		else if (c.kind == ReplyClass::Moved || c.kind == ReplyClass::Ask)
			host_.special_redirected(*this, Special(*special), c);
		else if (c.kind == ReplyClass::Permanent) {
			host_.report().counters.errors++;
			host_.note_refusal(special->command[0], std::string(), r.str.substr(0, 200),
							   special->kind == Special::Kind::Publish ? "the message was dropped"
																	   : "the fallback is incomplete");
			if (special->kind == Special::Kind::FlushDb)
				host_.job_failed(special->job);
		} else {
			specials_.push_front(*special);
			if (r.type != Reply::Type::Failed) {
				host_.report().counters.errors++;
				back_off();
			}
		}
		auto it = std::find(specials_in_flight_.begin(), specials_in_flight_.end(), special);
		if (it != specials_in_flight_.end())
			specials_in_flight_.erase(it);
	});
}

uint64_t
Lane::min_seq(Stream s) const
{
	uint64_t min = pending_[static_cast<int>(s)].min_seq();
	for (const auto &f : in_flight_)
		if (f->stream == s)
			min = std::min(min, f->seqs.min());
	for (const Special &sp : specials_)
		if (sp.stream == s)
			min = std::min(min, sp.seqs.min());
	for (const auto &sp : specials_in_flight_)
		if (sp->stream == s)
			min = std::min(min, sp->seqs.min());
	return min;
}

void
Lane::add_held(Stream s, SeqSet &out) const
{
	out.merge(pending_[static_cast<int>(s)].seqs());
	for (const auto &f : in_flight_)
		if (f->stream == s)
			out.merge(f->seqs);
	for (const Special &sp : specials_)
		if (sp.stream == s)
			out.merge(sp.seqs);
	for (const auto &sp : specials_in_flight_)
		if (sp->stream == s)
			out.merge(sp->seqs);
}

size_t
Lane::held_targets() const
{
	size_t n = 0;
	for (const TargetSet &set : pending_)
		n += set.size();
	for (const auto &f : in_flight_)
		n += f->targets.size();
	return n;
}

size_t
Lane::unsent_targets() const
{
	size_t n = 0;
	for (const TargetSet &set : pending_)
		n += set.size();
	return n;
}

std::vector<Target>
Lane::take_unsent()
{
	std::vector<Target> out;
	for (TargetSet &set : pending_)
		for (Target &t : set.take())
			out.push_back(std::move(t));
	return out;
}

std::vector<Target>
Lane::take_pending(Stream s, SeqSet &seqs)
{
	return pending_[static_cast<int>(s)].take(seqs);
}

std::deque<Special>
Lane::take_specials()
{
	std::deque<Special> out;
	out.swap(specials_);
	return out;
}

int64_t
Lane::deadline_us() const
{
	int64_t deadline = conn_.deadline_us();
	if (retry_at_us_ != 0 && (deadline == 0 || retry_at_us_ < deadline))
		deadline = retry_at_us_;
	return deadline;
}

void
Lane::on_timer()
{
	conn_.on_timer();
}

} // namespace cachebust
