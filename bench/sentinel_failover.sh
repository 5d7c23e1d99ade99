#!/usr/bin/env bash
# How long invalidations wait across a Redis Sentinel failover (issue 12):
# one master, one replica, three sentinels (down-after-milliseconds 1000);
# bench/failover_probe.py commits probes, and SIGKILLs the master after
# FAILOVER_KILL_AFTER of them. Prints commit-to-gone p50/p99/max over all
# probes, and for the first probe committed after the kill (how long an
# invalidation waited for the failover).
#   bench/sentinel_failover.sh     (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
probes=${FAILOVER_PROBES:-200}
kill_after=${FAILOVER_KILL_AFTER:-100}

if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
. bench/lib.sh
bench_build python3-psycopg2 python3-redis
bench_scratch failover
pids=()
cleanup() {
	as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -m fast stop >/dev/null 2>&1 || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# (Each server binds its port before the next port is picked.)
ready() { until redis-cli -p "$1" ping >/dev/null 2>&1; do sleep 0.05; done; }
master=$(free_port)
redis-server --port "$master" --bind 127.0.0.1 --save '' --logfile "$work/master.log" --dir "$work" &
pids+=($!)
master_pid=$!
ready "$master"
replica=$(free_port)
redis-server --port "$replica" --bind 127.0.0.1 --save '' --logfile "$work/replica.log" --dir "$work" \
	--dbfilename replica.rdb --replicaof 127.0.0.1 "$master" &
pids+=($!)
ready "$replica"
sentinels=()
for i in 1 2 3; do
	p=$(free_port)
	sentinels+=("$p")
	mkdir "$work/s$i"
	printf 'port %s\nbind 127.0.0.1\ndir %s\nlogfile %s/sentinel.log\nsentinel monitor cache 127.0.0.1 %s 2\nsentinel down-after-milliseconds cache 1000\nsentinel failover-timeout cache 4000\n' \
		"$p" "$work/s$i" "$work/s$i" "$master" >"$work/s$i/sentinel.conf"
	redis-sentinel "$work/s$i/sentinel.conf" &
	pids+=($!)
	ready "$p"
done
until redis-cli -p "$replica" info replication | grep -q 'master_link_status:up'; do sleep 0.05; done
until [ "$(redis-cli -p "${sentinels[0]}" sentinel sentinels cache | grep -c ip)" -ge 2 ]; do sleep 0.1; done

pg_port=$(free_port)
bench_initdb "$work/pgdata" "$pg_port" <<CONF
shared_preload_libraries = 'cachebust'
cachebust.redis_url = 'redis-sentinel://$(printf '127.0.0.1:%s,' "${sentinels[@]}" | sed 's/,$//')/cache'
cachebust.key_prefix = 'bench:'
cachebust.connect_timeout_ms = 300
cachebust.command_timeout_ms = 500
cachebust.retry_max_ms = 300
CONF
as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w start >/dev/null
as_pg "$pgbin/psql" -X -q -h "$work" -p "$pg_port" -U postgres -d postgres <<'SQL'
CREATE EXTENSION cachebust;
CREATE TABLE probe (id int PRIMARY KEY, payload text);
INSERT INTO probe SELECT g, '' FROM generate_series(1, 10000) g;
SELECT cachebust.watch('probe', keys => ARRAY['row:{id}']) \g /dev/null
SQL
out=$(/usr/bin/python3 "$root/bench/failover_probe.py" "host=$work port=$pg_port user=postgres dbname=postgres" \
	"$(IFS=,; echo "${sentinels[*]}")" cache 1 "$probes" 0.02 "$kill_after" "kill -9 $master_pid")
echo "Sentinel failover (master SIGKILLed after $kill_after of $probes probes, down-after-milliseconds 1000):"
echo "$out" | head -1 | awk '{ printf "  all probes: commit-to-gone p50 / p99 / max = %s / %s / %s ms (%s timeouts)\n", $1, $2, $3, $4 }'
echo "$out" | tail -1 | awk '{ printf "  the first probe committed after the kill waited %s ms\n", $1 }'
grep -E "master moved|sentinels name" "$work/postgres.log" | sed 's/^.*LOG:  /  /'
