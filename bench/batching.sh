#!/usr/bin/env bash
# bench/batching.sh: what dynamic batching (--batch-predictions) does to one-row predictions,
# network by network, measured in the same run.
#
# For each network it starts two servers of the same release build, one with
# `--batch-predictions always` and one with `never`, trains the network one epoch on both (the
# same seed, so the same weights), and loads POST /v1/models/{name}/predict with a one-row
# JSON body from wrk (16 connections), alternating between the two servers ROUNDS times so
# that the machine's drift falls on both alike. It reports the median req/s, p50 and p99 of
# each, the ratio batched/unbatched, and the mean batch (requests per product, from
# /metrics). `--batch-predictions auto` (the default) batches the networks whose weights fill
# at least three quarters of a core's L2 cache; this is the measurement that threshold comes
# from. The table goes to stdout and to bench/out/batching-<time>.txt.
#
# Settings (environment):
#   NETWORKS     space-separated layer lists  [784,256,128,10 784,512,512,10 784,1024,1024,10]
#   ROUNDS       alternating runs per server  [3]
#   DURATION     each wrk run                 [5s]
#   CONNECTIONS  wrk connections              [16]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

PEERS_DIR=$(cd "${PEERS_DIR:-../shared/peers}" 2>/dev/null && pwd) ||
    die "no peers directory at ${PEERS_DIR:-../shared/peers} (set PEERS_DIR): wrk_post.lua is there"
NETWORKS=${NETWORKS:-784,256,128,10 784,512,512,10 784,1024,1024,10}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-16}

mkdir -p bench/out
STAMP=$(date +%Y%m%d-%H%M%S)
WORK=$(mktemp -d /tmp/mlp-lab-batching.XXXXXX)
RESULTS=$WORK/results.tsv
REPORT=bench/out/batching-$STAMP.txt
: >"$RESULTS"

PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk; bench/serve.sh installs it)"
say "Setup"
check_load
cargo build --release --locked --bin mlp-lab

# The body of bench/serve.sh: one row of 784 floats in [-1, 1), 7 significant digits.
python3 - "$WORK/body.json" <<'EOF'
import json, random, sys
rng = random.Random(0)
json.dump({"inputs": [[float(f"{rng.uniform(-1, 1):.7g}") for _ in range(784)]]},
          open(sys.argv[1], "w"))
EOF

# serve MODE LAYERS: starts a server batching MODE and trains LAYERS on it; its base URL goes
# to $SERVED (not printed: a command substitution would lose the server's pid).
serve() {
    local mode=$1 layers=$2 port base dataset job state
    port=$(free_port)
    base=http://127.0.0.1:$port
    target/release/mlp-lab --addr "127.0.0.1:$port" --ephemeral --batch-predictions "$mode" \
        --max-concurrent-predictions 1024 >"$WORK/server-$port.log" 2>&1 </dev/null &
    PIDS+=($!)
    wait_ready "$base/readyz" "$!" 60 || die "mlp-lab did not start: $(tail -n 20 "$WORK/server-$port.log")"
    curl -fsS -o /dev/null -H 'content-type: application/json' "$base/v1/models" \
        -d "{\"name\": \"net\", \"layers\": [$layers], \"activation\": \"relu\", \"output\": \"softmax\"}"
    dataset=$(curl -fsS -H 'content-type: application/json' "$base/v1/datasets" \
        -d '{"generator": {"kind": "blobs", "samples": 1000, "features": 784, "classes": 10, "noise": 1.0, "seed": 1}}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    job=$(curl -fsS -H 'content-type: application/json' "$base/v1/jobs" \
        -d "{\"model\": \"net\", \"dataset\": \"$dataset\", \"epochs\": 1, \"batch_size\": 128, \"seed\": 1}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    for _ in $(seq 600); do
        state=$(curl -fsS "$base/v1/jobs/$job" | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])')
        [[ $state == queued || $state == running ]] || break
        sleep 0.5
    done
    [[ $state == succeeded ]] || die "training $layers ended '$state'"
    SERVED=$base
}

for layers in $NETWORKS; do
    say "Network $layers"
    serve always "$layers"
    on=$SERVED
    serve never "$layers"
    off=$SERVED
    for round in $(seq "$ROUNDS"); do
        for side in batched unbatched; do
            base=$([[ $side == batched ]] && echo "$on" || echo "$off")
            result=$(BODY=$WORK/body.json wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --timeout 10s \
                -s "$PEERS_DIR/wrk_post.lua" "$base/v1/models/net/predict" | grep '^RESULT ')
            echo "round $round $side: ${result#RESULT }"
            printf '%s\t%s\t%s\n' "$layers" "$side" "${result#RESULT }" >>"$RESULTS"
        done
    done
    metrics=$(curl -fsS "$on/metrics")
    batches=$(awk '/^mlp_lab_prediction_batches_total / { print $2 }' <<<"$metrics")
    batched=$(awk '/^mlp_lab_batched_predictions_total / { print $2 }' <<<"$metrics")
    printf '%s\tbatch\t{"batches": %s, "requests": %s}\n' "$layers" "$batches" "$batched" >>"$RESULTS"
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
done

say "Result"
python3 - "$RESULTS" "$DURATION" "$CONNECTIONS" <<'EOF' | tee "$REPORT"
import collections, json, statistics, sys
runs = collections.defaultdict(lambda: collections.defaultdict(list))
batch = {}
for line in open(sys.argv[1]):
    layers, side, data = line.rstrip("\n").split("\t")
    d = json.loads(data)
    if side == "batch":
        batch[layers] = d["requests"] / d["batches"] if d["batches"] else float("nan")
    else:
        runs[layers][side].append(d)
print(f"One-row predictions, wrk -c{sys.argv[3]} -d{sys.argv[2]} per run, medians of the "
      "alternating runs; --batch-predictions always vs never")
head = ["network", "weights", "batched req/s", "unbatched req/s", "ratio",
        "p50 ms b/u", "p99 ms b/u", "requests a batch"]
rows = [head]
for layers, sides in runs.items():
    sizes = [int(x) for x in layers.split(",")]
    weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    med = {s: {k: statistics.median(r[k] for r in v) for k in ("rps", "p50_ms", "p99_ms")}
           for s, v in sides.items()}
    b, u = med["batched"], med["unbatched"]
    rows.append([layers.replace(",", "-"), f"{weights:,}", f"{b['rps']:,.0f}", f"{u['rps']:,.0f}",
                 f"{b['rps'] / u['rps']:.2f}x", f"{b['p50_ms']:.2f} / {u['p50_ms']:.2f}",
                 f"{b['p99_ms']:.2f} / {u['p99_ms']:.2f}", f"{batch.get(layers, float('nan')):.1f}"])
widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
for r in rows:
    print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
EOF
echo "(written to $REPORT)"
