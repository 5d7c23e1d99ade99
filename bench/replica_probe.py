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

Regional caches (bench/replica_staleness.sh BENCH_MODE=regional): REDIS_PORT
may name several caches, NAME=PORT[,NAME=PORT...], e.g.
regional=6380,standby_names=6379. Each probe then caches the row in every one
of them before its one commit and runs one reader per cache, all in the same
poll loop, each with its own GET / standby read / SET: the caches are
measured on the same commit and the same replay (paired). The CSV gets the
cache's name after LABEL, and one summary line per cache, starting with
cache=NAME.
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
        # "PORT", or "NAME=PORT,NAME=PORT..." (several caches, named in the CSV)
        self.named = "=" in redis_port
        self.caches = [tuple(c.split("=", 1)) for c in redis_port.split(",")] if self.named else [("", redis_port)]
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
            caches = [(name, redis.Redis(host="127.0.0.1", port=int(port))) for name, port in self.caches]
            while True:
                row_id = self.take()
                if row_id is None:
                    break
                rows = self.probe(pcur, scur, caches, row_id)
                with self.lock:
                    self.rows.extend(rows)
                time.sleep(random.uniform(0.0, 0.05))
            primary.close()
            standby.close()
        except Exception as e:  # reported by main(): a probe that broke must not look like a result
            with self.lock:
                self.errors.append(repr(e))

    def probe(self, pcur, scur, caches, row_id):
        key = "bench:item:%d" % row_id
        pcur.execute("SELECT v FROM items WHERE id = %s", (row_id,))
        old = str(pcur.fetchone()[0])
        new = str(int(old) + 1)
        for _, r in caches:
            r.set(key, old)
        pcur.execute("UPDATE items SET v = %s WHERE id = %s", (int(new), row_id))
        t0 = time.monotonic()
        t0_unix = time.time()  # to line up with Redis' own clock (MONITOR, BENCH_TRACE)

        def since():
            return (time.monotonic() - t0) * 1000.0

        standby_new = [None]  # when a read of the standby first returned the new value (any reader's)

        def read_standby():
            scur.execute("SELECT v FROM items WHERE id = %s", (row_id,))
            value = str(scur.fetchone()[0])
            if value == new and standby_new[0] is None:
                standby_new[0] = since()
            return value

        class Reader:
            """One cache-aside reader of one cache (its state for this probe)."""

            def __init__(self, r):
                self.r = r
                self.first_gone = self.last_stale = self.fresh = None
                self.stale_refills = 0
                self.refill_read = self.refill_set = None  # the last refill of the old value: read started, SET done

            def step(self):
                """One poll; True once fresh."""
                cached = self.r.get(key)
                seen = since()
                if cached is None:
                    if self.first_gone is None:
                        self.first_gone = seen
                    read_at = since()
                    value = read_standby()
                    self.r.set(key, value)
                    if value == old:
                        self.stale_refills += 1
                        self.last_stale = self.refill_set = since()
                        self.refill_read = read_at
                        return False
                    self.fresh = since()
                    return True
                if cached.decode() == old:
                    self.last_stale = seen
                    if standby_new[0] is None:
                        read_standby()
                    return False
                if cached.decode() == new:
                    self.fresh = seen
                    return True
                raise RuntimeError("key %s holds %r, neither %s nor %s" % (key, cached, old, new))

        readers = [Reader(r) for _, r in caches]
        waiting = list(readers)
        while waiting and since() < self.cap * 1000.0:
            random.shuffle(waiting)  # (no cache always polled first)
            waiting = [reader for reader in waiting if not reader.step()]
            if waiting:
                time.sleep(self.poll)

        def ms(v):
            return "" if v is None else "%.2f" % v

        rows = []
        for (name, _), reader in zip(caches, readers):
            row = [self.label] + ([name] if self.named else []) + [
                row_id, "fresh" if reader.fresh is not None else "stale_forever", ms(reader.fresh),
                ms(reader.last_stale), ms(reader.first_gone), ms(standby_new[0]), reader.stale_refills,
                ms(reader.refill_read), ms(reader.refill_set), "%.6f" % t0_unix]
            rows.append(row)
        return rows

    def run(self):
        threads = [threading.Thread(target=self.thread_main) for _ in range(self.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.errors:
            sys.exit("replica_probe: " + "; ".join(self.errors))
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f).writerows(sorted(self.rows, key=lambda row: row[:3] if self.named else row[1]))
        for name, _ in self.caches:
            rows = [row[1:] if self.named else row for row in self.rows if not self.named or row[1] == name]
            print(("cache=%s " % name if self.named else "") + self.summary(rows))

    @staticmethod
    def summary(rows):
        def col(i):
            return sorted(float(row[i]) for row in rows if row[i] != "")

        fresh = col(3)
        stale_forever = sum(1 for row in rows if row[2] == "stale_forever")
        raced = sum(1 for row in rows if row[7] > 0)
        gone = col(5)
        visible = col(6)

        def f(v):
            return "-" if v != v else "%.1f" % v  # nan (no such probe) as "-"

        return ("probes=%d stale_forever=%d raced=%d fresh_p50=%s fresh_p99=%s fresh_max=%s "
                "first_gone_p50=%s standby_visible_p50=%s standby_visible_max=%s" % (
                    len(rows), stale_forever, raced, f(percentile(fresh, 50)), f(percentile(fresh, 99)),
                    f(fresh[-1] if fresh else float("nan")), f(percentile(gone, 50)), f(percentile(visible, 50)),
                    f(visible[-1] if visible else float("nan"))))


if __name__ == "__main__":
    if len(sys.argv) != 11:
        sys.exit(__doc__)
    Runner(sys.argv[1:]).run()
