# Redis Cluster (issue 13): slot-routed delivery across shards, tags and
# globs that span them, resharding and a master failover under write load,
# and one paused master that must not hold the others back.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use IO::Select;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $cluster = start_cluster(3, 1);
my @masters = $cluster->masters;
is(scalar(@masters), 3, 'a cluster of three masters, each with a replica');

my $node = cachebust_node('cluster', undef, qq{
cachebust.key_prefix = 'app:'
cachebust.redis_url = '${\ $cluster->url(2) }'
cachebust.connect_timeout_ms = 300
cachebust.command_timeout_ms = 1000
cachebust.retry_max_ms = 300
cachebust.publish_channel = 'cb-events'
restart_after_crash = on
});
my $rows = 3000;
$node->safe_psql('postgres', qq{
CREATE TABLE kv (id int PRIMARY KEY, team int, v int NOT NULL DEFAULT 0);
INSERT INTO kv SELECT g, g % 10 FROM generate_series(1, $rows) g;
SELECT cachebust.watch('kv', keys => ARRAY['kv:{id}'], bumps => ARRAY['ver:{team}']);
});
like(slurp_file($node->logfile), qr/the cluster has 3 masters/, 'the worker found the three masters from two seeds');

sub keys_of { my ($from, $to) = @_; return map { "app:kv:$_" } $from .. $to; }
sub fill { $cluster->set_key($_) for @_; }

# ---- keys spread over every master
fill(keys_of(1, 300));
my %per_master;
$per_master{ $cluster->node_for($_)->{port} }++ for keys_of(1, 300);
is(scalar(keys %per_master), 3, 'the 300 keys live on all three masters');
is($node->safe_psql('postgres', 'UPDATE kv SET v = v + 1 WHERE id <= 300; SELECT cachebust.wait_for_delivery(10000)'),
	't', 'a commit touching every shard is delivered');
is($cluster->count_existing(keys_of(1, 300)), 0, 'every key is gone, on every master');
is($cluster->cmd_key('app:ver:3', 'GET', 'app:ver:3'), '1', 'bumps are routed to their slot');

# ---- tags whose members live on other shards, nested across shards
my @members = map { "app:member:$_" } 1 .. 30;
fill(@members, 'app:leaf');
# A nested tag on another shard than the outer one.
my $outer_port = $cluster->node_for('app:tag:team:1')->{port};
my ($inner) = grep { $cluster->node_for($_)->{port} != $outer_port } map { "app:tag:inner$_" } 1 .. 20;
$cluster->cmd_key('app:tag:team:1', 'SADD', 'app:tag:team:1', @members, $inner, 'other:outside');
$cluster->cmd_key($inner, 'SADD', $inner, 'app:leaf');
$cluster->set_key('other:outside');
isnt($cluster->node_for($inner)->{port}, $outer_port, 'the nested tag lives on another shard');
is($node->safe_psql('postgres', q{SELECT cachebust.invalidate_tag('team:1') \g /dev/null
  SELECT cachebust.wait_for_delivery(10000)}), 't', 'a tag across shards is delivered');
is($cluster->count_existing(@members, 'app:leaf', 'app:tag:team:1', $inner), 0,
	'its members on every shard, the nested tag and its member are gone');
is($cluster->exists_key('other:outside'), 1, 'a member outside the prefix is left alone');

# ---- a pattern and a TRUNCATE that match keys on every master
fill(map { "app:list:$_" } 1 .. 60);
is($node->safe_psql('postgres', q{SELECT cachebust.invalidate_pattern('list:*') \g /dev/null
  SELECT cachebust.wait_for_delivery(10000)}), 't', 'a pattern is delivered');
is($cluster->count_existing(map { "app:list:$_" } 1 .. 60), 0, 'and matched keys on every master');
fill(keys_of(301, 400));
is($node->safe_psql('postgres', 'TRUNCATE kv; SELECT cachebust.wait_for_delivery(10000)'), 't', 'a TRUNCATE is delivered');
is($cluster->count_existing(keys_of(301, 400)), 0, 'and its pattern matched keys on every master');
$node->safe_psql('postgres', "INSERT INTO kv SELECT g, g % 10 FROM generate_series(1, $rows) g; SELECT cachebust.wait_for_delivery(10000)");

# ---- one master paused: the others keep receiving their invalidations
fill(keys_of(1, 300));
my $paused = $masters[0];
my @on_paused = grep { $cluster->node_for($_)->{port} == $paused->{port} } keys_of(1, 300);
my @elsewhere = grep { $cluster->node_for($_)->{port} != $paused->{port} } keys_of(1, 300);
$paused->cmd('CLIENT', 'PAUSE', '8000', 'WRITE');
my $session = $node->background_psql('postgres');
$session->query_safe('UPDATE kv SET v = v + 1 WHERE id <= 300');
ok(wait_until(sub { $cluster->count_existing(@elsewhere) == 0 }, 10),
	'while one master is paused, the keys of the other masters are invalidated');
