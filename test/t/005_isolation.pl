# Nothing can stall delivery or pass for delivered when it was not
# (issue 10): a refused command, many patterns over a large keyspace, a
# fallback that cannot run, an unconfigured or rejected redis_url, one
# tenant's oversized transaction, a backend's buffer, pg_cancel_backend().
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $redis = start_redis('--enable-debug-command', 'local');
my $node = cachebust_node('isolation', $redis, qq{
cachebust.key_prefix = 'app:'
cachebust.queue_size = 64kB
});

sub count_existing
{
	my (@keys) = @_;
	my $n = 0;
	while (my @chunk = splice(@keys, 0, 1000))
	{
		$n += $redis->cmd('EXISTS', @chunk);
	}
	return $n;
}

# ---- item 1: a refused command is resolved; it stalls nothing
$node->safe_psql('postgres', q{
CREATE TABLE counters (id int PRIMARY KEY, n int);
SELECT cachebust.watch('counters', keys => ARRAY['c:{id}'], bumps => ARRAY['ver:{id}'], tags => ARRAY['grp:{id}']);
});
$redis->cmd('SET', "app:c:$_", 'cached') for 1 .. 3;
$redis->cmd('SET', 'app:ver:2', 'a string, not a counter');
$redis->cmd('SET', 'app:tag:grp:3', 'a string, not a set');
is($node->safe_psql('postgres', q{INSERT INTO counters VALUES (1, 0), (2, 0), (3, 0);
  SELECT cachebust.wait_for_delivery(5000)}), 't', 'a batch with refused commands is delivered');
is(count_existing(map { "app:c:$_" } 1 .. 3), 0, 'every key of the batch is gone');
is($redis->exists_key('app:ver:2'), 0, 'the bump Redis refused was replaced by UNLINK of the key');
is($redis->exists_key('app:tag:grp:3'), 0, 'the tag key that was not a set was removed');
is($redis->cmd('GET', 'app:ver:1'), '1', 'the other bumps were applied');
is(stat_value($node, 'targets_failed'), '2', 'targets_failed counts both');
like(slurp_file($node->logfile), qr/Redis refused INCR on "app:ver:2".*the key was removed instead/,
	'the refusal is logged with the key');
$redis->cmd('SET', 'app:c:9', 'cached');
is($node->safe_psql('postgres', q{INSERT INTO counters VALUES (9, 0); SELECT cachebust.wait_for_delivery(5000)}),
	't', 'later commits are not held back');
is($redis->exists_key('app:c:9'), 0, 'and are applied');

# ---- item 2: 300 patterns over 100k keys do not hold an unrelated key back
$redis->cmd('DEBUG', 'POPULATE', '100000', 'app:bulk');
$redis->cmd('SET', "app:nomatch:$_:cached", 'x') for (7, 150, 299);
$node->safe_psql('postgres', q{
CREATE TABLE searches (v int);
SELECT cachebust.watch('searches', patterns => ARRAY['nomatch:{v}:*']);
CREATE TABLE other (id int);
SELECT cachebust.watch('other', keys => ARRAY['other:{id}']);
});
$redis->cmd('SET', 'app:other:1', 'cached');
my $bg = $node->background_psql('postgres');
$bg->query_safe('INSERT INTO searches SELECT g FROM generate_series(1, 300) g');
# (The 0.1.0 worker needed 15 s here: one SCAN of the keyspace per pattern, in the way.)
is($node->safe_psql('postgres', q{INSERT INTO other VALUES (1); SELECT cachebust.wait_for_delivery(5000)}),
	't', 'an unrelated commit is delivered while 300 patterns are matched');
is($redis->exists_key('app:other:1'), 0, 'its key is gone');
is($bg->query_safe('SELECT cachebust.wait_for_delivery(30000)'), 't', 'the patterns are delivered too');
is(count_existing(map { "app:nomatch:$_:cached" } (7, 150, 299)), 0, 'and removed what they match');
is($redis->cmd('DBSIZE') >= 100000, 1, 'and nothing else');
$bg->quit;

