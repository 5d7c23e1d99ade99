# CachebustTest — shared pieces of the TAP integration tests: a Redis server
# of the test's own on a free loopback port, a tiny binary-safe RESP client,
# and a PostgreSQL node with cachebust preloaded and pointed at that Redis.
package CachebustTest;

use strict;
use warnings;

use Cwd ();
use Exporter 'import';
use IO::Socket::INET;
use POSIX ':sys_wait_h';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(start_redis start_sentinel start_cluster make_tls_certs cachebust_node wait_until wait_all_delivered reload_settings stat_value worker_pid
  invalidate_journal_slot);

# ---- Redis -------------------------------------------------------------

# Starts redis-server on a free 127.0.0.1 port; extra args are passed on.
sub start_redis
{
	my (@extra) = @_;
	my $self = bless {}, 'CachebustTest::Redis';
	$self->{port} = PostgreSQL::Test::Cluster::get_free_port();
	$self->{dir} = PostgreSQL::Test::Utils::tempdir('redis');
	$self->{extra} = [@extra];
	# The test's own client authenticates like any other.
	for my $i (0 .. $#extra - 1)
	{
		$self->{password} = $extra[ $i + 1 ] if $extra[$i] eq '--requirepass';
	}
	$self->start;
	return $self;
}

# Starts a redis-sentinel on a free loopback port monitoring $service at
# 127.0.0.1:$master_port (quorum $quorum); it fails over within seconds.
# Extra lines go into its configuration file (TLS, passwords).
sub start_sentinel
{
	my ($service, $master_port, $quorum, @extra_lines) = @_;
	my $self = bless {}, 'CachebustTest::Redis';
	$self->{port} = PostgreSQL::Test::Cluster::get_free_port();
	$self->{dir} = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir('sentinel'));
	my $conf = "$self->{dir}/sentinel.conf";
	open(my $fh, '>', $conf) or die "cannot write $conf: $!";
	print $fh join("\n",
		"port $self->{port}",
		'bind 127.0.0.1',
		"dir $self->{dir}",
		"sentinel monitor $service 127.0.0.1 $master_port $quorum",
		"sentinel down-after-milliseconds $service 1000",
		"sentinel failover-timeout $service 4000",
		"sentinel parallel-syncs $service 1",
		@extra_lines), "\n";
	close $fh;
	$self->{program} = 'redis-sentinel';
	$self->{args} = [$conf];
	for (@extra_lines)
	{
		$self->{password} = $1 if /^requirepass (\S+)$/;
	}
	$self->start;
	return $self;
}

