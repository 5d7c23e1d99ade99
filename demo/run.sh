#!/usr/bin/env bash
# The cachebust demo: a throwaway PostgreSQL with cachebust preloaded and a
# throwaway Redis, both on free loopback ports; a small schema with watched
# tables; cached keys that disappear when rows change. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E "$0" "$@"
fi
bash test/install_deps.sh >/dev/null
make -s -j"$(nproc)" >/dev/null
make -s install >/dev/null

pgbin=$(pg_config --bindir)
work=$(mktemp -d /tmp/cachebust-demo.XXXXXX)
chown postgres:postgres "$work"
. demo/local_servers.sh
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
cachebust.debounce_ms = 50
cachebust.key_prefix = 'demo:'
CONF
as_pg "$pgbin/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w start >/dev/null

psql() { as_pg "$pgbin/psql" -X -q -h "$work" -p "$pg_port" -U postgres -d postgres "$@"; }
redis() { redis-cli -p "$redis_port" "$@"; }
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "1. A schema whose rows are cached in Redis, watched by cachebust"
psql -e <<'SQL'
CREATE EXTENSION cachebust;
CREATE TABLE teams (id int PRIMARY KEY, name text);
CREATE TABLE users (id int PRIMARY KEY, team_id int REFERENCES teams, name text);
INSERT INTO teams VALUES (1, 'core'), (2, 'web');
INSERT INTO users VALUES (1, 1, 'ada'), (2, 1, 'grace'), (3, 2, 'linus');
SELECT cachebust.watch('users', keys => ARRAY['user:{id}'], tags => ARRAY['team:{team_id}']);
SELECT cachebust.watch('teams', keys => ARRAY['team:{id}']);
SQL

say "2. The application caches some reads (keys under key_prefix 'demo:')"
for id in 1 2 3; do redis SET "demo:user:$id" "{\"id\":$id}" >/dev/null; done
redis SET demo:team:1 '{"name":"core"}' >/dev/null
redis SET demo:team-page:1 '<html>team 1</html>' >/dev/null
redis SADD demo:tag:team:1 demo:team-page:1 >/dev/null
redis SET unrelated:key 'not ours' >/dev/null
echo "keys now: $(redis --raw KEYS '*' | sort | paste -sd' ')"

say "3. A transaction that rolls back invalidates nothing"
psql -e -c "BEGIN; UPDATE users SET name = 'ADA' WHERE id = 1; SELECT * FROM cachebust.pending(); ROLLBACK;"
sleep 0.2
echo "demo:user:1 exists: $(redis EXISTS demo:user:1)"

say "4. A committed UPDATE: the row's key and its team's tag go, nothing else"
psql -e -c "UPDATE users SET name = 'Ada Lovelace' WHERE id = 1;" \
	-c "SELECT cachebust.wait_for_delivery(5000) AS delivered;"
echo "keys now: $(redis --raw KEYS '*' | sort | paste -sd' ')"

say "5. A burst of 500 commits to one row is coalesced into a handful of Redis commands"
redis CONFIG RESETSTAT >/dev/null
{
	for i in $(seq 1 500); do echo "UPDATE users SET name = 'n$i' WHERE id = 2;"; done
	echo "SELECT cachebust.wait_for_delivery(5000) AS delivered;"
} | psql
echo "UNLINK commands Redis received: $(redis INFO commandstats | grep -o 'cmdstat_unlink:calls=[0-9]*' | cut -d= -f2)"

say "6. The worker's statistics"
psql -x -c "SELECT transactions_enqueued, targets_enqueued, targets_coalesced, targets_delivered, redis_commands, connected, latency_p50_ms, latency_p99_ms FROM cachebust.stats;"

say "Demo finished; stopping the servers."
