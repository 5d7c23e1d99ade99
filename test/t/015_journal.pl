# The WAL journal at the WAL level (issue 23): what committing transactions
# write, what the reader hands back, and the slot that keeps the WAL. No
# Redis: nothing is ever delivered here, so the worker must keep the slot
# at or before everything committed (replay into Redis: 017, 018).
#
# cachebust._journal_scan(from) runs the worker's reader (journal_wal.cpp)
# from `from` to the end of flushed WAL; pg_walinspect (15+) counts the raw
# logical-message records independently of it.
use strict;
use warnings;

use CachebustTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# 64kB queue: a few thousand keys overflow it, so transactions spill early.
my $node = cachebust_node('journal', undef, "cachebust.queue_size = 64kB\nrestart_after_crash = on\n", allows_streaming => 1);
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_walinspect;
CREATE TABLE users (id int PRIMARY KEY, team int);
INSERT INTO users SELECT g, g % 10 FROM generate_series(1, 100) g;
SELECT cachebust.watch('users', keys => ARRAY['user:{id}'], tags => ARRAY['team:{team}']);
});

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub lsn { return sql('SELECT pg_current_wal_lsn()'); }

# The committed journal targets since $from, "kind target" sorted.
sub journal_since
{
	my ($from, $like) = @_;
	$like //= '%';
	return sql(qq{SELECT coalesce(string_agg(kind || ' ' || target, ',' ORDER BY kind, target), '')
	              FROM cachebust._journal_scan('$from') WHERE target LIKE '$like'});
}

# Journal records (logical messages) in WAL since $from, whatever the
# reader makes of them; not the worker's progress records.
sub messages_since
{
	my ($from) = @_;
	return sql(qq{SELECT count(*) FROM pg_get_wal_records_info('$from', pg_current_wal_flush_lsn())
	              WHERE resource_manager = 'LogicalMessage' AND description NOT LIKE '%cachebust.progress%'});
}

# The reader's NOTICE after a scan from $from: (read to, open transactions, safe restart).
sub scan_state
{
	my ($from) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', qq{SELECT count(*) FROM cachebust._journal_scan('$from')});
	return $err =~ m{journal read to (\S+): (\d+) transactions still open, safe restart at (\S+)} ? ($1, $2, $3) : ();
}
sub lsn_le { my ($a, $b) = @_; return sql(qq{SELECT '$a'::pg_lsn <= '$b'::pg_lsn}) eq 't'; }

# ---- the slot
my $slot_start = sql('SELECT cachebust._journal_slot()');
isnt($slot_start, '', 'the slot is created with WAL reserved');
is(sql(q{SELECT slot_type || ' ' || active FROM pg_replication_slots WHERE slot_name = 'cachebust'}),
	'physical false', 'a physical slot named cachebust, held only during calls');

# ---- committed: the targets pending() showed before COMMIT, in one message
my $from = lsn();
my $pending = sql(q{
BEGIN;
UPDATE users SET team = 42 WHERE id = 1;
DELETE FROM users WHERE id = 2;
SELECT string_agg(kind || ' ' || target, ',' ORDER BY kind, target) FROM cachebust.pending();
COMMIT;
});
like($pending, qr/key user:1/, 'the transaction buffered targets');
is(journal_since($from), $pending, 'a committed transaction is in the journal with exactly its targets');
is(messages_since($from), '1', 'as one logical message');
my ($commit_lsn, $xid) = split /\|/, sql(qq{SELECT DISTINCT commit_lsn, xid FROM cachebust._journal_scan('$from')});
cmp_ok(sql(qq{SELECT '$commit_lsn'::pg_lsn <= pg_current_wal_flush_lsn()}), 'eq', 't',
	'delivered with its commit LSN');
is(sql(qq{SELECT pg_xact_status('$xid'::text::xid8)}), 'committed', 'and its xid, which committed');

$from = lsn();
sql(q{SELECT cachebust.invalidate_key('manual:1')});
is(journal_since($from), 'key manual:1', 'a manual invalidation (no xid before) is journaled too');

# ---- aborted, savepoints
$from = lsn();
sql(q{BEGIN; UPDATE users SET team = 7 WHERE id = 3; ROLLBACK});
sql(q{
BEGIN;
SELECT cachebust.invalidate_key('sp:kept');
SAVEPOINT a;
SELECT cachebust.invalidate_key('sp:rolled-back');
ROLLBACK TO SAVEPOINT a;
SAVEPOINT b;
SELECT cachebust.invalidate_key('sp:released');
RELEASE SAVEPOINT b;
COMMIT;
});
is(journal_since($from), 'key sp:kept,key sp:released',
	'a rollback writes nothing; ROLLBACK TO SAVEPOINT drops exactly that subtransaction\'s targets');

