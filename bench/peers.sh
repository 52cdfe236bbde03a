#!/usr/bin/env bash
# bench/peers.sh [api] [w1 w2 w3 lat]: mlp-lab's training speed against JAX, scikit-learn and
# PyTorch, on the workloads of ../shared/peers, in the same run.
#
#   w1 64-128-64-10 (1,797 samples, batch 32)   w2 784-256-128-10 (60,000, 128)
#   w3 1024-1024-1024-10 (20,000, 256)          lat  W2 forward latency, 1 and 64 rows
#
# Each training workload is measured five ways (and with PyTorch when there is one):
#   mlp-lab API   a job through the HTTP API, as a user trains: the release server with its
#                 default flags (a temp data dir, a free port, not pinned), the dataset made
#                 by its `blobs` generator in the workload's shape, `standardize: false`, the
#                 peers' layers, Adam and batch size (bench/train_api.py). The rate is the
#                 samples over the median of the job's epoch `seconds` (GET
#                 /v1/jobs/{id}/metrics) from epoch 2 on: epoch 1 is the warm-up, as in
#                 nn-bench and the peers.
#   nn-bench      the numerical core in process (benches/nn_bench.rs), on every CPU (as a job
#                 on an idle server) and pinned to one core
#   JAX 1 core    XLA held to one thread; JAX all: its default threads, not pinned
#   scikit-learn  one thread
# Every one of them except the server, "nn-bench all" and "JAX all" is pinned to one core with
# taskset. With `api` as the first argument it measures only the first five (w1, w2 and w3 unless
# named).
#
# The server runs on its default flags (W2's dataset, 47.1 million cells, is under the default
# --max-dataset-cells); should a workload ever need more, the flag is raised and the report's
# header says so. Any MLP_LAB_* variable of the caller's is left out of its environment.
#
# The machine is shared and noisy: only the ratios of one run mean something. The table goes
# to stdout and, with every raw line, to bench/out/peers-<time>.txt.
#
# Settings (environment):
#   PEERS_DIR     the peer scripts                         [../shared/peers]
#   PEERS_VENV    venv with jax, numpy, scikit-learn       [/tmp/mlp-lab-peers]
#   TORCH_PYTHON  a python that can `import torch`         [the venv's, if it can]
#   WITH_TORCH=1  pip install torch into the venv if no python has it (PyPI's wheel is ~6 GB)
#   BENCH_CORE    the core to pin the one-core runs to     [0]
#   ROUNDS        runs of each command; the table shows the median   [1]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
# shellcheck source=bench/lib.sh
source bench/lib.sh

PEERS_DIR=$(cd "${PEERS_DIR:-../shared/peers}" 2>/dev/null && pwd) ||
    die "no peers directory at ${PEERS_DIR:-../shared/peers} (set PEERS_DIR)"
VENV=${PEERS_VENV:-/tmp/mlp-lab-peers}
CORE=${BENCH_CORE:-0}
ROUNDS=${ROUNDS:-1}
API_ONLY=0
MODE_LABEL=""
if [[ ${1:-} == api ]]; then
    API_ONLY=1
    MODE_LABEL="api "
    shift
