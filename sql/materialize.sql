-- Materialized keys (README, "Materialized keys"): what materialize() and
-- dematerialize() accept and refuse, and what the view shows to whom. The
-- refreshes themselves are tested against Redis (test/t/022_materialize.pl).
CREATE TABLE mat_orders (id int PRIMARY KEY, amount numeric, note text);
CREATE TABLE mat_secret (id int);
CREATE VIEW mat_view AS SELECT id FROM mat_orders;
CREATE ROLE mat_owner;
CREATE ROLE mat_other;
GRANT SELECT ON mat_orders TO mat_owner, mat_other;
GRANT EXECUTE ON FUNCTION cachebust.materialize(text, text, regclass[], integer),
    cachebust.dematerialize(text) TO mat_owner, mat_other;

-- Not executable by PUBLIC.
REVOKE EXECUTE ON FUNCTION cachebust.materialize(text, text, regclass[], integer) FROM mat_other;
SET ROLE mat_other;
SELECT cachebust.materialize('k', 'SELECT 1::text', '{mat_orders}');
RESET ROLE;
GRANT EXECUTE ON FUNCTION cachebust.materialize(text, text, regclass[], integer) TO mat_other;

BEGIN;
SET LOCAL cachebust.key_prefix = 'app:';
SET ROLE mat_owner;
-- Accepted: one row, one column of text, json/jsonb or bytea; registered under the prefix.
SELECT cachebust.materialize('orders:total', 'SELECT json_build_object(''n'', count(*), ''sum'', sum(amount)) FROM mat_orders', '{mat_orders}', 60000);
SELECT cachebust.materialize('orders:blob', 'SELECT ''\x00ff''::bytea', ARRAY['mat_orders'::regclass]);
-- It is computed once committed, like after any change.
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
SELECT key, full_key, query, depends_on, ttl_ms, owner, refresh_count FROM cachebust.materialized ORDER BY key;
-- The statement trigger on the table (one, whatever the number of keys).
SELECT tgname, tgrelid::regclass FROM pg_trigger WHERE tgname = 'cachebust_materialized';
-- Registering again replaces the query (same owner).
SELECT cachebust.materialize('orders:blob', 'SELECT note FROM mat_orders WHERE id = 1', '{mat_orders}');
SELECT query FROM cachebust.materialized WHERE key = 'orders:blob';

ROLLBACK;

SET cachebust.key_prefix = 'app:';
SET ROLE mat_owner;
-- Refused, each with its reason.
SELECT cachebust.materialize('k', 'SELECT count(*) FROM mat_orders', '{mat_orders}');
SELECT cachebust.materialize('k', 'SELECT 1::text, 2::text', '{mat_orders}');
SELECT cachebust.materialize('k', 'INSERT INTO mat_orders VALUES (1) RETURNING note', '{mat_orders}');
SELECT cachebust.materialize('k', 'SELECT note FROM mat_orders FOR UPDATE', '{mat_orders}');
SELECT cachebust.materialize('k', 'SELECT 1::text; SELECT 2::text', '{mat_orders}');
SELECT cachebust.materialize('k', 'SELEC 1', '{mat_orders}');
SELECT cachebust.materialize('k', 'SELECT 1::text', '{mat_view}');
SELECT cachebust.materialize('k', 'SELECT 1::text', '{}');
SELECT cachebust.materialize('k', 'SELECT 1::text', NULL);
SELECT cachebust.materialize('k', NULL, '{mat_orders}');
SELECT cachebust.materialize('', 'SELECT 1::text', '{mat_orders}');
SELECT cachebust.materialize('k', 'SELECT 1::text', '{mat_orders}', -1);
SELECT cachebust.materialize(repeat('x', 2000), 'SELECT 1::text', '{mat_orders}');
-- Privileges: SELECT on every depends_on table, and on what the query reads.
SELECT cachebust.materialize('k', 'SELECT 1::text', '{mat_secret}');
SELECT cachebust.materialize('k', 'SELECT count(*)::text FROM mat_secret', '{mat_orders}');
RESET ROLE;

