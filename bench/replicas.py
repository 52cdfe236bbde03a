"""Replicas on one PostgreSQL database, measured through the HTTP API (run by bench/replicas.sh).

Subcommands, each printing one JSON object on stdout:

  experiment URL...   a 40-job experiment created on the first URL; every replica's jobs are
                      claimed from the shared queue. Wall time from the POST to the last job's
                      end, jobs per worker, and the training throughput (samples/s summed).
  claims URL N        N tiny jobs queued at once on URL: for each worker, the gap between a
                      job's end and the start of its next one (queued → running while the queue
                      is never empty), p50/p99 in ms.
"""

import json
import statistics
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def ok(method, url, body=None, want=(200, 201, 202)):
    status, answer = call(method, url, body)
    if status not in want:
        sys.exit(f"{method} {url}: {status} {answer}")
    return answer


def when(stamp):
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def all_jobs(base, model):
    jobs, offset = [], 0
    while True:
        page = ok("GET", f"{base}/v1/jobs?model={model}&limit=100&offset={offset}")
        jobs.extend(page["items"])
        if page.get("next_offset") is None:
            return jobs
        offset = page["next_offset"]


def percentile(values, q):
    values = sorted(values)
    if not values:
        return None
    k = (len(values) - 1) * q
    low, high = int(k), min(int(k) + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (k - low)


def experiment(urls):
    base = urls[0]
    dataset = ok(
        "POST",
        f"{base}/v1/datasets",
        {"generator": {"kind": "spirals", "samples": 4000, "classes": 3, "seed": 1}},
    )["id"]
    request = {
        "name": f"replicas-{time.time_ns()}",
        "dataset": dataset,
        "model": {"layers": [2, 64, 64, 3], "output": "softmax"},
        "training": {
            "epochs": 30,
            "batch_size": 32,
            "validation_split": 0.2,
            "optimizer": {"kind": "adam", "learning_rate": 0.01},
        },
        "grid": {
            "activations": ["sigmoid", "tanh", "relu", "gelu"],
            "hidden_layers": [[64, 64], [64, 64, 64]],
        },
        "seeds": [1, 2, 3, 4, 5],
    }
    start = time.monotonic()
    created = ok("POST", f"{base}/v1/experiments", request)
    eid = created["id"]
    while True:
        view = ok("GET", f"{base}/v1/experiments/{eid}")
        progress = view["progress"]
        if progress["done"] == progress["total"]:
            break
        time.sleep(0.1)
    wall = time.monotonic() - start
    ids = {run["job"] for cell in view["cells"] for run in cell["jobs"]}
    workers, samples = {}, 0.0
    for job_id in ids:
        job = ok("GET", f"{base}/v1/jobs/{job_id}")
        workers[job.get("worker")] = workers.get(job.get("worker"), 0) + 1
        rows = 4000 * 0.8
        samples += rows * job["progress"]["epoch"]
    return {
        "replicas": len(urls),
        "jobs": len(ids),
        "succeeded": progress["succeeded"],
        "wall_seconds": round(wall, 2),
        "jobs_per_worker": workers,
        "samples_per_second": round(samples / wall),
    }


def claims(base, n):
    dataset = ok(
        "POST",
        f"{base}/v1/datasets",
        {"generator": {"kind": "xor", "samples": 8, "seed": 1}},
    )["id"]
    model = f"claims-{time.time_ns()}"
    ok("POST", f"{base}/v1/models", {"name": model, "layers": [2, 2, 1], "output": "sigmoid"})
    for _ in range(n):
        ok("POST", f"{base}/v1/jobs", {"model": model, "dataset": dataset, "epochs": 1})
    deadline = time.monotonic() + 600
    while True:
        jobs = all_jobs(base, model)
        if all(j["state"] in ("succeeded", "failed", "cancelled", "interrupted") for j in jobs):
            break
        if time.monotonic() > deadline:
            sys.exit("the jobs did not end within 600 s")
        time.sleep(0.5)
    by_worker = {}
    for j in jobs:
        if j.get("started_at") and j.get("finished_at"):
            by_worker.setdefault(j.get("worker"), []).append((when(j["started_at"]), when(j["finished_at"])))
    gaps = []
    for runs in by_worker.values():
        runs.sort()
        gaps.extend((s - prev_end) * 1000 for (_, prev_end), (s, _) in zip(runs, runs[1:]))
    return {
        "jobs": len(jobs),
        "workers": {w: len(r) for w, r in by_worker.items()},
        "claim_gap_ms_p50": round(percentile(gaps, 0.5), 2) if gaps else None,
        "claim_gap_ms_p99": round(percentile(gaps, 0.99), 2) if gaps else None,
        "claim_gap_ms_mean": round(statistics.mean(gaps), 2) if gaps else None,
    }


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "experiment":
        print(json.dumps(experiment(sys.argv[2:])))
    elif what == "claims":
        print(json.dumps(claims(sys.argv[2], int(sys.argv[3]))))
    else:
        sys.exit(__doc__)
