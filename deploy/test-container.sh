#!/usr/bin/env bash
# deploy/test-container.sh: the image as a user runs it, checked end to end (run by .ci/run).
#
# With the image IMAGE (built by deploy/images.sh), it
#   1. runs it with a read-only root file system and a named volume for /data, as uid 10001;
#   2. waits for /readyz, then does the README's quick start through the published port:
#      a dataset, a model, a job, a prediction; and starts a long job;
#   3. waits for the image's HEALTHCHECK to say healthy (checked every 2 s here instead of
#      the image's 30 s, the same command);
#   4. `docker stop`s it (SIGTERM): the server must exit 0 within the stop timeout, with the
#      long job `interrupted` and kept;
#   5. runs a new container on the same volume: the model, its version (the same predictions,
#      bit for bit), both jobs and the interrupted job's history are all there.
# Each step prints what it checked; any failure exits non-zero.
#
# Settings (environment): IMAGE [mlp-lab:latest]
set -euo pipefail

IMAGE=${IMAGE:-mlp-lab:latest}
NAME=mlp-lab-test-$$
VOLUME=mlp-lab-test-data-$$
STOP_TIMEOUT=40
log() { echo "test-container.sh: $*"; }
fail() {
    log "FAILED: $*"
    docker logs --tail 30 "$NAME" 2>&1 | sed 's/^/  | /' || true
    exit 1
}
cleanup() {
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    docker volume rm -f "$VOLUME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "no image $IMAGE (build it with deploy/images.sh)"
docker volume create "$VOLUME" >/dev/null

# run: a container of the image on the volume, read-only, its port published on loopback.
run() {
    docker run -d --name "$NAME" --read-only -v "$VOLUME:/data" -p 127.0.0.1::8080 \
        --health-interval 2s --stop-timeout "$STOP_TIMEOUT" "$IMAGE" >/dev/null
    PORT=$(docker port "$NAME" 8080/tcp | head -n1 | sed 's/.*://')
    BASE=http://127.0.0.1:$PORT
    for _ in $(seq 150); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz") == 200 ]] && return 0
        [[ $(docker inspect -f '{{.State.Running}}' "$NAME") == true ]] || fail "the container exited"
        sleep 0.2
    done
    fail "/readyz did not answer 200 within 30 s"
}

# api METHOD PATH [BODY]: the JSON answer; fails on a non-2xx status.
api() {
    local out status
    out=$(curl -s -w '\n%{http_code}' -X "$1" "$BASE$2" -H 'content-type: application/json' ${3:+-d "$3"})
    status=${out##*$'\n'}
    [[ $status == 2* ]] || fail "$1 $2 answered $status: ${out%$'\n'*}"
    printf '%s' "${out%$'\n'*}"
}
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)'"$1"')'; }

wait_state() { # JOB STATES SECONDS
    local state=""
    for _ in $(seq $(($3 * 5))); do
        state=$(api GET "/v1/jobs/$1" | field '["state"]')
        [[ " $2 " == *" $state "* ]] && return 0
        sleep 0.2
    done
    fail "job $1 is $state, not one of: $2"
}

log "1. $IMAGE, $(docker image inspect "$IMAGE" -f '{{.Size}}' | awk '{printf "%.1f MB", $1 / 1e6}'), read-only root, volume $VOLUME"
run
uid=$(docker exec "$NAME" id -u)
[[ $uid == 10001 ]] || fail "the server runs as uid $uid, not 10001"
docker exec "$NAME" sh -c 'touch /usr/local/bin/x' 2>/dev/null && fail "the root file system is writable"
log "   ready; runs as uid $uid; the root file system refuses writes"

log "2. quick start"
ds=$(api POST /v1/datasets '{"generator": {"kind": "xor", "samples": 200, "seed": 1}}' | field '["id"]')
api POST /v1/models '{"name": "xor", "layers": [2, 8, 1], "activation": "tanh", "output": "sigmoid"}' >/dev/null
job=$(api POST /v1/jobs "{\"model\": \"xor\", \"dataset\": \"$ds\", \"epochs\": 200, \"seed\": 7}" | field '["id"]')
wait_state "$job" succeeded 60
rows='{"inputs": [[0, 0], [0, 1], [1, 0], [1, 1]]}'
before=$(api POST /v1/models/xor/predict "$rows" | field '["outputs"]')
big=$(api POST /v1/datasets '{"generator": {"kind": "xor", "samples": 20000, "seed": 2}}' | field '["id"]')
api POST /v1/models '{"name": "wide", "layers": [2, 128, 128, 1], "output": "sigmoid"}' >/dev/null
long=$(api POST /v1/jobs "{\"model\": \"wide\", \"dataset\": \"$big\", \"epochs\": 100000}" | field '["id"]')
wait_state "$long" running 30
log "   trained $job, predicted $before; $long running"

log "3. HEALTHCHECK"
for _ in $(seq 60); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$NAME")
    [[ $health == healthy ]] && break
    sleep 0.5
done
[[ $health == healthy ]] || fail "the health check says $health"
log "   healthy"

log "4. docker stop (SIGTERM, timeout ${STOP_TIMEOUT}s)"
started=$(date +%s.%N)
docker stop -t "$STOP_TIMEOUT" "$NAME" >/dev/null
took=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
code=$(docker inspect -f '{{.State.ExitCode}}' "$NAME")
[[ $code == 0 ]] || fail "the server exited with $code"
log "   exited 0 after ${took}s"
docker rm "$NAME" >/dev/null

log "5. a new container on the same volume"
run
after=$(api POST /v1/models/xor/predict "$rows" | field '["outputs"]')
[[ $after == "$before" ]] || fail "predictions changed: $before → $after"
state=$(api GET "/v1/jobs/$long" | field '["state"]')
[[ $state == interrupted ]] || fail "the long job is $state, not interrupted"
epochs=$(api GET "/v1/jobs/$long/metrics" | field '["epochs"].__len__()')
((epochs > 0)) || fail "the interrupted job kept no history"
[[ $(api GET "/v1/jobs/$job" | field '["state"]') == succeeded ]] || fail "the trained job is gone"
log "   the same predictions; $long interrupted with $epochs epochs of history kept"
log "all checks passed"
