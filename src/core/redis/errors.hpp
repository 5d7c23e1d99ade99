/*
 * errors.hpp — what a reply means for delivery (DESIGN.md promise 5).
 *
 * Transient trouble (the connection, a timeout, LOADING, BUSY, OOM,
 * READONLY, MASTERDOWN, TRYAGAIN, CLUSTERDOWN, ...) is retried with backoff:
 * the server will get better. A permanent command error (WRONGTYPE, a value
 * that is not an integer, NOPERM, a syntax error, anything unknown) is not:
 * retrying it would stall everything behind it forever, so the target is
 * resolved another way. Redirections tell us where a key lives now.
 */
#pragma once

#include <string>

#include "core/redis/resp.hpp"
#include "core/redis/transport.hpp"

namespace cachebust {

enum class ReplyClass {
	Ok,
	Transient,	/* retry the command later */
	Permanent,	/* never retry; resolve the target another way */
	NoScript,	/* load the script on this connection and send again */
	Moved,		/* the slot lives elsewhere for good: refresh the map, send there */
	Ask,		/* the slot is migrating: ASKING + the command on the target node */
};

struct Classified {
	ReplyClass kind = ReplyClass::Ok;
	/* The connection itself is suspect (lost, NOAUTH, READONLY, a
	 * redirect to another master): reconnect, and re-resolve the master
	 * where there is a Sentinel. */
	bool reconnect = false;
	/* Moved and Ask. */
	int slot = -1;
	Endpoint target;
	/* The redirect names no host ("MOVED 3999 :6380"): target.host is
	 * empty and means the host of the connection that got the reply. */
	bool same_host = false;
};

Classified classify_reply(const Reply &reply);

/* The error code of an error reply: its first word ("WRONGTYPE", "ERR"). */
std::string error_code(const Reply &reply);

} // namespace cachebust
