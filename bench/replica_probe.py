#!/usr/bin/env python3
"""Staleness as a cache-aside reader on a streaming standby sees it
(bench/replica_staleness.sh).

  replica_probe.py PRIMARY_DSN STANDBY_DSN REDIS_PORT FIRST_ID COUNT THREADS
                   POLL_MS CAP_S LABEL CSV_PATH

Every probe owns one row of `items` (ids FIRST_ID .. FIRST_ID+COUNT-1, rows
the pgbench writers never touch) and its key bench:item:<id>:

  1. it caches the row's committed value (SET key old),
  2. commits UPDATE items SET v = new on the PRIMARY (autocommit); t0 is
     when COMMIT returned,
  3. then behaves like an application reading through the cache every
     POLL_MS: GET key; on a miss it reads the row from the STANDBY and SETs
     what it read (cache-aside refill, no TTL). While the cache still holds
     the old value it also looks at the standby, only to record when the
     standby first shows the new value.

The probe is fresh at the first moment its reader finds the new value in
the cache (by GET or by its own refill). From then on no old value can come
back: the key only got the new value from a standby that had already
replayed the commit, so every later refill reads the new value too.
`fresh_ms` = that moment - t0; it overstates the true end of staleness by at
most one poll (POLL_MS plus a GET and a standby read). `last_stale_ms` (the
last time the reader saw or refilled the old value) is the lower bound.
A probe whose cache still holds the old value CAP_S after t0 is
stale-forever: nothing will delete that key any more once the first send and
any second send are done (without standby_names, a reader that refilled
from a standby that had not replayed yet leaves it stale for good).

THREADS probes run at once (each with its own connections), so stale-forever
probes do not make the run CAP_S x COUNT long; each waits 0-50 ms before its
next probe so commits do not line up with the worker's windows.

Appends one CSV line per probe to CSV_PATH and prints one summary line of
key=value pairs (times in ms, "-" where no probe had one).
"""
import csv
import random
import sys
import threading
import time

import psycopg2
import redis


def percentile(sorted_values, p):
    """Nearest-rank percentile; nan when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(p / 100.0 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class Runner:
    def __init__(self, args):
        (self.primary_dsn, self.standby_dsn, redis_port, first_id, count, threads,
         poll_ms, cap_s, self.label, self.csv_path) = args
        self.redis_port = int(redis_port)
        self.first_id, self.count, self.threads = int(first_id), int(count), int(threads)
        self.poll = float(poll_ms) / 1000.0
        self.cap = float(cap_s)
        self.next_index = 0
        self.lock = threading.Lock()
        self.rows = []
        self.errors = []

    def take(self):
        with self.lock:
            if self.next_index >= self.count:
                return None
            self.next_index += 1
            return self.first_id + self.next_index - 1

    def thread_main(self):
        try:
            primary = psycopg2.connect(self.primary_dsn)
            primary.autocommit = True
            standby = psycopg2.connect(self.standby_dsn)
            standby.autocommit = True
            pcur, scur = primary.cursor(), standby.cursor()
            r = redis.Redis(host="127.0.0.1", port=self.redis_port)
            while True:
                row_id = self.take()
                if row_id is None:
                    break
                row = self.probe(pcur, scur, r, row_id)
                with self.lock:
                    self.rows.append(row)
                time.sleep(random.uniform(0.0, 0.05))
            primary.close()
            standby.close()
        except Exception as e:  # reported by main(): a probe that broke must not look like a result
            with self.lock:
                self.errors.append(repr(e))

    def probe(self, pcur, scur, r, row_id):
        key = "bench:item:%d" % row_id
        pcur.execute("SELECT v FROM items WHERE id = %s", (row_id,))
        old = str(pcur.fetchone()[0])
        new = str(int(old) + 1)
        r.set(key, old)
        pcur.execute("UPDATE items SET v = %s WHERE id = %s", (int(new), row_id))
        t0 = time.monotonic()
        t0_unix = time.time()  # to line up with Redis' own clock (MONITOR, BENCH_TRACE)

        def since():
            return (time.monotonic() - t0) * 1000.0

        def read_standby():
            scur.execute("SELECT v FROM items WHERE id = %s", (row_id,))
            return str(scur.fetchone()[0])

        first_gone = standby_new = last_stale = fresh = None
        stale_refills = 0
        refill_read = refill_set = None  # the last refill of the old value: read started, SET done
        while since() < self.cap * 1000.0:
            cached = r.get(key)
            seen = since()
            if cached is None:
                if first_gone is None:
                    first_gone = seen
                read_at = since()
                value = read_standby()
                if value == new and standby_new is None:
                    standby_new = since()
                r.set(key, value)
                if value == old:
                    stale_refills += 1
                    last_stale = refill_set = since()
                    refill_read = read_at
                else:
                    fresh = since()
                    break
            elif cached.decode() == old:
                last_stale = seen
                if standby_new is None and read_standby() == new:
                    standby_new = since()
            elif cached.decode() == new:
                fresh = seen
                break
            else:
                raise RuntimeError("key %s holds %r, neither %s nor %s" % (key, cached, old, new))
            time.sleep(self.poll)

        def ms(v):
            return "" if v is None else "%.2f" % v

        return [self.label, row_id, "fresh" if fresh is not None else "stale_forever", ms(fresh),
                ms(last_stale), ms(first_gone), ms(standby_new), stale_refills, ms(refill_read), ms(refill_set),
                "%.6f" % t0_unix]

    def run(self):
        threads = [threading.Thread(target=self.thread_main) for _ in range(self.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.errors:
            sys.exit("replica_probe: " + "; ".join(self.errors))
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f).writerows(sorted(self.rows, key=lambda row: row[1]))

        def col(i):
            return sorted(float(row[i]) for row in self.rows if row[i] != "")

        fresh = col(3)
        stale_forever = sum(1 for row in self.rows if row[2] == "stale_forever")
        raced = sum(1 for row in self.rows if row[7] > 0)
        gone = col(5)
        visible = col(6)

        def f(v):
            return "-" if v != v else "%.1f" % v  # nan (no such probe) as "-"

        print("probes=%d stale_forever=%d raced=%d fresh_p50=%s fresh_p99=%s fresh_max=%s "
              "first_gone_p50=%s standby_visible_p50=%s standby_visible_max=%s" % (
                  len(self.rows), stale_forever, raced, f(percentile(fresh, 50)), f(percentile(fresh, 99)),
                  f(fresh[-1] if fresh else float("nan")), f(percentile(gone, 50)), f(percentile(visible, 50)),
                  f(visible[-1] if visible else float("nan"))))


if __name__ == "__main__":
    if len(sys.argv) != 11:
        sys.exit(__doc__)
    Runner(sys.argv[1:]).run()
