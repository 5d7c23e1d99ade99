/*
 * deliverer.hpp — turning a batch of targets into Redis commands.
 *
 * One delivery is as few round trips as the work allows: every plain key
 * (multi-key UNLINK in chunks), tag (one EVALSHA of the tag script each) and
 * bump (INCR) of the batch goes out in one pipeline; glob targets need SCAN
 * round trips; an optional PUBLISH follows. deliver() returns only when
 * Redis acknowledged every command, otherwise it throws and the caller
 * retries the whole batch later (invalidations are idempotent).
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/redis_client.hpp"
#include "core/target.hpp"

namespace cachebust {

struct DeliveryOptions {
	int tag_depth = 3;
	std::string publish_channel;
	size_t unlink_chunk = 512;
	size_t scan_count = 1000;
};

struct DeliveryCounters {
	uint64_t commands = 0;	   /* every command sent, SCANs and PUBLISH included */
	uint64_t error_replies = 0;
};

/*
 * The tag script. KEYS[1] is the tag set; ARGV[1] the prefix that marks a
 * member as a nested tag set; ARGV[2] the depth bound. Members are removed
 * with the set, atomically; a member that is itself a set under the prefix
 * is expanded instead (to ARGV[2] levels, each set once, so cycles end);
 * nested sets beyond the bound are left in place, so their own members stay
 * reachable when that tag is invalidated.
 */
extern const char *const kTagScript;

/* The message PUBLISHed for a delivered batch: {"keys":[...],"tags":[...],...}
 * with empty lists left out. Strings are JSON-escaped; a byte that is not
 * part of valid UTF-8 is written as \u00XX of its value. */
std::string batch_json(const std::vector<Target> &targets);

/* JSON string literal (with quotes) of arbitrary bytes, as above. */
std::string json_string(const std::string &bytes);

/* Multi-key UNLINK commands for keys, at most chunk keys each. */
std::vector<Command> unlink_commands(const std::vector<std::string> &keys, size_t chunk);

class Deliverer
{
  public:
	explicit Deliverer(RedisClient &client) : client_(client) {}

	void deliver(const std::vector<Target> &targets, const DeliveryOptions &options,
				 DeliveryCounters &counters);

	/* Removes every key matching glob_escape(key_prefix)*; refuses an empty
	 * prefix (std::invalid_argument), which would mean the whole database. */
	void fallback_prefix(const std::string &key_prefix, const DeliveryOptions &options,
						 DeliveryCounters &counters);
	/* INCR <key_prefix>cachebust:generation */
	void fallback_generation(const std::string &key_prefix, DeliveryCounters &counters);
	/* FLUSHDB ASYNC */
	void fallback_flushdb(DeliveryCounters &counters);

	/* Forget per-connection state (the loaded script); call after connecting. */
	void reset_connection_state() { script_sha_.clear(); }

  private:
	std::vector<Reply> run(const std::vector<Command> &commands, DeliveryCounters &counters);
	void ensure_script(DeliveryCounters &counters);
	Command tag_command(const std::string &key, uint32_t prefix_len, int depth) const;
	void deliver_glob(const Target &target, const DeliveryOptions &options, DeliveryCounters &counters);
	void check(const std::vector<Reply> &replies, const std::vector<Command> &commands,
			   DeliveryCounters &counters);

	RedisClient &client_;
	std::string script_sha_;
};

} // namespace cachebust