# ---- larger than the queue: spilled in parts, all of them journaled
my $many = sub { my ($p) = @_; qq{SELECT cachebust.invalidate_key(VARIADIC array_agg('$p:' || g)) FROM generate_series(1, 5000) g;} };
$from = lsn();
sql('BEGIN; ' . $many->('big') . ' COMMIT;');
is(sql(qq{SELECT count(*) || ' ' || count(DISTINCT target) FROM cachebust._journal_scan('$from') WHERE target LIKE 'big:%'}),
	'5000 5000', 'a transaction larger than the queue has every target in the journal, once');
cmp_ok(messages_since($from), '>', 1, 'written in several messages (spilled before commit)');

$from = lsn();
sql('BEGIN; ' . $many->('gone') . ' ROLLBACK;');
sql(q{SELECT cachebust.invalidate_key('after:rollback')});
cmp_ok(messages_since($from), '>', 1, 'a rolled-back large transaction spilled messages into WAL');
is(journal_since($from), 'key after:rollback', 'but the reader drops them at its abort record');

$from = lsn();
sql(q{BEGIN; SELECT cachebust.invalidate_key('outer:1'); SAVEPOINT s; } . $many->('inner')
	  . q{ ROLLBACK TO SAVEPOINT s; SELECT cachebust.invalidate_key('outer:2'); COMMIT;});
is(journal_since($from), 'key outer:1,key outer:2',
	'a spill inside a rolled-back savepoint is dropped, the outer targets stay');

$from = lsn();
sql(q{BEGIN; SELECT cachebust.invalidate_key('rel:outer'); SAVEPOINT s; } . $many->('rel') . q{ RELEASE SAVEPOINT s; COMMIT;});
is(sql(qq{SELECT count(DISTINCT target) FROM cachebust._journal_scan('$from') WHERE target LIKE 'rel:%'}),
	'5001', 'a spill inside a released savepoint commits with the transaction');

# ---- PREPARE TRANSACTION with targets stays refused
$from = lsn();
my ($ret, $out, $err) = $node->psql('postgres', q{BEGIN; SELECT cachebust.invalidate_key('prep:1'); PREPARE TRANSACTION 'p1'});
like($err, qr/cannot PREPARE a transaction that has buffered cachebust invalidations/, 'PREPARE with targets is refused');
($ret, $out, $err) = $node->psql('postgres', 'BEGIN; ' . $many->('prep') . q{ PREPARE TRANSACTION 'p2'});
like($err, qr/cannot PREPARE/, 'also after spilling to WAL');
sql(q{SELECT cachebust.invalidate_key('after:prepare')});
is(sql('SELECT count(*) FROM pg_prepared_xacts'), '0', 'nothing was prepared');
is(journal_since($from), 'key after:prepare', 'and nothing of either is in the journal');

# ---- a backend SIGKILLed mid-transaction (crash restart)
$from = lsn();
my $bg = $node->background_psql('postgres');
my $backend_pid = $bg->query_safe('SELECT pg_backend_pid()');
$bg->query_safe('BEGIN');
$bg->query($many->('crash'));    # (its WARNING would fail query_safe)
sql(q{SELECT cachebust.invalidate_key('during:crash')});
cmp_ok(messages_since($from), '>', 1, 'the open transaction has spilled into WAL');
is(journal_since($from), 'key during:crash', 'an open transaction is not delivered');
my ($read_to, $open, $safe) = scan_state($from);
is($open, 1, 'the reader holds it as open');
ok(lsn_le($from, $safe) && !lsn_le($read_to, $safe),
	'and a new reader would have to start at its first message, before the read position');
