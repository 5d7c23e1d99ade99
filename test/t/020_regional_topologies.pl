# Regional caches on every topology (issue 24): the standby's own Redis is,
# in turn, a TLS server (verified against a CA of the test's own), a
# Sentinel group failed over while commits stream, and a Cluster whose
# slots move and one of whose masters fails over while commits stream.
# One primary (with its own plain Redis A) and one standby for the whole
# file; the standby's cachebust.redis_url is changed in its configuration
# file and reloaded (ALTER SYSTEM cannot run on a standby).
#
# In each part cache-aside readers on the standby fill the regional Redis
# (all keys first, then misses while the writers run on the primary, so
# they also fill old rows the standby has not replayed yet). Once the
# writers stopped and the standby delivered through the primary's last
# LSN: no key in the regional Redis differs from the standby's row, the
# keys of rows nobody wrote are all still there (a fallback would have
# removed them), and the standby ran no fallback.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use Cwd ();
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $rows = 800;    # ids 1 .. $written are updated by the writers, the rest never
my $written = 600;

my $redis_a = start_redis();
my $primary = cachebust_node('primary', $redis_a, q{
cachebust.key_prefix = 'app:'
}, allows_streaming => 1);
$primary->safe_psql('postgres', qq{
CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO items SELECT g FROM generate_series(1, $rows) g;
SELECT cachebust.watch('items', keys => ARRAY['items:{id}']);
});
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
# The copied configuration delivers to Redis A: none until the first part.
# redelete_ms: a reader that read a row just before its replay and stores
# it just after the delete (README, "Regions and standbys").
$standby->append_conf('postgresql.conf', q{
cachebust.redis_url = ''
recovery_min_apply_delay = 300ms
cachebust.redelete_ms = 300
cachebust.connect_timeout_ms = 300
cachebust.command_timeout_ms = 1000
cachebust.retry_max_ms = 300
});
$standby->start;
$primary->wait_for_catchup($standby, 'replay');

# The writers: pgbench on the primary, at a modest rate (two cores).
my $script = $primary->basedir . '/update.sql';
open(my $fh, '>', $script) or die "cannot write $script: $!";
print $fh "\\set id random(1, $written)\nUPDATE items SET v = v + 1 WHERE id = :id;\n";
close $fh;

sub start_writers
{
	my $out = '';
	my $h = IPC::Run::start([ 'pgbench', '-n', '-c', 2, '-j', 2, '-T', 120, '-R', 100, '-f', $script,
		'-h', $primary->host, '-p', $primary->port, 'postgres' ], '>', \$out, '2>', \$out);
	my $before = $primary->safe_psql('postgres', 'SELECT sum(v) FROM items');
	ok(wait_until(sub { $primary->safe_psql('postgres', 'SELECT sum(v) FROM items') > $before + 50 }, 20),
		'the writers are running');
	return $h;
}

# Stopped, and their sessions gone: no commit lands after the LSN read next.
sub stop_writers
{
	my ($h) = @_;
	$h->kill_kill;
	$h->finish;
	$primary->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'pgbench'})
	  or die 'pgbench sessions stay';
}

# The regional readers' connection to the standby (one session, as an
# application server keeps one).
my $reader = $standby->background_psql('postgres');

# Cache-aside: a key missing from the regional cache is read from the
# standby and stored. $cache: { get => sub($key), set => sub($key, $value) }
# on whichever server holds the key now; a reader that fails to store
# (a server changing role) just goes on.
sub read_through
{
	my ($cache, @ids) = @_;
	for my $id (@ids)
	{
		my $key = "app:items:$id";
		my $cached = eval { $cache->{get}->($key) };
		next if defined $cached || $@;
		my $v = $reader->query_safe("SELECT v FROM items WHERE id = $id");
		eval { $cache->{set}->($key, $v) };
	}
}

# Read-through rounds of random written ids until $done returns true (or
# $seconds pass if it is a number).
sub readers_until
{
	my ($cache, $done) = @_;
	my $deadline = ref $done ? time + 60 : time + $done;
	while (time < $deadline)
	{
		last if ref $done && $done->();
		read_through($cache, map { 1 + int(rand($written)) } 1 .. 20);
	}
	return ref $done ? $done->() : 1;
}

sub rows_on_standby
{
	return map { split /\|/ } split /\n/, $standby->safe_psql('postgres', 'SELECT id, v FROM items ORDER BY id');
}

