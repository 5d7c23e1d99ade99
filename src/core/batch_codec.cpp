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
		th.tag_prefix_len = t.tag_prefix_len;
		th.prefix_len = t.prefix_len;
		th.key_len = static_cast<uint32_t>(t.key.size());
		memcpy(p, &th, sizeof(th));
		p += sizeof(th);
		memcpy(p, t.key.data(), t.key.size());
		p += pad8(t.key.size());
	}
}

} // namespace

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
		if (th.kind > static_cast<uint8_t>(TargetKind::Bump) ||
			off + pad8(th.key_len) > header.total_len || th.tag_prefix_len > th.key_len ||
			th.prefix_len > th.key_len)
			throw std::runtime_error("corrupt batch: bad target");
		Target t;
		t.kind = static_cast<TargetKind>(th.kind);
		t.glob = (th.flags & kTargetGlob) != 0;
		t.immediate = (th.flags & kTargetImmediate) != 0;
		t.tag_prefix_len = th.tag_prefix_len;
		t.prefix_len = th.prefix_len;
		t.key.assign(data + off, th.key_len);
		off += pad8(th.key_len);
		out.targets.push_back(std::move(t));
	}
	if (off != header.total_len)
		throw std::runtime_error("corrupt batch: length does not match its targets");
	return header.total_len;
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
