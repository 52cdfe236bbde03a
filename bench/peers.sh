#!/usr/bin/env bash
# bench/peers.sh [w1 w2 w3 lat]: mlp-lab's training speed against JAX, scikit-learn and
# PyTorch, on the workloads of ../shared/peers, in the same run, each pinned to one core.
#
#   w1 64-128-64-10 (1,797 samples, batch 32)   w2 784-256-128-10 (60,000, 128)
#   w3 1024-1024-1024-10 (20,000, 256)          lat  W2 forward latency, 1 and 64 rows
#
# The machine is shared and noisy: only the ratios of one run mean something. The table goes
# to stdout and, with every raw line, to bench/out/peers-<time>.txt.
#
# Settings (environment):
#   PEERS_DIR     the peer scripts                         [../shared/peers]
#   PEERS_VENV    venv with jax, numpy, scikit-learn       [/tmp/mlp-lab-peers]
#   TORCH_PYTHON  a python that can `import torch`         [the venv's, if it can]
#   WITH_TORCH=1  pip install torch into the venv if no python has it (PyPI's wheel is ~6 GB)
#   BENCH_CORE    the core to pin every run to             [0]
#   ROUNDS        runs of each command; the table shows the median   [1]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

PEERS_DIR=$(cd "${PEERS_DIR:-../shared/peers}" 2>/dev/null && pwd) ||
    die "no peers directory at ${PEERS_DIR:-../shared/peers} (set PEERS_DIR)"
VENV=${PEERS_VENV:-/tmp/mlp-lab-peers}
CORE=${BENCH_CORE:-0}
ROUNDS=${ROUNDS:-1}
if (($#)); then workloads=("$@"); else workloads=(w1 w2 w3 lat); fi
for w in "${workloads[@]}"; do
    [[ $w =~ ^(w1|w2|w3|lat)$ ]] || die "unknown workload '$w' (w1, w2, w3 or lat)"
done
command -v taskset >/dev/null || die "taskset not found (Debian package util-linux)"

mkdir -p bench/out
STAMP=$(date +%Y%m%d-%H%M%S)
RAW=bench/out/peers-$STAMP.raw
REPORT=bench/out/peers-$STAMP.txt
ERRLOG=bench/out/peers-$STAMP.stderr
: >"$RAW"
: >"$ERRLOG"

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

cargo build --release --locked --bin nn-bench
OURS=$PWD/target/release/nn-bench

# run TOOL COMMAND...: one benchmark command on the pinned core; stdout to the raw log and
# the terminal, stderr (JAX's notices, say) to the .stderr file. A failed peer is reported and
# left out of the table rather than ending the run.
run() {
    local tool=$1
    shift
    printf '$ %s\n' "$*" >>"$ERRLOG"
    if ! (cd "$PEERS_DIR" && "${BENCH_ENV[@]}" taskset -c "$CORE" "$@") \
        2>>"$ERRLOG" | tee -a "$RAW"; then
        echo "warning: $tool failed (see $ERRLOG)" | tee -a "$RAW"
    fi
}

JAX_XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

{
    echo "# bench/peers.sh ${workloads[*]}, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "# mlp-lab $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')"
    echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), pinned to core $CORE"
    echo "# $(check_load)"
} | tee "$REPORT"

for round in $(seq "$ROUNDS"); do
    for w in "${workloads[@]}"; do
        say "$w (round $round of $ROUNDS)"
        run mlp-lab "$OURS" "$w"
        if [[ $w == lat ]]; then
            if [[ -n $TORCH_PY ]]; then run torch "$TORCH_PY" train_torch.py lat 1; fi
            continue
        fi
        run jax env XLA_FLAGS="$JAX_XLA_FLAGS" "$VENV/bin/python" train_jax.py "$w" 1
        run sklearn "$VENV/bin/python" train_sklearn.py "$w" 1
        if [[ -n $TORCH_PY ]]; then run torch "$TORCH_PY" train_torch.py "$w" 1; fi
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
