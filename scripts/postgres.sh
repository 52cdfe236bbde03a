#!/usr/bin/env bash
# A throwaway PostgreSQL server for mlp-lab's tests: Debian's `postgresql` package (installed
# when missing), a cluster initdb'd in a temporary directory as the `postgres` user (the
# server refuses to run as root), listening on a free loopback port and on a unix socket in
# that directory, with a role that has a password and may create databases (each test makes
# its own database and drops it).
#
#   scripts/postgres.sh start        starts one; prints `export …` lines to eval:
#                                      MLP_LAB_TEST_DATABASE_URL   postgres://…/postgres
#                                      MLP_LAB_TEST_PG_DIR         its directory (for `stop`)
#   scripts/postgres.sh stop DIR     stops the server of DIR (from `start`) and removes DIR
#   scripts/postgres.sh down DIR     stops the server of DIR, keeping its data (an outage)
#   scripts/postgres.sh up DIR       starts it again where `down` left it
#   scripts/postgres.sh test [ARGS]  starts one, runs `cargo test --locked ARGS` against it,
#                                    and stops it however the tests end
#
#   eval "$(scripts/postgres.sh start)" && cargo test --locked; scripts/postgres.sh stop "$MLP_LAB_TEST_PG_DIR"
#
# Settings (environment): MLP_LAB_PG_BIN, the server's binaries [the newest of
# /usr/lib/postgresql/*/bin]; MLP_LAB_PG_PORT, the port [a free one].
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

pg_bin() {
    if [[ -n ${MLP_LAB_PG_BIN:-} ]]; then
        echo "$MLP_LAB_PG_BIN"
        return
    fi
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | tail -n 1)
    [[ -n $dir && -x $dir/initdb ]] && echo "$dir"
}

install_if_missing() {
    if [[ -n $(pg_bin) ]]; then
        return
    fi
    if [[ $(id -u) != 0 ]]; then
        log "PostgreSQL is not installed and only root can install it: apt-get install postgresql"
        exit 1
    fi
    log "apt-get install postgresql"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
    [[ -n $(pg_bin) ]] || { log "no initdb after installing postgresql"; exit 1; }
}

# as_postgres CMD...: runs CMD as the postgres user when we are root, as ourselves otherwise.
as_postgres() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_is_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    install_if_missing
    local bin dir port password attempt started=""
    bin=$(pg_bin)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/mlp-lab-pg.XXXXXX")
    chmod 755 "$dir"
    mkdir -p "$dir/data" "$dir/socket"
    if [[ $(id -u) == 0 ]]; then chown -R postgres: "$dir"; fi
    # Hex: no character that a URL would have to escape.
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    printf '%s\n' "$password" >"$dir/password"
    chmod 644 "$dir/password"
    as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    for attempt in 1 2 3 4 5; do
        port=${MLP_LAB_PG_PORT:-$((20000 + RANDOM % 30000))}
        port_is_free "$port" || continue
        # fsync off: a test server that loses its data in a power cut loses nothing of value,
        # and the tests' many small commits go several times faster.
        printf '%s\n' "-c listen_addresses=127.0.0.1 -p $port -k $dir/socket -c fsync=off \
-c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >"$dir/options"
        if as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "$(cat "$dir/options")" start >&2; then
            started=$port
            break
        fi
        log "attempt $attempt on port $port failed:"
        tail -n 5 "$dir/server.log" >&2 || true
        [[ -z ${MLP_LAB_PG_PORT:-} ]] || break
    done
    if [[ -z $started ]]; then
        log "the server did not start"
        exit 1
    fi
    as_postgres "$bin/psql" -h "$dir/socket" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
        -c "CREATE ROLE mlp_lab LOGIN CREATEDB PASSWORD '$password'" >&2
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (dir $dir)"
    echo "export MLP_LAB_TEST_DATABASE_URL=postgres://mlp_lab:$password@127.0.0.1:$port/postgres"
    echo "export MLP_LAB_TEST_PG_DIR=$dir"
}

stop() {
    local dir=${1:-}
    if [[ -z $dir || ! -d $dir/data ]]; then
        log "stop: no server directory given (the MLP_LAB_TEST_PG_DIR that start printed)"
        exit 1
    fi
    local bin
    bin=$(pg_bin)
    if [[ -n $bin ]]; then
        as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

# down DIR / up DIR: an outage of the server of DIR, and its end.
down() {
    [[ -n ${1:-} && -f $1/options ]] || { log "down: no server directory given"; exit 1; }
    as_postgres "$(pg_bin)/pg_ctl" -D "$1/data" -m fast -w stop >&2
}
up() {
    [[ -n ${1:-} && -f $1/options ]] || { log "up: no server directory given"; exit 1; }
    as_postgres "$(pg_bin)/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 \
        -o "$(cat "$1/options")" start >&2
}

case ${1:-} in
    start) start ;;
    stop) stop "${2:-}" ;;
    down) down "${2:-}" ;;
    up) up "${2:-}" ;;
    test)
        shift
        eval "$(start)"
        trap 'stop "$MLP_LAB_TEST_PG_DIR"' EXIT
        cd "$(dirname "${BASH_SOURCE[0]}")/.."
        cargo test --locked "$@"
        ;;
    *)
        sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
