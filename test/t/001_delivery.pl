# Delivery: committed changes remove exactly the right Redis keys.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

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
reload_settings($node, 'ALTER SYSTEM SET cachebust.debounce_ms = 1000');
$redis->cmd('CONFIG', 'RESETSTAT');
my $script = join('', map { "UPDATE users SET name = 'c$_' WHERE id = 5;\n" } 1 .. 300);
# 300 autocommit transactions; wait_for_delivery covers what this session committed.
is($node->safe_psql('postgres', $script . 'SELECT cachebust.wait_for_delivery(10000);'), 't', 'coalesced batch delivered');
my $unlinks = $redis->command_calls('unlink');
my $evals = $redis->command_calls('evalsha');
ok($unlinks >= 1 && $unlinks <= 3, "300 commits of one row sent as $unlinks UNLINK commands");
ok($evals >= 1 && $evals <= 3, "300 commits of one tag sent as $evals EVALSHA commands");
my $coalesced = $node->safe_psql('postgres', 'SELECT targets_coalesced FROM cachebust.stats()');
cmp_ok($coalesced, '>=', 290, "stats count coalesced targets ($coalesced)");

# ---- flush() closes the window early
$redis->cmd('SET', 'user:6', 1);
my $t0 = time;
$node->safe_psql('postgres', q{UPDATE users SET name = 'f' WHERE id = 6; SELECT cachebust.flush(); SELECT cachebust.wait_for_delivery(5000);});
my $flush_elapsed = time - $t0;
is($redis->exists_key('user:6'), 0, 'flushed key removed');
cmp_ok($flush_elapsed, '<', 0.9, sprintf('flush() delivered before the 1000 ms window closed (%.0f ms)', $flush_elapsed * 1000));

# ---- immediate skips the window
$node->safe_psql('postgres', q{CREATE TABLE hot (id int); SELECT cachebust.watch('hot', keys => ARRAY['hot:{id}'], immediate => true)});
$redis->cmd('SET', 'hot:1', 1);
$t0 = time;
$node->safe_psql('postgres', q{INSERT INTO hot VALUES (1); SELECT cachebust.wait_for_delivery(5000);});
my $hot_elapsed = time - $t0;
is($redis->exists_key('hot:1'), 0, 'immediate key removed');
cmp_ok($hot_elapsed, '<', 0.9, sprintf('immediate target skipped the 1000 ms window (%.0f ms)', $hot_elapsed * 1000));

# ---- bounded staleness: commit-to-gone within debounce_ms + margin
reload_settings($node, 'ALTER SYSTEM SET cachebust.debounce_ms = 100');
my $worst = 0;
for my $i (1 .. 10)
{
	$redis->cmd('SET', 'user:7', 1);
	my $start = time;
	$node->safe_psql('postgres', "UPDATE users SET name = 's$i' WHERE id = 7");
	wait_until(sub { !$redis->exists_key('user:7') }, 5);
	my $elapsed = time - $start;
	$worst = $elapsed if $elapsed > $worst;
}
# 100 ms window + psql round trip + send; a generous margin for a loaded CI box.
cmp_ok($worst * 1000, '<', 100 + 400, sprintf('commit-to-gone at most %.0f ms with debounce_ms = 100', $worst * 1000));
cmp_ok($worst * 1000, '>=', 90, 'and not before the window closed');

# ---- redelete_ms: a stale refill just after delivery is removed once more
reload_settings($node, 'ALTER SYSTEM SET cachebust.debounce_ms = 0', 'ALTER SYSTEM SET cachebust.redelete_ms = 2000');
$redis->cmd('SET', 'user:8', 'cached');
is(commit_and_wait(q{UPDATE users SET name = 'r1' WHERE id = 8}), 't', 'delivered with redelete_ms = 2000');
is($redis->exists_key('user:8'), 0, 'first invalidation removed the key');
# A reader that read the old row before the commit writes it back now.
$redis->cmd('SET', 'user:8', 'stale refill');
ok(wait_until(sub { !$redis->exists_key('user:8') }, 5), 'the delayed second invalidation removed the refill');

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
