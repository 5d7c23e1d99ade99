# Delivery: committed changes remove exactly the right Redis keys.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $redis = start_redis();
my $node = cachebust_node('delivery', $redis);

$node->safe_psql('postgres', q{
CREATE TABLE users (id int PRIMARY KEY, team_id int, name text);
SELECT cachebust.watch('users', keys => ARRAY['user:{id}'], tags => ARRAY['team:{team_id}']);
INSERT INTO users SELECT g, g % 3, 'u' || g FROM generate_series(1, 10) g;
SELECT cachebust.flush();
});

# watch() captures per statement, or per row when the suite runs that way.
my $capture = ($ENV{CACHEBUST_WATCH_CAPTURE} // '') eq 'row' ? 'row' : 'statement';
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT CASE WHEN tgtype & 1 = 1 THEN 'row' ELSE 'statement' END, ',')
                                  FROM pg_trigger WHERE tgrelid = 'users'::regclass AND tgname NOT LIKE '%_truncate'}),
	$capture, "watch() made $capture triggers");

# Fills keys, runs $sql then waits for delivery; returns wait_for_delivery's answer.
sub commit_and_wait
{
	my ($sql) = @_;
	my $out = $node->safe_psql('postgres', "$sql; SELECT cachebust.wait_for_delivery(5000);");
	return (split /\n/, $out)[-1];
}

# ---- committed change: keys gone, unrelated keys untouched
$redis->cmd('SET', "user:$_", 'cached') for 1 .. 5;
$redis->cmd('SET', 'unrelated', 'x');
is(commit_and_wait(q{UPDATE users SET name = 'changed' WHERE id = 1}), 't', 'wait_for_delivery is true after commit');
is($redis->exists_key('user:1'), 0, 'updated row key removed');
is($redis->exists_key('user:2'), 1, 'other row key untouched');
is($redis->exists_key('unrelated'), 1, 'unrelated key untouched');

# ---- wait_for_delivery() waits for this connection's commits only: after
# it returned true, or on a connection that did not write (a pool, a pooler
# in transaction mode), it has nothing to wait for and says so.
my ($stdout, $stderr) = ('', '');
$node->psql('postgres', q{UPDATE users SET name = 'once' WHERE id = 1;
SELECT 'first: ' || cachebust.wait_for_delivery(5000);
SELECT 'again: ' || cachebust.wait_for_delivery(0);}, stdout => \$stdout, stderr => \$stderr, on_error_die => 1);
is($stdout, "first: true\nagain: true", 'both calls answer true');
my @notices = $stderr =~ /NOTICE:  (.*)/g;
is_deeply(\@notices, ['wait_for_delivery(): this session has committed no invalidation to wait for'],
	'the second call, with nothing left to wait for, raises the NOTICE; the first does not');
like($stderr, qr/HINT:  .*call cachebust\.barrier\(\)/, 'and its hint points to barrier()');

# ---- rollback and rollback to savepoint leave keys alone
$redis->cmd('SET', "user:$_", 'cached') for 1 .. 5;
$node->safe_psql('postgres', q{
BEGIN; UPDATE users SET name = 'x' WHERE id = 2; ROLLBACK;
BEGIN; UPDATE users SET name = 'y' WHERE id = 3;
  SAVEPOINT s; UPDATE users SET name = 'z' WHERE id = 4; ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT cachebust.flush();
});
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(5000)'), 't', 'everything committed before is delivered');
is($redis->exists_key('user:2'), 1, 'rolled back change does not invalidate');
is($redis->exists_key('user:3'), 0, 'committed part of the transaction invalidates');
is($redis->exists_key('user:4'), 1, 'rolled back savepoint does not invalidate');

# ---- tags: members and the set removed; nested and cyclic sets
$redis->cmd('SET', 'member:a', 1);
$redis->cmd('SET', 'member:b', 1);
$redis->cmd('SADD', 'tag:team:1', 'member:a', 'member:b');
$redis->cmd('SET', 'nested:leaf', 1);
$redis->cmd('SADD', 'tag:team:2', 'tag:inner');
$redis->cmd('SADD', 'tag:inner', 'nested:leaf');
$redis->cmd('SADD', 'tag:cycle1', 'tag:cycle2', 'cyc:a');
$redis->cmd('SADD', 'tag:cycle2', 'tag:cycle1', 'cyc:b');
$redis->cmd('SET', 'cyc:a', 1);
$redis->cmd('SET', 'cyc:b', 1);
is(commit_and_wait(q{UPDATE users SET name = 'n' WHERE id IN (1, 2);
                     SELECT cachebust.invalidate_tag('cycle1')}), 't', 'tag batch delivered');
