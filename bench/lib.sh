# bench/lib.sh — how every benchmark script starts (sourced from the
# repository root, once the script runs as root):
#
#   bench_build [PACKAGE ...]  install the test dependencies (and any extra
#                              Debian packages), then build and install this tree
#   bench_scratch NAME         a scratch directory $work (/tmp/cachebust-NAME.*)
#                              the postgres user can write; sets $pgbin, and
#                              brings demo/local_servers.sh's as_pg and free_port
#   bench_initdb DIR PORT      initdb DIR as postgres, for a server that
#                              listens only on a socket in $work on PORT; the
#                              caller's own settings come on stdin
#
#   bench_workload_sql W TABLE ROWS
#                              the pgbench script of write-path workload W
#                              (bench/run.sh and bench/cpu_cost.sh measure the
#                              same ones) on TABLE, ids 1..ROWS
#
# Each script keeps its own cleanup trap: what it starts differs.

bench_build() {
	bash test/install_deps.sh >/dev/null
	[ $# -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
	make -s -j"$(nproc)" >/dev/null && make -s install >/dev/null
}

bench_scratch() { # name
	pgbin=$(pg_config --bindir)
	work=$(mktemp -d "/tmp/cachebust-$1.XXXXXX")
	chmod 755 "$work"
	chown postgres:postgres "$work"
	. demo/local_servers.sh
}

bench_workload_sql() { # workload table rows
	case $1 in
	W1) printf '\\set id random(1, %d)\nUPDATE %s SET payload = md5(random()::text) WHERE id = :id;\n' "$3" "$2" ;;
	W2) printf 'BEGIN;\n'
		for i in $(seq 1 10); do printf '\\set id%d random(1, %d)\nUPDATE %s SET payload = md5(random()::text) WHERE id = :id%d;\n' "$i" "$3" "$2" "$i"; done
		printf 'END;\n' ;;
	W3) printf '\\set id random(1, 100)\nUPDATE %s SET payload = md5(random()::text) WHERE id = :id;\n' "$2" ;;
	W4) printf '\\set s random(1, %d)\nUPDATE %s SET payload = md5(payload) WHERE id BETWEEN :s AND :s + 9999;\n' "$(($3 - 10000))" "$2" ;;
	*) echo "unknown workload $1" >&2; return 1 ;;
	esac
}

bench_initdb() { # dir port, settings on stdin
	as_pg "$pgbin/initdb" -D "$1" -A trust -U postgres >/dev/null
	{
		printf "listen_addresses = ''\nport = %s\nunix_socket_directories = '%s'\n" "$2" "$work"
		cat
	} >>"$1/postgresql.conf"
}
