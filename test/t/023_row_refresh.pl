# Per-row refresh (README, "Per-row refresh"): watch(..., refresh => query)
# recomputes each changed row's key after commit instead of removing it —
# the query bound to the key's columns, in a snapshot after the commits
# that asked, one refresh of a key at a time; no row removes the key.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $redis = start_redis();
my $node = cachebust_node('row_refresh', $redis, qq{
cachebust.debounce_ms = 50
cachebust.key_prefix = 'app:'
cachebust.refresh_timeout_ms = 3000
});

my $user_query = q{SELECT row_to_json(u)::text FROM users u WHERE id = $1};
$node->safe_psql('postgres', qq{
CREATE TABLE users (id int PRIMARY KEY, name text, team int);
INSERT INTO users SELECT g, 'u' || g, g % 3 FROM generate_series(1, 10) g;
SELECT cachebust.watch('users', keys => ARRAY['user:{id}'], refresh => \$q\$$user_query\$q\$);
});

sub fresh_value
{
	my ($id) = @_;
	my $q = $user_query =~ s/\$1/$id/r;
	return $node->safe_psql('postgres', $q);
}

sub barrier
{
	return $node->safe_psql('postgres', 'SELECT cachebust.barrier(10000)');
}

# ---- UPDATE: the updated rows' keys hold their new value, the others are left alone
$redis->cmd('SET', "app:user:$_", 'cached') for 1 .. 10;
my $refreshes = stat_value($node, 'refreshes');
$node->safe_psql('postgres', q{UPDATE users SET name = name || '!' WHERE id IN (2, 3, 5)});
is(barrier(), 't', 'barrier() after an UPDATE');
for my $id (2, 3, 5)
{
	is($redis->cmd('GET', "app:user:$id"), fresh_value($id), "key of updated row $id holds a fresh run of the query");
}
like($redis->cmd('GET', 'app:user:2'), qr/"name":"u2!"/, 'which is the new row');
is(scalar(grep { ($redis->cmd('GET', "app:user:$_") // '') eq 'cached' } (1, 4, 6, 7, 8, 9, 10)), 7,
	'the keys of untouched rows are untouched');
cmp_ok(stat_value($node, 'refreshes') - $refreshes, '>=', 3, 'counted as refreshes');

# ---- INSERT sets the new row's key; UPDATE of the key refreshes both keys
$node->safe_psql('postgres', q{INSERT INTO users VALUES (11, 'new', 1)});
is(barrier(), 't', 'barrier() after an INSERT');
is($redis->cmd('GET', 'app:user:11'), fresh_value(11), 'an inserted row\'s key is set');
$node->safe_psql('postgres', q{UPDATE users SET id = 12 WHERE id = 11});
is(barrier(), 't', 'barrier() after moving a row to another key');
is($redis->exists_key('app:user:11'), 0, 'the old key finds no row: removed');
is($redis->cmd('GET', 'app:user:12'), fresh_value(12), 'the new key holds the row');

# ---- DELETE removes the key
$node->safe_psql('postgres', q{DELETE FROM users WHERE id = 3});
is(barrier(), 't', 'barrier() after a DELETE');
is($redis->exists_key('app:user:3'), 0, 'a deleted row\'s key is gone');

# ---- a rolled-back UPDATE leaves the old value
my $before = $redis->cmd('GET', 'app:user:5');
$node->safe_psql('postgres', q{BEGIN; UPDATE users SET name = 'rolled back' WHERE id = 5; ROLLBACK});
# (A committed change afterwards: once it is delivered, the rollback would have been too.)
$node->safe_psql('postgres', q{UPDATE users SET name = 'other' WHERE id = 6});
is(barrier(), 't', 'barrier()');
is($redis->cmd('GET', 'app:user:5'), $before, 'a rolled-back UPDATE leaves the old value');
is($redis->cmd('GET', 'app:user:6'), fresh_value(6), 'the committed one is refreshed');

# ---- two writers of one row: the key ends with the value committed last
my $a = $node->background_psql('postgres');
my $b = $node->background_psql('postgres');
$a->query_safe(q{BEGIN; UPDATE users SET name = 'a' WHERE id = 1});
my $b_pid = $b->query_safe('SELECT pg_backend_pid()');
$b->query_until(qr/started/, qq{BEGIN;\n\\echo started\nUPDATE users SET name = 'b' WHERE id = 1;\n});
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $b_pid") eq 'Lock' }),
	'the second writer waits for the first one\'s row lock');
$a->query_safe('COMMIT');
$b->query_safe('COMMIT');
is(barrier(), 't', 'barrier() after both commits');
like($redis->cmd('GET', 'app:user:1'), qr/"name":"b"/, 'the key holds the value committed last');
is($redis->cmd('GET', 'app:user:1'), fresh_value(1), 'equal to a fresh run of the query');
$a->quit;
$b->quit;

# ---- many writers of few rows: after they stop, every key equals its row
my $script = $node->basedir . '/writer.sql';
open(my $fh, '>', $script) or die;
print $fh q{\set id random(1, 4)
UPDATE users SET name = 'w' || random(), team = team + 1 WHERE id = :id;
};
close $fh;
$node->command_ok([ 'pgbench', '-n', '-c', '4', '-j', '2', '-t', '100', '-f', $script,
	'-p', $node->port, '-h', $node->host, 'postgres' ], '4 writers of rows 1..4');
is(barrier(), 't', 'barrier() after the writers');
is(scalar(grep { ($redis->cmd('GET', "app:user:$_") // '') eq fresh_value($_) } 1 .. 4), 4,
	'each key equals a fresh run of its query');

# ---- a failing refresh fails closed: the key is removed, a warning says why
$node->safe_psql('postgres', q{
CREATE TABLE ratios (id int PRIMARY KEY, d int);
INSERT INTO ratios VALUES (1, 1), (2, 2);
SELECT cachebust.watch('ratios', keys => ARRAY['ratio:{id}'],
    refresh => 'SELECT (100 / d)::text FROM ratios WHERE id = $1');
});
$redis->cmd('SET', 'app:ratio:1', 'stale');
my $failures = stat_value($node, 'refresh_failures');
my $offset = -s $node->logfile;
$node->safe_psql('postgres', q{UPDATE ratios SET d = 0 WHERE id = 1; UPDATE ratios SET d = 4 WHERE id = 2});
is(barrier(), 't', 'barrier() after a failing refresh');
is($redis->exists_key('app:ratio:1'), 0, 'the failing refresh removed the old value');
is($redis->cmd('GET', 'app:ratio:2'), '25', 'the other row was refreshed');
cmp_ok(stat_value($node, 'refresh_failures'), '>', $failures, 'refresh_failures counts it');
ok($node->wait_for_log(qr/could not refresh key "app:ratio:1": division by zero/, $offset), 'the log says why');

# ---- unwatch(): the registration goes; a key is removed again, not refreshed
is($node->safe_psql('postgres', q{SELECT cachebust.unwatch('ratios') > 0; SELECT count(*) FROM cachebust._row_refresh}), "t\n1",
	'unwatch() removes the registration');
$node->safe_psql('postgres', q{SELECT cachebust.watch('ratios', keys => ARRAY['ratio:{id}'])});
$redis->cmd('SET', 'app:ratio:2', 'cached');
$node->safe_psql('postgres', q{UPDATE ratios SET d = 5 WHERE id = 2});
is(barrier(), 't', 'barrier()');
is($redis->exists_key('app:ratio:2'), 0, 'a plain watch removes the key');

$node->stop;
done_testing();
