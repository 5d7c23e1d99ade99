#!/usr/bin/env python3
"""The regional part of results.md (bench/replica_staleness.sh BENCH_MODE=regional).

  regional_report.py OUT_DIR POLL_MS CAP_S PROBE_THREADS WRITER_TPS CLIENTS SECONDS

Reads OUT_DIR/regional_probes.csv, regional_cells.csv and regional_cpu.csv,
prints markdown. Percentiles are nearest-rank (as replica_probe.py's); their
95% intervals are distribution-free, from order statistics: the ranks l, u
with P(Bin(n, q) < l) <= 2.5% and P(Bin(n, q) < u) >= 97.5%. Where u would
be beyond the sample (too few probes for that percentile) the upper end is
shown as "max+".
"""
import csv
import math
import os
import statistics
import sys


def percentile(values, p):
    if not values:
        return None
    rank = max(0, min(len(values) - 1, round(p / 100.0 * len(values) + 0.5) - 1))
    return values[rank]


def binom_cdf(k, n, q):
    """P(Bin(n, q) <= k)."""
    if k < 0:
        return 0.0
    total = 0.0
    for i in range(0, min(k, n) + 1):
        total += math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                          + (i * math.log(q) if i else 0.0) + ((n - i) * math.log1p(-q) if n - i else 0.0))
    return total


def quantile_ci(values, q):
    """(low, high) of a 95% interval for the q-quantile; high None when beyond the sample."""
    n = len(values)
    if n == 0:
        return None, None
    low_rank = 1
    for rank in range(1, n + 1):  # largest l with P(X < l) = cdf(l - 1) <= 0.025
        if binom_cdf(rank - 1, n, q) <= 0.025:
            low_rank = rank
        else:
            break
    high_rank = None
    for rank in range(1, n + 1):  # smallest u with cdf(u - 1) >= 0.975
        if binom_cdf(rank - 1, n, q) >= 0.975:
            high_rank = rank
            break
    return values[low_rank - 1], (values[high_rank - 1] if high_rank else None)


def f1(v):
    return "–" if v is None else "%.1f" % v


def with_ci(values, p):
    if not values:
        return "–"
    low, high = quantile_ci(values, p / 100.0)
    return "%s [%s–%s]" % (f1(percentile(values, p)), f1(low), "max+" if high is None else f1(high))


def median_range(values, fmt="%.2f"):
    if not values:
        return "–"
    return "%s (%s–%s)" % (fmt % statistics.median(values), fmt % min(values), fmt % max(values))


