-- Transaction semantics of the pending set.
CREATE TABLE items (id int PRIMARY KEY, name text);
CREATE TRIGGER items_cache AFTER INSERT OR UPDATE OR DELETE ON items
FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate('item:{id}');

-- ROLLBACK discards everything.
BEGIN;
INSERT INTO items VALUES (1, 'a');
SELECT count(*) FROM cachebust.pending();
ROLLBACK;
SELECT count(*) FROM cachebust.pending();

-- ROLLBACK TO SAVEPOINT discards exactly what the subtransaction added.
BEGIN;
INSERT INTO items VALUES (1, 'a');
SAVEPOINT s1;
INSERT INTO items VALUES (2, 'b');
UPDATE items SET name = 'a2' WHERE id = 1;  -- item:1 already buffered by the parent
SAVEPOINT s2;
INSERT INTO items VALUES (3, 'c');
ROLLBACK TO SAVEPOINT s2;
SELECT * FROM cachebust.pending();
ROLLBACK TO SAVEPOINT s1;
SELECT * FROM cachebust.pending();
-- RELEASE keeps what the subtransaction added ...
SAVEPOINT s3;
INSERT INTO items VALUES (4, 'd');
RELEASE SAVEPOINT s3;
SELECT * FROM cachebust.pending();
-- ... and a later rollback of the enclosing savepoint drops it.
SAVEPOINT s4;
SAVEPOINT s5;
INSERT INTO items VALUES (5, 'e');
RELEASE SAVEPOINT s5;
ROLLBACK TO SAVEPOINT s4;
SELECT * FROM cachebust.pending();
COMMIT;
SELECT count(*) FROM cachebust.pending();

-- PL/pgSQL exception blocks are subtransactions too.
DO $$
BEGIN
    BEGIN
        INSERT INTO items VALUES (6, 'f');
        RAISE EXCEPTION 'undo';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    INSERT INTO items VALUES (7, 'g');
    RAISE NOTICE 'pending: %', (SELECT string_agg(target, ',') FROM cachebust.pending());
END;
$$;

-- A failed statement inside a transaction block is rolled back with it.
BEGIN;
INSERT INTO items VALUES (8, 'h');
SAVEPOINT before_dup;
INSERT INTO items VALUES (9, 'i'), (1, 'dup');
ROLLBACK TO SAVEPOINT before_dup;
SELECT * FROM cachebust.pending();
ROLLBACK;

-- PREPARE TRANSACTION with pending targets is refused ...
BEGIN;
INSERT INTO items VALUES (10, 'j');
PREPARE TRANSACTION 'cb_2pc';
SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'cb_2pc';
-- ... and works without them.
BEGIN;
SELECT 1;
PREPARE TRANSACTION 'cb_2pc_empty';
COMMIT PREPARED 'cb_2pc_empty';

-- cachebust.enabled = off records nothing.
BEGIN;
SET LOCAL cachebust.enabled = off;
INSERT INTO items VALUES (11, 'k');
SELECT cachebust.invalidate_key('manual');
SELECT count(*) FROM cachebust.pending();
ROLLBACK;

-- Committed targets reach the queue (the worker cannot deliver them here:
-- this instance has no Redis).
SELECT enqueued_seq AS seq_before FROM cachebust.stats() \gset
INSERT INTO items VALUES (12, 'l');
SELECT enqueued_seq - :seq_before AS new_batches, transactions_enqueued > 0 AS counted
FROM cachebust.stats();
-- A transaction without targets does not enqueue anything.
SELECT 1;
SELECT enqueued_seq - :seq_before AS new_batches FROM cachebust.stats();
