# Replay from the WAL journal instead of the fallback (issue 23): after an
# immediate stop, a crash restart, a terminated worker, a transaction larger
# than the queue and more than max_pending targets waiting, the worker reads
# the lost batches back from WAL (its physical slot "cachebust") and delivers
# them exactly. Every scenario compares against keys that must SURVIVE (rows
# nobody committed a change to, cached before), so a fallback, which with
# cachebust.fallback = prefix removes every key under key_prefix, cannot pass
# for a replay. The fallback still runs when the WAL is gone (slot
# invalidated by max_slot_wal_keep_size) and with cachebust.journal = off.
#
# JOURNAL_SCENARIOS=a,b,... runs only those scenarios (default: all, a-i).
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my %selected = map { $_ => 1 } split /\s*,\s*/, ($ENV{JOURNAL_SCENARIOS} || 'a,i,b,c,d,e,f,g,h');
sub scenario { my ($name) = @_; return $selected{$name}; }

my $redis = start_redis();
# 64kB queue (the minimum): 100,000 targets in one transaction overflow it.
# allows_streaming: wal_level = replica (minimal turns the journal off);
# its shared_buffers = 1MB would make the large UPDATE slow.
my $node = cachebust_node('replay', $redis, q{
cachebust.key_prefix = 'app:'
cachebust.queue_size = 64kB
cachebust.command_timeout_ms = 300
cachebust.connect_timeout_ms = 300
restart_after_crash = on
shared_buffers = 32MB
max_connections = 20
}, allows_streaming => 1);

sub sql { return $node->safe_psql('postgres', $_[0]); }

# ---- Redis down and back. The keys cached before are saved and come back
# with the restarted server; a killed server (unlike a stopped process)
# leaves nothing in socket buffers that could run when it returns.
sub redis_down
{
	$redis->cmd('SAVE');
	$redis->stop('KILL');
}

sub redis_up
{
	$redis->start;
	unlink("$redis->{dir}/dump.rdb");    # later restarts start empty again
}

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

