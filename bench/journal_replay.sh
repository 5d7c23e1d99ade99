#!/usr/bin/env bash
# bench/journal_replay.sh — how fast the worker replays a WAL backlog after a
# crash (issue 23, "Measure (bench)": replay speed).
#
# How: Redis holds a key for every row of two watched tables. Redis is saved
# to disk and killed; with Redis away the worker delivers nothing, so every
# commit from then on stays undelivered and the worker's slot keeps its WAL.
# A backlog is built:
#   small  JR_SMALL_SECONDS of one-row UPDATEs (pgbench, JR_CLIENTS clients,
#          synchronous_commit = off) of random rows 1..80,000 of a 100k-row
#          table watched with a key and a tag (W1 with key_tag)
#   bulk   then 10k-row UPDATEs of rows 1..450,000 of a 500k-row table
#          watched with a key, one transaction each, until the backlog holds
#          JR_WAL_MB of WAL
# Every UPDATE sets `touched`, so after recovery the table says which rows
# were committed. Then `pg_ctl stop -m immediate`, Redis back (from its
# dump, before PostgreSQL so the replay never waits for it), PostgreSQL
# started, and timed: start → accepting connections (PostgreSQL's own crash
# recovery), → `cachebust.barrier()` true (caught up). The worker's LOG line
# "cachebust journal replay done: N transactions, M targets ... in T ms"
# and cachebust.stats give the replay's own time and counts.
# Checked right when barrier() returns true: every touched row's key is
# gone, every untouched row's key is still there, fallbacks = 0.
#
# Knobs: JR_WAL_MB (1024), JR_SMALL_SECONDS (60), JR_CLIENTS (8), JR_LABEL.
# Output: bench/results/<timestamp>-journal-replay[-label]/results.md (and
# the server log). Runs under flock /tmp/cachebust-bench.lock like
# bench/cpu_cost.sh. PostgreSQL: the first pg_config on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
if [ -z "${JR_LOCKED:-}" ]; then JR_LOCKED=1 exec flock /tmp/cachebust-bench.lock "$0" "$@"; fi

wal_mb=${JR_WAL_MB:-1024}
small_seconds=${JR_SMALL_SECONDS:-60}
clients=${JR_CLIENTS:-8}
label=${JR_LABEL:-}
small_rows=100000 small_touched=80000 bulk_rows=500000 bulk_touched=450000

