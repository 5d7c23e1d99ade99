# Regional caches (issue 24): a standby that lost WAL it still had to
# deliver — its cachebust slot invalidated by max_slot_wal_keep_size while
# its Redis was unreachable — covers its own key prefix with the fallback,
# says so, counts it, and goes on delivering from the replay position.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $redis_b = start_redis();
my $primary = cachebust_node('primary', undef, q{
cachebust.key_prefix = 'app:'
}, allows_streaming => 1);
$primary->safe_psql('postgres', q{
CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO items SELECT g FROM generate_series(1, 200) g;
SELECT cachebust.watch('items', keys => ARRAY['items:{id}']);
CREATE TABLE filler (x text);
});
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
# Reading stops at 50 targets held (max_pending / 2), so the slot holds the rest;
# it may keep only 1 MB of WAL behind.
$standby->append_conf('postgresql.conf', "cachebust.redis_url = '" . $redis_b->url . "'\n"
	. "cachebust.key_prefix = 'app:'\ncachebust.max_pending = 100\nmax_slot_wal_keep_size = 1\n"
	. "cachebust.command_timeout_ms = 500\ncachebust.retry_max_ms = 200\n");
$standby->start;
ok(wait_until(sub { $standby->log_contains('cachebust worker delivers what this standby replays') }, 30),
	'the standby worker delivers to its own Redis');

$redis_b->cmd('SET', "app:items:$_", 'cached') for 1 .. 200;
$redis_b->cmd('SET', 'other:kept', 'x');
# Redis B takes no writes: what the standby replays waits.
$redis_b->cmd('CLIENT', 'PAUSE', '300000', 'WRITE');
$primary->safe_psql('postgres', 'UPDATE items SET v = v + 1');
# More WAL than the slot may keep, then a restartpoint on the standby.
for (1 .. 4)
{
	$primary->safe_psql('postgres',
		q{INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 2000); SELECT pg_switch_wal()});
}
$primary->safe_psql('postgres', 'CHECKPOINT');
$primary->wait_for_catchup($standby, 'replay');
# (The worker makes a new slot as soon as it sees the old one invalidated,
# so PostgreSQL's own log line is what says it happened.)
ok(wait_until(sub {
	$standby->safe_psql('postgres', 'CHECKPOINT');
	$standby->log_contains(qr/invalidating slot "cachebust" because its restart_lsn \S+ exceeds max_slot_wal_keep_size/) }, 60),
	'the standby\'s cachebust slot lost its WAL');
is($redis_b->exists_key('app:items:150'), 1, '(nothing was delivered while Redis was paused)');

# Redis is back: the fallback covers the standby's prefix, counted and logged.
my $offset = -s $standby->logfile;
$redis_b->cmd('CLIENT', 'UNPAUSE');
ok(wait_until(sub { $standby->safe_psql('postgres', 'SELECT fallbacks FROM cachebust.stats') >= 1 }, 60),
	'the standby counts a fallback');
ok(wait_until(sub { $redis_b->cmd('DBSIZE') == 1 }, 30), 'every key under its prefix is gone');
is($redis_b->exists_key('other:kept'), 1, 'a key outside the prefix is left alone');
ok($standby->log_contains(qr/WARNING:.*(cannot read the WAL this standby replayed|on this standby was invalidated)/, $offset),
	'the standby says why');

# It goes on: a later commit is delivered exactly.
$redis_b->cmd('SET', 'app:items:7', 'cached');
$redis_b->cmd('SET', 'app:items:8', 'cached');
$primary->safe_psql('postgres', 'UPDATE items SET v = v + 1 WHERE id = 7');
my $lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_until(sub { $standby->safe_psql('postgres', "SELECT cachebust.wait_for_lsn('$lsn', 100)") eq 't' }, 60),
	'wait_for_lsn() on the standby after the loss');
is($redis_b->exists_key('app:items:7'), 0, 'a later commit is delivered');
is($redis_b->exists_key('app:items:8'), 1, 'exactly');

$standby->stop;
$primary->stop;
done_testing();
