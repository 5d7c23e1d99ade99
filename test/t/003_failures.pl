# Failures: Redis outages, overflow, crashes and shutdowns leave nothing stale.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $redis = start_redis();
my $node = cachebust_node('failures', $redis, qq{
cachebust.key_prefix = 'app:'
cachebust.queue_size = 64kB
cachebust.command_timeout_ms = 300
cachebust.connect_timeout_ms = 300
restart_after_crash = on
});
$node->safe_psql('postgres', q{
CREATE TABLE items (id int PRIMARY KEY, v text);
SELECT cachebust.watch('items', keys => ARRAY['item:{id}']);
INSERT INTO items SELECT g, 'v' FROM generate_series(1, 2000) g;
SELECT cachebust.wait_for_delivery(5000);
});

sub fill
{
	my ($from, $to) = @_;
	$redis->cmd('SET', "app:item:$_", 1) for $from .. $to;
}

sub count_existing
{
	my ($from, $to) = @_;
	my $n = 0;
	$n += $redis->exists_key("app:item:$_") for $from .. $to;
	return $n;
}

# ---- Redis down: writers are unaffected, everything delivered when it is back
# The stale copies are saved to disk and come back with the restarted Redis,
# before the worker can reach it (refilling them after the restart would
# race the worker's own reconnection).
fill(1, 50);
$redis->cmd('SET', 'outside:prefix', 1);
$redis->cmd('SAVE');
$redis->stop('KILL');
my $t0 = time;
$node->safe_psql('postgres', "UPDATE items SET v = 'down' WHERE id = $_") for 1 .. 50;
my $down_elapsed = time - $t0;
ok(!wait_all_delivered($node, 0.5), 'not delivered while Redis is down');
ok(wait_until(sub { stat_value($node, 'connected') eq 'f' }, 5), 'stats show the worker disconnected');
like(stat_value($node, 'last_error'), qr/\S/, 'and the last error');
cmp_ok(stat_value($node, 'pending_targets'), '==', 50, 'the worker holds the 50 pending targets');
$redis->start;   # loads the saved stale copies
unlink("$redis->{dir}/dump.rdb");    # later restarts start empty again
ok(wait_all_delivered($node, 10), 'delivered after Redis came back');
is(count_existing(1, 50), 0, 'all 50 keys written during the outage are invalidated');
cmp_ok(stat_value($node, 'retries') + 0, '>', 0, 'retries were counted');
note(sprintf('50 commits while Redis was down took %.0f ms', $down_elapsed * 1000));