stamp=$(date -u +%Y%m%d-%H%M%S)
out="$root/bench/results/$stamp-journal-replay${label:+-$(echo "$label" | tr -c 'A-Za-z0-9_.\n-' '_')}"
mkdir -p "$out"
. bench/lib.sh
bench_scratch journal
redis_port=$(free_port)
pg_port=$(free_port)
redis_pid=""
start_redis() { # (loads $work/dump.rdb if there is one)
	rm -f "$work/redis.pid"
	redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" --dbfilename dump.rdb \
		--daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log" >/dev/null
	for _ in $(seq 1 100); do [ -s "$work/redis.pid" ] && redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
	redis_pid=$(cat "$work/redis.pid")
}
stop_redis() { # only the Redis this script started, by its pid
	[ -n "$redis_pid" ] || return 0
	kill "$1" "$redis_pid" 2>/dev/null || true
	for _ in $(seq 1 50); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
	redis_pid=""
}
cleanup() {
	set +e
	as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -m fast stop >/dev/null 2>&1
	stop_redis -TERM
	mkdir -p "$out/logs" && cp "$work"/*.log "$out/logs/" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
psql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$pg_port" -U postgres -d postgres "$@"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

start_redis
# Checkpoints and WAL size as configured by default: the slot, not
# max_wal_size, keeps the backlog's WAL.
bench_initdb "$work/pgdata" "$pg_port" <<CONF
shared_preload_libraries = 'cachebust'
cachebust.redis_url = 'redis://127.0.0.1:$redis_port/0'
cachebust.key_prefix = 'bench:'
cachebust.queue_size = 256MB
shared_buffers = 512MB
max_connections = 20
autovacuum = off
CONF
as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w start >/dev/null
echo "== PostgreSQL $("$pgbin/postgres" -V | awk '{ print $3 }') from $pgbin on $work port $pg_port, Redis on 127.0.0.1:$redis_port" >&2
psql >/dev/null <<SQL
CREATE EXTENSION cachebust;
CREATE TABLE jr_small (id int PRIMARY KEY, grp int NOT NULL, payload text, touched bool NOT NULL DEFAULT false) WITH (fillfactor = 80);
INSERT INTO jr_small SELECT g, g % 100, md5(g::text) FROM generate_series(1, $small_rows) g;
CREATE TABLE jr_bulk (id int PRIMARY KEY, grp int NOT NULL, payload text, touched bool NOT NULL DEFAULT false) WITH (fillfactor = 80);
INSERT INTO jr_bulk SELECT g, g % 100, md5(g::text) FROM generate_series(1, $bulk_rows) g;
SELECT cachebust.watch('jr_small', keys => ARRAY['item:{id}'], tags => ARRAY['group:{grp}']);
SELECT cachebust.watch('jr_bulk', keys => ARRAY['bulk:{id}']);
VACUUM ANALYZE;
-- 10k-row UPDATEs, one transaction each, until the backlog since
-- from_lsn holds target_bytes of WAL; returns the transactions.
CREATE PROCEDURE jr_fill(from_lsn pg_lsn, target_bytes bigint, INOUT txns int DEFAULT 0) LANGUAGE plpgsql AS \$\$
DECLARE s int := 1;
BEGIN
	WHILE pg_current_wal_lsn() - from_lsn < target_bytes LOOP
		UPDATE jr_bulk SET payload = md5(payload), touched = true WHERE id BETWEEN s AND s + 9999;
		COMMIT;
		txns := txns + 1;
		s := CASE WHEN s + 10000 > $bulk_touched THEN 1 ELSE s + 10000 END;
	END LOOP;
END \$\$;
SQL
[ "$(psql -Atc "SELECT cachebust.barrier(10000)")" = t ] || { echo "the worker does not deliver to Redis" >&2; exit 1; }

# One key per row in Redis, and a check that the table's keys are the ones
# cachebust deletes.
/usr/bin/python3 - "$redis_port" "$small_rows" "$bulk_rows" <<'PY'
import sys, redis
r = redis.Redis(port=int(sys.argv[1]))
for fmt, n in (("bench:item:%d", int(sys.argv[2])), ("bench:bulk:%d", int(sys.argv[3]))):
    for lo in range(1, n + 1, 10000):
        r.mset({fmt % i: "cached" for i in range(lo, min(lo + 10000, n + 1))})
PY
psql -c "UPDATE jr_small SET payload = 'probe', touched = true WHERE id = 1" -c "SELECT cachebust.barrier(10000)" >/dev/null
[ "$(redis-cli -p "$redis_port" exists bench:item:1 bench:item:2)" = 1 ] || { echo "bench:item:1 should be gone and bench:item:2 there" >&2; exit 1; }

# ---- the backlog, with Redis away ------------------------------------------------------
redis-cli -p "$redis_port" save >/dev/null
stop_redis -KILL
from_lsn=$(psql -Atc "SELECT pg_current_wal_lsn()")
echo "== Redis killed; $small_seconds s of one-row UPDATEs ($clients clients)" >&2
printf '\\set id random(1, %d)\nUPDATE jr_small SET payload = md5(random()::text), touched = true WHERE id = :id;\n' "$small_touched" >"$work/small.sql"
t=$(now)
PGOPTIONS="-c synchronous_commit=off" "$pgbin/pgbench" -n -M prepared -c "$clients" -j 2 -T "$small_seconds" -f "$work/small.sql" \
	-h "$work" -p "$pg_port" -U postgres postgres >"$work/pgbench.log" 2>&1 || { cat "$work/pgbench.log" >&2; exit 1; }
small_txns=$(awk '/number of transactions actually processed/ { split($NF, a, "/"); print a[1] }' "$work/pgbench.log")
small_wal=$(psql -Atc "SELECT pg_current_wal_lsn() - '$from_lsn'")
small_s=$(secs "$t" "$(now)")
# What the one-row transactions put in WAL, by record type (the journal's
# messages are LogicalMessage/MESSAGE).
small_end=$(psql -Atc "SELECT pg_current_wal_flush_lsn()") # (all of it on disk)
as_pg "$pgbin/pg_waldump" -p "$work/pgdata/pg_wal" -s "$from_lsn" -e "$small_end" --stats=record >"$out/waldump-one-row-updates.txt" 2>&1 || true
echo "== $small_txns transactions, $((small_wal / 1048576)) MB of WAL in $small_s s; now 10k-row UPDATEs up to $wal_mb MB" >&2
t=$(now)
bulk_txns=$(psql -Atc "CALL jr_fill('$from_lsn', $wal_mb::bigint * 1048576)")
bulk_s=$(secs "$t" "$(now)")
read -r backlog_wal lag_before fallbacks_before < <(psql -AtF' ' -c "SELECT pg_current_wal_lsn() - '$from_lsn', slot_lag_bytes, fallbacks FROM cachebust.stats")
echo "== $bulk_txns transactions in $bulk_s s; backlog $((backlog_wal / 1048576)) MB of WAL, slot lag $((lag_before / 1048576)) MB" >&2

# ---- crash, and the replay -------------------------------------------------------------
as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -m immediate stop >/dev/null
start_redis
log_lines=$(wc -l <"$work/postgres.log")
t0=$(now)
as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w -t 600 start >/dev/null
t_ready=$(now)
caught=$(psql -Atc "SELECT cachebust.barrier(600000)")
t_caught=$(now)
# At that moment: the keys left in Redis (the untouched rows' keys, if it
# really caught up) and whether the worker's replay had finished.
keys_at_barrier=$(redis-cli -p "$redis_port" dbsize)
replay_ms_at_barrier=$(psql -Atc "SELECT journal_replay_ms FROM cachebust.stats")
barrier_clock=$(date -u -d "@$t_caught" +%H:%M:%S.%3N)
[ "$caught" = t ] || echo "warning: barrier() still false after 600 s" >&2

# Right when barrier() said caught up: which keys are still in Redis.
psql -Atc "COPY (SELECT 'item', id, touched FROM jr_small UNION ALL SELECT 'bulk', id, touched FROM jr_bulk) TO STDOUT (FORMAT csv)" >"$work/rows.csv"
read -r touched stale untouched lost < <(/usr/bin/python3 - "$redis_port" "$work/rows.csv" <<'PY'
import csv, sys, redis
r = redis.Redis(port=int(sys.argv[1]))
rows = list(csv.reader(open(sys.argv[2])))
counts = {"t": [0, 0], "f": [0, 0]}  # touched: [rows, keys still there]
for lo in range(0, len(rows), 10000):
    chunk = rows[lo:lo + 10000]
    p = r.pipeline(transaction=False)
    for kind, i, _ in chunk:
        p.exists(f"bench:{kind}:{i}")
    for (_, _, touched), there in zip(chunk, p.execute()):
        counts[touched][0] += 1
        counts[touched][1] += there
t, f = counts["t"], counts["f"]
print(t[0], t[1], f[0], f[0] - f[1])
PY
)
committed_small=$(psql -Atc "SELECT count(*) FROM jr_small WHERE touched AND id > 1")
# The worker's own account (its LOG line may follow barrier() by a turn).
for _ in $(seq 1 100); do tail -n +"$log_lines" "$work/postgres.log" | grep -q "journal replay done" && break; sleep 0.1; done
done_line=$(tail -n +"$log_lines" "$work/postgres.log" | grep -o "cachebust journal replay done:.*" | tail -1 || true)
# When the replay was done, by the log's clock (log_line_prefix '%m ...', UTC).
done_at=$(tail -n +"$log_lines" "$work/postgres.log" | grep "cachebust journal replay done:" | tail -1 | awk '{ print $1 " " $2 }')
t_done=$([ -n "$done_at" ] && date -u -d "$done_at" +%s.%N || echo "$t_caught")
started_line=$(tail -n +"$log_lines" "$work/postgres.log" | grep -o "cachebust journal replay started:.*" | head -1 || true)
redo_line=$(tail -n +"$log_lines" "$work/postgres.log" | grep -o "redo done at.*" | head -1 || true)
read -r batches replay_ms fallbacks lag_after < <(psql -AtF' ' -c "SELECT journal_replayed_batches, journal_replay_ms, fallbacks, slot_lag_bytes FROM cachebust.stats")
log_txns=$(echo "$done_line" | sed -n 's/.*done: \([0-9]*\) transactions, \([0-9]*\) targets.* in \([0-9]*\) ms.*/\1/p')
log_targets=$(echo "$done_line" | sed -n 's/.*done: \([0-9]*\) transactions, \([0-9]*\) targets.* in \([0-9]*\) ms.*/\2/p')
log_ms=$(echo "$done_line" | sed -n 's/.*done: \([0-9]*\) transactions, \([0-9]*\) targets.* in \([0-9]*\) ms.*/\3/p')
rate() { awk -v n="$1" -v ms="$2" 'BEGIN { if (ms > 0) printf "%.0f", n * 1000 / ms; else print "–" }'; }

repro="env JR_WAL_MB=$wal_mb JR_SMALL_SECONDS=$small_seconds JR_CLIENTS=$clients${label:+ JR_LABEL=$label} bench/journal_replay.sh"
tree="$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src Makefile '*.sql' 2>/dev/null || echo ', src/ or SQL modified')"
{
	echo "# cachebust WAL journal replay${label:+ ($label)}, $(date -u +%Y-%m-%d)"
	echo
	echo "Machine: $(nproc) vCPU ($(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }')), $(free -g | awk '/Mem:/ { print $2 }') GiB RAM; PostgreSQL $("$pgbin/postgres" -V | awk '{ print $3 }'), Redis $(redis-server -v | grep -o 'v=[0-9.]*' | cut -d= -f2); working tree at $tree."
	echo
	echo "Reproduce: \`$repro\`"
	echo
	echo "## Backlog (Redis killed, then)"
	echo
	echo "| part | transactions | targets each | time | WAL |"
	echo "|---|---:|---:|---:|---:|"
	echo "| one-row UPDATEs, $clients clients, key + tag | $small_txns | 2 | $small_s s | $((small_wal / 1048576)) MB |"
	echo "| 10k-row UPDATEs, key | $bulk_txns | 10,000 | $bulk_s s | $(((backlog_wal - small_wal) / 1048576)) MB |"
	echo
	echo "WAL records of the one-row part (pg_waldump --stats=record, [all types](waldump-one-row-updates.txt)):"
	echo
	echo '```'
	grep -E "^Type|^----|LogicalMessage|Transaction/COMMIT|Heap/HOT_UPDATE|^Total" "$out/waldump-one-row-updates.txt" || true
	echo '```'
	echo
	echo "Slot lag before the crash: $((lag_before / 1048576)) MB; fallbacks before: $fallbacks_before."
	echo
	echo "## After \`pg_ctl stop -m immediate\` and a start (Redis back first)"
	echo
	echo "| | |"
	echo "|---|---:|"
	echo "| start → accepting connections (PostgreSQL's crash recovery) | $(secs "$t0" "$t_ready") s |"
	echo "| start → \`barrier()\` true (caught up) | $(secs "$t0" "$t_caught") s (at $barrier_clock UTC) |"
	echo "| start → replay done (its LOG line's time) | $(secs "$t0" "$t_done") s |"
	echo "| when \`barrier()\` returned: keys in Redis / journal_replay_ms | $keys_at_barrier / $replay_ms_at_barrier |"
	echo "| replay, worker's LOG line | $log_ms ms |"
	echo "| journal_replay_ms (stats) | $replay_ms |"
	echo "| transactions replayed (LOG) / journal_replayed_batches (stats) | $log_txns / $batches |"
	echo "| targets replayed (LOG) | $log_targets |"
	echo "| transactions per second of replay | $(rate "$log_txns" "$log_ms") |"
	echo "| targets per second of replay | $(rate "$log_targets" "$log_ms") |"
	echo "| WAL per second of replay | $(awk -v b="$backlog_wal" -v ms="$log_ms" 'BEGIN { if (ms > 0) printf "%.0f MB", b / 1048576 * 1000 / ms; else print "–" }') |"
	echo "| slot lag after | $lag_after bytes |"
	echo
	echo "Committed transactions in the backlog: $small_txns one-row (pgbench's count; with synchronous_commit = off the last few may not survive the crash) + $bulk_txns bulk."
	echo
	echo "## Correctness, checked after \`barrier()\` returned true"
	echo
	echo "(Reading every key takes seconds: this is what Redis holds then. The keys in Redis at the moment barrier() returned are in the table above.)"
	echo
	echo "| | |"
	echo "|---|---:|"
	echo "| rows committed as touched (after recovery) | $touched ($committed_small one-row-table rows) |"
	echo "| their keys still in Redis (stale, must be 0) | $stale |"
	echo "| untouched rows | $untouched |"
	echo "| their keys gone (lost to a fallback or a wrong delete, must be 0) | $lost |"
	echo "| keys in Redis now (= untouched rows if nothing else is there) | $(redis-cli -p "$redis_port" dbsize) |"
	echo "| fallbacks (stats, must be 0) | $fallbacks |"
	echo
	echo "Server log: ${redo_line:+PostgreSQL: \"$redo_line\"; }worker: \"$started_line\"; \"$done_line\"."
} >"$out/results.md"
cat "$out/results.md"
echo
echo "== results in $out"
[ "$stale" = 0 ] && [ "$lost" = 0 ] && [ "$fallbacks" = 0 ] && [ "$caught" = t ] || { echo "== CORRECTNESS CHECK FAILED" >&2; exit 1; }
[ "$keys_at_barrier" = "$untouched" ] || { echo "== barrier() returned true with $keys_at_barrier keys in Redis, $untouched expected: before the replay was delivered" >&2; exit 1; }
