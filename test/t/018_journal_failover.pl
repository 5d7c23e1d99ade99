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

# ---- a gap in the journal: the new primary's slot loses its WAL
# (max_slot_wal_keep_size) while Redis is down and is made again. Until the
# fallback for what that WAL held has run, the new slot's position is no
# place to replay from: a standby promoted in between must fall back.
my $primary2 = $standby;
$primary2->safe_psql('postgres', 'CREATE EXTENSION pg_walinspect; CREATE TABLE filler (x text)');
$primary2->backup('base2');
my $standby2 = PostgreSQL::Test::Cluster->new('standby2');
$standby2->init_from_backup($primary2, 'base2', has_streaming => 1);
# (The backup's postgresql.auto.conf names the Redis: overridden there.)
$standby2->append_conf('postgresql.auto.conf', "cachebust.redis_url = ''\n");
$standby2->start;
$primary2->wait_for_catchup($standby2, 'replay');
$primary2->safe_psql('postgres', q{ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'});
$primary2->reload;
$redis->cmd('MSET', map { ("app:kv:$_", 'cached') } 1 .. 2000);
$redis->cmd('SAVE');
$redis->stop('KILL');
$primary2->safe_psql('postgres', q{UPDATE kv SET v = v + 1 WHERE id BETWEEN 1 AND 100});

my $offset = -s $primary2->logfile;
ok(invalidate_journal_slot($primary2, 'filler'), "the new primary's slot lost its WAL");
# (WAL from the checkpoint that invalidated the slot on is still there.)
my $from = $primary2->safe_psql('postgres', 'SELECT redo_lsn FROM pg_control_checkpoint()');
$primary2->wait_for_log(qr/journal slot "cachebust" was invalidated/, $offset);
# The worker writes a progress record once the slot is made again (this
# build: "nothing replayable"; before it: the new slot's position).
ok(wait_until(sub {
	$primary2->safe_psql('postgres', qq{SELECT count(*) FROM pg_get_wal_records_info('$from', pg_current_wal_flush_lsn())
	                                    WHERE description LIKE '%prefix "cachebust.progress"%'}) > 0;
}, 60), 'a progress record follows');
$primary2->wait_for_catchup($standby2, 'replay');
$primary2->stop('immediate');

$standby2->promote;
$standby2->safe_psql('postgres', "ALTER SYSTEM SET cachebust.redis_url = '" . $redis->url . "'");
$standby2->reload;
$redis->start;
unlink("$redis->{dir}/dump.rdb");
ok(wait_until(sub { $standby2->safe_psql('postgres', 'SELECT cachebust.barrier(1000)') eq 't' }, 60),
	'the server promoted in the gap delivered everything');
is(count_existing(map { "app:kv:$_" } 1 .. 100), 0, 'the commits whose WAL was lost are covered');
ok($standby2->safe_psql('postgres', 'SELECT fallbacks FROM cachebust.stats') >= 1, 'by the fallback');
ok($standby2->log_contains('cachebust fallback \(prefix\) started'), 'the log says the fallback ran');

$standby2->stop;
done_testing();
