# Read replicas (cachebust.standby_names): cache-aside readers that fill the
# cache from a streaming standby refill a key with the old row between the
# primary's invalidation and the standby's replay. The second send, once the
# standbys have replayed, removes what they refilled.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rows = 20;
my $redis = start_redis();
my $primary = cachebust_node('primary', $redis, "cachebust.debounce_ms = 10\n", allows_streaming => 1);
$primary->safe_psql('postgres', qq{
CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO items SELECT g, 0 FROM generate_series(1, $rows) g;
SELECT cachebust.watch('items', keys => ARRAY['item:{id}']);
});

# The standby applies WAL 300 ms late, so commits are normally ahead of
# it when the primary's invalidation lands; it reports its replay position
# every 100 ms (the primary only learns it from that feedback).
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
# (Its walreceiver connects with application_name 'standby', the node's name.)
# It shares the primary's Redis and has no worker delivering of its own (a
# copied redis_url would make it delete after replay itself: 019_regional.pl).
$standby->append_conf('postgresql.conf', qq{
cachebust.redis_url = ''
recovery_min_apply_delay = '300ms'
wal_receiver_status_interval = '100ms'
hot_standby_feedback = on
});
$standby->start;
$primary->wait_for_catchup($standby, 'replay');

# The cache-aside reader: keys missing from Redis are filled from the standby.
my $reader = $standby->background_psql('postgres');
sub read_through_standby
{
	my @missing = grep { !$redis->exists_key("item:$_") } 1 .. $rows;
	return 0 unless @missing;
	my $list = join(',', @missing);
	for my $line (split /\n/, $reader->query_safe("SELECT id || '=' || v FROM items WHERE id IN ($list)"))
	{
		my ($id, $v) = split /=/, $line;
		$redis->cmd('SET', "item:$id", $v);
	}
	return scalar @missing;
}

# Keys whose cached value is not the primary's row.
sub stale_keys
{
	my %row = map { split /=/ } split /\n/,
	  $primary->safe_psql('postgres', q{SELECT id || '=' || v FROM items});
	return grep {
		my $cached = $redis->cmd('GET', "item:$_");
		defined $cached && $cached ne $row{$_}
	} 1 .. $rows;
}

# One writer round: every row changes in one commit; as soon as the primary's
# invalidation has removed a key, the reader refills it from the standby,
# which has not replayed the commit yet.
sub write_round
{
	my ($round) = @_;
	read_through_standby();
	$primary->safe_psql('postgres', "UPDATE items SET v = $round");
	ok(wait_until(sub { !$redis->exists_key('item:1') }, 10), "round $round: the primary's invalidation arrived");
	read_through_standby();
}

# ---- control: without standby_names a replica reader leaves stale keys
# Replay is paused during the control rounds, so the reader refills old rows
# however long it takes to get there (the 300 ms delay alone would need a
# fast machine).
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$standby->poll_query_until('postgres', 'SELECT pg_get_wal_replay_pause_state()', 'paused')
  or die 'standby replay did not pause';
write_round($_) for 1 .. 3;
ok(wait_all_delivered($primary, 60), 'control: everything delivered');
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
$primary->wait_for_catchup($standby, 'replay');
read_through_standby();
my @stale = stale_keys();
ok(@stale > 0, 'control: replica readers refilled old rows (' . scalar(@stale) . " stale keys): the test can fail");
is(stat_value($primary, 'second_sends'), '0', 'control: no second sends');

# ---- standby_names = '*' (changed at SIGHUP): zero stale keys
$redis->cmd('FLUSHDB');
reload_settings($primary, q{ALTER SYSTEM SET cachebust.standby_names = '*'});
for my $round (4 .. 6)
{
	write_round($round);
}

