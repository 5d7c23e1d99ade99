#!/usr/bin/env bash
# cachebust benchmark harness (`make bench`): cachebust against what users run
# today, on this machine, in one run. Writes bench/results/<timestamp>/:
# results.md (tables), write_path.csv and PNG plots (bench/plot.sh).
#
# Configurations, each a copy of one 100k-row table with its own trigger:
#   baseline   no trigger
#   cachebust  cachebust.watch(keys => 'row:{id}')
#   empty_c    an empty C AFTER ROW trigger (bench/empty_trigger): the floor,
#              PostgreSQL's own per-row cost of any AFTER ROW trigger
#   empty      an empty PL/pgSQL AFTER ROW trigger
#   notify     PL/pgSQL pg_notify(key) + a LISTEN consumer that UNLINKs
#   pgmemcache memcache_delete(key) inside the transaction (memcached)
#   pgq        pgq.logutriga + pgqd + a PgQ consumer that UNLINKs
#   outbox     INSERT INTO an outbox table + a consumer that UNLINKs
# Workloads (pgbench -M prepared): W1 one-row UPDATE, W2 ten rows per
# transaction, W3 hot rows (100 distinct), W4 one UPDATE of 10k rows.
#
# Knobs (environment): BENCH_SECONDS (5), BENCH_RUNS (3), BENCH_CLIENTS
# ("1 2 8"), BENCH_WORKLOADS ("W1 W2 W3 W4"), BENCH_SYNC ("on off"),
# BENCH_CONFIGS (all of the above), DELIVERY_KEYS (1000000), BENCH_PROBES (200).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

secs=${BENCH_SECONDS:-5}
runs=${BENCH_RUNS:-3}
clients_list=${BENCH_CLIENTS:-"1 2 8"}
workloads=${BENCH_WORKLOADS:-"W1 W2 W3 W4"}
sync_modes=${BENCH_SYNC:-"on off"}
configs=${BENCH_CONFIGS:-"baseline cachebust empty_c empty notify pgmemcache pgq outbox"}
delivery_keys=${DELIVERY_KEYS:-1000000}
rows=100000
# Rows only the staleness probe updates (ids above every workload's range).
probe_first=1000001
probes=${BENCH_PROBES:-200}

if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
. bench/lib.sh
bench_build postgresql-15-pgmemcache memcached postgresql-15-pgq3 pgqd gnuplot-nox python3-psycopg2 python3-redis