kill 'KILL', $backend_pid;
ok(wait_until(sub { (eval { $node->safe_psql('postgres', 'SELECT 1') } // '') eq '1' }, 60),
	'the server is back after the crash restart');
eval { $bg->quit };
sql(q{SELECT cachebust.invalidate_key('after:crash')});
is(journal_since($from), 'key after:crash,key during:crash',
	'a transaction killed mid-way is never delivered; commits around the crash are');
($read_to, $open, $safe) = scan_state($from);
is("$open $safe", "0 $read_to", 'and the reader forgets it at the end of crash recovery: nothing holds the slot back');

# ---- the slot keeps the WAL of what is undelivered, never moves back, persists
my $restart = sql('SELECT cachebust._journal_slot()');
ok(lsn_le($restart, $slot_start),
	'nothing was delivered: the worker kept the slot at or before every commit (after the crash: where it was saved)');
sql(q{CREATE TABLE filler (x text)});
for (1 .. 3)
{
	sql(q{INSERT INTO filler SELECT repeat('x', 100) FROM generate_series(1, 100); SELECT pg_switch_wal()});
}
sql('CHECKPOINT');
is(sql(q{SELECT count(*) FROM pg_ls_waldir() WHERE name = pg_walfile_name(cachebust._journal_slot())}), '1',
	'after WAL switches and a checkpoint the segment at the slot is still there');
my $since_slot = journal_since($restart);
ok($since_slot =~ /key user:1(,|$)/ && $since_slot =~ /key sp:kept/ && $since_slot =~ /key after:crash/,
	'and everything since the slot position can be read back from it');
my $advance_to = sql(qq{SELECT max(commit_lsn) FROM cachebust._journal_scan('$restart') WHERE target = 'sp:kept'});
is(sql(qq{SELECT cachebust._journal_slot('$advance_to')}), $advance_to, 'the slot advances');
is(sql(q{SELECT cachebust._journal_slot('0/1')}), $advance_to, 'never backwards');
is(sql(q{SELECT cachebust._journal_slot('FFFFFFFF/0') <= pg_current_wal_flush_lsn()}), 't',
	'never past the flushed WAL');
my $advanced = sql(q{SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'cachebust'});
unlike(journal_since($advanced), qr/sp:kept/, 'a reader from the new position no longer sees what was before it');
$node->restart;
ok(lsn_le($advanced, sql(q{SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'cachebust'})),
	'the advanced position survives a restart');

# ---- WAL bytes per transaction, journal on vs off (one-row UPDATE transactions)
my $transactions = 1000;
my $update_loop = qq{DO \$\$ BEGIN FOR i IN 1..$transactions LOOP
  UPDATE users SET team = team + 1 WHERE id = 3 + i % 90; COMMIT; END LOOP; END \$\$;};
sub wal_bytes_per_transaction
{
	sql($update_loop);    # every page touched once since the last checkpoint: no full-page images below
	my $start = lsn();
	sql($update_loop);
	return sql(qq{SELECT round((pg_current_wal_lsn() - '$start'::pg_lsn) / $transactions.0, 1)});
}
my $with_journal = wal_bytes_per_transaction();

# ---- cachebust.journal = off: no message at all
$node->append_conf('postgresql.conf', "cachebust.journal = off\n");
$node->restart;
my $without_journal = wal_bytes_per_transaction();
$from = lsn();
sql(q{UPDATE users SET team = 1 WHERE id = 5; SELECT cachebust.invalidate_key('off:1')});
sql('BEGIN; ' . $many->('off') . ' COMMIT;');
is(messages_since($from), '0', 'cachebust.journal = off writes no message, not even for a large transaction');
is(journal_since($from), '', 'and the reader finds none');
diag(sprintf('WAL bytes per one-row UPDATE transaction (%d transactions): journal on %s, off %s, difference %.1f, ratio %.3f',
	$transactions, $with_journal, $without_journal, $with_journal - $without_journal, $with_journal / $without_journal));
cmp_ok($with_journal, '>', $without_journal, 'the journal costs WAL bytes per transaction');
$node->stop;

# ---- wal_level = minimal and max_replication_slots = 0: off, with a WARNING
my $minimal = cachebust_node('minimal', undef);    # (not streaming: wal_level = minimal)
like(slurp_file($minimal->logfile), qr/WARNING:  cachebust.journal is off: wal_level is "minimal"/,
	'wal_level = minimal turns the journal off with a WARNING');
$from = $minimal->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$minimal->safe_psql('postgres', q{SELECT cachebust.invalidate_key('minimal:1')});
is($minimal->safe_psql('postgres', qq{SELECT count(*) FROM cachebust._journal_scan('$from')}), '0',
	'and nothing is journaled');
$minimal->append_conf('postgresql.conf', "wal_level = replica\nmax_replication_slots = 0\n");
$minimal->restart;
like(slurp_file($minimal->logfile), qr/WARNING:  cachebust.journal is off: max_replication_slots is 0/,
	'so does max_replication_slots = 0');
$minimal->stop;

done_testing();
