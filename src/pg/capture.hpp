/*
 * capture.hpp — the per-transaction pending set and its hand-over at commit.
 */
#pragma once

#include <string>
#include <vector>

#include "pg/postgres.hpp"

#include "core/pending_set.hpp"
#include "core/template.hpp"

namespace cachebust::pg {

/* Registers the transaction callbacks; called once from _PG_init. */
void capture_init();

/* Buffers a target in the current (sub)transaction. May throw bad_alloc. */
void capture_add(Target &&target);
/* Throws TargetError for a glob that could reach every application's keys
 * (no literal start, which only an empty key_prefix allows). */
void capture_check_reach(const Target &target);

/* The current transaction's buffered targets. */
const PendingSet &capture_pending();

/* The key prefixes the current transaction built targets with. */
const std::vector<std::string> &capture_prefixes_used();

/* The transaction outgrew the queue and will commit as lost (see capture.cpp). */
bool capture_overflowed();
/* Tells the user, once, that the transaction just overflowed. Call from C
 * entry points, outside any C++ scope (it may raise a WARNING). */
void capture_warn_if_overflowed();

/* key_prefix and tag_prefix as currently set (and remembered as used). */
KeyPrefixes current_prefixes();

/* Waits until everything this session committed is delivered; false on
 * timeout, or while any of it is uncovered (no fallback covered it). */
bool capture_wait_for_delivery(int timeout_ms);
/* This session committed invalidations since it started or since
 * capture_wait_for_delivery() last returned true. */
bool capture_committed_since_wait();

} // namespace cachebust::pg
