#!/usr/bin/python3
"""Aggregates bench/cpu_cost.sh's raw.csv into markdown tables.

    cpu_stats.py RAW.csv                  tables of one run
    cpu_stats.py --compare A.csv B.csv [BASE]
                                          B against A (e.g. before/after a change):
                                          the extra over BASE (none) per row
    cpu_stats.py --paired A.csv B.csv [BASE]
                                          the same, paired by repetition, for runs
                                          that took turns (bench/cpu_ab.sh)

A run's value per repetition is backend CPU ns / measured transactions.
Means carry a 95 % confidence half-width, Student t over repetitions. Extra
costs are paired: the difference with the baseline *of the same repetition*
(the same rows, minutes apart), which removes the drift between repetitions.
Comparisons of two runs are unpaired (Welch).

Runs with more than one synchronous_commit or cachebust.journal value
(CPU_SYNC, CPU_JOURNAL) get the tables once per combination; with journal
on and off, a last table pairs them: backend CPU, throughput and WAL bytes
per transaction of journal on against off in the same repetition.
"""
import csv
import math
import os
import statistics
import sys
from collections import defaultdict

CONFIG_ORDER = ["none", "empty_c", "empty_stmt", "wal_msg", "key", "key_tag", "three", "key_row", "key_tag_row", "three_row"]
CACHEBUST = ["key", "key_tag", "three", "key_row", "key_tag_row", "three_row"]
BASELINES = ["none", "empty_c", "empty_stmt"]

# Two-sided 95 % Student t quantiles; other degrees of freedom are
# interpolated in 1/df, which is accurate to the third digit.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
        8: 2.306, 9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160,
        14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t975(df):
    if df < 1:
        return float("nan")
    if df in T975:
        return T975[df]
    keys = sorted(T975)
    if df > keys[-1]:
        lo, hi, tlo, thi = keys[-1], math.inf, T975[keys[-1]], 1.960
    else:
        lo = max(k for k in keys if k < df)
        hi = min(k for k in keys if k > df)
        tlo, thi = T975[lo], T975[hi]
    x, xlo, xhi = 1 / df, 1 / lo, (0 if hi == math.inf else 1 / hi)
    return thi + (tlo - thi) * (x - xhi) / (xlo - xhi)


def mean_ci(xs):
    """(mean, 95 % half-width) of a sample."""
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, float("nan")
    return m, t975(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))


def welch(a, b):
    """(mean(b) - mean(a), 95 % half-width)."""
    d = statistics.fmean(b) - statistics.fmean(a)
    if len(a) < 2 or len(b) < 2:
        return d, float("nan")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return d, 0.0
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return d, t975(round(df)) * se


def fmt(v):
    """Enough digits to see the difference, not more."""
    if v != v:
        return "–"
    a = abs(v)
    return f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 10 else f"{v:.3f}" if a >= 0.1 else f"{v:.4f}"


def pm(m, h):
    return f"{fmt(m)} ± {fmt(h)}" if h == h else fmt(m)


def load(path):
    """{(synchronous_commit, journal): {(workload, clients): {config: {rep: row}}}}
    and the run's label. (Runs before CPU_SYNC and CPU_JOURNAL: ("off", "").)"""
    variants = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    label = ""
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            label = r["label"] or label
            runs = variants[(r.get("sync") or "off", r.get("journal") or "")]
            key = (r["workload"], int(r["clients"]))
            runs[key][r["config"]][int(r["rep"])] = {
                "txns": int(r["txns"]), "rows": int(r["rows_per_txn"]),
                "ns": int(r["backend_ns"]), "ticks": int(r["backend_ticks"]),
                "worker_ns": int(r["worker_ns"]), "wall": float(r["wall_s"]),
                "vcsw": int(r.get("backend_vcsw") or 0), "ivcsw": int(r.get("backend_ivcsw") or 0),
                "wal_bytes": int(r.get("wal_bytes") or 0), "wal_txns": int(r.get("wal_txns") or 0),
            }
    return variants, label


def variant_title(v):
    sync, journal = v
    return f"synchronous_commit = {sync}" + (f", cachebust.journal = {journal}" if journal else "")


