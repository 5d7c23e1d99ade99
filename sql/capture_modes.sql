-- Row capture and statement capture buffer the same targets.
-- watch() gives a plain table statement triggers with transition tables;
-- by_row gets the same targets as a row trigger by hand. Every statement
-- runs against both and pending() must be equal.
SET cachebust.key_prefix = 'cm:';
CREATE TABLE by_statement (id int PRIMARY KEY, grp int, name text);
CREATE TABLE by_row (LIKE by_statement INCLUDING ALL);
SELECT cachebust.watch('by_statement', keys => ARRAY['item:{id}'], tags => ARRAY['grp:{grp}'],
                       patterns => ARRAY['search:*:{name}'], bumps => ARRAY['items:gen']);
CREATE TRIGGER by_row_cache AFTER INSERT OR UPDATE OR DELETE ON by_row
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('item:{id}', 'tag=grp:{grp}', 'pattern=search:*:{name}', 'bump=items:gen');
SELECT tgname, tgtype & 1 = 1 AS for_each_row, tgoldtable, tgnewtable
FROM pg_trigger WHERE tgrelid = 'by_statement'::regclass ORDER BY tgname;

INSERT INTO by_statement SELECT g, g % 3, CASE WHEN g % 4 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, 20) g;
INSERT INTO by_row SELECT * FROM by_statement;

