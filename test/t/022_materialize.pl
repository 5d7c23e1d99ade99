# Materialized keys (README, "Materialized keys"): a key whose value is a
# query's result, recomputed by a refresh worker after commits to the tables
# it depends on — coalesced, as its owner, failing closed.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);

my $redis = start_redis();
my $node = cachebust_node('materialize', $redis, qq{
cachebust.debounce_ms = 50
cachebust.key_prefix = 'app:'
cachebust.refresh_timeout_ms = 3000
});

$node->safe_psql('postgres', q{
CREATE TABLE customers (id int PRIMARY KEY, name text);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int, amount numeric);
CREATE TABLE items (order_id int, sku text, qty int);
CREATE TABLE users (id int PRIMARY KEY, name text);
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 10) g;
INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 10) g;
SELECT cachebust.watch('users', keys => ARRAY['user:{id}']);
CREATE ROLE dash_owner;
GRANT SELECT ON customers, orders, items TO dash_owner;
GRANT EXECUTE ON FUNCTION cachebust.materialize(text, text, regclass[], integer),
    cachebust.dematerialize(text) TO dash_owner;
});

my $dashboard_query = q{SELECT json_build_object('customers', (SELECT count(*) FROM customers),
  'orders', (SELECT count(*) FROM orders), 'revenue', (SELECT coalesce(sum(amount), 0) FROM orders),
  'items', (SELECT coalesce(sum(qty), 0) FROM items))::text};

sub as_owner
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', "SET ROLE dash_owner; $sql");
}

sub redis_get
{
	my ($key) = @_;
	return $redis->cmd('GET', $key);
}

sub stat_number
{
	my ($column) = @_;
	return $node->safe_psql('postgres', "SELECT $column FROM cachebust.stats");
}

sub refresh_count
{
	my ($key) = @_;
	return $node->safe_psql('postgres', "SELECT refresh_count FROM cachebust.materialized WHERE key = '$key'");
}

# ---- registration: computed once committed; barrier() covers the refresh
as_owner("SELECT cachebust.materialize('dashboard', \$q\$$dashboard_query\$q\$,
    ARRAY['customers', 'orders', 'items']::regclass[])");
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'barrier() after the registration');
my $fresh = $node->safe_psql('postgres', $dashboard_query);
is(redis_get('app:dashboard'), $fresh, 'the key holds the query result right after registration');

# ---- writers: after they stop and barrier() returns, the key equals a fresh
# run of the query, and far fewer queries ran than commits
my $refreshes_before = stat_number('refreshes');
my $script = $node->basedir . '/writer.sql';
open(my $fh, '>', $script) or die;
print $fh q{\set c random(1, 10)
BEGIN;
INSERT INTO orders (customer_id, amount) VALUES (:c, :c * 1.5) RETURNING id \gset
INSERT INTO items VALUES (:id, 'sku' || :c, :c);
COMMIT;
};
close $fh;
my $per_client = 1000;
my $commits = 4 * $per_client;
my $bench_out = '';
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-t', $per_client, '-f', $script, '-p', $node->port, '-h', $node->host,
	  'postgres' ], '>', \$bench_out, '2>', \$bench_out);
