-- Manual invalidation functions, flush, wait_for_delivery, stats.
BEGIN;
SELECT cachebust.invalidate_key('a', 'b', 'a');
SELECT cachebust.invalidate_tag('team:1');
SELECT cachebust.invalidate_pattern('session:*');
SELECT cachebust.bump('catalog:version');
SELECT cachebust.invalidate_key(VARIADIC ARRAY['c', 'd']);
SELECT * FROM cachebust.pending();
ROLLBACK;

-- Prefixes apply; in invalidate_pattern the prefix is escaped, the
-- caller's wildcards are kept.
BEGIN;
SET LOCAL cachebust.key_prefix = 'p?';
SELECT cachebust.invalidate_key('k');
SELECT cachebust.invalidate_pattern('s:*');
SELECT cachebust.invalidate_tag('t');
SELECT * FROM cachebust.pending();
ROLLBACK;

-- Manual targets follow savepoints like trigger targets.
BEGIN;
SELECT cachebust.invalidate_key('keep');
SAVEPOINT s;
SELECT cachebust.invalidate_key('drop');
ROLLBACK TO SAVEPOINT s;
SELECT * FROM cachebust.pending();
ROLLBACK;

-- Bad input.
SELECT cachebust.invalidate_key('');
SELECT cachebust.invalidate_key(VARIADIC ARRAY['ok', NULL]);
SELECT cachebust.invalidate_key(repeat('x', 9000));
SELECT cachebust.invalidate_pattern('');
SELECT cachebust.invalidate_key(VARIADIC '{}'::text[]);
SELECT cachebust.invalidate_key(NULL);
SELECT cachebust.wait_for_delivery(-1);

-- A session that committed nothing has nothing to wait for: true at once,
-- with a NOTICE pointing to barrier() (through a pool or a pooler in
-- transaction mode the write was committed on another connection).
SELECT cachebust.wait_for_delivery(0);
-- A rolled-back transaction adds nothing to wait for.
BEGIN;
SELECT cachebust.invalidate_key('rolled-back');
ROLLBACK;
SELECT cachebust.wait_for_delivery(0);
-- After a commit with invalidations it waits, without a NOTICE (no Redis
-- here: it times out), and still waits for that commit on the next call.
SELECT cachebust.invalidate_key('committed-by-this-session');
SELECT cachebust.wait_for_delivery(0);
SELECT cachebust.wait_for_delivery(0);
SELECT cachebust.flush();

-- stats(): one row with every counter; reset_stats() zeroes counters.
SELECT count(*) FROM cachebust.stats;
SELECT queue_size, queue_bytes_used >= 0 AS used_ok, connected IS NOT NULL AS has_connected
FROM cachebust.stats();
SELECT cachebust.reset_stats();
SELECT transactions_enqueued, targets_enqueued, targets_delivered, redis_commands, overflows,
       fallbacks, stats_reset IS NOT NULL AS reset_time
FROM cachebust.stats();

-- barrier(): read-your-writes across sessions; full_key(): the Redis name.
SELECT cachebust.barrier(-1);
SELECT cachebust.barrier(0) IS NOT NULL AS answers;
SELECT cachebust.full_key('user:1');
SET cachebust.key_prefix = 'app:';
SELECT cachebust.full_key('user:1');
RESET cachebust.key_prefix;

-- A glob that would match every key is refused while key_prefix is empty ...
SELECT cachebust.invalidate_pattern('*');
SELECT cachebust.invalidate_pattern('?*');
-- ... and allowed under a prefix (it then means "every key of this tenant").
BEGIN;
SET LOCAL cachebust.key_prefix = 'app:';
SELECT cachebust.invalidate_pattern('*');
SELECT * FROM cachebust.pending();
ROLLBACK;

-- A transaction larger than the queue (64kB here) spills its targets to WAL (the journal) and commits
-- as lost (a marker): the worker reads its targets back from WAL; pending() shows its prefixes.
BEGIN;
SET LOCAL cachebust.key_prefix = 'big:';
SELECT cachebust.invalidate_key(VARIADIC array_agg(repeat('x', 100) || g)) FROM generate_series(1, 2000) g;
SELECT * FROM cachebust.pending();
SELECT cachebust.invalidate_key('more');
SELECT * FROM cachebust.pending();
ROLLBACK;
SELECT count(*) FROM cachebust.pending();

-- wait_for_lsn(): the timeout is checked; an LSN long past is delivered (the worker publishes
-- how far every commit is delivered, with the journal).
SELECT cachebust.wait_for_lsn('0/0', -1);
SELECT cachebust.wait_for_lsn('0/1', 10000);