out="$root/bench/results/$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
bench_scratch bench
mkdir "$work/empty_trigger"
cp "$root/bench/empty_trigger/Makefile" "$root/bench/empty_trigger/empty_trigger.c" "$work/empty_trigger/"
make -s -C "$work/empty_trigger" >/dev/null
redis_port=$(free_port)
memcached_port=$(free_port)
pg_port=$(free_port)
consumer_pids=()
memcached_pid=""
cleanup() {
	for pid in "${consumer_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	[ -f "$work/pgqd.pid" ] && kill "$(cat "$work/pgqd.pid")" 2>/dev/null || true
	as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -m fast stop >/dev/null 2>&1 || true
	redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
	[ -n "$memcached_pid" ] && kill "$memcached_pid" 2>/dev/null || true
	mkdir -p "$out/logs" && cp "$work"/*.log "$out/logs/" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --enable-debug-command local \
	--daemonize yes --logfile "$work/redis.log" >/dev/null
memcached -u nobody -l 127.0.0.1 -p "$memcached_port" -U 0 &
memcached_pid=$!
bench_initdb "$work/pgdata" "$pg_port" <<CONF
shared_preload_libraries = 'cachebust, pgmemcache'
cachebust.redis_url = 'redis://127.0.0.1:$redis_port/0'
cachebust.key_prefix = 'bench:'
pgmemcache.default_servers = '127.0.0.1:$memcached_port'
shared_buffers = 512MB
max_wal_size = 4GB
checkpoint_timeout = 30min
max_connections = 50
cachebust.queue_size = 256MB
CONF
as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w start >/dev/null
dsn="host=$work port=$pg_port user=postgres dbname=postgres"
psql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$pg_port" -U postgres -d postgres "$@"; }
redis() { redis-cli -p "$redis_port" "$@"; }

echo "== setting up $configs"
psql >/dev/null <<SQL
CREATE EXTENSION cachebust;
CREATE EXTENSION pgmemcache;
CREATE EXTENSION pgq;
SELECT pgq.create_queue('bench');
CREATE TABLE outbox_events (key text NOT NULL);

CREATE FUNCTION bench_empty() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN RETURN NULL; END \$\$;
CREATE FUNCTION bench_empty_c() RETURNS trigger LANGUAGE c AS '$work/empty_trigger/empty_trigger.so';
CREATE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN PERFORM pg_notify('bench_invalidate', 'bench:row:' || NEW.id); RETURN NULL; END \$\$;
CREATE FUNCTION bench_memcache() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN PERFORM memcache_delete('bench:row:' || NEW.id); RETURN NULL; END \$\$;
CREATE FUNCTION bench_outbox() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN INSERT INTO outbox_events VALUES ('bench:row:' || NEW.id); RETURN NULL; END \$\$;

CREATE TABLE bench_baseline (id int PRIMARY KEY, payload text) WITH (fillfactor = 80);
INSERT INTO bench_baseline SELECT g, md5(g::text) FROM generate_series(1, $rows) g;
INSERT INTO bench_baseline SELECT g, md5(g::text) FROM generate_series($probe_first, $probe_first + $probes - 1) g;
SQL
for c in $configs; do
	[ "$c" = baseline ] && continue
	psql -c "CREATE TABLE bench_$c (LIKE bench_baseline INCLUDING ALL) WITH (fillfactor = 80);
		INSERT INTO bench_$c SELECT * FROM bench_baseline;"
done
for c in $configs; do
	case $c in
	cachebust) psql -c "SELECT cachebust.watch('bench_cachebust', keys => ARRAY['row:{id}'])" >/dev/null ;;
	empty | empty_c | notify | outbox)
		psql -c "CREATE TRIGGER t AFTER UPDATE ON bench_$c FOR EACH ROW EXECUTE FUNCTION bench_$c()" ;;
	pgmemcache) psql -c "CREATE TRIGGER t AFTER UPDATE ON bench_pgmemcache FOR EACH ROW EXECUTE FUNCTION bench_memcache()" ;;
	pgq) psql -c "CREATE TRIGGER t AFTER UPDATE ON bench_pgq FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('bench')" ;;
	esac
done
psql -c "VACUUM ANALYZE"

cat >"$work/pgqd.ini" <<INI
[pgqd]
base_connstr = host=$work port=$pg_port user=postgres
initial_database = postgres
logfile = $work/pgqd.log
pidfile = $work/pgqd.pid
ticker_period = 0.1
INI
chown postgres "$work/pgqd.ini"
as_pg pgqd -d "$work/pgqd.ini"
psql -c "SELECT pgq.set_queue_config('bench', 'ticker_max_lag', '200 milliseconds')" >/dev/null
for mode in notify pgq outbox; do
	/usr/bin/python3 "$root/bench/consumers.py" "$mode" "$dsn" "$redis_port" 2>>"$work/consumers.log" &
	consumer_pids+=("$!")
done
sleep 1
for pid in "${consumer_pids[@]}"; do
	kill -0 "$pid" 2>/dev/null || { echo "a consumer failed to start:" >&2; cat "$work/consumers.log" >&2; exit 1; }
done

# ---- pgbench scripts --------------------------------------------------------
script() { bench_workload_sql "$1" "$2" "$rows"; } # workload table
rows_per_txn() { case $1 in W1 | W3) echo 1 ;; W2) echo 10 ;; W4) echo 10000 ;; esac; }

# Runs one pgbench; prints "tps transactions".
pgbench_run() { # workload config clients
	script "$1" "bench_$2" >"$work/script.sql"
	"$pgbin/pgbench" -n -M prepared -c "$3" -j "$3" -T "$secs" -f "$work/script.sql" \
		-h "$work" -p "$pg_port" -U postgres postgres 2>/dev/null |
		awk '/^number of transactions actually processed/ { n = $NF } /^tps/ { t = $3 } END { print t, n }'
}
stats() { sort -n | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.0f %.0f %.0f\n", m, a[1], a[NR] }'; }
redis_commands() { redis INFO commandstats | awk -F'[:=,]' '/^cmdstat_(unlink|del|evalsha)/ { s += $3 } END { print s + 0 }'; }
# Until the worker or the configuration's consumer has sent what it was given.
wait_drained() { # config
	local ready="true"
	case $1 in
	cachebust) psql -Atc "SELECT cachebust.wait_for_delivery(60000)" >/dev/null
		ready="(SELECT delivered_seq >= enqueued_seq FROM cachebust.stats)" ;;
	outbox) ready="NOT EXISTS (SELECT FROM outbox_events)" ;;
	pgq) ready="coalesce((SELECT pending_events FROM pgq.get_consumer_info('bench', 'invalidator')), 0) = 0" ;;
	notify) sleep 0.2 ;; # the listener is handed every notification at commit
	esac
	for _ in $(seq 1 600); do
		[ "$(psql -Atc "SELECT $ready")" = t ] && return
		sleep 0.1
	done
	echo "warning: $1 did not drain within 60 s" >&2
}

# ---- 1. write-path cost ----------------------------------------------------
csv="$out/write_path.csv"
echo "sync,workload,clients,config,tps_median,tps_min,tps_max,ratio,redis_cmds_per_row" >"$csv"
for sync in $sync_modes; do
	psql -c "ALTER SYSTEM SET synchronous_commit = $sync" -c "SELECT pg_reload_conf()" >/dev/null
	for w in $workloads; do
		for n in $clients_list; do
			declare -A tps=() cmds=() changed=()
			for r in $(seq 1 "$runs"); do
				# Rotate the order each run so no configuration always goes first.
				order=$(echo $configs | tr ' ' '\n' | awk -v r="$r" '{ a[NR] = $0 } END { for (i = 0; i < NR; i++) print a[(i + r) % NR + 1] }')
				for c in $order; do
					wait_drained "$c"
					redis CONFIG RESETSTAT >/dev/null
					read -r t txns < <(pgbench_run "$w" "$c" "$n")
					wait_drained "$c"
					tps[$c]+="$t "
					cmds[$c]=$(( ${cmds[$c]:-0} + $(redis_commands) ))
					changed[$c]=$(( ${changed[$c]:-0} + ${txns:-0} * $(rows_per_txn "$w") ))
				done
			done
			read -r base _ _ < <(echo ${tps[baseline]:-0} | tr ' ' '\n' | stats)
			for c in $configs; do
				read -r med lo hi < <(echo ${tps[$c]} | tr ' ' '\n' | stats)
				ratio=$(awk -v a="$med" -v b="$base" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
				per_row=$(awk -v c="${cmds[$c]}" -v r="${changed[$c]}" 'BEGIN { printf "%.4f", (r > 0 ? c / r : 0) }')
				echo "$sync,$w,$n,$c,$med,$lo,$hi,$ratio,$per_row" | tee -a "$csv"
			done
			unset tps cmds changed
		done
	done
done
psql -c "ALTER SYSTEM RESET synchronous_commit" -c "SELECT pg_reload_conf()" >/dev/null

# ---- 2. delivery throughput and worker CPU ------------------------------------
# Rounds alternate cachebust and redis-benchmark on the same Redis; medians.
# "absent": the keys do not exist, the same work as redis-benchmark's UNLINK
# of random keys. "present": DEBUG POPULATE created every key first, so Redis
# really frees them; afterwards only bench:k:0 (POPULATE counts from 0, our
# keys from 1) may remain.
echo "== delivery of $delivery_keys distinct keys"
worker_pid=$(psql -Atc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cachebust worker'")
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
burst() { # -> keys/s from the commit to Redis acknowledging the last key (the worker's own measure)
	psql -c "SELECT cachebust.reset_stats()" >/dev/null
	psql -At <<SQL | grep -q t
SELECT cachebust.invalidate_key(VARIADIC array_agg('k:' || g)) FROM generate_series(1, $delivery_keys) g \g /dev/null
SELECT cachebust.flush() \g /dev/null
SELECT cachebust.wait_for_delivery(600000);
SQL
	psql -Atc "SELECT latency_max_ms FROM cachebust.stats" |
		awk -v n="$delivery_keys" '{ printf "%.0f\n", n / ($1 / 1000) }'
}
rate_absent="" rate_present="" rate_bench="" cpu_ticks_used=0 left_over=0
for r in $(seq 1 "$runs"); do
	redis FLUSHALL >/dev/null
	ticks0=$(cpu_ticks "$worker_pid")
	rate_absent+="$(burst) "
	redis DEBUG POPULATE "$delivery_keys" bench:k >/dev/null
	rate_present+="$(burst) "
	ticks1=$(cpu_ticks "$worker_pid")
	cpu_ticks_used=$((cpu_ticks_used + ticks1 - ticks0))
	left_over=$((left_over + $(redis DBSIZE) - $(redis EXISTS bench:k:0)))
	redis FLUSHALL >/dev/null
	rate_bench+="$(redis-benchmark -p "$redis_port" -n "$delivery_keys" -r "$delivery_keys" -P 512 -c 1 -q \
		UNLINK 'bench:k:__rand_int__' 2>/dev/null | tr '\r' '\n' |
		awk '/requests per second/ { for (i = 2; i <= NF; i++) if ($i == "requests") r = $(i - 1) } END { printf "%.0f", r }') "
done
read -r delivery_rate delivery_lo delivery_hi < <(echo $rate_absent | tr ' ' '\n' | stats)
read -r present_rate present_lo present_hi < <(echo $rate_present | tr ' ' '\n' | stats)
read -r redis_bench bench_lo bench_hi < <(echo $rate_bench | tr ' ' '\n' | stats)
worker_cpu=$(awk -v t="$cpu_ticks_used" -v hz="$(getconf CLK_TCK)" -v n="$((2 * runs * delivery_keys))" \
	'BEGIN { printf "%.2f", t / hz / (n / 1e6) }')
[ "$left_over" -eq 0 ] || echo "warning: $left_over populated keys were still in Redis after delivery" >&2

# ---- 3. staleness: commit to key gone -----------------------------------------
# bench/staleness_probe.py caches a probe row's key, commits an UPDATE of the
# row and waits for Redis to report the key deleted: the same measure for
# cachebust and for the consumers of the alternatives. Idle: probes alone,
# 20 ms apart, for at most 8 s. Loaded: the same while pgbench runs W1
# (2 clients, synchronous_commit = on) on the same table. For cachebust the worker's own
# commit-to-acknowledgement histogram (every commit of the run) is shown too.
probe() { # config -> "p50 p99 max timeouts"
	/usr/bin/python3 "$root/bench/staleness_probe.py" "$dsn" "$redis_port" "bench_$1" "$probe_first" "$probes" 0.02 8
}
probe_loaded() { # config
	secs=10 pgbench_run W1 "$1" 2 >/dev/null &
	local load=$!
	sleep 1
	probe "$1"
	wait "$load"
}
fmt_probe() { awk '{ printf "%s / %s / %s", $1, $2, $3; if ($4 > 0) printf " (%d timeouts)", $4 }'; }
worker_latency() { psql -Atc "SELECT concat_ws(' / ', latency_p50_ms, latency_p99_ms, latency_max_ms) FROM cachebust.stats"; }
staleness=""
stale_cfgs=""
for c in cachebust notify pgq outbox; do echo "$configs" | grep -qw "$c" && stale_cfgs+="$c "; done
for c in $stale_cfgs; do
	debounces="-"
	[ "$c" = cachebust ] && debounces="0 10 50"
	for debounce in $debounces; do
		label=$c
		if [ "$c" = cachebust ]; then
			label="cachebust, debounce_ms = $debounce"
			psql -c "ALTER SYSTEM SET cachebust.debounce_ms = $debounce" -c "SELECT pg_reload_conf()" >/dev/null
			sleep 0.5
		fi
		wait_drained "$c"
		[ "$c" = cachebust ] && psql -c "SELECT cachebust.reset_stats()" >/dev/null
		idle=$(probe "$c" | fmt_probe)
		idle_worker=""
		[ "$c" = cachebust ] && idle_worker=$(worker_latency)
		wait_drained "$c"
		[ "$c" = cachebust ] && psql -c "SELECT cachebust.reset_stats()" >/dev/null
		loaded=$(probe_loaded "$c" | fmt_probe)
		wait_drained "$c"
		loaded_worker=""
		[ "$c" = cachebust ] && loaded_worker=$(worker_latency)
		echo "staleness $label: idle $idle, loaded $loaded"
		staleness+="| $label | $idle | $loaded | ${idle_worker:-–} | ${loaded_worker:-–} |"$'\n'
	done
done
psql -c "ALTER SYSTEM RESET cachebust.debounce_ms" -c "SELECT pg_reload_conf()" >/dev/null

# ---- report ----------------------------------------------------------------------
cpu=$(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }')
{
	echo "# cachebust benchmark, $(date -u +%Y-%m-%d)"
	echo
	echo "Machine: $(nproc) vCPU ($cpu), $(free -g | awk '/Mem:/ { print $2 }') GiB RAM; PostgreSQL $("$pgbin/postgres" -V | awk '{ print $3 }'), Redis $(redis-server -v | grep -o 'v=[0-9.]*' | cut -d= -f2)."
	echo "pgbench -M prepared, ${secs}s per run, $runs runs, median (min–max) TPS; ratio = median ÷ baseline median of the same run."
	echo "Reproduce: \`make bench\` (knobs in bench/run.sh)."
	echo
	echo "## Write path"
	for sync in $sync_modes; do
		for w in $workloads; do
			echo
			echo "### $w, synchronous_commit = $sync"
			echo
			printf '| config |'; for n in $clients_list; do printf ' %s client(s) TPS | ratio |' "$n"; done; echo
			printf '|---|'; for n in $clients_list; do printf -- '---:|---:|'; done; echo
			for c in $configs; do
				printf '| %s |' "$c"
				for n in $clients_list; do
					awk -F, -v s="$sync" -v w="$w" -v n="$n" -v c="$c" \
						'$1 == s && $2 == w && $3 == n && $4 == c { printf " %s (%s–%s) | %s |", $5, $6, $7, $8 }' "$csv"
				done
				echo
			done
		done
	done
	echo
	echo "## Coalescing: Redis delete commands per changed row (W3, 100 hot rows)"
	echo
	echo "pgmemcache sends one memcached delete per row inside the transaction (1.0 by construction);"
	echo "the consumers of notify, pgq and outbox deduplicate what each poll returns."
	echo
	printf '| config |'; for sync in $sync_modes; do for n in $clients_list; do printf ' sync %s, %s client(s) |' "$sync" "$n"; done; done; echo
	printf '|---|'; for sync in $sync_modes; do for n in $clients_list; do printf -- '---:|'; done; done; echo
	for c in cachebust notify pgq outbox; do
		echo "$configs" | grep -qw "$c" || continue
		printf '| %s |' "$c"
		for sync in $sync_modes; do
			for n in $clients_list; do
				awk -F, -v s="$sync" -v n="$n" -v c="$c" '$1 == s && $2 == "W3" && $3 == n && $4 == c { printf " %s", $9 }' "$csv"
				printf ' |'
			done
		done
		echo
	done
	echo
	echo "## Delivery of $delivery_keys distinct keys committed in one transaction"
	echo
	echo "$runs rounds, median (min–max) keys/s from the commit to Redis acknowledging the last key:"
	echo
	echo "- cachebust, keys absent (same work as redis-benchmark): **$delivery_rate** ($delivery_lo–$delivery_hi)"
	echo "- cachebust, keys present (created by DEBUG POPULATE, all removed: $left_over left over): **$present_rate** ($present_lo–$present_hi)"
	echo "- redis-benchmark, pipelined single-key UNLINK (-P 512) on the same Redis: **$redis_bench** ($bench_lo–$bench_hi)"
	echo "- ratio cachebust ÷ redis-benchmark (absent keys, medians): $(awk -v a="$delivery_rate" -v b="$redis_bench" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
	echo "- worker CPU: **$worker_cpu s per million targets** (over all $((2 * runs)) cachebust rounds)"
	echo
	echo "## Staleness: commit to key gone, ms (p50 / p99 / max)"
	echo
	echo "Probe (bench/staleness_probe.py): up to $probes commits of a cached row, 20 ms apart, for at most 8 s; from COMMIT returning to Redis's keyspace"
	echo "notification of the delete. Under load: while pgbench runs W1 with 2 clients (synchronous_commit = on) on the same table."
	echo "Worker: cachebust's own commit-to-acknowledgement histogram over every commit of the same period."
	echo
	echo "| config | probe, idle | probe, under W1 load | worker, idle | worker, under W1 load |"
	echo "|---|---|---|---|---|"
	printf '%s' "$staleness"
} >"$out/results.md"

# ---- plots -------------------------------------------------------------------------
bash "$root/bench/plot.sh" "$out"
echo "== results in $out"
cat "$out/results.md"