cmp_ok($cluster->count_existing(@on_paused), '>', 0, "the paused master's keys wait");
is($session->query_safe('SELECT cachebust.wait_for_delivery(100)'), 'f',
	'wait_for_delivery is false until every shard applied the session\'s targets');
# Issue 21, item 10: another session's commit, all of whose keys live on
# live masters, is not held back by the paused one.
# (Its bump ver:{team} must live elsewhere too.)
my ($other_id) = grep { $cluster->node_for('app:ver:' . ($_ % 10))->{port} != $paused->{port} }
  map { /(\d+)$/ ? $1 : () } @elsewhere;
fill("app:kv:$other_id");
my $other = $node->background_psql('postgres');
$other->query_safe("UPDATE kv SET v = v + 1 WHERE id = $other_id");
is($other->query_safe('SELECT cachebust.wait_for_delivery(5000)'), 't',
	'a session whose keys live on other masters is not held back by the paused one');
is($cluster->count_existing("app:kv:$other_id"), 0, 'its key is gone');
cmp_ok($cluster->count_existing(@on_paused), '>', 0, 'while the paused master still holds the first session\'s keys');
is($other->query_safe('SELECT cachebust.barrier(100)'), 'f', 'barrier() still waits for everyone');
$other->quit;
is($session->query_safe('SELECT cachebust.wait_for_delivery(15000)'), 't', 'and true once the pause ends');
is($cluster->count_existing(@on_paused), 0, 'the paused master caught up');
$session->quit;

# ---- publishing: PUBLISH (cluster-wide), then SPUBLISH
my $subscriber = bless({ port => $masters[1]{port} }, 'CachebustTest::Redis');
$subscriber->cmd('SUBSCRIBE', 'cb-events');
$node->safe_psql('postgres', 'UPDATE kv SET v = v + 1 WHERE id = 5; SELECT cachebust.wait_for_delivery(5000)');
like($subscriber->read_reply->[2], qr/"keys":\["app:kv:5"\]/, 'PUBLISH reaches a subscriber on any node');
delete $subscriber->{sock};
reload_settings($node, 'ALTER SYSTEM SET cachebust.publish_sharded = on');
my $shard_node = $cluster->node_for('cb-events');
my $sharded = bless({ port => $shard_node->{port} }, 'CachebustTest::Redis');
$sharded->cmd('SSUBSCRIBE', 'cb-events');
$node->safe_psql('postgres', 'UPDATE kv SET v = v + 1 WHERE id = 6; SELECT cachebust.wait_for_delivery(5000)');
my $message = $sharded->read_reply;
is($message->[0], 'smessage', 'with publish_sharded, SPUBLISH reaches the shard of the channel');
like($message->[2], qr/"keys":\["app:kv:6"\]/, 'with the batch');
delete $sharded->{sock};

