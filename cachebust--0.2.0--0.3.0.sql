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
-- A registration whose table (or its trigger) is dropped goes, and its key is
-- removed at commit: nothing would keep it current any more.
CREATE FUNCTION _materialized_dropped() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'cachebust_materialized_dropped' LANGUAGE C;
REVOKE ALL ON FUNCTION _materialized_dropped() FROM PUBLIC;
CREATE EVENT TRIGGER cachebust_materialized_drop ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP TRIGGER', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION _materialized_dropped();
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
-- ---- 0.3.0, per-row refresh: watch(..., refresh => ...) (README, "Per-row refresh") ----
-- ---- 0.3.0, per-row refresh: watch(..., refresh => ...) (README, "Per-row refresh") ----
-- One row per watch() with `refresh`; its triggers carry refresh=<id>. The
-- refresh worker runs `query` as `owner` with `search_path`, $1..$n taken
-- from the key's columns and read with the input functions of param_types.
-- Only the extension's owner reads it.
CREATE TABLE _row_refresh (
    id serial PRIMARY KEY,
    tbl regclass NOT NULL,
    key_template text NOT NULL,     -- a trigger naming this id must render this template
    query text NOT NULL,
    param_types regtype[] NOT NULL,
    owner regrole NOT NULL,
    search_path text NOT NULL,
    registered timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON _row_refresh FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('_row_refresh', '');
SELECT pg_catalog.pg_extension_config_dump('_row_refresh_id_seq', '');
-- Checks the query as the caller and registers it (watch() calls it; it
-- needs nothing beyond what the query reads, and a registration no trigger
-- names does nothing and is removed by the next watch() or unwatch()).
CREATE FUNCTION _row_refresh_register(tbl regclass, key_template text, query text) RETURNS integer
AS 'MODULE_PATHNAME', 'cachebust_row_refresh_register' LANGUAGE C STRICT VOLATILE;
-- Removes the registrations no trigger names any more (unwatch(), DROP
-- TRIGGER, DROP TABLE). Harmless for anyone: it removes only what nothing uses.
CREATE FUNCTION _row_refresh_forget_unused() RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM cachebust._row_refresh r
    WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                      WHERE t.tgrelid = r.tbl
                        AND t.tgfoid = 'cachebust.invalidate()'::pg_catalog.regprocedure
                        AND 'refresh=' || r.id = ANY (cachebust._trigger_args(t.tgargs)))
$$;
-- ---- end of the per-row refresh block ----

-- watch() gains `refresh`: a new signature, so the old function is renamed,
-- the new one made, the old one's privileges granted on it again entry by
-- entry (when they were changed), and the old one dropped.
ALTER FUNCTION watch(regclass, text[], text[], text[], text[], text[], boolean, boolean) RENAME TO _watch_0_2_0;

-- watch(): validates the targets, then creates the triggers and returns the
-- name of the first (the INSERT one). On a plain table (not a partition, no
-- inheritance, not `always`) INSERT, UPDATE and DELETE each get a statement
-- trigger with transition tables, which renders every row of a statement in
-- one call; elsewhere PostgreSQL has no transition tables (partitions,
-- inheritance, foreign tables, UPDATE OF a column list) or does not fire
-- statement triggers (logical replication apply, which `always` is for), so
-- a row trigger does the same. With `columns`, UPDATE fires only when one of
-- them changes. A TRUNCATE trigger goes with either. It runs with the
-- caller's rights: PostgreSQL checks that the caller may create triggers on
-- the table and execute cachebust.invalidate(). With `refresh`, the one
-- key template's keys are recomputed after commit instead of removed: the
-- query is registered in _row_refresh (checked as the caller, see
-- _row_refresh_register) and the triggers get the option refresh=<id>.
CREATE FUNCTION watch(
    tbl regclass,
    keys text[] DEFAULT '{}',
    tags text[] DEFAULT '{}',
    patterns text[] DEFAULT '{}',
    bumps text[] DEFAULT '{}',
    columns text[] DEFAULT NULL,
    immediate boolean DEFAULT false,
    always boolean DEFAULT false,
    refresh text DEFAULT NULL)