def ordered(configs):
    return [c for c in CONFIG_ORDER if c in configs] + sorted(c for c in configs if c not in CONFIG_ORDER)


def per_txn(run):
    return run["ns"] / run["txns"] / 1000


def per_row(run):
    return per_txn(run) / run["rows"]


def paired_table_head(title, note, sign, bases):
    """Heading, note and header rows of a table with a column per baseline."""
    return [f"### {title}", "", note, "",
            "| workload | config | " + " | ".join(f"{sign} {b}" for b in bases) + " |",
            "|---|---|" + "---:|" * len(bases)]


def throughput(runs):
    """Throughput as a ratio to each baseline, paired by repetition.

    Every configuration of a repetition runs the same number of
    transactions, so the ratio is the baseline's pgbench wall time over the
    configuration's. The wall time includes the connections and the
    warm-up, the same for every configuration. Unlike CPU time it includes
    everything that shares the CPUs (the cachebust worker, pgbench, waits
    for row locks), so with more clients than vCPUs it is what the CPU
    cost becomes."""
    out = []
    for clients in sorted({k[1] for k in runs}):
        keys = sorted(k for k in runs if k[1] == clients)
        configs = ordered({c for k in keys for c in runs[k]})
        bases = [b for b in BASELINES if b in configs]
        if not bases:
            continue
        out += paired_table_head(
            f"Throughput ÷ baseline of the same repetition, {clients} client{'s' if clients > 1 else ''}",
            "Each cell: mean ± 95 % CI over the repetitions of (baseline wall time ÷ config wall time) "
            "for the same transactions; the baseline's transactions per second in the header row.", "÷", bases)
        for k in keys:
            tps = {b: statistics.fmean([r["txns"] / r["wall"] for r in runs[k][b].values()]) for b in bases if b in runs[k]}
            out.append(f"| {k[0]} | (baseline TPS) | " + " | ".join(f"{tps[b]:.0f}" if b in tps else "–" for b in bases) + " |")
            for c in configs:
                if c in BASELINES[:1]:
                    continue
                cells = []
                for b in bases:
                    common = sorted(set(runs[k].get(b, {})) & set(runs[k][c]))
                    if not common or b == c:
                        cells.append("–")
                        continue
                    cells.append(pm(*mean_ci([runs[k][b][r]["wall"] / runs[k][c][r]["wall"] for r in common])))
                out.append(f"| {k[0]} | {c} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def report(path):
    variants, _ = load(path)
    if not variants:
        return "(no measured runs)"
    if len(variants) == 1:
        return report_runs(next(iter(variants.values())))
    out = []
    for v in sorted(variants):
        out += [f"## {variant_title(v)}", "", report_runs(variants[v]), ""]
    out += journal_report(variants)
    return "\n".join(out)


def journal_report(variants):
    """cachebust.journal on against off, paired by repetition (issue 23)."""
    syncs = sorted({s for s, j in variants if (s, "on") in variants and (s, "off") in variants})
    if not syncs:
        return []
    out = ["## WAL journal: on against off (paired by repetition)", "",
           "Each cell: mean ± 95 % CI over the repetitions. Extra CPU: backend µs per transaction with the journal "
           "on − off in the same repetition (each repetition restarts the server once per setting). Throughput: "
           "wall time off ÷ wall time on for the same transactions. WAL: bytes from pg_current_wal_lsn() before the "
           "run to after its delivery, over all its transactions (warm-up included).", "",
           "| sync | workload | clients | config | reps | µs/txn, off | µs/txn, on | extra µs/txn | throughput on ÷ off "
           "| WAL bytes/txn, off | WAL bytes/txn, on | extra WAL bytes/txn |",
           "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in syncs:
        off, on = variants[(s, "off")], variants[(s, "on")]
        for k in sorted(set(off) & set(on), key=lambda k: (k[0], k[1])):
            for c in ordered(set(off[k]) & set(on[k])):
                common = sorted(set(off[k][c]) & set(on[k][c]))
                if not common:
                    continue
                a = [off[k][c][r] for r in common]
                b = [on[k][c][r] for r in common]
                wal = lambda x: x["wal_bytes"] / x["wal_txns"] if x["wal_txns"] else float("nan")
                out.append(f"| {s} | {k[0]} | {k[1]} | {c} | {len(common)} | "
                           f"{pm(*mean_ci([per_txn(x) for x in a]))} | {pm(*mean_ci([per_txn(x) for x in b]))} | "
                           f"{pm(*mean_ci([per_txn(y) - per_txn(x) for x, y in zip(a, b)]))} | "
                           f"{pm(*mean_ci([x['wall'] / y['wall'] for x, y in zip(a, b)]))} | "
                           f"{pm(*mean_ci([wal(x) for x in a]))} | {pm(*mean_ci([wal(y) for y in b]))} | "
                           f"{pm(*mean_ci([wal(y) - wal(x) for x, y in zip(a, b)]))} |")
    out.append("")
    return out + message_floor_report(variants, syncs)


def message_floor_report(variants, syncs):
    """PostgreSQL's own cost of the journal's WAL record (wal_msg − empty_stmt,
    in the same server) next to the journal's (key_tag, on − off), per repetition."""
    rows = []
    for s in syncs:
        off, on = variants[(s, "off")], variants[(s, "on")]
        for k in sorted(set(off) & set(on), key=lambda k: (k[0], k[1])):
            have = lambda v, c: c in v[k]
            if not all(have(v, c) for v in (off, on) for c in ("empty_stmt", "wal_msg", "key_tag")):
                continue
            reps = sorted(set.intersection(*(set(v[k][c]) for v in (off, on) for c in ("empty_stmt", "wal_msg", "key_tag"))))
            if not reps:
                continue
            # The control does not depend on the journal (no cachebust trigger): both servers' pairs count.
            msg_cpu = lambda r: statistics.fmean(per_txn(v[k]["wal_msg"][r]) - per_txn(v[k]["empty_stmt"][r]) for v in (off, on))
            msg_tput = lambda r: statistics.fmean(v[k]["empty_stmt"][r]["wall"] / v[k]["wal_msg"][r]["wall"] for v in (off, on))
            j_cpu = lambda r: per_txn(on[k]["key_tag"][r]) - per_txn(off[k]["key_tag"][r])
            j_tput = lambda r: off[k]["key_tag"][r]["wall"] / on[k]["key_tag"][r]["wall"]
            rows.append(f"| {s} | {k[0]} | {k[1]} | {len(reps)} | {pm(*mean_ci([msg_cpu(r) for r in reps]))} | "
                        f"{pm(*mean_ci([msg_tput(r) for r in reps]))} | {pm(*mean_ci([j_cpu(r) for r in reps]))} | "
                        f"{pm(*mean_ci([j_tput(r) for r in reps]))} | {pm(*mean_ci([j_cpu(r) - msg_cpu(r) for r in reps]))} |")
    if not rows:
        return []
    return ["## The journal against PostgreSQL's own cost of its WAL record", "",
            "`wal_msg` − `empty_stmt`: the same empty C statement trigger with and without one transactional logical "
            "message of the journal's size, in the same server (no cachebust code; mean of the journal-on and "
            "journal-off servers of the repetition). The journal: `key_tag` with `cachebust.journal` on − off. "
            "Last column: the journal's extra CPU minus the message's, paired by repetition.", "",
            "| sync | workload | clients | reps | message alone, extra µs/txn | message alone, throughput ratio "
            "| journal, extra µs/txn | journal, throughput on ÷ off | journal − message, µs/txn |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"] + rows + [""]


def report_runs(runs):
    out = []
    for clients in sorted({k[1] for k in runs}):
        keys = sorted(k for k in runs if k[1] == clients)
        configs = ordered({c for k in keys for c in runs[k]})
        sfx = f", {clients} client{'s' if clients > 1 else ''}"
        for title, f in (("Backend CPU, µs per transaction", per_txn), ("Backend CPU, µs per row", per_row)):
            out += [f"### {title}{sfx}", "",
                    "| workload | rows/txn | reps | " + " | ".join(configs) + " |",
                    "|---|---:|---:|" + "---:|" * len(configs)]
            for k in keys:
                reps = runs[k][configs[0]] if configs[0] in runs[k] else next(iter(runs[k].values()))
                first = next(iter(reps.values()))
                cells = [pm(*mean_ci([f(r) for r in runs[k][c].values()])) if c in runs[k] else "–" for c in configs]
                out.append(f"| {k[0]} | {first['rows']} | {len(reps)} | " + " | ".join(cells) + " |")
            out.append("")
        bases = [b for b in BASELINES if b in configs]
        cbs = [c for c in configs if c in CACHEBUST]
        if bases and cbs:
            out += paired_table_head(
                f"cachebust's extra backend CPU, µs per row (paired by repetition){sfx}",
                "Each cell: mean ± 95 % CI of (config − baseline) per row over the repetitions, "
                "and the same in % of the baseline's own cost.", "−", bases)
            for k in keys:
                for c in cbs:
                    if c not in runs[k]:
                        continue
                    cells = []
                    for b in bases:
                        common = sorted(set(runs[k].get(b, {})) & set(runs[k][c]))
                        if not common:
                            cells.append("–")
                            continue
                        d = [per_row(runs[k][c][r]) - per_row(runs[k][b][r]) for r in common]
                        rel = [100 * (per_row(runs[k][c][r]) / per_row(runs[k][b][r]) - 1) for r in common]
                        m, h = mean_ci(rel)
                        cells.append(f"{pm(*mean_ci(d))} ({m:+.1f} ± {h:.1f} %)")
                    out.append(f"| {k[0]} | {c} | " + " | ".join(cells) + " |")
            out.append("")
        out += [f"### cachebust worker CPU (off the write path), µs per row{sfx}", "",
                "Read from outside before and after each run (after `cachebust.barrier()`); with no cachebust trigger it is the worker's idle cost.", "",
                "| workload | " + " | ".join(configs) + " |", "|---|" + "---:|" * len(configs)]
        for k in keys:
            cells = []
            for c in configs:
                if c in runs[k]:
                    cells.append(pm(*mean_ci([r["worker_ns"] / r["txns"] / r["rows"] / 1000 for r in runs[k][c].values()])))
                else:
                    cells.append("–")
            out.append(f"| {k[0]} | " + " | ".join(cells) + " |")
        out.append("")
    out += throughput(runs)
    for clients in sorted({k[1] for k in runs}):
        keys = sorted(k for k in runs if k[1] == clients)
        configs = ordered({c for k in keys for c in runs[k]})
        out += [f"### Backend context switches per transaction, voluntary / involuntary (preempted), {clients} client(s)", "",
                "| workload | " + " | ".join(configs) + " |", "|---|" + "---:|" * len(configs)]
        for k in keys:
            cells = []
            for c in configs:
                rs = list(runs[k].get(c, {}).values())
                if rs:
                    t = sum(r["txns"] for r in rs)
                    cells.append(f"{sum(r['vcsw'] for r in rs) / t:.3g} / {sum(r['ivcsw'] for r in rs) / t:.3g}")
                else:
                    cells.append("–")
            out.append(f"| {k[0]} | " + " | ".join(cells) + " |")
        out.append("")
    # utime + stime (ticks) against schedstat: two clocks of the same thing.
    ns = sum(r["ns"] for k in runs for c in runs[k] for r in runs[k][c].values())
    ticks = sum(r["ticks"] for k in runs for c in runs[k] for r in runs[k][c].values())
    wall = sum(r["wall"] for k in runs for c in runs[k] for r in runs[k][c].values())
    hz = os.sysconf("SC_CLK_TCK")
    out.append(f"Cross-check: the backends' utime + stime over all runs ({ticks / hz:.1f} s at {hz} Hz) is "
               f"{100 * ticks / hz / (ns / 1e9):.1f} % of their schedstat time ({ns / 1e9:.1f} s); "
               f"pgbench wall time {wall:.0f} s.")
    return "\n".join(out)


def compare(path_a, path_b, base="none"):
    """B against A. Absolute levels drift between runs (the machine, other
    load), so the change that matters is that of the extra over a baseline
    measured in the same run, per repetition; both are shown."""
    va, la = load(path_a)
    vb, lb = load(path_b)
    la, lb = la or "A", lb or "B"
    out = []
    for v in sorted(set(va) & set(vb)):
        if len(va) > 1 or len(vb) > 1:
            out += [f"## {variant_title(v)}", ""]
        out += compare_runs(va[v], vb[v], la, lb, path_a, path_b, base)
    return "\n".join(out)


def compare_runs(a, b, la, lb, path_a, path_b, base):

    def extras(runs, k, c):
        common = sorted(set(runs[k].get(base, {})) & set(runs[k][c]))
        return [per_row(runs[k][c][r]) - per_row(runs[k][base][r]) for r in common]

    out = [f"### {lb} ({path_b}) against {la} ({path_a})", "",
           f"Backend CPU µs per row. Extra = config − {base} of the same repetition; changes with Welch 95 % intervals.", "",
           f"| workload | clients | config | extra, {la} | extra, {lb} | change of extra | µs/row, {la} | µs/row, {lb} | change |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for k in sorted(set(a) & set(b)):
        for c in ordered(set(a[k]) & set(b[k])):
            xa = [per_row(r) for r in a[k][c].values()]
            xb = [per_row(r) for r in b[k][c].values()]
            d, h = welch(xa, xb)
            ea, eb = (extras(a, k, c), extras(b, k, c)) if c != base else ([], [])
            if ea and eb:
                de, he = welch(ea, eb)
                ex = f"{pm(*mean_ci(ea))} | {pm(*mean_ci(eb))} | {pm(de, he)} ({100 * de / statistics.fmean(ea):+.0f} %)"
            else:
                ex = "– | – | –"
            out.append(f"| {k[0]} | {k[1]} | {c} | {ex} | {pm(*mean_ci(xa))} | {pm(*mean_ci(xb))} | "
                       f"{pm(d, h)} ({100 * d / statistics.fmean(xa):+.1f} %) |")
    out.append("")
    return out


def sign_test(d):
    """Two-sided p of as many or more repetitions on one side (ties dropped)."""
    pos, neg = sum(x > 0 for x in d), sum(x < 0 for x in d)
    n, k = pos + neg, min(pos, neg)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def compare_paired(path_a, path_b, base="none"):
    """B against A, repetition by repetition. When the builds took turns
    (bench/cpu_ab.sh), repetition r of each ran minutes apart on the same
    rows, so the difference of their extras per repetition leaves out the
    drift between repetitions. A burst of other load in one run moves the
    mean far; the median and the sign test are not moved by it."""
    a, la = load(path_a)
    b, lb = load(path_b)
    la, lb = la or "A", lb or "B"
    out = [f"### {lb} against {la}, paired by repetition", "",
           f"Per repetition r: (config − {base}) of {lb} minus the same of {la}, µs per row; mean ± 95 % CI, "
           f"median, and the repetitions where {lb}'s extra is higher, with the two-sided sign test's p.", "",
           "| workload | clients | config | reps | mean ± CI | median | higher in " + lb + " | sign test p |",
           "|---|---:|---|---:|---:|---:|---:|---:|"]
    for k in sorted(set(a) & set(b)):
        for c in ordered(set(a[k]) & set(b[k])):
            if c == base:
                continue
            reps = sorted(set(a[k][c]) & set(a[k].get(base, {})) & set(b[k][c]) & set(b[k].get(base, {})))
            if not reps:
                continue
            d = [(per_row(b[k][c][r]) - per_row(b[k][base][r])) - (per_row(a[k][c][r]) - per_row(a[k][base][r]))
                 for r in reps]
            out.append(f"| {k[0]} | {k[1]} | {c} | {len(d)} | {pm(*mean_ci(d))} | {fmt(statistics.median(d))} | "
                       f"{sum(x > 0 for x in d)} of {len(d)} | {sign_test(d):.3f} |")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--compare":
        print(compare(*sys.argv[2:]))
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "--paired":
        print(compare_paired(*sys.argv[2:]))
    elif len(sys.argv) == 2:
        print(report(sys.argv[1]))
    else:
        sys.exit(__doc__)