# While they write, sampled: the key is never behind a commit that barrier()
# reports delivered (orders counted, then barrier(), then the key read).
my ($samples, $behind, @catch_up_ms) = (0, 0);
while ($bench->pumpable && $samples < 200)
{
	my ($orders) = $node->safe_psql('postgres', 'SELECT count(*) FROM orders');
	my $t0 = time;
	next unless $node->safe_psql('postgres', 'SELECT cachebust.barrier(10000)') eq 't';
	my ($in_redis) = (redis_get('app:dashboard') // '') =~ /"orders" : (\d+)/;
	$samples++;
	$behind++ if !defined $in_redis || $in_redis < $orders;
	push @catch_up_ms, 1000 * (time - $t0);
	$bench->pump_nb;
}
$bench->finish;
is($bench->result(0), 0, "4 writers, $per_client transactions each") or diag($bench_out);
cmp_ok($samples, '>', 0, "sampled $samples times while they wrote");
is($behind, 0, 'never behind a commit barrier() reported delivered');
@catch_up_ms = sort { $a <=> $b } @catch_up_ms;
note(sprintf('commit counted to barrier() true: p50 %.0f ms, max %.0f ms (debounce_ms 50 + the query + delivery)',
	$catch_up_ms[$#catch_up_ms / 2] // 0, $catch_up_ms[-1] // 0));
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'barrier() after the writers');
$fresh = $node->safe_psql('postgres', $dashboard_query);
is(redis_get('app:dashboard'), $fresh, 'after the writers the key equals a fresh run of the query');
like($fresh, qr/"orders" : $commits\b/, "$commits orders were written");
my $queries = stat_number('refreshes') - $refreshes_before;
cmp_ok($queries, '<', $commits / 4, "coalesced: $queries queries for $commits commits");
note(sprintf('queries per commit: %.3f', $queries / $commits));
cmp_ok(stat_number('refreshes_coalesced'), '>', 0, 'refreshes_coalesced counts the commits that did not query');
ok(defined stat_number('refresh_p99_ms') && stat_number('refresh_p99_ms') ne '', 'refresh latency is measured');

# ---- a rolled-back change asks for nothing
my $count = refresh_count('dashboard');
$node->safe_psql('postgres', q{BEGIN; DELETE FROM orders; ROLLBACK; SELECT cachebust.flush();});
# (A committed change to another table afterwards: once it is delivered, the rollback would have been too.)
$node->safe_psql('postgres', q{UPDATE users SET name = 'x' WHERE id = 1});
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'barrier()');
is(refresh_count('dashboard'), $count, 'a rolled-back change does not refresh');

# ---- failures fail closed: the key is removed, counted, shown; other keys unaffected
as_owner(q{SELECT cachebust.materialize('ratio', 'SELECT (100 / (SELECT count(*) FROM orders WHERE amount < 0))::text', '{orders}')});
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'barrier() after a failing registration');
is($redis->exists_key('app:ratio'), 0, 'a failing query leaves no key');
$redis->cmd('SET', 'app:ratio', 'stale');
my $failures = stat_number('refresh_failures');
$node->safe_psql('postgres', q{INSERT INTO orders (customer_id, amount) VALUES (1, 1)});
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'barrier()');
is($redis->exists_key('app:ratio'), 0, 'the failing refresh removed the old value');
cmp_ok(stat_number('refresh_failures'), '>', $failures, 'refresh_failures counts it');
like(as_owner(q{SELECT last_error FROM cachebust.materialized WHERE key = 'ratio'}), qr/division by zero/,
	'last_error says why (to the owner)');
is($node->safe_psql('postgres', q{SELECT last_error FROM cachebust.materialized WHERE key = 'ratio'}) ne '', 1,
	'and to a superuser');
is(redis_get('app:dashboard'), $node->safe_psql('postgres', $dashboard_query), 'the other key was refreshed');

# ---- a slow refresh does not delay other invalidations; a timeout fails closed
as_owner(q{SELECT cachebust.materialize('slow', 'SELECT pg_sleep(2)::text || count(*) FROM customers', '{customers}')});
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'barrier() after the slow registration');
$redis->cmd('SET', 'app:user:2', 'cached');
my $slow_count = refresh_count('slow');
$node->safe_psql('postgres', q{UPDATE customers SET name = 'renamed' WHERE id = 1; SELECT cachebust.flush()});
ok(CachebustTest::wait_until(sub {
	$node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
	  WHERE backend_type = 'cachebust refresh worker' AND state = 'active' AND query = 'app:slow'}) eq '1' }, 10),
	'the slow refresh runs');
my $out = $node->safe_psql('postgres', q{
UPDATE users SET name = 'y' WHERE id = 2;
SELECT cachebust.wait_for_delivery(10000);
SELECT refresh_count FROM cachebust.materialized WHERE key = 'slow';
});
my ($delivered, $count_then) = (split /\n/, $out)[-2, -1];
is($delivered, 't', 'meanwhile another session\'s invalidation is delivered');
is($count_then, $slow_count, '... before the slow refresh finished');
is($redis->exists_key('app:user:2'), 0, 'its key is gone');
ok(CachebustTest::wait_until(sub { refresh_count('slow') > $slow_count }, 10), 'the slow refresh finishes later');

as_owner(q{SELECT cachebust.materialize('too_slow', 'SELECT pg_sleep(6)::text', '{customers}')});
$node->safe_psql('postgres', 'SELECT cachebust.barrier(15000)');
ok(CachebustTest::wait_until(sub {
	as_owner(q{SELECT coalesce(last_error, '') FROM cachebust.materialized WHERE key = 'too_slow'}) =~ /statement timeout/ }, 15),
	'a query longer than refresh_timeout_ms is cancelled and recorded');
is($redis->exists_key('app:too_slow'), 0, 'and its key is not there');
as_owner(q{SELECT cachebust.dematerialize('too_slow'); SELECT cachebust.dematerialize('slow')});

