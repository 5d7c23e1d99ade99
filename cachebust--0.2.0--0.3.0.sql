-- cachebust 0.2.0 -> 0.3.0
\echo Use "ALTER EXTENSION cachebust UPDATE TO '0.3.0'" to load this file. \quit

-- The watches view no longer fails for every role when one trigger's
-- arguments are not valid in the database encoding: such an argument is
-- shown escaped. (Same columns, so its privileges stay.)
-- Every trigger that calls cachebust.invalidate(): watch()-made, hand-made,
-- and the copies on partitions. (tgargs is decoded inline, with PostgreSQL's
-- own functions only: a function of ours here would have to be executable
-- by every role that reads the view.) An argument whose bytes are not valid
-- in the database encoding (a database relabelled from SQL_ASCII, say) is
-- shown as encode(bytes, 'escape') writes it, \ooo for each byte from 0x80
-- and \\ for a backslash, instead of failing the view for everyone. Valid:
-- every argument in a single-byte encoding, an ASCII one in any, and in
-- UTF8 one that is well-formed UTF-8, checked on its hex form (one
-- alternative per lead byte range: ASCII; C2-DF; E0 A0-BF; E1-EC and EE-EF;
-- ED 80-9F; F0 90-BF; F1-F3; F4 80-8F; then continuation bytes 80-BF).
-- In the other multibyte encodings a non-ASCII argument is shown escaped.
CREATE OR REPLACE VIEW watches AS
SELECT t.tgrelid::regclass AS "table",
       t.tgname AS trigger,
       ARRAY(SELECT CASE WHEN pg_catalog.pg_encoding_max_length(pg_catalog.pg_char_to_encoding(pg_catalog.getdatabaseencoding())) = 1
                           OR a.hex ~ '^([0-7][0-9a-f])*$'
                           OR (pg_catalog.getdatabaseencoding() = 'UTF8'
                               AND a.hex ~ ('^([0-7][0-9a-f]|(c[2-9a-f]|d[0-9a-f])[89ab][0-9a-f]'
                                            '|e0[ab][0-9a-f][89ab][0-9a-f]|(e[1-9a-c]|e[ef])([89ab][0-9a-f]){2}'
                                            '|ed[89][0-9a-f][89ab][0-9a-f]|f0[9ab][0-9a-f]([89ab][0-9a-f]){2}'
                                            '|f[1-3]([89ab][0-9a-f]){3}|f48[0-9a-f]([89ab][0-9a-f]){2})*$'))
                         THEN pg_catalog.convert_from(a.bytes, pg_catalog.getdatabaseencoding())
                         ELSE pg_catalog.encode(a.bytes, 'escape') END
             FROM (SELECT s.start, b.bytes, pg_catalog.encode(b.bytes, 'hex') AS hex
                   FROM (SELECT coalesce(lag(p) OVER (ORDER BY p), 0) + 1 AS start, p AS stop
                         FROM pg_catalog.generate_series(1, pg_catalog.length(t.tgargs)) p
                         WHERE pg_catalog.get_byte(t.tgargs, p - 1) = 0) s,
                        LATERAL (SELECT pg_catalog.substr(t.tgargs, s.start, s.stop - s.start) AS bytes) b) a
             ORDER BY a.start) AS targets
FROM pg_catalog.pg_trigger t
WHERE t.tgfoid = 'cachebust.invalidate()'::regprocedure
  AND NOT t.tgisinternal;

-- ---- 0.3.0: cachebust.version() (issue 26) ----
-- The version of the loaded library: the control file's default_version it
-- was built from. After a package upgrade it is ahead of the extension's
-- version (pg_extension.extversion) until ALTER EXTENSION cachebust UPDATE.
CREATE FUNCTION version() RETURNS text
AS 'MODULE_PATHNAME', 'cachebust_version' LANGUAGE C STRICT STABLE PARALLEL SAFE;

-- ---- 0.3.0, the WAL journal (issue 23): internal functions for tests and diagnosis ----
-- The committed journal targets in WAL from `from_lsn` to the end of WAL readable now.
CREATE FUNCTION _journal_scan(from_lsn pg_lsn)
RETURNS TABLE(commit_lsn pg_lsn, xid xid, kind text, target text)
AS 'MODULE_PATHNAME', 'cachebust_journal_scan' LANGUAGE C STRICT VOLATILE;
-- Creates the "cachebust" replication slot if missing, advances it to advance_to
-- (never backwards), returns its restart_lsn (NULL when invalidated).
CREATE FUNCTION _journal_slot(advance_to pg_lsn DEFAULT NULL)
RETURNS pg_lsn
AS 'MODULE_PATHNAME', 'cachebust_journal_slot' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION _journal_scan(pg_lsn) FROM PUBLIC;
REVOKE ALL ON FUNCTION _journal_slot(pg_lsn) FROM PUBLIC;
-- ---- end of the WAL journal block ----

