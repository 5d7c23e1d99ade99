# Shared by demo/run.sh and bench/lib.sh (sourced): running as the
# unprivileged `postgres` user, and picking free loopback ports.

as_pg() { runuser -u postgres -- "$@"; }

# A TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local port
	while :; do
		port=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
	done
}