fi
if (($#)); then
    workloads=("$@")
elif ((API_ONLY)); then
    workloads=(w1 w2 w3)
else
    workloads=(w1 w2 w3 lat)
fi
for w in "${workloads[@]}"; do
    [[ $w =~ ^(w1|w2|w3|lat)$ ]] || die "unknown workload '$w' (w1, w2, w3 or lat)"
    [[ $API_ONLY == 0 || $w != lat ]] || die "lat trains nothing through the API: run it without 'api'"
done
command -v taskset >/dev/null || die "taskset not found (Debian package util-linux)"

mkdir -p bench/out
STAMP=$(date +%Y%m%d-%H%M%S)
RAW=bench/out/peers-$STAMP.raw
REPORT=bench/out/peers-$STAMP.txt
ERRLOG=bench/out/peers-$STAMP.stderr
WORK=$(mktemp -d /tmp/mlp-lab-peers.XXXXXX)
: >"$RAW"
: >"$ERRLOG"

SERVER_PID=""
cleanup() {
    local rc=$?
    stop_pid "$SERVER_PID"
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "Setup"
ensure_venv "$VENV" "jax, numpy, sklearn, threadpoolctl" jax numpy scikit-learn threadpoolctl
TORCH_PY=""
if [[ -n ${TORCH_PYTHON:-} ]]; then
    if "$TORCH_PYTHON" -c 'import torch' 2>/dev/null; then
        TORCH_PY=$TORCH_PYTHON
    else
        echo "warning: TORCH_PYTHON=$TORCH_PYTHON cannot import torch; PyTorch is left out"
    fi
elif "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    TORCH_PY=$VENV/bin/python
elif [[ ${WITH_TORCH:-0} == 1 ]]; then
    echo "pip install torch (a CUDA build of several GB: this takes a while)"
    "$VENV/bin/pip" install --quiet --no-input torch
    TORCH_PY=$VENV/bin/python
else
    echo "PyTorch left out: set TORCH_PYTHON to a python with torch, or WITH_TORCH=1"
fi

cargo build --release --locked --bin nn-bench --bin mlp-lab
TARGET=$(target_dir)
OURS=$TARGET/release/nn-bench

# run TOOL CPUS COMMAND...: one benchmark command, pinned to CPUS (a taskset list) with every
# thread pool at one thread, or with CPUS "all" not pinned and with the tool's default threads;
# stdout to the raw log and the terminal, stderr (JAX's notices, say) to the .stderr file. The
# first word of each `samples/s` line becomes TOOL, which keeps two runs of one peer apart in
# the table. A failed command is reported and left out of the table rather than ending the run.
run() {
    local tool=$1 cpus=$2
    shift 2
    local cmd
    if [[ $cpus == all ]]; then
        cmd=("${BENCH_ENV_ALL_THREADS[@]}" "$@")
    else
        cmd=("${BENCH_ENV[@]}" taskset -c "$cpus" "$@")
    fi
    printf '$ %s\n' "${cmd[*]}" >>"$ERRLOG"
    if ! (cd "$PEERS_DIR" && "${cmd[@]}") 2>>"$ERRLOG" |
        sed -u "/samples\/s=/s/^[^ \t]*/$tool/" | tee -a "$RAW"; then
        echo "warning: $tool failed (see $ERRLOG)" | tee -a "$RAW"
    fi
}

JAX_XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

# The server, for the training workloads: default flags but the dataset cell limit (see the
# top of this file), started once; each workload's dataset and model are made on first use.
SERVER_FLAGS=""
BASE=""
cells=0
for w in "${workloads[@]}"; do
    [[ $w != lat ]] || continue
    c=$(python3 bench/train_api.py cells "$w")
    if ((c > cells)); then cells=$c; fi
done
if ((cells)); then
    server_args=(--addr "127.0.0.1:$(free_port)" --data-dir "$WORK/data")
    if ((cells > 64000000)); then
        server_args+=(--max-dataset-cells "$cells")
        SERVER_FLAGS="--max-dataset-cells $cells (the default 64,000,000 refuses the dataset)"
    fi
    server_env
    "${SERVER_ENV[@]}" "$TARGET/release/mlp-lab" "${server_args[@]}" \
        >"$WORK/server.log" 2>&1 </dev/null &
    SERVER_PID=$!
    BASE=http://${server_args[1]}
    wait_ready "$BASE/readyz" "$SERVER_PID" 60 ||
        die "mlp-lab did not become ready: $(tail -n 20 "$WORK/server.log")"
    echo "mlp-lab server: $BASE (pid $SERVER_PID), default flags${SERVER_FLAGS:+ but $SERVER_FLAGS}"
fi

{
    echo "# bench/peers.sh ${MODE_LABEL}${workloads[*]}, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "# mlp-lab $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')"
    echo "# cpu: $(cpu_model); the one-core runs pinned to core $CORE"
    [[ -z $BASE ]] || echo "# server: default flags${SERVER_FLAGS:+ but $SERVER_FLAGS}, not pinned"
    echo "# $(check_load)"
} | tee "$REPORT"

for round in $(seq "$ROUNDS"); do
    for w in "${workloads[@]}"; do
        say "$w (round $round of $ROUNDS)"
        run mlp-lab "$CORE" "$OURS" "$w"
        if [[ $w == lat ]]; then
            if [[ -n $TORCH_PY ]]; then run torch "$CORE" "$TORCH_PY" train_torch.py lat 1; fi
            continue
        fi
        run mlp-lab-api all python3 "$REPO/bench/train_api.py" "$BASE" "$w" "$WORK/api.json"
        run mlp-lab-all all "$OURS" "$w"
        run jax "$CORE" env XLA_FLAGS="$JAX_XLA_FLAGS" "$VENV/bin/python" train_jax.py "$w" 1
        run jax-all all "$VENV/bin/python" train_jax.py "$w" "$(nproc)"
        ((API_ONLY)) && continue
        run sklearn "$CORE" "$VENV/bin/python" train_sklearn.py "$w" 1
        if [[ -n $TORCH_PY ]]; then run torch "$CORE" "$TORCH_PY" train_torch.py "$w" 1; fi
    done
done

say "Result"
{
    echo "# load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    python3 bench/report.py peers "$RAW"
    echo
    echo "# raw lines"
    cat "$RAW"
} >>"$REPORT"
python3 bench/report.py peers "$RAW"
echo
echo "written to $REPORT"
