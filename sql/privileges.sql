-- The privilege model (README, "Privileges"): who can attach triggers, who
-- can call what, and what a role can reach.
SELECT current_user AS superuser_name \gset
CREATE ROLE cb_app LOGIN;
CREATE ROLE cb_writer LOGIN;
CREATE TABLE cb_app_table (id int);
ALTER TABLE cb_app_table OWNER TO cb_app;
GRANT INSERT ON cb_app_table TO cb_writer;
SET ROLE cb_app;

-- Not executable by PUBLIC.
SELECT cachebust.invalidate_key('x');
SELECT cachebust.invalidate_tag('x');
SELECT cachebust.invalidate_pattern('x*');
SELECT cachebust.bump('x');
SELECT cachebust.reset_stats();
SELECT cachebust.flush();
SELECT cachebust._trigger_args('\x6100'::bytea);
SELECT cachebust._sync_partition_truncate_triggers('cb_app_table');
SELECT cachebust.clear('x*');
SELECT cachebust.clear('x*', '0123456789abcdef');

-- No route around it: a plain role can attach the trigger neither to a table
-- it owns nor to a temp table of its own.
CREATE TEMP TABLE t (x int);
CREATE TRIGGER z AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('pattern=*');
SELECT cachebust.watch('t', patterns => ARRAY['*']);
SELECT cachebust.watch('cb_app_table', keys => ARRAY['t:{id}']);
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid IN ('t'::regclass, 'cb_app_table'::regclass);
DROP TABLE t;

-- The Redis URL (it may hold a password) is hidden from non-superusers.
SHOW cachebust.redis_url;
SELECT count(*) FROM pg_settings WHERE name = 'cachebust.redis_url';

-- enabled, key_prefix and tag_prefix are superuser settings.
SET cachebust.enabled = off;
SET cachebust.key_prefix = 'other-tenant:';
SET cachebust.tag_prefix = 'x:';
-- So are cachebust's internal switches: one of them tells the event trigger
-- that copies TRUNCATE triggers to partitions it is already running.
SET cachebust_internal.syncing = on;
SELECT set_config('cachebust_internal.syncing', 'on', true);
SET cachebust_internal.watch_capture = 'row';

-- Reading state is allowed.
SELECT count(*) FROM cachebust.pending();
SELECT count(*) FROM cachebust.stats;
SELECT count(*) >= 0 AS readable FROM cachebust.watches;
SELECT cachebust.wait_for_delivery(0);
SELECT cachebust.barrier(0) IS NOT NULL AS barrier_answers;
SELECT cachebust.full_key('user:1');
RESET ROLE;

-- The documented GRANT: the role attaches triggers to its tables, temp ones too.
GRANT EXECUTE ON FUNCTION cachebust.invalidate() TO cb_app;
SET ROLE cb_app;
SELECT cachebust.watch('cb_app_table', keys => ARRAY['t:{id}']);
CREATE TEMP TABLE t2 (x int);
CREATE TRIGGER z AFTER INSERT ON t2 FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('k:{x}');
BEGIN;
INSERT INTO t2 VALUES (5);
SELECT * FROM cachebust.pending();
ROLLBACK;
-- Still never a glob over the whole database while key_prefix is empty:
-- refused at watch() where it can be known, else when it fires.
SELECT cachebust.watch('t2', patterns => ARRAY['*']);
SELECT cachebust.watch('t2', keys => ARRAY['{x}']);
CREATE TRIGGER whole AFTER TRUNCATE ON t2 FOR EACH STATEMENT EXECUTE FUNCTION cachebust.invalidate('{x}');
TRUNCATE t2;
DROP TABLE t2;
RESET ROLE;

-- Triggers already attached fire for every writer, granted or not.
SET ROLE cb_writer;
BEGIN;
INSERT INTO cb_app_table VALUES (7);
SELECT * FROM cachebust.pending();
ROLLBACK;
-- check_targets() needs what CREATE TRIGGER needs.
SELECT cachebust.check_targets('cb_app_table', ARRAY['k:{id}']);
RESET ROLE;

-- A partition an ordinary role creates gets the copy of its parent's
-- TRUNCATE trigger, whatever the role tried to switch off first.
CREATE TABLE cb_parted (id int, region text) PARTITION BY LIST (region);
SELECT cachebust.watch('cb_parted', keys => ARRAY['cp:{id}']);
ALTER TABLE cb_parted OWNER TO cb_app;
GRANT CREATE ON SCHEMA public TO cb_app;
SET ROLE cb_app;
SET cachebust_internal.syncing = on;
CREATE TABLE cb_parted_eu PARTITION OF cb_parted FOR VALUES IN ('eu');
RESET ROLE;
SELECT tgname ~ '^cachebust_part_[0-9]+_[0-9]+$' AS truncate_copy
FROM pg_trigger WHERE tgrelid = 'cb_parted_eu'::regclass AND (tgtype & 32) <> 0;
BEGIN;
TRUNCATE cb_parted_eu;
SELECT * FROM cachebust.pending();
ROLLBACK;
DROP TABLE cb_parted;
REVOKE CREATE ON SCHEMA public FROM cb_app;

-- The documented GRANT opens manual invalidation to a chosen role.
GRANT EXECUTE ON FUNCTION cachebust.invalidate_key(text[]) TO cb_app;
SET ROLE cb_app;
BEGIN;
SELECT cachebust.invalidate_key('granted');
SELECT * FROM cachebust.pending();
ROLLBACK;
RESET ROLE;

-- A prefix set per role by the superuser applies to that role's targets.
ALTER ROLE cb_app SET cachebust.key_prefix = 'tenant1:';
\c - cb_app
BEGIN;
SELECT cachebust.invalidate_key('scoped');
SELECT * FROM cachebust.pending();
SELECT cachebust.full_key('scoped');
ROLLBACK;

-- The documented GRANT for the emergency clear. Under the role's prefix a
-- bare * stays inside tenant1: (the token is checked next).
\c - :superuser_name
GRANT EXECUTE ON FUNCTION cachebust.clear(text), cachebust.clear(text, text) TO cb_app;
\c - cb_app
SELECT cachebust.clear('*', '0123456789abcdef');

-- stats.last_error: the text for everyone, where it happened only for roles
-- that may read cachebust.redis_url (this instance's Redis port is 9).
\c - :superuser_name
DO $$
BEGIN
    FOR i IN 1 .. 500 LOOP
        EXIT WHEN (SELECT last_error FROM cachebust.stats) IS NOT NULL;
        PERFORM pg_sleep(0.01);
    END LOOP;
END;
$$;
SELECT last_error LIKE '%127.0.0.1:9%' AS superuser_sees_endpoint FROM cachebust.stats;
\c - cb_app
SELECT last_error IS NOT NULL AS has_error, last_error NOT LIKE '%127.0.0.1%' AS no_endpoint,
       last_error NOT LIKE '%:9%' AS no_port FROM cachebust.stats;
\c - :superuser_name
GRANT pg_read_all_settings TO cb_app;
\c - cb_app
SELECT last_error LIKE '%127.0.0.1:9%' AS settings_reader_sees_endpoint FROM cachebust.stats;
\c - :superuser_name
DROP TABLE cb_app_table;
DROP OWNED BY cb_app;
DROP OWNED BY cb_writer;
DROP ROLE cb_app;
DROP ROLE cb_writer;
