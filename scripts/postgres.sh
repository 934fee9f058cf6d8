#!/usr/bin/env bash
# A local PostgreSQL for the store's tests, one cluster per clone of this repo:
#
#   bash scripts/postgres.sh install-and-start   # install if missing, start, print the URL last
#   bash scripts/postgres.sh stop                # stop this clone's cluster
#   bash scripts/postgres.sh remove              # stop it and delete its data
#   bash scripts/postgres.sh url                 # print the URL
#
# The URL looks like postgresql+psycopg://metascheduler:metascheduler@127.0.0.1:PORT/metascheduler.
#
# Where the data lives: the server runs as the `postgres` user, which cannot enter a clone in a
# private (0700) folder such as a home folder. So when run as root the cluster lives in
# /var/lib/postgresql/metascheduler/<clone name>-<hash of the clone's path>/ (owned by postgres,
# with a `clone` file naming the clone and a `port` file); run as another user, the server runs
# as that user and the cluster lives in the clone's var/pg. MS_PG_DATA overrides the data folder.
#
# Which port: the one this clone used last, else MS_PG_PORT (default 55432). A running cluster is
# reused only when it is this clone's and answers. A port held by a cluster whose clone was
# deleted is freed (that cluster is stopped); a port held by anything else is left alone and the
# next port is taken. Every such decision is said on stderr; stdout carries only the URL.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/daemons.sh
. "$ROOT/scripts/daemons.sh"

DEFAULT_PORT="${MS_PG_PORT:-55432}"
PGUSER_NAME=metascheduler
PGDB=metascheduler
PGPASS=metascheduler
#: Clusters kept for clones, when run as root.
BASE=/var/lib/postgresql/metascheduler
#: Where clusters lived before they moved out of the clone (reused while one runs there).
LEGACY="$ROOT/var/pg/data"

say() { printf '[postgres.sh] %s\n' "$*" >&2; }
die() {
    printf '[postgres.sh] error: %s\n' "$*" >&2
    exit 1
}

is_root() { [[ "$(id -u)" == 0 ]]; }

