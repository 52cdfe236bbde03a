# shellcheck shell=bash
# Helpers shared by bench/*.sh; sourced, not run.

# A section header.
say() { printf '\n== %s\n' "$*"; }

die() {
    echo "error: $*" >&2
    exit 1
}

# A TCP port that is free on 127.0.0.1 right now.
free_port() {
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Warns when the machine is busy: the figures of a loaded machine are noise.
check_load() {
    local load max=${MAX_LOAD:-1.5}
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" -v m="$max" 'BEGIN { exit !(l > m) }'; then
        echo "warning: load average $load > $max: other work is running, the figures will be noisy"
    else
        echo "load average $load"
    fi
}

# ensure_venv DIR IMPORTS PACKAGES...: a venv at DIR in which `import IMPORTS` works (a
# comma-separated module list), installing PACKAGES with pip only when it does not.
ensure_venv() {
    local dir=$1 imports=$2
    shift 2
    if [[ -x $dir/bin/python ]] && "$dir/bin/python" -c "import $imports" 2>/dev/null; then
        return
    fi
    [[ -x $dir/bin/python ]] || python3 -m venv "$dir"
    echo "pip install $* (into $dir)"
    "$dir/bin/pip" install --quiet --no-input "$@"
}

# wait_ready URL PID [SECONDS]: polls URL until it answers 2xx; fails if PID exits first.
wait_ready() {
    local url=$1 pid=$2 tries=$((${3:-60} * 5))
    for _ in $(seq "$tries"); do
        kill -0 "$pid" 2>/dev/null || return 1
        curl -fsS --max-time 2 -o /dev/null "$url" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

# stop_pid PID: SIGTERM, then SIGKILL after 10 s, for a process this script started.
stop_pid() {
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# The CPU the figures were measured on: its model name (under a hypervisor often only the
# vendor's line, hence the family and model numbers), whether it has AVX-512, and how many
# CPUs this process may use.
cpu_model() {
    local model family number avx512=no
    model=$(LC_ALL=C lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)
    [[ -n $model ]] || model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
    family=$(grep -m1 '^cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
    number=$(grep -m1 '^model[[:space:]]*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
    if grep -m1 '^flags' /proc/cpuinfo | grep -qw avx512f; then avx512=yes; fi
    echo "${model:-unknown CPU} (family ${family:-?} model ${number:-?}, AVX-512 $avx512), $(nproc) CPUs"
}

# The directory cargo builds into (CARGO_TARGET_DIR, a config file, or ./target).
target_dir() {
    cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# Benchmark commands run without the machine's OpenBLAS tuning variables, which halve numpy's
# speed here (unset in the command's environment only, not in the caller's). BENCH_ENV also
# holds every thread pool at one thread; BENCH_ENV_ALL_THREADS leaves each tool its default.
# shellcheck disable=SC2034 # used by the scripts that source this file
BENCH_ENV_ALL_THREADS=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
# shellcheck disable=SC2034
BENCH_ENV=("${BENCH_ENV_ALL_THREADS[@]}" OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1)

# The environment of a server measured with its default flags: BENCH_ENV_ALL_THREADS without
# any MLP_LAB_* variable of the caller's, each of which would stand in for a flag.
server_env() {
    SERVER_ENV=("${BENCH_ENV_ALL_THREADS[@]}")
    local var
    while read -r var; do
        SERVER_ENV+=(-u "$var")
    done < <(compgen -e | grep '^MLP_LAB_' || true)
}
