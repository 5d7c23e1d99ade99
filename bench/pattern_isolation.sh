#!/usr/bin/env bash
# Does a glob pass hold other invalidations back? (issue 10, item 2)
#
# A Redis holding PATTERN_KEYS keys (default 1,000,000); rounds of
# PATTERNS distinct pending patterns (default 1,000, one transaction per
# round, each pattern matching nothing) are committed back to back, so a SCAN
# pass is running all the time. Meanwhile bench/staleness_probe.py measures
# commit-to-gone of unrelated key targets from outside (keyspace
# notifications). The same probe runs first with no patterns pending: the
# baseline of the same run.
#
# Prints: probe p50/p99/max (ms) idle and during passes, and the time each
# pass took (commit of the patterns to wait_for_delivery() returning).
#   bench/pattern_isolation.sh            (as root; installs what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
keys=${PATTERN_KEYS:-1000000}
patterns=${PATTERNS:-1000}
rounds=${PATTERN_ROUNDS:-20}
probes=${PATTERN_PROBES:-150}
debounce=${PATTERN_DEBOUNCE_MS:-50}

if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
. bench/lib.sh
bench_build python3-psycopg2 python3-redis
bench_scratch patterns
redis_port=$(free_port)
pg_port=$(free_port)
cleanup() {
	as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -m fast stop >/dev/null 2>&1 || true
	redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --enable-debug-command local \
	--daemonize yes --logfile "$work/redis.log" >/dev/null
bench_initdb "$work/pgdata" "$pg_port" <<CONF
shared_preload_libraries = 'cachebust'
cachebust.redis_url = 'redis://127.0.0.1:$redis_port/0'
cachebust.key_prefix = 'bench:'
cachebust.debounce_ms = $debounce
CONF
as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w start >/dev/null
psql() { as_pg "$pgbin/psql" -X -q -At -h "$work" -p "$pg_port" -U postgres -d postgres "$@"; }
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done

psql <<SQL
CREATE EXTENSION cachebust;
CREATE TABLE probe (id int PRIMARY KEY, payload text);
INSERT INTO probe SELECT g, '' FROM generate_series(1, 10000) g;
SELECT cachebust.watch('probe', keys => ARRAY['row:{id}']) \g /dev/null
CREATE TABLE searches (v int);
SELECT cachebust.watch('searches', patterns => ARRAY['nomatch:{v}:*']) \g /dev/null
SQL
redis-cli -p "$redis_port" debug populate "$keys" bench:bulk >/dev/null
echo "Redis holds $(redis-cli -p "$redis_port" dbsize) keys; $patterns patterns per round, $rounds rounds, debounce_ms = $debounce"

dsn="host=$work port=$pg_port user=postgres dbname=postgres"
probe() { as_pg python3 "$root/bench/staleness_probe.py" "$dsn" "$redis_port" probe "$1" "$2" 0.02 120; }

idle=$(probe 1 "$probes")
echo "idle:            commit-to-gone p50 / p99 / max = $(echo "$idle" | awk '{printf "%s / %s / %s ms (%s timeouts)", $1, $2, $3, $4}')"

# Pattern rounds in the background: each commits $patterns new patterns and
# waits for them, printing how long the pass took.
cat >"$work/rounds.sql" <<SQL
\\timing on
SQL
for r in $(seq 1 "$rounds"); do
	cat >>"$work/rounds.sql" <<SQL
INSERT INTO searches SELECT g FROM generate_series($(( (r - 1) * patterns + 1 )), $(( r * patterns ))) g;
SELECT cachebust.wait_for_delivery(600000);
SQL
done
chown postgres "$work/rounds.sql"
psql -f "$work/rounds.sql" >"$work/rounds.out" 2>&1 &
rounds_pid=$!
# Probe once the first pass is under way.
until [ "$(psql -c "SELECT count(*) FROM searches")" -gt 0 ]; do sleep 0.01; done
during=$(probe 5001 "$probes")
wait "$rounds_pid"
echo "during passes:   commit-to-gone p50 / p99 / max = $(echo "$during" | awk '{printf "%s / %s / %s ms (%s timeouts)", $1, $2, $3, $4}')"
pass_ms=$(grep -A1 "^t$" "$work/rounds.out" | grep -o 'Time: [0-9.]*' | awk '{print $2}' | sort -n | paste -sd' ')
echo "pass times (wait_for_delivery after each round of $patterns patterns, ms, sorted): $pass_ms"
psql -c "SELECT 'worker: ' || targets_delivered || ' targets delivered, ' || redis_commands || ' commands' FROM cachebust.stats"
