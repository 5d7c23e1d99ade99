# The SQLAlchemy recipe of examples/sqlalchemy (README: "Using cachebust from
# an application", SQLAlchemy): the database setup it documents, its schema
# with watch(), its startup check of the Redis names, and its own tests
# (catalog/tests.py, unittest), which cache with dogpile.cache and write with
# SQLAlchemy against this node and Redis.
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

# Debian's python3-sqlalchemy, python3-dogpile.cache, python3-redis and
# python3-psycopg2 (test/install_deps.sh) are modules of the system Python.
my $python = $ENV{CACHEBUST_PYTHON} // '/usr/bin/python3';
my $app = Cwd::abs_path("$FindBin::Bin/../../examples/sqlalchemy");
my $started = Time::HiRes::time();

my $redis = start_redis();
my $node = cachebust_node('sqlalchemy', $redis, "cachebust.debounce_ms = 10\n");

# Everything Python could write goes here (nothing is expected).
my $tmp = PostgreSQL::Test::Utils::tempdir('sqlalchemy');
my %app_env = (
	CATALOG_DB_HOST => $node->host,    # the Unix socket directory
	CATALOG_DB_PORT => $node->port,
	CATALOG_DB_NAME => 'catalog',
	CATALOG_DB_USER => 'catalog_app',
	CATALOG_REDIS_URL => $redis->url,    # the Redis database cachebust.redis_url names
	PYTHONPATH => $app,
	PYTHONDONTWRITEBYTECODE => '1',
	HOME => $tmp,
);

# Runs python3 @args in $tmp with the application's environment (plus
# %$extra_env); returns whether it exited 0 and its stdout and stderr together.
sub python
{
	my ($extra_env, @args) = @_;
	local %ENV = (%ENV, %app_env, %$extra_env);
	delete @ENV{qw(PGSERVICE PGOPTIONS PYTHONSTARTUP PYTHONHOME)};
	my $out = '';
	my $ok = eval {
		IPC::Run::run([ $python, @args ], init => sub { chdir $tmp or die "chdir $tmp: $!" },
			'<', \undef, '>&', \$out, IPC::Run::timeout(180));
	};
	$out .= "\n(runner: $@)" if $@;
	return ($ok ? 1 : 0, $out);
}

# One step: ok() on its exit status (as expected), its output shown on failure.
sub step
{
	my ($name, $expect_success, $extra_env, @args) = @_;
	my ($ok, $out) = python($extra_env, @args);
	ok($ok == $expect_success, $name) or diag("---- output of python3 @args\n$out");
	return $out;
}

my ($imports_ok, $out) = python({}, '-c', 'import sqlalchemy, dogpile.cache, psycopg2, redis');
ok($imports_ok, "$python imports sqlalchemy, dogpile.cache, psycopg2 and redis")
  or diag("$out\nInstall python3-sqlalchemy python3-dogpile.cache python3-redis python3-psycopg2 (test/install_deps.sh)");
unless ($imports_ok)
{
	done_testing();
	exit;
}

# ---- the setup the recipe prescribes, as a superuser: the application's
# role owns its database and attaches the triggers; the database's key
# prefix is the region's key_mangler prefix.
$node->safe_psql('postgres', q{
CREATE ROLE catalog_app LOGIN;
CREATE DATABASE catalog OWNER catalog_app;
ALTER DATABASE catalog SET cachebust.key_prefix = 'catalog:';
-- A role whose own prefix would win over the database's: the startup check
-- must refuse it.
CREATE ROLE catalog_other LOGIN;
ALTER ROLE catalog_other SET cachebust.key_prefix = 'other:';
});
$node->safe_psql('catalog', q{
CREATE EXTENSION cachebust;
GRANT EXECUTE ON FUNCTION cachebust.invalidate() TO catalog_app;
});

# Another application's entry in the same Redis database: the tests empty
# only their own names.
$redis->cmd('SET', 'billing:invoice:1', 'cached');

# ---- the schema and the startup check
step('python3 -m catalog.schema creates the tables and watches products', 1, {}, '-m', 'catalog.schema');
my $watches = q{SELECT trigger || ' ' || array_to_string(targets, ',') FROM cachebust.watches
                WHERE "table" = 'products'::regclass ORDER BY 1};
my $expected_watches = join("\n",
	map { "cachebust_watch_1$_ product:{id},tag=category:{category_id}" } ('', '_delete', '_truncate', '_update'));
is($node->safe_psql('catalog', $watches), $expected_watches, 'watch() attached to products');
step('running it again changes nothing', 1, {}, '-m', 'catalog.schema');
is($node->safe_psql('catalog', $watches), $expected_watches, 'still one watch');

$out = step('startup check: cachebust deletes the names the region writes', 1, {}, '-m', 'catalog.check');
like($out, qr/cachebust deletes the names the cache writes/, 'and says so');
$out = step('startup check: a role with another key prefix is refused', 0, { CATALOG_DB_USER => 'catalog_other' },
	'-m', 'catalog.check');
like($out, qr/stores product probe-\w+ as 'catalog:product:probe-\w+', cachebust deletes 'other:product:probe-\w+'/,
	'and the check says which names differ');

# ---- the app's own tests
$out = step('python3 -m unittest catalog.tests', 1, {}, '-m', 'unittest', '-v', 'catalog.tests');
note($out);
my @expected_tests = qw(
  test_a_delete_invalidates_the_product_and_its_list
  test_a_hashing_key_mangler_is_refused
  test_a_rolled_back_session_invalidates_nothing
  test_an_insert_invalidates_the_category_lists
  test_an_orm_change_is_read_back_after_commit
  test_an_update_statement_is_waited_for_too
  test_key_names_match_cachebust
  test_moving_a_product_invalidates_both_lists
  test_wait_for_delivery_on_another_connection_has_nothing_to_wait_for
  test_wait_for_delivery_on_the_connection_that_committed
  test_without_the_trigger_a_commit_leaves_the_cache_stale);
# unittest at verbosity 2: "test_x (catalog.tests.CatalogTests[.test_x]) ... ok".
my %result = $out =~ /^(test_\w+) \(catalog\.tests\.CatalogTests(?:\.\w+)?\) \.\.\. (\S[^\n]*)$/mg;
is($result{$_} // 'did not run', 'ok', "sqlalchemy: $_") for @expected_tests;
is_deeply([ sort keys %result ], [ sort @expected_tests ], 'no other test ran');
like($out, qr/^Ran ${\ scalar @expected_tests} tests in .*\n\nOK$/m, 'unittest reports OK');

# ---- what the tests leave behind
is($node->safe_psql('catalog', $watches), $expected_watches, 'the control test put the watch back');
is($node->safe_psql('catalog', 'SELECT cachebust.barrier()'), 't', 'everything the tests committed is delivered');
my @foreign = grep { !/^catalog:/ } @{ $redis->cmd('KEYS', '*') };
is_deeply(\@foreign, ['billing:invoice:1'], 'the tests wrote only under catalog: and left the other entry alone');

opendir(my $dh, $tmp) or die "opendir $tmp: $!";
is_deeply([ grep { !/^\.\.?$/ } readdir $dh ], [], 'Python wrote nothing into its working directory');
closedir $dh;
my @written;
File::Find::find(sub { push @written, $File::Find::name if (Time::HiRes::lstat($_))[9] > $started }, $app);
is_deeply(\@written, [], 'nor into examples/sqlalchemy');

$node->stop;
$redis->stop;
done_testing();
