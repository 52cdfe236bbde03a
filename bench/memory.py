"""bench/memory.py: replays the memory attacks of issue 24 against a running server.

usage: python3 memory.py HOST PORT PID [--only NAME,...] [--json OUT]

Each attack runs while a normal client predicts one row and asks /healthz every 50 ms; the
server's resident memory (VmRSS of PID) is sampled every 50 ms. For each attack it prints the
RSS before, the peak during it, the RSS 10 s after the attack's connections closed (and how
soon it fell under the settle bound), and what the normal client was answered.

Attacks, each at the server's default limits:
  sse        8 jobs of 5,000 epochs, 64 event subscribers each (the per-job cap), half of them
             reading, half never reading
  history    16 clients that never read, each asking for the largest page of a 100,000-epoch
             job's metrics, 16 its plot.svg and 8 its job view
  imports    4 concurrent 200 MB garbage bodies to a 2-32-2 model's weight import
  trickle    16 clients sending predict bodies at one byte per 0.25 s for 6 s
  upload     one 64 MiB CSV upload refused at its last row

Standard library only. Exits 1 when a rule is broken: peak over --max-peak-mb (256), RSS not
back within 10 s under --settle-mb (100) or, when the state the attacks read (their jobs'
histories: ~80 MB for the 100,000 epochs) already holds more, within --margin-mb (16) of where
it was before the attack; or a normal request answered other than 2xx.
"""

import argparse
import http.client
import json
import os
import socket
import sys
import threading
import time
from collections import Counter

p = argparse.ArgumentParser()
p.add_argument("host")
p.add_argument("port", type=int)
p.add_argument("pid", type=int)
p.add_argument("--only", default="")
p.add_argument("--json", default="")
p.add_argument("--max-peak-mb", type=float, default=256)
p.add_argument("--settle-mb", type=float, default=100)
p.add_argument("--settle-seconds", type=float, default=10)
p.add_argument("--margin-mb", type=float, default=16)
args = p.parse_args()
HOST, PORT, PID = args.host, args.port, args.pid


