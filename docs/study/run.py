#!/usr/bin/env python3
"""The study "Sigmoid vs ReLU, measured" (README), run through the HTTP API.

Two experiments on a running mlp-lab (default http://127.0.0.1:8080): three interleaved
spirals (600 points) and the built-in 8x8 digits (1,797 images); hidden layers 2 x 32 and
8 x 32; activations sigmoid, tanh, relu, leaky_relu (alpha 0.01) and gelu; seeds 1-5; plain
SGD with momentum, so that a vanishing gradient is not rescaled away as Adam would. Each
experiment is 10 cells x 5 seeds = 50 ordinary jobs.

It waits for both, then writes into this script's directory: <dataset>.json (the whole
experiment view), <dataset>-leaderboard.md (the tables the README quotes) and three plots:
<dataset>-val-loss.svg (validation loss per epoch, mean +- std over seeds),
<dataset>-grad-ratio.svg (first-layer / last-layer gradient norm per epoch, log axis) and
<dataset>-leaderboard.svg (best validation loss by cell, mean +- std).

Training is deterministic for its seeds on every x86-64 CPU with AVX2 or AVX-512 (see
docs/determinism.md), so a rerun must print the results hash the README states: SHA-256 of
both leaderboards (every per-seed value, to the last bit), as canonical JSON.

Only the Python standard library; set MLP_LAB_URL (and MLP_LAB_TOKEN if the server has a
management token).
"""

import hashlib
import json
import os
import sys
import time
import urllib.request

BASE = os.environ.get("MLP_LAB_URL", "http://127.0.0.1:8080").rstrip("/")
TOKEN = os.environ.get("MLP_LAB_TOKEN")
OUT = os.path.dirname(os.path.abspath(__file__))

ACTIVATIONS = ["sigmoid", "tanh", "relu", {"name": "leaky_relu", "alpha": 0.01}, "gelu"]
DEPTHS = [[32] * 2, [32] * 8]
SEEDS = [1, 2, 3, 4, 5]


def call(method, path, body=None, raw=False):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    if body is not None:
        request.add_header("content-type", "application/json")
    if TOKEN:
        request.add_header("authorization", "Bearer " + TOKEN)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = response.read()
    except urllib.error.HTTPError as error:
        sys.exit(f"{method} {path}: {error.code} {error.read().decode(errors='replace')}")
    return payload if raw else json.loads(payload)


def experiment(name, dataset, inputs, classes, training):
    body = {
        "name": name,
        "dataset": dataset,
        "model": {"layers": [inputs, 32, 32, classes], "activation": "relu", "output": "softmax"},
        "training": training,
        "grid": {"activations": ACTIVATIONS, "hidden_layers": DEPTHS},
        "seeds": SEEDS,
    }
    return call("POST", "/v1/experiments", body)["id"]


def fmt(stat, digits=3):
    if stat is None or stat.get("mean") is None:
        return "–"
    mean, std = stat["mean"], stat.get("std")
    if abs(mean) >= 1e4 or (mean != 0 and abs(mean) < 1e-3):
        text = f"{mean:.2e}"
        return text if std is None else f"{text} ± {std:.1e}"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def leaderboard_markdown(view):
    board = view["leaderboard"]
    lines = [
        "| cell | best val loss | val accuracy | final gap | epochs to best | grad ratio first/last, epoch 1 | at the end | dead | saturated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in board["rows"]:
        lines.append(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                row["label"], fmt(row["best_val_loss"]), fmt(row.get("val_accuracy")),
                fmt(row["final_gap"]), fmt(row["epochs_to_best"], 0),
                fmt(row["grad_ratio_first"]), fmt(row["grad_ratio_final"]),
                fmt(row["dead_fraction"], 2), fmt(row["saturated_fraction"], 2)))
    lines.append("")
    lines.append(f"Paired comparisons of the best cell ({board['rows'][0]['label']}) on {board['sort']}:")
    lines.append("")
    lines.append("| other cell | n | mean difference | paired t | p | Wilcoxon p |")
    lines.append("|---|---|---|---|---|---|")
    labels = {row["cell"]: row["label"] for row in board["rows"]}
    for c in board["comparisons"]:
        p = c.get("p_value")
        w = (c.get("wilcoxon") or {}).get("p_value")
        lines.append("| {} | {} | {} | {} | {} | {} |".format(
            labels.get(c["other"], c["other"]), c["n"],
            "–" if c.get("mean_difference") is None else f"{c['mean_difference']:+.3f}",
            "–" if c.get("statistic") is None else f"{c['statistic']:.2f}",
            "–" if p is None else f"{p:.2g}", "–" if w is None else f"{w:.2g}"))
    return "\n".join(lines) + "\n"


def results_hash(views):
    """SHA-256 of the leaderboards of `views` (dataset -> experiment view), canonical JSON."""
    boards = {key: view["leaderboard"] for key, view in sorted(views.items())}
    text = json.dumps(boards, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def main():
    started = time.time()
    spirals = call("POST", "/v1/datasets", {"name": "study-spirals", "generator": {
        "kind": "spirals", "samples": 600, "classes": 3, "noise": 0.1, "seed": 7}})["id"]
    digits = call("POST", "/v1/datasets", {"name": "study-digits", "builtin": "digits"})["id"]
    sgd = {"kind": "sgd", "learning_rate": 0.01, "momentum": 0.9}
    runs = {
        "spirals": experiment("study-spirals", spirals, 2, 3, {
            "epochs": 500, "batch_size": 32, "optimizer": sgd, "validation_split": 0.25}),
        "digits": experiment("study-digits", digits, 64, 10, {
            "epochs": 100, "batch_size": 32, "optimizer": sgd, "validation_split": 0.25}),
    }
    while True:
        views = {k: call("GET", f"/v1/experiments/{i}") for k, i in runs.items()}
        progress = ", ".join(f"{k} {v['progress']['done']}/{v['progress']['total']}"
                             for k, v in views.items())
        print(f"[{time.time() - started:6.0f}s] {progress}", flush=True)
        if all(v["state"] != "running" for v in views.values()):
            break
        time.sleep(5)
    finals = {}
    for key, ident in runs.items():
        view = finals[key] = call("GET", f"/v1/experiments/{ident}")
        with open(os.path.join(OUT, f"{key}.json"), "w") as f:
            json.dump(view, f, indent=1)
        with open(os.path.join(OUT, f"{key}-leaderboard.md"), "w") as f:
            f.write(leaderboard_markdown(view))
        plots = {
            "val-loss": "kind=curves&metric=val_loss",
            "grad-ratio": "kind=curves&metric=grad_ratio",
            "leaderboard": "kind=leaderboard&metric=best_val_loss",
        }
        for name, query in plots.items():
            svg = call("GET", f"/v1/experiments/{ident}/plot.svg?{query}", raw=True)
            with open(os.path.join(OUT, f"{key}-{name}.svg"), "wb") as f:
                f.write(svg)
        print(f"{key}: {view['progress']}")
        print(leaderboard_markdown(view))
    print(f"results hash: {results_hash(finals)}")
    print(f"done in {time.time() - started:.0f}s; files in {OUT}")


if __name__ == "__main__":
    main()
