#!/usr/bin/python3
"""Summarizes a perf record of one backend (bench/cpu_cost.sh) as markdown.

    cpu_perf.py PERF.data CONFIG WORKLOAD [US_PER_TXN [LOADED_SO [CLIENTS [ROWS_PER_TXN [FOCUS ...]]]]]

Every share is of the backend's own samples (perf record -p), i.e. of the
backend CPU time cpu_cost.sh measures; with US_PER_TXN (that measure for
the same config and workload) shares are also shown as µs per transaction.
The call chains (DWARF-unwound) are read sample by sample from perf script,
so "on the stack" counts a sample once however many frames match.
Each FOCUS is part of a cachebust function's name ("row_unchanged"): the
share of samples with such a function on the stack (inlined or not, its
lambdas and everything it calls included), as µs per transaction and per
row, and the leaf functions of those samples.
"""
import collections
import math
import re
import subprocess
import sys

FRAME = re.compile(r"^\s*([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$")


def chains(data, inline):
    """Call chains, leaf first, as lists of (address, symbol, object)."""
    args = ["perf", "script", "-i", data, "-F", "ip,sym,dso", "--inline" if inline else "--no-inline"]
    run = subprocess.run(args, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{' '.join(args)}: exit {run.returncode}\n{run.stderr[-2000:]}")
    text = run.stdout
    chain = []
    for line in text.splitlines():
        m = FRAME.match(line)
        if m:
            # "(deleted)": the file was replaced by a reinstall since it was loaded.
            chain.append((m[1], m[2], m[3].rsplit("/", 1)[-1].removesuffix(" (deleted)")))
        elif chain:
            yield chain
            chain = []
    if chain:
        yield chain


def strip_params(name):
    """addr2line's demangled "void ns::f(int) const" to perf's "ns::f"."""
    m = re.match(r"^(?:[\w]+\s+)+?((?:cachebust|std)::.*)$", name)  # a template's return type
    name = (m[1] if m else name).removesuffix(" const")
    if not name.endswith(")") or name.endswith("operator()"):
        return name
    depth = 0
    for i in range(len(name) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(name[i], 0)
        if depth == 0:
            return name[:i]
    return name


def resolve(so, addrs):
    """{address: [function, ..., physical function]} (innermost first) from
    the debug info of the cachebust.so the server loaded. perf cannot name
    functions of a mapped file that a reinstall has since replaced."""
    if not so or not addrs:
        return {}
    run = subprocess.run(["addr2line", "-a", "-f", "-i", "-C", "-e", so], input="\n".join(sorted(addrs)),
                         capture_output=True, text=True)
    out, cur = {}, None
    lines = run.stdout.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("0x"):
            cur = format(int(lines[i], 16), "x")
            out[cur] = []
            i += 1
        else:
            if cur is not None and lines[i] != "??":
                out[cur].append(strip_params(lines[i]))
            i += 2  # function, then file:line
    return {a: n for a, n in out.items() if n}


def samples(data, so=None):
    """Per sample: the physical frames (symbol, object), leaf first, and the
    names of every function on the stack, inlined ones included, with their
    object. perf prints an inlined function without its object, so each run
    of frames at one address is given the object of the physical frame at
    that address, from a second pass without inlining."""
    phys_all = list(chains(data, False))
    unknown = {a for c in phys_all for a, s, d in c if d == "cachebust.so" and s == "[unknown]"}
    names = resolve(so, unknown)
    for phys, inl in zip(phys_all, chains(data, True)):
        frames = [(names[a][-1] if d == "cachebust.so" and s == "[unknown]" and a in names else s, d)
                  for a, s, d in phys]
        named = []
        addrs = [a for a, _, _ in phys]
        i = -1
        prev = None
        for a, s, _ in inl:
            if a != prev:
                i += 1
                prev = a
                if i < len(addrs) and addrs[i] == a and phys[i][1] == "[unknown]" and a in names:
                    named.extend((n, phys[i][2]) for n in names[a])
            if i >= len(addrs) or addrs[i] != a:
                named = list(frames)  # not aligned: physical frames only
                break
            if not (phys[i][1] == "[unknown]" and a in names):
                named.append((s.replace(" (inlined)", ""), phys[i][2]))
        yield frames, named


# PostgreSQL 15 frames that place cachebust's share: the trigger machinery
# every AFTER trigger pays, the commit, the client round trip.
CONTEXT = [
    ("ExecARUpdateTriggers", "queueing the AFTER trigger event / transition-table tuples of an updated row"),
    ("ExecARInsertTriggers", "the same for an inserted (COPY) row"),
    ("AfterTriggerEndQuery", "firing the queued AFTER triggers at the end of a statement"),
    ("CommitTransactionCommand", "commit, commit callbacks included"),
    ("__x64_sys_kill", "kill(): SetLatch waking another process"),
    ("secure_read", "waiting for and reading the next client message"),
    ("secure_write", "sending results to the client"),
    ("standard_ExecutorRun", "executing the statement"),
]


def short(sym, width=100):
    sym = re.sub(r"\s+", " ", sym)
    return sym if len(sym) <= width else sym[: width - 1] + "…"


def main():
    data, config, workload = sys.argv[1:4]
    us = float(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else None
    so = sys.argv[5] if len(sys.argv) > 5 else None
    clients = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    rows = int(sys.argv[7]) if len(sys.argv) > 7 and sys.argv[7] else 1
    focus = sys.argv[8:]
    focus_hits = collections.Counter()
    focus_leaves = {f: collections.Counter() for f in focus}
    n = 0
    complete = 0
    self_dso = collections.Counter()
    self_ours = collections.Counter()
    entries = collections.Counter()
    leaves_under_ours = collections.Counter()
    kill_ours = 0
    on_stack = 0
    context = collections.Counter()
    trigger_not_ours = 0
    inclusive = collections.Counter()
    for chain, named in samples(data, so):
        n += 1
        if chain[-1][0] == "_start":
            complete += 1
        leaf = chain[0]
        self_dso[leaf[1]] += 1
        ours = [s for s, d in chain if d == "cachebust.so"]
        names = {s for s, _ in chain}
        for name, _ in CONTEXT:
            if name in names:
                context[name] += 1
        ours_named = {s for s, d in named if d == "cachebust.so"}
        for sym in ours_named:
            inclusive[sym] += 1
        for f in focus:
            if any(f in sym for sym in ours_named):
                focus_hits[f] += 1
                # PostgreSQL's static functions have no symbol here: name their caller.
                caller = f" ← {chain[1][0]}" if leaf[0] == "[unknown]" and len(chain) > 1 else ""
                focus_leaves[f][f"{leaf[0]} ({leaf[1]}){caller}"] += 1
        if ours:
            on_stack += 1
            entries[ours[-1]] += 1  # the outermost: what PostgreSQL called
            leaves_under_ours[f"{leaf[0]} ({leaf[1]})"] += 1
            if leaf[1] == "cachebust.so":
                self_ours[leaf[0]] += 1
            if "__x64_sys_kill" in names:
                kill_ours += 1
        elif names & {"AfterTriggerEndQuery", "ExecARUpdateTriggers",
                      "ExecARInsertTriggers", "ExecASUpdateTriggers", "ExecASInsertTriggers"}:
            trigger_not_ours += 1
    if n == 0:
        print("(perf recorded no samples)")
        return

    def pct(k):
        s = f"{100 * k / n:.2f} %"
        return s + (f" | {us * k / n:.2f}" if us is not None else "")

    col = " | µs/txn" if us is not None else ""
    sep = "---:|" if us is not None else ""
    out = [f"## perf profile: one backend of {clients} client{'s' if clients > 1 else ''}, config `{config}`, workload {workload}", "",
           f"`perf record --call-graph dwarf -p <backend>`, {n} samples ({100 * complete / n:.0f} % unwound to `_start`); "
           "shares of the backend's own samples"
           + (f", and the same as µs of the measured {us:.2f} µs per transaction" if us is not None else "") + ". "
           "On this VM perf only has the cpu-clock timer: a sample due while interrupts are off is taken when they "
           "are re-enabled, so kernel time gathers on `_raw_spin_unlock_irqrestore` and `finish_task_switch`.", "",
           f"| | share{col} |", f"|---|---:|{sep}",
           f"| **cachebust code on the stack** (its own code and everything it calls) | {pct(on_stack)} |",
           f"| cachebust.so's own instructions | {pct(sum(self_ours.values()))} |",
           f"| kill() called from cachebust (waking its worker) | {pct(kill_ours)} |",
           f"| PostgreSQL's trigger machinery without cachebust on the stack | {pct(trigger_not_ours)} |"]
    for name, what in CONTEXT:
        out.append(f"| `{name}` on the stack: {what} | {pct(context[name])} |")
    if focus:
        per_row = us is not None and rows > 1
        out += ["", "Focus: samples with a cachebust function of that name on the stack (inlined or not, its lambdas "
                "and everything it calls included)" + (f"; µs per row = µs per transaction ÷ {rows} rows" if per_row else "")
                + ". ± is the 95 % interval of the sampling alone (binomial), not of the measured µs per transaction.", "",
                f"| function | samples | share{' | µs/txn' if us is not None else ''}{' | µs/row' if per_row else ''} |",
                f"|---|---:|---:|{sep}{'---:|' if per_row else ''}"]
        for f in focus:
            k = focus_hits[f]
            p = k / n
            h = 1.96 * math.sqrt(p * (1 - p) / n)
            cells = [str(k), f"{100 * p:.2f} ± {100 * h:.2f} %"]
            if us is not None:
                cells.append(f"{us * p:.2f} ± {us * h:.2f}")
            if per_row:
                cells.append(f"{us * p / rows:.4f} ± {us * h / rows:.4f}")
            out.append(f"| `{f}` | " + " | ".join(cells) + " |")
        for f in focus:
            if focus_hits[f]:
                out += ["", f"Leaf functions of the samples with `{f}` on the stack:", "",
                        f"| leaf function (object) | share of all samples | share of `{f}` |", "|---|---:|---:|"]
                for sym, k in focus_leaves[f].most_common(10):
                    out.append(f"| `{short(sym)}` | {100 * k / n:.2f} % | {100 * k / focus_hits[f]:.0f} % |")
    out += ["", "Entry points (the outermost cachebust frame of each sample):", "",
            f"| cachebust entry point | share{col} |", f"|---|---:|{sep}"]
    for sym, k in entries.most_common(8):
        out.append(f"| `{short(sym)}` | {pct(k)} |")
    out += ["", "cachebust functions, inlined ones included, by share of samples with the function on the stack:", "",
            f"| function | share{col} |", f"|---|---:|{sep}"]
    for sym, k in inclusive.most_common(20):
        out.append(f"| `{short(sym)}` | {pct(k)} |")
    out += ["", "Where that time is spent (leaf function of the samples with cachebust on the stack):", "",
            f"| leaf function (object) | share{col} |", f"|---|---:|{sep}"]
    for sym, k in leaves_under_ours.most_common(15):
        out.append(f"| `{short(sym)}` | {pct(k)} |")
    out += ["", f"| shared object (self) | share{col} |", f"|---|---:|{sep}"]
    for dso, k in self_dso.most_common():
        if 100 * k / n >= 0.1:
            out.append(f"| {dso} | {pct(k)} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