def rss_mb():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def call(method, path, body=None, ctype="application/json", timeout=120):
    conn = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    headers = {"content-type": ctype} if body is not None else {}
    conn.request(method, path, body, headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, (json.loads(data) if data and r.headers.get("content-type", "").endswith("json") else data)


def ok(method, path, body=None, want=(200, 201, 202)):
    status, data = call(method, path, body)
    if status not in want:
        sys.exit(f"{method} {path}: {status} {data!r}")
    return data


def wait_job(job, timeout=600):
    end = time.time() + timeout
    while time.time() < end:
        state = ok("GET", f"/v1/jobs/{job}")["state"]
        if state in ("succeeded", "failed", "cancelled", "interrupted"):
            if state != "succeeded":
                sys.exit(f"job {job} {state}")
            return
        time.sleep(0.2)
    sys.exit(f"job {job} did not finish in {timeout} s")


XOR = {"features": [[0, 0], [0, 1], [1, 0], [1, 1]] * 2, "targets": [0, 1, 1, 0] * 2, "task": "classification"}


def train(name, layers, epochs):
    dataset = ok("POST", "/v1/datasets", XOR)["id"]
    ok("POST", "/v1/models", {"name": name, "layers": layers, "output": "softmax"})
    job = ok("POST", "/v1/jobs", {"model": name, "dataset": dataset, "epochs": epochs, "batch_size": 8})["id"]
    return job


# --- what runs beside every attack --------------------------------------------------------


class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0.0
        self.last = 0.0
        self.stop = False

    def reset(self):
        self.peak = self.last = rss_mb()

    def run(self):
        while not self.stop:
            self.last = rss_mb()
            self.peak = max(self.peak, self.last)
            time.sleep(0.05)


class Normal(threading.Thread):
    """A client that predicts one row and asks /healthz every 50 ms, each on a new connection."""

    def __init__(self, model):
        super().__init__(daemon=True)
        self.model = model
        self.answers = Counter()
        self.stop = False

    def run(self):
        while not self.stop:
            for method, path, body in (
                ("POST", f"/v1/models/{self.model}/predict", {"inputs": [[0, 1]]}),
                ("GET", "/healthz", None),
            ):
                try:
                    status, _ = call(method, path, body, timeout=5)
                    self.answers[str(status)] += 1
                except OSError as e:
                    self.answers[type(e).__name__] += 1
            time.sleep(0.05)


def raw(request: bytes):
    s = socket.create_connection((HOST, PORT))
    s.sendall(request)
    return s


def get_request(path):
    return f"GET {path} HTTP/1.1\r\nhost: {HOST}\r\n\r\n".encode()


def drain(s):
    try:
        while s.recv(1 << 16):
            pass
    except OSError:
        pass


# --- the attacks: each returns the sockets to close when it ends ----------------------------


def attack_sse(ctx):
    socks, readers = [], []
    for job in ctx["sse_jobs"]:
        for i in range(64):
            s = raw(get_request(f"/v1/jobs/{job}/events"))
            socks.append(s)
            if i % 2 == 0:
                t = threading.Thread(target=drain, args=(s,), daemon=True)
                t.start()
                readers.append(t)
    time.sleep(8)
    return socks


def attack_history(ctx):
    job = ctx["long_job"]
    paths = [f"/v1/jobs/{job}/metrics?limit=1000"] * 16 + [f"/v1/jobs/{job}/plot.svg"] * 16 + [f"/v1/jobs/{job}"] * 8
    socks = [raw(get_request(p)) for p in paths]
    time.sleep(8)
    return socks


def send_garbage(s, total, chunk):
    sent = 0
    try:
        while sent < total:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass


def attack_imports(ctx):
    total = 200 * 1000 * 1000
    chunk = os.urandom(1 << 20)
    socks, senders = [], []
    for _ in range(4):
        head = (
            f"POST /v1/models/{ctx['import_model']}/versions HTTP/1.1\r\nhost: {HOST}\r\n"
            f"content-type: application/octet-stream\r\ncontent-length: {total}\r\n\r\n"
        ).encode()
        s = raw(head)
        socks.append(s)
        t = threading.Thread(target=send_garbage, args=(s, total, chunk), daemon=True)
        t.start()
        senders.append(t)
    for t in senders:
        t.join(60)
    time.sleep(1)
    return socks


def attack_trickle(ctx):
    body = json.dumps({"inputs": [[0, 1]] * 64}).encode()
    socks = []
    for _ in range(16):
        head = (
            f"POST /v1/models/{ctx['model']}/predict HTTP/1.1\r\nhost: {HOST}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()
        socks.append(raw(head))
    end = time.time() + 6
    i = 0
    while time.time() < end and i < len(body):
        for s in socks:
            try:
                s.sendall(body[i : i + 1])
            except OSError:
                pass
        i += 1
        time.sleep(0.25)
    return socks


def attack_upload(ctx):
    row = b"0.5,0.25,1\n"
    n = (64 * 1024 * 1024 - 20) // len(row)
    body = b"a,b,y\n" + row * n + b"0.5,x,1\n"
    head = (
        f"POST /v1/datasets HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: text/csv\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    s = raw(head)
    try:
        s.sendall(body)
        s.settimeout(60)
        answer = s.recv(64).split(b"\r\n")[0].decode(errors="replace")
    except OSError as e:
        answer = type(e).__name__
    ctx["upload_answer"] = answer
    return [s]


ATTACKS = {
    "sse": attack_sse,
    "history": attack_history,
    "imports": attack_imports,
    "trickle": attack_trickle,
    "upload": attack_upload,
}


def main():
    only = [a for a in args.only.split(",") if a] or list(ATTACKS)
    ctx = {"model": "normal", "import_model": "import-target"}
    print("setting up: a model for the normal client, the jobs the attacks read", flush=True)
    wait_job(train("normal", [2, 8, 2], 200))
    ok("POST", "/v1/models", {"name": "import-target", "layers": [2, 32, 2], "output": "softmax"})
    if "sse" in only:
        ctx["sse_jobs"] = [train(f"sse-{i}", [2, 2, 2], 5000) for i in range(8)]
        for job in ctx["sse_jobs"]:
            wait_job(job)
    if "history" in only:
        ctx["long_job"] = train("long", [2, 2, 2], 100_000)
        wait_job(ctx["long_job"])

    sampler = Sampler()
    sampler.reset()
    sampler.start()
    normal = Normal(ctx["model"])
    normal.start()
    time.sleep(1)
    results, broken = [], []
    for name in only:
        before = sampler.last
        sampler.peak = before
        normal.answers.clear()
        socks = ATTACKS[name](ctx)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        closed = time.time()
        settled = None
        back = max(args.settle_mb, before + args.margin_mb)
        while time.time() - closed < args.settle_seconds:
            if settled is None and sampler.last <= back:
                settled = time.time() - closed
            time.sleep(0.1)
        peak, after = sampler.peak, sampler.last
        answers = dict(normal.answers)
        bad = {k: v for k, v in answers.items() if not k.startswith("2")}
        r = {
            "attack": name,
            "rss_before_mb": round(before, 1),
            "rss_peak_mb": round(peak, 1),
            "rss_after_mb": round(after, 1),
            "settled_s": None if settled is None else round(settled, 1),
            "normal": answers,
        }
        if name == "upload":
            r["upload_answer"] = ctx.get("upload_answer")
        results.append(r)
        if peak > args.max_peak_mb:
            broken.append(f"{name}: peak {peak:.0f} MB > {args.max_peak_mb:.0f} MB")
        if after > back:
            broken.append(f"{name}: {after:.0f} MB {args.settle_seconds:.0f} s after > {back:.0f} MB")
        if bad:
            broken.append(f"{name}: normal client answered {bad}")
        print(json.dumps(r), flush=True)
    normal.stop = sampler.stop = True

    print()
    print(f"{'attack':<9} {'before MB':>10} {'peak MB':>9} {'after 10 s':>11} {'back in':>12}  normal client")
    for r in results:
        settled = "-" if r["settled_s"] is None else f"{r['settled_s']} s"
        print(
            f"{r['attack']:<9} {r['rss_before_mb']:>10} {r['rss_peak_mb']:>9} {r['rss_after_mb']:>11} {settled:>12}  {r['normal']}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "broken": broken}, f, indent=1)
    for b in broken:
        print("BROKEN:", b)
    sys.exit(1 if broken else 0)


main()
