#!/usr/bin/env bash
# Delivery throughput and worker CPU per Redis deployment, in one run:
#   plain    one redis-server, plaintext (the baseline)
#   tls      the same server, over its TLS port (rediss://)
#   cluster  three masters made with redis-cli --cluster create
# Each round commits DELIVERY_KEYS distinct keys in one transaction and
# measures commit → Redis acknowledged the last key (the worker's own
# latency_max), with the keys absent and then present (DEBUG POPULATE);
# rounds alternate the deployments; medians and min–max are printed, with
# the worker's CPU seconds per million targets (/proc/<pid>/stat).
# Each deployment is also measured with redis-benchmark (pipelined UNLINK of
# absent keys, one client per master), in the same rounds.
#   bench/topologies.sh        (as root)  knobs: DELIVERY_KEYS, TOPO_RUNS, TOPOLOGIES
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
keys=${DELIVERY_KEYS:-1000000}
runs=${TOPO_RUNS:-3}
topologies=${TOPOLOGIES:-"plain tls cluster"}

if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
. bench/lib.sh
bench_build
bench_scratch topo
pids=()
cleanup() {
	as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -m fast stop >/dev/null 2>&1 || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

# Certificates for the TLS server.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/ca.key" \
	-out "$work/ca.crt" -days 1 -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/server.key" \
	-out "$work/server.csr" -subj /CN=server 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
	-out "$work/server.crt" -days 1 -extfile "$work/san.ext" 2>/dev/null
chmod 644 "$work"/*.crt "$work"/*.key

start_redis() { # port [args...]
	local port=$1
	shift
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --enable-debug-command local \
		--logfile "$work/redis-$port.log" --dir "$work" "$@" &
	pids+=($!)
	until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
}
plain_port=$(free_port)
tls_port=$(free_port)
start_redis "$plain_port" --tls-port "$tls_port" --tls-cert-file "$work/server.crt" \
	--tls-key-file "$work/server.key" --tls-ca-cert-file "$work/ca.crt" --tls-auth-clients no
cluster_ports=()
if [[ " $topologies " == *" cluster "* ]]; then
	for i in 1 2 3; do
		p=$(free_port)
		while [ "$p" -gt 55000 ]; do p=$(free_port); done   # the cluster bus listens on port + 10000
		cluster_ports+=("$p")
		start_redis "$p" --cluster-enabled yes --cluster-config-file "$work/nodes-$p.conf"
	done
	redis-cli --cluster create $(printf '127.0.0.1:%s ' "${cluster_ports[@]}") --cluster-yes >/dev/null
	until [ "$(redis-cli -p "${cluster_ports[0]}" cluster info | grep -c 'cluster_state:ok')" = 1 ]; do sleep 0.1; done
fi

pg_port=$(free_port)
bench_initdb "$work/pgdata" "$pg_port" <<CONF
shared_preload_libraries = 'cachebust'
cachebust.redis_url = 'redis://127.0.0.1:$plain_port/0'
cachebust.tls_ca_file = '$work/ca.crt'
cachebust.key_prefix = 'bench:'
cachebust.queue_size = 256MB
CONF
as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w start >/dev/null
psql() { as_pg "$pgbin/psql" -X -q -At -h "$work" -p "$pg_port" -U postgres -d postgres "$@"; }
psql -c "CREATE EXTENSION cachebust"

url_for() {
	case $1 in
	plain) echo "redis://127.0.0.1:$plain_port/0" ;;
	tls) echo "rediss://127.0.0.1:$tls_port/0" ;;
	cluster) echo "redis-cluster://$(printf '127.0.0.1:%s,' "${cluster_ports[@]}" | sed 's/,$//')" ;;
	esac
}
# Every node of a deployment, for filling and counting keys.
ports_for() { if [ "$1" = cluster ]; then echo "${cluster_ports[@]}"; else echo "$plain_port"; fi; }
switch_to() {
	local offset
	offset=$(stat -c %s "$work/postgres.log")
	psql -c "ALTER SYSTEM SET cachebust.redis_url = '$(url_for "$1")'" -c "SELECT pg_reload_conf()" >/dev/null
	until tail -c +"$offset" "$work/postgres.log" | grep -q 'cachebust worker reloaded its settings'; do sleep 0.02; done
	until [ "$(psql -c 'SELECT connected FROM cachebust.stats')" = t ]; do sleep 0.02; done
}
fill() { # keys bench:k:1..N on the nodes that own them
	if [ "$1" = cluster ]; then
		# DEBUG POPULATE ignores slots: write each master's share of the keys
		# as a RESP stream for redis-cli --pipe (slots computed as Redis does),
		# once; the slot map does not change during the run.
		[ -f "$work/fill-${cluster_ports[0]}.resp" ] || /usr/bin/python3 - "$keys" "$work" "${cluster_ports[@]}" <<'PY'
import subprocess, sys
n, work, ports = int(sys.argv[1]), sys.argv[2], [int(p) for p in sys.argv[3:]]
table = []
for b in range(256):
    crc = b << 8
    for _ in range(8):
        crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    table.append(crc)
def crc16(data):  # CRC16-CCITT (XMODEM), Redis Cluster's key slot hash
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ b]
    return crc
owner = {}
for port in ports:
    out = subprocess.run(["redis-cli", "-p", str(port), "cluster", "myid"], capture_output=True, text=True).stdout.strip()
    owner[out] = port
slot_port = [0] * 16384
for line in subprocess.run(["redis-cli", "-p", str(ports[0]), "cluster", "nodes"], capture_output=True, text=True).stdout.splitlines():
    f = line.split()
    if "master" not in f[2] or f[0] not in owner:
        continue
    for r in f[8:]:
        if r.startswith("["):
            continue
        lo, _, hi = r.partition("-")
        for s in range(int(lo), int(hi or lo) + 1):
            slot_port[s] = owner[f[0]]
streams = {p: open("%s/fill-%d.resp" % (work, p), "wb") for p in ports}
for i in range(1, n + 1):
    k = b"bench:k:%d" % i
    streams[slot_port[crc16(k) % 16384]].write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nx\r\n" % (len(k), k))
for f in streams.values():
    f.close()
PY
		for p in "${cluster_ports[@]}"; do
			redis-cli -p "$p" --pipe <"$work/fill-$p.resp" >/dev/null
		done
	else
		redis-cli -p "$plain_port" flushall >/dev/null
		redis-cli -p "$plain_port" debug populate "$((keys + 1))" bench:k >/dev/null
		redis-cli -p "$plain_port" del bench:k:0 >/dev/null
	fi
}
count() { local n=0; for p in $(ports_for "$1"); do n=$((n + $(redis-cli -p "$p" dbsize))); done; echo $n; }
burst() { # -> keys/s
	psql -c "SELECT cachebust.reset_stats()" >/dev/null
	psql <<SQL | grep -q t
SELECT cachebust.invalidate_key(VARIADIC array_agg('k:' || g)) FROM generate_series(1, $keys) g \g /dev/null
SELECT cachebust.flush() \g /dev/null
SELECT cachebust.wait_for_delivery(600000);
SQL
	psql -c "SELECT latency_max_ms FROM cachebust.stats" | awk -v n="$keys" '{ printf "%.0f\n", n / ($1 / 1000) }'
}
worker_pid() { psql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cachebust worker'"; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { printf "%s (%s–%s)", a[int((NR + 1) / 2)], a[1], a[NR] }'; }

# redis-benchmark's pipelined single-key UNLINK of absent keys on the same
# deployment: what Redis itself sustains with one client per master.
redis_benchmark() { # topology -> requests/s
	local args=(-p "$plain_port" -c 1)
	local key='bench:k:__rand_int__'
	case $1 in
	tls) args=(-p "$tls_port" -c 1 --tls --cacert "$work/ca.crt") ;;
	cluster) args=(--cluster -p "${cluster_ports[0]}" -c 3) key='bench:{tag}:k:__rand_int__' ;;
	esac
	redis-benchmark "${args[@]}" -n "$keys" -r "$keys" -P 512 -q UNLINK "$key" 2>/dev/null | tr '\r' '\n' |
		awk '/requests per second/ { for (i = 2; i <= NF; i++) if ($i == "requests") r = $(i - 1) } END { printf "%.0f", r }'
}

declare -A absent present cpu native
for r in $(seq 1 "$runs"); do
	for t in $topologies; do
		native[$t]+="$(redis_benchmark "$t") "
		switch_to "$t"
		pid=$(worker_pid)
		t0=$(ticks "$pid")
		for p in $(ports_for "$t"); do redis-cli -p "$p" flushall >/dev/null; done
		absent[$t]+="$(burst) "
		fill "$t"
		present[$t]+="$(burst) "
		left=$(count "$t")
		[ "$left" -eq 0 ] || echo "warning: $t left $left keys" >&2
		cpu[$t]=$(( ${cpu[$t]:-0} + $(ticks "$pid") - t0 ))
	done
done
echo "Delivery of $keys distinct keys committed in one transaction ($runs rounds; keys/s, median (min–max)):"
base=""
for t in $topologies; do
	a=$(echo "${absent[$t]}" | median)
	p=$(echo "${present[$t]}" | median)
	c=$(awk -v t="${cpu[$t]}" -v hz="$(getconf CLK_TCK)" -v n="$((2 * runs * keys))" 'BEGIN { printf "%.2f", t / hz / (n / 1e6) }')
	med=${a%% *}
	[ -z "$base" ] && base=$med
	ratio=$(awk -v a="$med" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
	n=$(echo "${native[$t]}" | median)
	vs_native=$(awk -v a="$med" -v b="${n%% *}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
	printf '  %-8s absent %s  present %s  worker %s CPU s per million targets  (absent ÷ %s: %s)\n' \
		"$t" "$a" "$p" "$c" "${topologies%% *}" "$ratio"
	printf '  %-8s redis-benchmark UNLINK -P 512, one client per master: %s  (cachebust absent ÷ redis-benchmark: %s)\n' \
		"" "$n" "$vs_native"
done
