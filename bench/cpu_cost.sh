#!/usr/bin/env bash
# bench/cpu_cost.sh — backend CPU time per transaction and per row (issue 15).
#
# TPS on this 2-vCPU VM mostly measures how fast a halted vCPU wakes up (see
# README "Performance"), so this harness measures what the write path costs
# the backend in CPU time instead, which wake-up latency does not change.
# Wake-ups still cost the waker CPU when the wakee sits on another, idle vCPU
# (IPI, hypervisor exit): up to 3x the per-transaction time here. So by
# default PostgreSQL and pgbench are pinned to one vCPU (CPU_PIN).
#
# How: pgbench runs a fixed number of transactions (-t) per client with
# synchronous_commit = off (CPU_SYNC). The pgbench script itself makes the backend read
# its own /proc/self/schedstat (first field: ns on the CPU, the scheduler's
# own clock), /proc/self/stat (utime + stime, in clock ticks, a coarse
# cross-check) and /proc/self/status (context switches): once right before
# the first measured transaction (after CPU_WARMUP unmeasured ones) and once
# right after the last, the second time into the table cpu_marks. Reading
# from inside the backend avoids racing the backend's exit and needs no
# polling; only the two mark statements' own tails are counted besides the
# transactions (tens of µs, < 0.1 % of any run with the default counts).
# The cachebust worker's CPU is read from outside before and after each run
# (after cachebust.barrier(), so its delivery of the run is included) and
# reported apart: it is not on the write path.
#
# Configurations, each on its own copy of the same 100k-row table:
#   none        no trigger
#   empty_c     an empty C AFTER INSERT OR UPDATE OR DELETE ROW trigger
#               (bench/empty_trigger): PostgreSQL's own cost of any row trigger
#   empty_stmt  the same C function as AFTER INSERT / UPDATE / DELETE
#               STATEMENT triggers with transition tables, the kind watch()
#               creates since statement capture: PostgreSQL's own cost of those
#   wal_msg     empty_stmt's triggers, each also writing one transactional
#               logical message the size of the journal's for W1's key and
#               tag (not in the default list): PostgreSQL's own cost of the
#               WAL record cachebust.journal adds (issue 23), paired with
#               empty_stmt
#   key         cachebust.watch(keys => ARRAY['item:{id}'])
#   key_tag     + tags => ARRAY['group:{grp}']
#   three       + bumps => ARRAY['group:{grp}:version']
#   key_row, key_tag_row, three_row
#               the same targets as a hand-made FOR EACH ROW trigger
#               (CREATE TRIGGER ... EXECUTE FUNCTION cachebust.invalidate(...))
# What watch() created is listed in results.md, so runs of builds with
# different capture modes can be told apart.
# Workloads (pgbench -M prepared, ids from --random-seed = repetition, so
# every configuration of a repetition updates the same rows):
#   W1 one-row UPDATE; W2 ten one-row UPDATEs in one transaction; W3 one-row
#   UPDATE of 100 hot rows; W4 one UPDATE of 10k rows; W5 COPY of 100k rows
#   from a server-side CSV file into an unindexed table (emptied before
#   each run); W6 (not in the default list) the UPDATE of W4 that changes
#   nothing (SET payload = payload): every row compared and found unchanged.
# Configurations are interleaved within each repetition, order rotated.
#
# Knobs (environment):
#   CPU_REPS (10)            repetitions
#   CPU_REP_FIRST (1)        number of the first (and seed of its ids), so that
#                            one-repetition runs can be merged (bench/cpu_ab.sh)
#   CPU_TXNS ("W1=20000 W2=2000 W3=20000 W4=30 W5=5 W6=30")
#                            measured transactions per client; a bare number
#                            sets W1–W3, Wn=N sets one workload
#   CPU_WARMUP (10)          unmeasured transactions first, % of CPU_TXNS (>= 1)
#   CPU_WORKLOADS ("W1 W2 W3 W4 W5")
#   CPU_COPY_ROWS (100000)   rows per COPY in W5
#   CPU_CONFIGS ("none empty_c empty_stmt key key_tag three key_tag_row")
#   CPU_CLIENTS ("1")        e.g. "1 2"
#   CPU_SYNC ("off")         synchronous_commit of the measured sessions, e.g. "on off"
#   CPU_JOURNAL ("")         e.g. "on off": cachebust.journal, a postmaster
#                            setting, so each repetition restarts the server
#                            once per value (order alternating); the report
#                            then pairs journal on with off (issue 23)
#   CPU_PIN (same)           same: PostgreSQL and pgbench pinned to one vCPU;
#                            split: on different vCPUs; none: not pinned
#   CPU_LABEL ("")           names the run (results dir, CSV), for comparing
#                            a change: bench/cpu_stats.py --compare A B
#   CPU_PERF (1)             then profile one backend (perf record, DWARF call graphs)
#   CPU_PERF_CONFIGS ("key_tag key_tag_row"): one profile each
#   CPU_PERF_WORKLOAD (W1)   one or more ("W1 W4"): a profile per config and workload
#   CPU_PERF_SECONDS (8),
#   CPU_PERF_CLIENTS (1)     pgbench clients while one of their backends is profiled
#   CPU_PERF_KEEP (0)        1: keep perf.data in the results directory
#   CPU_PERF_FOCUS ("")      cachebust functions (name substrings, e.g.
#                            "row_unchanged") whose inclusive share, µs per
#                            transaction and per row each profile reports
#   CPU_OUT ("")             results directory instead of bench/results/<timestamp>-cpu[-label]
# Every run also records its WAL bytes (pg_current_wal_lsn() before the run
# and after its delivery, so the worker's progress records are counted too).
# Output: a markdown table on stdout and in
# bench/results/<timestamp>-cpu[-label]/results.md, raw per-run CSV raw.csv,
# perf summaries. Runs under flock /tmp/cachebust-bench.lock (taken here;
# wrapping the command in flock on that file works too), so it never
# measures at the same time as another benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
lock=/tmp/cachebust-bench.lock
# Whether an ancestor of this shell (`flock $lock bench/cpu_cost.sh`)
# already holds the lock: taking it again would wait for ourselves.
lock_held_above() {
	[ -e "$lock" ] || return 1
	local inode p holders
	inode=$(stat -c %i "$lock")
	holders=" $(awk -v i="$inode" '$2 == "FLOCK" { n = split($6, a, ":"); if (a[n] == i) print $5 }' /proc/locks | tr '\n' ' ')"
	p=$$
	while [ "$p" -gt 1 ]; do
		case $holders in *" $p "*) return 0 ;; esac
		p=$(awk '{ print $4 }' "/proc/$p/stat" 2>/dev/null) || return 1
	done
	return 1
}
if [ -z "${CPU_COST_LOCKED:-}" ] && ! lock_held_above; then
	if ! flock -n "$lock" true; then echo "== waiting for $lock (another benchmark is running)" >&2; fi
	CPU_COST_LOCKED=1 exec flock "$lock" "$0" "$@"