# A Redis Cluster of $masters masters with $replicas replicas each, made by
# redis-cli --cluster create; nodes time out after a second, so a killed
# master is replaced quickly. Returns a CachebustTest::Cluster.
sub start_cluster
{
	my ($masters, $replicas) = @_;
	my @nodes;
	for (1 .. $masters * (1 + $replicas))
	{
		my $node = bless {}, 'CachebustTest::Redis';
		$node->{port} = PostgreSQL::Test::Cluster::get_free_port();
		$node->{dir} = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir('cluster'));
		$node->{extra} = [ '--cluster-enabled', 'yes', '--cluster-config-file', "$node->{dir}/nodes.conf",
			'--cluster-port', PostgreSQL::Test::Cluster::get_free_port(), '--cluster-node-timeout', '1000',
			'--enable-debug-command', 'local' ];
		$node->start;
		push @nodes, $node;
	}
	system_or_bail('redis-cli', '--cluster', 'create', (map { "127.0.0.1:$_->{port}" } @nodes),
		'--cluster-replicas', $replicas, '--cluster-yes');
	my $cluster = bless { nodes => \@nodes }, 'CachebustTest::Cluster';
	CachebustTest::wait_until(sub {
		!grep { ($_->cmd('CLUSTER', 'INFO') // '') !~ /cluster_state:ok/ } @nodes;
	}, 30) or die 'the cluster did not come up';
	return $cluster;
}

# A CA and certificates signed by it, made with openssl in $dir:
# $dir/$ca.crt, and for each name $dir/$name.crt / .key with the given
# subjectAltName (e.g. "IP:127.0.0.1,DNS:localhost").
sub make_tls_certs
{
	my ($dir, $ca, %certs) = @_;
	my @ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes');
	unless (-f "$dir/$ca.crt")
	{
		system_or_bail('openssl', 'req', '-x509', @ec, '-keyout', "$dir/$ca.key", '-out', "$dir/$ca.crt",
			'-days', '2', '-subj', "/CN=$ca");
	}
	for my $name (sort keys %certs)
	{
		open(my $ext, '>', "$dir/$name.ext") or die;
		print $ext "subjectAltName=$certs{$name}\nextendedKeyUsage=serverAuth,clientAuth\n";
		close $ext;
		system_or_bail('openssl', 'req', @ec, '-keyout', "$dir/$name.key", '-out', "$dir/$name.csr",
			'-subj', "/CN=$name");
		system_or_bail('openssl', 'x509', '-req', '-in', "$dir/$name.csr", '-CA', "$dir/$ca.crt",
			'-CAkey', "$dir/$ca.key", '-CAcreateserial', '-out', "$dir/$name.crt", '-days', '2',
			'-extfile', "$dir/$name.ext");
		chmod 0600, "$dir/$name.key";
	}
}

# Polls $code until it returns true or $timeout seconds pass.
sub wait_until
{
	my ($code, $timeout) = @_;
	$timeout //= 10;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		return 1 if $code->();
		usleep(20_000);
	}
	return $code->() ? 1 : 0;
}

# Waits until the worker has acknowledged every committed batch of the
# cluster (any session); true on success.
sub wait_all_delivered
{
	my ($node, $timeout) = @_;
	return wait_until(sub {
		my $done = eval { $node->safe_psql('postgres',
			'SELECT delivered_seq >= enqueued_seq FROM cachebust.stats()') } // '';
		return $done eq 't';
	}, $timeout // 10);
}

# Applies ALTER SYSTEM statements (or none), reloads, and waits until the
# worker says it has reloaded: no guessing how long a reload takes.
sub reload_settings
{
	my ($node, @statements) = @_;
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', join('', map { "$_;\n" } @statements) . 'SELECT pg_reload_conf();');
	$node->wait_for_log(qr/cachebust worker reloaded its settings/, $offset);
}

# Writes WAL past the journal's slot and checkpoints until the checkpointer
# invalidates it (max_slot_wal_keep_size must be small); true once it has.
# Waits for the checkpointer's LOG line, not for wal_status = 'lost': the
# worker may already have made the slot again. $filler: a table (x text).
sub invalidate_journal_slot
{
	my ($node, $filler) = @_;
	my $offset = -s $node->logfile;
	for (1 .. 5)
	{
		$node->safe_psql('postgres',
			qq{INSERT INTO $filler SELECT repeat('x', 100) FROM generate_series(1, 1000); SELECT pg_switch_wal()});
		$node->safe_psql('postgres', qq{INSERT INTO $filler VALUES ('y'); CHECKPOINT});
		return 1 if $node->log_contains('invalidating slot "cachebust"', $offset);
	}
	return 0;
}

# One column of cachebust.stats.
sub stat_value
{
	my ($node, $column, $db) = @_;
	return $node->safe_psql($db // 'postgres', "SELECT $column FROM cachebust.stats()");
}

# The worker's pid ('' while there is none).
sub worker_pid
{
	my ($node) = @_;
	return eval {
		$node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'cachebust worker'});
	} // '';
}