-- stats() has new columns: journal_replayed_batches, journal_replay_ms, slot_lag_bytes.
DROP VIEW stats;
DROP FUNCTION stats();
CREATE FUNCTION stats(
    OUT transactions_enqueued bigint,
    OUT targets_enqueued bigint,
    OUT targets_coalesced bigint,
    OUT targets_delivered bigint,
    OUT redis_commands bigint,
    OUT redis_errors bigint,
    OUT retries bigint,
    OUT reconnects bigint,
    OUT overflows bigint,
    OUT fallbacks bigint,
    OUT fallbacks_refused bigint,
    OUT queue_bytes_used bigint,
    OUT queue_size bigint,
    OUT queue_high_water bigint,
    OUT pending_targets bigint,
    OUT connected boolean,
    OUT last_delivery timestamptz,
    OUT last_error text,
    OUT last_error_time timestamptz,
    OUT latency_p50_ms double precision,
    OUT latency_p99_ms double precision,
    OUT latency_max_ms double precision,
    OUT enqueued_seq bigint,
    OUT delivered_seq bigint,
    OUT stats_reset timestamptz,
    OUT targets_failed bigint,
    OUT tag_members_skipped bigint,
    OUT failovers bigint,
    OUT uncovered_batches bigint,
    OUT second_sends bigint,
    OUT standby_timeouts bigint,
    OUT standby_lag_p50_ms double precision,
    OUT standby_lag_p99_ms double precision,
    OUT standby_lag_max_ms double precision,
    OUT standbys_absent text,
    OUT journal_replayed_batches bigint,
    OUT journal_replay_ms bigint,
    OUT slot_lag_bytes bigint,
    OUT delivered_lsn pg_lsn,
    OUT delivery_lag_bytes bigint,
    OUT refreshes bigint,
    OUT refresh_failures bigint,
    OUT refreshes_coalesced bigint,
    OUT refresh_p50_ms double precision,
    OUT refresh_p99_ms double precision,
    OUT refresh_max_ms double precision)
AS 'MODULE_PATHNAME', 'cachebust_stats' LANGUAGE C STRICT VOLATILE;

CREATE VIEW stats AS SELECT * FROM stats();
GRANT SELECT ON stats TO PUBLIC;

-- Read-your-writes by LSN (pooler-safe, and on a standby that delivers to
-- its own Redis): everything committed up to lsn has been delivered by
-- this server's worker. Needs the WAL journal.
CREATE FUNCTION wait_for_lsn(lsn pg_lsn, timeout_ms integer DEFAULT 5000) RETURNS boolean
AS 'MODULE_PATHNAME', 'cachebust_wait_for_lsn' LANGUAGE C STRICT VOLATILE;

-- ---- 0.3.0, materialized keys (README, "Materialized keys") ----
-- Registrations. Only the extension's owner reads this table; users see the
-- materialized view. Written by materialize()/dematerialize() and, for the
-- status columns, by the refresh workers.
CREATE TABLE _materialized (
    full_key text PRIMARY KEY,      -- key_prefix || key: the Redis name
    key text NOT NULL,
    prefix_len integer NOT NULL,
    query text NOT NULL,
    depends_on regclass[] NOT NULL,
    ttl_ms integer NOT NULL DEFAULT 0,
    owner regrole NOT NULL,
    search_path text NOT NULL,      -- the registering session's, used by its refreshes
    registered timestamptz NOT NULL DEFAULT now(),
    last_refreshed timestamptz,
    last_error text,
    refreshes bigint NOT NULL DEFAULT 0,
    failures bigint NOT NULL DEFAULT 0
);
REVOKE ALL ON _materialized FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('_materialized', '');

CREATE FUNCTION materialize(key text, query text, depends_on regclass[], ttl_ms integer DEFAULT 0)
RETURNS void
AS 'MODULE_PATHNAME', 'cachebust_materialize' LANGUAGE C VOLATILE;
CREATE FUNCTION dematerialize(key text) RETURNS void
AS 'MODULE_PATHNAME', 'cachebust_dematerialize' LANGUAGE C STRICT VOLATILE;
-- The statement trigger materialize() attaches to each depends_on table.
CREATE FUNCTION _materialized_changed() RETURNS trigger
AS 'MODULE_PATHNAME', 'cachebust_materialized_changed' LANGUAGE C;

-- A role sees every registration, but the query text and the last error
-- only of its own (a superuser: all).
CREATE VIEW materialized AS
SELECT m.key,
       m.full_key,
       CASE WHEN pg_catalog.pg_has_role(m.owner, 'MEMBER') THEN m.query END AS query,
       m.depends_on,
       m.ttl_ms,
       m.owner,
       m.registered,
       m.last_refreshed,
       CASE WHEN pg_catalog.pg_has_role(m.owner, 'MEMBER') THEN m.last_error END AS last_error,
       m.refreshes AS refresh_count,
       m.failures AS failure_count
FROM _materialized m;
GRANT SELECT ON materialized TO PUBLIC;
REVOKE ALL ON FUNCTION materialize(text, text, regclass[], integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION dematerialize(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _materialized_changed() FROM PUBLIC;
-- ---- end of the materialized keys block ----
-- ---- 0.3.0, the emergency clear (issue 25) ----
-- clear(pattern): counts the keys the pattern matches under the caller's
-- key_prefix and returns '<token>: N keys match "<prefix><pattern>"; confirm ...'.
-- clear(pattern, token), within 60 s, by the same role in the same database:
-- removes them at commit (like invalidate_pattern()), logs who did it, and
-- returns the first step's count. Not for PUBLIC: see README, Emergency clear.
CREATE FUNCTION clear(pattern text) RETURNS text
AS 'MODULE_PATHNAME', 'cachebust_clear_request' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION clear(pattern text, token text) RETURNS bigint
AS 'MODULE_PATHNAME', 'cachebust_clear_confirm' LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION clear(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION clear(text, text) FROM PUBLIC;
-- ---- end of the emergency clear block ----
