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

bench_initdb() { # dir port, settings on stdin
	as_pg "$pgbin/initdb" -D "$1" -A trust -U postgres >/dev/null
	{
		printf "listen_addresses = ''\nport = %s\nunix_socket_directories = '%s'\n" "$2" "$work"
		cat
	} >>"$1/postgresql.conf"
}
