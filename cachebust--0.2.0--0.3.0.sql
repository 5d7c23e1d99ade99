-- cachebust 0.2.0 -> 0.3.0
\echo Use "ALTER EXTENSION cachebust UPDATE TO '0.3.0'" to load this file. \quit

-- ---- 0.3.0, the WAL journal (issue 23): internal functions for tests and diagnosis ----
-- The committed journal targets in WAL from `from_lsn` to the end of WAL readable now.
CREATE FUNCTION _journal_scan(from_lsn pg_lsn)
RETURNS TABLE(commit_lsn pg_lsn, xid xid, kind text, target text)
AS 'MODULE_PATHNAME', 'cachebust_journal_scan' LANGUAGE C STRICT VOLATILE;
-- Creates the "cachebust" replication slot if missing, advances it to advance_to
-- (never backwards), returns its restart_lsn (NULL when invalidated).
CREATE FUNCTION _journal_slot(advance_to pg_lsn DEFAULT NULL)
RETURNS pg_lsn
AS 'MODULE_PATHNAME', 'cachebust_journal_slot' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION _journal_scan(pg_lsn) FROM PUBLIC;
REVOKE ALL ON FUNCTION _journal_slot(pg_lsn) FROM PUBLIC;
-- ---- end of the WAL journal block ----
