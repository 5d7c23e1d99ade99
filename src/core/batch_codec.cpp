/*
 * batch_codec.cpp — encoding and decoding of ring-buffer batches.
 */
#include "core/batch_codec.hpp"

#include <algorithm>
#include <stdexcept>

#include "core/cpp_only.hpp"

namespace cachebust {

static size_t
pad8(size_t n)
{
	return (n + 7) & ~static_cast<size_t>(7);
}

namespace {

/* The kinds a committed transaction can carry (Set is the refresh worker's own). */
bool
ring_kind(uint8_t kind)
{
	return kind <= static_cast<uint8_t>(TargetKind::Refresh);
}

template <typename Targets, typename Get>
void
encode(const Targets &targets, Get get, uint32_t flags, std::string &buf)
{
	size_t total = sizeof(BatchHeader);
	for (const auto &item : targets)
		total += encoded_target_size(get(item).key.size());
	if (total > UINT32_MAX)
		throw TargetError("transaction buffered more than 4GB of invalidation targets");

	/* (buf keeps its capacity: a backend's buffer is reused commit after commit.) */
	buf.assign(total, '\0');
	char *p = buf.data();

	BatchHeader header{};
	header.total_len = static_cast<uint32_t>(total);
	header.target_count = static_cast<uint32_t>(targets.size());
	header.flags = flags;
	memcpy(p, &header, sizeof(header));
	p += sizeof(header);

	for (const auto &item : targets) {
		const Target &t = get(item);
		TargetHeader th{};
		th.kind = static_cast<uint8_t>(t.kind);
		th.flags = (t.glob ? kTargetGlob : 0) | (t.immediate ? kTargetImmediate : 0);
		th.kind_detail = target_kind_detail(t);
		th.prefix_len = t.prefix_len;
		th.key_len = static_cast<uint32_t>(t.key.size());
		memcpy(p, &th, sizeof(th));
		p += sizeof(th);
		memcpy(p, t.key.data(), t.key.size());
		p += pad8(t.key.size());
	}
}

} // namespace

uint32_t
target_kind_detail(const Target &t)
{
	return t.kind == TargetKind::Tag ? t.tag_prefix_len : t.kind == TargetKind::Refresh ? t.database : 0;
}

bool
set_target_kind_detail(Target &t, uint64_t detail)
{
	if (t.kind == TargetKind::Refresh) {
		t.database = static_cast<uint32_t>(detail);
		return detail != 0 && detail <= UINT32_MAX;
	}
	if (t.kind == TargetKind::Tag) {
		t.tag_prefix_len = static_cast<uint32_t>(detail);
		return detail <= t.key.size();
	}
	return detail <= t.key.size(); /* (ignored, as older builds wrote it) */
}

void
encode_batch_into(const PendingSet &pending, std::string &out)
{
	encode(
		pending.entries(), [](const PendingSet::Entry &e) -> const Target & { return e.target; },
		pending.any_immediate() ? kBatchImmediate : 0, out);
}

void
encode_level_into(const PendingSet &pending, int nest_level, std::string &out)
{
	/* Levels only grow towards the end of the set, so the level is a tail. */
	struct Tail {
		const PendingSet::Entry *first, *last;
		const PendingSet::Entry *begin() const { return first; }
		const PendingSet::Entry *end() const { return last; }
		size_t size() const { return static_cast<size_t>(last - first); }
	};
	const std::vector<PendingSet::Entry> &entries = pending.entries();
	size_t from = entries.size();
	bool immediate = false;
	while (from > 0 && entries[from - 1].nest_level >= nest_level) {
		from--;
		immediate = immediate || entries[from].target.immediate;
	}
	Tail tail{entries.data() + from, entries.data() + entries.size()};
	encode(
		tail, [](const PendingSet::Entry &e) -> const Target & { return e.target; },
		immediate ? kBatchImmediate : 0, out);
}

std::string
encode_batch(const PendingSet &pending)
{
	std::string out;
	encode_batch_into(pending, out);
	return out;
}

std::string
encode_targets(const std::vector<Target> &targets, uint32_t flags)
{
	std::string out;
	encode(
		targets, [](const Target &t) -> const Target & { return t; }, flags, out);
	return out;
}

std::string
encode_lost_batch(const std::vector<std::string> &prefixes)
{
	std::vector<Target> targets(prefixes.size());
	for (size_t i = 0; i < prefixes.size(); i++) {
		targets[i].key = prefixes[i];
		targets[i].prefix_len = static_cast<uint32_t>(prefixes[i].size());
	}
	return encode_targets(targets, kBatchLost);
}

void
stamp_batch(char *batch, uint64_t seq, int64_t commit_time_us, uint64_t commit_lsn, uint64_t first_lsn)
{
	BatchHeader *header = reinterpret_cast<BatchHeader *>(batch);
	header->seq = seq;
	header->commit_time_us = commit_time_us;
	header->commit_lsn = commit_lsn;
	header->first_lsn = first_lsn;
}

uint32_t
batch_length(const char *data)
{
	BatchHeader header;
	memcpy(&header, data, sizeof(header));
	return header.total_len;
}

size_t
decode_batch(const char *data, size_t available, DecodedBatch &out)
{
	if (available < sizeof(BatchHeader))
		throw std::runtime_error("truncated batch header");
	BatchHeader header;
	memcpy(&header, data, sizeof(header));
	if (header.total_len > available || header.total_len < sizeof(BatchHeader) ||
		header.total_len % 8 != 0)
		throw std::runtime_error("corrupt batch length");

	out.seq = header.seq;
	out.commit_time_us = header.commit_time_us;
	out.commit_lsn = header.commit_lsn;
	out.first_lsn = header.first_lsn;
	out.immediate = (header.flags & kBatchImmediate) != 0;
	out.lost = (header.flags & kBatchLost) != 0;
	out.flushdb = (header.flags & kBatchFlushDb) != 0;
	out.targets.clear();
	out.targets.reserve(header.target_count);

	size_t off = sizeof(BatchHeader);
	for (uint32_t i = 0; i < header.target_count; i++) {
		if (off + sizeof(TargetHeader) > header.total_len)
			throw std::runtime_error("corrupt batch: target header past the end");
		TargetHeader th;
		memcpy(&th, data + off, sizeof(th));
		off += sizeof(th);
		Target t;
		t.kind = static_cast<TargetKind>(th.kind);
		t.key.assign(data + off, std::min<size_t>(th.key_len, header.total_len - off));
		if (!ring_kind(th.kind) || off + pad8(th.key_len) > header.total_len || th.prefix_len > th.key_len ||
			!set_target_kind_detail(t, th.kind_detail))
			throw std::runtime_error("corrupt batch: bad target");
		t.glob = (th.flags & kTargetGlob) != 0;
		t.immediate = (th.flags & kTargetImmediate) != 0;
		t.prefix_len = th.prefix_len;
		off += pad8(th.key_len);
		out.targets.push_back(std::move(t));
	}
	if (off != header.total_len)
		throw std::runtime_error("corrupt batch: length does not match its targets");
	return header.total_len;
}

namespace {

void
put_varint(std::string &out, uint64_t v)
{
	while (v >= 0x80) {
		out.push_back(static_cast<char>((v & 0x7F) | 0x80));
		v >>= 7;
	}
	out.push_back(static_cast<char>(v));
}

uint64_t
get_varint(const unsigned char *&p, const unsigned char *end)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (p == end)
			throw std::runtime_error("corrupt journal message: truncated length");
		uint8_t b = *p++;
		v |= static_cast<uint64_t>(b & 0x7F) << shift;
		if ((b & 0x80) == 0)
			return v;
	}
	throw std::runtime_error("corrupt journal message: length too long");
}

} // namespace

