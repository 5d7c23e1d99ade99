# cachebust.clear(), the emergency clear (issue 25, item 5): the first step
# counts what the pattern matches under the caller's key_prefix and issues
# a token; the second, by the same role, removes exactly those keys at
# commit; nothing outside the prefix, on one Redis and on every master of
# a Redis Cluster.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $redis = start_redis('--enable-debug-command', 'local');
my $node = cachebust_node('clear', $redis);
$node->safe_psql('postgres', q{
CREATE ROLE ops LOGIN;
CREATE ROLE tenant2 LOGIN;
CREATE ROLE nobody LOGIN;
ALTER ROLE ops SET cachebust.key_prefix = 'app:';
ALTER ROLE tenant2 SET cachebust.key_prefix = 'other:';
GRANT EXECUTE ON FUNCTION cachebust.clear(text), cachebust.clear(text, text) TO ops, tenant2;
});

# psql as $role: (stdout, stderr).
sub as_role
{
	my ($role, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, extra_params => [ '-U', $role ]);
	return ($out, $err);
}

# The first step: the whole answer, its token and its count.
sub ask
{
	my ($role, $pattern) = @_;
	my ($out, $err) = as_role($role, "SELECT cachebust.clear('$pattern')");
	my ($token, $count) = $out =~ /^([0-9a-f]{16}): (?:at least )?(\d+) keys? match/;
	return ($out, $token, $count, $err);
}

my @app_users = map { "app:user:$_" } 1 .. 50;
my @app_teams = map { "app:team:$_" } 1 .. 20;
my @other_users = map { "other:user:$_" } 1 .. 30;
my @strays = ('app:usr', 'app:users', 'user:1', 'xapp:user:1');
$redis->cmd('SET', $_, 'cached') for @app_users, @app_teams, @other_users, @strays;
sub existing { my $n = 0; $n += $redis->exists_key($_) for @_; return $n; }

# ---- the first step: a count, a token, nothing removed
my ($answer, $token, $count) = ask('ops', 'user:*');
like($answer, qr/^[0-9a-f]{16}: 50 keys match "app:user:\*"; confirm within 60 s: SELECT cachebust\.clear\('user:\*', '$token'\)$/,
	'the first step names the token, the count and the pattern under the prefix');
is($count, 50, 'it counts the matches under the caller\'s prefix only');
is(existing(@app_users), 50, 'the first step removes nothing');

# ---- the token belongs to its role and its pattern
my (undef, $err) = as_role('tenant2', "SELECT cachebust.clear('user:*', '$token')");
like($err, qr/was issued to another role/, 'another role cannot use the token');
(undef, $err) = as_role('ops', "SELECT cachebust.clear('team:*', '$token')");
like($err, qr/was issued for another pattern than "app:team:\*"/, 'nor can another pattern');
(undef, $err) = as_role('nobody', "SELECT cachebust.clear('user:*', '$token')");
like($err, qr/permission denied for function clear/, 'a role without the GRANT cannot call it');

# ---- a rolled-back confirmation removes nothing, and uses the token up
my ($out) = as_role('ops', "BEGIN; SELECT cachebust.clear('user:*', '$token'); ROLLBACK;");
is($out, '50', 'the second step returns the first step\'s count');
(undef, $err) = as_role('ops', "SELECT cachebust.clear('user:*', '$token')");
like($err, qr/unknown confirmation token/, 'a token is used once, even by a transaction that rolled back');
ok(wait_all_delivered($node), 'nothing pending');
is(existing(@app_users), 50, 'a rolled-back clear removes nothing');

# ---- another tenant's clear stays in its prefix
my ($t2_answer, $t2_token, $t2_count) = ask('tenant2', 'user:*');
is($t2_count, 30, 'the same pattern under another prefix counts that prefix\'s keys');
# (What README tells scripts to do.)
($out) = as_role('tenant2', q{SELECT split_part(a, ':', 1) ~ '^[0-9a-f]{16}$', substring(a from ': (?:at least )?(\d+) key')
  FROM (SELECT cachebust.clear('user:*') a) s});