fi

reps=${CPU_REPS:-10}
first_rep=${CPU_REP_FIRST:-1}
workloads=${CPU_WORKLOADS:-"W1 W2 W3 W4 W5"}
configs=${CPU_CONFIGS:-"none empty_c empty_stmt key key_tag three key_tag_row"}
clients_list=${CPU_CLIENTS:-"1"}
sync_list=${CPU_SYNC:-"off"}
journal_list=${CPU_JOURNAL:-}
label=${CPU_LABEL:-}
warmup_pct=${CPU_WARMUP:-10}
pin=${CPU_PIN:-same}
do_perf=${CPU_PERF:-1}
perf_configs=${CPU_PERF_CONFIGS:-"key_tag key_tag_row"}
perf_workload=${CPU_PERF_WORKLOAD:-W1}
perf_seconds=${CPU_PERF_SECONDS:-8}
perf_clients=${CPU_PERF_CLIENTS:-1}
perf_focus=${CPU_PERF_FOCUS:-}
rows=100000
copy_rows=${CPU_COPY_ROWS:-100000}

declare -A txns=([W1]=20000 [W2]=2000 [W3]=20000 [W4]=30 [W5]=5 [W6]=30)
for t in ${CPU_TXNS:-}; do
	case $t in
	W[1-6]=[0-9]*) txns[${t%%=*}]=${t#*=} ;;
	[0-9]*) txns[W1]=$t txns[W2]=$(( (t + 9) / 10 )) txns[W3]=$t ;;
	*) echo "CPU_TXNS: cannot read '$t'" >&2; exit 2 ;;
	esac
