/*
 * capture.hpp — the per-transaction pending set and its hand-over at commit.
 */
#pragma once

#include "pg/postgres.hpp"

#include "core/pending_set.hpp"
#include "core/template.hpp"

namespace cachebust::pg {

/* Registers the transaction callbacks; called once from _PG_init. */
void capture_init();

/* Buffers a target in the current (sub)transaction. May throw bad_alloc. */
void capture_add(Target &&target);

/* The current transaction's buffered targets. */
const PendingSet &capture_pending();

/* key_prefix and tag_prefix as currently set. */
KeyPrefixes current_prefixes();

/* Sequence number of this session's last committed batch (0: none yet). */
uint64 capture_last_committed_seq();

} // namespace cachebust::pg