# A node with cachebust preloaded, delivering to $redis (undef: no
# cachebust.redis_url at all, so the worker delivers nowhere). %init goes to
# PostgreSQL::Test::Cluster::init (allows_streaming => 1 for a primary).
sub cachebust_node
{
	my ($name, $redis, $extra_conf, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	my $url = $redis ? "cachebust.redis_url = '" . $redis->url . "'" : '';
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'cachebust'
$url
cachebust.debounce_ms = 20
cachebust.retry_max_ms = 200
max_prepared_transactions = 2
});
	$node->append_conf('postgresql.conf', $extra_conf) if $extra_conf;
	# CACHEBUST_WATCH_CAPTURE=row: watch() makes row triggers even where it
	# would capture per statement (test/run_all.sh runs the core tests both ways).
	$node->append_conf('postgresql.conf', "cachebust_internal.watch_capture = 'row'\n")
	  if ($ENV{CACHEBUST_WATCH_CAPTURE} // '') eq 'row';
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION cachebust');
	return $node;
}

package CachebustTest::Redis;

use strict;
use warnings;

use IO::Socket::INET;
use POSIX ':sys_wait_h';
use Test::More;
use Time::HiRes qw(time usleep);

sub url
{
	my ($self, $db) = @_;
	return "redis://127.0.0.1:$self->{port}/" . ($db // 0);
}

sub start
{
	my ($self) = @_;
	my $log = "$self->{dir}/redis.log";
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>>', $log) or die;
		open(STDERR, '>&', \*STDOUT) or die;
		if ($self->{program})
		{
			exec($self->{program}, @{ $self->{args} }) or die "exec $self->{program}: $!";
		}
		exec('redis-server', '--port', $self->{port}, '--bind', '127.0.0.1',
			'--save', '', '--appendonly', 'no', '--dir', $self->{dir},
			'--daemonize', 'no', @{ $self->{extra} })
		  or die "exec redis-server: $!";
	}
	$self->{pid} = $pid;
	my $up = CachebustTest::wait_until(sub {
		my $reply = eval { $self->reconnect; $self->cmd('PING') };
		return defined $reply && $reply eq 'PONG';
	}, 10);
	die "redis-server did not start on port $self->{port}" unless $up;
}

# Restarts the server with other extra arguments (e.g. a renewed certificate).
sub restart_with
{
	my ($self, @extra) = @_;
	$self->stop;
	$self->{extra} = [@extra];
	$self->start;
}

# Stops the server: 'TERM' (default) or 'KILL' for a crash.
sub stop
{
	my ($self, $signal) = @_;
	return unless $self->{pid};
	kill($signal // 'TERM', $self->{pid});
	waitpid($self->{pid}, 0);
	delete $self->{pid};
	delete $self->{sock};
}

sub reconnect
{
	my ($self) = @_;
	$self->{sock} = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $self->{port},
		Proto => 'tcp',
		Timeout => 2) or die "connect to redis: $!";
	binmode($self->{sock});
	$self->cmd('AUTH', $self->{password}) if defined $self->{password};
}

# Sends one command (argv, binary-safe) and returns the decoded reply:
# a scalar, undef for nil, an array ref, or dies with the error reply.
sub cmd
{
	my ($self, @argv) = @_;
	my $req = '*' . scalar(@argv) . "\r\n";
	$req .= '$' . length($_) . "\r\n$_\r\n" for @argv;
	# A server may drop its clients (Sentinel does at a failover): reconnect once.
	for my $attempt (1, 2)
	{
		$self->reconnect unless $self->{sock};
		my $reply = eval {
			print { $self->{sock} } $req or die "write to redis: $!\n";
			[ $self->read_reply ];
		};
		return $reply->[0] if $reply;
		my $error = $@;
		die $error if $error =~ /^redis error:/ || $attempt == 2;
		delete $self->{sock};
	}
}

# Reads one reply (also used for pub/sub messages).
sub read_reply
{
	my ($self) = @_;
	my $sock = $self->{sock};
	my $line = <$sock>;
	die "redis closed the connection" unless defined $line;
	$line =~ s/\r\n$//;
	my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));
	return $rest if $type eq '+';
	die "redis error: $rest\n" if $type eq '-';
	return $rest + 0 if $type eq ':';
	if ($type eq '$')
	{
		return undef if $rest < 0;
		my $buf = '';
		while (length($buf) < $rest + 2)
		{
			my $n = read($sock, $buf, $rest + 2 - length($buf), length($buf));
			die "short read from redis" unless $n;
		}
		return substr($buf, 0, $rest);
	}
	if ($type eq '*')
	{
		return undef if $rest < 0;
		return [ map { $self->read_reply } 1 .. $rest ];
	}
	die "unexpected redis reply: $line";
}