# ---- item 8: one tenant's oversized transaction covers that tenant only
for my $t (1, 2)
{
	$node->safe_psql('postgres', "CREATE DATABASE tenant$t; ALTER DATABASE tenant$t SET cachebust.key_prefix = 't$t:'");
	$node->safe_psql("tenant$t", q{CREATE EXTENSION cachebust; CREATE TABLE items (id int, body text);
	  SELECT cachebust.watch('items', keys => ARRAY['item:{id}:{body}'])});
	$redis->cmd('SET', "t$t:item:$_", 'cached') for 1 .. 20;
}
my ($ret, $out, $err) = $node->psql('tenant1',
	q{INSERT INTO items SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g});
like($err, qr/exceed what cachebust.queue_size can hold/, 'the oversized transaction is told');
is($node->safe_psql('tenant1', 'SELECT cachebust.barrier(10000)'), 't',
	"tenant1's oversized transaction is covered by the fallback");
is(count_existing(map { "t1:item:$_" } 1 .. 20), 0, "the fallback removed tenant1's keys");
is(count_existing(map { "t2:item:$_" } 1 .. 20), 20, "and left tenant2's alone");
is(count_existing(map { "app:bulk:$_" } 0 .. 99), 100, 'and the default prefix too');

# ---- item 9: a transaction's buffer stays about queue_size, however many rows
sub peak_rss_kb
{
	my ($pid) = @_;
	return slurp_file("/proc/$pid/status") =~ /^VmHWM:\s+(\d+) kB/m ? $1 : die 'no VmHWM';
}
$node->safe_psql('postgres', q{CREATE TABLE wide (id int);
  SELECT cachebust.watch('wide', keys => ARRAY[repeat('w', 8000) || ':{id}'])});
my $big = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $big->query_safe('SELECT pg_backend_pid()');
my $before = peak_rss_kb($pid);
$big->query('INSERT INTO wide SELECT g FROM generate_series(1, 30000) g');
my $growth_mb = (peak_rss_kb($pid) - $before) / 1024;
# 30000 keys of 8 kB: 240 MB buffered by the 0.1.0 backend.
cmp_ok($growth_mb, '<', 64, sprintf('30000 keys of 8 kB grew the backend by %.1f MB (queue_size is 64kB)', $growth_mb));
is(scalar $big->query('SELECT cachebust.wait_for_delivery(10000)'), 't', 'and the transaction was covered');
$big->quit;

# ---- item 10: pg_cancel_backend() on the worker neither kills it nor cold-starts the cache
my $worker = worker_pid($node);
my $fallbacks = stat_value($node, 'fallbacks');
$redis->cmd('SET', 'app:survivor', 'cached');
is($node->safe_psql('postgres', "SELECT pg_cancel_backend($worker)"), 't', 'the worker was sent a cancel');
$redis->cmd('SET', 'app:c:1', 'cached');
is($node->safe_psql('postgres', q{UPDATE counters SET n = n + 1 WHERE id = 1; SELECT cachebust.wait_for_delivery(5000)}),
	't', 'delivery goes on after the cancel');
is(worker_pid($node), $worker, 'the same worker is running');
is(stat_value($node, 'fallbacks'), $fallbacks, 'no fallback ran');
is($redis->exists_key('app:survivor'), 1, 'the cache is warm');
unlike(slurp_file($node->logfile), qr/canceling statement due to user request|cachebust worker failed/,
	'no ERROR in the worker');

$node->stop;

