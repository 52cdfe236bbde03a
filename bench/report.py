"""Tables for the bench scripts, from the lines the benchmarks printed.

    python3 bench/report.py peers RAW   # lines of nn-bench, bench/train_api.py, ../shared/peers/train_*.py
    python3 bench/report.py serve TSV   # "scenario<TAB>RESULT {...}" lines of wrk_post.lua

Every ratio is written so that a value above 1 means mlp-lab is faster. Standard library only,
so that it runs with any python3.
"""

import json
import os
import re
import statistics
import sys
from collections import defaultdict

# The targets of issue 2 (numerical core, one core each), issue 23 (training through the API
# against JAX with its default threads, the API within 10 % of nn-bench; prediction against
# FastAPI with the server's default flags) and issue 3 (latency), for a glance at the table.
TRAIN_TARGET_VS_JAX = {"w1": 3.0, "w2": 1.25, "w3": 1.3}
API_TARGET_VS_JAX_ALL = {"w1": 3.0, "w2": 1.5, "w3": 1.2}
API_TARGET_VS_NN_BENCH = 0.9
LATENCY_TARGET_US = {1: 8.0}
# Issue 23: req/s against FastAPI + numpy (2 workers), at 16 and at 64 connections.
SERVE_TARGET_VS_FASTAPI = {1: 9.0, 64: 15.0}
CONNECTIONS = re.compile(r", c(\d+)$")

SAMPLES = re.compile(r"samples/s=([0-9.]+)")
LATENCY = re.compile(r"latency W2 forward rows=(\d+)")
MICROS = re.compile(r"([0-9.]+)\s*us")
FLOOR = re.compile(r"floor W2 weights read once \((\d+) floats, ([0-9.]+) GB/s\)")
L2_FLOOR = re.compile(r"floor W2 weights read at L2 speed \(256 KB read at ([0-9.]+) GB/s\)")


def parse_peers(lines):
    """(tool -> workload -> [samples/s]), (tool -> rows -> [µs]), tool -> version label."""
    train = defaultdict(lambda: defaultdict(list))
    latency = defaultdict(lambda: defaultdict(list))
    versions = {}
    floor = []
    l2_floor = []
    for line in lines:
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 2:
            continue
        label = fields[0].strip()
        tool = label.split(" ")[0]
        if m := SAMPLES.search(line):
            train[tool][fields[1].strip()].append(float(m.group(1)))
            versions.setdefault(tool, label)
        elif (m := L2_FLOOR.search(fields[1])) and len(fields) > 2:
            if us := MICROS.search(fields[2]):
                l2_floor.append((float(us.group(1)), float(m.group(1))))
        elif (m := FLOOR.search(fields[1])) and len(fields) > 2:
            if us := MICROS.search(fields[2]):
                floor.append((float(us.group(1)), int(m.group(1)), float(m.group(2))))
        elif (m := LATENCY.search(fields[1])) and len(fields) > 2:
            if us := MICROS.search(fields[2]):
                latency[tool][int(m.group(1))].append(float(us.group(1)))
                versions.setdefault(tool, label)
    latency["floor"] = floor
    latency["l2_floor"] = l2_floor
    return train, latency, versions


def fmt_rate(v):
    return "-" if v is None else f"{v:,.0f}"


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def median(values):
    return statistics.median(values) if values else None


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    out = []
    for r in [header] + rows:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


# The columns of the training table: (tool in the raw lines, heading), then the ratios as
# (numerator, denominator). "mlp-lab" is nn-bench pinned to one core, "mlp-lab-all" nn-bench on
# every CPU; every tool but mlp-lab-api, mlp-lab-all and jax-all ran pinned to one core.
TRAIN_COLUMNS = [
    ("mlp-lab-api", "API"),
    ("mlp-lab-all", "nn-bench all"),
    ("mlp-lab", "nn-bench 1 core"),
    ("jax", "JAX 1 core"),
    ("jax-all", "JAX all"),
    ("sklearn", "sklearn"),
    ("torch", "torch"),
]
TRAIN_RATIOS = [
    ("mlp-lab-api", "jax-all"),
    ("mlp-lab-api", "mlp-lab-all"),
    ("mlp-lab-all", "jax-all"),
    ("mlp-lab", "jax"),
    ("mlp-lab", "sklearn"),
    ("mlp-lab", "torch"),
]