# wait_for_lsn() on the standby, polled for up to a minute; a wait over
# 10 s is said, with the worker's stats.
sub standby_delivered
{
	my ($lsn) = @_;
	my $start = time;
	my $ok = wait_until(sub { $standby->safe_psql('postgres', "SELECT cachebust.wait_for_lsn('$lsn', 1000)") eq 't' }, 60);
	my $took = time - $start;
	diag(sprintf('wait_for_lsn took %.1f s; stats: ', $took)
		  . $standby->safe_psql('postgres',
			'SELECT delivered_lsn, delivery_lag_bytes, pending_targets, connected, last_error FROM cachebust.stats'))
	  if $took > 10;
	return $ok;
}

# Points the standby's worker at another Redis and waits until it says so.
sub point_standby_at
{
	my ($conf, $scheme) = @_;
	my $offset = -s $standby->logfile;
	$standby->append_conf('postgresql.conf', $conf);
	$standby->reload;
	$standby->wait_for_log(qr/cachebust worker delivers to \Q$scheme\E:\/\//, $offset);
}

# One part: fill every key, stream writes (with $during run while they do),
# then check the regional cache against the standby's rows.
sub regional_part
{
	my ($name, $cache, $during) = @_;
	read_through($cache, 1 .. $rows);
	my %before = rows_on_standby();
	my $writers = start_writers();
	$during->();
	stop_writers($writers);
	my $lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	ok(standby_delivered($lsn), "$name: wait_for_lsn() on the standby with the primary's LSN after the writes");
	my %row = rows_on_standby();
	my $changed = grep { $row{$_} != $before{$_} } 1 .. $rows;
	cmp_ok($changed, '>', 100, "$name: the writers changed $changed rows whose keys were cached");
	my @stale;
	ok(wait_until(sub {
		@stale = grep {
			my $cached = eval { $cache->{get}->("app:items:$_") };
			defined $cached && $cached ne $row{$_};
		} 1 .. $written;
		!@stale;
	}, 15), "$name: no stale key in the regional Redis")
	  or diag(scalar(@stale) . ' stale, the first: ' . join(' ', @stale[ 0 .. ($#stale < 9 ? $#stale : 9) ]));
	my $kept = grep { defined $cache->{get}->("app:items:$_") } $written + 1 .. $rows;
	is($kept, $rows - $written, "$name: the keys of rows nobody wrote are all still there");
	is($standby->safe_psql('postgres', 'SELECT fallbacks FROM cachebust.stats'), '0', "$name: no fallback on the standby");
}

# ---- TLS: rediss:// with a password, verified (tls_verify = full) against our CA
my $certs = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir('certs'));
make_tls_certs($certs, 'ca', server => 'IP:127.0.0.1,DNS:localhost');
my $tls_port = PostgreSQL::Test::Cluster::get_free_port();
# (The test's own client uses the plaintext port.)
my $tls = start_redis('--tls-port', $tls_port, '--tls-cert-file', "$certs/server.crt",
	'--tls-key-file', "$certs/server.key", '--tls-ca-cert-file', "$certs/ca.crt", '--tls-auth-clients', 'no',
	'--requirepass', 'region-pw');
my $tls_cache = { get => sub { $tls->cmd('GET', $_[0]) }, set => sub { $tls->cmd('SET', @_) } };
my $offset = -s $standby->logfile;
point_standby_at(qq{
cachebust.redis_url = 'rediss://:region-pw\@127.0.0.1:$tls_port/0'
cachebust.tls_ca_file = '$certs/ca.crt'
cachebust.tls_verify = full
}, 'rediss');
$standby->wait_for_log(qr/cachebust worker delivers what this standby replays/, $offset);
regional_part('TLS', $tls_cache, sub { readers_until($tls_cache, 3) });
is($standby->safe_psql('postgres', 'SELECT connected FROM cachebust.stats'), 't', 'TLS: connected to the TLS port');
$tls->stop;

# ---- Sentinel: one master, one replica, three sentinels; SENTINEL FAILOVER while commits stream
my $master = start_redis();
my $replica = start_redis('--replicaof', '127.0.0.1', $master->{port});
my @sentinels = map { start_sentinel('region', $master->{port}, 2) } 1 .. 3;
ok(wait_until(sub {
	my $known = eval { $sentinels[0]->cmd('SENTINEL', 'replicas', 'region') } // [];
	grep { my %r = @$_; $r{flags} eq 'slave' && ($r{'master-link-status'} // '') eq 'ok' } @$known;
}, 30), 'Sentinel: the sentinels know the replica, and it follows');
my %by_port = map { ($_->{port} => $_) } $master, $replica;
sub sentinel_master
{
	my $addr = $sentinels[0]->cmd('SENTINEL', 'get-master-addr-by-name', 'region');
	return $by_port{ $addr->[1] };
}
my $sentinel_cache = {
	get => sub { sentinel_master()->cmd('GET', $_[0]) },
	set => sub { sentinel_master()->cmd('SET', @_) } };
# SENTINEL FAILOVER promotes the replica, and the old master goes on
# answering as a master until the sentinels demote it, about 10 s later
# (their INFO period): what it acknowledged then is lost when it resyncs.
# The worker must follow the sentinels' answer, not wait for that; a
# failover repeat shorter than the split shows whether it does.
point_standby_at("cachebust.redis_url = 'redis-sentinel://"
	  . join(',', map { "127.0.0.1:$_->{port}" } @sentinels) . "/region'\n"
	  . "cachebust.failover_repeat_ms = 5000\n", 'redis-sentinel');
my $failovers = $standby->safe_psql('postgres', 'SELECT failovers FROM cachebust.stats');
regional_part('Sentinel', $sentinel_cache, sub {
	readers_until($sentinel_cache, 1.5);
	# The replica must have what the readers stored, or keys of unwritten rows are lost with the failover.
	is($master->cmd('WAIT', 1, 5000), 1, 'Sentinel: the replica has the cache');
	ok(wait_until(sub { eval { $sentinels[0]->cmd('SENTINEL', 'FAILOVER', 'region'); 1 } }, 20),
		'Sentinel: SENTINEL FAILOVER while commits stream');
	ok(readers_until($sentinel_cache, sub { ($replica->cmd('ROLE') // [''])->[0] eq 'master'
				&& ($master->cmd('ROLE') // [''])->[0] eq 'slave' }),
		'Sentinel: the replica is the master, the old master its replica');
	ok(readers_until($sentinel_cache, sub {
		$standby->safe_psql('postgres', 'SELECT failovers FROM cachebust.stats') > $failovers }),
		'Sentinel: the standby\'s worker followed the master');
	readers_until($sentinel_cache, 1.5);    # commits delivered to the new master
});
is(sentinel_master()->{port}, $replica->{port}, 'Sentinel: the checks read the new master');
$_->stop for @sentinels;
$master->stop;
$replica->stop;

# ---- Cluster: 3 masters with a replica each; slots move and a master fails over while commits stream
my $cluster = start_cluster(3, 1);
my @masters = $cluster->masters;
my $cluster_cache = {
	get => sub { $cluster->cmd_key($_[0], 'GET', $_[0]) },
	set => sub { $cluster->set_key(@_) } };
point_standby_at("cachebust.redis_url = '" . $cluster->url(2) . "'\n", 'redis-cluster');
my %per_master;
$per_master{ $cluster->node_for("app:items:$_")->{port} }++ for 1 .. $rows;
is(scalar(keys %per_master), 3, 'Cluster: the keys live on all three masters');
regional_part('Cluster', $cluster_cache, sub {
	readers_until($cluster_cache, 1.5);
	my ($from, $to) = map { $_->cmd('CLUSTER', 'MYID') } @masters[ 0, 1 ];
	system_or_bail('redis-cli', '--cluster', 'reshard', "127.0.0.1:$masters[0]{port}", '--cluster-from', $from,
		'--cluster-to', $to, '--cluster-slots', '300', '--cluster-yes', '--cluster-pipeline', '20');
	ok(1, 'Cluster: 300 slots moved while commits stream');
	readers_until($cluster_cache, 1.5);
	# A manual failover of the third master: its replica takes over.
	my $old = $masters[2];
	my ($successor) = grep {
		my $role = eval { $_->cmd('ROLE') } // [''];
		$role->[0] eq 'slave' && $role->[2] == $old->{port};
	} $cluster->nodes;
	$successor->cmd('CLUSTER', 'FAILOVER');
	ok(readers_until($cluster_cache, sub { ($successor->cmd('ROLE') // [''])->[0] eq 'master' }),
		'Cluster: a master failed over while commits stream');
	readers_until($cluster_cache, 1.5);
});
$cluster->stop;

$reader->quit;
$standby->stop;
$primary->stop;
done_testing();
