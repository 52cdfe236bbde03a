#!/usr/bin/env bash
# bench/load.sh: overload, checked. Two parts, each against its own release server:
#
# (a) Predict overload. A server with a small prediction cap (--max-concurrent-predictions
#     $CAP) and a trained 64-256-256-10 network; wrk with $CAP connections measures the
#     sustainable rate, then 10x the connections overload it. Only 2xx and 429 (with
#     Retry-After) may come back, no 5xx, no connect/read/write errors; the server's RSS is
#     sampled from /proc every 100 ms (before, peak, after).
# (b) 1,000 concurrent training requests (bench/load/burst.py: 1,000 threads, released
#     together) against --max-queued-jobs $QUEUE --max-running-jobs $RUNNING: at most
#     QUEUE + RUNNING are accepted with 202, the rest are 429 with Retry-After, nothing else.
#
# Exits non-zero when a rule is broken. The table goes to stdout and to
# bench/out/load-<time>.txt.
#
# Settings (environment):
#   CAP        prediction cap of part (a)        [2]
#   DURATION   each wrk run                      [10s]
#   QUEUE      --max-queued-jobs of part (b)     [100]
#   RUNNING    --max-running-jobs of part (b)    [2]
#   BURST      concurrent training requests      [1000]
#   MAX_RSS_MB the peak RSS allowed in part (a)  [512]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

CAP=${CAP:-2}
DURATION=${DURATION:-10s}
QUEUE=${QUEUE:-100}
RUNNING=${RUNNING:-2}
BURST=${BURST:-1000}
MAX_RSS_MB=${MAX_RSS_MB:-512}
OVERLOAD=$((CAP * 10))

mkdir -p bench/out
STAMP=$(date +%Y%m%d-%H%M%S)
WORK=$(mktemp -d /tmp/mlp-lab-load.XXXXXX)
REPORT=bench/out/load-$STAMP.txt
BIN=target/release/mlp-lab