# ---- CLIENT PAUSE longer than the command timeout
fill(60, 70);
$redis->cmd('CLIENT', 'PAUSE', '1500', 'ALL');
is($node->safe_psql('postgres', "UPDATE items SET v = 'paused' WHERE id BETWEEN 60 AND 70;
  SELECT cachebust.wait_for_delivery(10000)"), 't', 'delivered after CLIENT PAUSE');
is(count_existing(60, 70), 0, 'keys invalidated after the pause');

# ---- a transaction larger than the queue: overflow -> fallback, prefix only
# (and a materialized key the fallback removes is computed again)
$node->safe_psql('postgres', q{SELECT cachebust.materialize('m:count', 'SELECT count(*)::text FROM items', '{items}');
  SELECT cachebust.barrier(10000)});
is($redis->cmd('GET', 'app:m:count'), '2000', 'a materialized key');
my $refreshes = stat_value($node, 'refreshes');
fill(100, 120);
$redis->cmd('SET', 'outside:prefix', 1);
is($node->safe_psql('postgres', q{SELECT cachebust.invalidate_key(VARIADIC array_agg(repeat('x', 100) || g)) FROM generate_series(1, 2000) g \g /dev/null
  SELECT cachebust.wait_for_delivery(10000)}), 't', 'overflowed transaction covered by the fallback');
cmp_ok(stat_value($node, 'overflows'), '>=', 1, 'overflow counted');
cmp_ok(stat_value($node, 'fallbacks'), '>=', 1, 'fallback counted');
is(count_existing(100, 120), 0, 'fallback removed the prefixed keys');
is($redis->exists_key('outside:prefix'), 1, 'fallback left keys outside key_prefix alone');
ok(wait_until(sub { stat_value($node, 'refreshes') > $refreshes && ($redis->cmd('GET', 'app:m:count') // '') eq '2000' }, 20),
	'the materialized key the fallback removed is computed again');
$node->safe_psql('postgres', q{SELECT cachebust.dematerialize('m:count'); SELECT cachebust.barrier(10000)});

# ---- clean fast shutdown with a long window: pending delivered before exit
reload_settings($node, 'ALTER SYSTEM SET cachebust.debounce_ms = 60000');
fill(200, 210);
$node->safe_psql('postgres', "UPDATE items SET v = 'bye' WHERE id BETWEEN 200 AND 210");
$node->stop('fast');
is(count_existing(200, 210), 0, 'fast shutdown delivered the pending targets');
$redis->cmd('SET', 'app:survivor', 1);
$node->start;
reload_settings($node, 'ALTER SYSTEM RESET cachebust.debounce_ms');
is(stat_value($node, 'fallbacks'), '0', 'no fallback after a clean restart');
is($redis->exists_key('app:survivor'), 1, 'cache kept after a clean restart');

# ---- a database with its own key_prefix: recorded for the fallback
$node->safe_psql('postgres', q{CREATE DATABASE tenant2; ALTER DATABASE tenant2 SET cachebust.key_prefix = 't2:'});
is($node->safe_psql('tenant2', q{CREATE EXTENSION cachebust; CREATE TABLE t (id int);
  SELECT cachebust.watch('t', keys => ARRAY['t:{id}']) \g /dev/null
  INSERT INTO t VALUES (1); SELECT cachebust.wait_for_delivery(5000)}), 't', 'a commit under a per-database prefix');
$redis->cmd('SET', 't2:survivor', 1);

# ---- kill -9 of the worker: crash restart, fallback once Redis is reachable
my $worker_pid = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'cachebust worker'});
ok($worker_pid =~ /^\d+$/, 'worker is running');
kill 'KILL', $worker_pid;
ok(wait_until(sub {
	my $pid = eval { $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'cachebust worker'}) } // '';
	return $pid =~ /^\d+$/ && $pid != $worker_pid;
}, 30), 'worker restarted');
ok(wait_until(sub { $redis->exists_key('app:survivor') == 0 }, 15), 'fallback ran after the worker was killed');
ok(wait_until(sub { $redis->exists_key('t2:survivor') == 0 }, 15),
	'the fallback also covered the per-database prefix (remembered across the crash restart)');
is($redis->exists_key('outside:prefix'), 1, 'still nothing outside the prefix touched');

# ---- kill -9 of a backend: crash restart, fallback
$redis->cmd('SET', 'app:survivor2', 1);
my $bg = $node->background_psql('postgres');
my $backend_pid = $bg->query_safe('SELECT pg_backend_pid()');
kill 'KILL', $backend_pid;
ok(wait_until(sub { $redis->exists_key('app:survivor2') == 0 }, 30), 'fallback ran after a backend crash restart');
ok(wait_until(sub { (eval { $node->safe_psql('postgres', 'SELECT 1') } // '') eq '1' }, 30), 'server accepts connections again');

# ---- writers keep committing while the worker is gone
$node->safe_psql('postgres', "UPDATE items SET v = 'after' WHERE id = 1");
fill(1, 1);
is($node->safe_psql('postgres', "UPDATE items SET v = 'after2' WHERE id = 1; SELECT cachebust.wait_for_delivery(10000)"),
	't', 'delivery works after the crash restart');
is(count_existing(1, 1), 0, 'and invalidates');

my $log = slurp_file($node->logfile);
unlike($log, qr/PANIC/, 'no PANIC in the server log');

$node->stop;
$redis->stop;
done_testing();