RETURNS name
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    targets text[];
    arg_list text;
    base name;
    n integer := 1;
    row_events text;
    distinct_test text;
    col text;
    made name[] := '{}';
    trg name;
    foreign_table boolean;
    per_statement boolean;
BEGIN
    IF NOT has_function_privilege('cachebust.invalidate()', 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function cachebust.invalidate()'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Attaching cachebust triggers is reserved to roles granted EXECUTE on cachebust.invalidate().',
                  HINT = 'A superuser can run: GRANT EXECUTE ON FUNCTION cachebust.invalidate() TO ' || quote_ident(current_user) || ';';
    END IF;
    targets := coalesce(keys, '{}')
        || ARRAY(SELECT 'tag=' || t FROM unnest(coalesce(tags, '{}')) t)
        || ARRAY(SELECT 'pattern=' || t FROM unnest(coalesce(patterns, '{}')) t)
        || ARRAY(SELECT 'bump=' || t FROM unnest(coalesce(bumps, '{}')) t);
    IF cardinality(targets) = 0 THEN
        RAISE EXCEPTION 'cachebust.watch(%): no targets given', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass at least one of keys, tags, patterns or bumps.';
    END IF;
    IF immediate THEN
        targets := targets || 'priority=immediate'::text;
    END IF;

    -- Pick the first free name on this table.
    WHILE EXISTS (SELECT 1 FROM pg_trigger
                  WHERE tgrelid = tbl AND tgname IN ('cachebust_watch_' || n, 'cachebust_watch_' || n || '_update',
                                                    'cachebust_watch_' || n || '_delete',
                                                    'cachebust_watch_' || n || '_truncate')) LOOP
        n := n + 1;
    END LOOP;
    base := 'cachebust_watch_' || n;

    -- Everything is checked before anything is created.
    PERFORM cachebust.check_targets(tbl, targets, base);
    IF columns IS NOT NULL THEN
        IF cardinality(columns) = 0 THEN
            RAISE EXCEPTION 'cachebust.watch(%): columns must not be empty', tbl
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass NULL to fire on every UPDATE.';
        END IF;
        FOREACH col IN ARRAY columns LOOP
            IF NOT EXISTS (SELECT 1 FROM pg_attribute
                           WHERE attrelid = tbl AND attname = col AND attnum > 0 AND NOT attisdropped) THEN
                RAISE EXCEPTION 'cachebust.watch(%): column "%" does not exist', tbl, col
                    USING ERRCODE = 'undefined_column';
            END IF;
        END LOOP;
    END IF;
    IF refresh IS NOT NULL THEN
        IF cardinality(coalesce(keys, '{}')) <> 1 THEN
            RAISE EXCEPTION 'cachebust.watch(%): refresh needs exactly one key template, got %', tbl, cardinality(coalesce(keys, '{}'))
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'The key template''s columns bind $1..$n of the refresh query: with several templates which ones would be ambiguous. Call watch() once per key.';
        END IF;
        PERFORM cachebust._row_refresh_forget_unused();
        targets := targets || ('refresh=' || cachebust._row_refresh_register(tbl, keys[array_lower(keys, 1)], refresh));
    END IF;
    SELECT c.relkind = 'f',
           c.relkind = 'r' AND NOT c.relispartition AND NOT always
           AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = tbl OR inhparent = tbl)
      INTO foreign_table, per_statement
      FROM pg_class c WHERE c.oid = tbl;
    -- (The test suite runs once more with row triggers everywhere.)
    IF current_setting('cachebust_internal.watch_capture', true) = 'row' THEN
        per_statement := false;
    END IF;

    SELECT string_agg(quote_literal(t), ', ') INTO arg_list FROM unnest(targets) t;

    IF per_statement THEN
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS cachebust_new '
                       'FOR EACH STATEMENT EXECUTE FUNCTION cachebust.invalidate(%s)', base, tbl, arg_list);
        made := made || base;
        IF columns IS NULL THEN
            EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS cachebust_old NEW TABLE AS cachebust_new '
                           'FOR EACH STATEMENT EXECUTE FUNCTION cachebust.invalidate(%s)', base || '_update', tbl, arg_list);
            made := made || (base || '_update')::name;
        END IF;
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS cachebust_old '
                       'FOR EACH STATEMENT EXECUTE FUNCTION cachebust.invalidate(%s)', base || '_delete', tbl, arg_list);
        made := made || (base || '_delete')::name;
    ELSIF columns IS NULL THEN
        row_events := 'INSERT OR UPDATE OR DELETE';
    ELSE
        row_events := 'INSERT OR DELETE';
    END IF;

    IF columns IS NOT NULL THEN
        SELECT string_agg(format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', c), ' OR ')
            INTO distinct_test FROM unnest(columns) c;
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF %s ON %s FOR EACH ROW WHEN (%s) '
                       'EXECUTE FUNCTION cachebust.invalidate(%s)',
                       base || '_update',
                       (SELECT string_agg(quote_ident(c), ', ') FROM unnest(columns) c),
                       tbl, distinct_test, arg_list);
        made := made || (base || '_update')::name;
    END IF;

    IF NOT per_statement THEN
        EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate(%s)',
                       base, row_events, tbl, arg_list);
        made := made || base;
    END IF;
    IF foreign_table THEN
        RAISE NOTICE 'cachebust.watch(%): foreign tables cannot have TRUNCATE triggers; TRUNCATE of it invalidates nothing', tbl;
    ELSE
        -- On a partitioned table, cachebust's event trigger copies this one to
        -- every partition, present and future (PostgreSQL clones only row triggers).
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION cachebust.invalidate(%s)',
                       base || '_truncate', tbl, arg_list);
        made := made || (base || '_truncate')::name;
    END IF;

    IF always THEN
        FOREACH trg IN ARRAY made LOOP
            EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', tbl, trg);
        END LOOP;
    END IF;
    RETURN base;
