-- What an ordinary role may and may not do.
SELECT current_user AS superuser_name \gset
CREATE ROLE cb_app LOGIN;
CREATE TABLE cb_app_table (id int);
ALTER TABLE cb_app_table OWNER TO cb_app;
SET ROLE cb_app;

-- Manual invalidation and reset_stats are not executable by PUBLIC.
SELECT cachebust.invalidate_key('x');
SELECT cachebust.invalidate_tag('x');
SELECT cachebust.invalidate_pattern('x*');
SELECT cachebust.bump('x');
SELECT cachebust.reset_stats();

-- The Redis URL (it may hold a password) is hidden from non-superusers.
SHOW cachebust.redis_url;
SELECT count(*) FROM pg_settings WHERE name = 'cachebust.redis_url';

-- enabled, key_prefix and tag_prefix are superuser settings.
SET cachebust.enabled = off;
SET cachebust.key_prefix = 'other-tenant:';
SET cachebust.tag_prefix = 'x:';

-- Reading state is allowed.
SELECT count(*) FROM cachebust.pending();
SELECT count(*) FROM cachebust.stats;
SELECT cachebust.wait_for_delivery(0);

-- A table owner may watch its own table.
SELECT cachebust.watch('cb_app_table', keys => ARRAY['t:{id}']);
BEGIN;
INSERT INTO cb_app_table VALUES (1);
SELECT * FROM cachebust.pending();
ROLLBACK;
RESET ROLE;

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
ROLLBACK;
\c - :superuser_name
DROP TABLE cb_app_table;
DROP OWNED BY cb_app;
DROP ROLE cb_app;
