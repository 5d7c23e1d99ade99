/*
 * target.hpp — what an invalidation is, from capture to delivery.
 *
 * A Target is one Redis-side effect: its kind, whether its key is a SCAN
 * pattern (each match receives the kind's action), and the full key with
 * key_prefix (and tag_prefix for tags) already applied. The backend builds
 * Targets when a trigger fires; the worker executes them.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cachebust {

enum class TargetKind : uint8_t {
	Key = 0,  /* UNLINK key */
	Tag = 1,  /* remove the members of set `key` and the set itself */
	Bump = 2, /* INCR key */
	/* A materialized key (src/pg/materialize.cpp) whose tables changed: the
	 * refresh worker of `database` recomputes it. Never sent as it is. */
	Refresh = 3,
	/* SET key to a refresh's value; only the refresh worker's own engine
	 * sends these (they never pass through the ring or the journal). */
	Set = 4,
};

/* What a Set target writes. */
struct SetValue {
	std::string value;
	int64_t ttl_ms = 0;			/* > 0: PX ttl_ms */
	bool only_if_exists = false; /* XX: a refresh ahead of the TTL must not revive a removed key */
};

/* Longest key (prefixes included) we accept; longer ones are a user error. */
constexpr size_t kMaxKeyLength = 8192;

struct Target {
	TargetKind kind = TargetKind::Key;
	/* key is a glob: apply the kind's action to every key SCAN MATCH finds */
	bool glob = false;
	/* close the coalescing window as soon as this target arrives */
	bool immediate = false;
	/* Bytes of key that are key_prefix (glob-escaped in glob targets). The
	 * fallback for a target that cannot be applied covers this prefix. */
	uint32_t prefix_len = 0;
	/* Tag only: bytes of key that are key_prefix + tag_prefix; a set member
	 * starting with them is itself a tag set and is expanded. */
	uint32_t tag_prefix_len = 0;
	/* Refresh only: the OID of the database whose query computes the key. */
	uint32_t database = 0;
	std::string key;
	/* Set only. */
	std::shared_ptr<const SetValue> set;

	/* Delivery state, kept by the worker only (never in the ring). */
	uint8_t depth = 0;		 /* Tag: nesting level below the invalidated tag */
	uint8_t delivery = 0;	 /* kDeliver* flags */
	uint32_t job = 0;		 /* the fallback this target belongs to (0: none) */
	/* Tag: when (monotonic_us) the first attempt whose reply never came was
	 * sent (0: none). Its receipt lives at least tag_receipt_ttl_ms from then. */
	int64_t reply_lost_us = 0;

	bool operator==(const Target &o) const
	{
		return kind == o.kind && glob == o.glob && key == o.key && database == o.database;
	}
};

/* Target::delivery flags. */
constexpr uint8_t kDeliverAlone = 1;	  /* in a command of its own (isolates a refusal) */
constexpr uint8_t kDeliverSetsOnly = 2;	  /* Tag: leave keys that are not sets alone */
constexpr uint8_t kDeliverKeepSets = 4;	  /* Tag: leave sets alone, remove other keys */
constexpr uint8_t kDeliverSubstitute = 8; /* stands in for a refused target (counted once) */
constexpr uint8_t kDeliverAsking = 16;	  /* Cluster: ASKING first (the slot is migrating) */

/* "key", "pattern", "tag", "tag_pattern", "bump", "bump_pattern", "refresh" or "set". */
const char *target_kind_name(TargetKind kind, bool glob);

/* Escapes *, ?, [, ] and \ so that SCAN MATCH treats them literally. */
std::string glob_escape(std::string_view text);

/* The key_prefix a target was built with (unescaped for glob targets). */
std::string target_prefix(const Target &t);

/* A user mistake in a template, a target or a key (never a bug of ours). */
class TargetError : public std::runtime_error
{
  public:
	using std::runtime_error::runtime_error;
};

/* Throws TargetError when key is empty or longer than kMaxKeyLength. */
void check_key_length(const std::string &key);

} // namespace cachebust