is($redis->exists_key('member:a') + $redis->exists_key('member:b'), 0, 'tag members removed');
is($redis->exists_key('tag:team:1'), 0, 'tag set removed');
is($redis->exists_key('nested:leaf'), 0, 'nested tag member removed');
is($redis->exists_key('tag:inner'), 0, 'nested tag set removed');
is($redis->exists_key('cyc:a') + $redis->exists_key('cyc:b'), 0, 'cyclic tag sets expanded once each');
is($redis->exists_key('tag:cycle1') + $redis->exists_key('tag:cycle2'), 0, 'cyclic tag sets removed');

# ---- pattern and bump
$redis->cmd('SET', 'search:1:a', 1);
$redis->cmd('SET', 'search:2:b', 1);
$redis->cmd('SET', 'searchx', 1);
$redis->cmd('SET', 'ver', 41);
is(commit_and_wait(q{SELECT cachebust.invalidate_pattern('search:*'), cachebust.bump('ver')}), 't', 'pattern and bump delivered');
is($redis->exists_key('search:1:a') + $redis->exists_key('search:2:b'), 0, 'pattern matches removed');
is($redis->exists_key('searchx'), 1, 'non-matching key kept');
is($redis->cmd('GET', 'ver'), '42', 'bump incremented');

# ---- binary keys: spaces, CR/LF, quotes, no command injection
$node->safe_psql('postgres', q{CREATE TABLE odd (k text); SELECT cachebust.watch('odd', keys => ARRAY['odd:{k}'])});
my @odd = ("a b", "line\r\nFLUSHALL\r\n", q{"quoted" 'single'}, "tab\there", "*star");
$redis->cmd('SET', "odd:$_", 1) for @odd;
$redis->cmd('SET', 'odd:a', 1);
$redis->cmd('SET', 'odd:b', 1);
my $values = join(', ', map { my $v = $_; $v =~ s/'/''/g; "(E'" . ($v =~ s/\r/\\r/gr =~ s/\n/\\n/gr =~ s/\t/\\t/gr) . "')" } @odd);
is(commit_and_wait("INSERT INTO odd VALUES $values"), 't', 'odd keys delivered');
is($redis->exists_key("odd:$_"), 0, "key " . ($_ =~ s/\r\n/\\r\\n/gr) . " removed exactly") for @odd;
is($redis->exists_key('odd:a') + $redis->exists_key('odd:b'), 2, 'a key with a space does not remove its parts');
is($redis->exists_key('unrelated'), 1, 'no injected command ran');

# ---- coalescing: hundreds of commits of one row inside one window
# An hour-long window stays open until flush(), however slowly the 300
# commits arrive: the two targets they repeat (user:5 and tag team:2) must
# go out as one UNLINK and one EVALSHA.
reload_settings($node, 'ALTER SYSTEM SET cachebust.debounce_ms = 3600000');
$redis->cmd('CONFIG', 'RESETSTAT');
$node->safe_psql('postgres', 'SELECT cachebust.reset_stats()');
my $script = join('', map { "UPDATE users SET name = 'c$_' WHERE id = 5;\n" } 1 .. 300);
# 300 autocommit transactions; wait_for_delivery covers what this session committed.
my @answers = split /\n/, $node->safe_psql('postgres', $script . q{
SELECT 'before flush: ' || cachebust.wait_for_delivery(0);
SELECT cachebust.flush();
SELECT 'after flush: ' || cachebust.wait_for_delivery(60000);});
is($answers[0], 'before flush: false', 'the 300 commits wait in the open window');
is($answers[-1], 'after flush: true', 'flush() sent them');
is($redis->command_calls('unlink'), 1, '300 commits of one row sent as one UNLINK');
is($redis->command_calls('evalsha'), 1, '300 commits of one tag sent as one EVALSHA');
is($node->safe_psql('postgres', 'SELECT targets_enqueued, targets_coalesced, targets_delivered FROM cachebust.stats()'),
	'600|598|2', 'stats: 600 targets enqueued, 598 coalesced, 2 delivered');

# ---- flush() closes the window early
# The window is still an hour: only flush() can send the update before the
# test ends.
$redis->cmd('SET', 'user:6', 1);
@answers = split /\n/, $node->safe_psql('postgres', q{UPDATE users SET name = 'f' WHERE id = 6;
SELECT 'before flush: ' || cachebust.wait_for_delivery(0);});
is($answers[0], 'before flush: false', 'not delivered while the window is open');
is($redis->exists_key('user:6'), 1, 'so the key is still there');
is((split /\n/, $node->safe_psql('postgres', 'SELECT cachebust.flush(); SELECT cachebust.barrier(60000)'))[-1], 't',
	'flush() closed the window');
is($redis->exists_key('user:6'), 0, 'flushed key removed');

# ---- immediate skips the window (still an hour long)
$node->safe_psql('postgres', q{CREATE TABLE hot (id int); SELECT cachebust.watch('hot', keys => ARRAY['hot:{id}'], immediate => true)});
$redis->cmd('SET', 'hot:1', 1);
is($node->safe_psql('postgres', q{INSERT INTO hot VALUES (1); SELECT cachebust.wait_for_delivery(60000);}), 't',
	'an immediate target is sent without waiting for the window');
is($redis->exists_key('hot:1'), 0, 'immediate key removed');

# ---- bounded staleness: a window closes by itself, debounce_ms after it
# opened, however many commits keep arriving into it (a window that each
# arrival extended would never close under this stream).
reload_settings($node, 'ALTER SYSTEM SET cachebust.debounce_ms = 300');
$redis->cmd('SET', 'user:7', 1);
my $writer = $node->background_psql('postgres');
$writer->query_safe(q{UPDATE users SET name = 's' WHERE id = 7});
my $stream = 0;
my $gone_while_streaming = wait_until(sub {
	$stream++;
	$writer->query_safe(qq{UPDATE users SET name = 's$stream' WHERE id = 9});
	return !$redis->exists_key('user:7');
}, 120);
ok($gone_while_streaming, "user:7 removed while commits kept arriving ($stream more commits), without flush()");
$writer->quit;
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(60000)'), 't', 'the stream is delivered too');

# ---- redelete_ms: a stale refill just after delivery is removed once more.
# The refill must land between the two sends. Redis runs commands one at a
# time: a count of UNLINK calls read just after the refill that still shows
# only the first send proves the second comes after the refill. On a machine
# too slow for that (the second send went first), it runs again with a
# longer redelete_ms.
my $refill_first = 0;
for my $redelete_ms (2000, 8000, 32000)
{
	reload_settings($node, 'ALTER SYSTEM SET cachebust.debounce_ms = 0',
		"ALTER SYSTEM SET cachebust.redelete_ms = $redelete_ms");
	$redis->cmd('CONFIG', 'RESETSTAT');
	$redis->cmd('SET', 'user:8', 'cached');
	is(commit_and_wait(q{UPDATE users SET name = 'r1' WHERE id = 8}), 't', "delivered with redelete_ms = $redelete_ms");
	is($redis->exists_key('user:8'), 0, 'first invalidation removed the key');
	is($redis->command_calls('unlink'), 1, 'in one UNLINK');
	# A reader that read the old row before the commit writes it back now.
	$refill_first = $redis->set_before_call('user:8', 'stale refill', 'unlink', 1);
	last if $refill_first;
	note("the second send of redelete_ms = $redelete_ms went out before the refill; again, longer");
}
ok($refill_first, 'the refill landed between the first and the second send');
ok(wait_until(sub { !$redis->exists_key('user:8') }, 120), 'the delayed second invalidation removed the refill');
is($redis->command_calls('unlink'), 2, 'the second send is one more UNLINK');

reload_settings($node, 'ALTER SYSTEM SET cachebust.redelete_ms = 0');
$redis->cmd('CONFIG', 'RESETSTAT');
is(commit_and_wait(q{UPDATE users SET name = 'r2' WHERE id = 8}), 't', 'delivered with redelete_ms = 0');
$redis->cmd('SET', 'user:8', 'stale refill');
# Another delivery goes by; the refill stays, and user:8 was sent once only.
is(commit_and_wait(q{UPDATE users SET name = 'r3' WHERE id = 9}), 't', 'a later delivery');
is($redis->exists_key('user:8'), 1, 'without redelete_ms a refill stays');
is($redis->command_calls('unlink'), 2, 'one UNLINK per delivery, no second send');

# ---- stats
my $stats = $node->safe_psql('postgres', q{
SELECT targets_delivered > 0, redis_commands > 0, connected, last_delivery IS NOT NULL,
       latency_p50_ms IS NOT NULL, latency_p99_ms >= latency_p50_ms, latency_max_ms >= latency_p99_ms,
       delivered_seq = enqueued_seq, pending_targets
FROM cachebust.stats()});
is($stats, 't|t|t|t|t|t|t|t|0', 'stats after delivery');

$node->stop;
$redis->stop;
done_testing();