-- Registered for real (the refresh happens after commit; here Redis is unreachable).
SET cachebust.key_prefix = 'app:';
SET ROLE mat_owner;
SELECT cachebust.materialize('orders:total', 'SELECT sum(amount)::text FROM mat_orders', '{mat_orders}');
RESET ROLE;
SET cachebust.key_prefix = 'app:';
-- Another role sees the registration but not its query, and cannot take it over or drop it.
SET ROLE mat_other;
SELECT key, query IS NULL AS query_hidden, owner FROM cachebust.materialized;
SELECT cachebust.materialize('orders:total', 'SELECT 1::text', '{mat_orders}');
SELECT cachebust.dematerialize('orders:total');
SELECT cachebust.dematerialize('no:such:key');
SELECT * FROM cachebust._materialized;
RESET ROLE;
-- A change to the table asks for a refresh (statement level: once per statement).
BEGIN;
INSERT INTO mat_orders VALUES (1, 10, 'a'), (2, 20, 'b');
SELECT * FROM cachebust.pending();
ROLLBACK;
-- Whoever makes it: a logical-replication apply worker runs with
-- session_replication_role = replica, so the trigger is enabled ALWAYS.
SELECT tgenabled FROM pg_trigger WHERE tgname = 'cachebust_materialized';
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE mat_orders SET amount = 0;
SELECT * FROM cachebust.pending();
ROLLBACK;
-- The owner drops it: the key is removed and the trigger goes with the last registration.
SET cachebust.key_prefix = 'app:';
SET ROLE mat_owner;
BEGIN;
SELECT cachebust.dematerialize('orders:total');
SELECT * FROM cachebust.pending();
COMMIT;
RESET ROLE;
SELECT count(*) AS registrations FROM cachebust.materialized;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgname = 'cachebust_materialized';

-- A table a key depends on is dropped, or cachebust's trigger on it: nothing
-- would keep the key current, so its registration goes and the key is
-- removed at commit (WARNING); other registrations stay.
CREATE TABLE mat_gone (id int);
CREATE TABLE mat_kept (id int);
GRANT SELECT ON mat_gone, mat_kept TO mat_owner;
SET ROLE mat_owner;
SELECT cachebust.materialize('gone:both', 'SELECT count(*)::text FROM mat_gone, mat_kept', '{mat_gone,mat_kept}');
SELECT cachebust.materialize('kept:only', 'SELECT count(*)::text FROM mat_kept', '{mat_kept}');
SELECT cachebust.materialize('orders:count', 'SELECT count(*)::text FROM mat_orders', '{mat_orders}');
RESET ROLE;
BEGIN;
DROP TABLE mat_gone;
SELECT * FROM cachebust.pending();
COMMIT;
SELECT key, depends_on FROM cachebust.materialized ORDER BY key;
SELECT tgrelid::regclass FROM pg_trigger WHERE tgname = 'cachebust_materialized' ORDER BY 1;
-- The table owner drops the trigger by hand: the same.
ALTER TABLE mat_kept OWNER TO mat_other;
SET ROLE mat_other;
BEGIN;
DROP TRIGGER cachebust_materialized ON mat_kept;
SELECT * FROM cachebust.pending();
COMMIT;
RESET ROLE;
SELECT key FROM cachebust.materialized ORDER BY key;
SET ROLE mat_owner;
SELECT cachebust.dematerialize('orders:count');
RESET ROLE;
-- With cachebust.enabled off (a bulk load) the key is removed all the same,
-- as dematerialize() removes it: the WARNING says so.
SET ROLE mat_owner;
SELECT cachebust.materialize('kept:again', 'SELECT count(*)::text FROM mat_kept', '{mat_kept}');
RESET ROLE;
BEGIN;
SET LOCAL cachebust.enabled = off;
DROP TABLE mat_kept;
SELECT * FROM cachebust.pending();
COMMIT;

DROP VIEW mat_view;
DROP TABLE mat_orders, mat_secret;
DROP OWNED BY mat_owner, mat_other;
DROP ROLE mat_owner, mat_other;
RESET cachebust.key_prefix;
