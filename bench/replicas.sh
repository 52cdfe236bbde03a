#!/usr/bin/env bash
# bench/replicas.sh: replicas on one PostgreSQL database, through the HTTP API.
#
# It builds the release server, starts a throwaway PostgreSQL (scripts/postgres.sh), and
#   1. runs a 40-job experiment (4 activations × 2 depths × 5 seeds, spirals, 30 epochs) on
#      1 replica, then on 2 (more where there are more CPUs, up to REPLICAS), each replica
#      pinned to a CPU of its own with taskset and started with its default flags, all on a
#      fresh database: wall time, jobs per worker, samples/s, and the speed-up against one;
#   2. queues CLAIM_JOBS tiny jobs at once on one replica of 2 and reports the gap between a
#      job's end and its worker's next start (queued → running under a full queue), p50/p99;
#   3. loads one-row predictions with wrk (when installed) on a replica whose store is the
#      database and on one whose store is a data directory: req/s side by side (the database
#      is not on the prediction path, so they should not differ beyond noise).
# The CPU model is printed with the figures; the table goes to stdout and to
# bench/out/replicas-<time>.txt.
#
# Settings (environment):
#   REPLICAS     the most replicas in step 1          [min(nproc, 3)]
#   CLAIM_JOBS   jobs queued in step 2                [1000]
#   DURATION     each wrk run                         [10s]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

CPUS=$(nproc)
REPLICAS=${REPLICAS:-$((CPUS < 3 ? CPUS : 3))}
CLAIM_JOBS=${CLAIM_JOBS:-1000}
DURATION=${DURATION:-10s}
mkdir -p bench/out
REPORT=bench/out/replicas-$(date +%Y%m%d-%H%M%S).txt
WORK=$(mktemp -d /tmp/mlp-lab-replicas.XXXXXX)
PIDS=()
PG_DIR=""
cleanup() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [[ -z $PG_DIR ]] || scripts/postgres.sh stop "$PG_DIR"
    rm -rf "$WORK"
}
trap cleanup EXIT

say "build"
cargo build --release --locked --bin mlp-lab
BIN=$(target_dir)/release/mlp-lab
server_env

say "PostgreSQL"
eval "$(scripts/postgres.sh start)"
PG_DIR=$MLP_LAB_TEST_PG_DIR
SERVER_URL=$MLP_LAB_TEST_DATABASE_URL

# fresh_database NAME: a new database on the server; prints its URL.
fresh_database() {
    local url=${SERVER_URL%/postgres}/$1
    "$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin | sort -V | tail -n1)/psql" \
        "$SERVER_URL" -q -c "CREATE DATABASE $1" >/dev/null
    echo "$url"
}

# start_replica CPU ARGS...: a replica on CPU (or on every CPU when CPU is "all"); prints its
# base URL.
start_replica() {
    local cpu=$1 port pin=()
    shift
    port=$(free_port)
    [[ $cpu == all ]] || pin=(taskset -c "$cpu")
    "${SERVER_ENV[@]}" "${pin[@]}" "$BIN" --addr "127.0.0.1:$port" "$@" \
        >"$WORK/server-$port.log" 2>&1 &
    PIDS+=($!)
    wait_ready "http://127.0.0.1:$port/readyz" "$!" 60 || die "a replica did not start (see $WORK/server-$port.log)"
    echo "http://127.0.0.1:$port"
}

stop_all() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
}

{
    echo "bench/replicas.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "CPU: $(cpu_model)"
    check_load
} | tee "$REPORT"

say "1. a 40-job experiment on 1..$REPLICAS replicas" | tee -a "$REPORT"
BASELINE=""
for n in $(seq 1 "$REPLICAS"); do
    url=$(fresh_database "bench_experiment_$n")
    urls=()
    for i in $(seq 0 $((n - 1))); do
        cpu=$((i % CPUS))
        urls+=("$(start_replica "$cpu" --database-url "$url")")
    done
    result=$(python3 bench/replicas.py experiment "${urls[@]}")
    stop_all
    rate=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["samples_per_second"])' "$result")
    [[ -n $BASELINE ]] || BASELINE=$rate
    ratio=$(python3 -c "print(f'{$rate / $BASELINE:.2f}')")
    echo "$n replica(s): $result  speed-up ${ratio}x" | tee -a "$REPORT"
done

say "2. claim gaps: $CLAIM_JOBS tiny jobs queued at once, 2 replicas" | tee -a "$REPORT"
url=$(fresh_database bench_claims)
a=$(start_replica 0 --database-url "$url")
start_replica $((CPUS > 1 ? 1 : 0)) --database-url "$url" >/dev/null
python3 bench/replicas.py claims "$a" "$CLAIM_JOBS" | tee -a "$REPORT"
stop_all

say "3. one-row predictions: database vs data directory" | tee -a "$REPORT"
if ! command -v wrk >/dev/null; then
    echo "wrk is not installed (apt-get install wrk): skipped" | tee -a "$REPORT"
    exit 0
fi
url=$(fresh_database bench_predict)
for store in database datadir; do
    if [[ $store == database ]]; then
        base=$(start_replica all --database-url "$url")
    else
        base=$(start_replica all --data-dir "$WORK/data")
    fi
    ds=$(curl -fsS "$base/v1/datasets" -H 'content-type: application/json' \
        -d '{"generator": {"kind": "blobs", "samples": 512, "features": 784, "classes": 10, "seed": 1}}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    curl -fsS "$base/v1/models" -H 'content-type: application/json' \
        -d '{"name": "w2", "layers": [784, 256, 128, 10], "output": "softmax"}' >/dev/null
    job=$(curl -fsS "$base/v1/jobs" -H 'content-type: application/json' \
        -d "{\"model\": \"w2\", \"dataset\": \"$ds\", \"epochs\": 1}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    until curl -fsS "$base/v1/jobs/$job" | grep -q '"state":"succeeded"'; do sleep 0.2; done
    python3 -c 'import json; print(json.dumps({"inputs": [[0.5] * 784]}))' >"$WORK/row.json"
    cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$WORK/row.json"); wrk.body = f:read("*a"); f:close()
EOF
    out=$(wrk -t2 -c16 -d"$DURATION" -s "$WORK/post.lua" "$base/v1/models/w2/predict")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    echo "store $store: ${rps} req/s, non-2xx ${non2xx:-0} (wrk -c16, $DURATION)" | tee -a "$REPORT"
    stop_all
done
echo "report: $REPORT"
