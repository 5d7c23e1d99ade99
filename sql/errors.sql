-- Bad templates and misuse give errors naming trigger, table and template.
CREATE TABLE accounts (id int, name text);
INSERT INTO accounts VALUES (1, 'one');

CREATE TRIGGER unknown_col AFTER UPDATE ON accounts
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('acct:{nmae}');
UPDATE accounts SET name = name;
DROP TRIGGER unknown_col ON accounts;
-- The hint names the closest column, as PostgreSQL does for misspelt columns.
SELECT cachebust.check_targets('accounts', ARRAY['acct:{i}']);
SELECT cachebust.check_targets('accounts', ARRAY['acct:{nothing_like_it}']);

CREATE TRIGGER malformed AFTER UPDATE ON accounts
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('acct:{id');
UPDATE accounts SET name = name;
DROP TRIGGER malformed ON accounts;

CREATE TRIGGER unknown_kind AFTER UPDATE ON accounts
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('tga=acct:{id}');
UPDATE accounts SET name = name;
DROP TRIGGER unknown_kind ON accounts;

CREATE TRIGGER empty_target AFTER UPDATE ON accounts
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('key=');
UPDATE accounts SET name = name;
DROP TRIGGER empty_target ON accounts;

CREATE TRIGGER no_targets AFTER UPDATE ON accounts
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate();
UPDATE accounts SET name = name;
DROP TRIGGER no_targets ON accounts;

CREATE TRIGGER bad_priority AFTER UPDATE ON accounts
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('a:{id}', 'priority=urgent');
UPDATE accounts SET name = name;
DROP TRIGGER bad_priority ON accounts;

-- Oversize rendered keys are refused (nothing is silently truncated).
CREATE TRIGGER big_key AFTER UPDATE ON accounts
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('acct:{name}');
UPDATE accounts SET name = repeat('x', 9000);
DROP TRIGGER big_key ON accounts;

-- Wrong trigger kinds.
CREATE TRIGGER before_row BEFORE UPDATE ON accounts
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('acct:{id}');
UPDATE accounts SET name = name;
DROP TRIGGER before_row ON accounts;
CREATE TRIGGER per_statement AFTER UPDATE ON accounts
FOR EACH STATEMENT EXECUTE FUNCTION cachebust.invalidate('acct:{id}');
UPDATE accounts SET name = name;
DROP TRIGGER per_statement ON accounts;
SELECT cachebust.invalidate();

-- Compiled templates follow ALTER TABLE.
CREATE TRIGGER acct_cache AFTER INSERT OR UPDATE ON accounts
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('acct:{id}:{name}');
BEGIN;
UPDATE accounts SET name = 'One';
SELECT target FROM cachebust.pending() ORDER BY 1;
ROLLBACK;
ALTER TABLE accounts ADD COLUMN extra int;      -- attnums unchanged, still fine
ALTER TABLE accounts DROP COLUMN extra;
BEGIN;
INSERT INTO accounts VALUES (2, 'two');
SELECT target FROM cachebust.pending();
ROLLBACK;
ALTER TABLE accounts RENAME COLUMN name TO title; -- the template now names a missing column
UPDATE accounts SET title = title;
ALTER TABLE accounts RENAME COLUMN title TO name;
ALTER TABLE accounts DROP COLUMN name;            -- dropped: same error
UPDATE accounts SET id = id;
ALTER TABLE accounts ADD COLUMN name text;        -- a new column of that name: found again
BEGIN;
UPDATE accounts SET name = 'new' WHERE id = 1;
SELECT target FROM cachebust.pending();
ROLLBACK;
ALTER TABLE accounts ALTER COLUMN id TYPE numeric; -- new type, new output function
BEGIN;
UPDATE accounts SET id = 1.5, name = 'n' WHERE id = 1;
SELECT target FROM cachebust.pending() ORDER BY 1;
ROLLBACK;

