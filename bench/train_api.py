"""Trains one peers workload through mlp-lab's HTTP API, as a user would, and prints its rate.

    python3 bench/train_api.py BASE_URL WORKLOAD STATE_FILE    # WORKLOAD: w1, w2 or w3
    python3 bench/train_api.py cells WORKLOAD    # the --max-dataset-cells its dataset needs

The first call for a workload creates its dataset with the server's `blobs` generator (the
peers' sample count, features and classes) and its model (the peers' layers, ReLU, softmax,
Xavier-uniform init), and remembers both in STATE_FILE (JSON), so that later rounds train the
same ones. Every call then starts a job (Adam lr 1e-3, the peers' batch size, every row for
training, `standardize: false`), waits for it, and reads each epoch's `seconds` from
`GET /v1/jobs/{id}/metrics`. Like nn-bench and the peers, epoch 1 is the warm-up: the rate is
the sample count over the median of epochs 2 and on. The line it prints has the peers' format
(`samples/s=…`), with `mlp-lab-api` as its tool. Standard library only.
"""

import json
import statistics
import sys
import time
import urllib.error
import urllib.request

# name: (layers, samples, batch, timed epochs): the workloads of ../shared/peers, with as many
# timed epochs as nn-bench runs (one warm-up epoch more is trained).
WORKLOADS = {
    "w1": ([64, 128, 64, 10], 1797, 32, 20),
    "w2": ([784, 256, 128, 10], 60_000, 128, 5),
    "w3": ([1024, 1024, 1024, 10], 20_000, 256, 3),
}
POLL_SECONDS = 1.0
DEADLINE_SECONDS = 3600  # for one job, however slow the machine: then it is reported as failed
FINISHED = {"succeeded", "failed", "cancelled", "interrupted"}


def cells(workload):
    """The dataset cells (features and target) the workload's generated set holds."""
    layers, samples, _, _ = WORKLOADS[workload]
    return samples * (layers[0] + 1)


def call(base, method, path, body=None):
    """(status, decoded JSON body) of one request; HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        text = err.read().decode(errors="replace")
        try:
            return err.code, json.loads(text)
        except ValueError:
            return err.code, text


def expect(status, body, wanted, what):
    if status != wanted:
        sys.exit(f"{what} answered {status}, expected {wanted}: {str(body)[:2000]}")


def prepare(base, workload, state_path):
    """The dataset id and model name of the workload, created on first use."""
    try:
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
    except (FileNotFoundError, ValueError):
        state = {}
    if workload in state:
        return state[workload]["dataset"], state[workload]["model"]
    layers, samples, _, _ = WORKLOADS[workload]
    name = f"bench-{workload}"
    status, body = call(base, "POST", "/v1/datasets", {
        "name": name,
        "generator": {"kind": "blobs", "samples": samples, "features": layers[0],
                      "classes": layers[-1], "seed": 1},
    })
    expect(status, body, 201, f"POST /v1/datasets ({name}, blobs)")
    dataset = body["id"]
    status, body = call(base, "POST", "/v1/models", {
        "name": name, "layers": layers, "activation": "relu", "output": "softmax",
        "init": "xavier_uniform",
    })
    expect(status, body, 201, f"POST /v1/models ({name})")
    state[workload] = {"dataset": dataset, "model": name}
    with open(state_path, "w", encoding="utf-8") as f:
        json.dump(state, f)
    return dataset, name


def main(argv):
    if len(argv) != 4 or argv[2] not in WORKLOADS:
        sys.exit(__doc__)
    base, workload, state_path = argv[1].rstrip("/"), argv[2], argv[3]
    layers, samples, batch, timed = WORKLOADS[workload]
    dataset, model = prepare(base, workload, state_path)

    status, job = call(base, "POST", "/v1/jobs", {
        "model": model, "dataset": dataset, "epochs": timed + 1, "batch_size": batch,
        "optimizer": {"kind": "adam", "learning_rate": 1e-3},
        "validation_split": 0, "standardize": False, "seed": 0,
    })
    expect(status, job, 202, "POST /v1/jobs")
    job_id = job["id"]
    deadline = time.monotonic() + DEADLINE_SECONDS
    while job["state"] not in FINISHED:
        if time.monotonic() > deadline:
            call(base, "POST", f"/v1/jobs/{job_id}/cancel")
            sys.exit(f"job {job_id} still {job['state']} after {DEADLINE_SECONDS} s; cancelled")
        time.sleep(POLL_SECONDS)
        status, job = call(base, "GET", f"/v1/jobs/{job_id}")
        expect(status, job, 200, f"GET /v1/jobs/{job_id}")
    if job["state"] != "succeeded":
        sys.exit(f"job {job_id} ended {job['state']}: {job.get('error')}")

    status, metrics = call(base, "GET", f"/v1/jobs/{job_id}/metrics")
    expect(status, metrics, 200, f"GET /v1/jobs/{job_id}/metrics")
    epochs = metrics["epochs"]
    times = [e["seconds"] for e in epochs if e["epoch"] >= 2]
    if len(times) != timed:
        sys.exit(f"job {job_id} recorded epochs {[e['epoch'] for e in epochs]}, "
                 f"expected 0 to {timed + 1}")
    med = statistics.median(times)
    print(f"mlp-lab-api (HTTP, default flags)\t{workload}\tbatch={batch}\t"
          f"samples/s={samples / med:.0f}\t(epoch med {med:.4f}s reps "
          f"{[round(t, 4) for t in times]}; epoch 1 {epochs[1]['seconds']:.4f}s)\t"
          f"loss={epochs[-1]['train_loss']:.3f}\tblobs, standardize=false")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "cells":
        print(cells(sys.argv[2]))
    else:
        main(sys.argv)
