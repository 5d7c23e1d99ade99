# Regional caches (issue 24): on a standby with a Redis of its own,
# cachebust.wait_for_lsn() with the writer's pg_current_wal_insert_lsn()
# after an isolated commit (nothing written on the primary after it) is
# true once the standby replayed up to that LSN — not only when some later
# WAL record (the bgwriter's running-transactions record, up to 15 s later)
# happens to reach the standby.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $redis_a = start_redis();
my $redis_b = start_redis();
# (No autovacuum: its commits would carry the WAL to the standby for us.)
my $primary = cachebust_node('primary', $redis_a, q{
cachebust.key_prefix = 'app:'
autovacuum = off
}, allows_streaming => 1);
$primary->safe_psql('postgres', q{
CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO items SELECT g FROM generate_series(1, 20) g;
SELECT cachebust.watch('items', keys => ARRAY['items:{id}']);
});
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf', "cachebust.redis_url = '" . $redis_b->url . "'\n");
$standby->start;
ok(wait_until(sub { $standby->log_contains('cachebust worker delivers what this standby replays') }, 30),
	'the standby worker delivers to its own Redis');
$primary->wait_for_catchup($standby, 'replay');

# Polls wait_for_lsn($lsn) on the standby (bounded: longer than the
# bgwriter's 15 s between running-transactions records). Returns whether it
# became true, and the standby's replay position read just after.
sub standby_wait
{
	my ($lsn) = @_;
	for (1 .. 400)
	{
		my ($waited, $replayed) = split /\|/, $standby->safe_psql('postgres',
			"SELECT w, pg_last_wal_replay_lsn()
			 FROM (SELECT cachebust.wait_for_lsn('$lsn', 100) AS w OFFSET 0) s");
		return (1, $replayed) if $waited eq 't';
	}
	return (0, '');
}

sub lsn_le
{
	my ($a, $b) = @_;
	return $primary->safe_psql('postgres', "SELECT '$a'::pg_lsn <= '$b'::pg_lsn") eq 't';
}

# ---- isolated commits: the writer's insert LSN, then nothing more on the primary
for my $id (1 .. 3)
{
	$redis_b->cmd('SET', "app:items:$id", 'cached');
	$primary->safe_psql('postgres', "UPDATE items SET v = v + 1 WHERE id = $id");
	my $commit_end = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	# The primary's worker delivers the commit and, within about a second,
	# says where its slot is now (a record after the commit): wait for it,
	# so that the writer's LSN below includes it as a writer's often does.
	wait_until(sub {
		$primary->safe_psql('postgres', "SELECT pg_current_wal_insert_lsn() > '$commit_end'") eq 't' }, 3);
	my $lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	my ($done, $replayed) = standby_wait($lsn);
	ok($done, "commit $id: wait_for_lsn() on the standby becomes true");
	ok($done && lsn_le($replayed, $lsn),
		"commit $id: without waiting for later WAL (writer's LSN $lsn, commit end $commit_end, standby replayed $replayed)");
	is($redis_b->exists_key("app:items:$id"), 0, "commit $id: Redis B is clean");
}

# ---- a commit that ends exactly at a WAL page boundary: the writer's
# insert LSN is then past the next page's header, where no record ends.
# The primary's worker may write a record soon after (its progress), which
# would end the wait for the wrong reason: the WAL writer, which flushes it,
# waits 10 s between rounds here (it is not hibernating: it was just busy).
reload_settings($primary, "ALTER SYSTEM SET wal_writer_delay = '10s'");
$primary->safe_psql('postgres', q{
CREATE FUNCTION pad_commit_to_page_end(overhead int) RETURNS pg_lsn LANGUAGE plpgsql AS $$
DECLARE
	page int := current_setting('wal_block_size')::int;
	here pg_lsn;
	room int;
BEGIN
	LOOP
		here := pg_current_wal_insert_lsn();
		room := page - ((here - '0/0'::pg_lsn) % page)::int;
		EXIT WHEN room - overhead >= 300;
		-- Too near the page's end: a filler message crosses into the next page.
		PERFORM pg_logical_emit_message(true, 'filler', repeat('x', room));
	END LOOP;
	-- This message and the commit record fill the page to its end.
	PERFORM pg_logical_emit_message(true, 'pad', repeat('x', room - overhead));
	RETURN here + room;
END $$;
});
# The records' sizes are found by trying: the error of one try corrects the next.
my ($page_end, $lsn);
my $overhead = 100;
for (1 .. 20)
{
	my $target = $primary->safe_psql('postgres', "SELECT pad_commit_to_page_end($overhead)");
	my ($off, $insert) = split /\|/, $primary->safe_psql('postgres',
		"SELECT pg_current_wal_lsn() - '$target', pg_current_wal_insert_lsn()");
	if ($off == 0)
	{
		# (Retried if the primary's worker wrote a record meanwhile.)
		my $past_header = $primary->safe_psql('postgres', "SELECT '$target'::pg_lsn + 24 = '$insert'");
		($page_end, $lsn) = ($target, $insert) if $past_header eq 't';
		last if $page_end;
		next;
	}
	$overhead += $off;
}
ok($page_end, "a commit ended at the page boundary $page_end; the writer's LSN is $lsn")
  or diag("overhead $overhead");
SKIP:
{
	skip 'no commit ended at a page boundary', 1 unless $page_end;
	my ($done, $replayed) = standby_wait($lsn);
	ok($done && lsn_le($replayed, $lsn),
		"page boundary: wait_for_lsn() without waiting for later WAL (standby replayed $replayed)");
}

$standby->stop;
$primary->stop;
done_testing();