SERVER_PID=""
SAMPLER_PID=""
BASE=""
cleanup() {
    local rc=$?
    [[ -z $SAMPLER_PID ]] || stop_pid "$SAMPLER_PID"
    stop_pid "$SERVER_PID"
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

FAILED=()
rule() { # rule DESCRIPTION PYTHON-CONDITION-ON-d: records a broken rule
    local ok
    ok=$(python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print(bool($2))" "$WORK/last.json")
    if [[ $ok == True ]]; then echo "  ok: $1"; else echo "  BROKEN: $1"; FAILED+=("$1"); fi
}

api() { # api METHOD PATH [JSON]: body in $WORK/resp.json, status in $STATUS
    local args=(-s -o "$WORK/resp.json" -w '%{http_code}' -X "$1" "$BASE$2")
    if [[ $# -ge 3 ]]; then args+=(-H 'content-type: application/json' --data-binary "$3"); fi
    STATUS=$(curl "${args[@]}")
}
json() { python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print($1)" "$WORK/resp.json"; }
expect() {
    [[ $STATUS == "$1" ]] || die "$2 answered $STATUS, expected $1: $(head -c 2000 "$WORK/resp.json")"
}

start_server() { # start_server FLAGS...: a fresh in-memory server on a free port
    local port
    port=$(free_port)
    BASE=http://127.0.0.1:$port
    PORT=$port
    "$BIN" --addr "127.0.0.1:$port" --ephemeral "$@" >"$WORK/server.log" 2>&1 </dev/null &
    SERVER_PID=$!
    wait_ready "$BASE/readyz" "$SERVER_PID" 60 ||
        die "mlp-lab did not become ready: $(tail -n 20 "$WORK/server.log")"
}

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status"; }

# wrk_run CONNECTIONS: one wrk run against $PREDICT; its TALLY JSON lands in $WORK/last.json.
wrk_run() {
    local out
    out=$(BODY=$WORK/body.json wrk -t2 -c"$1" -d"$DURATION" --timeout 5s \
        -s bench/load/tally.lua "$PREDICT")
    grep '^TALLY ' <<<"$out" | sed 's/^TALLY //' >"$WORK/last.json"
    cat "$WORK/last.json"
}

LOAD_START=$(check_load)
echo "$LOAD_START"
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
cargo build --release --locked --bin mlp-lab

say "(a) predict overload: --max-concurrent-predictions $CAP"
start_server --max-concurrent-predictions "$CAP"
api POST /v1/models '{"name": "load", "layers": [64, 256, 256, 10], "activation": "relu", "output": "softmax"}'
expect 201 "POST /v1/models"
api POST /v1/datasets '{"generator": {"kind": "blobs", "samples": 2000, "features": 64, "classes": 10, "noise": 1.0, "seed": 1}}'
expect 201 "POST /v1/datasets"
DATASET=$(json 'd["id"]')
api POST /v1/jobs "{\"model\": \"load\", \"dataset\": \"$DATASET\", \"epochs\": 1, \"seed\": 1}"
expect 202 "POST /v1/jobs"
JOB=$(json 'd["id"]')
for _ in $(seq 600); do
    api GET "/v1/jobs/$JOB"
    state=$(json 'd["state"]')
    [[ $state == queued || $state == running ]] || break
    sleep 0.2
done
[[ $state == succeeded ]] || die "training ended '$state'"
# 64 rows a request: a few milliseconds of work, on the blocking pool.
python3 - "$WORK/body.json" <<'PY'
import json, random, sys
rng = random.Random(0)
rows = [[round(rng.uniform(-3, 3), 5) for _ in range(64)] for _ in range(64)]
json.dump({"inputs": rows}, open(sys.argv[1], "w"))
PY
PREDICT=$BASE/v1/models/load/predict
api POST /v1/models/load/predict "$(cat "$WORK/body.json")"
expect 200 "a prediction"

echo "-- sustainable: $CAP connections"
wrk_run "$CAP"
cp "$WORK/last.json" "$WORK/base.json"
rule "sustainable run: only 200" 'set(d["status"]) == {"200"}'

RSS_BEFORE=$(rss_kb)
(while kill -0 "$SERVER_PID" 2>/dev/null; do rss_kb; sleep 0.1; done >"$WORK/rss.txt" 2>/dev/null) &
SAMPLER_PID=$!
echo "-- overload: $OVERLOAD connections (10x)"
wrk_run "$OVERLOAD"
cp "$WORK/last.json" "$WORK/over.json"
stop_pid "$SAMPLER_PID"
SAMPLER_PID=""
sleep 1
RSS_AFTER=$(rss_kb)
RSS_PEAK=$(sort -n "$WORK/rss.txt" | tail -n1)
rule "overload: only 2xx and 429" 'all(s.startswith("2") or s == "429" for s in d["status"])'
rule "overload: no 5xx" 'not any(s.startswith("5") for s in d["status"])'
rule "overload: some 2xx served" 'sum(n for s, n in d["status"].items() if s.startswith("2")) > 0'
rule "overload: every 429 has Retry-After" 'd["no_retry_after"] == 0'
rule "overload: no connect/read/write errors" 'd["connect"] + d["read"] + d["write"] == 0'
echo "{\"peak\": ${RSS_PEAK:-0}}" >"$WORK/last.json"
rule "overload: peak RSS <= $MAX_RSS_MB MB" "d['peak'] <= $MAX_RSS_MB * 1024"
api GET /metrics
grep -E '^mlp_lab_predictions_rejected_total' "$WORK/resp.json" >"$WORK/rejected.txt" || true
stop_pid "$SERVER_PID"
SERVER_PID=""

say "(b) $BURST concurrent training requests: --max-queued-jobs $QUEUE --max-running-jobs $RUNNING"
start_server --max-queued-jobs "$QUEUE" --max-running-jobs "$RUNNING"
api POST /v1/models '{"name": "burst", "layers": [2, 8, 1], "output": "sigmoid"}'
expect 201 "POST /v1/models"
api POST /v1/datasets '{"generator": {"kind": "xor", "samples": 200, "seed": 1}}'
expect 201 "POST /v1/datasets"
DATASET=$(json 'd["id"]')
# Long jobs, so that none ends (and frees room) during the burst.
echo "{\"model\": \"burst\", \"dataset\": \"$DATASET\", \"epochs\": 100000}" >"$WORK/job.json"
python3 bench/load/burst.py 127.0.0.1 "$PORT" /v1/jobs "$WORK/job.json" "$BURST" | tee "$WORK/last.json"
cp "$WORK/last.json" "$WORK/burst.json"
ACCEPT_MAX=$((QUEUE + RUNNING))
rule "burst: only 202 and 429" 'set(d["status"]) <= {"202", "429"}'
rule "burst: at most $ACCEPT_MAX accepted" "d['status'].get('202', 0) <= $ACCEPT_MAX"
rule "burst: every request answered" "sum(d['status'].values()) == $BURST and not d['errors']"
rule "burst: every 429 has Retry-After" 'd["no_retry_after"] == 0'
api GET /metrics
QUEUED=$(awk '/^mlp_lab_job_queue_length/ { print $2 }' "$WORK/resp.json")
RUNNING_NOW=$(awk '/^mlp_lab_jobs\{state="running"\}/ { print $2 }' "$WORK/resp.json")

say "Result"
{
    echo "# bench/load.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), mlp-lab $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "# before: $LOAD_START; after: load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# $(nproc) CPUs, shared with other work: read the rates as rough"
    echo
    python3 - "$WORK" "$CAP" "$OVERLOAD" "$RSS_BEFORE" "${RSS_PEAK:-0}" "$RSS_AFTER" <<'PY'
import json, sys
work, cap, over, before, peak, after = sys.argv[1:]
def row(name, conns, d):
    status = " ".join(f"{k}={v}" for k, v in sorted(d["status"].items()))
    errors = f'connect={d["connect"]} read={d["read"]} write={d["write"]} timeout={d["timeout"]}'
    print(f"| {name:<12} | {conns:>5} | {d['requests']:>8} | {d['rps']:>8.0f} | {d['p50_ms']:>7.2f} | {d['p99_ms']:>8.2f} | {status:<22} | {errors} |")
print("(a) predict overload, 64 rows of 64 features a request, 64-256-256-10, --max-concurrent-predictions", cap)
print()
print("| run          | conns | requests |    req/s | p50 ms  |   p99 ms | statuses               | wrk socket errors |")
print("|--------------|-------|----------|----------|---------|----------|------------------------|-------------------|")
row("sustainable", cap, json.load(open(f"{work}/base.json")))
row("10x overload", over, json.load(open(f"{work}/over.json")))
print()
mb = lambda kb: f"{int(kb) / 1024:.1f} MB"
print(f"server RSS: before {mb(before)}, peak {mb(peak)} (sampled every 100 ms), after {mb(after)}")
print()
b = json.load(open(f"{work}/burst.json"))
status = ", ".join(f"{k}: {v}" for k, v in sorted(b["status"].items()))
print(f"(b) burst of training requests: {status}; client errors {b['errors'] or 'none'}; "
      f"429 without Retry-After: {b['no_retry_after']}; {b['seconds']} s for the burst")
PY
    echo "    --max-queued-jobs $QUEUE, --max-running-jobs $RUNNING: after the burst $QUEUED queued, $RUNNING_NOW running"
    sed 's/^/    (a) /' "$WORK/rejected.txt"
    echo
    if [[ ${#FAILED[@]} -eq 0 ]]; then echo "all rules held"; else printf 'BROKEN: %s\n' "${FAILED[@]}"; fi
} | tee "$REPORT"
echo
echo "written to $REPORT"
[[ ${#FAILED[@]} -eq 0 ]]