# ---- item 4: no redis_url, or a rejected one, delivers nowhere
my $unset = cachebust_node('unconfigured', undef, "cachebust.key_prefix = 'u:'");
$unset->safe_psql('postgres', q{CREATE TABLE t (id int); SELECT cachebust.watch('t', keys => ARRAY['t:{id}'])});
$redis->cmd('SET', 'u:t:1', 'cached');
is($unset->safe_psql('postgres', 'INSERT INTO t VALUES (1); SELECT cachebust.wait_for_delivery(300)'), 'f',
	'nothing is delivered without a URL');
ok(wait_until(sub { stat_value($unset, 'last_error') =~ /cachebust.redis_url is not set/ }),
	'stats say that redis_url is not set');
is(stat_value($unset, 'connected'), 'f', 'and that the worker is not connected');
is(stat_value($unset, 'pending_targets'), '1', 'the target waits');
reload_settings($unset, "ALTER SYSTEM SET cachebust.redis_url = '" . $redis->url . "'");
is($unset->safe_psql('postgres', 'SELECT cachebust.barrier(5000)'), 't', 'delivered once the URL is set');
is($redis->exists_key('u:t:1'), 0, 'to the named server');
$unset->safe_psql('postgres', 'ALTER SYSTEM RESET cachebust.redis_url');
# A malformed URL in postgresql.conf: PostgreSQL keeps the built-in default, which names no server.
$unset->append_conf('postgresql.conf', "cachebust.redis_url = 'redis://app:Pw-in-a-bad-url\@127.0.0.1:xx/0'");
$unset->restart;
$redis->cmd('SET', 'u:t:2', 'cached');
is($unset->safe_psql('postgres', 'INSERT INTO t VALUES (2); SELECT cachebust.wait_for_delivery(300)'), 'f',
	'a rejected URL delivers nowhere');
ok(wait_until(sub { stat_value($unset, 'last_error') =~ /not set/ }), 'and says so');
is($redis->exists_key('u:t:2'), 1, 'nothing reached Redis');
unlike(slurp_file($unset->logfile), qr/Pw-in-a-bad-url/, 'the rejected URL is not logged');
$unset->stop;

# ---- item 3: what no fallback covered is never reported delivered
my $bare = cachebust_node('bare', $redis, "cachebust.queue_size = 64kB\nrestart_after_crash = on");
# The recommended set-up, every database with its own prefix, gets no warning
# although the server-wide setting is empty.
$bare->safe_psql('postgres', q{CREATE DATABASE tenant; ALTER DATABASE tenant SET cachebust.key_prefix = 'tenant:'});
$bare->safe_psql('tenant', q{CREATE EXTENSION cachebust; CREATE TABLE t (id int); SELECT cachebust.watch('t', keys => ARRAY['t:{id}']);
  INSERT INTO t VALUES (1)});
$bare->restart;
unlike(slurp_file($bare->logfile), qr/key_prefix (is|was) empty/,
	'no warning about an empty key_prefix while every commit had a prefix');
# A commit with the empty prefix is what cannot be covered: said once, naming who.
$bare->safe_psql('postgres', q{CREATE TABLE items (id int, body text);
  SELECT cachebust.watch('items', keys => ARRAY['bare:{id}:{body}'])});
my ($stdout, $stderr);
$bare->psql('postgres', q{INSERT INTO items VALUES (0, 'x')}, stdout => \$stdout, stderr => \$stderr);
like($stderr, qr/WARNING:  cachebust.key_prefix is empty for database "postgres", role "postgres"/,
	'the first commit with an empty key_prefix is warned about, naming its database and role');
$bare->psql('postgres', q{INSERT INTO items VALUES (0, 'x')}, stdout => \$stdout, stderr => \$stderr);
unlike($stderr, qr/WARNING/, 'once');
$bare->restart;
like(slurp_file($bare->logfile), qr/key_prefix was empty for commits of database "postgres", role "postgres"/,
	'after a restart the worker says it again, naming them');
is($bare->safe_psql('postgres', q{INSERT INTO items SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g;
  SELECT cachebust.wait_for_delivery(2000)}), 'f', 'an overflow the prefix fallback refused is not delivered');
