# The Node.js recipe of examples/node (README: "Using cachebust from an
# application", Node): the database setup it needs, then its own tests
# (test.js, node:test), which cache with keyv (@keyv/redis) and write with
# pg against this node and Redis.
use strict;
use warnings;

use Cwd ();
use File::Find ();
use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use IPC::Run ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();

my ($node_bin) = grep { -x } map { "$_/node" } split /:/, ($ENV{PATH} // '');
plan skip_all => 'node is not installed (test/install_deps.sh installs it)' unless $node_bin;
IPC::Run::run([ $node_bin, '--version' ], '<', \undef, '>&', \my $node_version);
note("$node_bin $node_version");

my $app = Cwd::abs_path("$FindBin::Bin/../../examples/node");
my $started = Time::HiRes::time();

# Its packages are installed by `npm ci` in examples/node (test/install_deps.sh),
# as root, before the tree is copied for the tests.
my @modules = qw(keyv @keyv/redis pg);
my @missing = grep { !-f "$app/node_modules/$_/package.json" } @modules;
is_deeply(\@missing, [], 'examples/node has its packages installed')
  or diag("run `npm ci` in $app (test/install_deps.sh does)");
if (@missing)
{
	done_testing();
	exit;
}

my $redis = start_redis();
my $node = cachebust_node('nodejs', $redis, "cachebust.debounce_ms = 10\n");

# ---- the setup the recipe needs, as a superuser: the application's role
# owns its database and attaches the triggers (watch() in migrate()); the
# database's key prefix is keyv's "<namespace>::".
$node->safe_psql('postgres', q{
CREATE ROLE teams_app LOGIN;
CREATE DATABASE teams OWNER teams_app;
ALTER DATABASE teams SET cachebust.key_prefix = 'teams::';
});
$node->safe_psql('teams', q{
CREATE EXTENSION cachebust;
GRANT EXECUTE ON FUNCTION cachebust.invalidate() TO teams_app;
});
my @as_app = (extra_params => [ '-U', 'teams_app' ]);
is($node->safe_psql('teams', q{SELECT cachebust.full_key('user:1')}, @as_app), 'teams::user:1',
	'the application role gets the prefix teams:: in its database');

# Another application's entry in the same Redis database: the tests empty
# only their own namespace.
$redis->cmd('SET', 'billing:invoice:1', 'cached');

# ---- the app's own tests
my $tmp = PostgreSQL::Test::Utils::tempdir('nodejs');
my @cmd = ($node_bin, '--test', '--test-reporter=tap', "$app/test.js");
my $out = '';
my $ran = eval {
	local %ENV = (%ENV,
		PGHOST => $node->host,    # the Unix socket directory
		PGPORT => $node->port,
		PGDATABASE => 'teams',
		PGUSER => 'teams_app',
		REDIS_URL => $redis->url,    # the Redis database cachebust.redis_url names
		HOME => $tmp);
	delete @ENV{qw(PGSERVICE PGOPTIONS NODE_OPTIONS NODE_PATH)};
	IPC::Run::run(\@cmd, init => sub { chdir $tmp or die "chdir $tmp: $!" },
		'<', \undef, '>&', \$out, IPC::Run::timeout(120));
};
$out .= "\n(runner: $@)" if $@;
ok($ran, 'node --test test.js exits 0') or diag("---- output of @cmd\n$out");
note($out);

my @expected_tests = (
	'keyv stores user:1 under teams::user:1, the name cachebust.full_key() gives it',
	'checkKeyNames() refuses caches whose names cachebust would not delete',
	'a rename is read back once wait_for_delivery() returns on the writing connection',
	'a write of another session is read back once barrier() returns',
	'a team list is registered in the team tag set and deleted with it',
	q{moving a user invalidates the user and both teams' lists},
	'a rolled-back transaction invalidates nothing');
# node's TAP reporter: "ok N - name" or "not ok N - name", indented per level
# ("\#" and "\\" escaped in names).
my %result;
while ($out =~ /^\s*(not ok|ok) \d+ - (.*)$/mg)
{
	my ($status, $name) = ($1, $2);
	$name =~ s/\\([\\#])/$1/g;
	$result{$name} = $status;
}
is($result{$_} // 'did not run', 'ok', "node: $_") for @expected_tests;
my %count = $out =~ /^# (pass|fail) (\d+)$/mg;
is($count{pass} // 'none', scalar @expected_tests, 'node counts every test as passed');
is($count{fail} // 'none', 0, 'and none as failed');

# ---- what the tests leave behind
is($node->safe_psql('teams', q{SELECT trigger || ' ' || array_to_string(targets, ',') FROM cachebust.watches
                                WHERE "table" = 'users'::regclass ORDER BY 1}),
	join("\n", map { "cachebust_watch_1$_ user:{id},tag=team:{team_id}" } ('', '_delete', '_truncate', '_update')),
	'migrate() attached the statement and TRUNCATE triggers');
is($node->safe_psql('teams', 'SELECT cachebust.barrier()'), 't', 'everything the tests committed is delivered');
my @foreign = grep { !/^teams::/ } @{ $redis->cmd('KEYS', '*') };
is_deeply(\@foreign, ['billing:invoice:1'], 'the tests wrote only under teams:: and left the other entry alone');

my @written;
File::Find::find(
	sub {
		if ($_ eq 'node_modules') { $File::Find::prune = 1; return; }
		push @written, $File::Find::name if (Time::HiRes::lstat($_))[9] > $started;
	},
	$app);
is_deeply(\@written, [], 'node wrote nothing into examples/node');

$node->stop;
$redis->stop;
done_testing();
