-- Per-row refresh (README, "Per-row refresh"): what watch(..., refresh =>)
-- accepts and refuses, the targets a change captures, and unwatch(). The
-- refreshes themselves are tested against Redis (test/t/023_row_refresh.pl).
CREATE TABLE rr_users (id int PRIMARY KEY, org text, name text);
CREATE TABLE rr_secret (id int, v text);
CREATE ROLE rr_owner;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER ON rr_users TO rr_owner;
GRANT EXECUTE ON FUNCTION cachebust.invalidate() TO rr_owner;
SET cachebust.key_prefix = 'app:';
SET ROLE rr_owner;

-- Refused, each with its reason.
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{id}', 'u:{name}'],
    refresh => 'SELECT name FROM rr_users WHERE id = $1');
SELECT cachebust.watch('rr_users', tags => ARRAY['org:{org}'],
    refresh => 'SELECT name FROM rr_users WHERE id = $1');
SELECT cachebust.watch('rr_users', keys => ARRAY['pattern=user:*:{id}'],
    refresh => 'SELECT name FROM rr_users WHERE id = $1');
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{id}'],
    refresh => 'SELECT name FROM rr_users WHERE id = $1 AND org = $2');
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{org}:{id}'],
    refresh => 'SELECT name FROM rr_users WHERE org = $1');
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{id}'],
    refresh => 'SELECT name FROM rr_users');
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{id}'],
    refresh => 'SELECT id, name FROM rr_users WHERE id = $1');
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{id}'],
    refresh => 'SELECT id FROM rr_users WHERE id = $1');
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{id}'],
    refresh => 'DELETE FROM rr_users WHERE id = $1 RETURNING name');
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{id}'],
    refresh => 'SELECT name FROM rr_users WHERE id = $1 FOR UPDATE');
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{id}'],
    refresh => 'SELECT name FROM rr_users WHERE name = $1');
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{nope}'],
    refresh => 'SELECT name FROM rr_users WHERE id = $1');
-- No SELECT privilege on what the query reads.
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{id}'],
    refresh => 'SELECT v FROM rr_secret WHERE id = $1');
-- Nothing was registered or attached by the refusals.
RESET ROLE;
SELECT count(*) AS registrations FROM cachebust._row_refresh;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'rr_users'::regclass;
SET ROLE rr_owner;

-- Accepted: $1..$n are the key template's columns, in order, typed as the table's.
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{org}:{id}'], tags => ARRAY['org:{org}'],
    refresh => 'SELECT row_to_json(u)::text FROM rr_users u WHERE org = $1 AND id = $2');
RESET ROLE;
SELECT tbl, query, param_types, owner FROM cachebust._row_refresh;
SELECT "table", trigger, targets FROM cachebust.watches WHERE "table" = 'rr_users'::regclass ORDER BY trigger;
SET ROLE rr_owner;
-- The watches view stays readable for every role.
SELECT count(*) > 0 AS readable FROM cachebust.watches;
-- Another role that may attach the trigger cannot borrow the registration
-- (its query would run as rr_owner, with parameters from its own rows).
RESET ROLE;
CREATE ROLE rr_thief;
GRANT EXECUTE ON FUNCTION cachebust.invalidate() TO rr_thief;
SELECT 'refresh=' || id AS victim_arg FROM cachebust._row_refresh \gset
SET ROLE rr_thief;
CREATE TEMP TABLE rr_loot (org text, id int);
CREATE TRIGGER loot AFTER INSERT ON rr_loot FOR EACH ROW
    EXECUTE FUNCTION cachebust.invalidate('user:{org}:{id}', :'victim_arg');
INSERT INTO rr_loot VALUES ('acme', 1);
DROP TABLE rr_loot;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION cachebust.invalidate() FROM rr_thief;
DROP ROLE rr_thief;
SET ROLE rr_owner;
-- A change captures a refresh per distinct key (shown by its Redis key); tags are removed as before.
BEGIN;
INSERT INTO rr_users VALUES (1, 'acme', 'ann'), (2, 'acme', 'bob');
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
ROLLBACK;
INSERT INTO rr_users VALUES (1, 'acme', 'ann'), (2, 'acme', 'bob'), (3, NULL, 'cy');
BEGIN;
UPDATE rr_users SET name = name || '!';
-- (NULL org: no key, as with any template)
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
ROLLBACK;
-- An UPDATE that changes the key refreshes both keys (the old one finds no row).
BEGIN;
UPDATE rr_users SET org = 'beta' WHERE id = 1;
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
ROLLBACK;
BEGIN;
DELETE FROM rr_users WHERE id = 2;
TRUNCATE rr_users;
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
ROLLBACK;

-- unwatch() removes the registration with the triggers.
RESET ROLE;
SELECT cachebust.unwatch('rr_users');
SELECT count(*) AS registrations FROM cachebust._row_refresh;
-- A registration whose triggers were dropped by hand goes at the next watch().
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{id}'], refresh => 'SELECT name FROM rr_users WHERE id = $1');
DROP TRIGGER cachebust_watch_1 ON rr_users;
DROP TRIGGER IF EXISTS cachebust_watch_1_update ON rr_users;
DROP TRIGGER IF EXISTS cachebust_watch_1_delete ON rr_users;
DROP TRIGGER cachebust_watch_1_truncate ON rr_users;
SELECT cachebust.watch('rr_users', keys => ARRAY['user:{id}'], refresh => 'SELECT name FROM rr_users WHERE id = $1');
SELECT count(*) AS registrations FROM cachebust._row_refresh;
SELECT cachebust.unwatch('rr_users');

-- On a partitioned table the triggers' copies on the partitions refresh too.
CREATE TABLE rr_parts (id int, name text) PARTITION BY RANGE (id);
CREATE TABLE rr_parts_1 PARTITION OF rr_parts FOR VALUES FROM (0) TO (100);
SELECT cachebust.watch('rr_parts', keys => ARRAY['part:{id}'], refresh => 'SELECT name FROM rr_parts WHERE id = $1');
BEGIN;
INSERT INTO rr_parts VALUES (1, 'a');
UPDATE rr_parts_1 SET name = 'b' WHERE id = 1;
SELECT * FROM cachebust.pending() ORDER BY 1, 2;
ROLLBACK;
DROP TABLE rr_parts;

RESET cachebust.key_prefix;
DROP TABLE rr_users, rr_secret;
REVOKE EXECUTE ON FUNCTION cachebust.invalidate() FROM rr_owner;
DROP OWNED BY rr_owner;
DROP ROLE rr_owner;
