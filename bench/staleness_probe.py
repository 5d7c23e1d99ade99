#!/usr/bin/env python3
"""Commit-to-gone latency as a cache user sees it (bench/run.sh).

  staleness_probe.py DSN REDIS_PORT TABLE FIRST_ID COUNT INTERVAL_S MAX_SECONDS

For each probe row (ids FIRST_ID .. FIRST_ID+COUNT-1 of TABLE, rows the
pgbench workloads never touch) it caches the row's key `bench:row:<id>`
with SET, commits an UPDATE of the row (autocommit), and waits for Redis to
report the key deleted through a keyspace notification. The latency is
taken from the moment COMMIT returned to the moment the notification was
read, so it slightly overstates the real window and is never negative.
It stops after COUNT probes or MAX_SECONDS, whichever comes first.
It measures every configuration the same way, whatever does the deleting:
cachebust's worker or a consumer process of the alternatives.

Prints one line: "p50 p99 max timeouts" in milliseconds (a probe whose key
is still there after 10 s counts as a timeout, not as a latency).
"""
import sys
import time

import psycopg2
import redis

TIMEOUT_S = 10.0


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(p / 100.0 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def main():
    dsn, redis_port, table = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    first_id, count, interval = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    stop_at = time.monotonic() + float(sys.argv[7])

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    r = redis.Redis(host="127.0.0.1", port=redis_port)
    r.config_set("notify-keyspace-events", "Kg")  # keyspace channel, generic commands (del)
    events = r.pubsub(ignore_subscribe_messages=True)
    events.psubscribe("__keyspace@0__:bench:row:*")
    while events.get_message(timeout=0.1) is not None:
        pass

    latencies, timeouts = [], 0
    for i in range(count):
        if time.monotonic() >= stop_at:
            break
        row_id = first_id + i
        channel = ("__keyspace@0__:bench:row:%d" % row_id).encode()
        r.set("bench:row:%d" % row_id, "cached")
        cur.execute("UPDATE " + table + " SET payload = md5(random()::text) WHERE id = %s", (row_id,))
        committed = time.monotonic()
        gone = None
        while gone is None and time.monotonic() - committed < TIMEOUT_S:
            msg = events.get_message(timeout=TIMEOUT_S)
            if msg and msg["channel"] == channel and msg["data"] == b"del":
                gone = time.monotonic()
        if gone is None:
            timeouts += 1
        else:
            latencies.append((gone - committed) * 1000.0)
        time.sleep(interval)

    r.config_set("notify-keyspace-events", "")
    latencies.sort()
    print("%.2f %.2f %.2f %d" % (percentile(latencies, 50), percentile(latencies, 99),
                                 latencies[-1] if latencies else float("nan"), timeouts))


if __name__ == "__main__":
    main()
