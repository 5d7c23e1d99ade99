# Outages under load and Redis in bad states: a persistent Redis killed during
# a pgbench write load, commit latency while Redis is down, wrong password,
# READONLY replica, OOM, max_pending, and a worker terminated again and again.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# Persistent, so that stale entries survive the crash as they would in production.
my $redis = start_redis('--appendonly', 'yes', '--appendfsync', 'always');
my $node = cachebust_node('outages', $redis, qq{
cachebust.key_prefix = 'app:'
cachebust.command_timeout_ms = 300
cachebust.connect_timeout_ms = 300
});
my $rows = 50000;
$node->safe_psql('postgres', qq{
CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO kv SELECT g FROM generate_series(1, $rows) g;
SELECT cachebust.watch('kv', keys => ARRAY['kv:{id}']);
});

# How many of these keys exist (EXISTS counts, 1000 keys per command).
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

sub fill
{
	my (@keys) = @_;
	while (my @chunk = splice(@keys, 0, 1000))
	{
		$redis->cmd('MSET', map { ($_, 'cached') } @chunk);
	}
}

# Runs pgbench with a script for $seconds; returns (handle, output ref).
sub start_pgbench
{
	my ($script, $clients, $seconds) = @_;
	my $file = $node->basedir . '/bench.sql';
	open(my $fh, '>', $file) or die;
	print $fh $script;
	close $fh;
	my $out = '';
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-M', 'prepared', '-c', $clients, '-j', $clients, '-T', $seconds,
		  '-f', $file, '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', \$out, '2>', \$out);
	return ($h, \$out);
}

# Average latency in ms of a finished pgbench run.
sub pgbench_latency
{
	my ($out) = @_;
	return $$out =~ /latency average = ([\d.]+) ms/ ? $1 : die "no latency in pgbench output:\n$$out";
}

# Writers touch only the lower half of the table, however fast they run, so
# the upper half is certain to stay untouched (and cached).
my $update_script = "\\set id random(1, " . ($rows / 2) . ")\nUPDATE kv SET v = v + 1 WHERE id = :id;\n";

# ---- kill -9 of a persistent Redis during a write load, restart from its AOF
fill(map { "app:kv:$_" } 1 .. $rows);
$redis->cmd('SET', 'outside', 'x');
my ($bench, $bench_out) = start_pgbench($update_script, 2, 8);
# Kill Redis once the load is going, bring it back after commits kept going without it.
my $committed = sub { stat_value($node, 'transactions_enqueued') };
my $before = $committed->();
ok(wait_until(sub { $committed->() >= $before + 200 }, 20), 'the write load is running');
$redis->stop('KILL');
my $outage_start = time;
my $at_kill = $committed->();
ok(wait_until(sub { $committed->() >= $at_kill + 300 }, 20), 'commits go on while Redis is down');
$redis->start;   # reloads the append-only file: every stale entry is back
my $outage = time - $outage_start;
ok($bench->finish, 'pgbench ran through the outage without errors') or diag($$bench_out);
ok(wait_all_delivered($node, 20), 'everything committed was delivered after Redis came back');
my $updated = $node->safe_psql('postgres', 'SELECT string_agg(id::text, \',\') FROM kv WHERE v > 0');
my @updated = split /,/, $updated;
my $stale = count_existing(map { "app:kv:$_" } @updated);
cmp_ok(scalar(@updated), '>', 100, scalar(@updated) . ' rows were updated before and during the outage');
is($stale, 0, "no stale key among the updated rows after recovery (checked " . scalar(@updated) . ")");
my $untouched = $node->safe_psql('postgres', 'SELECT string_agg(id::text, \',\') FROM kv WHERE v = 0');
my @untouched = split /,/, $untouched;
cmp_ok(scalar(@untouched), '>', 0, scalar(@untouched) . ' rows were not updated');
is(count_existing(map { "app:kv:$_" } @untouched), scalar(@untouched),
	'keys of rows not updated are still cached (exact delivery, no fallback)');
