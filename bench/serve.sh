#!/usr/bin/env bash
# bench/serve.sh: prediction over HTTP, mlp-lab against the FastAPI + numpy peer of
# ../shared/peers, in the same run, with wrk on loopback.
#
# It builds the release server and starts it with its default flags (a temp data dir and a
# free port; no raised limit, and any MLP_LAB_* variable of the caller's left out), creates
# and trains (one epoch on generated data) the W2 network 784-256-128-10, and loads
# POST /v1/models/{name}/predict with 1-row and 64-row JSON bodies at each of CONNECTIONS
# wrk connections, idle, and again at the first of them while two training jobs run. The
# FastAPI peer (2 workers, one BLAS thread each) gets the same bodies and connections. For
# context it also loads GET /healthz (the floor: HTTP and the middleware alone) and the Open
# Inference Protocol route with the same rows as raw FP32 (binary tensor extension: no float
# parsing). It reports req/s, p50/p99/max latency, the non-2xx answers, the ratios, and the
# server's RSS (after the idle runs, their peak, and the peak with training), with the CPU
# model. The table goes to stdout and to bench/out/serve-<time>.txt.
#
# Until the service has its model endpoints (issue 3), it stops with a message after the
# first POST /v1/models answers 404.
#
# Settings (environment):
#   PEERS_DIR    the peer scripts                    [../shared/peers]
#   PEERS_VENV   venv for FastAPI and uvicorn        [/tmp/mlp-lab-peers]
#   DURATION     each wrk run                        [10s]
#   CONNECTIONS  wrk connections, one run each       ["16 64"]
#   PEER_ONLY=1  measure only the FastAPI peer (to check the setup)
#   SERVER_BIN   a server binary to measure instead of building the release mlp-lab
#                (to compare two builds in one sitting)
#   SERVER_ARGS  flags added to the server's command line (to compare a setting with the
#                default: the report's header names them)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

PEERS_DIR=$(cd "${PEERS_DIR:-../shared/peers}" 2>/dev/null && pwd) ||
    die "no peers directory at ${PEERS_DIR:-../shared/peers} (set PEERS_DIR)"
