# What survives a restart (issue 21, items 5 and 6): whether the previous
# run of the server ended cleanly (pg_cachebust/state), and the commits no
# fallback covered. Each check compares against keys that must SURVIVE (rows
# nobody touched), so a fallback cannot pass for a clean restart.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $redis = start_redis();

my $node = cachebust_node('state', $redis, qq{
cachebust.key_prefix = 'app:'
restart_after_crash = on
});
$node->safe_psql('postgres', q{
CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO kv SELECT g FROM generate_series(1, 10) g;
SELECT cachebust.watch('kv', keys => ARRAY['kv:{id}']);
});
my $state_file = $node->data_dir . '/pg_cachebust/state';

# Commits a change to row $id, waits for its delivery; true when delivered.
sub deliver_one
{
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"UPDATE kv SET v = v + 1 WHERE id = $id; SELECT cachebust.wait_for_delivery(10000)") eq 't';
}

# Starts the node and waits until its worker has handled the previous run:
# a commit delivered after start() proves any fallback of start() is done
# (the fallback holds back every later commit until it is).
sub start_and_settle
{
	my $offset = -s $node->logfile;
	$node->start;
	ok(deliver_one(1), 'the worker delivers after the start');
	return substr(slurp_file($node->logfile), $offset);
}

sub server_accepts
{
	return (eval { $node->safe_psql('postgres', 'SELECT 1') } // '') eq '1';
}

# ---- item 6: after a crash restart, a clean stop is still recorded as clean
my $offset = -s $node->logfile;
my $bg = $node->background_psql('postgres', on_error_stop => 0);
my $backend = $bg->query_safe('SELECT pg_backend_pid()');
kill 'KILL', $backend;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
ok(wait_until(\&server_accepts, 30), 'the server accepts connections after the crash restart');
$node->wait_for_log(qr/cachebust fallback done/, $offset);
eval { $bg->quit };
$redis->cmd('SET', 'app:untouched', 'cached');
ok(deliver_one(2), 'everything delivered after the crash restart');
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(5000)'), 't', 'barrier() says so');
$node->stop('fast');
my $log = start_and_settle();
is($redis->exists_key('app:untouched'), 1, 'the clean stop after a crash restart kept the cache');
is(stat_value($node, 'fallbacks'), '0', 'no fallback at the start');
unlike($log, qr/cachebust fallback \(\w+\) started/, 'none logged');

# ---- item 6: a server that stops before its worker ever ran is not taken for clean
$node->append_conf('postgresql.conf', "max_worker_processes = 0\n");
$node->restart;
$redis->cmd('SET', 'app:kv:3', 'cached');
$node->safe_psql('postgres', 'UPDATE kv SET v = v + 1 WHERE id = 3');
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(200)'), 'f', 'no worker: nothing delivered');
$node->stop('immediate');
$node->append_conf('postgresql.conf', "max_worker_processes = 8\n");
$log = start_and_settle();
is($redis->exists_key('app:kv:3'), 0, 'the commit of a run without a worker is covered at the next start');
like($log, qr/cachebust fallback \(prefix\) started: the previous run of the server: it did not end cleanly/,
	'by the fallback');

# The same with a clean stop: the commit was never delivered.
$node->append_conf('postgresql.conf', "max_worker_processes = 0\n");
$node->restart;
$redis->cmd('SET', 'app:kv:4', 'cached');
$node->safe_psql('postgres', 'UPDATE kv SET v = v + 1 WHERE id = 4');
$node->stop('fast');
$node->append_conf('postgresql.conf', "max_worker_processes = 8\n");
$log = start_and_settle();
is($redis->exists_key('app:kv:4'), 0, 'a clean stop without a worker is not clean either');

# A run without a worker and without commits (a standby, say) keeps what the file said.
$node->stop('fast');
$node->append_conf('postgresql.conf', "max_worker_processes = 0\n");
$node->start;
$node->stop('fast');
$node->append_conf('postgresql.conf', "max_worker_processes = 8\n");
$redis->cmd('SET', 'app:untouched', 'cached');
$log = start_and_settle();
is($redis->exists_key('app:untouched'), 1, 'a run without commits and without a worker keeps "clean"');

# ---- item 6: an unreadable state file is unclean, and a WARNING says so
$node->stop('fast');
chmod 0000, $state_file or die "chmod: $!";
$redis->cmd('SET', 'app:untouched', 'cached');
$log = start_and_settle();
like($log, qr/WARNING:  could not read cachebust state file "pg_cachebust\/state": Permission denied/,
	'an unreadable state file is named in a WARNING, with the reason');
is($redis->exists_key('app:untouched'), 0, 'and taken for an unclean stop: the fallback ran');

# Garbage in it: the same.
$node->stop('fast');
open(my $fh, '>', $state_file) or die;
print $fh "\x00\x01garbage";
close $fh;
$redis->cmd('SET', 'app:untouched', 'cached');
$log = start_and_settle();
like($log, qr/WARNING:  cachebust state file "pg_cachebust\/state" is damaged/, 'a damaged state file: WARNING');
is($redis->exists_key('app:untouched'), 0, 'and the fallback');

# No file at all: the first start with cachebust, clean.
$node->stop('fast');
unlink $state_file or die "unlink: $!";
$redis->cmd('SET', 'app:untouched', 'cached');
$log = start_and_settle();
is($redis->exists_key('app:untouched'), 1, 'no state file: a first start, nothing removed');
is(stat_value($node, 'fallbacks'), '0', 'no fallback');
unlike($log, qr/WARNING:  .*cachebust state file/, 'and no WARNING');
ok(-f $state_file, 'the state file is written at the start');
$node->stop;

# ---- item 5: uncovered commits survive a restart of the worker and of the server
my $bare = cachebust_node('bare', $redis, "cachebust.queue_size = 64kB\ncachebust.redis_url = '" . $redis->url(1) . "'");
$bare->safe_psql('postgres', q{CREATE TABLE items (id int, body text);
  SELECT cachebust.watch('items', keys => ARRAY['bare:{id}:{body}'])});
is($bare->safe_psql('postgres', q{INSERT INTO items SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g;
  SELECT cachebust.barrier(2000)}), 'f', 'an overflow the prefix fallback refused (key_prefix is empty) is uncovered');
cmp_ok(stat_value($bare, 'uncovered_batches'), '>', 0, 'stats count it');

my $old_worker = worker_pid($bare);
$bare->safe_psql('postgres', "SELECT pg_terminate_backend($old_worker)");
ok(wait_until(sub { my $p = worker_pid($bare); $p =~ /^\d+$/ && $p != $old_worker }, 30), 'a new worker started');
# Once a commit after it is delivered, the new worker has published its progress.
is($bare->safe_psql('postgres', q{INSERT INTO items VALUES (1, 'small'); SELECT cachebust.wait_for_delivery(10000)}),
	't', 'the new worker delivers');
is($bare->safe_psql('postgres', 'SELECT cachebust.barrier(1000)'), 'f',
	'the uncovered commit is still not reported delivered after the worker restarted');
cmp_ok(stat_value($bare, 'uncovered_batches'), '>', 0, 'stats still count it');

# A clean stop of the server: the next run does not take it for covered either.
$bare->restart;
ok(wait_until(sub { stat_value($bare, 'uncovered_batches') > 0 }, 20),
	'after a clean server restart the commit is still uncovered');
is($bare->safe_psql('postgres', 'SELECT cachebust.barrier(1000)'), 'f', 'so barrier() says false');

# A fallback that can cover it: retried, covered.
$redis->cmd('SELECT', 1);
$redis->cmd('SET', 'bare:innocent', 'cached');
reload_settings($bare, q{ALTER SYSTEM SET cachebust.fallback = 'flushdb'});
is($bare->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'covered once cachebust.fallback = flushdb');
is(stat_value($bare, 'uncovered_batches'), '0', 'nothing uncovered any more');
is($redis->exists_key('bare:innocent'), 0, 'by FLUSHDB');
$redis->cmd('SELECT', 0);

# Uncovered while the worker is down, coverable when the new one starts: covered at once.
reload_settings($bare, q{ALTER SYSTEM SET cachebust.fallback = 'prefix'});
is($bare->safe_psql('postgres', q{INSERT INTO items SELECT g, repeat('y', 200) FROM generate_series(1, 2000) g;
  SELECT cachebust.barrier(2000)}), 'f', 'another uncovered overflow');
$old_worker = worker_pid($bare);
$bare->safe_psql('postgres', "SELECT pg_terminate_backend($old_worker)");
# (The reload once the old worker is gone: it must not be the one to retry.)
ok(wait_until(sub { worker_pid($bare) eq '' }, 30), 'the worker is gone');
$bare->safe_psql('postgres', q{ALTER SYSTEM SET cachebust.fallback = 'flushdb'; SELECT pg_reload_conf()});
ok(wait_until(sub { my $p = worker_pid($bare); $p =~ /^\d+$/ && $p != $old_worker }, 30), 'a new worker started');
is($bare->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't',
	'a new worker whose fallback can cover the commit covers it');
$bare->stop;

done_testing();
