# The SQL surface across versions and the secrets around it (issue 11): an
# upgrade from 0.1.0 with triggers in place, the privilege model after it,
# tag members outside the prefix, and log redaction of hostile passwords;
# (issue 22) cachebust.sentinel_password kept out of the log, and what
# stats.last_error shows to whom.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $redis = start_redis();

# ---- item 10: 0.1.0 → 0.2.0 with triggers in place
my $node = cachebust_node('upgrade', $redis, "cachebust.key_prefix = 'up:'");
$node->safe_psql('postgres', q{
DROP EXTENSION cachebust;
CREATE EXTENSION cachebust VERSION '0.1.0';
CREATE ROLE owner LOGIN;
CREATE ROLE plain LOGIN;
CREATE TABLE users (id int PRIMARY KEY, team int);
SELECT cachebust.watch('users', keys => ARRAY['user:{id}'], tags => ARRAY['team:{team}']);
CREATE TABLE owned (id int);
ALTER TABLE owned OWNER TO owner;
CREATE TABLE parted (id int, region text) PARTITION BY LIST (region);
CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
SELECT cachebust.watch('parted', keys => ARRAY['p:{id}']);
GRANT INSERT ON users TO plain;
});
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'cachebust'}), '0.1.0',
	'0.1.0 installed');
# In 0.1.0 every table owner could attach the trigger.
$node->safe_psql('postgres', q{SELECT cachebust.watch('owned', keys => ARRAY['owned:{id}'])},
	extra_params => [ '-U', 'owner' ]);
# The current library serves the 0.1.0 SQL until the update.
$redis->cmd('SET', 'up:user:1', 'cached');
is($node->safe_psql('postgres', 'INSERT INTO users VALUES (1, 7); SELECT cachebust.wait_for_delivery(5000)'), 't',
	'0.1.0 triggers deliver with the new library');
is($redis->exists_key('up:user:1'), 0, 'and invalidate');
like($node->safe_psql('postgres', 'SELECT targets FROM cachebust.watches WHERE trigger = \'cachebust_watch_1\' LIMIT 1'),
	qr/user:\{id\}/, "0.1.0's watches view still works");

$node->safe_psql('postgres', 'ALTER EXTENSION cachebust UPDATE');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'cachebust'}), '0.3.0',
	'updated to 0.3.0 (through 0.2.0)');

# Triggers keep firing, for every writer.
$redis->cmd('SET', "up:$_", 'cached') for qw(user:2 owned:5);
$redis->cmd('SADD', 'up:tag:team:8', 'up:member', 'other:secret');
$redis->cmd('SET', 'up:member', 'cached');
$redis->cmd('SET', 'other:secret', 'cached');
is($node->safe_psql('postgres', 'INSERT INTO users VALUES (2, 8); SELECT cachebust.wait_for_delivery(5000)',
	extra_params => [ '-U', 'plain' ]), 't', 'a plain writer of a watched table still invalidates');
is($redis->exists_key('up:user:2'), 0, 'its key');
is($redis->exists_key('up:member'), 0, 'and the members of its tag under the prefix');
# Item 3: a tag member outside the tag's key_prefix is never ours to delete.
is($redis->exists_key('other:secret'), 1, 'but not a member outside the prefix');
is($node->safe_psql('postgres', 'SELECT tag_members_skipped FROM cachebust.stats'), '1', 'which is counted');
is($node->safe_psql('postgres', 'INSERT INTO owned VALUES (5); SELECT cachebust.wait_for_delivery(5000)',
	extra_params => [ '-U', 'owner' ]), 't', 'a trigger attached under 0.1.0 by a table owner keeps firing');
is($redis->exists_key('up:owned:5'), 0, 'and invalidates');

# The privilege model of 0.2.0.
my ($ret, $out, $err) = $node->psql('postgres',
	q{CREATE TEMP TABLE t (x int); CREATE TRIGGER z AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('pattern=*')},
	extra_params => [ '-U', 'plain' ]);
like($err, qr/permission denied for function cachebust.invalidate/, 'after the update a plain role cannot attach the trigger');
($ret, $out, $err) = $node->psql('postgres', q{SELECT cachebust.watch('owned', keys => ARRAY['o2:{id}'])},
	extra_params => [ '-U', 'owner' ]);