void
encode_journal_into(const PendingSet &pending, int nest_level, std::string &out)
{
	const std::vector<PendingSet::Entry> &entries = pending.entries();
	/* Levels only grow towards the end of the set, so a level is a tail. */
	size_t from = entries.size();
	if (nest_level > 0)
		while (from > 0 && entries[from - 1].nest_level >= nest_level)
			from--;
	else
		from = 0;
	out.clear();
	out.push_back(static_cast<char>(kJournalFormat));
	for (size_t i = from; i < entries.size(); i++) {
		const Target &t = entries[i].target;
		out.push_back(static_cast<char>(t.kind));
		out.push_back(static_cast<char>((t.glob ? kTargetGlob : 0) | (t.immediate ? kTargetImmediate : 0)));
		put_varint(out, target_kind_detail(t));
		put_varint(out, t.prefix_len);
		put_varint(out, t.key.size());
		out.append(t.key);
	}
}

void
decode_journal_message(const char *data, size_t len, std::vector<Target> &out)
{
	if (len == 0)
		throw std::runtime_error("empty journal message");
	if (static_cast<uint8_t>(data[0]) != kJournalFormat) {
		DecodedBatch batch;
		decode_batch(data, len, batch);
		for (Target &t : batch.targets)
			out.push_back(std::move(t));
		return;
	}
	const auto *p = reinterpret_cast<const unsigned char *>(data) + 1;
	const auto *end = reinterpret_cast<const unsigned char *>(data) + len;
	while (p != end) {
		if (end - p < 2)
			throw std::runtime_error("corrupt journal message: truncated target");
		Target t;
		uint8_t kind = *p++;
		uint8_t flags = *p++;
		uint64_t detail = get_varint(p, end);
		uint64_t prefix_len = get_varint(p, end);
		uint64_t key_len = get_varint(p, end);
		if (!ring_kind(kind) || key_len > static_cast<uint64_t>(end - p) || prefix_len > key_len)
			throw std::runtime_error("corrupt journal message: bad target");
		t.kind = static_cast<TargetKind>(kind);
		t.key.assign(reinterpret_cast<const char *>(p), static_cast<size_t>(key_len));
		if (!set_target_kind_detail(t, detail))
			throw std::runtime_error("corrupt journal message: bad target");
		t.glob = (flags & kTargetGlob) != 0;
		t.immediate = (flags & kTargetImmediate) != 0;
		t.prefix_len = static_cast<uint32_t>(prefix_len);
		p += key_len;
		out.push_back(std::move(t));
	}
}

void
ring_copy_in(char *ring, uint64_t capacity, uint64_t pos, const char *src, size_t len)
{
	size_t offset = pos % capacity;
	size_t first = std::min<size_t>(len, capacity - offset);
	memcpy(ring + offset, src, first);
	memcpy(ring, src + first, len - first);
}

void
ring_copy_out(const char *ring, uint64_t capacity, uint64_t pos, char *dst, size_t len)
{
	size_t offset = pos % capacity;
	size_t first = std::min<size_t>(len, capacity - offset);
	memcpy(dst, ring + offset, first);
	memcpy(dst + first, ring, len - first);
}

} // namespace cachebust