is($out, 't|30', 'a script parses the token and the count as README says');
($out) = as_role('tenant2', "SELECT cachebust.clear('user:*', '$t2_token'); SELECT cachebust.wait_for_delivery(10000);");
is($out, "30\nt", 'confirmed and delivered (wait_for_delivery waits for it)');
is(existing(@other_users), 0, 'its keys are gone');
is(existing(@app_users), 50, 'the first tenant\'s keys are untouched');

# ---- the clear itself
my $offset = -s $node->logfile;
(undef, $token, $count) = ask('ops', 'user:*');
($out, $err) = as_role('ops', "SELECT cachebust.clear('user:*', '$token'); SELECT cachebust.wait_for_delivery(10000);");
is($out, "50\nt", 'the second step returns the count; the removal is delivered after commit');
is(existing(@app_users), 0, 'every matching key is gone');
is(existing(@app_teams), 20, 'keys of the prefix the pattern does not match stay');
is(existing(@strays), scalar(@strays), 'so do look-alikes outside the pattern or the prefix');
ok($node->wait_for_log(qr/LOG:  cachebust\.clear by role "ops" in database "postgres": pattern "app:user:\*" \(token $token, 50 keys counted\)/, $offset),
	'the server log says who cleared what');

# ---- a large keyspace: the count is bounded
$redis->cmd('DEBUG', 'POPULATE', '100050', 'app:bulk');
my ($bulk_answer) = ask('ops', 'bulk*');
like($bulk_answer, qr/^[0-9a-f]{16}: at least 100000 keys match "app:bulk\*" \(counting stopped there\);/,
	'a count stops at 100000 and says so');
is(existing(@app_teams), 20, 'counting removes nothing');

# ---- SET ROLE: the log names who logged in too
$offset = -s $node->logfile;
my $as_ops = q{SET cachebust.key_prefix = 'app:'; SET ROLE ops;};
my ($set_role_token) = $node->safe_psql('postgres', "$as_ops SELECT cachebust.clear('team:1')") =~ /^([0-9a-f]{16}):/;
is($node->safe_psql('postgres', "$as_ops SELECT cachebust.clear('team:1', '$set_role_token')"), '1',
	'a superuser that took the role confirms with its token');
ok($node->wait_for_log(qr/cachebust\.clear by role "ops" in database "postgres": pattern "app:team:1".*\n.*DETAIL:  Session user "\w+"\./, $offset),
	'the log line names the session user');
ok(wait_until(sub { !$redis->exists_key('app:team:1') }), 'and the key goes');

$node->stop;
$redis->stop;

# ---- Redis Cluster: the count and the clear reach every master
my $cluster = start_cluster(3, 0);
my $cnode = cachebust_node('clear_cluster', undef, qq{
cachebust.key_prefix = 'app:'
cachebust.redis_url = '${\ $cluster->url(2) }'
});
my @spread = map { "app:user:$_" } 1 .. 60;
$cluster->set_key($_) for @spread, 'app:team:1';
my %masters;
$masters{ $cluster->node_for($_)->{port} }++ for @spread;
is(scalar(keys %masters), 3, 'the keys live on all three masters');
my $first = $cnode->safe_psql('postgres', q{SELECT cachebust.clear('user:*')});
my ($ctoken, $ccount) = $first =~ /^([0-9a-f]{16}): (\d+) keys match/;
is($ccount, 60, 'the count visits every master');
is($cnode->safe_psql('postgres', "SELECT cachebust.clear('user:*', '$ctoken'); SELECT cachebust.wait_for_delivery(10000);"),
	"60\nt", 'the clear is delivered');
is($cluster->count_existing(@spread), 0, 'every match is gone, on every master');
is($cluster->count_existing('app:team:1'), 1, 'the rest stays');

$cnode->stop;
$cluster->stop;
done_testing();
