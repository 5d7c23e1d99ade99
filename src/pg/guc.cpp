/*
 * guc.cpp — definitions and check hooks of the cachebust.* settings.
 *
 * Values are validated by check hooks so a bad postgresql.conf line is
 * rejected at reload (the old value stays) rather than discovered by the
 * worker later. Hooks run inside PostgreSQL, so they catch everything.
 */
#include "pg/guc.hpp"

#include "core/redis/url.hpp"
#include "core/secret_text.hpp"
#include "pg/standby_progress.hpp"

extern "C" {
#include "tcop/tcopprot.h"
}

namespace cachebust::pg {

char *guc_redis_url = nullptr;
char *guc_tls_ca_file = nullptr;
char *guc_tls_cert_file = nullptr;
char *guc_tls_key_file = nullptr;
char *guc_tls_server_name = nullptr;
int guc_tls_verify = TLS_VERIFY_FULL;
char *guc_sentinel_password = nullptr;
bool guc_publish_sharded = false;
char *guc_standby_names = nullptr;
int guc_standby_max_wait_ms = 60000;
int guc_debounce_ms = 50;
int guc_max_batch = 10000;
int guc_queue_size_kb = 16 * 1024;
int guc_max_pending = 1000000;
char *guc_key_prefix = nullptr;
char *guc_tag_prefix = nullptr;
int guc_tag_depth = 3;
char *guc_publish_channel = nullptr;
bool guc_enabled = true;
int guc_connect_timeout_ms = 1000;
int guc_command_timeout_ms = 2000;
int guc_retry_max_ms = 5000;
int guc_failover_repeat_ms = 10000;
int guc_redelete_ms = 0;
int guc_fallback = FALLBACK_PREFIX;
bool guc_journal = true;
int guc_refresh_timeout_ms = 5000;
int guc_refresh_workers = 1;

/*
 * cachebust_internal.*: switches of cachebust's own SQL, not settings for
 * users. They are read with current_setting() by the SQL scripts only, so
 * the variables here just hold them. Superuser-only: `syncing` tells the
 * SECURITY DEFINER event trigger that it is already running (its own DDL
 * fires it again), so a role able to set it could create partitions without
 * the TRUNCATE trigger copies.
 */
enum WatchCaptureSetting {
	WATCH_CAPTURE_AUTO, /* statement triggers where PostgreSQL allows them */
	WATCH_CAPTURE_ROW,	/* row triggers everywhere (the test suite's second run) */
};
static bool guc_internal_syncing = false;
static int guc_internal_watch_capture = WATCH_CAPTURE_AUTO;

static const struct config_enum_entry watch_capture_options[] = {
	{"auto", WATCH_CAPTURE_AUTO, false},
	{"row", WATCH_CAPTURE_ROW, false},
	{nullptr, 0, false},
};

static const struct config_enum_entry tls_verify_options[] = {
	{"full", TLS_VERIFY_FULL, false},
	{"ca", TLS_VERIFY_CA, false},
	{"none", TLS_VERIFY_NONE, false},
	{nullptr, 0, false},
};

static const struct config_enum_entry fallback_options[] = {
	{"prefix", FALLBACK_PREFIX, false},
	{"generation", FALLBACK_GENERATION, false},
	{"flushdb", FALLBACK_FLUSHDB, false},
	{"none", FALLBACK_NONE, false},
	{nullptr, 0, false},
};

/*
 * The URL must parse, or be empty (not configured). The message never
 * repeats any part of the value: a mistyped URL can hold its password
 * anywhere.
 */
static bool
check_redis_url(char **newval, void **, GucSource)
{
	static char detail[512];

	if (*newval == nullptr || **newval == '\0')
		return true;
	try {
		RedisUrl::parse(*newval);
		return true;
	} catch (const std::exception &e) {
		strlcpy(detail, e.what(), sizeof(detail));
	} catch (...) {
		strlcpy(detail, "unparseable URL", sizeof(detail));
	}
	GUC_check_errmsg("invalid value for parameter \"cachebust.redis_url\"");
	GUC_check_errdetail("%s", detail);
	GUC_check_errhint("Use redis://[user[:password]@]host[:port][/db], rediss://..., unix:///path.sock[?db=N], "
					  "redis-sentinel://host[:port],.../service[/db] or redis-cluster://host[:port],...");
	return false;
}

static bool
check_standby_names(char **newval, void **, GucSource)
{
	static char detail[256];

	try {
		std::string why;
		if (standby_names_valid(*newval, why))
			return true;
		strlcpy(detail, why.c_str(), sizeof(detail));
	} catch (...) {
		strlcpy(detail, "cachebust.standby_names could not be parsed", sizeof(detail));
	}
	GUC_check_errdetail("%s", detail);
	return false;
}

static bool
check_prefix(char **newval, void **, GucSource)
{
	if (*newval != nullptr && strlen(*newval) > static_cast<size_t>(kMaxPrefixLength)) {
		GUC_check_errdetail("A prefix may be at most %d bytes long.", kMaxPrefixLength);
		return false;
	}
	return true;
}

void
define_gucs()
{
	DefineCustomStringVariable(
		"cachebust.redis_url", "Redis deployment that receives the invalidations.",
		"Empty: not configured; nothing is sent and invalidations wait as in an outage.",
		&guc_redis_url, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, check_redis_url, nullptr, nullptr);

	DefineCustomStringVariable(
		"cachebust.tls_ca_file", "Certificates trusted to sign the Redis server's (rediss://).",
		"Empty: the system's trust store.", &guc_tls_ca_file, "", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomStringVariable(
		"cachebust.tls_cert_file", "Client certificate presented to Redis (rediss://).", nullptr,
		&guc_tls_cert_file, "", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomStringVariable(
		"cachebust.tls_key_file", "Private key of cachebust.tls_cert_file.", nullptr, &guc_tls_key_file, "",
		PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
	DefineCustomStringVariable(
		"cachebust.tls_server_name", "Name sent as SNI and verified in the Redis certificate.",
		"Empty: the URL's host.", &guc_tls_server_name, "", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomEnumVariable(
		"cachebust.tls_verify", "How the Redis server's certificate is verified.",
		"full: chain and host name; ca: chain only; none: nothing (unsafe).", &guc_tls_verify,
		TLS_VERIFY_FULL, tls_verify_options, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomStringVariable(
		"cachebust.sentinel_password", "Password of the Redis Sentinels themselves.", nullptr,
		&guc_sentinel_password, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
	DefineCustomBoolVariable(
		"cachebust.publish_sharded", "In Redis Cluster, publish with SPUBLISH instead of PUBLISH.", nullptr,
		&guc_publish_sharded, false, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
	DefineCustomStringVariable(
		"cachebust.standby_names", "Standbys whose replay each batch waits for before it is sent again.",
		"Standby application_names, or * for every streaming standby; empty: no second send.",
		&guc_standby_names, "", PGC_SIGHUP, GUC_LIST_INPUT, check_standby_names, nullptr, nullptr);
	DefineCustomIntVariable(
		"cachebust.standby_max_wait_ms", "Longest a second send waits for a lagging or absent standby.", nullptr,
		&guc_standby_max_wait_ms, 60000, 0, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);

	DefineCustomIntVariable(
		"cachebust.debounce_ms", "Coalescing window: how long the worker gathers targets before sending.",
		"0 sends as soon as the queue is drained.", &guc_debounce_ms, 50, 0, 3600 * 1000,
		PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);

	DefineCustomIntVariable(
		"cachebust.max_batch", "Distinct pending targets that close the coalescing window early.",
		nullptr, &guc_max_batch, 10000, 1, INT_MAX, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);

	/* A postmaster setting can only be created while preloading. */
	/* Settings of the postmaster exist only when preloaded (PostgreSQL
	 * refuses to create them later, when a session loads the library). */
	if (process_shared_preload_libraries_in_progress) {
		DefineCustomIntVariable(
			"cachebust.queue_size", "Size of the shared-memory queue between committing backends and the worker.",
			nullptr, &guc_queue_size_kb, 16 * 1024, 64, 1024 * 1024, PGC_POSTMASTER, GUC_UNIT_KB,
			nullptr, nullptr, nullptr);
		DefineCustomBoolVariable(
			"cachebust.journal", "Whether each transaction's invalidations are also written to WAL.",
			"On: after a crash, an overflow or a failover they are replayed from WAL instead of falling back. "
			"Needs wal_level replica or higher and one replication slot.",
			&guc_journal, true, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
	}

	DefineCustomIntVariable(
		"cachebust.refresh_timeout_ms", "Statement timeout of the queries that recompute materialized keys.",
		"A refresh that takes longer fails, and its key is removed.", &guc_refresh_timeout_ms, 5000, 1,
		24 * 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);

	DefineCustomIntVariable(
		"cachebust.refresh_workers", "Materialized keys recomputed at the same time, per database.",
		"Each is a background worker connected to the database (max_worker_processes bounds them all).",
		&guc_refresh_workers, 1, 1, 64, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);

	DefineCustomIntVariable(
		"cachebust.max_pending", "Distinct targets the worker holds while Redis is unreachable before falling back.",
		nullptr, &guc_max_pending, 1000000, 1, INT_MAX, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);

	DefineCustomStringVariable(
		"cachebust.key_prefix", "Prefix prepended to every invalidated key.",
		"The fallback removes every key under this prefix.", &guc_key_prefix, "", PGC_SUSET, 0,
		check_prefix, nullptr, nullptr);

	DefineCustomStringVariable(
		"cachebust.tag_prefix", "Where tag sets live, under key_prefix.", nullptr, &guc_tag_prefix,
		"tag:", PGC_SUSET, 0, check_prefix, nullptr, nullptr);

	DefineCustomIntVariable(
		"cachebust.tag_depth", "How deep nested tag sets are expanded.", nullptr, &guc_tag_depth, 3,
		0, 100, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);

	DefineCustomStringVariable(
		"cachebust.publish_channel", "Redis channel that receives each delivered batch as JSON.",
		"Empty disables publishing.", &guc_publish_channel, "", PGC_SIGHUP, 0, nullptr, nullptr,
		nullptr);

	DefineCustomBoolVariable(
		"cachebust.enabled", "Whether cachebust triggers and functions record targets.",
		"Turn off for bulk loads; nothing is recorded while off.", &guc_enabled, true, PGC_SUSET, 0,
		nullptr, nullptr, nullptr);

	DefineCustomIntVariable(
		"cachebust.connect_timeout_ms", "Timeout for connecting to Redis.", nullptr,
		&guc_connect_timeout_ms, 1000, 1, 600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr,
		nullptr);

	DefineCustomIntVariable(
		"cachebust.command_timeout_ms", "Timeout for a Redis command round trip.", nullptr,
		&guc_command_timeout_ms, 2000, 1, 600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr,
		nullptr);

	DefineCustomIntVariable(
		"cachebust.retry_max_ms", "Cap of the exponential backoff between Redis retries.", nullptr,
		&guc_retry_max_ms, 5000, 10, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr,
		nullptr);

	DefineCustomIntVariable(
		"cachebust.failover_repeat_ms",
		"After a Sentinel or Cluster failover, what the old master acknowledged this long before it stopped "
		"answering is applied again (0 = off).",
		"Replication is asynchronous: the new master may lack the last writes the old one acknowledged.",
		&guc_failover_repeat_ms, 10000, 0, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);

	DefineCustomIntVariable(
		"cachebust.redelete_ms", "Delay of a second invalidation of every delivered batch (0 = off).",
		"Closes the race in which a reader that read the old row before the commit "
		"writes it back into the cache after the first invalidation.",
		&guc_redelete_ms, 0, 0, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);

	DefineCustomEnumVariable(
		"cachebust.fallback", "What to do when invalidations could not be delivered exactly.",
		"prefix removes every key under key_prefix; generation increments <key_prefix>cachebust:generation; "
		"flushdb empties the Redis database; none does nothing.",
		&guc_fallback, FALLBACK_PREFIX, fallback_options, PGC_SIGHUP, 0, nullptr, nullptr,
		nullptr);

	MarkGUCPrefixReserved("cachebust");

	DefineCustomBoolVariable(
		"cachebust_internal.syncing", "Internal: cachebust's partition event trigger is running.", nullptr,
		&guc_internal_syncing, false, PGC_SUSET,
		GUC_NO_SHOW_ALL | GUC_NO_RESET_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE, nullptr, nullptr, nullptr);
	DefineCustomEnumVariable(
		"cachebust_internal.watch_capture", "Internal: row makes watch() create row triggers everywhere.",
		"For cachebust's test suite.", &guc_internal_watch_capture, WATCH_CAPTURE_AUTO, watch_capture_options,
		PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE, nullptr, nullptr, nullptr);
	MarkGUCPrefixReserved("cachebust_internal");
}

/*
 * Log redaction. PostgreSQL itself logs a changed setting's new value on
 * reload ("parameter ... changed to ..."), a rejected value, and with
 * log_statement the ALTER SYSTEM that set it; for cachebust.redis_url and
 * cachebust.sentinel_password that would put a password in the server log.
 * This hook rewrites a message, its detail and context so that they hold no
 * secret (core/secret_text.hpp: Redis URLs are redacted by parsing them, a
 * password setting's value is left out), and keeps a statement holding one
 * out of STATEMENT: lines.
 */
static emit_log_hook_type prev_emit_log_hook = nullptr;

/*
 * The last redacted text. It lives outside any C++ scope: pstrdup() may
 * raise an out-of-memory ERROR, and that longjmp must find no live C++
 * object to skip and no try block to leave. Never freed, so that a message
 * logged while the process exits finds it intact.
 */
static std::string *redacted_text = nullptr;

/* Fills redacted_text; false if that failed (then nothing of text may be shown). */
static bool
redact_into_buffer(const char *text) noexcept
{
	try {
		if (redacted_text == nullptr)
			redacted_text = new std::string();
		*redacted_text = redact_secrets(text);
		return true;
	} catch (...) {
		return false;
	}
}

static void
redact_field(char *&field)
{
	if (field == nullptr || !mentions_secret(field))
		return;
	if (redact_into_buffer(field))
		field = pstrdup(redacted_text->c_str());
	else
		field = pstrdup("[message withheld by cachebust: it may hold a password]");
}

static void
redact_secrets_in_log(ErrorData *edata)
{
	redact_field(edata->message);
	redact_field(edata->detail);
	redact_field(edata->detail_log);
	redact_field(edata->context);
	redact_field(edata->internalquery);
	if (debug_query_string != nullptr && mentions_secret(debug_query_string))
		edata->hide_stmt = true;

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
install_log_redaction()
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = redact_secrets_in_log;
}

} // namespace cachebust::pg