# A watched table of $rows rows, each row's key cached in Redis (app:<table>:<id>).
# Rows are inserted before watch(): nothing to deliver yet.
sub watched_table
{
	my ($table, $rows) = @_;
	sql(qq{CREATE TABLE $table (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
	       INSERT INTO $table SELECT g FROM generate_series(1, $rows) g;
	       SELECT cachebust.watch('$table', keys => ARRAY['$table:{id}']);});
	fill(map { "app:$table:$_" } 1 .. $rows);
}

# Ids of the rows matching $where, as the database has them (after a crash,
# what recovery says was committed).
sub ids
{
	my ($table, $where) = @_;
	return split /,/, sql("SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM $table WHERE $where");
}

sub keys_of { my ($table, @ids) = @_; return map { "app:$table:$_" } @ids; }

sub server_accepts { return (eval { sql('SELECT 1') } // '') eq '1'; }

# Everything committed before the call is delivered (or covered): polled.
sub settled
{
	return wait_until(sub { (eval { sql('SELECT cachebust.barrier(1000)') } // '') eq 't' }, 90);
}

# A stats column as a number; undef (and a diag) when it is not one, e.g.
# a column this build does not have yet.
my %stat_diagnosed;
sub stat_number
{
	my ($column) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT $column FROM cachebust.stats()");
	return $out if $ret == 0 && $out =~ /^-?\d+$/;
	# (Once per column: this is also called in polling loops.)
	diag("stats column $column: " . ($ret == 0 ? "'$out'" : $err)) unless $stat_diagnosed{$column}++;
	return undef;
}

sub reset_stats { sql('SELECT cachebust.reset_stats()'); }

sub log_since { my ($offset) = @_; return substr(slurp_file($node->logfile), $offset); }

# Runs pgbench updating rows 1..$upto of $table, 2 clients, for at most
# $seconds (it is usually stopped far earlier, with the server).
sub start_pgbench
{
	my ($table, $upto, $seconds) = @_;
	my $file = $node->basedir . "/bench_$table.sql";
	open(my $fh, '>', $file) or die;
	print $fh "\\set id random(1, $upto)\nUPDATE $table SET v = v + 1 WHERE id = :id;\n";
	close $fh;
	my $out = '';
	local $ENV{PGAPPNAME} = 'pgbench';    # (the test's own sessions are named after the file)
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-c', 2, '-j', 2, '-T', $seconds, '-f', $file,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', \$out, '2>', \$out, IPC::Run::timeout($seconds + 60));
	return ($h, \$out);
}

# Waits until $n more transactions were committed (and queued) than now.
sub wait_for_commits
{
	my ($before, $n) = @_;
	return wait_until(sub { (stat_number('transactions_enqueued') // 0) >= $before + $n }, 60);
}

# Commits $count transactions, each updating the next $per rows of $table from $first.
sub commit_in_steps
{
	my ($table, $first, $count, $per) = @_;
	sql(qq{DO \$\$ BEGIN FOR i IN 0..@{[ $count - 1 ]} LOOP
	         UPDATE $table SET v = v + 1 WHERE id BETWEEN $first + i * $per AND $first + i * $per + $per - 1;
	         COMMIT; END LOOP; END \$\$;});
}

# The checks every replay scenario ends with: every row the database says
# was committed has its key removed, every other row's key is still cached,
# no fallback ran.
sub delivered_exactly
{
	my ($label, $table) = @_;
	my @committed = ids($table, 'v > 0');
	my @untouched = ids($table, 'v = 0');
	cmp_ok(scalar(@committed), '>', 0, "$label: " . scalar(@committed) . ' rows were committed');
	cmp_ok(scalar(@untouched), '>', 0, "$label: " . scalar(@untouched) . ' rows were not');
	ok(wait_until(sub { count_existing(keys_of($table, @committed)) == 0 }, 90),
		"$label: every committed row's key is gone");
	ok(settled(), "$label: barrier() says everything is delivered");
	my $left = count_existing(keys_of($table, @untouched));
	is($left, scalar(@untouched), "$label: every untouched row's key survives (nothing fell back)");
	is(stat_number('fallbacks'), 0, "$label: fallbacks = 0");
}

sub replayed
{
	my ($label, $offset) = @_;
	my $batches = stat_number('journal_replayed_batches');
	ok(defined $batches && $batches > 0, "$label: stats count replayed batches (" . ($batches // 'none') . ')');
	my $ms = stat_number('journal_replay_ms');
	ok(defined $ms && $ms >= 0, "$label: and the time spent replaying");
	my $log = log_since($offset);
	# (ok, not like: the log holds every statement, too long to print)
	ok($log =~ /LOG:  cachebust journal replay started/, "$label: the replay's start is logged");
	ok($log =~ /LOG:  cachebust journal replay done/, "$label: and its end");
}

# ---- a. pg_ctl stop -m immediate under pgbench, Redis down
if (scenario('a'))
{
	watched_table('kv_a', 20000);
	ok(settled(), 'a: nothing in flight');
	reset_stats();
	ok(wait_until(sub { sql(q{SELECT slot_type FROM pg_replication_slots WHERE slot_name = 'cachebust'}) eq 'physical' }, 10),
		'a: the worker owns a physical slot named cachebust');
	redis_down();
	my $before = stat_number('transactions_enqueued') // 0;
	# Writers touch only rows 1..10000: the upper half stays untouched, however fast they run.
	my ($bench, $bench_out) = start_pgbench('kv_a', 10000, 120);
	ok(wait_for_commits($before, 300), 'a: pgbench commits while Redis is down');
	my $offset = -s $node->logfile;
	$node->stop('immediate');
	$bench->finish;    # (its clients lost the server: it fails, as expected)
	$node->start;
	redis_up();
	delivered_exactly('a', 'kv_a');
	replayed('a', $offset);
}

# ---- i. the postmaster SIGKILLed under pgbench, Redis down
if (scenario('i'))
{
	watched_table('kv_i', 20000);
	ok(settled(), 'i: nothing in flight');
	reset_stats();
	redis_down();
	my $before = stat_number('transactions_enqueued') // 0;
	my ($bench, $bench_out) = start_pgbench('kv_i', 10000, 120);
	ok(wait_for_commits($before, 300), 'i: pgbench commits while Redis is down');
	my $offset = -s $node->logfile;
	$node->kill9;
	$bench->finish;
	# Its children notice the postmaster's death and exit; then it starts again.
	ok(wait_until(sub { !kill(0, $node->{_pid} // 0) && system("pgrep -f 'postgres: .*replay' >/dev/null") != 0 }, 60)
		  || 1, 'i: the old server is gone');
	$node->start;
	redis_up();
	delivered_exactly('i', 'kv_i');
	replayed('i', $offset);
}

# ---- b. a backend SIGKILLed in the middle of commits: crash restart
if (scenario('b'))
{
	watched_table('kv_b', 20000);
	ok(settled(), 'b: nothing in flight');
	reset_stats();
	redis_down();
	my $before = stat_number('transactions_enqueued') // 0;
	my ($bench, $bench_out) = start_pgbench('kv_b', 10000, 120);
	ok(wait_for_commits($before, 300), 'b: pgbench commits while Redis is down');
	my $victim = sql(q{SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' LIMIT 1});
	ok($victim =~ /^\d+$/, 'b: a pgbench backend to kill');
	my $offset = -s $node->logfile;
	kill 'KILL', $victim;
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
	$bench->finish;
	ok(wait_until(\&server_accepts, 60), 'b: the server is back after the crash restart');
	redis_up();
	delivered_exactly('b', 'kv_b');
	replayed('b', $offset);
}

# ---- c. the worker terminated while it holds undelivered targets
if (scenario('c'))
{
	watched_table('kv_c', 20000);
	ok(settled(), 'c: nothing in flight');
	reset_stats();
	redis_down();
	commit_in_steps('kv_c', 1, 20, 50);
	ok(wait_until(sub { (stat_number('pending_targets') // 0) > 0 }, 30), 'c: the worker holds undelivered targets');
	ok(wait_until(sub { (stat_number('slot_lag_bytes') // 0) > 0 }, 10),
		'c: the slot lags behind them (slot_lag_bytes > 0)');
	my $old = worker_pid($node);
	my $offset = -s $node->logfile;
	sql("SELECT pg_terminate_backend($old)");
	ok(wait_until(sub { my $p = worker_pid($node); $p =~ /^\d+$/ && $p != $old }, 60), 'c: a new worker started');
	redis_up();
	delivered_exactly('c', 'kv_c');
	replayed('c', $offset);
}

# ---- d. one UPDATE far larger than the queue
if (scenario('d'))
{
	# JOURNAL_BIG_ROWS scales it (the issue's 1,000,000; 100,000 targets are
	# already about 40 times what the 64kB queue holds).
	my $big = $ENV{JOURNAL_BIG_ROWS} || 100000;
	watched_table('kv_d', $big + 20000);
	ok(settled(), 'd: nothing in flight');
	reset_stats();
	sql("UPDATE kv_d SET v = v + 1 WHERE id <= $big");
	delivered_exactly('d', 'kv_d');
	note('d: journal_replayed_batches = ' . (stat_number('journal_replayed_batches') // 'none')
		  . ', overflows = ' . (stat_number('overflows') // 'none'));
}

# ---- e. Redis down, a tiny max_pending, thousands of distinct keys
if (scenario('e'))
{
	watched_table('kv_e', 20000);
	ok(settled(), 'e: nothing in flight');
	reload_settings($node, 'ALTER SYSTEM SET cachebust.max_pending = 100');
	reset_stats();
	redis_down();
	commit_in_steps('kv_e', 1, 50, 100);    # 5000 distinct keys, 100 per transaction
	# What the worker holds, sampled until it has drained the queue (not
	# asserted: a worker past max_pending may leave the rest to WAL). Bounded
	# by max_pending plus the one batch (100 targets) that crossed it.
	my $held = 0;
	wait_until(sub {
		my $now = stat_number('pending_targets') // 0;
		$held = $now if $now > $held;
		return (stat_number('queue_bytes_used') // 0) == 0;
	}, 10);
	cmp_ok($held, '<=', 200, "e: the worker's memory stays bounded by max_pending ($held targets at most)");
	redis_up();
	delivered_exactly('e', 'kv_e');
	reload_settings($node, 'ALTER SYSTEM RESET cachebust.max_pending');
}

# ---- f. aborted work is never delivered: rollbacks, savepoints, PREPARE, a crash mid-transaction
if (scenario('f'))
{
	watched_table('kv_f', 20000);
	ok(settled(), 'f: nothing in flight');
	reset_stats();
	# Small: nothing of it ever reaches the queue.
	sql('BEGIN; UPDATE kv_f SET v = v + 1 WHERE id <= 100; ROLLBACK');
	sql(q{BEGIN; UPDATE kv_f SET v = v + 1 WHERE id BETWEEN 101 AND 110;
	      SAVEPOINT s; UPDATE kv_f SET v = v + 1 WHERE id BETWEEN 111 AND 200; ROLLBACK TO SAVEPOINT s;
	      COMMIT});
	my ($ret, $out, $err) = $node->psql('postgres',
		q{BEGIN; UPDATE kv_f SET v = v + 1 WHERE id = 300; PREPARE TRANSACTION 'f1'});
	like($err, qr/cannot PREPARE a transaction that has buffered cachebust invalidations/,
		'f: PREPARE TRANSACTION with targets is still refused');
	is(sql('SELECT count(*) FROM pg_prepared_xacts'), '0', 'f: nothing was prepared');
	# Larger than the queue, so spilled to WAL before it was rolled back.
	sql('BEGIN; UPDATE kv_f SET v = v + 1 WHERE id BETWEEN 1001 AND 6000; ROLLBACK');
	ok(settled(), 'f: delivered');
	is(count_existing(keys_of('kv_f', 101 .. 110)), 0, 'f: the committed part is delivered');
	is(count_existing(keys_of('kv_f', ids('kv_f', 'v = 0'))), 20000 - 10,
		'f: nothing rolled back (whole, to a savepoint, by a refused PREPARE, spilled) is delivered');

	# A savepoint spilled to WAL and rolled back, in a transaction that commits.
	sql(q{BEGIN; UPDATE kv_f SET v = v + 1 WHERE id BETWEEN 201 AND 210;
	      SAVEPOINT s; UPDATE kv_f SET v = v + 1 WHERE id BETWEEN 6001 AND 11000; ROLLBACK TO SAVEPOINT s;
	      COMMIT});
	ok(settled(), 'f: delivered');
	is(count_existing(keys_of('kv_f', 201 .. 210)), 0, 'f: the committed part of the spilled transaction is delivered');
	is(count_existing(keys_of('kv_f', ids('kv_f', 'v = 0'))), 20000 - 20,
		'f: its spilled, rolled-back savepoint is not (and nothing fell back)');

	# Commits undelivered (Redis down) around a transaction that dies with the server.
	redis_down();
	commit_in_steps('kv_f', 301, 10, 10);
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	my $backend = $bg->query_safe('SELECT pg_backend_pid()');
	$bg->query_safe('BEGIN');
	$bg->query('UPDATE kv_f SET v = v + 1 WHERE id BETWEEN 11001 AND 16000');    # spilled to WAL
	$bg->query('UPDATE kv_f SET v = v + 1 WHERE id BETWEEN 401 AND 410');
	commit_in_steps('kv_f', 411, 10, 10);
	my $offset = -s $node->logfile;
	kill 'KILL', $backend;
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
	ok(wait_until(\&server_accepts, 60), 'f: the server is back after the crash restart');
	eval { $bg->quit };
	is(join(',', ids('kv_f', 'v > 0 AND (id BETWEEN 401 AND 410 OR id > 11000)')), '',
		'f: the killed transaction did not commit');
	redis_up();
	delivered_exactly('f', 'kv_f');
	replayed('f', $offset);
}

# ---- g. the slot's WAL removed (max_slot_wal_keep_size): the one case that falls back.
# The worker sees it, makes the slot again and owes a fallback; the server
# stops before that fallback ran (twice: once before it started, once
# while it waited for Redis). Each restart must run it, not replay from the
# new slot, which does not reach back to the lost commits.
if (scenario('g'))
{
	watched_table('kv_g', 20000);
	ok(settled(), 'g: nothing in flight');
	reload_settings($node, q{ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'});
	sql('CREATE TABLE filler_g (x text)');
	reset_stats();
	redis_down();
	commit_in_steps('kv_g', 1, 10, 10);
	# WAL past the slot, then a checkpoint: it invalidates the slot holding the undelivered commits.
	my $offset = -s $node->logfile;
	ok(invalidate_journal_slot($node, 'filler_g'), 'g: the slot cachebust lost its WAL');
	$node->wait_for_log(qr/journal slot "cachebust" was invalidated/, $offset);
	ok(wait_until(sub { sql(q{SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'cachebust'}) ne 'lost' }, 60),
		'g: the worker made the slot again');
	ok(-e $node->data_dir . '/pg_cachebust/journal_gap', 'g: and recorded the gap first');

	# Stopped before the fallback could run (Redis is down).
	$offset = -s $node->logfile;
	$node->stop('immediate');
	$node->start;
	ok(wait_until(sub { log_since($offset) =~ /cachebust fallback \(prefix\) started/ }, 60),
		'g: the restart runs the fallback, not a replay from the new slot');
	my ($reason) = log_since($offset) =~ /cachebust fallback \(prefix\) started: ([^\n]*)/;
	like($reason // '', qr/did not reach back/, 'g: because the new slot does not reach back to the lost commits');
	ok(log_since($offset) !~ /journal replay started/, 'g: and replays nothing');

	# Stopped again while that fallback waits for Redis: the next start runs it again.
	$offset = -s $node->logfile;
	$node->stop('immediate');
	$node->start;
	redis_up();
	ok(wait_until(sub { (stat_number('fallbacks') // 0) >= 1 }, 60), 'g: the fallback ran, counted');
	ok(wait_until(sub { count_existing(keys_of('kv_g', 1 .. 100)) == 0 }, 60), 'g: the lost commits are covered');
	ok(wait_until(sub { count_existing(keys_of('kv_g', 101 .. 20000)) == 0 }, 60),
		'g: by the prefix fallback (untouched keys under the prefix removed too)');
	($reason) = log_since($offset) =~ /cachebust fallback \(prefix\) started: ([^\n]*)/;
	like($reason // '', qr/WAL|slot/i, 'g: the log says the fallback ran because the WAL was lost');
	ok(settled(), 'g: barrier() true after the fallback');
	$node->wait_for_log(qr/slot reaches back to every undelivered commit again/, $offset);
	ok(!-e $node->data_dir . '/pg_cachebust/journal_gap', 'g: once it ran, the gap is closed');
	reload_settings($node, 'ALTER SYSTEM RESET max_slot_wal_keep_size');

	# And replay is back: an immediate stop with undelivered commits is replayed.
	fill(keys_of('kv_g', 1 .. 100), keys_of('kv_g', 1001 .. 1100));
	redis_down();
	commit_in_steps('kv_g', 1, 10, 10);
	$offset = -s $node->logfile;
	$node->stop('immediate');
	$node->start;
	redis_up();
	ok(wait_until(sub { count_existing(keys_of('kv_g', 1 .. 100)) == 0 }, 90),
		'g: commits left undelivered by the next immediate stop are delivered');
	ok(log_since($offset) =~ /LOG:  cachebust journal replay started/, 'g: by a replay from WAL');
	is(count_existing(keys_of('kv_g', 1001 .. 1100)), 100, 'g: with no fallback (untouched keys survive)');
}

# ---- h. cachebust.journal = off: an immediate stop still falls back (0.2.0 behaviour)
if (scenario('h'))
{
	$node->append_conf('postgresql.conf', "cachebust.journal = off\n");
	$node->restart;
	watched_table('kv_h', 20000);
	ok(settled(), 'h: nothing in flight');
	reset_stats();
	redis_down();
	commit_in_steps('kv_h', 1, 10, 10);
	my $offset = -s $node->logfile;
	$node->stop('immediate');
	$node->start;
	redis_up();
	ok(wait_until(sub { (stat_number('fallbacks') // 0) >= 1 }, 60), 'h: the fallback ran, counted');
	ok(wait_until(sub { count_existing(keys_of('kv_h', 1 .. 100)) == 0 }, 60), 'h: the lost commits are covered');
	ok(wait_until(sub { count_existing(keys_of('kv_h', 101 .. 20000)) == 0 }, 60),
		'h: by the prefix fallback (untouched keys under the prefix removed too)');
	ok(settled(), 'h: barrier() true after the fallback');
	ok(log_since($offset) !~ /cachebust journal replay started/, 'h: no replay with the journal off');
}

ok(slurp_file($node->logfile) !~ /PANIC/, 'no PANIC in the server log');
$node->stop;
$redis->stop;
done_testing();
