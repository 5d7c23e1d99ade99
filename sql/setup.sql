-- Installation and the settings' defaults.
CREATE EXTENSION cachebust;
SELECT extname, extversion, nspname
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE extname = 'cachebust';
-- The library reports the version it was built as: the installed control
-- file's default_version (test/check_release.py checks the other copies).
SELECT cachebust.version() = default_version AS library_is_control_version
FROM pg_available_extensions WHERE name = 'cachebust';

SELECT name, setting, unit, context, vartype
FROM pg_settings WHERE name LIKE 'cachebust.%' ORDER BY name;

SELECT enumvals FROM pg_settings WHERE name = 'cachebust.fallback';

-- Functions and views of the SQL surface.
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args,
       pg_get_function_result(p.oid) AS result
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'cachebust' AND p.proname NOT LIKE '\_%' AND p.proname <> 'stats'
ORDER BY 1, 2;

SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = 'cachebust' AND table_name = 'stats' ORDER BY ordinal_position;

SELECT table_name FROM information_schema.views WHERE table_schema = 'cachebust' ORDER BY 1;

-- Nothing is buffered outside a transaction that captured something.
SELECT * FROM cachebust.pending();