# wait_for_delivery in the writer's session covers the second send; the
# reader keeps refilling from the standby while it waits.
my $writer = $primary->background_psql('postgres');
$writer->query_safe('UPDATE items SET v = 7');
$writer->{stdin} .= "SELECT 'waited:' || cachebust.wait_for_delivery(60000);\n";
my $waited = wait_until(sub {
	$writer->{run}->pump_nb;
	read_through_standby();
	return $writer->{stdout} =~ /waited:t/;
}, 60);
ok($waited, 'wait_for_delivery returned true after the second send');
is(scalar(stale_keys()), 0, 'no stale key right after wait_for_delivery');
read_through_standby();
is(scalar(stale_keys()), 0, 'and none after the readers filled the cache from the standby');
is($primary->safe_psql('postgres', 'SELECT cachebust.barrier(60000)'), 't', 'barrier from another session agrees');
cmp_ok(stat_value($primary, 'second_sends'), '>=', 4, 'second sends counted');
is(stat_value($primary, 'standby_timeouts'), '0', 'the streaming standby never timed out');
is(stat_value($primary, 'standbys_absent'), '', 'no standby reported absent');
like(stat_value($primary, 'standby_lag_p50_ms'), qr/^\d+(\.\d+)?$/, 'replica lag observed');
cmp_ok(stat_value($primary, 'standby_lag_max_ms'), '>=', 250,
	'the lag includes most of the standby\'s 300 ms apply delay');

# ---- a named standby that is not connected: the first send is not held
# back; the second waits at most standby_max_wait_ms, goes out, is counted,
# and the name is reported. The wait is ten minutes at first, so the refill
# surely lands before the second send; lowering standby_max_wait_ms then
# releases it (a waiting send is measured against the current setting).
reload_settings($primary,
	q{ALTER SYSTEM SET cachebust.standby_names = 'standby, missing_replica'},
	q{ALTER SYSTEM SET cachebust.standby_max_wait_ms = 600000});
my $timeouts_before = stat_value($primary, 'standby_timeouts');
$primary->safe_psql('postgres', 'UPDATE items SET v = 8 WHERE id = 1');
ok(wait_until(sub { !$redis->exists_key('item:1') }, 60), 'absent standby: first send not held back');
$redis->cmd('SET', 'item:1', 'refilled-while-waiting');
ok(wait_until(sub { stat_value($primary, 'standbys_absent') eq 'missing_replica' }, 60),
	'the missing standby is reported in stats');
is($redis->exists_key('item:1'), 1, 'the second send waits for the missing standby');
reload_settings($primary, q{ALTER SYSTEM SET cachebust.standby_max_wait_ms = 1000});
ok(wait_until(sub { !$redis->exists_key('item:1') }, 60), 'the second send went out once standby_max_wait_ms had passed');
ok(wait_until(sub { stat_value($primary, 'standby_timeouts') > $timeouts_before }, 60), 'and was counted as a timeout');
ok($primary->log_contains(qr/standby_names lists standbys that are not streaming: missing_replica/),
	'the missing standby is named in the log');

# ---- switched off while a second send waits: it goes out at once
reload_settings($primary,
	q{ALTER SYSTEM SET cachebust.standby_names = 'missing_replica'},
	q{ALTER SYSTEM SET cachebust.standby_max_wait_ms = 600000});
$primary->safe_psql('postgres', 'UPDATE items SET v = 9 WHERE id = 2');
ok(wait_until(sub { !$redis->exists_key('item:2') }, 10), 'first send delivered');
$redis->cmd('SET', 'item:2', 'refilled');
is($primary->safe_psql('postgres', 'SELECT cachebust.barrier(200)'), 'f',
	'barrier waits for the second send held by the absent standby');
reload_settings($primary, q{ALTER SYSTEM SET cachebust.standby_names = ''});
ok(wait_until(sub { !$redis->exists_key('item:2') }, 10), 'emptied standby_names releases the waiting second send');
is($primary->safe_psql('postgres', 'SELECT cachebust.barrier(10000)'), 't', 'and barrier returns true');

# ---- a second send waiting at a clean stop survives the restart
reload_settings($primary,
	q{ALTER SYSTEM SET cachebust.standby_names = 'standby'},
	q{ALTER SYSTEM SET cachebust.standby_max_wait_ms = 600000});
$reader->quit;
$standby->stop;
$primary->safe_psql('postgres', 'UPDATE items SET v = 10 WHERE id = 3');
ok(wait_until(sub { !$redis->exists_key('item:3') }, 10), 'first send delivered with the standby down');
$redis->cmd('SET', 'item:3', 'refilled');
$primary->restart;
is($redis->exists_key('item:3'), 1, 'the second send still waits after the restart');
$standby->start;
ok(wait_until(sub { !$redis->exists_key('item:3') }, 30), 'and goes out once the standby has replayed');

$writer->quit;
$standby->stop;
$primary->stop;
$redis->stop;
done_testing();