def training_table(train, workloads):
    """The rates of every tool that ran, their ratios, and the targets' verdicts below."""
    heading = dict(TRAIN_COLUMNS)
    tools = [t for t, _ in TRAIN_COLUMNS if t in train]
    ratios = [(a, b) for a, b in TRAIN_RATIOS if a in train and b in train]
    header = ["workload"] + [heading[t] for t in tools] + [f"{heading[a]}/{heading[b]}" for a, b in ratios]
    rows, verdicts = [], []
    for w in workloads:
        rate = {t: median(train[t].get(w, [])) for t in tools}
        ratio = {(a, b): rate[a] / rate[b] if rate[a] and rate[b] else None for a, b in ratios}
        rows.append([w] + [fmt_rate(rate[t]) for t in tools] + [fmt_ratio(ratio[r]) for r in ratios])
        checks = [
            ("mlp-lab-api", "jax-all", API_TARGET_VS_JAX_ALL.get(w), "API / JAX all"),
            ("mlp-lab-api", "mlp-lab-all", API_TARGET_VS_NN_BENCH, "API / nn-bench all"),
            ("mlp-lab", "jax", TRAIN_TARGET_VS_JAX.get(w), "nn-bench / JAX, 1 core each (issue 2)"),
        ]
        parts = [f"{name} {ratio[(a, b)]:.2f}x, target >= {target}x: "
                 f"{'met' if ratio[(a, b)] >= target else 'MISSED'}"
                 for a, b, target, name in checks
                 if target is not None and ratio.get((a, b)) is not None]
        if parts:
            verdicts.append(f"{w}: " + "; ".join(parts))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    notes = [
        "API: a job through the HTTP API (the server's default flags, not pinned) on a blobs "
        "dataset, standardize false,",
        "  samples over the median of its epochs' `seconds` from epoch 2 on (epoch 1 is the "
        "warm-up, as for every tool);",
        "nn-bench: the numerical core in process, on the peers' uniform data, on every CPU "
        f"({cpus}) and pinned to one core; JAX all: its default threads on {cpus} CPUs,",
        "  not pinned; the other columns: one thread pinned to one core.",
    ]
    return "\n".join([table(header, rows), ""] + verdicts + notes)


def report_peers(path):
    with open(path, encoding="utf-8") as f:
        train, latency, versions = parse_peers(f)
    floor = latency.pop("floor")
    l2_floor = latency.pop("l2_floor", [])
    ours = "mlp-lab"
    workloads = [w for w in ("w1", "w2", "w3") if any(w in train[t] for t in train)]
    rounds = max((len(v) for t in train.values() for v in t.values()), default=1)
    if workloads:
        print(f"Training throughput, samples/s (median of {rounds} run(s)); ratio > 1: mlp-lab faster")
        print(training_table(train, workloads))
    else:
        print("(no training workload in this run)")
    if latency:
        print()
        print("W2 forward latency, microseconds, one core (lower is better; ratio > 1: mlp-lab faster)")
        others = [t for t in latency if t != ours]
        header = ["rows", ours] + others + [f"{t}/ours" for t in others] + ["target"]
        rows = []
        for n in sorted({n for t in latency.values() for n in t}):
            mine = median(latency[ours].get(n, []))
            theirs = {t: median(latency[t].get(n, [])) for t in others}
            target = LATENCY_TARGET_US.get(n)
            verdict = "-" if target is None or mine is None else (
                f"<= {target:g} us {'met' if mine <= target else 'MISSED'}")
            rows.append([str(n), "-" if mine is None else f"{mine:.2f}"]
                        + ["-" if theirs[t] is None else f"{theirs[t]:.2f}" for t in others]
                        + [fmt_ratio(theirs[t] / mine if mine and theirs[t] else None) for t in others]
                        + [verdict])
        print(table(header, rows))
    if floor:
        us = median([f[0] for f in floor])
        floats = floor[0][1]
        gbs = median([f[2] for f in floor])
        mine = median(latency[ours].get(1, []))
        print(f"Floor of a one-row forward on this core: reading the {floats:,} weights once takes "
              f"{us:.2f} us ({gbs:.0f} GB/s)"
              + (f"; the forward pass is {mine / us:.2f}x that" if mine else "")
              + f"; 8 us would need {floats * 4 / 8e-6 / 1e9:.0f} GB/s")
    if l2_floor:
        print(f"Read at the rate of a 256 KB buffer that stays in L2 "
              f"({median([f[1] for f in l2_floor]):.0f} GB/s), they would take "
              f"{median([f[0] for f in l2_floor]):.2f} us")
    missing = [t for t in (ours, "jax", "sklearn", "torch") if t not in versions]
    print()
    print("versions: " + "; ".join(versions[t] for t in versions)
          + (f"; not measured: {', '.join(missing)}" if missing else ""))