sub exists_key
{
	my ($self, $key) = @_;
	return $self->cmd('EXISTS', $key);
}

# Calls of one command, from INFO commandstats (0 when never called).
sub command_calls
{
	my ($self, $command) = @_;
	my $info = $self->cmd('INFO', 'commandstats');
	return $info =~ /^cmdstat_\Q$command\E:calls=(\d+)/m ? $1 : 0;
}

# Sets $key to $value; true if that came before Redis ran $command for the
# ($calls + 1)th time. Redis runs commands one at a time, in order, so a
# count read after the SET that is still $calls means the next $command
# comes after the SET. Orders a test's write against the worker's without
# timing either.
sub set_before_call
{
	my ($self, $key, $value, $command, $calls) = @_;
	$self->cmd('SET', $key, $value);
	return $self->command_calls($command) == $calls;
}

sub DESTROY
{
	my ($self) = @_;
	$self->stop if $self->{pid};
}

package CachebustTest::Cluster;

use strict;
use warnings;

# Redis Cluster's CRC16 (XMODEM) and hash tags, for the test's own routing.
sub slot
{
	my ($key) = @_;
	if ($key =~ /\{/)
	{
		my $open = index($key, '{');
		my $close = index($key, '}', $open + 1);
		$key = substr($key, $open + 1, $close - $open - 1) if $close > $open + 1;
	}
	my $crc = 0;
	for my $byte (unpack('C*', $key))
	{
		$crc ^= $byte << 8;
		for (1 .. 8)
		{
			$crc = ($crc & 0x8000) ? (($crc << 1) ^ 0x1021) & 0xffff : ($crc << 1) & 0xffff;
		}
	}
	return $crc % 16384;
}

sub nodes { return @{ $_[0]{nodes} }; }

# The masters, now (after failovers too), as Redis objects that are running.
sub masters
{
	my ($self) = @_;
	return grep { $_->{pid} && (eval { $_->cmd('ROLE')->[0] } // '') eq 'master' } $self->nodes;
}

# The node serving $key's slot, asked of the cluster itself.
sub node_for
{
	my ($self, $key) = @_;
	my $slot = slot($key);
	for my $asked (grep { $_->{pid} } $self->nodes)
	{
		my $slots = eval { $asked->cmd('CLUSTER', 'SLOTS') } or next;
		for my $range (@$slots)
		{
			next unless $slot >= $range->[0] && $slot <= $range->[1];
			my ($port) = $range->[2][1];
			my ($node) = grep { $_->{port} == $port } $self->nodes;
			return $node if $node;
		}
	}
	die "no node serves slot $slot";
}

# A command on the key's node (following MOVED once).
sub cmd_key
{
	my ($self, $key, @cmd) = @_;
	my $node = $self->node_for($key);
	my $reply = eval { $node->cmd(@cmd) };
	return $reply unless $@;
	die $@ unless $@ =~ /MOVED \d+ [\d.]+:(\d+)/;
	my ($moved) = grep { $_->{port} == $1 } $self->nodes;
	return $moved->cmd(@cmd);
}

sub exists_key { my ($self, $key) = @_; return $self->cmd_key($key, 'EXISTS', $key); }
sub set_key { my ($self, $key, $value) = @_; return $self->cmd_key($key, 'SET', $key, $value // 'cached'); }

# How many of @keys exist, wherever they live.
sub count_existing
{
	my ($self, @keys) = @_;
	my $n = 0;
	$n += $self->exists_key($_) for @keys;
	return $n;
}

sub url
{
	my ($self, $seeds) = @_;
	my @nodes = $self->nodes;
	return 'redis-cluster://' . join(',', map { "127.0.0.1:$_->{port}" } @nodes[ 0 .. ($seeds // 2) - 1 ]);
}

sub stop { $_->stop for $_[0]->nodes; }

1;
