# Managed and highly available Redis (issue 12): TLS with the checks users
# rely on, a Sentinel failover under write load, TLS and Sentinel together,
# and an ACL user limited to the key prefix.
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

# (Absolute: redis-server and the PostgreSQL server do not run in our directory.)
my $certs = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir('certs'));
make_tls_certs($certs, 'ca', server => 'IP:127.0.0.1,DNS:localhost', renewed => 'IP:127.0.0.1,DNS:localhost',
	client => 'DNS:cachebust-client', elsewhere => 'DNS:other.example');
make_tls_certs($certs, 'other_ca', stranger => 'IP:127.0.0.1,DNS:localhost');

# A Redis with a plaintext port (for the test's own client) and a TLS port (for cachebust).
sub tls_args
{
	my ($tls_port, $cert, %opt) = @_;
	return ('--tls-port', $tls_port, '--tls-cert-file', "$certs/$cert.crt", '--tls-key-file', "$certs/$cert.key",
		'--tls-ca-cert-file', "$certs/ca.crt", '--tls-auth-clients', $opt{clients} // 'no',
		'--requirepass', 'tls-pw', @{ $opt{extra} // [] });
}

my $tls_port = PostgreSQL::Test::Cluster::get_free_port();
my $redis = start_redis(tls_args($tls_port, 'server'));
my $node = cachebust_node('tls', undef, qq{
cachebust.key_prefix = 'app:'
cachebust.redis_url = 'rediss://:tls-pw\@127.0.0.1:$tls_port/0'
cachebust.tls_ca_file = '$certs/ca.crt'
cachebust.connect_timeout_ms = 500
cachebust.retry_max_ms = 200
});
$node->safe_psql('postgres', q{CREATE TABLE t (id int); SELECT cachebust.watch('t', keys => ARRAY['t:{id}'])});

sub commit_and_check
{
	my ($n, $label) = @_;
	$redis->cmd('SET', "app:t:$n", 'cached');
	my $delivered = $node->safe_psql('postgres', "INSERT INTO t VALUES ($n); SELECT cachebust.wait_for_delivery(5000)");
	is($delivered, 't', "$label: delivered");
	is($redis->exists_key("app:t:$n"), 0, "$label: the key is gone");
}

# ---- delivery over TLS
commit_and_check(1, 'over TLS');
is($redis->cmd('CONFIG', 'GET', 'tls-port')->[1], $tls_port, 'the server really listens with TLS there');

# ---- a server certificate from another CA: refused until the trust is fixed
reload_settings($node, "ALTER SYSTEM SET cachebust.tls_ca_file = '$certs/other_ca.crt'");
$redis->cmd('SET', 'app:t:2', 'cached');
is($node->safe_psql('postgres', 'INSERT INTO t VALUES (2); SELECT cachebust.wait_for_delivery(1000)'), 'f',
	'not delivered to a server the CA does not vouch for');
ok(wait_until(sub { stat_value($node, 'last_error') =~ /certificate verif.*failed/i }),
	'last_error names the verification failure');
is($redis->exists_key('app:t:2'), 1, 'nothing was sent');
reload_settings($node, "ALTER SYSTEM SET cachebust.tls_ca_file = '$certs/ca.crt'");
ok(wait_all_delivered($node, 10), 'delivery resumes once tls_ca_file is fixed by SIGHUP');
is($redis->exists_key('app:t:2'), 0, 'and the waiting key is gone');

# ---- host name checks
my $other_port = PostgreSQL::Test::Cluster::get_free_port();
my $elsewhere = start_redis(tls_args($other_port, 'elsewhere'));
reload_settings($node, "ALTER SYSTEM SET cachebust.redis_url = 'rediss://:tls-pw\@127.0.0.1:$other_port/0'");
$node->safe_psql('postgres', 'INSERT INTO t VALUES (3)');
ok(wait_until(sub { stat_value($node, 'last_error') =~ /certificate verif.*failed.*(mismatch|hostname|IP address)/i }),
	'a certificate for another name is refused under tls_verify = full');
reload_settings($node, q{ALTER SYSTEM SET cachebust.tls_server_name = 'other.example'});
ok(wait_all_delivered($node, 10), 'accepted when tls_server_name names it');
reload_settings($node, 'ALTER SYSTEM RESET cachebust.tls_server_name', q{ALTER SYSTEM SET cachebust.tls_verify = 'ca'});
$node->safe_psql('postgres', 'INSERT INTO t VALUES (4)');
ok(wait_all_delivered($node, 10), 'and under tls_verify = ca, which checks the chain only');
# Issue 22 item 4: tls_verify = none is warned about at start and at every reload while it is in force.
my $unverified = qr/WARNING:  cachebust.tls_verify is "none"/;
my $offset = -s $node->logfile;
reload_settings($node, q{ALTER SYSTEM SET cachebust.tls_verify = 'none'});
like(substr(slurp_file($node->logfile), $offset), $unverified, 'tls_verify = none: a WARNING at the reload that sets it');
$node->safe_psql('postgres', 'INSERT INTO t VALUES (40)');
ok(wait_all_delivered($node, 10), 'a certificate for another name is accepted under tls_verify = none');
$offset = -s $node->logfile;
reload_settings($node);
like(substr(slurp_file($node->logfile), $offset), $unverified, 'again at a reload while it is in force');
$offset = -s $node->logfile;
$node->restart;
ok(wait_until(sub { substr(slurp_file($node->logfile), $offset) =~ $unverified }), 'and at start');
$elsewhere->stop;
reload_settings($node, "ALTER SYSTEM SET cachebust.redis_url = 'rediss://:tls-pw\@127.0.0.1:$tls_port/0'",
	'ALTER SYSTEM RESET cachebust.tls_verify');
$offset = -s $node->logfile;
reload_settings($node);
unlike(substr(slurp_file($node->logfile), $offset), $unverified, 'not once tls_verify is back to full');

# ---- a server that requires client certificates
$redis->restart_with(tls_args($tls_port, 'server', clients => 'yes'));
$node->safe_psql('postgres', 'INSERT INTO t VALUES (5)');
ok(wait_until(sub { stat_value($node, 'last_error') =~ /TLS|closed|certificate/i && stat_value($node, 'connected') eq 'f' }),
	'without a client certificate the server refuses the connection');
reload_settings($node, "ALTER SYSTEM SET cachebust.tls_cert_file = '$certs/client.crt'",
	"ALTER SYSTEM SET cachebust.tls_key_file = '$certs/client.key'");
ok(wait_all_delivered($node, 10), 'with tls_cert_file and tls_key_file it delivers');
commit_and_check(6, 'with a client certificate');

# ---- the server restarted with a renewed certificate: we reconnect
$redis->restart_with(tls_args($tls_port, 'renewed', clients => 'yes'));
commit_and_check(7, 'after the server renewed its certificate');
cmp_ok(stat_value($node, 'reconnects'), '>', 0, 'by reconnecting');

my $log = slurp_file($node->logfile);
unlike($log, qr/tls-pw/, 'the password never appears in the log');
my $key_pem = slurp_file("$certs/client.key");
my ($key_line) = grep { length($_) > 40 && !/-----/ } split /\n/, $key_pem;
unlike($log, qr/\Q$key_line\E/, 'nor key material') if $key_line;
$node->stop;
$redis->stop;

# ---- ACL users: limited to the key prefix and to the commands cachebust sends
my $acl = start_redis();
my @commands = qw(+unlink +eval +evalsha +scan +incr +publish +script|load +ping +select +role);
# The tag script reads and removes the tag set with TYPE and SMEMBERS (and
# UNLINK); Redis checks what a script calls against the caller's ACL.
$acl->cmd('ACL', 'SETUSER', 'cachebust', 'on', '>acl-pw', 'resetkeys', '~app:*', 'resetchannels', '&cb-events',
	'-@all', @commands, '+type', '+smembers');
$acl->cmd('ACL', 'SETUSER', 'no_tags', 'on', '>acl-pw', 'resetkeys', '~app:*', 'resetchannels', '&cb-events',
	'-@all', @commands);
my $limited = cachebust_node('acl', $acl, qq{
cachebust.key_prefix = 'app:'
cachebust.redis_url = 'redis://cachebust:acl-pw\@127.0.0.1:$acl->{port}/0'
cachebust.publish_channel = 'cb-events'
cachebust.queue_size = 64kB
});
$limited->safe_psql('postgres', q{CREATE TABLE items (id int, grp int, body text);
  SELECT cachebust.watch('items', keys => ARRAY['item:{id}'], tags => ARRAY['grp:{grp}'], bumps => ARRAY['ver:{grp}'],
                         patterns => ARRAY['list:{grp}:*'])});
$acl->cmd('SET', "app:$_", 'cached') for qw(item:1 list:1:a list:1:b member);
$acl->cmd('SADD', 'app:tag:grp:1', 'app:member');
is($limited->safe_psql('postgres', q{INSERT INTO items VALUES (1, 1, 'x'); SELECT cachebust.wait_for_delivery(5000)}),
	't', 'keys, tags, bumps and patterns delivered as a user limited to ~app:*');
is($acl->cmd('EXISTS', map { "app:$_" } qw(item:1 list:1:a list:1:b member tag:grp:1)), 0, 'all of them applied');
is($acl->cmd('GET', 'app:ver:1'), '1', 'the bump too');
$acl->cmd('SET', 'app:item:2', 'cached');
is($limited->safe_psql('postgres', q{BEGIN; TRUNCATE items; COMMIT; INSERT INTO items VALUES (2, 2, 'y');
  SELECT cachebust.wait_for_delivery(5000)}), 't', 'TRUNCATE (tag and bump patterns) too');
$limited->safe_psql('postgres', q{INSERT INTO items SELECT g, 3, '' FROM generate_series(10, 4000) g});
ok(wait_until(sub { stat_value($limited, 'fallbacks') > 0 }), 'and the prefix fallback after an overflow');
is(stat_value($limited, 'targets_failed'), '0', 'nothing was refused: cachebust needs nothing more');
# Without TYPE and SMEMBERS, a tag is refused for good: resolved, not retried forever.
reload_settings($limited, "ALTER SYSTEM SET cachebust.redis_url = 'redis://no_tags:acl-pw\@127.0.0.1:$acl->{port}/0'");
$acl->cmd('SADD', 'app:tag:grp:5', 'app:member5');
is($limited->safe_psql('postgres', q{INSERT INTO items VALUES (5, 5, 'w'); SELECT cachebust.wait_for_delivery(5000)}),
	't', 'a NOPERM is a permanent error: the batch is still delivered');
cmp_ok(stat_value($limited, 'targets_failed'), '>=', 1, 'and the refused tag is counted');
like(stat_value($limited, 'last_error'), qr/can't run this command/, 'with the reason');
is($acl->cmd('EXISTS', 'app:tag:grp:5'), 0, 'its substitute removed the tag set');
$limited->stop;
$acl->stop;

# ---- Sentinel: one master, one replica, three sentinels; the master is killed under load
my $master = start_redis();
my $replica = start_redis('--replicaof', '127.0.0.1', $master->{port});
ok(wait_until(sub { $replica->cmd('INFO', 'replication') =~ /master_link_status:up/ }, 20), 'the replica follows');
my @sentinels = map { start_sentinel('cache', $master->{port}, 2) } 1 .. 3;
ok(wait_until(sub { $sentinels[0]->cmd('SENTINEL', 'replicas', 'cache') =~ /./ && scalar(@{ $sentinels[0]->cmd('SENTINEL', 'sentinels', 'cache') }) == 2 }, 30),
	'the sentinels know each other and the replica');
my $sentinel_list = join(',', map { "127.0.0.1:$_->{port}" } @sentinels);
my $ha = cachebust_node('sentinel', undef, qq{
cachebust.key_prefix = 'app:'
cachebust.redis_url = 'redis-sentinel://$sentinel_list/cache'
cachebust.connect_timeout_ms = 300
cachebust.command_timeout_ms = 500
cachebust.retry_max_ms = 300
});
my $rows = 20000;
$ha->safe_psql('postgres', qq{
CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO kv SELECT g FROM generate_series(1, $rows) g;
SELECT cachebust.watch('kv', keys => ARRAY['kv:{id}']);
});
for (my $i = 1; $i <= $rows; $i += 1000)
{
	$master->cmd('MSET', map { ("app:kv:$_", 'cached') } $i .. $i + 999);
}
ok(wait_until(sub { ($replica->cmd('DBSIZE') // 0) >= $rows }, 20), 'the cache is replicated');
$master->cmd('SET', 'app:kv:0', 'cached');
is($ha->safe_psql('postgres', 'INSERT INTO kv VALUES (0); SELECT cachebust.wait_for_delivery(5000)'), 't',
	'delivered to the master the sentinels name');
like(slurp_file($ha->logfile), qr/the sentinels name 127.0.0.1:$master->{port} as the master of "cache"/, 'and logged which');

my $script = $ha->basedir . '/update.sql';
open(my $fh, '>', $script) or die;
print $fh "\\set id random(1, $rows)\nUPDATE kv SET v = v + 1 WHERE id = :id;\n";
close $fh;
my $out = '';
my $bench = IPC::Run::start([ 'pgbench', '-n', '-c', 2, '-j', 2, '-T', 8, '-f', $script,
	'-h', $ha->host, '-p', $ha->port, 'postgres' ], '>', \$out, '2>', \$out);
my $before = stat_value($ha, 'transactions_enqueued');
ok(wait_until(sub { stat_value($ha, 'transactions_enqueued') > $before + 300 }, 20), 'the write load is running');
$master->stop('KILL');
ok($bench->finish, 'the writers never noticed') or diag($out);
ok(wait_until(sub { ($replica->cmd('ROLE') // [''])->[0] eq 'master' }, 30), 'the sentinels promoted the replica');
ok(wait_all_delivered($ha, 30), 'everything committed was delivered after the failover');
my @updated = split /,/, $ha->safe_psql('postgres', q{SELECT string_agg('app:kv:' || id, ',') FROM kv WHERE v > 0});
my $stale = 0;
while (my @chunk = splice(@updated, 0, 1000))
{
	$stale += $replica->cmd('EXISTS', @chunk);
}
is($stale, 0, 'no key of a changed row is left on the new master');
my @unchanged = split /,/, $ha->safe_psql('postgres', q{SELECT string_agg('app:kv:' || id, ',') FROM kv WHERE v = 0 AND id > 0});
my $kept = 0;
my $unchanged_count = scalar(@unchanged);
while (my @chunk = splice(@unchanged, 0, 1000))
{
	$kept += $replica->cmd('EXISTS', @chunk);
}
is($kept, $unchanged_count, "keys of unchanged rows were not flushed ($unchanged_count kept)");
is(stat_value($ha, 'fallbacks'), '0', 'no fallback was needed: the failover repeat applied the last seconds again instead');
cmp_ok(stat_value($ha, 'failovers'), '>=', 1, 'stats count the failover');
cmp_ok(stat_value($ha, 'reconnects'), '>=', 1, 'and the reconnection');
like(slurp_file($ha->logfile), qr/the master moved from 127.0.0.1:$master->{port} to 127.0.0.1:$replica->{port}/,
	'the log says where the master went');
$ha->stop;
$_->stop for @sentinels;
$replica->stop;

# ---- TLS and Sentinel together, once: the sentinel and the master both over TLS
my $tls_master_port = PostgreSQL::Test::Cluster::get_free_port();
my $tls_master = start_redis(tls_args($tls_master_port, 'server'));
my $sentinel_tls_port = PostgreSQL::Test::Cluster::get_free_port();
my $tls_sentinel = start_sentinel('secure', $tls_master_port, 1,
	'sentinel auth-pass secure tls-pw', 'tls-replication yes', 'requirepass sentinel-pw',
	"tls-port $sentinel_tls_port", "tls-cert-file $certs/server.crt", "tls-key-file $certs/server.key",
	"tls-ca-cert-file $certs/ca.crt", 'tls-auth-clients no');
ok(wait_until(sub { ($tls_sentinel->cmd('SENTINEL', 'get-master-addr-by-name', 'secure') // [])->[1] eq $tls_master_port }, 20),
	'the sentinel monitors the master over TLS');
my $both = cachebust_node('tls_sentinel', undef, qq{
cachebust.key_prefix = 'app:'
cachebust.redis_url = 'rediss-sentinel://:tls-pw\@127.0.0.1:$sentinel_tls_port/secure'
cachebust.sentinel_password = 'sentinel-pw'
cachebust.tls_ca_file = '$certs/ca.crt'
});
$both->safe_psql('postgres', q{CREATE TABLE t (id int); SELECT cachebust.watch('t', keys => ARRAY['t:{id}'])});
$tls_master->cmd('SET', 'app:t:1', 'cached');
is($both->safe_psql('postgres', 'INSERT INTO t VALUES (1); SELECT cachebust.wait_for_delivery(10000)'), 't',
	'rediss-sentinel: delivered through a TLS sentinel to a TLS master');
is($tls_master->exists_key('app:t:1'), 0, 'the key is gone');
like(slurp_file($both->logfile), qr/delivers to rediss-sentinel:/, 'over rediss-sentinel');
unlike(slurp_file($both->logfile), qr/sentinel-pw|tls-pw/, 'the sentinel password (cachebust.sentinel_password) is not logged');
$both->stop;
$tls_sentinel->stop;
$tls_master->stop;

done_testing();
