/*
 * guc.hpp — cachebust's settings (DESIGN.md, "GUCs").
 */
#pragma once

#include "pg/postgres.hpp"

namespace cachebust::pg {

enum FallbackMode {
	FALLBACK_PREFIX,
	FALLBACK_GENERATION,
	FALLBACK_FLUSHDB,
	FALLBACK_NONE,
};

extern char *guc_redis_url;
extern int guc_debounce_ms;
extern int guc_max_batch;
extern int guc_queue_size_kb;
extern int guc_max_pending;
extern char *guc_key_prefix;
extern char *guc_tag_prefix;
extern int guc_tag_depth;
extern char *guc_publish_channel;
extern bool guc_enabled;
extern int guc_connect_timeout_ms;
extern int guc_command_timeout_ms;
extern int guc_retry_max_ms;
extern int guc_redelete_ms;
extern int guc_fallback;

/* Defines every cachebust.* setting; called once from _PG_init. */
void define_gucs();

/* Keeps Redis passwords out of the server log (see guc.cpp). */
void install_log_redaction();

/* Longest key_prefix / tag_prefix accepted, in bytes. */
constexpr int kMaxPrefixLength = 1024;

} // namespace cachebust::pg
