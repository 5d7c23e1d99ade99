# The Django recipe of examples/django (its README.md is the Django part of
# "Using cachebust from an application"): the database setup it documents,
# its migration forwards and backwards, its system check, and its own test
# suite (blog/tests.py), run by `manage.py test` against this node and Redis.
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

# Debian's python3-django, python3-django-redis, python3-redis and
# python3-psycopg2 (test/install_deps.sh) are modules of the system Python.
my $python = $ENV{CACHEBUST_PYTHON} // '/usr/bin/python3';
my $app = Cwd::abs_path("$FindBin::Bin/../../examples/django");
my $started = Time::HiRes::time();

my $redis = start_redis();
my $node = cachebust_node('django', $redis, "cachebust.debounce_ms = 10\n");

# Everything Django or Python could write goes here (nothing is expected).
my $tmp = PostgreSQL::Test::Utils::tempdir('django');
my %django_env = (
	BLOG_DB_HOST => $node->host,    # the Unix socket directory
	BLOG_DB_PORT => $node->port,
	BLOG_DB_NAME => 'blog',
	BLOG_DB_USER => 'blog_app',
	BLOG_TEST_DB_USER => 'blog_test',
	BLOG_REDIS_URL => $redis->url,    # the Redis database cachebust.redis_url names
	PYTHONDONTWRITEBYTECODE => '1',
	HOME => $tmp,
);

# Runs `python3 manage.py @args` (or python3 @args when the first is -c) in
# $tmp with the settings' environment (plus %$extra_env); returns whether it
# exited 0 and its stdout and stderr together.
sub django
{
	my ($extra_env, @args) = @_;
	my @cmd = $args[0] eq '-c' ? ($python, @args) : ($python, "$app/manage.py", @args);
	local %ENV = (%ENV, %django_env, %$extra_env);
	my $out = '';
	my $ok = eval {
		IPC::Run::run(\@cmd, init => sub { chdir $tmp or die "chdir $tmp: $!" },
			'<', \undef, '>&', \$out, IPC::Run::timeout(180));
	};
	$out .= "\n(runner: $@)" if $@;
	return ($ok ? 1 : 0, $out);
}

# One step: ok() on its exit status (as expected), its output shown on failure.
sub step
{
	my ($name, $expect_success, $extra_env, @args) = @_;
	my ($ok, $out) = django($extra_env, @args);
	ok($ok == $expect_success, $name) or diag("---- output of @args\n$out");
	return $out;
}

my ($imports_ok, $out) = django({}, '-c', 'import django, django_redis, psycopg2, redis');
ok($imports_ok, "$python imports django, django_redis, psycopg2 and redis")
  or diag("$out\nInstall python3-django python3-django-redis python3-redis python3-psycopg2 (test/install_deps.sh)");
unless ($imports_ok)
{
	done_testing();
	exit;
}

# ---- the setup README.md prescribes, as a superuser
# The application's role and database, with the key prefix django-redis
# gives KEY_PREFIX 'blog', VERSION 1.
$node->safe_psql('postgres', q{
CREATE ROLE blog_app LOGIN;
CREATE DATABASE blog OWNER blog_app;
ALTER DATABASE blog SET cachebust.key_prefix = 'blog:1:';
});
$node->safe_psql('blog', q{
CREATE EXTENSION cachebust;
GRANT EXECUTE ON FUNCTION cachebust.invalidate() TO blog_app;
});
# The role `manage.py test` connects as: it creates test_blog from template1
# (so the extension and the grant are there), and its own key prefix follows
# it into that database, which exists only while the tests run.
$node->safe_psql('postgres', q{
CREATE ROLE blog_test LOGIN CREATEDB;
ALTER ROLE blog_test SET cachebust.key_prefix = 'blog_test:1:';
});
$node->safe_psql('template1', q{
CREATE EXTENSION cachebust;
GRANT EXECUTE ON FUNCTION cachebust.invalidate() TO blog_test;
});

# ---- the application's database
step('models and migrations agree (makemigrations --check)', 1, {}, 'makemigrations', '--check', '--dry-run', 'blog');
step('system check: cachebust names match django-redis names in blog', 1, {}, 'check', '--database', 'default');
$out = step('system check: a role with another key prefix is refused', 0, { BLOG_DB_USER => 'blog_test' },
	'check', '--database', 'default');
like($out, qr/blog\.E001.*'blog_test:1:probe'.*'blog:1:probe'/, 'and the check says which names differ');

step('migrate', 1, {}, 'migrate', '--noinput');
my $watches = q{SELECT trigger || ' ' || array_to_string(targets, ',') FROM cachebust.watches
                WHERE "table" = 'blog_article'::regclass ORDER BY 1};