END;
$$;

-- unwatch(): drops the triggers watch() made on the table; returns how many.
-- (Their copies on partitions go with them, and so do their refresh
-- registrations.)
CREATE OR REPLACE FUNCTION unwatch(tbl regclass) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trg name;
    dropped integer := 0;
BEGIN
    FOR trg IN
        SELECT tgname FROM pg_trigger
        WHERE tgrelid = tbl
          AND tgfoid = 'cachebust.invalidate()'::regprocedure
          AND tgname ~ '^cachebust_watch_[0-9]+(_update|_delete|_truncate)?$'
          AND NOT tgisinternal
        ORDER BY tgname
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trg, tbl);
        dropped := dropped + 1;
    END LOOP;
    PERFORM cachebust._row_refresh_forget_unused();
    RETURN dropped;
END;
$$;

DO $$
DECLARE
    acl aclitem[] := (SELECT proacl FROM pg_catalog.pg_proc
                      WHERE oid = 'cachebust._watch_0_2_0(regclass, text[], text[], text[], text[], text[], boolean, boolean)'::pg_catalog.regprocedure);
    a record;
BEGIN
    IF acl IS NULL THEN
        RETURN;
    END IF;
    REVOKE ALL ON FUNCTION cachebust.watch(regclass, text[], text[], text[], text[], text[], boolean, boolean, text) FROM PUBLIC;
    FOR a IN SELECT grantee, is_grantable FROM pg_catalog.aclexplode(acl) LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION cachebust.watch(regclass, text[], text[], text[], text[], text[], boolean, boolean, text) TO %s%s',
                                  CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
                                  CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END;
$$;
DROP FUNCTION _watch_0_2_0(regclass, text[], text[], text[], text[], text[], boolean, boolean);
-- ---- end of the per-row refresh block ----
