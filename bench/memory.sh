#!/usr/bin/env bash
# bench/memory.sh: replays the memory attacks (issue 24) against a release server started with
# its default flags on a fresh data directory, and prints the peak and final RSS of each; see
# bench/memory.py for the attacks and the rules. Exits non-zero when a rule is broken.
#
# The table goes to stdout and to bench/out/memory-<time>.json.
#
# Settings (environment):
#   ONLY         attacks to run, comma-separated    [sse,history,imports,trickle,upload]
#   SERVER_BIN   the server binary                  [target/release/mlp-lab, built]
#   SERVER_ARGS  extra flags for the server         []
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

mkdir -p bench/out
STAMP=$(date +%Y%m%d-%H%M%S)
WORK=$(mktemp -d /tmp/mlp-lab-memory.XXXXXX)
BIN=${SERVER_BIN:-target/release/mlp-lab}
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

check_load
[[ -n ${SERVER_BIN:-} ]] || cargo build --release --locked --bin mlp-lab
PORT=$(free_port)
# shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
env ${SERVER_ENV:-} "$BIN" --addr "127.0.0.1:$PORT" --data-dir "$WORK/data" ${SERVER_ARGS:-} \
    >"$WORK/server.log" 2>&1 </dev/null &
SERVER_PID=$!
wait_ready "http://127.0.0.1:$PORT/readyz" "$SERVER_PID" 60 ||
    die "mlp-lab did not become ready: $(tail -n 20 "$WORK/server.log")"
echo "server: $BIN ${SERVER_ARGS:-} (pid $SERVER_PID), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"

python3 bench/memory.py 127.0.0.1 "$PORT" "$SERVER_PID" --only "${ONLY:-}" \
    --json "bench/out/memory-$STAMP.json"
