/*
 * guc.hpp — cachebust's settings (DESIGN.md, "GUCs").
 */
#pragma once

#include "pg/postgres.hpp"

namespace cachebust::pg {

/* cachebust.fallback (values are core FallbackMode's). */
enum FallbackSetting {
	FALLBACK_PREFIX,
	FALLBACK_GENERATION,
	FALLBACK_FLUSHDB,
	FALLBACK_NONE,
};

/* cachebust.tls_verify */
enum TlsVerifySetting {
	TLS_VERIFY_FULL,
	TLS_VERIFY_CA,
	TLS_VERIFY_NONE,
};

extern char *guc_redis_url;
extern char *guc_tls_ca_file;
extern char *guc_tls_cert_file;
extern char *guc_tls_key_file;
extern char *guc_tls_server_name;
extern int guc_tls_verify;
extern char *guc_sentinel_password;
extern bool guc_publish_sharded;
extern char *guc_standby_names;
extern int guc_standby_max_wait_ms;
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
extern int guc_failover_repeat_ms;
extern int guc_redelete_ms;
extern int guc_fallback;
extern bool guc_journal;
extern int guc_refresh_timeout_ms;
extern int guc_refresh_workers;

/* Defines every cachebust.* setting; called once from _PG_init. */
void define_gucs();

/* Keeps Redis passwords out of the server log (see guc.cpp). */
void install_log_redaction();

/* Longest key_prefix / tag_prefix accepted, in bytes. */
constexpr int kMaxPrefixLength = 1024;

} // namespace cachebust::pg