# Runs a command as the server's user, from / (the caller's folder may be closed to postgres).
as_postgres() {
    if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_bindir() {
    local v
    v="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -1)"
    [[ -n "$v" ]] || die "no /usr/lib/postgresql/<version>: did the install fail?"
    echo "/usr/lib/postgresql/$v/bin"
}

install_postgres() {
    if ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; then
        say "installing Debian's postgresql"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
    fi
}

# This clone's state folder (data, log, port) and data folder.
if [[ -n "${MS_PG_DATA:-}" ]]; then
    PGDATA="$MS_PG_DATA"
    STATE="$(dirname "$PGDATA")"
elif is_root; then
    STATE="$BASE/$(basename "$ROOT")-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
    PGDATA="$STATE/data"
else
    STATE="$ROOT/var/pg"
    PGDATA="$STATE/data"
fi
LOG="$STATE/postgres.log"

psql_at() {
    "$(pg_bindir)/psql" -h 127.0.0.1 -p "$1" -U postgres -v ON_ERROR_STOP=1 -qtA -c "$2"
}

# The port of a postmaster running from data folder $1: its postmaster.pid names a live postgres
# (after a reboot the file may name a pid that some other process now has).
running_port() {
    local pidfile="$1/postmaster.pid" pid
    [[ -r "$pidfile" ]] || return 1
    pid="$(sed -n 1p "$pidfile")"
    alive_pid "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == postgres ]] || return 1
    sed -n 4p "$pidfile"
}

# Whether the server on port $1 answers and serves data folder $2.
serves() {
    local dir
    dir="$(psql_at "$1" 'SHOW data_directory' 2>/dev/null)" || return 1
    [[ "$(realpath -m "$dir")" == "$(realpath -m "$2")" ]]
}

# Stops a postmaster at once (its clients are cut off; nothing of a deleted clone is worth a
# checkpoint) and waits for it to go.
stop_postmaster() {
    local pid="$1"
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        alive_pid "$pid" || return 0
        sleep 0.2
    done
    stop_pid "$pid" 5
}

# The clone a cluster folder belongs to, or nothing if unknown.
clone_of_state() {
    [[ -r "$1/clone" ]] && head -n1 "$1/clone"
}

clone_exists() {
    [[ -f "$1/scripts/postgres.sh" ]]
}

# Stops and deletes the clusters kept for clones that no longer exist.
sweep_deleted_clones() {
    local dir clone pid port
    [[ -d "$BASE" ]] || return 0
    for dir in "$BASE"/*/; do
        dir="${dir%/}"
        [[ -d "$dir" ]] || continue
        clone="$(clone_of_state "$dir" || true)"
        [[ -n "$clone" ]] && ! clone_exists "$clone" || continue
        if port="$(running_port "$dir/data")"; then
            pid="$(sed -n 1p "$dir/data/postmaster.pid")"
            say "stopping the cluster of deleted clone $clone (pid $pid, port $port)"
            stop_postmaster "$pid"
        fi
        say "removing the data of deleted clone $clone ($dir)"
        rm -rf "$dir"
    done
}

# Whether postmaster $1 belongs to a clone that is gone: its data folder was deleted, or its
# state folder names a clone that no longer exists.
postmaster_of_deleted_clone() {
    local cwd clone
    [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == postgres ]] || return 1
    cwd="$(readlink "/proc/$1/cwd" 2>/dev/null)" || return 1
    [[ "$cwd" == *" (deleted)" || ! -d "$cwd" ]] && return 0
    clone="$(clone_of_state "$(dirname "$cwd")" || true)"
    [[ -n "$clone" ]] && ! clone_exists "$clone"
}

# Picks a free port for this clone, freeing one held by a deleted clone's cluster.
pick_port() {
    local first port pid
    first="$DEFAULT_PORT"
    if [[ -z "${MS_PG_PORT:-}" && -r "$STATE/port" ]]; then first="$(cat "$STATE/port")"; fi
    for port in $(seq "$first" $((first + 20))); do
        if ! pid="$(listener_pid "$port")"; then
            echo "$port"
            return
        fi
        if [[ "$pid" != "?" ]] && postmaster_of_deleted_clone "$pid"; then
            say "port $port is held by the cluster of a deleted clone (pid $pid): stopping it"
            stop_postmaster "$pid"
            if wait_port_free "$port"; then
                echo "$port"
                return
            fi
        fi
        say "port $port is held by pid $pid ($(cmdline_of "$pid" | cut -c1-120)): trying $((port + 1))"
    done
    die "no free port in $first..$((first + 20))"
}

ensure_database() {
    local port="$1"
    if [[ "$(psql_at "$port" "SELECT 1 FROM pg_roles WHERE rolname='$PGUSER_NAME'")" != 1 ]]; then
        psql_at "$port" "CREATE ROLE $PGUSER_NAME LOGIN PASSWORD '$PGPASS' CREATEDB" >&2
    fi
    if [[ "$(psql_at "$port" "SELECT 1 FROM pg_database WHERE datname='$PGDB'")" != 1 ]]; then
        psql_at "$port" "CREATE DATABASE $PGDB OWNER $PGUSER_NAME" >&2
    fi
}

url_for() {
    echo "postgresql+psycopg://$PGUSER_NAME:$PGPASS@127.0.0.1:$1/$PGDB"
}

start() {
    local bin dir port pid
    bin="$(pg_bindir)"
    if is_root; then sweep_deleted_clones; fi
    for dir in "$PGDATA" "$LEGACY"; do
        port="$(running_port "$dir")" || continue
        if serves "$port" "$dir"; then
            say "reusing this clone's cluster on port $port ($dir)"
            ensure_database "$port"
            url_for "$port"
            return
        fi
        pid="$(sed -n 1p "$dir/postmaster.pid")"
        say "this clone's cluster (pid $pid, $dir) does not answer on port $port: stopping it"
        stop_postmaster "$pid"
    done
    port="$(pick_port)"
    if is_root; then
        install -d -o postgres -g postgres -m 0755 "$(dirname "$STATE")"
        install -d -o postgres -g postgres -m 0700 "$STATE"
    else
        mkdir -p "$STATE"
    fi
    if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
        say "creating a cluster in $PGDATA"
        as_postgres "$bin/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >"$STATE/initdb.log" \
            || die "initdb failed; see $STATE/initdb.log"
    fi
    printf '%s\n' "$ROOT" >"$STATE/clone"
    printf '%s\n' "$port" >"$STATE/port"
    say "starting the cluster in $PGDATA on port $port"
    as_postgres "$bin/pg_ctl" -D "$PGDATA" -l "$LOG" -w -t 30 \
        -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >&2 \
        || { tail -20 "$LOG" >&2; die "the server did not start; see $LOG"; }
    serves "$port" "$PGDATA" || die "port $port does not answer with this clone's cluster; see $LOG"
    ensure_database "$port"
    url_for "$port"
}

stop() {
    local dir port
    for dir in "$PGDATA" "$LEGACY"; do
        port="$(running_port "$dir")" || continue
        say "stopping this clone's cluster on port $port ($dir)"
        as_postgres "$(pg_bindir)/pg_ctl" -D "$dir" -m fast -w stop >&2
    done
}

remove() {
    stop
    if [[ -d "$STATE" ]]; then
        say "deleting $STATE"
        rm -rf "$STATE"
    fi
}

url() {
    local port
    port="$(running_port "$PGDATA" || running_port "$LEGACY" || cat "$STATE/port" 2>/dev/null \
        || echo "$DEFAULT_PORT")"
    url_for "$port"
}

case "${1:-}" in
    install-and-start)
        install_postgres
        start
        ;;
    start) start ;;
    stop) stop ;;
    remove) remove ;;
    url) url ;;
    *)
        echo "usage: $0 install-and-start|start|stop|remove|url" >&2
        exit 2
        ;;
esac
