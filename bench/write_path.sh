#!/usr/bin/env bash
# Write-path cost and delivery throughput of cachebust, measured against a
# baseline in the same run (issue: delivery; the full comparison harness is
# bench/README.md's `make bench`).
#
#   bench/write_path.sh [seconds-per-run] [runs] [clients]
#
# For each run it measures pgbench TPS of single-row UPDATE transactions on a
# 100k-row table, alternating: without any trigger (baseline) and with a
# cachebust watch() on it. It reports the median TPS of each and their ratio,
# then the worker's delivery rate for a burst of distinct keys.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
runs=${2:-5}
clients=${3:-1}

if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
bash test/install_deps.sh >/dev/null
make -s -j"$(nproc)" >/dev/null && make -s install >/dev/null

pgbin=$(pg_config --bindir)
work=$(mktemp -d /tmp/cachebust-bench.XXXXXX)
chown postgres:postgres "$work"
as_pg() { runuser -u postgres -- "$@"; }
free_port() {
	local port
	while :; do
		port=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
	done
}
redis_port=$(free_port)
pg_port=$(free_port)
cleanup() {
	as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -m fast stop >/dev/null 2>&1 || true
	redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
	--daemonize yes --logfile "$work/redis.log" >/dev/null
as_pg "$pgbin/initdb" -D "$work/pgdata" -A trust -U postgres >/dev/null
cat >>"$work/pgdata/postgresql.conf" <<CONF
listen_addresses = ''
port = $pg_port
unix_socket_directories = '$work'
shared_preload_libraries = 'cachebust'
cachebust.redis_url = 'redis://127.0.0.1:$redis_port/0'
cachebust.key_prefix = 'bench:'
shared_buffers = 256MB
synchronous_commit = ${SYNC_COMMIT:-on}
CONF
as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w start >/dev/null
psql() { "$pgbin/psql" -X -q -h "$work" -p "$pg_port" -U postgres -d postgres "$@"; }

psql <<'SQL'
CREATE EXTENSION cachebust;
CREATE TABLE bench_plain (id int PRIMARY KEY, team_id int, payload text);
INSERT INTO bench_plain SELECT g, g % 100, md5(g::text) FROM generate_series(1, 100000) g;
CREATE TABLE bench_watched (LIKE bench_plain INCLUDING ALL);
INSERT INTO bench_watched SELECT * FROM bench_plain;
SELECT cachebust.watch('bench_watched', keys => ARRAY['row:{id}'], tags => ARRAY['team:{team_id}']);
VACUUM ANALYZE;
SQL

for t in plain watched; do
	cat >"$work/$t.sql" <<SQL
\set id random(1, 100000)
UPDATE bench_$t SET payload = md5(random()::text) WHERE id = :id;
SQL
done

tps() {
	"$pgbin/pgbench" -n -M prepared -c "$clients" -j "$clients" -T "$secs" -f "$work/$1.sql" \
		-h "$work" -p "$pg_port" -U postgres postgres 2>/dev/null |
		awk '/^tps/ { print $3; exit }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

plain=() watched=()
for i in $(seq 1 "$runs"); do
	plain+=("$(tps plain)")
	watched+=("$(tps watched)")
	echo "run $i: baseline ${plain[-1]} tps, cachebust ${watched[-1]} tps"
done
mp=$(printf '%s\n' "${plain[@]}" | median)
mw=$(printf '%s\n' "${watched[@]}" | median)
echo "W1 single-row UPDATE, $clients client(s), ${secs}s x $runs runs, synchronous_commit=${SYNC_COMMIT:-on}:"
echo "  baseline median ${mp} tps, cachebust median ${mw} tps, ratio $(awk -v a="$mw" -v b="$mp" 'BEGIN { printf "%.3f", a / b }')"

# Delivery throughput: N distinct keys committed in one burst.
n=${DELIVERY_KEYS:-200000}
psql -c "SELECT cachebust.wait_for_delivery(60000)" >/dev/null
redis-cli -p "$redis_port" FLUSHALL >/dev/null
psql -c "SELECT cachebust.reset_stats()" >/dev/null
start=$(date +%s.%N)
psql -c "SELECT cachebust.invalidate_key(VARIADIC array_agg('k:' || g)) FROM generate_series(1, $n) g; SELECT cachebust.flush();" >/dev/null
psql -Atc "SELECT cachebust.wait_for_delivery(600000)" | grep -q t
end=$(date +%s.%N)
echo "Delivery: $n distinct keys committed in one transaction delivered in $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }') s" \
	"= $(awk -v s="$start" -v e="$end" -v n="$n" 'BEGIN { printf "%.0f", n / (e - s) }') keys/s"
psql -x -c "SELECT targets_delivered, redis_commands, latency_max_ms FROM cachebust.stats"
