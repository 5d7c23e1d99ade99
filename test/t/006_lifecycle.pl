# The worker's and the server's life (issue 10): a fast shutdown under
# load, a shutdown that Redis cannot finish, a standby promoted after its
# primary died with undelivered invalidations, and redelete_ms for
# fallbacks; and manual invalidation on a hot standby (issue 11).
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $redis = start_redis();

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

my $node = cachebust_node('lifecycle', $redis, qq{
cachebust.key_prefix = 'app:'
cachebust.debounce_ms = 500
cachebust.queue_size = 64kB
restart_after_crash = on
});
my $rows = 2000;
$node->safe_psql('postgres', qq{
CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO kv SELECT g FROM generate_series(1, $rows) g;
SELECT cachebust.watch('kv', keys => ARRAY['kv:{id}']);
});

# ---- item 5: commits racing a fast shutdown leave nothing stale
fill(map { "app:kv:$_" } 1 .. $rows);
my $script = $node->basedir . '/update.sql';
open(my $fh, '>', $script) or die;
print $fh "\\set id random(1, $rows)\nUPDATE kv SET v = v + 1 WHERE id = :id;\n";
close $fh;
my $bench_out = '';
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', 4, '-j', 4, '-T', 30, '-f', $script, '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$bench_out, '2>', \$bench_out);
ok(wait_until(sub { stat_value($node, 'transactions_enqueued') > 500 }, 20), 'four sessions are committing');
$node->stop('fast');    # while they are
$bench->finish;
$node->start;
ok(wait_all_delivered($node, 20), 'after the restart everything is delivered (or covered)');
my @updated = split /,/, $node->safe_psql('postgres', q{SELECT string_agg(id::text, ',') FROM kv WHERE v > 0});
cmp_ok(scalar(@updated), '>', 100, scalar(@updated) . ' rows were updated');
is(count_existing(map { "app:kv:$_" } @updated), 0, 'no stale key survived the fast shutdown');
my $log = slurp_file($node->logfile);
note($log =~ /undelivered invalidations at shutdown/
	? 'a commit arrived after the last drain: the fallback ran at the start'
	: 'everything was delivered before the shutdown');

# ---- item 5: a worker that cannot record that it runs does not deliver
$node->stop;
my $state_dir = $node->data_dir . '/pg_cachebust';
chmod 0500, $state_dir or die "chmod: $!";
$node->start;
$redis->cmd('SET', 'app:kv:1', 'cached');
is($node->safe_psql('postgres', 'UPDATE kv SET v = v + 1 WHERE id = 1; SELECT cachebust.wait_for_delivery(1000)'), 'f',
	'nothing is delivered while the state file cannot be written');
ok(wait_until(sub { slurp_file($node->logfile) =~ /FATAL:  cachebust worker failed: cachebust worker cannot record its state/ }),
	'the worker stops with FATAL and says why');
is($redis->exists_key('app:kv:1'), 1, 'and did not deliver');
chmod 0700, $state_dir or die "chmod: $!";
ok(wait_until(sub { $redis->exists_key('app:kv:1') == 0 }, 20), 'once the directory is writable again, a new worker delivers');

# ---- item 7: a shutdown Redis cannot finish is bounded all the same
reload_settings($node, 'ALTER SYSTEM SET cachebust.command_timeout_ms = 30000',
	'ALTER SYSTEM SET cachebust.debounce_ms = 0');
fill(map { "app:kv:$_" } 1 .. 10);
# (WRITE: UNLINK waits, the test's own CLIENT UNPAUSE does not.)
$redis->cmd('CLIENT', 'PAUSE', '60000', 'WRITE');
$node->safe_psql('postgres', 'UPDATE kv SET v = v + 1 WHERE id <= 10');
my $offset = -s $node->logfile;
my $started = time;
$node->stop('fast');
my $took = time - $started;
my $stop_log = substr(slurp_file($node->logfile), $offset);
like($stop_log, qr/cachebust worker shutting down with \d+ undelivered targets/,
	'the worker gave up within its shutdown budget instead of waiting for Redis');
unlike($stop_log, qr/no reply within cachebust.command_timeout_ms/, 'long before the 30 s command timeout');
note(sprintf('pg_ctl stop -m fast took %.1f s with Redis paused and command_timeout_ms = 30000', $took));
$redis->cmd('CLIENT', 'UNPAUSE');
$node->start;
ok(wait_until(sub { count_existing(map { "app:kv:$_" } 1 .. 10) == 0 }, 20),
	'the next start covered what the shutdown could not deliver');
like(slurp_file($node->logfile), qr/previous run of the server: it did not end cleanly/, 'by the fallback');
reload_settings($node, 'ALTER SYSTEM RESET cachebust.command_timeout_ms', 'ALTER SYSTEM RESET cachebust.debounce_ms');