like($err, qr/permission denied for function cachebust.invalidate\(\).*GRANT EXECUTE ON FUNCTION cachebust.invalidate\(\) TO owner/s,
	'nor call watch(), and the error says which GRANT is missing');
($ret, $out, $err) = $node->psql('postgres', q{SELECT cachebust.flush()}, extra_params => [ '-U', 'plain' ]);
like($err, qr/permission denied for function flush/, 'flush() is not PUBLIC');
is($node->safe_psql('postgres', q{SELECT count(*) > 0 FROM cachebust.watches}, extra_params => [ '-U', 'plain' ]),
	't', 'the watches view is readable by every role');
is($node->safe_psql('postgres', q{SELECT uncovered_batches FROM cachebust.stats}, extra_params => [ '-U', 'plain' ]),
	'0', 'stats has the new columns');
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(5000)'), 't', 'barrier() exists and works');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_proc WHERE proname IN ('_trigger_targets', '_check_targets')}),
	'0', "0.1.0's helpers are gone");
# The updated extension is the one a fresh install makes: same functions,
# views and event triggers, so watch() and stats work as documented.
my $definitions = q{
SELECT md5(string_agg(d, E'\n' ORDER BY d)) FROM (
  SELECT pg_get_functiondef(p.oid) || array_to_string(p.proacl::text[], ',') AS d
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'cachebust'
  UNION ALL
  SELECT c.relname || pg_get_viewdef(c.oid) || array_to_string(c.relacl::text[], ',')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'cachebust' AND c.relkind = 'v'
  UNION ALL
  SELECT evtname || evtevent || array_to_string(evttags, ',') FROM pg_event_trigger WHERE evtname LIKE 'cachebust%'
) s};
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION cachebust');
is($node->safe_psql('postgres', $definitions), $node->safe_psql('fresh', $definitions),
	'the updated extension has exactly the functions, views and event triggers of a fresh 0.3.0');
# 0.2.0 -> 0.3.0 on its own, with a watched table: the same result.
$node->safe_psql('postgres', 'CREATE DATABASE from020');
$node->safe_psql('from020', q{
CREATE EXTENSION cachebust VERSION '0.2.0';
CREATE TABLE items (id int);
SELECT cachebust.watch('items', keys => ARRAY['item:{id}']);
ALTER EXTENSION cachebust UPDATE;
});
is($node->safe_psql('from020', q{SELECT extversion FROM pg_extension WHERE extname = 'cachebust'}), '0.3.0',
	'0.2.0 updated to 0.3.0');
is($node->safe_psql('from020', $definitions), $node->safe_psql('fresh', $definitions),
	'an updated 0.2.0 has exactly the functions, views and event triggers of a fresh 0.3.0');
is($node->safe_psql('from020', q{SELECT targets FROM cachebust.watches WHERE trigger = 'cachebust_watch_1'},
	extra_params => [ '-U', 'plain' ]), '{"item:{id}"}', 'and its watches view works for every role');