is(stat_value($node, 'fallbacks'), '0', 'no fallback was needed');
cmp_ok(stat_value($node, 'retries') + stat_value($node, 'reconnects'), '>', 0, 'the worker retried and reconnected');
note(sprintf('Redis was down %.1f s during the load; %d updated keys checked, %d stale',
	$outage, scalar(@updated), $stale));

# ---- commits with Redis down never wait for it: every commit of a run
# completes and is queued while the worker cannot connect (the latencies are
# noted, not asserted: wall time on a shared machine is not a test).
my ($h, $out) = start_pgbench($update_script, 1, 3);
$h->finish or diag($$out);
my $latency_up = pgbench_latency($out);
$redis->stop('KILL');
my $enqueued_before = stat_value($node, 'transactions_enqueued');
($h, $out) = start_pgbench($update_script, 1, 3);
ok($h->finish, 'pgbench commits with Redis down') or diag($$out);
my ($processed) = $$out =~ /number of transactions actually processed: (\d+)/;
my $latency_down = pgbench_latency($out);
is(stat_value($node, 'transactions_enqueued') - $enqueued_before, $processed,
	"all $processed commits made with Redis down were queued");
is(stat_value($node, 'connected'), 'f', 'while the worker was not connected');
$redis->start;
ok(wait_all_delivered($node, 20), 'delivered after the latency run');
note(sprintf('commit latency: Redis up %.3f ms, Redis down %.3f ms', $latency_up, $latency_down));

# ---- wrong password, then the right one via SIGHUP
my $secure = start_redis('--requirepass', 'right-pw');
$secure->cmd('SET', 'app:kv:1', 'cached');
my $base = "127.0.0.1:$secure->{port}/0";
reload_settings($node, "ALTER SYSTEM SET cachebust.redis_url = 'redis://:wrong-pw\@$base'");
$node->safe_psql('postgres', 'UPDATE kv SET v = v + 1 WHERE id = 1');
ok(wait_until(sub { stat_value($node, 'last_error') =~ /WRONGPASS|invalid password|AUTH/i }, 5), 'authentication failure reported in stats');
unlike(stat_value($node, 'last_error'), qr/wrong-pw/, 'without the password');
is($secure->exists_key('app:kv:1'), 1, 'nothing delivered with the wrong password');
$node->safe_psql('postgres', qq{ALTER SYSTEM SET cachebust.redis_url = 'redis://:right-pw\@$base'; SELECT pg_reload_conf();});
ok(wait_all_delivered($node, 10), 'delivered once the right password was loaded');
is($secure->exists_key('app:kv:1'), 0, 'the key was removed');
unlike(slurp_file($node->logfile), qr/wrong-pw|right-pw/, 'neither password appears in the server log');
$secure->stop;
reload_settings($node, "ALTER SYSTEM SET cachebust.redis_url = '${\ $redis->url }'");

# ---- READONLY replica: retried until the server is writable again
my $dead_port = PostgreSQL::Test::Cluster::get_free_port();
$redis->cmd('SET', 'app:kv:2', 'cached');
$redis->cmd('REPLICAOF', '127.0.0.1', $dead_port);
$node->safe_psql('postgres', 'UPDATE kv SET v = v + 1 WHERE id = 2');
ok(wait_until(sub { stat_value($node, 'last_error') =~ /READONLY/ }, 5), 'READONLY replies reported');
is($redis->exists_key('app:kv:2'), 1, 'a read-only replica deletes nothing');
$redis->cmd('REPLICAOF', 'NO', 'ONE');
ok(wait_all_delivered($node, 10), 'delivered once the server is a primary again');
is($redis->exists_key('app:kv:2'), 0, 'and the key is gone');

