# A standby promoted after its primary died replays, from WAL, what that
# primary had committed but not delivered (issue 23, item 5). The
# primary's worker writes progress records into WAL; the standby's worker
# follows them as they are replayed and keeps a slot of its own there;
# once promoted it reads the journal from that slot. Keys of rows nobody
# changed must survive, so a fallback cannot pass for a replay.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $redis = start_redis();
my $primary = cachebust_node('primary', $redis, q{
cachebust.key_prefix = 'app:'
cachebust.command_timeout_ms = 300
cachebust.connect_timeout_ms = 300
}, allows_streaming => 1);
$primary->safe_psql('postgres', q{
CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO kv SELECT g FROM generate_series(1, 2000) g;
SELECT cachebust.watch('kv', keys => ARRAY['kv:{id}']);
});
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
# No Redis of its own while it is a standby (it only follows the primary's
# progress; with one it would deliver what it replays: 019_regional.pl).
$standby->append_conf('postgresql.conf', "cachebust.redis_url = ''\n");
$standby->start;
$primary->wait_for_catchup($standby, 'replay');

sub slot_on_standby
{
	return $standby->safe_psql('postgres',
		q{SELECT coalesce(restart_lsn::text, '') FROM pg_replication_slots WHERE slot_name = 'cachebust'});
}

# ---- the standby's worker follows the primary's progress with a slot of its own
ok(wait_until(sub { slot_on_standby() ne '' }, 30), "the standby's worker keeps a slot of its own");
my $before = slot_on_standby();
$primary->safe_psql('postgres', q{UPDATE kv SET v = 1 WHERE id = 2000});
is($primary->safe_psql('postgres', 'SELECT cachebust.barrier(5000)'), 't', 'a delivery on the primary');
ok(wait_until(sub {
	my $now = slot_on_standby();
	$standby->safe_psql('postgres', "SELECT '$now'::pg_lsn > '$before'::pg_lsn") eq 't';
}, 30), "the standby's slot follows the primary's progress records");

# ---- Redis down; commits the primary cannot deliver; the primary dies
sub count_existing
{
	my (@keys) = @_;
	my $n = 0;
	while (my @chunk = splice(@keys, 0, 1000)) { $n += $redis->cmd('EXISTS', @chunk); }
	return $n;
}
$redis->cmd('MSET', map { ("app:kv:$_", 'cached') } 1 .. 1000);
$redis->cmd('MSET', map { ("app:kv:$_", 'cached') } 1001 .. 2000);
is(count_existing(map { "app:kv:$_" } 1 .. 2000), 2000, 'every key cached before Redis goes down');
$redis->cmd('SAVE');
$redis->stop('KILL');

$primary->safe_psql('postgres', "UPDATE kv SET v = v + 1 WHERE id = $_") for 1 .. 100;
$primary->safe_psql('postgres', q{UPDATE kv SET v = v + 1 WHERE id BETWEEN 101 AND 300});
$primary->wait_for_catchup($standby, 'replay');
is($primary->safe_psql('postgres', 'SELECT cachebust.barrier(0)'), 'f', 'the primary holds them undelivered');
$primary->stop('immediate');

$standby->promote;
# The new primary delivers to the Redis the old one used.
$standby->safe_psql('postgres', "ALTER SYSTEM SET cachebust.redis_url = '" . $redis->url . "'");
$standby->reload;
$redis->start;
unlink("$redis->{dir}/dump.rdb");

# ---- the promoted standby replays: committed keys gone, the others survive
ok(wait_until(sub { $standby->safe_psql('postgres', 'SELECT cachebust.barrier(1000)') eq 't' }, 60),
	'the promoted server delivered everything');
is(count_existing(map { "app:kv:$_" } 1 .. 300), 0, 'every key the dead primary had not delivered is gone');
is(count_existing(map { "app:kv:$_" } 301 .. 1999), 1699, 'keys of untouched rows survive (no fallback)');
is($standby->safe_psql('postgres', 'SELECT fallbacks FROM cachebust.stats'), '0', 'no fallback ran');
ok($standby->safe_psql('postgres', 'SELECT journal_replayed_batches FROM cachebust.stats') >= 101,
	'the old primary\'s commits were replayed from WAL');
ok($standby->log_contains('cachebust journal replay started: the previous run of the server'),
	'the log says the replay started');

# ---- and it goes on as a primary
$standby->safe_psql('postgres', q{UPDATE kv SET v = v + 1 WHERE id = 1500});
is($standby->safe_psql('postgres', 'SELECT cachebust.wait_for_delivery(5000)'), 't', 'a new commit is delivered');
is($redis->exists_key('app:kv:1500'), 0, 'by the promoted server');

$standby->stop;
done_testing();