is($bare->safe_psql('postgres', 'SELECT cachebust.barrier(2000)'), 'f', 'barrier() says so too');
cmp_ok(stat_value($bare, 'uncovered_batches'), '>', 0, 'stats count the uncovered batch');
cmp_ok(stat_value($bare, 'fallbacks_refused'), '>', 0, 'and the refused fallback');
$redis->cmd('SET', 'bare:innocent', 'cached');
is($redis->exists_key('bare:innocent'), 1, 'nothing was removed implicitly');
# The operator chooses a fallback that can cover it: the worker tries again.
$redis->cmd('SET', 'outside:db', 'cached');
reload_settings($bare, q{ALTER SYSTEM SET cachebust.fallback = 'flushdb'});
is($bare->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't',
	'covered once cachebust.fallback = flushdb');
is(stat_value($bare, 'uncovered_batches'), '0', 'nothing uncovered any more');
is($redis->cmd('DBSIZE'), 0, 'flushdb emptied the database');

# fallback = none: never covered.
reload_settings($bare, q{ALTER SYSTEM SET cachebust.fallback = 'none'});
my $session = $bare->background_psql('postgres');
$session->query(q{INSERT INTO items SELECT g, repeat('y', 200) FROM generate_series(1, 2000) g});
is(scalar $session->query('SELECT cachebust.wait_for_delivery(2000)'), 'f', 'fallback = none covers nothing');
# A session already waiting when the operator makes a fallback possible is
# told true once the fallback covers its commit; so is a barrier() waiting
# in another session (both used to return false at once: delivered, but
# uncovered, even with time left to wait).
my $barrier = $bare->background_psql('postgres');
$session->query_until(qr/waiting\n/, "\\echo waiting\nSELECT cachebust.wait_for_delivery(60000) AS session_wait;\n");
$barrier->query_until(qr/waiting\n/, "\\echo waiting\nSELECT cachebust.barrier(60000) AS barrier_wait;\n");
ok( wait_until(sub {
			$bare->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
			  WHERE query ~ 'AS (session|barrier)_wait' AND state = 'active' AND wait_event = 'Extension'}) eq '2';
		}),
	'wait_for_delivery() and barrier() wait while no fallback covers the commit');
reload_settings($bare, q{ALTER SYSTEM SET cachebust.fallback = 'flushdb'});
like($session->query_until(qr/^[tf]$/m, ''), qr/^t$/m,
	'until a fallback runs: the waiting session sees its commit covered');
like($barrier->query_until(qr/^[tf]$/m, ''), qr/^t$/m, 'and so does the waiting barrier()');
$session->quit;
$barrier->quit;

# More than 64 prefixes, then a crash: the prefixes beyond the registry are unknown.
reload_settings($bare, q{ALTER SYSTEM SET cachebust.fallback = 'prefix'});
$bare->safe_psql('postgres', join("\n", map {
	"BEGIN; SET LOCAL cachebust.key_prefix = 'p$_:'; SELECT cachebust.invalidate_key('k'); COMMIT;" } 1 .. 70));
is($bare->safe_psql('postgres', 'SELECT cachebust.barrier(5000)'), 't', '70 prefixes delivered');
like(slurp_file($bare->logfile), qr/more than 64 distinct cachebust.key_prefix values are in use/,
	'the registry overflow is announced');
my $old_worker = worker_pid($bare);
kill 'KILL', $old_worker;
ok(wait_until(sub { my $p = worker_pid($bare); $p =~ /^\d+$/ && $p != $old_worker }, 30), 'restarted after the crash');
ok(wait_until(sub { stat_value($bare, 'uncovered_batches') > 0 }, 10),
	'a crash fallback that cannot know every prefix leaves the crash uncovered');
is($bare->safe_psql('postgres', 'SELECT cachebust.barrier(1000)'), 'f', 'so barrier() says false');
$bare->stop;

done_testing();