# ---- a reload while a publication waits for its node (issue 21, item 1):
# the worker used to rehome it onto a lane before the cluster had any, and
# crashed (and the postmaster with it restarted every backend)
my ($id_elsewhere) = grep { $cluster->node_for("app:kv:$_")->{port} != $shard_node->{port} } 1 .. 100;
my $key_node = $cluster->node_for("app:kv:$id_elsewhere"); # (asked now: the paused node would not answer)
my $pid_before = worker_pid($node);
my $offset = -s $node->logfile;
$sharded = bless({ port => $shard_node->{port} }, 'CachebustTest::Redis');
$sharded->cmd('SSUBSCRIBE', 'cb-events');
$shard_node->cmd('CLIENT', 'PAUSE', '8000', 'ALL');
$node->safe_psql('postgres', "UPDATE kv SET v = v + 1 WHERE id = $id_elsewhere");
ok(wait_until(sub {
	stat_value($node, 'delivered_seq') < stat_value($node, 'enqueued_seq')
	  && !$key_node->exists_key("app:kv:$id_elsewhere");
}, 10), 'the targets are applied and the SPUBLISH waits for the paused node');
$node->safe_psql('postgres', 'ALTER SYSTEM SET cachebust.command_timeout_ms = 1500; SELECT pg_reload_conf()');
wait_until(sub {
	substr(slurp_file($node->logfile), $offset) =~ /cachebust worker reloaded its settings|terminated by signal/;
}, 30);
ok(wait_all_delivered($node, 20), 'the publication is delivered after the reload');
unlike(substr(slurp_file($node->logfile), $offset), qr/terminated by signal/, 'the worker did not crash');
is(worker_pid($node), $pid_before, 'the same worker is still running');
my $arrived = IO::Select->new($sharded->{sock})->can_read(10) ? $sharded->read_reply : [];
like($arrived->[2] // '', qr/"keys":\["app:kv:$id_elsewhere"\]/, 'and its message arrives');
delete $sharded->{sock};

# ---- an ACL user with only what README's cluster line grants (kept for the
# rest of the file, on every node: a replica that takes over needs it too)
for my $n (grep { $_->{pid} } $cluster->nodes)
{
	$n->cmd(qw(ACL SETUSER cachebust on >secret resetkeys ~app:* resetchannels &cb-events -@all),
		qw(+unlink +eval +evalsha +scan +incr +publish +spublish +script|load +ping +cluster|slots +asking +type +smembers));
}
my $failed_before = stat_value($node, 'targets_failed');
reload_settings($node, "ALTER SYSTEM SET cachebust.redis_url = '" . ($cluster->url(2) =~ s{://}{://cachebust:secret\@}r) . "'");
fill(keys_of(1, 100));
$cluster->cmd_key('app:tag:team:3', 'SADD', 'app:tag:team:3', 'app:member:1', 'app:member:2');
fill('app:member:1', 'app:member:2');
is($node->safe_psql('postgres', q{
BEGIN;
UPDATE kv SET v = v + 1 WHERE id <= 100;
SELECT cachebust.invalidate_tag('team:3') \g /dev/null
SELECT cachebust.invalidate_pattern('kv:9?') \g /dev/null
COMMIT;
SELECT cachebust.wait_for_delivery(10000);
}), 't', 'delivered as the ACL user');
is($cluster->count_existing(keys_of(1, 100), 'app:member:1', 'app:member:2', 'app:tag:team:3'), 0,
	'keys, a tag with its members and a pattern on every master, with the documented ACL');
is(stat_value($node, 'targets_failed'), $failed_before, 'nothing was refused');
is(scalar(grep { $_->cmd('CLIENT', 'LIST') =~ /user=cachebust/ } $cluster->masters), 3,
	'the worker is connected to every master as that user');

# Writers for the next two parts.
my $script = $node->basedir . '/update.sql';
open(my $fh, '>', $script) or die;
print $fh "\\set id random(1, $rows)\nUPDATE kv SET v = v + 1 WHERE id = :id;\n";
close $fh;
sub start_load
{
	my ($seconds) = @_;
	my $out = '';
	my $h = IPC::Run::start([ 'pgbench', '-n', '-c', 2, '-j', 2, '-T', $seconds, '-f', $script,
		'-h', $node->host, '-p', $node->port, 'postgres' ], '>', \$out, '2>', \$out);
	return ($h, \$out);
}
sub no_stale_after_load
{
	my ($label) = @_;
	ok(wait_all_delivered($node, 30), "$label: everything committed was delivered");
	my @updated = split /,/, $node->safe_psql('postgres', q{SELECT string_agg(id::text, ',') FROM kv WHERE v > 0});
	is($cluster->count_existing(map { "app:kv:$_" } @updated), 0, "$label: no key of an updated row is left");
	$node->safe_psql('postgres', 'UPDATE kv SET v = 0 WHERE v > 0; SELECT cachebust.wait_for_delivery(10000)');
}

# ---- resharding under load: MOVED and ASK
$node->safe_psql('postgres', 'UPDATE kv SET v = 0 WHERE v > 0; SELECT cachebust.wait_for_delivery(10000)');
fill(keys_of(1, $rows));
my ($load, $out) = start_load(20);
my $before = stat_value($node, 'transactions_enqueued');
ok(wait_until(sub { stat_value($node, 'transactions_enqueued') > $before + 200 }, 20), 'the write load is running');
my ($from, $to) = map { $_->cmd('CLUSTER', 'MYID') } @masters[ 0, 1 ];
system_or_bail('redis-cli', '--cluster', 'reshard', "127.0.0.1:$masters[0]{port}", '--cluster-from', $from,
	'--cluster-to', $to, '--cluster-slots', '600', '--cluster-yes', '--cluster-pipeline', '5');
$load->kill_kill;
$load->finish;
no_stale_after_load('resharding 600 slots under load');
my $log = slurp_file($node->logfile);
note(($log =~ /no longer serve slots/ ? 'the map changed under the worker' : 'the map was refreshed quietly'));

# ---- a master SIGKILLed under load: its replica takes over
fill(keys_of(1, $rows));
($load, $out) = start_load(30);
$before = stat_value($node, 'transactions_enqueued');
ok(wait_until(sub { stat_value($node, 'transactions_enqueued') > $before + 200 }, 20), 'the write load is running');
my $victim = $masters[2];
my $victim_port = $victim->{port};
$victim->stop('KILL');
ok(wait_until(sub { scalar($cluster->masters) == 3 }, 30), 'a replica was promoted in its place');
my $committed = stat_value($node, 'transactions_enqueued');
ok(wait_until(sub { stat_value($node, 'transactions_enqueued') > $committed + 200 }, 20), 'writes went on');
$load->kill_kill;
$load->finish;
no_stale_after_load('a master failed over under load');
cmp_ok(stat_value($node, 'failovers'), '>=', 1, 'the failover is counted');
like(slurp_file($node->logfile), qr/cluster node\(s\) 127.0.0.1:$victim_port no longer serve slots/,
	'and the worker says the killed node was replaced');

$node->stop;
$cluster->stop;
done_testing();