VENV=${PEERS_VENV:-/tmp/mlp-lab-peers}
DURATION=${DURATION:-10s}
read -r -a CONNECTIONS <<<"${CONNECTIONS:-16 64}"
((${#CONNECTIONS[@]})) || die "CONNECTIONS is empty"
for c in "${CONNECTIONS[@]}"; do
    [[ $c =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be counts of connections, not '$c'"
done
MODEL=bench-w2

mkdir -p bench/out
STAMP=$(date +%Y%m%d-%H%M%S)
WORK=$(mktemp -d /tmp/mlp-lab-serve.XXXXXX)
RESULTS=bench/out/serve-$STAMP.tsv
REPORT=bench/out/serve-$STAMP.txt
: >"$RESULTS"

BASE=""
SERVER_PID=""
PEER_PID=""
JOBS=()
cleanup() {
    local rc=$?
    for job in "${JOBS[@]}"; do
        curl -s -o /dev/null -X POST "$BASE/v1/jobs/$job/cancel" 2>/dev/null || true
    done
    stop_pid "$SERVER_PID"
    # uvicorn leads its own process group (setsid below): stop it and its workers together.
    if [[ -n $PEER_PID ]] && kill -0 "$PEER_PID" 2>/dev/null; then
        kill -TERM -- "-$PEER_PID" 2>/dev/null || true
        stop_pid "$PEER_PID"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# api METHOD PATH [JSON]: one request to mlp-lab; the body lands in $WORK/resp.json, the
# status in $STATUS.
api() {
    local args=(-s -o "$WORK/resp.json" -w '%{http_code}' -X "$1" "$BASE$2")
    if [[ $# -ge 3 ]]; then args+=(-H 'content-type: application/json' --data-binary "$3"); fi
    STATUS=$(curl "${args[@]}")
}
# json EXPR: a Python expression of `d`, the last response's JSON, e.g. json 'd["id"]'.
json() { python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print($1)" "$WORK/resp.json"; }
expect() {
    [[ $STATUS == "$1" ]] || die "$2 answered $STATUS, expected $1: $(head -c 2000 "$WORK/resp.json")"
}

# load NAME CONNECTIONS URL BODY [SCRIPT]: one wrk run (POST BODY, or GET when BODY is
# empty); its RESULT line goes to the results file, as scenario "NAME, cCONNECTIONS".
load() {
    local name=$1 conns=$2 url=$3 body=$4 script=${5:-$PEERS_DIR/wrk_post.lua} out
    echo "-- $name: wrk -t1 -c$conns -d$DURATION ${body:+POST }$url"
    out=$(BODY=$body wrk -t1 -c"$conns" -d"$DURATION" --timeout 10s \
        -s "$script" "$url")
    echo "$out"
    printf '%s, c%s\t%s\n' "$name" "$conns" "$(grep '^RESULT ' <<<"$out")" >>"$RESULTS"
}

say "Setup"
LOAD_START=$(check_load)
echo "$LOAD_START"
CPU=$(cpu_model)
echo "cpu: $CPU"
if ! command -v wrk >/dev/null; then
    [[ $EUID == 0 ]] || die "wrk is not installed (apt-get install wrk)"
    echo "apt-get install wrk"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk
fi

# Request bodies: 1 and 64 rows of 784 floats in [-1, 1), printed with 7 significant digits
# (an f32's worth), the same file for both servers.
# The same rows as an Open Inference Protocol request with the binary tensor extension: a
# JSON header, then the rows as little-endian FP32 (the header's length in header-N.len).
python3 - "$WORK" <<'EOF'
import json, random, struct, sys
rng = random.Random(0)
for n in (1, 64):
    rows = [[float(f"{rng.uniform(-1, 1):.7g}") for _ in range(784)] for _ in range(n)]
    with open(f"{sys.argv[1]}/body-{n}.json", "w") as f:
        json.dump({"inputs": rows}, f)
    raw = struct.pack(f"<{n * 784}f", *(v for row in rows for v in row))
    header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [n, 784],
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": "output", "parameters": {"binary_data": True}}]})
    with open(f"{sys.argv[1]}/body-{n}.bin", "wb") as f:
        f.write(header.encode() + raw)
    with open(f"{sys.argv[1]}/header-{n}.len", "w") as f:
        f.write(str(len(header.encode())))
EOF

if [[ ${PEER_ONLY:-0} != 1 ]]; then
    if [[ -z ${SERVER_BIN:-} ]]; then
        cargo build --release --locked --bin mlp-lab
        SERVER_BIN=$(target_dir)/release/mlp-lab
    fi
    PORT=$(free_port)
    BASE=http://127.0.0.1:$PORT
    server_env
    read -r -a extra_args <<<"${SERVER_ARGS:-}"
    "${SERVER_ENV[@]}" "$SERVER_BIN" --addr "127.0.0.1:$PORT" --data-dir "$WORK/data" \
        "${extra_args[@]}" >"$WORK/server.log" 2>&1 </dev/null &
    SERVER_PID=$!
    wait_ready "$BASE/readyz" "$SERVER_PID" 60 ||
        die "mlp-lab did not become ready: $(tail -n 20 "$WORK/server.log")"
    echo "mlp-lab: $BASE (pid $SERVER_PID)"

    say "Model $MODEL (784-256-128-10), trained one epoch"
    api POST /v1/models "{\"name\": \"$MODEL\", \"layers\": [784, 256, 128, 10],
        \"activation\": \"relu\", \"output\": \"softmax\"}"
    if [[ $STATUS == 404 ]]; then
        echo "mlp-lab answers 404 to POST /v1/models: the model and training endpoints" \
            "(issue 3) are not there yet, so there is nothing to measure. Stopping."
        exit 2
    fi
    expect 201 "POST /v1/models"

    api POST /v1/datasets '{"generator": {"kind": "blobs", "samples": 6000, "features": 784,
        "classes": 10, "noise": 1.0, "seed": 1}}'
    expect 201 "POST /v1/datasets (blobs generator)"
    DATASET=$(json 'd["id"]')

    train() { # train EPOCHS: starts a job, prints its id
        api POST /v1/jobs "{\"model\": \"$MODEL\", \"dataset\": \"$DATASET\", \"epochs\": $1,
            \"batch_size\": 128, \"seed\": 1}"
        expect 202 "POST /v1/jobs"
        json 'd["id"]'
    }
    job=$(train 1)
    for _ in $(seq 600); do # 5 minutes at most
        api GET "/v1/jobs/$job"
        state=$(json 'd.get("state") or d.get("status")')
        [[ $state == queued || $state == running ]] || break
        sleep 0.5
    done
    [[ $state == succeeded ]] || die "the training job ended '$state': $(head -c 2000 "$WORK/resp.json")"

    PREDICT=$BASE/v1/models/$MODEL/predict
    api POST "/v1/models/$MODEL/predict" "$(cat "$WORK/body-1.json")"
    expect 200 "POST /v1/models/$MODEL/predict"
    for n in 1 64; do # the binary bodies are answered too, before wrk counts them
        STATUS=$(curl -s -o "$WORK/resp.json" -w '%{http_code}' -X POST \
            -H 'content-type: application/octet-stream' \
            -H "inference-header-content-length: $(cat "$WORK/header-$n.len")" \
            --data-binary "@$WORK/body-$n.bin" "$BASE/v2/models/$MODEL/infer")
        expect 200 "POST /v2/models/$MODEL/infer ($n rows, binary)"
    done
    echo "trained; a prediction answers 200"
    # From here VmHWM is the peak of the prediction runs alone, not of the training above
    # (Linux resets it on "5" written to clear_refs; if it cannot, the peak includes it).
    HWM_SCOPE="the idle prediction runs"
    echo 5 2>/dev/null >"/proc/$SERVER_PID/clear_refs" ||
        HWM_SCOPE="the idle runs and the first training"
fi

say "FastAPI peer"
ensure_venv "$VENV" "fastapi, uvicorn, numpy, httptools, uvloop" fastapi "uvicorn[standard]" numpy
PEER_PORT=$(free_port)
(cd "$PEERS_DIR" && exec setsid "${BENCH_ENV[@]}" "$VENV/bin/uvicorn" predict_fastapi:app \
    --host 127.0.0.1 --port "$PEER_PORT" --workers 2 --log-level warning \
    >"$WORK/fastapi.log" 2>&1 </dev/null) &
PEER_PID=$!
wait_ready "http://127.0.0.1:$PEER_PORT/ping" "$PEER_PID" 60 ||
    die "the FastAPI peer did not start: $(tail -n 20 "$WORK/fastapi.log")"
echo "fastapi: http://127.0.0.1:$PEER_PORT (2 workers)"

say "Load"
for c in "${CONNECTIONS[@]}"; do
    if [[ ${PEER_ONLY:-0} != 1 ]]; then
        load "mlp-lab GET /healthz" "$c" "$BASE/healthz" ""
    fi
    for n in 1 64; do
        unit=$([[ $n == 1 ]] && echo row || echo rows)
        if [[ ${PEER_ONLY:-0} != 1 ]]; then
            load "mlp-lab $n $unit" "$c" "$PREDICT" "$WORK/body-$n.json"
            HEADER_LENGTH=$(cat "$WORK/header-$n.len") load "mlp-lab $n $unit, v2 binary" \
                "$c" "$BASE/v2/models/$MODEL/infer" "$WORK/body-$n.bin" bench/wrk_binary.lua
        fi
        load "fastapi $n $unit" "$c" "http://127.0.0.1:$PEER_PORT/predict" "$WORK/body-$n.json"
    done
done
if [[ ${PEER_ONLY:-0} != 1 ]]; then
    IDLE_RSS=$(awk '/^VmRSS/ { printf "%.1f MB", $2 / 1024 }' "/proc/$SERVER_PID/status")
    IDLE_HWM=$(awk '/^VmHWM/ { printf "%.1f MB (target <= 64 MB: %s)", $2 / 1024,
        ($2 <= 64 * 1024) ? "met" : "MISSED" }' "/proc/$SERVER_PID/status")
fi

if [[ ${PEER_ONLY:-0} != 1 ]]; then
    say "Load while two training jobs run"
    first=$(train 100000)
    second=$(train 100000)
    JOBS=("$first" "$second")
    sleep 1
    for n in 1 64; do
        unit=$([[ $n == 1 ]] && echo row || echo rows)
        load "mlp-lab $n $unit, 2 jobs training" "${CONNECTIONS[0]}" "$PREDICT" "$WORK/body-$n.json"
    done
    for job in "${JOBS[@]}"; do api POST "/v1/jobs/$job/cancel"; done
    JOBS=()
    RSS=$(awk '/^VmHWM/ { printf "%.1f MB", $2 / 1024 }' "/proc/$SERVER_PID/status")
fi

say "Result"
{
    echo "# bench/serve.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), wrk -t1 -d$DURATION, connections ${CONNECTIONS[*]}"
    echo "# mlp-lab $(git rev-parse --short HEAD 2>/dev/null || echo '?'), the server's default flags${SERVER_ARGS:+ but $SERVER_ARGS}"
    echo "# cpu: $CPU"
    echo "# before: $LOAD_START; after: load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    python3 bench/report.py serve "$RESULTS"
    [[ -z ${IDLE_RSS:-} ]] ||
        echo "mlp-lab RSS after the idle runs: $IDLE_RSS; peak during $HWM_SCOPE: $IDLE_HWM"
    [[ -z ${RSS:-} ]] || echo "mlp-lab peak RSS, including the runs while two jobs train: $RSS"
} | tee "$REPORT"
echo
echo "written to $REPORT"
