/*
 * clear_tokens.hpp — cachebust.clear()'s confirmation tokens.
 *
 * An emergency clear takes two calls: clear(pattern) counts the keys and
 * issues a token; clear(pattern, token) within kClearTokenLifetimeUs
 * enqueues the removal. A token is bound to the role and database that asked
 * for it and to the full pattern (key_prefix applied), and is used once.
 * The table is plain data of a fixed size, so that it can live in shared
 * memory (src/pg/clear.cpp holds its lock); what it decides is here.
 */
#pragma once

#include <cstdint>
#include <string>

#include "core/target.hpp"

namespace cachebust {

constexpr size_t kClearTokens = 16;		   /* confirmations pending at once, cluster-wide */
constexpr size_t kClearTokenChars = 16;	   /* hex digits (64 random bits) */
constexpr int64_t kClearTokenLifetimeUs = 60LL * 1000 * 1000;

/* How a clear's count ended. */
enum class ClearCountBound : uint8_t {
	Exact, /* the whole keyspace was scanned */
	Limit, /* it stopped at the limit: at least that many */
	Time,  /* it stopped at the time budget: at least that many */
};

struct ClearToken {
	char token[kClearTokenChars + 1]; /* "" = free */
	uint32_t role;
	uint32_t database;
	int64_t expires_us; /* monotonic */
	uint64_t count;
	uint32_t pattern_len;
	char pattern[kMaxKeyLength];
};

struct ClearTokenTable {
	ClearToken entries[kClearTokens];
};

enum class ClearRedeem {
	Ok,
	Unknown,	   /* never issued, already used, or expired and reused */
	OtherRole,	   /* issued to another role (not consumed) */
	OtherDatabase, /* issued in another database (not consumed) */
	OtherPattern,  /* issued for another pattern (not consumed) */
	Expired,	   /* too late (forgotten now) */
};

/* Stores a token; false when every entry holds one still valid. */
bool clear_token_issue(ClearTokenTable &table, const std::string &token, uint32_t role, uint32_t database,
					   const std::string &pattern, uint64_t count, int64_t now_us);

/* Checks token against the caller; on Ok it is used up and count is the one issued with it. */
ClearRedeem clear_token_redeem(ClearTokenTable &table, const std::string &token, uint32_t role, uint32_t database,
							   const std::string &pattern, int64_t now_us, uint64_t &count);

/* The 16 hex digits of 8 random bytes. */
std::string clear_token_text(const uint8_t random[8]);

/*
 * clear(pattern)'s answer, one line a person reads and a script parses:
 *   <token>: 1234 keys match "app:user:*"; confirm within 60 s: SELECT cachebust.clear('user:*', '<token>')
 * ("at least N keys match" when the count was bounded, with why).
 * pattern_literal is the caller's pattern as an SQL literal.
 */
std::string clear_confirmation(const std::string &token, uint64_t count, ClearCountBound bound,
							   const std::string &full_pattern, const std::string &pattern_literal,
							   int count_budget_s);

} // namespace cachebust