def report_serve(path):
    results = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            name, _, rest = line.rstrip("\n").partition("\t")
            if rest.startswith("RESULT "):
                results[name] = json.loads(rest[len("RESULT "):])
    header = ["scenario", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "non-2xx"]
    rows = [[n, f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['max_ms']:.2f}",
             str(r["sock_err"]), str(r["non2xx"])] for n, r in results.items()]
    print("Prediction over HTTP, W2 network (784-256-128-10), wrk on loopback, cN: N connections")
    print(table(header, rows))
    print()
    conns = sorted({int(m.group(1)) for n in results if (m := CONNECTIONS.search(n))})
    for c in conns:
        for rows_n in (1, 64):
            unit = "row" if rows_n == 1 else "rows"
            ours = results.get(f"mlp-lab {rows_n} {unit}, c{c}")
            peer = results.get(f"fastapi {rows_n} {unit}, c{c}")
            binary = results.get(f"mlp-lab {rows_n} {unit}, v2 binary, c{c}")
            busy = results.get(f"mlp-lab {rows_n} {unit}, 2 jobs training, c{c}")
            label = f"{rows_n} {unit}, c{c}:"
            if ours and peer and peer["rps"]:
                target = SERVE_TARGET_VS_FASTAPI[rows_n]
                ratio = ours["rps"] / peer["rps"]
                print(f"{label} mlp-lab/fastapi req/s {ratio:.2f}x (target >= {target}x: "
                      f"{'met' if ratio >= target else 'MISSED'}); mlp-lab non-2xx "
                      f"{ours['non2xx']} (target 0: {'met' if ours['non2xx'] == 0 else 'MISSED'})"
                      f", fastapi non-2xx {peer['non2xx']}")
            if binary and ours and ours["rps"]:
                print(f"{label} mlp-lab v2 binary {binary['rps']:,.0f} req/s, "
                      f"{binary['rps'] / ours['rps']:.2f}x JSON")
            if ours and busy and ours["p99_ms"]:
                ratio = busy["p99_ms"] / ours["p99_ms"]
                print(f"{label} p99 while 2 jobs train / idle p99 {ratio:.2f}"
                      f" (target <= 3: {'met' if ratio <= 3 else 'MISSED'})")
        floor = results.get(f"mlp-lab GET /healthz, c{c}")
        ours = results.get(f"mlp-lab 1 row, c{c}")
        if floor and ours and floor["rps"]:
            print(f"c{c} floor: GET /healthz {floor['rps']:,.0f} req/s; a 1-row prediction runs at"
                  f" {ours['rps'] / floor['rps']:.2f}x that rate")
    if any(r["non2xx"] or r["sock_err"] for r in results.values()):
        print("warning: some requests failed (non-2xx or socket errors); those figures do not "
              "measure successful predictions alone")


def main(argv):
    if len(argv) != 3 or argv[1] not in ("peers", "serve"):
        sys.exit(__doc__)
    {"peers": report_peers, "serve": report_serve}[argv[1]](argv[2])


if __name__ == "__main__":
    main(sys.argv)