# ---- OOM replies (INCR is refused at maxmemory): retried until memory frees up
$node->safe_psql('postgres', q{CREATE TABLE versions (id int); SELECT cachebust.watch('versions', bumps => ARRAY['ver:{id}'])});
$redis->cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
$redis->cmd('CONFIG', 'SET', 'maxmemory', '1');
$node->safe_psql('postgres', 'INSERT INTO versions VALUES (1)');
ok(wait_until(sub { stat_value($node, 'last_error') =~ /OOM/ }, 5), 'OOM replies reported');
$redis->cmd('CONFIG', 'SET', 'maxmemory', '0');
ok(wait_all_delivered($node, 10), 'delivered once Redis accepts writes');
is($redis->cmd('GET', 'app:ver:1'), '1', 'the bump was applied exactly once');

# ---- more than max_pending targets while Redis is unreachable: fallback
reload_settings($node, 'ALTER SYSTEM SET cachebust.max_pending = 100',
	"ALTER SYSTEM SET cachebust.redis_url = 'redis://127.0.0.1:$dead_port/0'");
fill(map { "app:kv:$_" } 1 .. 300);
my $fallbacks_before = stat_value($node, 'fallbacks');
$node->safe_psql('postgres', 'UPDATE kv SET v = v + 1 WHERE id <= 150');
ok(wait_until(sub { slurp_file($node->logfile) =~ /more than cachebust.max_pending/ }, 5), 'the bound was hit and logged');
cmp_ok(stat_value($node, 'pending_targets'), '<=', 100, 'the worker holds no more than max_pending');
$node->safe_psql('postgres', qq{ALTER SYSTEM SET cachebust.redis_url = '${\ $redis->url }'; SELECT pg_reload_conf();});
ok(wait_all_delivered($node, 10), 'delivered after Redis became reachable');
cmp_ok(stat_value($node, 'fallbacks'), '>', $fallbacks_before, 'the fallback ran');
is(count_existing(map { "app:kv:$_" } 1 .. 300), 0, 'it removed every prefixed key');
is($redis->exists_key('outside'), 1, 'and nothing outside key_prefix');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET cachebust.max_pending; SELECT pg_reload_conf();});

# ---- the worker terminated again and again: restarted each time, writes go on
my $fallbacks = stat_value($node, 'fallbacks');
for my $round (1 .. 5)
{
	my $pid = worker_pid($node);
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	$node->safe_psql('postgres', "UPDATE kv SET v = v + 1 WHERE id = 10 + $round");
	ok(wait_until(sub { my $p = worker_pid($node); $p =~ /^\d+$/ && $p != $pid }, 10), "worker restarted after termination $round");
}
$redis->cmd('SET', 'app:kv:20', 'cached');
is($node->safe_psql('postgres', 'UPDATE kv SET v = v + 1 WHERE id = 20; SELECT cachebust.wait_for_delivery(10000)'),
	't', 'delivery works after repeated terminations');
is($redis->exists_key('app:kv:20'), 0, 'and invalidates');
ok(wait_all_delivered($node, 10), 'every commit made between terminations was delivered');
is(stat_value($node, 'fallbacks'), $fallbacks, 'terminations are clean stops: no fallback');
my $restarts = () = slurp_file($node->logfile) =~ /cachebust worker shut down with everything delivered/g;
cmp_ok($restarts, '>=', 5, 'each termination delivered before exiting');

# ---- invalid UTF-8 in column values (a SQL_ASCII database) is delivered byte-exact
$node->safe_psql('postgres', q{CREATE DATABASE bytes ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0});
$node->safe_psql('bytes', q{CREATE EXTENSION cachebust; CREATE TABLE b (k text);
  SELECT cachebust.watch('b', keys => ARRAY['b:{k}'])});
my $odd = "bad\xff\xfe\x80key";
$redis->cmd('SET', "app:b:$odd", 1);
$redis->cmd('SET', 'app:b:badkey', 1);
is($node->safe_psql('bytes', q{INSERT INTO b VALUES (E'bad\\xff\\xfe\\x80key'); SELECT cachebust.wait_for_delivery(5000)}),
	't', 'a key with invalid UTF-8 bytes is delivered');
is($redis->exists_key("app:b:$odd"), 0, 'the exact bytes were removed');
is($redis->exists_key('app:b:badkey'), 1, 'nothing else');

$node->stop;
$redis->stop;
done_testing();
