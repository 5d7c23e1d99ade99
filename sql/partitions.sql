-- Partitioned and foreign tables; templates that can never render.
CREATE TABLE parted (id int, region text) PARTITION BY LIST (region);
CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
SELECT cachebust.watch('parted', keys => ARRAY['p:{id}'], tags => ARRAY['region:{region}']);

-- PostgreSQL clones the row trigger; cachebust copies the TRUNCATE trigger.
SELECT tgrelid::regclass AS "table", tgname ~ '^cachebust_part_' AS copy, tgtype, tgenabled
FROM pg_trigger WHERE tgrelid IN ('parted'::regclass, 'parted_eu'::regclass) AND NOT tgisinternal
ORDER BY 1, 2, 3;
BEGIN;
TRUNCATE parted_eu;
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
ROLLBACK;
BEGIN;
INSERT INTO parted_eu VALUES (5, 'eu');
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
ROLLBACK;

-- Partitions created or attached later, sub-partitions included.
CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us');
CREATE TABLE parted_asia (id int, region text);
ALTER TABLE parted ATTACH PARTITION parted_asia FOR VALUES IN ('asia');
CREATE TABLE parted_sa (id int, region text) PARTITION BY LIST (id);
CREATE TABLE parted_sa_1 PARTITION OF parted_sa FOR VALUES IN (1);
ALTER TABLE parted ATTACH PARTITION parted_sa FOR VALUES IN ('sa');
CREATE TABLE parted_sa_2 PARTITION OF parted_sa FOR VALUES IN (2);
SELECT c.relname, count(t.oid) AS truncate_copies
FROM pg_class c LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname ~ '^cachebust_part_'
WHERE c.relname LIKE 'parted%' GROUP BY 1 ORDER BY 1;
BEGIN;
TRUNCATE parted_sa_2;
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
ROLLBACK;
-- TRUNCATE of the parent fires the copies too; the targets are the same.
BEGIN;
TRUNCATE parted;
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
ROLLBACK;

-- always => true on the parent: the copies fire under replication too.
SELECT cachebust.watch('parted', bumps => ARRAY['parted:gen'], always => true);
SELECT tgenabled, count(*) FROM pg_trigger
WHERE tgrelid = 'parted_us'::regclass AND tgname ~ '^cachebust_part_' GROUP BY 1 ORDER BY 1;

-- Detached: no copies left.
ALTER TABLE parted DETACH PARTITION parted_asia;
SELECT count(*) AS copies_after_detach FROM pg_trigger WHERE tgrelid = 'parted_asia'::regclass AND NOT tgisinternal;

-- unwatch() removes the copies with the triggers.
SELECT cachebust.unwatch('parted');
SELECT count(*) AS left_over FROM pg_trigger
WHERE tgrelid IN (SELECT relid FROM pg_partition_tree('parted')) AND NOT tgisinternal;

-- A foreign table: the row trigger, and a NOTICE instead of the TRUNCATE trigger.
CREATE EXTENSION file_fdw;
CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE ft (id int) SERVER files OPTIONS (filename '/dev/null');
SELECT cachebust.watch('ft', keys => ARRAY['f:{id}']);
SELECT tgname FROM pg_trigger WHERE tgrelid = 'ft'::regclass ORDER BY 1;

-- Templates whose fixed part can never fit a key are refused at watch().
SELECT cachebust.watch('parted_us', keys => ARRAY['k:' || repeat('x', 8200) || ':{id}']);
SET cachebust.key_prefix = 'app:';
SELECT cachebust.watch('parted_us', keys => ARRAY[repeat('x', 8188) || '{id}']);
SELECT cachebust.watch('parted_us', keys => ARRAY[repeat('x', 8100) || '{id}']) IS NOT NULL AS fits;
RESET cachebust.key_prefix;

DROP FOREIGN TABLE ft;
DROP SERVER files;
DROP EXTENSION file_fdw;
DROP TABLE parted, parted_asia;
