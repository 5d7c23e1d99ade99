#!/usr/bin/env python3
"""Commit-to-gone across a Redis Sentinel failover (bench/sentinel_failover.sh).

  failover_probe.py DSN SENTINEL_PORTS SERVICE FIRST_ID COUNT INTERVAL_S KILL_AFTER KILL_CMD

Like staleness_probe.py, but it follows the master through the sentinels:
for each probe it caches `bench:row:<id>` on the current master, commits an
UPDATE of the row, and polls the master (every millisecond, re-asking the
sentinels when the master is gone) until the key is gone. After KILL_AFTER
probes it runs KILL_CMD (which SIGKILLs the master). Prints
"p50 p99 max timeouts" in ms over all probes, then the wait of the probe
committed right after the kill (its cached copy was replicated first).
"""
import subprocess
import sys
import time

import psycopg2
from redis.sentinel import Sentinel

TIMEOUT_S = 30.0


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[max(0, min(len(values) - 1, round(p / 100.0 * len(values) + 0.5) - 1))]


def main():
    dsn, ports, service = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    first_id, count, interval = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    kill_after, kill_cmd = int(sys.argv[7]), sys.argv[8]
    sentinel = Sentinel([("127.0.0.1", int(p)) for p in ports], socket_timeout=0.2)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()

    def on_master(fn):
        while True:
            try:
                return fn(sentinel.master_for(service, socket_timeout=0.2))
            except Exception:
                time.sleep(0.01)

    all_ms, straddling, timeouts, killed_at, resumed = [], [], 0, None, False
    for i in range(count):
        key = "bench:row:%d" % (first_id + i)
        on_master(lambda m: m.set(key, "cached"))
        if i == kill_after:
            # The cached copy must be on the replica too, then the master dies,
            # then the row changes: this invalidation has to wait for the failover.
            on_master(lambda m: m.execute_command("WAIT", 1, 1000))
            subprocess.run(kill_cmd, shell=True, check=True)
            killed_at = time.monotonic()
        cur.execute("UPDATE probe SET payload = md5(random()::text) WHERE id = %s", (first_id + i,))
        committed = time.monotonic()
        gone = None
        while gone is None and time.monotonic() - committed < TIMEOUT_S:
            if on_master(lambda m: m.exists(key)) == 0:
                gone = time.monotonic()
            else:
                time.sleep(0.001)
        if gone is None:
            timeouts += 1
            continue
        ms = (gone - committed) * 1000.0
        all_ms.append(ms)
        if killed_at is not None and not resumed:
            straddling.append(ms)
            resumed = True
        time.sleep(interval)
    print("%.2f %.2f %.2f %d" % (percentile(all_ms, 50), percentile(all_ms, 99), max(all_ms), timeouts))
    print("%.2f" % (straddling[0] if straddling else float("nan")))


if __name__ == "__main__":
    main()