-- Bad setting values are rejected by their checks (ALTER SYSTEM validates
-- reload-time settings without applying them).
ALTER SYSTEM SET cachebust.debounce_ms = -1;
ALTER SYSTEM SET cachebust.debounce_ms = 'soon';
ALTER SYSTEM SET cachebust.max_batch = 0;
ALTER SYSTEM SET cachebust.tag_depth = 101;
ALTER SYSTEM SET cachebust.fallback = 'everything';
ALTER SYSTEM SET cachebust.redis_url = 'http://127.0.0.1:6379';
ALTER SYSTEM SET cachebust.redis_url = 'redis://127.0.0.1:99999/0';
ALTER SYSTEM SET cachebust.redis_url = 'redis://:secret-pw@127.0.0.1:6379/x';
ALTER SYSTEM SET cachebust.queue_size = '16kB';
DO $$
DECLARE
    setting text;
    detail text;
BEGIN
    FOREACH setting IN ARRAY ARRAY['cachebust.key_prefix', 'cachebust.tag_prefix'] LOOP
        BEGIN
            PERFORM set_config(setting, repeat('p', 1025), false);
        EXCEPTION WHEN invalid_parameter_value THEN
            GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
            RAISE NOTICE '% rejected: %', setting, detail;
        END;
    END LOOP;
END;
$$;
SET cachebust.queue_size = '1MB';
SET cachebust.no_such_setting = 1;
-- Good values are accepted.
SET cachebust.key_prefix = 'app:';
SHOW cachebust.key_prefix;
RESET cachebust.key_prefix;
-- cachebust.standby_names is a list of application_names, or * alone;
-- a bad value is refused before it reaches the configuration file.
ALTER SYSTEM SET cachebust.standby_names = '*, replica1';
ALTER SYSTEM SET cachebust.standby_names = 'replica1,,replica2';
ALTER SYSTEM SET cachebust.standby_names = '"unterminated';
ALTER SYSTEM SET cachebust.standby_max_wait_ms = -1;
SET cachebust.standby_names = '*';
SELECT count(*) AS written FROM pg_file_settings WHERE name LIKE 'cachebust.standby%';

-- With an empty key_prefix a glob must start with a literal part: judged on
-- what it matches, not on its spelling, so no set, class or wildcard that
-- can begin any key gets through (a glob with no fixed first byte reaches
-- every application's keys in the Redis database).
SELECT cachebust.invalidate_pattern('[^x]*');
SELECT cachebust.invalidate_pattern('[a-z]*');
SELECT cachebust.invalidate_pattern('[^');
SELECT cachebust.invalidate_pattern('?user:*');
SELECT cachebust.invalidate_pattern('*:profile');
SELECT cachebust.check_targets('accounts', ARRAY['pattern=[a-z]*:{id}']);
SELECT cachebust.check_targets('accounts', ARRAY['{id}:acct']);  -- TRUNCATE would send *:acct
-- A literal first byte, however it is written, is enough.
BEGIN;
SELECT cachebust.invalidate_pattern('user:*'), cachebust.invalidate_pattern('[u]ser:?'),
       cachebust.invalidate_pattern('\*star*');
SELECT * FROM cachebust.pending() ORDER BY 2;
ROLLBACK;
-- Under a key_prefix every glob stays inside it, so each is accepted.
BEGIN;
SET LOCAL cachebust.key_prefix = 'app:';
SELECT cachebust.invalidate_pattern(E'[^\x01]*'), cachebust.invalidate_pattern('*:profile');
SELECT * FROM cachebust.pending() ORDER BY 2;
ROLLBACK;

-- cachebust.clear(), the emergency clear: its pattern is refused as
-- invalidate_pattern() refuses it, before Redis is asked anything.
SELECT cachebust.clear('');
SELECT cachebust.clear('*');
SELECT cachebust.clear('[a-z]*');
SELECT cachebust.clear('*', '0123456789abcdef');
SELECT cachebust.clear(NULL) IS NULL AS strict, cachebust.clear('user:*', NULL) IS NULL AS strict;
-- No token without a count: this instance's Redis is unreachable.
SELECT cachebust.clear('user:*');
-- A token nobody issued (or one already used).
SELECT cachebust.clear('user:*', '0123456789abcdef');
SELECT cachebust.clear('user:*', '');
-- Switched off, the clear would remove nothing: refused rather than ignored.
SET cachebust.enabled = off;
SELECT cachebust.clear('user:*', '0123456789abcdef');
RESET cachebust.enabled;
-- A refused clear leaves nothing pending.
SELECT count(*) AS pending FROM cachebust.pending();
