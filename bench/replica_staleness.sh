#!/usr/bin/env bash
# Read replicas (issue 14): what cachebust.standby_names buys a cache-aside
# reader on a streaming standby, and what it costs the primary's writers.
#
# One primary (cachebust, key_prefix bench:, watch items -> item:{id}), one
# streaming standby made by pg_basebackup (application_name bench_standby,
# wal_receiver_status_interval BENCH_STATUS_INTERVAL, hot_standby_feedback),
# one Redis; all on this machine, throwaway, unix sockets and 127.0.0.1.
#
# 1. Staleness (bench/replica_probe.py, whose docstring defines it): a probe
#    caches a row, commits an UPDATE on the primary, then reads through the
#    cache every BENCH_POLL_MS, refilling misses from the STANDBY; fresh =
#    commit -> the cache first holds the new value (after which no old value
#    can come back); stale-forever = still the old value BENCH_STALE_CAP_S
#    after the commit. standby_names '' and '*' are compared in variants:
#      load        pgbench writers on the primary (BENCH_WRITER_TPS in total,
#                  BENCH_CLIENTS clients, random rows of items), no apply
#                  delay: the lag a standby on this machine really has
#      saturated   the same, writers as fast as they go (the CPU is shared
#                  by everything, so the standby may fall behind)
#      load-delay  BENCH_WRITER_TPS writers, recovery_min_apply_delay =
#                  BENCH_APPLY_DELAY_MS on the standby: a standby slower than
#                  the first delivery, the case the second send exists for
#      quiet-delay no writers, one probe at a time, the same apply delay:
#                  no other WAL reaches the standby, so does only
#                  wal_receiver_status_interval's periodic reply tell the
#                  primary about the replay? (quiet-delay-10s: PostgreSQL's
#                  default 10s; measured: no, a standby that has replayed
#                  all it received replies at once)
#    The standby's apply delay and status interval change by ALTER SYSTEM
#    and reload between variants.
#    cachebust.stats (second_sends, standby_lag_*, standby_timeouts) is reset
#    before and read after every cell (after barrier(), so second sends count).
# 2. Write path: pgbench TPS (BENCH_CLIENTS clients, -M prepared, not
#    throttled, BENCH_SECONDS per round) with standby_names '*' vs '', the
#    standby attached and replaying without delay in both, BENCH_ROUNDS rounds
#    per setting interleaved (off,on / on,off ...), CHECKPOINT before each;
#    medians, min-max, ratio on / off.
#
# Results: bench/results/<UTC timestamp>-replicas/ (results.md, probes.csv,
# cells.csv, tps.csv, logs/).
#
#   bench/replica_staleness.sh        (as root; ~6 min with the defaults, plus any wait for the lock)
#
# BENCH_MODE=regional (issue 24, regional caches): a second Redis (B) for the
# standby, whose worker deletes from it what the standby replays
# (cachebust.redis_url = B on the standby; max_standby_streaming_delay = -1,
# see below); the primary keeps Redis A with standby_names = the standby.
# Instead of parts 1 and 2:
# R1. Staleness, paired: every probe caches its row in A and in B, commits
#    once, and runs two cache-aside readers that both refill from the
#    standby: "regional" (Redis B, the standby's own worker) and
#    "standby_names" (Redis A, the primary's first send + its second send
#    once the standby replayed). Same commit, same replay, same machine
#    load for both; BENCH_WRITER_TPS writers run throughout. One cell per
#    debounce_ms (both servers) x apply delay, plus a control (BENCH_CONTROL
#    probes at the largest delay, first debounce) with standby_names '':
#    the A reader then has only the first send. fresh_ms of the probe is
#    the measure: commit -> no reader of that cache can refill the old
#    value any more. Percentiles with distribution-free 95% intervals
#    (order statistics); the paired difference per probe.
# R2. Standby worker CPU per 1,000 replayed transactions: the standby
#    restarted with redis_url = B ("deliver") or '' ("follow": its worker
#    only follows the primary's journal progress, what every standby did
#    before), BENCH_CPU_ROUNDS rounds per setting interleaved; per round
#    the worker's CPU time (/proc) over BENCH_IDLE_SECONDS with no
#    writes (idle polling), then over BENCH_SECONDS of unthrottled pgbench
#    on the primary (BENCH_CLIENTS clients, one-row UPDATEs of random rows,
#    no apply delay) until the standby replayed (and, delivering,
#    delivered) all of it, plus one second; also Redis B's commands. Once
#    for each of BENCH_DEBOUNCES (both servers). (CPU time from
#    /proc/PID/schedstat, in ns; utime+stime of /proc/PID/stat where it is
#    missing.)
# Results: bench/results/<UTC timestamp>-regional/ (results.md,
# regional_probes.csv, regional_cells.csv, regional_cpu.csv, logs/).
#
#   BENCH_MODE=regional bench/replica_staleness.sh    (as root; ~10 min with the defaults)
# Knobs (regional): BENCH_APPLY_DELAYS ("0 300"), BENCH_DEBOUNCES ("50 10"),
# BENCH_PROBES (400 per cell: enough for an upper bound of p99's interval),
# BENCH_CONTROL (40; 0 = no control cell), BENCH_CPU_ROUNDS (4; 0 skips R2),
# BENCH_IDLE_SECONDS (5), BENCH_SECONDS (10), and BENCH_PROBE_THREADS,
# BENCH_POLL_MS, BENCH_STALE_CAP_S, BENCH_WRITER_TPS, BENCH_CLIENTS as above.
# Knobs: BENCH_PROBES (60 per cell), BENCH_QUIET_PROBES (10), BENCH_PROBE_THREADS
# (4), BENCH_POLL_MS (1), BENCH_STALE_CAP_S (5), BENCH_APPLY_DELAY_MS (200),
# BENCH_STATUS_INTERVAL (1s), BENCH_WRITER_TPS (500; 0 = as fast as it goes),
# BENCH_CLIENTS (2), BENCH_SECONDS (10), BENCH_ROUNDS (7), BENCH_VARIANTS
# ("load saturated load-delay quiet-delay quiet-delay-10s"), BENCH_TPS (1; 0
# skips part 2), BENCH_DEBOUNCE_MS (unset: cachebust's default), BENCH_TRACE
# (1: Redis MONITOR lines about probe keys into redis-monitor.log.gz, slows Redis).
# The measurement phases (not the setup) hold /tmp/cachebust-bench.lock, so
# other benchmarks that take it never measure at the same time; do not wrap
# this script in flock on that file yourself (it would wait for itself), or
# set BENCH_NO_LOCK=1 if you do.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

