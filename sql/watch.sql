-- watch(), unwatch() and the watches view.
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, status text, note text);

SELECT cachebust.watch('orders', keys => ARRAY['order:{id}'], tags => ARRAY['customer:{customer_id}']);
SELECT * FROM cachebust.watches WHERE "table" = 'orders'::regclass ORDER BY trigger;
SELECT tgname, tgtype, tgenabled FROM pg_trigger WHERE tgrelid = 'orders'::regclass ORDER BY tgname;

BEGIN;
INSERT INTO orders VALUES (1, 7, 'new', 'x');
SELECT * FROM cachebust.pending();
ROLLBACK;

BEGIN;
TRUNCATE orders;
SELECT * FROM cachebust.pending();
ROLLBACK;

-- A second watch() on the same table adds its own triggers; columns limits
-- UPDATE firing to changes of those columns.
SELECT cachebust.watch('orders', keys => ARRAY['order-status:{id}'], columns => ARRAY['status'],
                       immediate => true, always => true);
SELECT * FROM cachebust.watches WHERE "table" = 'orders'::regclass ORDER BY trigger;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'orders'::regclass ORDER BY tgname;
INSERT INTO orders VALUES (2, 8, 'new', 'y');
BEGIN;
UPDATE orders SET note = 'changed' WHERE id = 2;      -- status unchanged
SELECT * FROM cachebust.pending() ORDER BY target;
ROLLBACK;
BEGIN;
UPDATE orders SET status = 'paid' WHERE id = 2;
SELECT * FROM cachebust.pending() ORDER BY target;
ROLLBACK;

-- patterns and bumps
SELECT cachebust.watch('orders', patterns => ARRAY['list:{customer_id}:*'], bumps => ARRAY['orders:gen']);
BEGIN;
DELETE FROM orders WHERE id = 2;
SELECT * FROM cachebust.pending() ORDER BY kind, target;
ROLLBACK;

-- Bad templates are rejected before anything is created.
SELECT count(*) AS triggers_before FROM pg_trigger WHERE tgrelid = 'orders'::regclass \gset
SELECT cachebust.watch('orders', keys => ARRAY['ok:{id}', 'bad:{nope}']);
SELECT cachebust.watch('orders', tags => ARRAY['t:{id']);
SELECT cachebust.watch('orders');
SELECT cachebust.watch('orders', keys => ARRAY['k:{id}'], columns => ARRAY['nope']);
SELECT cachebust.watch('orders', keys => ARRAY['k:{id}'], columns => '{}');
SELECT cachebust.watch('no_such_table', keys => ARRAY['k']);
SELECT count(*) = :triggers_before AS nothing_created FROM pg_trigger WHERE tgrelid = 'orders'::regclass;

-- Hand-made triggers appear in the view, but unwatch() leaves them alone.
CREATE TRIGGER my_own AFTER INSERT ON orders
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('mine:{id}');
SELECT cachebust.unwatch('orders');
SELECT * FROM cachebust.watches WHERE "table" = 'orders'::regclass ORDER BY trigger;
SELECT cachebust.unwatch('orders');

-- Quoted and schema-qualified table names.
CREATE SCHEMA "My Schema";
CREATE TABLE "My Schema"."Odd Table" ("Key Col" int);
SELECT cachebust.watch('"My Schema"."Odd Table"', keys => ARRAY['odd:{"Key Col"}']);
BEGIN;
INSERT INTO "My Schema"."Odd Table" VALUES (5);
SELECT * FROM cachebust.pending();
ROLLBACK;
SELECT "table", trigger FROM cachebust.watches WHERE trigger LIKE 'cachebust_watch%' ORDER BY 2;

-- Trigger arguments that are not valid in the database encoding (here a
-- SQL_ASCII database relabelled UTF8, a known way to get such bytes) are
-- shown escaped as encode(..., 'escape') writes them; the view never fails.
SELECT current_database() AS regress_db \gset
CREATE DATABASE cb_relabel ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
\c cb_relabel
CREATE EXTENSION cachebust;
CREATE TABLE latin (id int);
CREATE TRIGGER latin1_bytes AFTER INSERT ON latin
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate(E'caf\351:{id}', E'back\\slash:{id}');
CREATE TRIGGER utf8_bytes AFTER INSERT ON latin
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate(E'caf\303\251:{id}', 'plain:{id}');
UPDATE pg_database SET encoding = pg_char_to_encoding('UTF8') WHERE datname = 'cb_relabel';
\c cb_relabel
SELECT getdatabaseencoding();
SELECT trigger, targets FROM cachebust.watches ORDER BY trigger;
CREATE ROLE cb_reader;
SET ROLE cb_reader;
SELECT count(*) AS readable FROM cachebust.watches;
RESET ROLE;
DROP ROLE cb_reader;
\c :regress_db
DROP DATABASE cb_relabel;
