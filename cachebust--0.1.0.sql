-- cachebust 0.1.0: transactional Redis cache invalidation.
\echo Use "CREATE EXTENSION cachebust" to load this file. \quit

-- The row and TRUNCATE trigger. Arguments: targets `[kind=]template` and
-- optionally `priority=immediate`.
CREATE FUNCTION invalidate() RETURNS trigger
AS 'MODULE_PATHNAME', 'cachebust_invalidate' LANGUAGE C;

-- Manual invalidation, transactional like the trigger.
CREATE FUNCTION invalidate_key(VARIADIC keys text[]) RETURNS void
AS 'MODULE_PATHNAME', 'cachebust_invalidate_key' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION invalidate_tag(VARIADIC tags text[]) RETURNS void
AS 'MODULE_PATHNAME', 'cachebust_invalidate_tag' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION invalidate_pattern(pattern text) RETURNS void
AS 'MODULE_PATHNAME', 'cachebust_invalidate_pattern' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION bump(VARIADIC keys text[]) RETURNS void
AS 'MODULE_PATHNAME', 'cachebust_bump' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION pending(OUT kind text, OUT target text) RETURNS SETOF record
AS 'MODULE_PATHNAME', 'cachebust_pending' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION flush() RETURNS void
AS 'MODULE_PATHNAME', 'cachebust_flush' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION wait_for_delivery(timeout_ms integer DEFAULT 5000) RETURNS boolean
AS 'MODULE_PATHNAME', 'cachebust_wait_for_delivery' LANGUAGE C STRICT VOLATILE;

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
    OUT stats_reset timestamptz)
AS 'MODULE_PATHNAME', 'cachebust_stats' LANGUAGE C STRICT VOLATILE;

CREATE VIEW stats AS SELECT * FROM stats();

CREATE FUNCTION reset_stats() RETURNS void
AS 'MODULE_PATHNAME', 'cachebust_reset_stats' LANGUAGE C STRICT VOLATILE;

-- Internal helpers behind watch() and the watches view.
CREATE FUNCTION _trigger_targets(tgargs bytea) RETURNS text[]
AS 'MODULE_PATHNAME', 'cachebust_trigger_targets' LANGUAGE C STRICT IMMUTABLE;
CREATE FUNCTION _check_targets(tbl regclass, targets text[], trigger_name text) RETURNS void
AS 'MODULE_PATHNAME', 'cachebust_check_targets' LANGUAGE C STRICT STABLE;

-- watch(): validates the targets, then creates the row trigger (and, with
-- `columns`, a separate UPDATE trigger that fires only when one of them
-- changes) and the TRUNCATE trigger. Returns the row trigger's name.
CREATE FUNCTION watch(
    tbl regclass,
    keys text[] DEFAULT '{}',
    tags text[] DEFAULT '{}',
    patterns text[] DEFAULT '{}',
    bumps text[] DEFAULT '{}',
    columns text[] DEFAULT NULL,
    immediate boolean DEFAULT false,
    always boolean DEFAULT false)
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
BEGIN
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
                  WHERE tgrelid = tbl AND tgname = 'cachebust_watch_' || n) LOOP
        n := n + 1;
    END LOOP;
    base := 'cachebust_watch_' || n;

    -- Everything is checked before anything is created.
    PERFORM cachebust._check_targets(tbl, targets, base);
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

    SELECT string_agg(quote_literal(t), ', ') INTO arg_list FROM unnest(targets) t;

    IF columns IS NULL THEN
        row_events := 'INSERT OR UPDATE OR DELETE';
    ELSE
        row_events := 'INSERT OR DELETE';
        SELECT string_agg(format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', c), ' OR ')
            INTO distinct_test FROM unnest(columns) c;
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF %s ON %s FOR EACH ROW WHEN (%s) '
                       'EXECUTE FUNCTION cachebust.invalidate(%s)',
                       base || '_update',
                       (SELECT string_agg(quote_ident(c), ', ') FROM unnest(columns) c),
                       tbl, distinct_test, arg_list);
        made := made || (base || '_update')::name;
    END IF;

    EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate(%s)',
                   base, row_events, tbl, arg_list);
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION cachebust.invalidate(%s)',
                   base || '_truncate', tbl, arg_list);
    made := made || base || (base || '_truncate')::name;

    IF always THEN
        FOREACH trg IN ARRAY made LOOP
            EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', tbl, trg);
        END LOOP;
    END IF;
    RETURN base;
END;
$$;

-- unwatch(): drops the triggers watch() made on the table; returns how many.
CREATE FUNCTION unwatch(tbl regclass) RETURNS integer
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
          AND tgname ~ '^cachebust_watch_[0-9]+(_update|_truncate)?$'
        ORDER BY tgname
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trg, tbl);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END;
$$;

-- Every trigger that calls cachebust.invalidate(), watch()-made or not.
CREATE VIEW watches AS
SELECT t.tgrelid::regclass AS "table",
       t.tgname AS trigger,
       _trigger_targets(t.tgargs) AS targets
FROM pg_catalog.pg_trigger t
WHERE t.tgfoid = 'cachebust.invalidate()'::regprocedure
  AND NOT t.tgisinternal;

-- Manual invalidation and reset_stats are for roles the administrator
-- chooses (see README, "Privileges").
REVOKE ALL ON FUNCTION invalidate_key(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION invalidate_tag(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION invalidate_pattern(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION bump(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION reset_stats() FROM PUBLIC;

GRANT USAGE ON SCHEMA cachebust TO PUBLIC;
GRANT SELECT ON stats, watches TO PUBLIC;