done
for w in $workloads $perf_workload; do [ -n "${txns[$w]:-}" ] || { echo "unknown workload $w" >&2; exit 2; }; done
for c in $configs; do
	case $c in none | empty_c | empty_stmt | wal_msg | key | key_tag | three | key_row | key_tag_row | three_row) ;;
	*) echo "unknown config $c" >&2; exit 2 ;;
	esac
done
for s in $sync_list; do case $s in on | off | local | remote_write) ;; *) echo "CPU_SYNC: on, off, local or remote_write" >&2; exit 2 ;; esac; done
for j in $journal_list; do case $j in on | off) ;; *) echo "CPU_JOURNAL: on and/or off" >&2; exit 2 ;; esac; done
for cmd in pg_config redis-server redis-cli /usr/bin/python3 make; do
	command -v "$cmd" >/dev/null || { echo "$cmd is missing (test/install_deps.sh installs it)" >&2; exit 1; }
done
[ -r /proc/self/schedstat ] || { echo "this kernel has no /proc/<pid>/schedstat" >&2; exit 1; }

stamp=$(date -u +%Y%m%d-%H%M%S)
tree="$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src Makefile '*.sql' 2>/dev/null || echo ', src/ or SQL modified')"
out=${CPU_OUT:-"$root/bench/results/$stamp-cpu${label:+-$(echo "$label" | tr -c 'A-Za-z0-9_.\n-' '_')}"}
mkdir -p "$out"
. bench/lib.sh
bench_scratch cpu
redis_port=$(free_port)
pg_port=$(free_port)
redis_pid=""
cleanup() {
	set +e
	as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -m fast stop >/dev/null 2>&1
	# Only the Redis this script started, by its pid.
	if [ -n "$redis_pid" ]; then
		kill "$redis_pid" 2>/dev/null
		for _ in $(seq 1 50); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
	fi
	mkdir -p "$out/logs" && cp "$work"/*.log "$out/logs/" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# The empty C trigger, built in the scratch directory as bench/run.sh does.
mkdir "$work/empty_trigger"
cp "$root/bench/empty_trigger/Makefile" "$root/bench/empty_trigger/empty_trigger.c" "$work/empty_trigger/"
make -s -C "$work/empty_trigger" >/dev/null

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
	--daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log" >/dev/null
for _ in $(seq 1 50); do [ -s "$work/redis.pid" ] && break; sleep 0.1; done
redis_pid=$(cat "$work/redis.pid")

# synchronous_commit = off (the measured sessions set CPU_SYNC's value): no
# wait for the WAL flush, which the walwriter does anyway. autovacuum = off: each run VACUUMs its table first instead,
# so every run starts from the same table state and no autovacuum worker
# competes for the CPUs. jit = off: no compile time in a 10k-row UPDATE.
bench_initdb "$work/pgdata" "$pg_port" <<CONF
shared_preload_libraries = 'cachebust'
cachebust.redis_url = 'redis://127.0.0.1:$redis_port/0'
cachebust.key_prefix = 'bench:'
cachebust.queue_size = 256MB
shared_buffers = 512MB
max_wal_size = 4GB
checkpoint_timeout = 30min
max_connections = 20
synchronous_commit = off
autovacuum = off
jit = off
CONF
# CPU placement. Whether pgbench and its backend share a vCPU changes the
# backend's CPU time per transaction by up to 3x on this VM (a wake-up of a
# process on another, idle vCPU costs the waker an IPI and the hypervisor
# exit that goes with it), so by default both are pinned to one vCPU and
# every run pays the same, local wake-ups. "split" puts pgbench on another
# vCPU (every wake-up crosses vCPUs), "none" leaves placement to the kernel.
last_cpu=$(( $(nproc) - 1 ))
case $pin in
same) pg_cpus=$last_cpu client_cpus=$last_cpu ;;
split) pg_cpus=$last_cpu client_cpus=0 ;;
none) pg_cpus=0-$last_cpu client_cpus=0-$last_cpu ;;
*) echo "CPU_PIN: same, split or none" >&2; exit 2 ;;
esac
taskset -c "$pg_cpus" runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w start >/dev/null
# The cachebust.so this server runs: the file the postmaster mapped at start
# (backends inherit it), even if a later `make install` replaces the file.
so=$(pg_config --pkglibdir)/cachebust.so
pm_pid=$(head -1 "$work/pgdata/postmaster.pid")
so_map=$(awk -v so="$so" '$6 == so { print $1; exit }' "/proc/$pm_pid/maps")
# A copy, so cpu_perf.py can still name its functions after a reinstall.
cp "/proc/$pm_pid/map_files/$so_map" "$work/cachebust-loaded.so"
so_md5=$(md5sum "$work/cachebust-loaded.so" | cut -c1-12)
so_time=$(stat -c %y "$so" | cut -d. -f1)
psql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$pg_port" -U postgres -d postgres "$@"; }
# The worker's pid, once it delivers (again, after a restart).
find_worker() {
	worker_pid=""
	for _ in $(seq 1 100); do
		worker_pid=$(psql -Atc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cachebust worker'")
		[ -n "$worker_pid" ] && break
		sleep 0.1
	done
	[ -n "$worker_pid" ] || { echo "the cachebust worker is not running" >&2; exit 1; }
	[ "$(psql -Atc "SELECT cachebust.barrier(10000)")" = t ] || { echo "the worker does not deliver to Redis" >&2; exit 1; }
}
# cachebust.journal takes a restart (fast stop: a clean one, nothing to
# replay). Every value gets one, even the one already set: each starts after
# the same shutdown checkpoint, so each pays the same full-page images.
set_journal() { # on|off
	psql -c "ALTER SYSTEM SET cachebust.journal = $1"
	as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -m fast stop >/dev/null
	taskset -c "$pg_cpus" runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w start >/dev/null
	[ "$(psql -Atc "SHOW cachebust.journal")" = "$1" ] || { echo "cachebust.journal did not become $1" >&2; exit 1; }
	find_worker
}

# ---- tables --------------------------------------------------------------------
all_cfgs=$configs
if [ "$do_perf" = 1 ]; then
	for c in $perf_configs; do echo " $all_cfgs " | grep -q " $c " || all_cfgs+=" $c"; done
fi
echo "== setting up $all_cfgs (PostgreSQL on $work port $pg_port, Redis on 127.0.0.1:$redis_port)" >&2
/usr/bin/python3 - "$work/w5.csv" "$copy_rows" <<'PY'
import hashlib, sys
# The COPY workload's input: the same rows the tables are made of.
with open(sys.argv[1], "w") as f:
    for i in range(1, int(sys.argv[2]) + 1):
        f.write(f"{i},{i % 100},{hashlib.md5(str(i).encode()).hexdigest()}\n")
PY
chmod 644 "$work/w5.csv"
psql >/dev/null <<SQL
CREATE EXTENSION cachebust;
CREATE FUNCTION bench_empty_c() RETURNS trigger LANGUAGE c AS '$work/empty_trigger/empty_trigger.so';
CREATE FUNCTION bench_wal_message() RETURNS trigger LANGUAGE c AS '$work/empty_trigger/empty_trigger.so';
CREATE TABLE cpu_marks (run int, client int, pid int, s0 text, t0 text, c0 text, s1 text, t1 text, c1 text);
CREATE TABLE cpu_template (id int PRIMARY KEY, grp int NOT NULL, payload text) WITH (fillfactor = 80);
INSERT INTO cpu_template SELECT g, g % 100, md5(g::text) FROM generate_series(1, $rows) g;
SQL
for c in $all_cfgs; do
	psql >/dev/null <<SQL
CREATE TABLE cpu_$c (LIKE cpu_template INCLUDING ALL) WITH (fillfactor = 80);
INSERT INTO cpu_$c SELECT * FROM cpu_template;
CREATE TABLE cpu5_$c (id int, grp int NOT NULL, payload text);
SQL
	for tbl in "cpu_$c" "cpu5_$c"; do
		case $c in
		# The same events as the row trigger watch() used to create.
		empty_c) psql -c "CREATE TRIGGER t AFTER INSERT OR UPDATE OR DELETE ON $tbl FOR EACH ROW EXECUTE FUNCTION bench_empty_c()" ;;
		# The statement triggers watch() creates now (one per event: PostgreSQL
		# allows transition tables only on single-event triggers).
		empty_stmt | wal_msg)
			f=bench_empty_c
			[ "$c" = wal_msg ] && f=bench_wal_message
			psql -c "CREATE TRIGGER t_ins AFTER INSERT ON $tbl REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION $f()" \
				-c "CREATE TRIGGER t_upd AFTER UPDATE ON $tbl REFERENCING OLD TABLE AS o NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION $f()" \
				-c "CREATE TRIGGER t_del AFTER DELETE ON $tbl REFERENCING OLD TABLE AS o FOR EACH STATEMENT EXECUTE FUNCTION $f()" ;;
		key) psql -c "SELECT cachebust.watch('$tbl', keys => ARRAY['item:{id}'])" ;;
		key_tag) psql -c "SELECT cachebust.watch('$tbl', keys => ARRAY['item:{id}'], tags => ARRAY['group:{grp}'])" ;;
		three) psql -c "SELECT cachebust.watch('$tbl', keys => ARRAY['item:{id}'], tags => ARRAY['group:{grp}'], bumps => ARRAY['group:{grp}:version'])" ;;
		*_row)
			args="'item:{id}'"
			case $c in key_tag_row) args+=", 'tag=group:{grp}'" ;; three_row) args+=", 'tag=group:{grp}', 'bump=group:{grp}:version'" ;; esac
			psql -c "CREATE TRIGGER t AFTER INSERT OR UPDATE OR DELETE ON $tbl FOR EACH ROW EXECUTE FUNCTION cachebust.invalidate($args)" ;;
		esac >/dev/null
	done
done
psql -c "VACUUM ANALYZE" >/dev/null
# What each configuration's table got, e.g. whether watch() made row or
# statement triggers in this build.
triggers=$(psql -At <<'SQL'
SELECT format('| %s | %s |', regexp_replace(c.relname, '^cpu_', ''),
	string_agg(format('%s %s%s%s', CASE WHEN t.tgtype & 1 = 1 THEN 'ROW' ELSE 'STATEMENT' END,
		concat_ws('/', CASE WHEN t.tgtype & 4 = 4 THEN 'INSERT' END, CASE WHEN t.tgtype & 16 = 16 THEN 'UPDATE' END,
			CASE WHEN t.tgtype & 8 = 8 THEN 'DELETE' END, CASE WHEN t.tgtype & 32 = 32 THEN 'TRUNCATE' END),
		CASE WHEN t.tgoldtable IS NOT NULL OR t.tgnewtable IS NOT NULL THEN ' +transition tables' ELSE '' END,
		CASE WHEN t.tgqual IS NOT NULL THEN ' WHEN (...)' ELSE '' END), ', ' ORDER BY t.tgname))
FROM pg_class c JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
WHERE c.relname ~ '^cpu_' AND c.relname NOT IN ('cpu_marks', 'cpu_template') AND c.relkind = 'r'
GROUP BY c.relname ORDER BY c.relname
SQL
)
find_worker

# ---- pgbench scripts ---------------------------------------------------------------
# n counts this client's transactions (pgbench keeps \set variables between
# transactions); :warm and :total come from -D.
workload_sql() { # workload table
	case $1 in
	W5) printf "COPY cpu5_%s FROM '%s' (FORMAT csv);\n" "${2#cpu_}" "$work/w5.csv" ;;
	# W4's rows, left as they were: the no-op UPDATE (an ORM saving an unchanged object).
	W6) printf '\\set s random(1, %d)\nUPDATE %s SET payload = payload WHERE id BETWEEN :s AND :s + 9999;\n' "$((rows - 10000))" "$2" ;;
	*) bench_workload_sql "$1" "$2" "$rows" ;;
	esac
}
rows_per_txn() { case $1 in W1 | W3) echo 1 ;; W2) echo 10 ;; W4 | W6) echo 10000 ;; W5) echo "$copy_rows" ;; esac; }
script() { # workload table
	cat <<'SQL'
\set n :n + 1
\if :n = :warm + 1
SELECT set_config('cpu.c0', pg_read_file('/proc/self/status'), false), set_config('cpu.t0', pg_read_file('/proc/self/stat'), false), set_config('cpu.s0', pg_read_file('/proc/self/schedstat'), false);
\endif
SQL
	workload_sql "$1" "$2"
	cat <<'SQL'
\if :n = :total
INSERT INTO cpu_marks (run, client, pid, s1, t1, c1, s0, t0, c0) SELECT :run, :client_id, pg_backend_pid(), pg_read_file('/proc/self/schedstat'), pg_read_file('/proc/self/stat'), pg_read_file('/proc/self/status'), current_setting('cpu.s0'), current_setting('cpu.t0'), current_setting('cpu.c0');
\endif
SQL
}
sched_ns() { awk '{ print $1 }' "/proc/$1/schedstat"; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# One measured run; appends a CSV line.
run_id=0
measure() { # rep workload config clients sync journal
	local rep=$1 w=$2 c=$3 n=$4 sync=$5 journal=$6 total warm mode=prepared
	run_id=$((run_id + 1))
	warm=$(( (txns[$w] * warmup_pct + 99) / 100 ))
	[ "$warm" -ge 1 ] || warm=1
	total=$((warm + txns[$w]))
	script "$w" "cpu_$c" >"$work/script.sql"
	if [ "$w" = W5 ]; then
		# Emptied by this session with cachebust off, so nothing is queued for it.
		psql -c "SET cachebust.enabled = off" -c "TRUNCATE cpu5_$c" -c "VACUUM cpu5_$c"
		mode=simple # a COPY cannot be a prepared statement
	else
		psql -c "VACUUM cpu_$c"
	fi
	psql -Atc "SELECT cachebust.barrier(60000)" | grep -q t || echo "warning: delivery not done before run $run_id" >&2
	local w0 wt0 t0 t1 w1 wt1 lsn0 wal
	lsn0=$(psql -Atc "SELECT pg_current_wal_lsn()")
	w0=$(sched_ns "$worker_pid") wt0=$(ticks "$worker_pid") t0=$(date +%s.%N)
	PGOPTIONS="-c synchronous_commit=$sync" taskset -c "$client_cpus" "$pgbin/pgbench" -n -M "$mode" -c "$n" -j "$n" -t "$total" --random-seed="$rep" \
		-D n=0 -D warm="$warm" -D total="$total" -D run="$run_id" -f "$work/script.sql" \
		-h "$work" -p "$pg_port" -U postgres postgres >"$work/pgbench.out" 2>&1 ||
		{ cat "$work/pgbench.out" >&2; exit 1; }
	t1=$(date +%s.%N)
	psql -Atc "SELECT cachebust.barrier(60000)" | grep -q t || echo "warning: delivery not done after run $run_id" >&2
	w1=$(sched_ns "$worker_pid") wt1=$(ticks "$worker_pid")
	wal=$(psql -Atc "SELECT pg_current_wal_lsn() - '$lsn0'")
	# The marks: ns from schedstat's first field, ticks from stat's 14th +
	# 15th, context switches from status (involuntary: preempted, e.g. by
	# the walwriter or the cachebust worker sharing the vCPU).
	psql -AtF, -c "SELECT count(*), sum(split_part(s1, ' ', 1)::bigint - split_part(s0, ' ', 1)::bigint),
		sum(split_part(t1, ' ', 14)::bigint + split_part(t1, ' ', 15)::bigint
		  - split_part(t0, ' ', 14)::bigint - split_part(t0, ' ', 15)::bigint),
		sum(substring(c1 from '\nvoluntary_ctxt_switches:\s+(\d+)')::bigint
		  - substring(c0 from '\nvoluntary_ctxt_switches:\s+(\d+)')::bigint),
		sum(substring(c1 from 'nonvoluntary_ctxt_switches:\s+(\d+)')::bigint
		  - substring(c0 from 'nonvoluntary_ctxt_switches:\s+(\d+)')::bigint)
		FROM cpu_marks WHERE run = $run_id" >"$work/marks"
	local got ns tk vcs ivcs
	IFS=, read -r got ns tk vcs ivcs <"$work/marks"
	[ "$got" = "$n" ] || { echo "run $run_id: $got marks for $n clients" >&2; cat "$work/pgbench.out" >&2; exit 1; }
	echo "$label,$rep,$w,$c,$n,$((n * txns[$w])),$(rows_per_txn "$w"),$ns,$tk,$((w1 - w0)),$((wt1 - wt0)),$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'),$vcs,$ivcs,$sync,$journal,$wal,$((n * total))" >>"$csv"
	awk -F, '{ printf "  rep %s %s %-7s %s client(s) sync %s%s: %8.2f µs/txn backend, %8.3f µs/txn worker, %6.0f WAL bytes/txn\n", $2, $3, $4, $5, $15, ($16 == "" ? "" : " journal " $16), $8 / $6 / 1000, $10 / $6 / 1000, $17 / $18 }' <(tail -1 "$csv") >&2
}

csv="$out/raw.csv"
echo "label,rep,workload,config,clients,txns,rows_per_txn,backend_ns,backend_ticks,worker_ns,worker_ticks,wall_s,backend_vcsw,backend_ivcsw,sync,journal,wal_bytes,wal_txns" >"$csv"
start=$(date +%s)
for r in $(seq "$first_rep" $((first_rep + reps - 1))); do
	# Rotate the order each repetition so no configuration always goes first.
	order=$(echo $configs | tr ' ' '\n' | awk -v r="$r" '{ a[NR] = $0 } END { for (i = 0; i < NR; i++) print a[(i + r - 1) % NR + 1] }')
	# Journal values alternate their order too (one restart each).
	journals=$(echo ${journal_list:--} | tr ' ' '\n' | awk -v r="$r" '{ a[NR] = $0 } END { for (i = 0; i < NR; i++) print a[(i + r - 1) % NR + 1] }')
	for j in $journals; do
		[ "$j" = - ] && j="" || set_journal "$j"
		for s in $sync_list; do
			for w in $workloads; do
				for n in $clients_list; do
					for c in $order; do measure "$r" "$w" "$c" "$n" "$s" "$j"; done
				done
			done
		done
	done
	echo "== repetition $r ($((r - first_rep + 1)) of $reps) done after $(( $(date +%s) - start )) s" >&2
done
overflows=$(psql -Atc "SELECT overflows FROM cachebust.stats")
[ "$overflows" = 0 ] || echo "warning: $overflows transactions overflowed the queue" >&2

# ---- perf profile of one backend -------------------------------------------------------
perf_notes=()
if [ "$do_perf" = 1 ] && [ -x /usr/bin/perf ]; then
	# With several CPU_SYNC or CPU_JOURNAL values, the profile is of the first.
	perf_sync=${sync_list%% *} perf_journal=${journal_list%% *}
	[ -z "$perf_journal" ] || set_journal "$perf_journal"
	for pw in $perf_workload; do
		for pc in $perf_configs; do
			echo "== perf record of one backend: $pc, $pw, $perf_clients client(s), ${perf_seconds}s, sync $perf_sync${perf_journal:+, journal $perf_journal}" >&2
			script "$pw" "cpu_$pc" >"$work/script.sql"
			psql -c "VACUUM cpu_$pc"
			psql -Atc "SELECT cachebust.barrier(60000)" >/dev/null
			PGOPTIONS="-c synchronous_commit=$perf_sync" taskset -c "$client_cpus" "$pgbin/pgbench" -n -M prepared -c "$perf_clients" -j "$perf_clients" -T $((perf_seconds + 3)) -D n=0 -D warm=0 -D total=0 -D run=0 \
				-f "$work/script.sql" -h "$work" -p "$pg_port" -U postgres postgres >"$work/pgbench-perf.out" 2>&1 &
			bench_pid=$!
			backend=""
			for _ in $(seq 1 50); do
				backend=$(psql -Atc "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' LIMIT 1")
				[ -n "$backend" ] && break
				sleep 0.1
			done
			sleep 1 # past the connection's start-up and the first plans
			# DWARF unwinding: cachebust.so (C++ flags without
			# -fno-omit-frame-pointer) and libc have no frame pointers, so
			# frame-pointer call graphs would skip or misname their callers.
			/usr/bin/perf record --call-graph "${CPU_PERF_CALLGRAPH:-dwarf,32768}" -F "${CPU_PERF_FREQ:-1999}" \
				-p "$backend" -o "$work/perf.data" -- sleep "$perf_seconds" 2>>"$work/perf.log" || true
			wait "$bench_pid" || true
			# The same configuration's measured backend µs per transaction (as
			# many clients, without perf), to turn shares into µs.
			us=$(awk -F, -v w="$pw" -v c="$pc" -v n="$perf_clients" -v s="$perf_sync" -v j="$perf_journal" \
				'$3 == w && $4 == c && $5 == n && $15 == s && $16 == j { ns += $8; t += $6 }
				END { if (t > 0) printf "%.3f", ns / t / 1000 }' "$csv")
			/usr/bin/python3 "$root/bench/cpu_perf.py" "$work/perf.data" "$pc" "$pw" "$us" "$work/cachebust-loaded.so" "$perf_clients" \
				"$(rows_per_txn "$pw")" $perf_focus \
				>"$out/perf-$pc-$pw-c$perf_clients.md" 2>>"$work/perf.log" || true
			[ "${CPU_PERF_KEEP:-0}" = 1 ] && cp "$work/perf.data" "$out/perf-$pc-$pw-c$perf_clients.data"
			perf_notes+=("$out/perf-$pc-$pw-c$perf_clients.md")
			rm -f "$work/perf.data"
		done
	done
fi

# ---- report ------------------------------------------------------------------------------
cpu=$(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }')
repro="env CPU_REPS=$reps CPU_TXNS='$(for w in $workloads; do printf '%s=%s ' "$w" "${txns[$w]}"; done | sed 's/ $//')' CPU_WORKLOADS='$workloads' CPU_CONFIGS='$configs' CPU_CLIENTS='$clients_list' CPU_SYNC='$sync_list'${journal_list:+ CPU_JOURNAL='$journal_list'} CPU_WARMUP=$warmup_pct CPU_PIN=$pin CPU_PERF=$do_perf CPU_PERF_CONFIGS='$perf_configs' CPU_PERF_WORKLOAD='$perf_workload' CPU_PERF_CLIENTS=$perf_clients${perf_focus:+ CPU_PERF_FOCUS='$perf_focus'}$([ "$first_rep" = 1 ] || echo " CPU_REP_FIRST=$first_rep")${label:+ CPU_LABEL=$label} bench/cpu_cost.sh"
{
	echo "# cachebust backend CPU cost${label:+ ($label)}, $(date -u +%Y-%m-%d)"
	echo
	echo "Machine: $(nproc) vCPU ($cpu), $(free -g | awk '/Mem:/ { print $2 }') GiB RAM; PostgreSQL $("$pgbin/postgres" -V | awk '{ print $3 }'), Redis $(redis-server -v | grep -o 'v=[0-9.]*' | cut -d= -f2)."
	echo "cachebust.so run by this server: md5 $so_md5 (installed $so_time$([ "$(md5sum "$so" | cut -c1-12)" = "$so_md5" ] || echo ', replaced by another install during the run')); working tree at $tree."
	echo
	echo "Method: pgbench -M prepared (W5 -M simple), synchronous_commit = $(echo $sync_list | sed 's/ / and /')${journal_list:+, cachebust.journal = $(echo $journal_list | sed 's/ / and /') (a restart each)}, a fixed number of transactions per client after $warmup_pct % unmeasured warm-up;"
	echo "CPU placement: $pin (PostgreSQL on vCPU $pg_cpus, pgbench on vCPU $client_cpus)."
	echo "each backend reads its own /proc/self/schedstat (ns on the CPU) right before the first and after the last measured transaction."
	echo "Configurations interleaved within each of $reps repetitions, order rotated; mean ± 95 % CI half-width (Student t over repetitions)."
	echo "Extra cost: per-repetition paired difference with the baseline of the same repetition. Wall time: $(( $(date +%s) - start )) s."
	echo
	echo "Reproduce: \`$repro\`"
	echo "Compare with another run (e.g. after a change): \`/usr/bin/python3 bench/cpu_stats.py --compare A/raw.csv B/raw.csv [none|empty_c|empty_stmt]\`"
	echo
	echo "| config | triggers on its table |"
	echo "|---|---|"
	echo "$triggers"
	echo
	/usr/bin/python3 "$root/bench/cpu_stats.py" "$csv"
	for note in "${perf_notes[@]}"; do
		[ -s "$note" ] && { echo; cat "$note"; }
	done
} >"$out/results.md"
cat "$out/results.md"
echo
echo "== results in $out"
echo "== reproduce: $repro"
echo "== compare with another run: /usr/bin/python3 bench/cpu_stats.py --compare $out/raw.csv <other run>/raw.csv"
