# A wall clock stepped backwards (issue 21, item 12): the coalescing window,
# backoff and deadlines run on the monotonic clock, so the staleness bound
# holds. The server runs under libfaketime, which moves only the wall clock
# (DONT_FAKE_MONOTONIC), driven by a file the test writes.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $libfaketime = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
-e $libfaketime or BAIL_OUT("$libfaketime is missing (Debian package faketime)");

my $redis = start_redis();
my $clock = PostgreSQL::Test::Utils::tempdir('clock') . '/offset';
PostgreSQL::Test::Utils::append_to_file($clock, "+0\n");

my $node;
{
	local $ENV{LD_PRELOAD} = $libfaketime;
	local $ENV{FAKETIME_TIMESTAMP_FILE} = $clock;
	local $ENV{FAKETIME_NO_CACHE} = '1';
	local $ENV{DONT_FAKE_MONOTONIC} = '1';
	$node = cachebust_node('clock', $redis, "cachebust.debounce_ms = 3000\ncachebust.key_prefix = 'c:'");
}
$node->safe_psql('postgres', q{CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0); INSERT INTO t VALUES (1);
  SELECT cachebust.watch('t', keys => ARRAY['t:{id}'])});

sub set_offset
{
	open(my $fh, '>', $clock) or die "cannot write $clock: $!";
	print $fh "$_[0]\n";
	close $fh;
}

# Step the wall clock back an hour while a window is open.
$redis->cmd('SET', 'c:t:1', 'cached');
my $session = $node->background_psql('postgres');
$session->query_safe('UPDATE t SET v = v + 1 WHERE id = 1');
ok(wait_until(sub { stat_value($node, 'pending_targets') eq '1' }), 'the window is open');
set_offset('-1h');
ok(wait_until(sub { $node->safe_psql('postgres', q{SELECT now() < pg_postmaster_start_time()}) eq 't' }),
	'the server\'s wall clock went back an hour');
is($session->query_safe('SELECT cachebust.wait_for_delivery(20000)'), 't',
	'the window still closes after debounce_ms, not an hour later');
is($redis->exists_key('c:t:1'), 0, 'the key is gone');
$session->quit;

# And forwards again: nothing is sent early or lost.
set_offset('+0');
$redis->cmd('SET', 'c:t:1', 'cached');
is($node->safe_psql('postgres', 'UPDATE t SET v = v + 1 WHERE id = 1; SELECT cachebust.wait_for_delivery(20000)'), 't',
	'a clock stepped forward changes nothing either');
is($redis->exists_key('c:t:1'), 0, 'the key is gone');

$node->stop;
$redis->stop;
done_testing();