mode=${BENCH_MODE:-replicas}
case $mode in replicas | regional) ;; *) echo "BENCH_MODE: replicas or regional" >&2; exit 1 ;; esac
probes=${BENCH_PROBES:-60}
[ "$mode" = regional ] && probes=${BENCH_PROBES:-400}
quiet_probes=${BENCH_QUIET_PROBES:-10}
probe_threads=${BENCH_PROBE_THREADS:-4}
poll_ms=${BENCH_POLL_MS:-1}
cap_s=${BENCH_STALE_CAP_S:-5}
apply_delay_ms=${BENCH_APPLY_DELAY_MS:-200}
status_interval=${BENCH_STATUS_INTERVAL:-1s}
writer_tps=${BENCH_WRITER_TPS:-500}
clients=${BENCH_CLIENTS:-2}
secs=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-7}
variants=${BENCH_VARIANTS:-"load saturated load-delay quiet-delay quiet-delay-10s"}
do_tps=${BENCH_TPS:-1}
debounce_ms=${BENCH_DEBOUNCE_MS:-} # unset: the extension's default (50)
rows=100000
# Probe rows: above every id the writers touch, a fresh one per probe.
probe_base=1000001
# Regional mode (see the header).
apply_delays=${BENCH_APPLY_DELAYS:-"0 300"}
debounces=${BENCH_DEBOUNCES:-"50 10"}
control_probes=${BENCH_CONTROL:-40}
cpu_rounds=${BENCH_CPU_ROUNDS:-4}
idle_s=${BENCH_IDLE_SECONDS:-5}
if [ "$mode" = regional ]; then
	variants="" do_tps=0 # (parts 1 and 2 give way to R1 and R2)
	[ -n "$debounce_ms" ] && { echo "regional mode: BENCH_DEBOUNCES, not BENCH_DEBOUNCE_MS" >&2; exit 1; }
fi

if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
for p in python3-psycopg2 python3-redis; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
done
# (The extension is taken as installed: this script does not build it.)
so="$(pg_config --pkglibdir)/cachebust.so"
[ -f "$so" ] || { echo "cachebust is not installed (make install)" >&2; exit 1; }