def main():
    out, poll_ms, cap_s, threads, writer_tps, clients, seconds = sys.argv[1:8]
    probes = list(csv.DictReader(open(os.path.join(out, "regional_probes.csv"))))
    cells = list(csv.DictReader(open(os.path.join(out, "regional_cells.csv"))))
    mechanism = {"regional": "Redis B: the standby's worker (regional)",
                 "standby_names": "Redis A: primary, first + second send (standby_names)"}

    print("## Regional reader staleness (R1)")
    print()
    print("Probe (bench/replica_probe.py with two caches): cache the row in Redis A and in Redis B, commit one UPDATE "
          "on the primary, then two cache-aside readers in one loop, every %s ms: GET the key from their cache and on "
          "a miss read the row from the standby and SET it. fresh = commit returned -> that reader first finds the new "
          "value (after which no reader of that cache can refill the old one); stale forever = still the old value "
          "%s s after the commit. raced = probes whose reader refilled the old value from the standby at least once. "
          "Writers: pgbench at %s TPS (%s clients, random rows of the same table) throughout; %s probes at once. "
          "p50 and p99 with 95%% intervals [low–high], in ms from the commit; the control cell has standby_names '' "
          "(the A reader gets the first send only)." % (poll_ms, cap_s, writer_tps, clients, threads))
    print()
    print("| cell | debounce_ms | apply delay (ms) | delay + debounce (ms) | cache | probes | stale forever | raced "
          "| fresh p50 [95% CI] | fresh p99 [95% CI] | fresh max | standby shows the row p50 |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    by_cell = {}
    for row in probes:
        by_cell.setdefault(row["cell"], {}).setdefault(row["cache"], []).append(row)
    info = {c["cell"]: c for c in cells}
    for cell in [c["cell"] for c in cells]:
        c = info[cell]
        deb, delay = int(c["debounce_ms"]), int(c["apply_delay_ms"])
        for cache in ("regional", "standby_names"):
            rows = by_cell.get(cell, {}).get(cache, [])
            fresh = sorted(float(r["fresh_ms"]) for r in rows if r["outcome"] == "fresh")
            visible = sorted(float(r["standby_visible_ms"]) for r in rows if r["standby_visible_ms"])
            label = mechanism[cache]
            if cache == "standby_names" and c["standby_names"] == "''":
                label = "Redis A: primary, first send only (standby_names '')"
            print("| %s | %d | %d | %d | %s | %d | %d | %d | %s | %s | %s | %s |" % (
                cell, deb, delay, deb + delay, label, len(rows),
                sum(1 for r in rows if r["outcome"] == "stale_forever"),
                sum(1 for r in rows if int(r["stale_refills"]) > 0),
                with_ci(fresh, 50), with_ci(fresh, 99), f1(fresh[-1] if fresh else None),
                f1(percentile(visible, 50))))
    print()
    print("Paired, per probe (same commit): standby_names fresh_ms - regional fresh_ms, over probes fresh in both "
          "caches; median [95% CI], and how many probes the regional cache was fresh first.")
    print()
    print("| cell | probes fresh in both | median difference (ms) | regional fresh first |")
    print("|---|---:|---:|---:|")
    for cell in [c["cell"] for c in cells]:
        pairs = {}
        for cache, rows in by_cell.get(cell, {}).items():
            for r in rows:
                if r["outcome"] == "fresh":
                    pairs.setdefault(r["row_id"], {})[cache] = float(r["fresh_ms"])
        diffs = sorted(p["standby_names"] - p["regional"] for p in pairs.values() if len(p) == 2)
        first = sum(1 for d in diffs if d > 0)
        print("| %s | %d | %s | %d / %d |" % (cell, len(diffs), with_ci(diffs, 50), first, len(diffs)))
    print()
    print("The workers' own view over each cell (writers' commits included; cachebust.stats, log buckets ~9%): "
          "primary = Redis A; standby = its worker, from reading a replayed commit to Redis B's acknowledgement.")
    print()
    print("| cell | primary second sends | primary second send delay p50 / p99 / max (ms) | primary first delivery p50 (ms) "
          "| standby worker latency p50 / p99 / max (ms) | standby targets delivered | standby Redis commands | standby fallbacks |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in cells:
        print("| %s | %s | %s / %s / %s | %s | %s / %s / %s | %s | %s | %s |" % (
            c["cell"], c["second_sends"], c["standby_lag_p50_ms"], c["standby_lag_p99_ms"], c["standby_lag_max_ms"],
            c["primary_latency_p50_ms"], c["standby_latency_p50_ms"], c["standby_latency_p99_ms"],
            c["standby_latency_max_ms"], c["standby_targets_delivered"], c["standby_redis_commands"],
            c["standby_fallbacks"]))

    cpu_path = os.path.join(out, "regional_cpu.csv")
    cpu = list(csv.DictReader(open(cpu_path))) if os.path.exists(cpu_path) else []
    if not cpu:
        return
    print()
    print("## Standby worker CPU per 1,000 replayed transactions (R2)")
    print()
    print("Per round the standby is restarted as deliver (redis_url = Redis B) or follow (no redis_url: its worker "
          "only follows the primary's journal progress), rounds interleaved; the worker's CPU time (/proc/PID/schedstat): "
          "idle for the idle seconds, then across %s s of unthrottled pgbench on the primary (%s clients, one-row "
          "UPDATE of a random row of the watched table) until the standby replayed (deliver: and delivered) all of "
          "it, plus 1 s; debounce_ms as shown on both servers, no apply delay. marginal = write CPU - idle rate x "
          "the write interval. median (min–max) over rounds." % (seconds, clients))
    print()
    print("| debounce_ms | standby worker | rounds | transactions per round | CPU ms per 1,000 transactions | marginal CPU ms per "
          "1,000 transactions | idle CPU ms per s | Redis B commands per 1,000 transactions | fallbacks |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    diff_lines = []
    for deb in sorted({int(r["debounce_ms"]) for r in cpu}, reverse=True):
        diff_lines.append(cpu_table(deb, [r for r in cpu if int(r["debounce_ms"]) == deb]))
    print()
    for line in diff_lines:
        print(line)


def cpu_table(deb, cpu):
    """Prints the rows of one debounce_ms; returns the paired-difference line."""
    per = {}
    line = ""
    for m in ("follow", "deliver"):
        rows = [r for r in cpu if r["standby"] == m]
        if not rows:
            continue
        total, marginal, idle, cmds = [], [], [], []
        for r in rows:
            tx = int(r["transactions"])
            idle_rate = float(r["idle_cpu_s"]) / float(r["idle_s"])
            total.append(float(r["write_cpu_s"]) * 1e6 / tx)
            marginal.append((float(r["write_cpu_s"]) - idle_rate * float(r["write_s"])) * 1e6 / tx)
            idle.append(idle_rate * 1000)
            cmds.append(int(r["redis_b_commands"]) * 1000.0 / tx)
        per[m] = {r["round"]: float(r["write_cpu_s"]) * 1e6 / int(r["transactions"]) for r in rows}
        print("| %d | %s | %d | %s | %s | %s | %s | %s | %s |" % (
            deb, m, len(rows), median_range([int(r["transactions"]) for r in rows], "%d"), median_range(total),
            median_range(marginal), median_range(idle, "%.1f"), median_range(cmds, "%.1f"),
            ",".join(sorted({r["standby_fallbacks"] for r in rows}))))
    if "follow" in per and "deliver" in per:
        diffs = [per["deliver"][r] - per["follow"][r] for r in per["deliver"] if r in per["follow"]]
        line = ("debounce_ms %d: deliver - follow, per round (same round): %s CPU ms per 1,000 transactions."
                % (deb, median_range(diffs)))
    return line


if __name__ == "__main__":
    main()
