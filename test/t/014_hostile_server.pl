# A hostile or broken server on the Redis port: the worker refuses its
# replies as protocol errors, keeps its memory, reconnects with backoff, and
# still hears a reload that points it at a real Redis.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use IO::Socket::INET;
use POSIX ();
use PostgreSQL::Test::Utils;
use Test::More;

my $redis = start_redis();

# The fake "Redis": whatever a client sends, it answers with a bulk string
# of 9999999999 bytes that never ends. It stops after 512 MB per client, so
# that a worker without limits fails this test instead of eating the machine.
my $fake_port = PostgreSQL::Test::Cluster::get_free_port();
my $fake_dir = PostgreSQL::Test::Utils::tempdir('fake');
my $accepted_file = "$fake_dir/accepted";
my $listener = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => $fake_port,
	Listen => 16,
	ReuseAddr => 1,
	Proto => 'tcp') or die "cannot listen on 127.0.0.1:$fake_port: $!";
my $fake_pid = fork();
die "fork: $!" unless defined $fake_pid;
if ($fake_pid == 0)
{
	$SIG{PIPE} = 'IGNORE';
	my $chunk = 'x' x 65536;
	while (my $client = $listener->accept)
	{
		open(my $log, '>>', $accepted_file) or die;
		print $log "accepted\n";
		close $log;
		my $request;
		sysread($client, $request, 65536);    # the handshake's first command
		my $sent = syswrite($client, "\$9999999999\r\n") // 0;
		while ($sent > 0 && $sent < 512 * 1024 * 1024)
		{
			my $n = syswrite($client, $chunk);
			last unless $n;
			$sent += $n;
		}
		close $client;
	}
	POSIX::_exit(0);    # not exit: the test's END blocks are not the child's
}
close $listener;

# Also when the test dies half-way: a fake left running would keep prove waiting.
END
{
	local $?;    # waitpid sets it, and it is the test's exit status here
	if ($fake_pid)
	{
		kill 'KILL', $fake_pid;
		waitpid($fake_pid, 0);
	}
}

sub accepted
{
	open(my $fh, '<', $accepted_file) or return 0;
	my @lines = <$fh>;
	return scalar @lines;
}

# Resident memory of a process, in kB.
sub rss_kb
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return 0;
	while (<$fh>)
	{
		return $1 if /^VmRSS:\s+(\d+) kB/;
	}
	return 0;
}

my $node = cachebust_node('hostile', undef, qq{
cachebust.redis_url = 'redis://127.0.0.1:$fake_port/0'
cachebust.key_prefix = 'app:'
cachebust.command_timeout_ms = 1000
});
$node->safe_psql('postgres', q{
CREATE TABLE items (id int PRIMARY KEY, v text);
SELECT cachebust.watch('items', keys => ARRAY['item:{id}']);
INSERT INTO items VALUES (1, 'a');
});
$redis->cmd('SET', 'app:item:1', 'stale');

my $worker = worker_pid($node);
ok($worker, 'the worker runs');
my $offset = 0;
$node->wait_for_log(
	qr/delivery to Redis at 127\.0\.0\.1:$fake_port failed: Redis protocol error: a bulk string of 9999999999 bytes/,
	$offset);
pass('the worker logs the oversized reply as a protocol error');
like(stat_value($node, 'last_error'), qr/^Redis protocol error: a bulk string/, 'and shows it in stats.last_error');

# It reconnects with backoff, and each reply is refused at its header: its
# memory stays small however long the fake keeps sending.
my $max_rss = 0;
my $reconnected = wait_until(sub {
	my $rss = rss_kb($worker);
	$max_rss = $rss if $rss > $max_rss;
	return accepted() >= 5;
}, 60);
ok($reconnected, 'the worker reconnects (with backoff) after each protocol error');
my $last_rss = rss_kb($worker);
$max_rss = $last_rss if $last_rss > $max_rss;
note("worker VmRSS peaked at $max_rss kB");
cmp_ok($max_rss, '<', 200 * 1024, 'the worker stays under 200 MB resident');
is(worker_pid($node), $worker, 'the same worker, never restarted');

# A reload reaches it promptly (reload_settings waits for the worker's own
# "reloaded its settings"), and deliveries go to the real Redis.
reload_settings($node, "ALTER SYSTEM SET cachebust.redis_url = '" . $redis->url . "'");
pass('the worker reloaded its settings');
$node->safe_psql('postgres', q{UPDATE items SET v = 'b' WHERE id = 1});
ok(wait_all_delivered($node, 20), 'deliveries resume on the real Redis');
is($redis->exists_key('app:item:1'), 0, 'the stale key is invalidated');

$node->stop;
done_testing();