# ---- item 11: redelete_ms repeats fallbacks too
reload_settings($node, 'ALTER SYSTEM SET cachebust.redelete_ms = 1500');
# An overflow (one transaction too large for the queue) is covered by the fallback ...
$node->safe_psql('postgres', q{CREATE TABLE wide (id int);
  SELECT cachebust.watch('wide', keys => ARRAY[repeat('w', 4000) || ':{id}'])});
$redis->cmd('SET', 'app:refilled', 'cached');
$node->safe_psql('postgres', 'INSERT INTO wide SELECT g FROM generate_series(1, 100) g');
ok(wait_until(sub { $redis->exists_key('app:refilled') == 0 }, 10), 'the overflow fallback ran');
# ... and a reader that read the old rows writes them back just after it:
$redis->cmd('SET', 'app:refilled', 'stale');
ok(wait_until(sub { $redis->exists_key('app:refilled') == 0 }, 10), 'the repeated fallback removes the refill');

# A crash: the fallback at start is repeated as well.
my $worker = worker_pid($node);
kill 'KILL', $worker;
ok(wait_until(sub { my $p = worker_pid($node); $p =~ /^\d+$/ && $p != $worker }, 30), 'restarted after the crash');
ok(wait_until(sub { slurp_file($node->logfile) =~ /cachebust fallback done/ }, 10), 'the crash fallback ran');
$redis->cmd('SET', 'app:refilled', 'stale again');
ok(wait_until(sub { $redis->exists_key('app:refilled') == 0 }, 10), 'and was repeated against the refill');

# A clean stop with second sends not yet due: kept for the next start.
$redis->cmd('SET', 'app:kv:11', 'cached');
$node->safe_psql('postgres', 'UPDATE kv SET v = v + 1 WHERE id = 11; SELECT cachebust.wait_for_delivery(5000)');
$node->stop('fast');
ok(-s $node->data_dir . '/pg_cachebust/resend', 'the pending second send was saved at the stop');
$redis->cmd('SET', 'app:kv:11', 'refilled while the server was down');
$node->start;
ok(wait_until(sub { $redis->exists_key('app:kv:11') == 0 }, 10), 'and sent at the next start');
ok(!-e $node->data_dir . '/pg_cachebust/resend', 'the file is consumed');
reload_settings($node, 'ALTER SYSTEM RESET cachebust.redelete_ms');
$node->stop;

# ---- item 6: a standby promoted after its primary died with undelivered targets
my $dead = PostgreSQL::Test::Cluster::get_free_port();
my $primary = cachebust_node('primary', $redis, qq{
cachebust.key_prefix = 'fo:'
wal_level = replica
max_wal_senders = 4
});
$primary->safe_psql('postgres', q{CREATE TABLE accounts (id int PRIMARY KEY, balance int);
  SELECT cachebust.watch('accounts', keys => ARRAY['acct:{id}']);
  INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 50) g;
  SELECT cachebust.wait_for_delivery(5000)});
# A copy of the data directory taken while the primary was cleanly stopped says "clean".
$primary->stop;
$primary->backup_fs_cold('cold');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'cold', has_streaming => 1);
$primary->append_conf('postgresql.conf', "cachebust.redis_url = 'redis://127.0.0.1:$dead/0'");
$primary->start;
$standby->start;

# The primary commits; its worker cannot reach Redis.
fill(map { "fo:acct:$_" } 1 .. 50);
is($primary->safe_psql('postgres', 'UPDATE accounts SET balance = balance + 1 WHERE id <= 25;
  SELECT cachebust.wait_for_delivery(500)'), 'f', 'not delivered by the primary');
$primary->wait_for_catchup($standby);

# Issue 11, item 9: a hot standby refuses manual invalidation.
my ($ret, $out, $err) = $standby->psql('postgres', q{SELECT cachebust.invalidate_key('x')});
like($err, qr/cachebust.invalidate_key\(\) cannot run during recovery/, 'manual invalidation on a standby is an ERROR');
like($err, qr/HINT:  Run it on the primary/, 'with a hint');

$primary->stop('immediate');
$standby->promote;
ok(wait_until(sub { count_existing(map { "fo:acct:$_" } 1 .. 25) == 0 }, 20),
	'the promoted standby covered what the old primary never delivered');
# (Its copied configuration names the working Redis: it delivered them as it replayed.)
like(slurp_file($standby->logfile), qr/cachebust worker: this server was promoted; it goes on delivering as a primary/,
	'as the standby that delivered what it replayed, and goes on as a primary');
is(count_existing(map { "fo:acct:$_" } 26 .. 50), 25, 'untouched keys survive: no fallback');
$standby->stop;

done_testing();
