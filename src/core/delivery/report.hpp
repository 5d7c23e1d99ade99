/*
 * report.hpp — what the delivery engine tells the worker after each turn:
 * counter increments, log lines, and the work only the worker can decide
 * about (fallbacks, which depend on settings and the prefix registry).
 *
 * The engine never logs or touches PostgreSQL itself; the worker turns
 * this into ereport() calls and shared-memory stats.
 */
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/seq_set.hpp"

namespace cachebust {

/* Which delivery a target belongs to. Each stream has its own "delivered up
 * to" position: second sends must not hold back the first ones. */
enum class Stream : uint8_t {
	First = 0,	  /* the invalidation of a commit (and fallbacks covering lost ones) */
	Redelete = 1, /* the delayed second send of cachebust.redelete_ms */
	Standby = 2,  /* the second send after the standbys replayed the commit */
};
constexpr int kStreams = 3;

struct DeliveryCounters {
	uint64_t commands = 0;			  /* every command sent */
	uint64_t errors = 0;			  /* error replies and lost connections */
	uint64_t retries = 0;			  /* sends delayed by backoff after a transient error */
	uint64_t reconnects = 0;		  /* connections made after the first */
	uint64_t targets_failed = 0;	  /* refused for good, resolved by a substitute or fallback */
	uint64_t tag_members_skipped = 0; /* tag members outside the tag's key_prefix, left alone */
	uint64_t failovers = 0;			  /* master changes followed */
	uint64_t keys_scanned = 0;		  /* keys SCAN returned for glob targets */
	uint64_t scan_passes = 0;		  /* glob passes completed */

	void add(const DeliveryCounters &o);
};

enum class LogLevel { Debug, Log, Warning };

struct LogLine {
	LogLevel level;
	std::string message;
	std::string detail = {}; /* optional, as PostgreSQL's errdetail and errhint */
	std::string hint = {};
};

/* A target that could not be applied, not even by its substitute: the
 * fallback must cover its key prefix on behalf of the commits `seqs`. */
struct FallbackNeed {
	std::string prefix;
	Stream stream;
	SeqSet seqs;
};

struct DeliveryReport {
	DeliveryCounters counters;
	std::vector<LogLine> logs;
	std::vector<FallbackNeed> fallback_needs;
	std::vector<uint32_t> failed_jobs; /* fallbacks that could not run completely */
	/* The most recent failure, if there was one this turn. Where it happened
	 * and which key it concerned (maybe another tenant's) are kept apart:
	 * not every role may see them (DESIGN.md, privileges). */
	bool new_error = false;
	std::string last_error;
	std::string last_error_endpoint;
	std::string last_error_key;

	void note_error(std::string message, std::string endpoint = {}, std::string key = {})
	{
		new_error = true;
		last_error = std::move(message);
		last_error_endpoint = std::move(endpoint);
		last_error_key = std::move(key);
	}
};

} // namespace cachebust
