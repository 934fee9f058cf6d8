#!/usr/bin/env bash
# A local PostgreSQL for the store's tests: `scripts/postgres.sh install-and-start` installs
# Debian's postgresql if missing, starts a cluster whose data lives under var/pg (as the postgres
# user; no systemd needed), creates the role and database, and prints the URL on its last line:
#   postgresql+psycopg://metascheduler:metascheduler@127.0.0.1:PORT/metascheduler
# Idempotent: a running cluster is reused. `scripts/postgres.sh stop` stops it.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PGDATA="${MS_PG_DATA:-$ROOT/var/pg/data}"
PGPORT="${MS_PG_PORT:-55432}"
PGUSER_NAME=metascheduler
PGDB=metascheduler
PGPASS=metascheduler
LOG="$ROOT/var/pg/postgres.log"

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bindir() {
  local v
  v="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1)"
  [ -n "$v" ] || { echo "postgres.sh: no /usr/lib/postgresql/<version>: install failed?" >&2; exit 1; }
  echo "/usr/lib/postgresql/$v/bin"
}

install() {
  if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    echo "postgres.sh: installing Debian's postgresql" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2; }
  fi
}

start() {
  local bin
  bin="$(pg_bindir)"
  mkdir -p "$(dirname "$PGDATA")"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$(dirname "$PGDATA")"; fi
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >&2
  fi
  if ! as_postgres "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    as_postgres "$bin/pg_ctl" -D "$PGDATA" -l "$LOG" -w -t 30 \
      -o "-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1" start >&2 \
      || { echo "postgres.sh: the server did not start; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
  fi
  local psql=("$bin/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='$PGUSER_NAME'")" != 1 ]; then
    "${psql[@]}" -c "CREATE ROLE $PGUSER_NAME LOGIN PASSWORD '$PGPASS' CREATEDB"
  fi
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='$PGDB'")" != 1 ]; then
    "${psql[@]}" -c "CREATE DATABASE $PGDB OWNER $PGUSER_NAME"
  fi
  echo "postgresql+psycopg://$PGUSER_NAME:$PGPASS@127.0.0.1:$PGPORT/$PGDB"
}

stop() {
  local bin
  bin="$(pg_bindir)"
  if [ -s "$PGDATA/PG_VERSION" ] && as_postgres "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    as_postgres "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >&2
  fi
}

case "${1:-}" in
  install-and-start) install; start ;;
  start) start ;;
  stop) stop ;;
  url) echo "postgresql+psycopg://$PGUSER_NAME:$PGPASS@127.0.0.1:$PGPORT/$PGDB" ;;
  *) echo "usage: $0 install-and-start|start|stop|url" >&2; exit 2 ;;
esac
