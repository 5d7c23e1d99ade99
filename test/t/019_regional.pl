# Regional caches (issue 24): a standby with a Redis of its own. Its worker
# reads the cachebust messages from the WAL it replays — never ahead of the
# replay — and deletes from its Redis once the standby shows the new rows,
# so a regional reader that misses reads a replica that already has them.
# The standby applies WAL 300 ms late (recovery_min_apply_delay).
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $redis_a = start_redis();
my $redis_b = start_redis();
my $primary = cachebust_node('primary', $redis_a, q{
cachebust.key_prefix = 'app:'
}, allows_streaming => 1);
$primary->safe_psql('postgres', q{
CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO items SELECT g FROM generate_series(1, 400) g;
SELECT cachebust.watch('items', keys => ARRAY['items:{id}']);
});
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
# The copied configuration delivers to Redis A: the control has none.
$standby->append_conf('postgresql.conf', q{
cachebust.redis_url = ''
recovery_min_apply_delay = 300ms
cachebust.redelete_ms = 300
});
$standby->start;
$primary->wait_for_catchup($standby, 'replay');

# The cache-aside reader of region B: a key missing from Redis B is read
# from the standby and stored.
sub read_through
{
	my (@ids) = @_;
	for my $id (@ids)
	{
		next if $redis_b->exists_key("app:items:$id");
		my $v = $standby->safe_psql('postgres', "SELECT v FROM items WHERE id = $id");
		$redis_b->cmd('SET', "app:items:$id", $v);
	}
}

# wait_for_lsn() on the standby, polled (a loaded machine may take a while;
# a wait longer than 10 s is said, with the worker's stats, to be looked at).
sub standby_delivered
{
	my ($lsn) = @_;
	my $start = time;
	my $ok = $standby->poll_query_until('postgres', "SELECT cachebust.wait_for_lsn('$lsn', 1000)");
	diag('wait_for_lsn took ' . (time - $start) . ' s; stats: '
		  . $standby->safe_psql('postgres', 'SELECT delivered_lsn, delivery_lag_bytes, pending_targets, connected, last_error FROM cachebust.stats'))
	  if time - $start > 10;
	return $ok;
}

# Keys of Redis B whose value is not the standby's row (once caught up).
sub stale_in_b
{
	my (@ids) = @_;
	my %row = map { split /\|/ } split /\n/,
	  $standby->safe_psql('postgres', 'SELECT id, v FROM items WHERE id BETWEEN ' . $ids[0] . ' AND ' . $ids[-1]);
	my @stale;
	for my $id (@ids)
	{
		my $cached = $redis_b->cmd('GET', "app:items:$id");
		push @stale, $id if defined $cached && $cached ne $row{$id};
	}
	return scalar @stale;
}

sub write_and_read
{
	my ($first, $last, $rounds) = @_;
	for my $round (1 .. $rounds)
	{
		$primary->safe_psql('postgres', "UPDATE items SET v = v + 1 WHERE id BETWEEN $first AND $last");
		read_through($first .. $last);
	}
}

# ---- control: without a worker of its own, region B keeps stale keys
write_and_read(1, 100, 5);
$primary->wait_for_catchup($standby, 'replay');
cmp_ok(stale_in_b(1 .. 100), '>', 0, 'control: with no redis_url on the standby, Redis B keeps stale keys');

# ---- the standby's worker delivers what it replays to Redis B
$standby->append_conf('postgresql.conf', "cachebust.redis_url = '" . $redis_b->url . "'\n");
$standby->reload;
ok(wait_until(sub { $standby->log_contains('cachebust worker delivers what this standby replays') }, 30),
	'the standby worker delivers to its own Redis');
write_and_read(101, 200, 5);
my $lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
$primary->wait_for_catchup($standby, 'replay');
ok(standby_delivered($lsn), 'wait_for_lsn() on the standby: everything up to the writer\'s LSN is delivered');
ok(wait_until(sub { stale_in_b(101 .. 200) == 0 }, 10), 'Redis B has no stale key once the standby caught up');
is($standby->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'barrier() on the standby');