out="$root/bench/results/$(date -u +%Y%m%d-%H%M%S)-$mode"
mkdir -p "$out"
. bench/lib.sh
bench_scratch replicas
pids=()
writer_pid=""
cleanup() {
	[ -n "$writer_pid" ] && kill "$writer_pid" 2>/dev/null || true
	# (The servers before Redis: their workers would log a failed delivery.)
	as_pg "$pgbin/pg_ctl" -D "$work/standby" -m fast stop >/dev/null 2>&1 || true
	as_pg "$pgbin/pg_ctl" -D "$work/primary" -m fast stop >/dev/null 2>&1 || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	mkdir -p "$out/logs" && cp "$work"/*.log "$out/logs/" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
	--logfile "$work/redis.log" --dir "$work" &
pids+=($!)
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done
redis_b_port=""
if [ "$mode" = regional ]; then
	redis_b_port=$(free_port)
	redis-server --port "$redis_b_port" --bind 127.0.0.1 --save '' --appendonly no \
		--logfile "$work/redis-b.log" --dir "$work" &
	pids+=($!)
	until redis-cli -p "$redis_b_port" ping >/dev/null 2>&1; do sleep 0.05; done
fi

pg_port=$(free_port)
bench_initdb "$work/primary" "$pg_port" <<CONF
shared_preload_libraries = 'cachebust'
cachebust.redis_url = 'redis://127.0.0.1:$redis_port/0'
cachebust.key_prefix = 'bench:'
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
CONF
[ -n "$debounce_ms" ] && echo "cachebust.debounce_ms = $debounce_ms" >>"$work/primary/postgresql.conf"
as_pg "$pgbin/pg_ctl" -D "$work/primary" -l "$work/primary.log" -w start >/dev/null
# Which build this server loaded (others may reinstall it while this runs).
so_id="md5 $(md5sum "$so" | cut -c1-12), installed $(date -u -r "$so" '+%Y-%m-%d %H:%M:%S') UTC; working tree at $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- src 2>/dev/null || echo ' with src/ changes')"
psql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$pg_port" -U postgres -d postgres "$@"; }

psql >/dev/null <<SQL
CREATE EXTENSION cachebust;
CREATE TABLE items (id int PRIMARY KEY, v bigint NOT NULL) WITH (fillfactor = 80);
INSERT INTO items SELECT g, 0 FROM generate_series(1, $rows) g;
INSERT INTO items SELECT g, 0 FROM generate_series($probe_base, $probe_base + 9999) g;
SELECT cachebust.watch('items', keys => ARRAY['item:{id}']);
VACUUM ANALYZE items;
SQL

standby_port=$(free_port)
as_pg "$pgbin/pg_basebackup" -h "$work" -p "$pg_port" -U postgres -D "$work/standby" -X stream -R
# (postgresql.auto.conf from -R comes after postgresql.conf: the conninfo goes there.)
cat >>"$work/standby/postgresql.auto.conf" <<CONF
primary_conninfo = 'host=$work port=$pg_port user=postgres application_name=bench_standby'
CONF
cat >>"$work/standby/postgresql.conf" <<CONF
port = $standby_port
hot_standby_feedback = on
wal_receiver_status_interval = '$status_interval'
CONF
# The copied configuration names Redis A: a standby with a redis_url
# delivers what it replays there itself (regional caches). Only the
# regional mode wants that, and to Redis B.
if [ "$mode" = regional ]; then
	echo "cachebust.redis_url = 'redis://127.0.0.1:$redis_b_port/0'" >>"$work/standby/postgresql.conf"
	# The probes poll the same few heap pages every millisecond while their
	# UPDATEs make replay prune them: at the default 30 s the startup process
	# cancelled a probe's connection (recovery conflict, buffer pin) once in
	# ten minutes. Replay waits for the pins instead (the probe sees any
	# stall: "standby shows the row").
	echo "max_standby_streaming_delay = -1" >>"$work/standby/postgresql.conf"
else
	echo "cachebust.redis_url = ''" >>"$work/standby/postgresql.conf"
fi
as_pg "$pgbin/pg_ctl" -D "$work/standby" -l "$work/standby.log" -w start >/dev/null
spsql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$standby_port" -U postgres -d postgres "$@"; }
until [ "$(psql -Atc "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'bench_standby' AND state = 'streaming'")" = 1 ]; do
	sleep 0.1
done

primary_dsn="host=$work port=$pg_port user=postgres dbname=postgres"
standby_dsn="host=$work port=$standby_port user=postgres dbname=postgres"
printf '\\set id random(1, %d)\nUPDATE items SET v = v + 1 WHERE id = :id;\n' "$rows" >"$work/writer.sql"

# Sets cachebust.standby_names and waits until the worker has read it.
set_standby_names() {
	local from
	from=$(stat -c %s "$work/primary.log")
	psql -c "ALTER SYSTEM SET cachebust.standby_names = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
	# (grep -c reads to the end: with pipefail, grep -q could leave tail a SIGPIPE)
	until [ "$(tail -c +"$((from + 1))" "$work/primary.log" | grep -c 'cachebust worker reloaded its settings')" -gt 0 ]; do
		sleep 0.05
	done
}
# recovery_min_apply_delay (ms) and wal_receiver_status_interval of the standby.
set_standby_conf() {
	local want="${1}ms"
	[ "$1" = 0 ] && want=0
	spsql -c "ALTER SYSTEM SET recovery_min_apply_delay = '${1}ms'" \
		-c "ALTER SYSTEM SET wal_receiver_status_interval = '$2'" -c "SELECT pg_reload_conf()" >/dev/null
	until [ "$(spsql -Atc 'SELECT current_setting($$recovery_min_apply_delay$$) || $$ $$ || current_setting($$wal_receiver_status_interval$$)')" = "$want $2" ]; do
		sleep 0.05
	done
	sleep 0.5 # (the startup process and the walreceiver read it on their own)
}
# Until the standby has replayed everything the primary has written so far.
wait_replayed() {
	local lsn
	lsn=$(psql -Atc 'SELECT pg_current_wal_lsn()')
	until [ "$(spsql -Atc "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ]; do sleep 0.05; done
}
barrier() { [ "$(psql -Atc 'SELECT cachebust.barrier(120000)')" = t ] || { echo "barrier timed out" >&2; exit 1; }; }
stats_line() {
	psql -AtF ' ' -c "SELECT second_sends, standby_timeouts, coalesce(round(standby_lag_p50_ms::numeric, 1)::text, '-'),
		coalesce(round(standby_lag_p99_ms::numeric, 1)::text, '-'), coalesce(round(standby_lag_max_ms::numeric, 1)::text, '-'),
		coalesce(round(latency_p50_ms::numeric, 1)::text, '-'), coalesce(nullif(standbys_absent, ''), '-') FROM cachebust.stats"
}
# CPU seconds the cachebust worker has used so far (utime + stime).
worker_cpu() {
	local pid
	pid=$(psql -Atc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cachebust worker'")
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$pid/stat"
}
median() {
	sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) { print v[(NR + 1) / 2]; exit }
		m = sprintf("%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2); sub(/\.?0+$/, "", m); print m }'
}

# ---- regional mode (R1, R2 in the header)
# Waits until the log ($1) has a line matching $2 after byte $3.
wait_log() {
	until [ "$(tail -c +"$(($3 + 1))" "$1" | grep -c "$2")" -gt 0 ]; do sleep 0.05; done
}
# cachebust.debounce_ms on both servers, once both workers have read it
# (with "restarts": the standby's at its next restart).
set_debounce() {
	local pfrom sfrom
	pfrom=$(stat -c %s "$work/primary.log")
	sfrom=$(stat -c %s "$work/standby.log")
	psql -c "ALTER SYSTEM SET cachebust.debounce_ms = $1" -c "SELECT pg_reload_conf()" >/dev/null
	spsql -c "ALTER SYSTEM SET cachebust.debounce_ms = $1" -c "SELECT pg_reload_conf()" >/dev/null
	wait_log "$work/primary.log" 'cachebust worker reloaded its settings' "$pfrom"
	[ "${2:-}" = restarts ] || wait_log "$work/standby.log" 'cachebust worker reloaded its settings' "$sfrom"
}
# Until the standby's worker delivered everything the primary committed so far.
standby_delivered() {
	local lsn
	lsn=$(psql -Atc 'SELECT pg_current_wal_insert_lsn()')
	wait_replayed
	[ "$(spsql -Atc "SELECT cachebust.wait_for_lsn('$lsn', 120000)")" = t ] ||
		{ echo "wait_for_lsn on the standby timed out" >&2; exit 1; }
}
standby_worker_pid() {
	spsql -Atc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cachebust worker'"
}
proc_cpu() { # pid -> CPU seconds so far: the scheduler's ns count (utime + stime tick only every 10 ms)
	if [ -r "/proc/$1/schedstat" ]; then
		awk '{ printf "%.6f", $1 / 1e9 }' "/proc/$1/schedstat"
	else
		awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / hz }' "/proc/$1/stat"
	fi
}
redis_b_commands() { # (the INFO that reads it counts itself: a round subtracts 1)
	redis-cli -p "$redis_b_port" info stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" { print $2 }'
}
# The standby restarted delivering to Redis B (deliver) or with no redis_url (follow).
standby_mode() {
	local url="" from
	[ "$1" = deliver ] && url="redis://127.0.0.1:$redis_b_port/0"
	spsql -c "ALTER SYSTEM SET cachebust.redis_url = '$url'" >/dev/null
	from=$(stat -c %s "$work/standby.log")
	as_pg "$pgbin/pg_ctl" -D "$work/standby" -l "$work/standby.log" -m fast -w restart >/dev/null
	until [ "$(psql -Atc "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'bench_standby' AND state = 'streaming'")" = 1 ]; do
		sleep 0.1
	done
	until [ -n "$(standby_worker_pid)" ]; do sleep 0.1; done
	if [ "$1" = deliver ]; then
		wait_log "$work/standby.log" 'cachebust worker delivers what this standby replays' "$from"
		standby_delivered
	else
		wait_replayed
	fi
}
standby_stats_line() {
	spsql -AtF ' ' -c "SELECT coalesce(round(latency_p50_ms::numeric, 1)::text, '-'), coalesce(round(latency_p99_ms::numeric, 1)::text, '-'),
		coalesce(round(latency_max_ms::numeric, 1)::text, '-'), targets_delivered, redis_commands, fallbacks FROM cachebust.stats"
}

regional_staleness() {
	echo "cell,cache,row_id,outcome,fresh_ms,last_stale_ms,first_gone_ms,standby_visible_ms,stale_refills,old_refill_read_ms,old_refill_set_ms,commit_unix" >"$out/regional_probes.csv"
	echo "cell,debounce_ms,apply_delay_ms,standby_names,probes,second_sends,standby_timeouts,standby_lag_p50_ms,standby_lag_p99_ms,standby_lag_max_ms,primary_latency_p50_ms,standby_latency_p50_ms,standby_latency_p99_ms,standby_latency_max_ms,standby_targets_delivered,standby_redis_commands,standby_fallbacks" >"$out/regional_cells.csv"
	"$pgbin/pgbench" -n -h "$work" -p "$pg_port" -U postgres -c "$clients" -j "$clients" -M prepared \
		-R "$writer_tps" -T 100000 -f "$work/writer.sql" postgres >>"$work/writers.log" 2>&1 &
	writer_pid=$!
	sleep 2 # connected and in its stride
	local deb delay names n cell last_delay first_deb
	last_delay=$(printf '%s\n' $apply_delays | sort -n | tail -1)
	first_deb=$(printf '%s\n' $debounces | head -1)
	for deb in $debounces; do
		set_debounce "$deb"
		for delay in $apply_delays; do
			set_standby_conf "$delay" "$status_interval"
			for names in bench_standby ''; do
				n=$probes cell="b${deb}-d${delay}"
				if [ -z "$names" ]; then
					[ "$control_probes" != 0 ] && [ "$delay" = "$last_delay" ] && [ "$deb" = "$first_deb" ] || continue
					n=$control_probes cell="b${deb}-d${delay}-control"
				fi
				set_standby_names "$names"
				standby_delivered
				barrier
				psql -c 'SELECT cachebust.reset_stats()' >/dev/null
				spsql -c 'SELECT cachebust.reset_stats()' >/dev/null
				echo "== $cell (debounce_ms $deb, apply delay $delay ms, standby_names '$names'): $n probes"
				: >"$work/probes.tmp"
				/usr/bin/python3 "$root/bench/replica_probe.py" "$primary_dsn" "$standby_dsn" \
					"regional=$redis_b_port,standby_names=$redis_port" "$next_row" "$n" "$probe_threads" \
					"$poll_ms" "$cap_s" "$cell" "$work/probes.tmp" | sed 's/^/   /'
				next_row=$((next_row + n))
				cat "$work/probes.tmp" >>"$out/regional_probes.csv"
				barrier
				standby_delivered
				read -r s_sends s_timeouts s_p50 s_p99 s_max s_first _ <<<"$(stats_line)"
				read -r r_p50 r_p99 r_max r_targets r_cmds r_fallbacks <<<"$(standby_stats_line)"
				echo "   primary: second_sends=$s_sends standby_lag p50/p99/max=$s_p50/$s_p99/$s_max; standby worker: replay read -> Redis B p50/p99/max=$r_p50/$r_p99/$r_max ms, fallbacks=$r_fallbacks"
				echo "$cell,$deb,$delay,'$names',$n,$s_sends,$s_timeouts,$s_p50,$s_p99,$s_max,$s_first,$r_p50,$r_p99,$r_max,$r_targets,$r_cmds,$r_fallbacks" >>"$out/regional_cells.csv"
			done
		done
	done
	kill "$writer_pid" 2>/dev/null || true
	wait "$writer_pid" 2>/dev/null || true
	writer_pid=""
}

regional_cpu() {
	echo "debounce_ms,round,standby,worker_pid,idle_s,idle_cpu_s,write_s,transactions,write_cpu_s,redis_b_commands,standby_fallbacks" >"$out/regional_cpu.csv"
	[ "$cpu_rounds" = 0 ] && return
	set_standby_names ''
	set_standby_conf 0 "$status_interval"
	local deb r m order pid c0 c1 c2 t1 t2 k0 k1 txns
	for deb in $debounces; do
	set_debounce "$deb" restarts # (each round restarts the standby)
	redis-cli -p "$redis_b_port" config resetstat >/dev/null # (commandstats: these rounds' alone)
	for r in $(seq 1 "$cpu_rounds"); do
		order=(follow deliver)
		[ $((r % 2)) = 0 ] && order=(deliver follow)
		for m in "${order[@]}"; do
			standby_mode "$m"
			psql -c CHECKPOINT >/dev/null
			[ "$m" = deliver ] && standby_delivered || wait_replayed
			spsql -c 'SELECT cachebust.reset_stats()' >/dev/null
			sleep 1
			pid=$(standby_worker_pid)
			c0=$(proc_cpu "$pid")
			sleep "$idle_s"
			c1=$(proc_cpu "$pid")
			k0=$(redis_b_commands)
			t1=$(date +%s.%N)
			txns=$("$pgbin/pgbench" -n -h "$work" -p "$pg_port" -U postgres -c "$clients" -j "$clients" -M prepared \
				-T "$secs" -f "$work/writer.sql" postgres 2>>"$work/pgbench.log" |
				awk '/number of transactions actually processed/ { split($NF, a, "/"); print a[1] }')
			[ "$m" = deliver ] && standby_delivered || wait_replayed
			sleep 1 # (the follower reads the last progress records on its own poll)
			c2=$(proc_cpu "$pid")
			t2=$(date +%s.%N)
			k1=$(redis_b_commands)
			[ "$pid" = "$(standby_worker_pid)" ] || { echo "the standby's worker restarted during the round" >&2; exit 1; }
			fb=$(spsql -Atc 'SELECT fallbacks FROM cachebust.stats')
			row="$deb,$r,$m,$pid,$idle_s,$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.4f", b - a }'),$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f", b - a }'),$txns,$(awk -v a="$c1" -v b="$c2" 'BEGIN { printf "%.4f", b - a }'),$((k1 - k0 - 1)),$fb"
			echo "   debounce_ms $deb, round $r, $m: $row"
			echo "$row" >>"$out/regional_cpu.csv"
		done
	done
	redis-cli -p "$redis_b_port" info commandstats | tr -d '\r' >"$out/redis-b-commandstats-cpu-b$deb.txt"
	done
}

# ---- measurement: from here on, alone on the machine (see the header)
lock_from=$(date +%s)
if [ -z "${BENCH_NO_LOCK:-}" ]; then
	exec 9>>/tmp/cachebust-bench.lock
	if ! flock -n 9; then
		echo "== waiting for /tmp/cachebust-bench.lock (another benchmark is measuring)"
		flock 9
	fi
fi
started=$(date +%s)
lock_wait=$((started - lock_from))
# Diagnostic (BENCH_TRACE=1): every Redis command, with Redis' timestamps, to
# see when each probe key was deleted; it slows Redis, so not by default.
monitor_pid=""
if [ -n "${BENCH_TRACE:-}" ]; then
	redis-cli -p "$redis_port" monitor >"$work/monitor.raw" &
	monitor_pid=$!
	pids+=("$monitor_pid")
fi

echo "variant,standby_names,row_id,outcome,fresh_ms,last_stale_ms,first_gone_ms,standby_visible_ms,stale_refills,old_refill_read_ms,old_refill_set_ms,commit_unix" >"$out/probes.csv"
echo "variant,writers_tps,apply_delay_ms,status_interval,standby_names,probes,stale_forever,raced,fresh_p50_ms,fresh_p99_ms,fresh_max_ms,first_gone_p50_ms,standby_visible_p50_ms,standby_visible_max_ms,second_sends,standby_timeouts,standby_lag_p50_ms,standby_lag_p99_ms,standby_lag_max_ms,first_delivery_p50_ms,standbys_absent" >"$out/cells.csv"
next_row=$probe_base
cell_rows=()
vi=0
for variant in $variants; do
	si=$status_interval
	case $variant in
	load) writers=$writer_tps delay=0 threads=$probe_threads n=$probes ;;
	saturated) writers=0 delay=0 threads=$probe_threads n=$probes ;;
	load-delay) writers=$writer_tps delay=$apply_delay_ms threads=$probe_threads n=$probes ;;
	quiet-delay) writers=off delay=$apply_delay_ms threads=1 n=$quiet_probes ;;
	quiet-delay-10s) writers=off delay=$apply_delay_ms threads=1 n=$quiet_probes si=10s ;;
	*) echo "unknown variant $variant" >&2; exit 1 ;;
	esac
	set_standby_conf "$delay" "$si"
	writer_pid=""
	if [ "$writers" != off ]; then
		rate=()
		[ "$writers" != 0 ] && rate=(-R "$writers")
		"$pgbin/pgbench" -n -h "$work" -p "$pg_port" -U postgres -c "$clients" -j "$clients" -M prepared \
			"${rate[@]}" -T 100000 -f "$work/writer.sql" postgres >>"$work/writers.log" 2>&1 &
		writer_pid=$!
		sleep 2 # connected and in its stride
	fi
	# Alternate which setting goes first, variant to variant.
	modes=("" "*")
	[ $((vi % 2)) = 1 ] && modes=("*" "")
	vi=$((vi + 1))
	for mode in "${modes[@]}"; do
		set_standby_names "$mode"
		wait_replayed
		barrier
		psql -c 'SELECT cachebust.reset_stats()' >/dev/null
		echo "== $variant, standby_names = '$mode': $n probes"
		tmp_csv="$work/probes.tmp"
		: >"$tmp_csv"
		summary=$(/usr/bin/python3 "$root/bench/replica_probe.py" "$primary_dsn" "$standby_dsn" "$redis_port" \
			"$next_row" "$n" "$threads" "$poll_ms" "$cap_s" "$variant" "$tmp_csv")
		next_row=$((next_row + n))
		sed "s/^$variant,/$variant,'$mode',/" "$tmp_csv" >>"$out/probes.csv"
		barrier
		read -r s_sends s_timeouts s_p50 s_p99 s_max s_first s_absent <<<"$(stats_line)"
		declare -A v=()
		for kv in $summary; do v[${kv%%=*}]=${kv#*=}; done
		echo "   $summary second_sends=$s_sends standby_lag_p50=$s_p50 p99=$s_p99 max=$s_max timeouts=$s_timeouts"
		echo "$variant,$writers,$delay,$si,'$mode',${v[probes]},${v[stale_forever]},${v[raced]},${v[fresh_p50]},${v[fresh_p99]},${v[fresh_max]},${v[first_gone_p50]},${v[standby_visible_p50]},${v[standby_visible_max]},$s_sends,$s_timeouts,$s_p50,$s_p99,$s_max,$s_first,$s_absent" >>"$out/cells.csv"
		wdesc=$writers
		[ "$writers" = 0 ] && wdesc="max"
		[ "$writers" != off ] && [ "$writers" != 0 ] && wdesc="$writers TPS"
		cell_rows+=("| $variant | $wdesc | $delay | $si | '$mode' | ${v[probes]} | ${v[stale_forever]} | ${v[raced]} | ${v[fresh_p50]} / ${v[fresh_p99]} / ${v[fresh_max]} | ${v[first_gone_p50]} | ${v[standby_visible_p50]} / ${v[standby_visible_max]} | $s_sends | $s_p50 / $s_p99 / $s_max | $s_timeouts |")
		unset v
	done
	if [ -n "$writer_pid" ]; then
		kill "$writer_pid" 2>/dev/null || true
		wait "$writer_pid" 2>/dev/null || true
		writer_pid=""
	fi
done
set_standby_conf 0 "$status_interval"
if [ "$mode" = regional ]; then
	regional_staleness
	regional_cpu
fi

# ---- write path: standby_names '*' vs '', rounds interleaved
echo "round,standby_names,tps,second_sends,standby_lag_p50_ms,standby_lag_max_ms,worker_cpu_s,redis_commands" >"$out/tps.csv"
tps_on=() tps_off=() cpu_on=() cpu_off=() cmd_on=() cmd_off=() paired=()
if [ "$do_tps" != 0 ]; then
	for r in $(seq 1 "$rounds"); do
		order=(off on)
		[ $((r % 2)) = 0 ] && order=(on off)
		for m in "${order[@]}"; do
			names=""
			[ "$m" = on ] && names="*"
			set_standby_names "$names"
			barrier
			psql -c CHECKPOINT
			wait_replayed
			psql -c 'SELECT cachebust.reset_stats()' >/dev/null
			cpu0=$(worker_cpu)
			tps=$("$pgbin/pgbench" -n -h "$work" -p "$pg_port" -U postgres -c "$clients" -j "$clients" -M prepared \
				-T "$secs" -f "$work/writer.sql" postgres 2>>"$work/pgbench.log" |
				awk '/^tps = / { printf "%.0f", $3 }')
			barrier
			cpu=$(awk -v a="$cpu0" -v b="$(worker_cpu)" 'BEGIN { printf "%.2f", b - a }')
			cmds=$(psql -Atc 'SELECT redis_commands FROM cachebust.stats')
			read -r s_sends _ s_p50 _ s_max _ _ <<<"$(stats_line)"
			echo "   round $r, standby_names '$names': $tps TPS (second_sends $s_sends, standby_lag p50 $s_p50 max $s_max ms, worker ${cpu} CPU s, $cmds Redis commands)"
			echo "$r,'$names',$tps,$s_sends,$s_p50,$s_max,$cpu,$cmds" >>"$out/tps.csv"
			if [ "$m" = on ]; then
				tps_on+=("$tps") cpu_on+=("$cpu") cmd_on+=("$cmds")
			else
				tps_off+=("$tps") cpu_off+=("$cpu") cmd_off+=("$cmds")
			fi
		done
		# (Each round's own on / off: drift between rounds cancels out.)
		paired+=("$(awk -v a="${tps_on[-1]}" -v b="${tps_off[-1]}" 'BEGIN { printf "%.3f", a / b }')")
	done
fi
elapsed=$(($(date +%s) - started))
if [ -n "$monitor_pid" ]; then
	kill "$monitor_pid" 2>/dev/null || true
	{ grep -E 'bench:item:1[0-9]{6}' "$work/monitor.raw" || true; } | gzip >"$out/redis-monitor.log.gz"
fi

# ---- report
pgver=$(psql -Atc 'SHOW server_version')
redisver=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
{
	if [ "$mode" = regional ]; then
		echo "# Regional caches: staleness of a regional reader and the standby worker's CPU, $(date -u +%Y-%m-%d)"
	else
		echo "# Read replicas: staleness and write-path cost, $(date -u +%Y-%m-%d)"
	fi
	echo
	echo "Machine: $(nproc) vCPU, $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM; PostgreSQL $pgver, Redis $redisver."
	if [ "$mode" = regional ]; then
		echo "One primary (cachebust.redis_url = Redis A, standby_names = the standby) + one streaming standby (pg_basebackup, hot_standby_feedback = on, max_standby_streaming_delay = -1, cachebust.redis_url = Redis B; apply delay per cell) + Redis A + Redis B, all local; debounce_ms per cell on both servers; cachebust defaults otherwise (standby_max_wait_ms 60 s)."
	else
		echo "One primary + one streaming standby (pg_basebackup, hot_standby_feedback = on; apply delay and wal_receiver_status_interval per variant) + one Redis, all local; cachebust defaults otherwise (debounce_ms ${debounce_ms:-50}, standby_max_wait_ms 60 s)."
	fi
	echo "cachebust.so loaded by the primary: $so_id."
	echo "Measured for ${elapsed}s under /tmp/cachebust-bench.lock (after waiting ${lock_wait}s for it)."
	# (The knobs this run was given, so the line reproduces it.)
	knobs=$(env | grep -E '^BENCH_[A-Z_]+=' | sort | sed -E "s/^([^=]*)=(.*)$/\1='\2'/" | paste -sd ' ' || true)
	echo "Reproduce: \`${knobs:+$knobs }bench/replica_staleness.sh\` (as root; knobs in its header)."
	if [ "$mode" = regional ]; then
		echo
		/usr/bin/python3 "$root/bench/regional_report.py" "$out" "$poll_ms" "$cap_s" "$probe_threads" \
			"$writer_tps" "$clients" "$secs"
	else
		echo
		echo "## Staleness seen by a cache-aside reader on the standby"
		echo
		echo "Probe (bench/replica_probe.py): cache the row, commit an UPDATE on the primary, then every ${poll_ms} ms GET the key and on a miss read the standby and SET what it returned."
		echo "fresh = commit returned -> the reader first finds the new value in the cache (no old value can come back after that); stale forever = still the old value ${cap_s} s after the commit."
		echo "raced = probes whose reader refilled the old value from the standby at least once. Writers: pgbench, $clients clients (TPS in total, or max = unthrottled), random rows of the same watched table. Probes at once: $probe_threads (quiet-*: 1)."
		echo "second send delay = cachebust.stats standby_lag (first delivery of a window -> the standby's reported replay passed it), over every window of the cell, writers' included (log buckets, ~9% resolution)."
		echo
		echo "| variant | writers | apply delay (ms) | status interval | standby_names | probes | stale forever | raced | fresh p50 / p99 / max (ms, fresh probes) | commit -> first send seen p50 (ms) | commit -> standby shows it p50 / max (ms) | second sends | second send delay p50 / p99 / max (ms) | standby timeouts |"
		echo "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		printf '%s\n' "${cell_rows[@]}"
	fi
	if [ "$do_tps" != 0 ]; then
		on=$(printf '%s\n' "${tps_on[@]}" | median)
		off=$(printf '%s\n' "${tps_off[@]}" | median)
		range() { printf '%s\n' "$@" | sort -g | sed -n '1p;$p' | paste -sd '-' | sed 's/-/–/'; }
		echo
		echo "## Write path: pgbench TPS on the primary, standby attached"
		echo
		echo "pgbench -M prepared, $clients clients, one-row UPDATE of a random row of the watched table, ${secs} s per round, $rounds rounds per setting interleaved, CHECKPOINT and standby caught up before each round; median (min–max)."
		echo
		echo "| standby_names | TPS | ratio of medians | median of per-round ratios | worker CPU s per round | Redis commands per round |"
		echo "|---|---:|---:|---:|---:|---:|"
		echo "| '' | $off ($(range "${tps_off[@]}")) | 1.000 | 1.000 | $(printf '%s\n' "${cpu_off[@]}" | median) | $(printf '%s\n' "${cmd_off[@]}" | median) |"
		echo "| '*' | $on ($(range "${tps_on[@]}")) | $(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.3f", a / b }') | $(printf '%s\n' "${paired[@]}" | median) ($(range "${paired[@]}")) | $(printf '%s\n' "${cpu_on[@]}" | median) | $(printf '%s\n' "${cmd_on[@]}" | median) |"
	fi
	if [ -n "$monitor_pid" ]; then
		echo
		echo "## BENCH_TRACE: what Redis saw for each stale-forever probe under standby_names '*'"
		echo
		echo "Times in ms from the probe's commit (Redis' MONITOR clock vs the probe's wall clock, same machine). A second UNLINK between the reader's standby read and its SET means the reader read the standby before it replayed and wrote the old row back after the second send."
		echo
		/usr/bin/python3 - "$out/probes.csv" "$out/redis-monitor.log.gz" <<'PY'
import csv, gzip, re, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))
        if r["standby_names"] == "'*'" and r["outcome"] == "stale_forever"]
ids = {int(r["row_id"]) for r in rows}
seen = {}
for line in gzip.open(sys.argv[2], "rt"):
    m = re.match(r'(\d+\.\d+) \[[^]]*\] "(\w+)"(.*)', line)
    if m and m.group(2).upper() in ("UNLINK", "DEL", "SET"):
        for key in re.findall(r'"bench:item:(\d+)"', m.group(3)):
            if int(key) in ids:
                seen.setdefault(int(key), []).append((float(m.group(1)), m.group(2).upper()))
print("| variant | row | reader read the standby at | its SET at | standby showed the new row by | Redis commands on the key (from 5 ms before the commit) |")
print("|---|---:|---:|---:|---:|---|")
for r in rows:
    t0 = float(r["commit_unix"])
    after = ["%s %.2f" % (c, (t - t0) * 1000) for t, c in seen.get(int(r["row_id"]), []) if t >= t0 - 0.005]
    print("| %s | %s | %s | %s | %s | %s |" % (r["variant"], r["row_id"], r["old_refill_read_ms"],
          r["old_refill_set_ms"], r["standby_visible_ms"], ", ".join(after) or "-"))
if not rows:
    print("| (none) | | | | | |")
PY
	fi
} >"$out/results.md"
echo
cat "$out/results.md"
echo
echo "results: $out"
