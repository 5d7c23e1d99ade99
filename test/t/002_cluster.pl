# One worker for the whole cluster: many databases, publishing, moving to
# another Redis on SIGHUP, Redis URL forms; and the not-preloaded error.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $redis = start_redis();
my $node = cachebust_node('cluster', $redis);

# ---- many databases, one worker
my @dbs = map { "db$_" } 1 .. 3;
for my $db (@dbs)
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
CREATE EXTENSION cachebust;
CREATE TABLE t (id int);
SELECT cachebust.watch('t', keys => ARRAY['} . $db . q{:{id}']);
});
	$redis->cmd('SET', "$db:1", 1);
}
for my $db (@dbs)
{
	is($node->safe_psql($db, 'INSERT INTO t VALUES (1); SELECT cachebust.wait_for_delivery(5000)'), 't', "$db delivered");
	is($redis->exists_key("$db:1"), 0, "$db key removed");
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'cachebust worker'}),
	'1', 'exactly one cachebust worker');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'cachebust worker' AND datid IS NOT NULL}),
	'0', 'the worker has no database connection');

# ---- publish_channel: one JSON message per delivered batch
reload_settings($node, q{ALTER SYSTEM SET cachebust.publish_channel = 'cb-events'});
my $sub = bless({ port => $redis->{port} }, "CachebustTest::Redis");
$sub->cmd('SUBSCRIBE', 'cb-events');
$node->safe_psql('db1', q{INSERT INTO t VALUES (42); SELECT cachebust.wait_for_delivery(5000)});
my $msg = $sub->read_reply;
is($msg->[0], 'message', 'subscriber received a message');
is($msg->[1], 'cb-events', 'on the configured channel');
like($msg->[2], qr/"keys":\["db1:42"\]/, 'listing the invalidated key as JSON');
delete $sub->{sock};
$node->safe_psql('postgres', q{ALTER SYSTEM RESET cachebust.publish_channel; SELECT pg_reload_conf();});

# ---- SIGHUP with a new URL moves delivery to another Redis (db 2 there)
my $redis2 = start_redis();
$redis2->cmd('SELECT', 2);
$redis2->cmd('SET', 'db1:7', 1);
$redis->cmd('SET', 'db1:7', 1);
my $url2 = $redis2->url(2);
reload_settings($node, "ALTER SYSTEM SET cachebust.redis_url = '$url2'");
is($node->safe_psql('db1', 'INSERT INTO t VALUES (7); SELECT cachebust.wait_for_delivery(5000)'), 't', 'delivered after reload');
is($redis2->exists_key('db1:7'), 0, 'key removed on the new Redis, in db 2');
is($redis->exists_key('db1:7'), 1, 'the old Redis is no longer used');

# ---- authentication: password and ACL user, never logged
$redis2->cmd('ACL', 'SETUSER', 'cbuser', 'on', '>s3cret-pw', '~*', '&*', '+@all');
$redis2->cmd('SET', 'db1:8', 1);
my $acl_url = "redis://cbuser:s3cret-pw\@127.0.0.1:$redis2->{port}/2";
reload_settings($node, "ALTER SYSTEM SET cachebust.redis_url = '$acl_url'");
is($node->safe_psql('db1', 'INSERT INTO t VALUES (8); SELECT cachebust.wait_for_delivery(5000)'), 't', 'delivered as ACL user');
is($redis2->exists_key('db1:8'), 0, 'key removed through the ACL user');
my $log = slurp_file($node->logfile);
unlike($log, qr/s3cret-pw/, 'the password never appears in the server log');

# ---- a non-superuser cannot read the URL
$node->safe_psql('postgres', 'CREATE ROLE reader LOGIN');
my ($ret, $out, $err) = $node->psql('postgres', 'SHOW cachebust.redis_url', extra_params => [ '-U', 'reader' ]);
like($err, qr/must be superuser|permission denied|pg_read_all_settings/, 'non-superuser cannot SHOW redis_url');

$node->stop;

# ---- not preloaded: CREATE EXTENSION works, using it is a clear ERROR
my $plain = PostgreSQL::Test::Cluster->new('not_preloaded');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', q{CREATE EXTENSION cachebust; CREATE TABLE t (id int);
  CREATE TRIGGER c AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('k:{id}');});
($ret, $out, $err) = $plain->psql('postgres', 'INSERT INTO t VALUES (1)');
isnt($ret, 0, 'trigger fails without preload');
like($err, qr/requires cachebust to be loaded via shared_preload_libraries/, 'error names the cause');
like($err, qr/HINT:  Add cachebust to shared_preload_libraries/, 'and hints at the fix');
($ret, $out, $err) = $plain->psql('postgres', q{SELECT cachebust.invalidate_key('x')});
like($err, qr/shared_preload_libraries/, 'manual functions fail the same way');
($ret, $out, $err) = $plain->psql('postgres', q{SELECT cachebust.flush()});
like($err, qr/shared_preload_libraries/, 'flush() too');
is($plain->safe_psql('postgres', 'SELECT count(*) FROM cachebust.pending()'), '0', 'pending() still answers');
$plain->stop;

$redis->stop;
$redis2->stop;
done_testing();
