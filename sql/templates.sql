-- Rendering of templates from rows: INSERT from NEW, DELETE from OLD,
-- UPDATE from both, NULL skips, quoted names, escapes, prefixes, TRUNCATE.
CREATE TABLE users (id int PRIMARY KEY, team_id int, email text, "Mixed Case" text);
CREATE TRIGGER users_cache AFTER INSERT OR UPDATE OR DELETE ON users
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate(
    'user:{id}', 'tag=team:{team_id}', 'pattern=search:*:{email}', 'bump=users:version',
    'key=mixed:{"Mixed Case"}', 'literal:{{id}}:{id}');

BEGIN;
INSERT INTO users VALUES (1, 10, 'a@example.com', 'Hello World');
SELECT * FROM cachebust.pending();
ROLLBACK;

-- NULL columns skip just the targets that use them.
BEGIN;
INSERT INTO users VALUES (2, NULL, NULL, NULL);
SELECT * FROM cachebust.pending();
ROLLBACK;

INSERT INTO users VALUES (3, 30, 'c@example.com', 'x');

-- UPDATE renders from OLD and NEW; equal renderings appear once.
BEGIN;
UPDATE users SET team_id = 31 WHERE id = 3;
SELECT * FROM cachebust.pending();
ROLLBACK;

-- DELETE renders from OLD.
BEGIN;
DELETE FROM users WHERE id = 3;
SELECT * FROM cachebust.pending();
ROLLBACK;

-- Glob characters in column values are escaped in patterns: a name `*`
-- must not widen search:*:{email}.
BEGIN;
INSERT INTO users VALUES (4, 40, '*?[x]\', 'y');
SELECT * FROM cachebust.pending() WHERE kind = 'pattern';
ROLLBACK;

-- key_prefix applies to every target (escaped in patterns); tag_prefix to tags.
BEGIN;
SET LOCAL cachebust.key_prefix = 'app*1:';
SET LOCAL cachebust.tag_prefix = 't:';
INSERT INTO users VALUES (5, 50, 'e@example.com', 'z');
SELECT * FROM cachebust.pending();
ROLLBACK;

-- Column text forms: numeric, timestamp, bool, arrays, case folding.
CREATE TABLE things (n numeric, ts timestamptz, b bool, arr int[], "UPPER" text);
CREATE TRIGGER things_cache AFTER INSERT ON things
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('n:{N}', 'ts:{ts}', 'b:{b}', 'arr:{arr}', 'u:{"UPPER"}');
SET timezone = 'UTC';
BEGIN;
INSERT INTO things VALUES (1.50, '2026-01-02 03:04:05+00', true, '{1,2}', 'Up');
SELECT * FROM cachebust.pending();
ROLLBACK;

-- TRUNCATE: column templates become patterns, others stay as they are.
CREATE TRIGGER users_truncate AFTER TRUNCATE ON users
FOR EACH STATEMENT EXECUTE FUNCTION cachebust.invalidate(
    'user:{id}', 'tag=team:{team_id}', 'pattern=search:*:{email}', 'bump=users:version',
    'bump=user:{id}:version', 'all:users', 'lit*[{id}]');
BEGIN;
TRUNCATE users;
SELECT * FROM cachebust.pending();
ROLLBACK;

-- COPY fires the row triggers like INSERT.
BEGIN;
COPY users (id, team_id, email) FROM stdin;
7	70	g@example.com
8	80	h@example.com
\.
SELECT * FROM cachebust.pending() WHERE kind = 'key';
ROLLBACK;

-- Rows of many statements are deduplicated (the second UPDATE renders
-- nothing new).
BEGIN;
UPDATE users SET email = 'C@example.com' WHERE id = 3;
UPDATE users SET email = 'c@example.com' WHERE id = 3;
SELECT count(*) FROM cachebust.pending();
ROLLBACK;

-- Triggers do not fire under session_replication_role = replica unless ALWAYS.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE users SET email = 'C@example.com' WHERE id = 3;
SELECT count(*) FROM cachebust.pending();
ROLLBACK;
ALTER TABLE users ENABLE ALWAYS TRIGGER users_cache;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE users SET email = 'C@example.com' WHERE id = 3;
SELECT count(*) FROM cachebust.pending();
ROLLBACK;
ALTER TABLE users ENABLE TRIGGER users_cache;

-- priority=immediate is an option, not a target.
CREATE TABLE hot (id int);
CREATE TRIGGER hot_cache AFTER INSERT ON hot
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('hot:{id}', 'priority=immediate');
BEGIN;
INSERT INTO hot VALUES (1);
SELECT * FROM cachebust.pending();
ROLLBACK;

-- Integer and text columns are turned into text without their output
-- functions; the result is the same text (compressed values included).
CREATE TABLE text_forms (a int2, b int4, c int8, d text, e varchar(10), f numeric);
CREATE TRIGGER text_forms_cache AFTER INSERT ON text_forms
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('f:{a}:{b}:{c}:{d}:{e}:{f}');
BEGIN;
INSERT INTO text_forms VALUES
    (-32768, -2147483648, -9223372036854775808, '', 'ü', 1.50),
    (32767, 2147483647, 9223372036854775807, repeat('long', 1000), 'x y', -0),
    (0, 7, -1, 'a{b}', NULL, 2);
SELECT count(*) AS pending FROM cachebust.pending();
SELECT count(*) AS same_text FROM cachebust.pending() p
JOIN text_forms t ON p.target = 'f:' || t.a || ':' || t.b || ':' || t.c || ':' || t.d || ':' || t.e || ':' || t.f;
SELECT pg_column_compression(d) IS NOT NULL AS compressed FROM text_forms WHERE length(d) = 4000;
ROLLBACK;
DROP TABLE text_forms;