# ---- never ahead of the replay: a key of B is gone only once its commit replayed
$redis_b->cmd('SET', 'app:items:300', 'cached');
$primary->safe_psql('postgres', 'UPDATE items SET v = v + 1 WHERE id = 300');
my $commit = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
my $early = 0;
my $early_wait = 0;
my $gone = 0;
for (1 .. 300)
{
	# Each observation first, the replay position read after it: what was
	# seen done must have been replayed by then.
	my $exists = $redis_b->exists_key('app:items:300');
	my ($waited, $replayed) = split /\|/, $standby->safe_psql('postgres',
		"SELECT w, pg_last_wal_replay_lsn() >= '$commit'
		 FROM (SELECT cachebust.wait_for_lsn('$commit', 0) AS w OFFSET 0) s");
	$early++ if !$exists && $replayed ne 't';
	$early_wait++ if $waited eq 't' && $replayed ne 't';
	if (!$exists) { $gone = 1; last; }
	select(undef, undef, undef, 0.02);
}
ok($gone, 'the key is removed from Redis B');
is($early, 0, 'never before the standby replayed its commit');
is($early_wait, 0, 'wait_for_lsn() is never true before the standby replayed the commit');

# ---- restarts of the standby while commits stream: nothing missed
for my $mode ('fast', 'immediate')
{
	$redis_b->cmd('MSET', map { ("app:items:$_", 'cached') } 201 .. 260);
	$primary->safe_psql('postgres', "UPDATE items SET v = v + 1 WHERE id BETWEEN 201 AND 230");
	$standby->stop($mode);
	$primary->safe_psql('postgres', "UPDATE items SET v = v + 1 WHERE id BETWEEN 231 AND 240");
	$standby->start;
	$lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	$primary->wait_for_catchup($standby, 'replay');
	ok(standby_delivered($lsn), "$mode restart: the standby delivers again");
	is($redis_b->cmd('EXISTS', map { "app:items:$_" } 201 .. 240), 0, "$mode restart: nothing missed in Redis B");
	is($redis_b->cmd('EXISTS', map { "app:items:$_" } 241 .. 260), 20, "$mode restart: untouched keys stay");
}
is($standby->safe_psql('postgres', 'SELECT fallbacks FROM cachebust.stats'), '0', 'no fallback on the standby');
ok($standby->safe_psql('postgres', 'SELECT latency_p50_ms IS NOT NULL AND delivered_lsn IS NOT NULL FROM cachebust.stats') eq 't',
	'stats on the standby: replay-to-delivery latency and delivered-through LSN');

# ---- a cascading standby (streaming from the standby) with Redis C
my $redis_c = start_redis();
$standby->backup('cascade_base');
my $cascade = PostgreSQL::Test::Cluster->new('cascade');
$cascade->init_from_backup($standby, 'cascade_base', has_streaming => 1);
$cascade->append_conf('postgresql.conf', "cachebust.redis_url = '" . $redis_c->url . "'\n");
$cascade->start;
$redis_c->cmd('MSET', map { ("app:items:$_", 'cached') } 261 .. 280);
$primary->safe_psql('postgres', "UPDATE items SET v = v + 1 WHERE id BETWEEN 261 AND 270");
$lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok($cascade->poll_query_until('postgres', "SELECT cachebust.wait_for_lsn('$lsn', 1000)"),
	'cascading standby: wait_for_lsn() with the writer\'s LSN');
is($redis_c->cmd('EXISTS', map { "app:items:$_" } 261 .. 270), 0, 'cascading standby: its Redis C is clean');
is($redis_c->cmd('EXISTS', map { "app:items:$_" } 271 .. 280), 10, 'cascading standby: untouched keys stay');
$cascade->stop;

# ---- promotion while the primary dies: Redis B misses nothing, the worker goes on
$redis_b->cmd('MSET', map { ("app:items:$_", 'cached') } 301 .. 400);
$primary->safe_psql('postgres', "UPDATE items SET v = v + 1 WHERE id BETWEEN 301 AND 350");
$primary->wait_for_catchup($standby, 'replay');
$primary->stop('immediate');
$standby->promote;
ok(wait_until(sub { $standby->safe_psql('postgres', 'SELECT cachebust.barrier(1000)') eq 't' }, 30),
	'the promoted standby delivered everything');
is($redis_b->cmd('EXISTS', map { "app:items:$_" } 301 .. 350), 0, 'promotion: nothing missed in Redis B');
is($redis_b->cmd('EXISTS', map { "app:items:$_" } 351 .. 400), 50, 'promotion: untouched keys stay (no fallback)');
$standby->safe_psql('postgres', 'UPDATE items SET v = v + 1 WHERE id = 399');
is($standby->safe_psql('postgres', 'SELECT cachebust.wait_for_delivery(5000)'), 't', 'a commit on the new primary');
is($redis_b->exists_key('app:items:399'), 0, 'is delivered to Redis B');
is($standby->safe_psql('postgres', 'SELECT fallbacks FROM cachebust.stats'), '0', 'and no fallback ran');

$standby->stop;
done_testing();
