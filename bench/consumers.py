#!/usr/bin/env python3
"""Consumers of the alternatives cachebust is compared with (bench/run.sh).

Each turns the database's change records into Redis UNLINKs the way a
careful hand-written service would: everything available is collected, deduplicated and sent as one
UNLINK per poll.

  consumers.py notify DSN REDIS_PORT   LISTEN bench_invalidate; payload = key
  consumers.py pgq    DSN REDIS_PORT   PgQ consumer of queue "bench" (logutriga rows)
  consumers.py outbox DSN REDIS_PORT   drains table outbox_events(key)
"""
import select
import sys
import time
from urllib.parse import parse_qs

import psycopg2
import redis

POLL_SECONDS = 0.01


def unlink(r, keys):
    if keys:
        r.unlink(*keys)


def run_notify(conn, r):
    conn.autocommit = True
    conn.cursor().execute("LISTEN bench_invalidate")
    while True:
        if select.select([conn], [], [], 1.0) == ([], [], []):
            continue
        conn.poll()
        keys = {n.payload for n in conn.notifies}
        conn.notifies.clear()
        unlink(r, list(keys))


def run_pgq(conn, r):
    cur = conn.cursor()
    cur.execute("SELECT pgq.register_consumer('bench', 'invalidator')")
    conn.commit()
    while True:
        cur.execute("SELECT pgq.next_batch('bench', 'invalidator')")
        batch_id = cur.fetchone()[0]
        if batch_id is None:
            conn.commit()
            time.sleep(POLL_SECONDS)
            continue
        cur.execute("SELECT ev_data FROM pgq.get_batch_events(%s)", (batch_id,))
        keys = {"bench:row:" + parse_qs(row[0])["id"][0] for row in cur.fetchall()}
        unlink(r, list(keys))
        cur.execute("SELECT pgq.finish_batch(%s)", (batch_id,))
        conn.commit()


def run_outbox(conn, r):
    cur = conn.cursor()
    while True:
        cur.execute("DELETE FROM outbox_events WHERE ctid = ANY(ARRAY("
                    "SELECT ctid FROM outbox_events LIMIT 10000)) RETURNING key")
        keys = {row[0] for row in cur.fetchall()}
        unlink(r, list(keys))
        conn.commit()
        if not keys:
            time.sleep(POLL_SECONDS)


def main():
    mode, dsn, redis_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    conn = psycopg2.connect(dsn)
    r = redis.Redis(host="127.0.0.1", port=redis_port)
    {"notify": run_notify, "pgq": run_pgq, "outbox": run_outbox}[mode](conn, r)


if __name__ == "__main__":
    main()