-- pending() after running sql (%1$I: the table) in a subtransaction that is
-- then rolled back, as sorted "kind target" lines.
CREATE FUNCTION pending_after(sql text, tbl text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    result text[];
BEGIN
    BEGIN
        EXECUTE format(sql, tbl);
        result := ARRAY(SELECT kind || ' ' || target FROM cachebust.pending() ORDER BY 1);
        RAISE EXCEPTION 'roll back';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    RETURN result;
END;
$$;

CREATE TABLE statements (n serial, sql text);
INSERT INTO statements (sql) VALUES
    ('INSERT INTO %1$I VALUES (100, 7, ''x*y'')'),
    ('INSERT INTO %1$I SELECT g, NULL, NULL FROM generate_series(200, 205) g'),
    ('UPDATE %1$I SET name = ''renamed'' WHERE id <= 3'),
    ('UPDATE %1$I SET id = id + 1000, grp = grp + 10 WHERE id BETWEEN 4 AND 6'),
    ('UPDATE %1$I SET grp = NULL WHERE id = 8'),
    ('UPDATE %1$I SET name = name WHERE false'),
    ('DELETE FROM %1$I WHERE grp = 1'),
    ('INSERT INTO %1$I VALUES (1, 5, ''a''), (300, 5, ''b'') ON CONFLICT (id) DO UPDATE SET grp = excluded.grp'),
    ('INSERT INTO %1$I VALUES (2, 5, ''c'') ON CONFLICT (id) DO NOTHING'),
    ('MERGE INTO %1$I t USING (VALUES (9, 1), (400, 2)) v(id, grp) ON t.id = v.id
      WHEN MATCHED THEN UPDATE SET grp = v.grp WHEN NOT MATCHED THEN INSERT VALUES (v.id, v.grp, ''m'')'),
    ('WITH moved AS (DELETE FROM %1$I WHERE id = 10 RETURNING *) INSERT INTO %1$I SELECT id + 500, grp, name FROM moved'),
    ('DO $do$ BEGIN UPDATE %1$I SET name = ''in a block'' WHERE id = 11;
        BEGIN UPDATE %1$I SET name = ''rolled back'' WHERE id = 12; RAISE EXCEPTION ''x''; EXCEPTION WHEN raise_exception THEN END; END $do$'),
    -- UPDATEs that change nothing, a column set to the value it holds
    -- included, invalidate nothing, constant targets (bump=items:gen) too.
    ('UPDATE %1$I SET name = name'),
    ('UPDATE %1$I SET id = id, grp = grp, name = name WHERE id <= 5'),
    ('UPDATE %1$I SET name = ''n13'' WHERE id = 13');

SELECT n, pending_after(sql, 'by_statement') = pending_after(sql, 'by_row') AS same,
       cardinality(pending_after(sql, 'by_row')) AS targets
FROM statements ORDER BY n;

-- One example in full.
SELECT unnest(pending_after('UPDATE %1$I SET id = id + 1000, grp = grp + 10 WHERE id BETWEEN 4 AND 6', 'by_statement'));

-- An UPDATE renders the new row version only where a template column's
-- bytes changed; what it buffers is still every old and new target.
-- numeric 1.50 -> 1.5 is an equal value with other bytes and another text
-- form: both keys go stale.
CREATE TABLE upd_statement (id int PRIMARY KEY, grp int, price numeric, note text);
CREATE TABLE upd_row (LIKE upd_statement INCLUDING ALL);
SELECT cachebust.watch('upd_statement', keys => ARRAY['u:{id}', 'price:{price}'], tags => ARRAY['ug:{grp}']);
CREATE TRIGGER upd_row_cache AFTER INSERT OR UPDATE OR DELETE ON upd_row
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('u:{id}', 'price:{price}', 'tag=ug:{grp}');
INSERT INTO upd_statement VALUES (1, 1, 1.50, 'a'), (2, NULL, 2, 'b'), (3, 3, 3, repeat('long note ', 1000));
INSERT INTO upd_row SELECT * FROM upd_statement;
CREATE TABLE upd_statements (n serial, sql text);
INSERT INTO upd_statements (sql) VALUES
    ('UPDATE %1$I SET note = ''changed'' WHERE id = 1'),
    ('UPDATE %1$I SET grp = 2 WHERE id = 1'),
    ('UPDATE %1$I SET grp = NULL WHERE id = 1'),
    ('UPDATE %1$I SET grp = 5 WHERE id = 2'),
    ('UPDATE %1$I SET price = 1.5 WHERE id = 1'),
    ('UPDATE %1$I SET id = id + 10, note = note || ''!'''),
    ('UPDATE %1$I SET note = note || ''!'' WHERE id = 3'),
    -- A row written back unchanged (Django's save() of an unchanged object
    -- writes every column) invalidates nothing, a long compressed value
    -- included; a change in any column, used by a template or not, does.
    ('UPDATE %1$I SET id = 1, grp = 1, price = 1.50, note = ''a'' WHERE id = 1'),
    ('UPDATE %1$I SET note = note, price = price'),
    ('UPDATE %1$I SET note = repeat(''long note '', 1000) WHERE id = 3'),
    ('UPDATE %1$I SET note = repeat(''long note '', 999) WHERE id = 3');
SELECT n, pending_after(sql, 'upd_statement') = pending_after(sql, 'upd_row') AS same,
       pending_after(sql, 'upd_statement') AS pending
FROM upd_statements ORDER BY n;
-- A value stored out of line, uncompressed: written again it gets a new
-- TOAST pointer, but its bytes are the same, so the row is unchanged.
ALTER TABLE upd_statement ALTER COLUMN note SET STORAGE EXTERNAL;
ALTER TABLE upd_row ALTER COLUMN note SET STORAGE EXTERNAL;
INSERT INTO upd_statement SELECT 4, 4, 4, string_agg(md5(g::text), '') FROM generate_series(1, 400) g;
INSERT INTO upd_row SELECT * FROM upd_statement WHERE id = 4;
SELECT pg_column_size(note) = 12800 AS uncompressed,
       (SELECT pg_relation_size(reltoastrelid) > 0 FROM pg_class WHERE oid = 'upd_statement'::regclass) AS out_of_line
FROM upd_statement WHERE id = 4;
SELECT t, pending_after('UPDATE %1$I SET note = (SELECT string_agg(md5(g::text), '''') FROM generate_series(1, 400) g) WHERE id = 4', t) AS same_value,
       pending_after('UPDATE %1$I SET note = (SELECT string_agg(md5(g::text), '''') FROM generate_series(2, 401) g) WHERE id = 4', t) AS other_value
FROM unnest(ARRAY['upd_statement', 'upd_row']) t ORDER BY t;

-- COPY runs the same triggers as INSERT.
BEGIN;
COPY by_statement FROM stdin;
700	1	copied
701	\N	\N
\.
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
ROLLBACK;
BEGIN;
COPY by_row FROM stdin;
700	1	copied
701	\N	\N
\.
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
ROLLBACK;

-- Where PostgreSQL has no transition tables, watch() keeps row triggers:
-- UPDATE OF a column list, partitions, inheritance, and always => true
-- (logical replication apply fires row triggers only).
CREATE TABLE with_columns (id int PRIMARY KEY, name text);
SELECT cachebust.watch('with_columns', keys => ARRAY['wc:{id}'], columns => ARRAY['name']);
CREATE TABLE inh_parent (id int);
CREATE TABLE inh_child () INHERITS (inh_parent);
SELECT cachebust.watch('inh_parent', keys => ARRAY['ip:{id}']);
SELECT cachebust.watch('inh_child', keys => ARRAY['ic:{id}']);
CREATE TABLE replicated (id int PRIMARY KEY);
SELECT cachebust.watch('replicated', keys => ARRAY['r:{id}'], always => true);
SELECT tgrelid::regclass, tgname, tgtype & 1 = 1 AS for_each_row, tgoldtable IS NOT NULL OR tgnewtable IS NOT NULL AS transition_tables
FROM pg_trigger WHERE tgrelid IN ('with_columns'::regclass, 'inh_parent'::regclass, 'inh_child'::regclass, 'replicated'::regclass)
ORDER BY 1, 2;

-- A statement trigger by hand must reference the event's transition tables.
CREATE TRIGGER no_tables AFTER DELETE ON with_columns
FOR EACH STATEMENT EXECUTE FUNCTION cachebust.invalidate('wc:{id}');
DELETE FROM with_columns;
DROP TRIGGER no_tables ON with_columns;

-- A watched table that later gets a parent or children switches to a row
-- trigger: DML through a parent never fires a child's statement triggers.
CREATE TABLE later_part (id int);
SELECT cachebust.watch('later_part', keys => ARRAY['lp:{id}']);
CREATE TABLE later_parent (id int) PARTITION BY RANGE (id);
ALTER TABLE later_parent ATTACH PARTITION later_part FOR VALUES FROM (0) TO (100);
CREATE TABLE later_child (id int, name text);
SELECT cachebust.watch('later_child', keys => ARRAY['lc:{id}'], columns => ARRAY['name']);
ALTER TABLE later_child DISABLE TRIGGER cachebust_watch_1_delete;
ALTER TABLE later_child ENABLE REPLICA TRIGGER cachebust_watch_1;
CREATE TABLE later_base (id int);
ALTER TABLE later_child INHERIT later_base;
CREATE TABLE later_grown (id int);
SELECT cachebust.watch('later_grown', keys => ARRAY['lg:{id}']);
CREATE TABLE later_grown_child () INHERITS (later_grown);
SELECT tgrelid::regclass, tgname, tgtype, tgenabled, tgoldtable IS NOT NULL OR tgnewtable IS NOT NULL AS transition_tables
FROM pg_trigger
WHERE tgrelid IN ('later_part'::regclass, 'later_child'::regclass, 'later_grown'::regclass) AND NOT tgisinternal
ORDER BY 1, 2;
BEGIN;
INSERT INTO later_parent VALUES (5);
UPDATE later_parent SET id = 6;
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
ROLLBACK;

SELECT cachebust.unwatch('by_statement');
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'by_statement'::regclass;
DROP TABLE by_statement, by_row, statements, with_columns, inh_parent, inh_child, replicated,
    later_parent, later_child, later_base, later_grown_child, later_grown;
DROP FUNCTION pending_after(text, text);
RESET cachebust.key_prefix;