my $expected_watches = join("\n",
	'cachebust_watch_1 article:{id},tag=author:{author_id}',
	'cachebust_watch_1_delete article:{id},tag=author:{author_id}',
	'cachebust_watch_1_truncate article:{id},tag=author:{author_id}',
	'cachebust_watch_1_update article:{id},tag=author:{author_id}');
is($node->safe_psql('blog', $watches), $expected_watches, 'the migration attached watch() to blog_article');
my $update_trigger = $node->safe_psql('blog',
	q{SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'cachebust_watch_1_update'});
like($update_trigger, qr/AFTER UPDATE OF title, body, author_id ON public\.blog_article FOR EACH ROW WHEN .*IS DISTINCT FROM/,
	'UPDATE invalidates only when title, body or author_id change');
unlike($update_trigger, qr/view_count/, 'view_count is not among them');

step('migrate back to 0001 (reverse_sql)', 1, {}, 'migrate', '--noinput', 'blog', '0001');
is($node->safe_psql('blog', $watches), '', 'reverse_sql removed the triggers');
step('migrate forwards again', 1, {}, 'migrate', '--noinput');
is($node->safe_psql('blog', $watches), $expected_watches, 'triggers attached again');

# A write of the application's role invalidates under blog:1:.
my @as_app = (extra_params => [ '-U', 'blog_app' ]);
my $id = $node->safe_psql('blog', q{
INSERT INTO blog_author (name) VALUES ('Ann');
INSERT INTO blog_article (author_id, title, body, view_count)
SELECT id, 'Hello', '', 0 FROM blog_author RETURNING id;}, @as_app);
is($node->safe_psql('blog', 'SELECT cachebust.barrier()'), 't', 'inserts delivered');
$redis->cmd('SET', "blog:1:article:$id", 'cached');
is($node->safe_psql('blog', qq{UPDATE blog_article SET title = 'Hi' WHERE id = $id; SELECT cachebust.barrier()}, @as_app),
	't', 'update delivered');
is($redis->exists_key("blog:1:article:$id"), 0, "the update removed blog:1:article:$id");

# ---- the test suite, on test_blog with the prefix blog_test:1:
# Entries of the application's database must outlive it: the tests' TRUNCATEs
# become patterns, but only under blog_test:1:.
$redis->cmd('SET', "blog:1:article:$id", 'cached');
$redis->cmd('SET', 'blog:1:author-articles:1:new', 'cached');
$redis->cmd('SADD', 'blog:1:tag:author:1', 'blog:1:author-articles:1:new');

$out = step('manage.py test', 1, {}, 'test', '--noinput', '-v', '2', 'blog');
note($out);
my @expected_tests = qw(
  test_bulk_create_invalidates_the_authors_list
  test_changing_the_author_invalidates_both_lists
  test_delete_invalidates_the_article_and_the_list
  test_incr_version_moves_an_entry_out_of_reach
  test_list_is_registered_in_the_authors_tag_set
  test_on_commit_callback_waits_with_barrier
  test_queryset_update
  test_raw_sql_update
  test_rolled_back_atomic_block_leaves_the_cache_alone
  test_save_changing_only_an_unwatched_column_does_not_invalidate
  test_save_invalidates_the_article
  test_truncate_invalidates_every_article_and_list);
# unittest at verbosity 2: "test_x (blog.tests.InvalidationTests[.test_x]) ... ok".
my %result = $out =~ /^(test_\w+) \(blog\.tests\.InvalidationTests(?:\.\w+)?\) \.\.\. (\S[^\n]*)$/mg;
is($result{$_} // 'did not run', 'ok', "django: $_") for @expected_tests;
is_deeply([ sort keys %result ], [ sort @expected_tests ], 'no other test ran');
like($out, qr/^Ran ${\ scalar @expected_tests} tests in .*\n\nOK$/m, 'unittest reports OK');
like($out, qr/^System check identified no issues/m, 'the checks passed on the test database');

is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_database WHERE datname = 'test_blog'}), '0',
	'the test database was dropped');
is($node->safe_psql('postgres', 'SELECT cachebust.barrier()'), 't', 'everything the tests committed is delivered');
is($redis->exists_key("blog:1:article:$id") + $redis->exists_key('blog:1:author-articles:1:new')
	  + $redis->exists_key('blog:1:tag:author:1'), 3, 'the application database\'s entries are untouched');

opendir(my $dh, $tmp) or die "opendir $tmp: $!";
is_deeply([ grep { !/^\.\.?$/ } readdir $dh ], [], 'Django wrote nothing into its working directory');
closedir $dh;
my @written;
File::Find::find(sub { push @written, $File::Find::name if (Time::HiRes::lstat($_))[9] > $started }, $app);
is_deeply(\@written, [], 'nor into examples/django');

$node->stop;
$redis->stop;
done_testing();