# watch() gains `refresh` in 0.3.0 (a new signature): privileges changed under 0.2.0 carry over.
$node->safe_psql('postgres', 'CREATE DATABASE acl020');
$node->safe_psql('acl020', q{
CREATE EXTENSION cachebust VERSION '0.2.0';
REVOKE EXECUTE ON FUNCTION cachebust.watch(regclass, text[], text[], text[], text[], text[], boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cachebust.watch(regclass, text[], text[], text[], text[], text[], boolean, boolean) TO owner;
ALTER EXTENSION cachebust UPDATE;
});
is($node->safe_psql('acl020', q{SELECT has_function_privilege('plain', 'cachebust.watch(regclass, text[], text[], text[], text[], text[], boolean, boolean, text)', 'EXECUTE'),
                                      has_function_privilege('owner', 'cachebust.watch(regclass, text[], text[], text[], text[], text[], boolean, boolean, text)', 'EXECUTE'),
                                      count(*) FROM pg_proc WHERE proname IN ('watch', '_watch_0_2_0')}),
	'f|t|1', "watch()'s privileges changed under 0.2.0 carry over to its 0.3.0 signature");
$node->safe_psql('postgres', q{CREATE TABLE after_update (id int); SELECT cachebust.watch('after_update', keys => ARRAY['au:{id}'])});
is($node->safe_psql('postgres', q{SELECT string_agg(tgname || CASE WHEN tgnewtable IS NOT NULL OR tgoldtable IS NOT NULL
                                                               THEN ' (transition tables)' ELSE '' END, ',' ORDER BY tgname)
                                  FROM pg_trigger WHERE tgrelid = 'after_update'::regclass}),
	($ENV{CACHEBUST_WATCH_CAPTURE} // '') eq 'row'
	? 'cachebust_watch_1,cachebust_watch_1_truncate'
	: 'cachebust_watch_1 (transition tables),cachebust_watch_1_delete (transition tables),'
	  . 'cachebust_watch_1_truncate,cachebust_watch_1_update (transition tables)',
	"watch() after the update makes 0.2.0's triggers");
is($node->safe_psql('postgres', q{SELECT second_sends FROM cachebust.stats}), '0', 'and stats has the replica columns');
# The update gave the existing partition its TRUNCATE copy.
is($node->safe_psql('postgres', q{BEGIN; TRUNCATE parted_eu; SELECT string_agg(target, ',') FROM cachebust.pending(); ROLLBACK}),
	'up:p:*', 'TRUNCATE of a partition watched under 0.1.0 invalidates after the update');

$node->stop;

# ---- item 5: redaction by parsing, whatever the password holds
my $log_node = cachebust_node('redaction', $redis, qq{
log_statement = 'all'
cachebust.sentinel_password = 'Sentinel-pw-start'
});
my $port = $redis->{port};
my %passwords = (
	quote => q{S3cr'et-q},
	dquote => q{S3cr"et-d},
	at => q{S3cr@et-a},
	colon => q{S3cr:et-c},
	slash => q{S3cr/et-s},
	percent => q{S3cr%et-p},
	space => q{S3cr et-sp},
);
for my $name (sort keys %passwords)
{
	my $pw = $passwords{$name};
	$redis->cmd('ACL', 'SETUSER', "u_$name", 'on', ">$pw", '~*', '&*', '+@all');
	(my $encoded = $pw) =~ s{([%/?,])}{sprintf('%%%02X', ord($1))}ge;
	my $url = "redis://u_$name:$encoded\@127.0.0.1:$port/0";
	(my $sql = $url) =~ s/'/''/g;
	reload_settings($log_node, "ALTER SYSTEM SET cachebust.redis_url = '$sql'");
	$redis->cmd('SET', "k:$name", 'cached');
	my $delivered = $log_node->safe_psql('postgres', qq{SELECT cachebust.invalidate_key('k:$name') \\g /dev/null
	  SELECT cachebust.wait_for_delivery(5000)});
	is($delivered, 't', "delivered as a user whose password holds $name");
	is($redis->exists_key("k:$name"), 0, 'and invalidated');
}
# The same through postgresql.conf (PostgreSQL logs "parameter ... changed to").
my $conf_pw = $passwords{quote} . 'conf';
$redis->cmd('ACL', 'SETUSER', 'u_conf', 'on', ">$conf_pw", '~*', '&*', '+@all');
$log_node->safe_psql('postgres', 'ALTER SYSTEM RESET cachebust.redis_url');
(my $conf_url = "redis://u_conf:$conf_pw\@127.0.0.1:$port/0") =~ s/'/''/g;
$log_node->append_conf('postgresql.conf', "cachebust.redis_url = '$conf_url'");
reload_settings($log_node);
# Mistyped URLs: a password where a port or a host was expected.
for my $bad ('redis://app:S3cr-malformed-1/0', 'redis://app:S3cr-malformed-2@127.0.0.1:xx/0',
	"redis://app:S3cr'malformed-3\@127.0.0.1:1:2/0")
{
	(my $sql = $bad) =~ s/'/''/g;
	($ret, $out, $err) = $log_node->psql('postgres', "ALTER SYSTEM SET cachebust.redis_url = '$sql'");
	like($err, qr/invalid value for parameter "cachebust.redis_url"/, 'a mistyped URL is refused');
	unlike($err, qr/S3cr/, 'and the error does not repeat it');
}
$log_node->append_conf('postgresql.conf', "cachebust.redis_url = 'redis://app:S3cr-malformed-4\@host:port/0'");
reload_settings($log_node);
# Issue 22 item 1: the sentinels' password, set at start (above), by ALTER SYSTEM and in postgresql.conf.
reload_settings($log_node, q{ALTER SYSTEM SET cachebust.sentinel_password = 'Sentinel-pw-alter'});
$log_node->append_conf('postgresql.conf', "cachebust.sentinel_password = 'Sentinel-pw-conf'");
reload_settings($log_node, 'ALTER SYSTEM RESET cachebust.sentinel_password');
my $log = slurp_file($log_node->logfile);
like($log, qr/ALTER SYSTEM SET cachebust.redis_url/, 'the statements were logged (log_statement = all)');
like($log, qr/parameter "cachebust.redis_url" changed to/, 'and the reloads');
unlike($log, qr/S3cr/, 'no password, whatever its characters, and no mistyped URL appears in the log');
like($log, qr/ALTER SYSTEM SET cachebust.sentinel_password/, 'the statement setting sentinel_password was logged');
like($log, qr/parameter "cachebust.sentinel_password" changed to/, 'and its changes at reload');
unlike($log, qr/Sentinel-pw/, 'but never the sentinel password, from the start on');
$log_node->stop;

# ---- issue 22 items 2 and 3: stats.last_error shows where it happened and which key only to some roles
my $errors = cachebust_node('last_error', $redis, "cachebust.key_prefix = 'le:'");
$errors->safe_psql('postgres', q{
CREATE ROLE plain LOGIN;
CREATE ROLE stats_reader LOGIN IN ROLE pg_read_all_stats;
CREATE ROLE settings_reader LOGIN IN ROLE pg_read_all_settings;
CREATE TABLE versions (id int);
SELECT cachebust.watch('versions', bumps => ARRAY['ver:{id}']);
});
sub last_error_as
{
	my ($role) = @_;
	return $errors->safe_psql('postgres', 'SELECT last_error FROM cachebust.stats', extra_params => [ '-U', $role ]);
}
# A bump of a key that holds a string: Redis refuses the INCR.
$redis->cmd('SET', 'le:ver:1', 'a string, not a counter');
is($errors->safe_psql('postgres', 'INSERT INTO versions VALUES (1); SELECT cachebust.wait_for_delivery(5000)'), 't',
	'a refused bump is resolved');
ok(wait_until(sub { stat_value($errors, 'last_error') =~ /Redis refused INCR/ }), 'and reported in last_error');
like(last_error_as('postgres'), qr/le:ver:1/, 'a superuser sees the refused key');
like(last_error_as('stats_reader'), qr/le:ver:1/, 'so does a member of pg_read_all_stats');
like(last_error_as('plain'), qr/Redis refused INCR.*not an integer/, 'every role sees the refusal');
unlike(last_error_as('plain'), qr/le:|ver:1/, 'but not the key (it may be another tenant\'s)');
unlike(last_error_as('settings_reader'), qr/le:|ver:1/, 'nor does pg_read_all_settings alone show it');

# Sentinels that cannot be reached: their addresses are endpoints too.
my @sentinel_ports = map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. 2;
reload_settings($errors,
	"ALTER SYSTEM SET cachebust.redis_url = 'redis-sentinel://127.0.0.1:$sentinel_ports[0],127.0.0.1:$sentinel_ports[1]/mymaster'");
ok(wait_until(sub { stat_value($errors, 'last_error') =~ /no sentinel told the master of "mymaster"/ }),
	'unreachable sentinels are reported in last_error');
like(last_error_as('postgres'), qr/127\.0\.0\.1:$sentinel_ports[0].*127\.0\.0\.1:$sentinel_ports[1]/,
	'a superuser sees which sentinels');
like(last_error_as('settings_reader'), qr/127\.0\.0\.1:$sentinel_ports[0]/, 'so does a member of pg_read_all_settings');
like(last_error_as('plain'), qr/no sentinel told the master of "mymaster".*cannot connect/,
	'every role sees what failed');
unlike(last_error_as('plain'), qr/127\.0\.0\.1|$sentinel_ports[0]|$sentinel_ports[1]/, 'but not where');
$errors->stop;

done_testing();
