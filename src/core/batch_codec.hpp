/*
 * batch_codec.hpp — how a committed transaction's targets are laid out in
 * the shared-memory ring buffer.
 *
 * A backend encodes its pending set before commit (where failing is still
 * allowed), then at commit only stamps the sequence number and commit time
 * into the header and copies the bytes into the ring. The worker copies
 * whole batches back out and decodes them. Everything is 8-byte aligned so
 * the header can be read in place.
 *
 *   BatchHeader | TargetHeader key-bytes pad | TargetHeader key-bytes pad | ...
 *
 * In the ring, a committing backend reserves its space and writes the
 * header (state kBatchWriting) under the queue lock, copies the rest
 * without it, and only then sets state to kBatchReady; the worker stops
 * draining at the first batch that is not ready.
 */
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/pending_set.hpp"
#include "core/target.hpp"

namespace cachebust {

struct BatchHeader {
	uint32_t state;		   /* ring only: kBatchWriting until the bytes are all there */
	uint32_t total_len;	   /* bytes of the whole batch, multiple of 8 */
	uint64_t seq;		   /* assigned at commit, under the queue lock */
	int64_t commit_time_us; /* assigned at commit */
	uint64_t commit_lsn;   /* assigned at commit: where the commit record ends */
	uint64_t first_lsn;	   /* assigned at commit: at or before the transaction's first
							* journal message (0: none; see core/delivery/journal_backlog.hpp) */
	uint32_t target_count;
	uint32_t flags; /* kBatchImmediate, kBatchLost */
};

constexpr uint32_t kBatchWriting = 0;
constexpr uint32_t kBatchReady = 1;

constexpr uint32_t kBatchImmediate = 1;
/* The transaction's targets could not be handed over (too many for the
 * queue): the batch lists the key prefixes it used instead, as Key targets
 * whose key is the prefix. The worker reads its targets back from the WAL
 * journal (first_lsn to commit_lsn) or, without one, runs the fallback for
 * these prefixes. */
constexpr uint32_t kBatchLost = 2;
/* Only in the worker's own files: also run FLUSHDB (a flushdb fallback to repeat). */
constexpr uint32_t kBatchFlushDb = 4;

struct TargetHeader {
	uint8_t kind;
	uint8_t flags; /* kTargetGlob | kTargetImmediate */
	uint16_t reserved;
	uint32_t kind_detail; /* target_kind_detail() */
	uint32_t key_len;
	uint32_t prefix_len;
};

constexpr uint8_t kTargetGlob = 1;
constexpr uint8_t kTargetImmediate = 2;

static_assert(sizeof(BatchHeader) == 48, "BatchHeader layout is part of the ring format");
static_assert(sizeof(TargetHeader) == 16, "TargetHeader layout is part of the ring format");

/* The one kind-specific number a target carries in the ring and the
 * journal: a tag's tag_prefix_len, a refresh's database OID (0 otherwise). */
uint32_t target_kind_detail(const Target &t);
/* Sets it on a decoded target; false when it does not fit the target. */
bool set_target_kind_detail(Target &t, uint64_t detail);

/* Bytes a target takes in an encoded batch. */
inline size_t
encoded_target_size(size_t key_len)
{
	return sizeof(TargetHeader) + ((key_len + 7) & ~static_cast<size_t>(7));
}

/* Encodes the pending set as one batch (seq, commit time and LSN left zero),
 * into out (its memory reused), or as a new string. */
void encode_batch_into(const PendingSet &pending, std::string &out);
std::string encode_batch(const PendingSet &pending);

/* Encodes only the entries at nest_level or deeper — the tail of the set,
 * what the subtransaction at that level holds — into out. */
void encode_level_into(const PendingSet &pending, int nest_level, std::string &out);

/* Encodes targets as one batch (for files the worker keeps, and tests). */
std::string encode_targets(const std::vector<Target> &targets, uint32_t flags);

/* A kBatchLost batch for a transaction that used these key prefixes. */
std::string encode_lost_batch(const std::vector<std::string> &prefixes);

/* Fills in what is only known at commit; `batch` is an encoded batch. */
void stamp_batch(char *batch, uint64_t seq, int64_t commit_time_us, uint64_t commit_lsn, uint64_t first_lsn = 0);

/*
 * The journal's message (a transaction's targets in WAL) has a compact
 * format of its own: none of the ring's fields (state, length, sequence
 * number, times, LSNs) mean anything in WAL, and every byte there is
 * written, checksummed and kept:
 *
 *   kJournalFormat | per target: kind | flags | varint kind_detail |
 *                    varint prefix_len | varint key_len | key bytes
 *
 * (varint: 7 bits per byte, low first, high bit = more.) A message in
 * the ring's format (what the first 0.3.0 builds wrote) is read too.
 */
constexpr uint8_t kJournalFormat = 0xCB;

/* The whole set, or (nest_level > 0) only the entries at that level or
 * deeper, as one journal message, into out (its memory reused). */
void encode_journal_into(const PendingSet &pending, int nest_level, std::string &out);

/* Appends the targets of one journal message to out. Throws
 * std::runtime_error when the bytes are not a journal message. */
void decode_journal_message(const char *data, size_t len, std::vector<Target> &out);

/* A batch copied out of the ring. */
struct DecodedBatch {
	uint64_t seq = 0;
	int64_t commit_time_us = 0;
	uint64_t commit_lsn = 0;
	uint64_t first_lsn = 0;
	bool immediate = false;
	bool lost = false; /* targets are the prefixes of a transaction that was lost */
	bool flushdb = false;
	std::vector<Target> targets;
};

/*
 * Decodes the batch starting at data[0]; returns its total length. Throws
 * std::runtime_error when the bytes are not a well-formed batch (which would
 * mean shared memory was corrupted).
 */
size_t decode_batch(const char *data, size_t available, DecodedBatch &out);

/* Reads the total length of the batch at data (data must hold a header). */
uint32_t batch_length(const char *data);

/*
 * Wrap-around copies between a flat buffer and a ring of `capacity` bytes,
 * at the absolute byte position `pos` (positions only ever grow; the ring
 * offset is pos % capacity). They never fail and never allocate, so they are
 * safe inside the commit critical section.
 */
void ring_copy_in(char *ring, uint64_t capacity, uint64_t pos, const char *src, size_t len);
void ring_copy_out(const char *ring, uint64_t capacity, uint64_t pos, char *dst, size_t len);

} // namespace cachebust