# ---- cachebust.refresh_workers bounds the queries running at once in a database
sub active_refreshes
{
	return $node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
	  WHERE backend_type = 'cachebust refresh worker' AND state = 'active' AND query IN ('app:slow_a', 'app:slow_b')});
}
# Changes customers and samples the running refreshes until both keys are recomputed; returns the most at once.
sub most_at_once
{
	my ($a, $b) = (refresh_count('slow_a'), refresh_count('slow_b'));
	$node->safe_psql('postgres', q{UPDATE customers SET name = name WHERE id = 2; SELECT cachebust.flush()});
	my $most = 0;
	wait_until(sub {
		my $now = active_refreshes();
		$most = $now if $now > $most;
		return refresh_count('slow_a') > $a && refresh_count('slow_b') > $b;
	}, 20) or return -1;
	return $most;
}
as_owner(q{SELECT cachebust.materialize('slow_a', 'SELECT pg_sleep(1)::text || count(*) FROM customers', '{customers}');
           SELECT cachebust.materialize('slow_b', 'SELECT pg_sleep(1)::text || count(*) FROM customers', '{customers}')});
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(15000)'), 't', 'barrier() after two slow registrations');
is(most_at_once(), 1, 'refresh_workers = 1: one query at a time');
reload_settings($node, 'ALTER SYSTEM SET cachebust.refresh_workers = 2');
is(most_at_once(), 2, 'refresh_workers = 2: two at once');
reload_settings($node, 'ALTER SYSTEM RESET cachebust.refresh_workers');
as_owner(q{SELECT cachebust.dematerialize('slow_a'); SELECT cachebust.dematerialize('slow_b')});

# ---- refresh ahead of the TTL, without reviving a removed key
as_owner(q{SELECT cachebust.materialize('short', 'SELECT count(*)::text FROM customers', '{customers}', 1200)});
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'barrier() after the TTL registration');
my $pttl = $redis->cmd('PTTL', 'app:short');
ok($pttl > 0 && $pttl <= 1200, "SET with PX ($pttl ms left)");
my $short_count = refresh_count('short');
ok(CachebustTest::wait_until(sub { refresh_count('short') >= $short_count + 2 }, 10),
	'recomputed ahead of its TTL, with no commit');
is(redis_get('app:short'), '10', 'so the key never expired')
  or diag('PTTL ' . $redis->cmd('PTTL', 'app:short') . '; ' . $node->safe_psql('postgres', q{SELECT * FROM cachebust.materialized WHERE key = 'short'}));
$redis->cmd('DEL', 'app:short');
$short_count = refresh_count('short');
ok(CachebustTest::wait_until(sub { refresh_count('short') >= $short_count + 1 }, 10), 'another refresh ahead');
is($redis->exists_key('app:short'), 0, 'which did not revive the removed key (SET XX)');

# ---- a registration whose owner role is dropped fails closed: DROP ROLE
# does not know it, and its query must not go on running as nobody (with
# PUBLIC's privileges)
$node->safe_psql('postgres', q{
CREATE TABLE notices (id int, body text);
INSERT INTO notices VALUES (1, 'a');
GRANT SELECT ON notices TO PUBLIC;
CREATE ROLE notice_owner;
GRANT EXECUTE ON FUNCTION cachebust.materialize(text, text, regclass[], integer) TO notice_owner;
SET ROLE notice_owner;
SELECT cachebust.materialize('notices', 'SELECT count(*)::text FROM notices', '{notices}');
});
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'barrier()');
is(redis_get('app:notices'), '1', 'computed as its owner');
$node->safe_psql('postgres', q{DROP OWNED BY notice_owner; DROP ROLE notice_owner;
INSERT INTO notices VALUES (2, 'b')});
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'barrier()');
is($redis->exists_key('app:notices'), 0, 'once the owner is dropped, the next change removes the key');
like($node->safe_psql('postgres', q{SELECT last_error FROM cachebust.materialized WHERE key = 'notices'}),
	qr/owner role no longer exists/, 'last_error says why');

# ---- startup warming: Redis emptied, server restarted, keys back
$redis->cmd('FLUSHALL');
$node->restart;
ok(CachebustTest::wait_until(sub { defined redis_get('app:dashboard') }, 20), 'the key is computed again at start');
is(redis_get('app:dashboard'), $node->safe_psql('postgres', $dashboard_query), 'with the current value');

# ---- dematerialize removes the key; the table loses its trigger with the last registration
as_owner(q{SELECT cachebust.dematerialize('dashboard'); SELECT cachebust.dematerialize('ratio');
           SELECT cachebust.dematerialize('short')});
$node->safe_psql('postgres', q{SELECT cachebust.dematerialize('notices')});
is($node->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'barrier() after dematerialize');
is($redis->exists_key('app:dashboard'), 0, 'the key is gone');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_trigger WHERE tgname = 'cachebust_materialized'}), '0',
	'no statement trigger left');
is(stat_number('fallbacks'), '0', 'no fallback ran');

$node->stop;
done_testing();
