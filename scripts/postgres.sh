#!/usr/bin/env bash
# A private PostgreSQL cluster for shopdiff's CDC (logical replication), in .local/pg.
# Usage: scripts/postgres.sh start|stop|status|url|cert
#   start   initdb if needed, start on 127.0.0.1:${PGPORT:-5433} with wal_level=logical, wait
#           until ready, create database "shopdiff", print its URL. Idempotent.
#   stop    stop the cluster (fast shutdown); nothing when it is not running.
#   status  "running <url>" (exit 0) or "stopped" (exit 3).
#   url     print the URL of database "shopdiff".
#   cert    print the path of the test CA that signed the server's certificate (TLS is on:
#           sslmode=require, or verify-full with sslrootcert=<this path>; made with openssl at
#           the first start).
# Environment: PGPORT (default 5433), SHOPDIFF_PG_DIR (default <repo>/.local/pg).
# Needs PostgreSQL 15 server binaries (initdb, pg_ctl); installs the Debian package "postgresql"
# with apt-get only when initdb cannot be found. Runs the server as the "postgres" system user
# when started as root (initdb refuses root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PORT="${PGPORT:-5433}"
DIR="${SHOPDIFF_PG_DIR:-$PWD/.local/pg}"
URL="postgres://postgres@127.0.0.1:${PORT}/shopdiff"

find_bin() {
  local name="$1" p
  if p="$(command -v "$name" 2>/dev/null)"; then echo "$p"; return 0; fi
  for p in /usr/lib/postgresql/*/bin/"$name"; do
    [ -x "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

running() {
  [ -f "$DIR/postmaster.pid" ] && as_pg "$PG_CTL" -D "$DIR" status >/dev/null 2>&1
}

ensure_binaries() {
  if ! INITDB="$(find_bin initdb)"; then
    echo "initdb not found: installing postgresql with apt-get" >&2
    apt-get install -y postgresql >&2
    INITDB="$(find_bin initdb)"
  fi
  PG_CTL="$(find_bin pg_ctl)"
  PG_ISREADY="$(find_bin pg_isready)"
  PSQL="$(find_bin psql)"
}

start() {
  ensure_binaries
  if [ ! -f "$DIR/PG_VERSION" ]; then
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
    chmod 700 "$DIR"
    as_pg "$INITDB" -D "$DIR" -U postgres --auth=trust -E UTF8 --locale=C >"$DIR.initdb.log" 2>&1 ||
      { cat "$DIR.initdb.log" >&2; exit 1; }
  fi
  if [ ! -f "$DIR/ca.crt" ]; then
    # a test CA and the server's certificate it signs (for localhost and 127.0.0.1)
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$DIR.ext"
    { openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=shopdiff test CA" \
        -keyout "$DIR/ca.key" -out "$DIR/ca.crt" &&
      openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$DIR/server.key" -out "$DIR/server.csr" &&
      openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
        -CAcreateserial -days 3650 -extfile "$DIR.ext" -out "$DIR/server.crt"; } \
      >"$DIR.openssl.log" 2>&1 || { cat "$DIR.openssl.log" >&2; exit 1; }
    chmod 600 "$DIR/server.key" "$DIR/ca.key"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR/server.key" "$DIR/server.crt"
  fi
  if ! running; then
    as_pg "$PG_CTL" -D "$DIR" -l "$DIR/log" -w -t 60 -o "-p $PORT -k $DIR \
      -c ssl=on -c ssl_cert_file=$DIR/server.crt -c ssl_key_file=$DIR/server.key \
      -c listen_addresses=127.0.0.1 -c wal_level=logical -c max_replication_slots=32 \
      -c max_wal_senders=32 -c max_connections=100 -c wal_sender_timeout=60s \
      -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null ||
      { tail -20 "$DIR/log" >&2; exit 1; }
  fi
  for _ in $(seq 1 60); do
    "$PG_ISREADY" -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.5
  done
  "$PG_ISREADY" -q -h 127.0.0.1 -p "$PORT" || { echo "postgres not ready on port $PORT" >&2; exit 1; }
  if ! "$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'shopdiff'" | grep -q 1; then
    "$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qc "CREATE DATABASE shopdiff" >/dev/null
  fi
  echo "$URL"
}

stop() {
  ensure_binaries
  if running; then as_pg "$PG_CTL" -D "$DIR" -m fast -w stop >/dev/null; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    ensure_binaries
    if running; then echo "running $URL"; else echo "stopped"; exit 3; fi ;;
  url) echo "$URL" ;;
  cert) echo "$DIR/ca.crt" ;;
  *) echo "usage: $0 start|stop|status|url|cert" >&2; exit 2 ;;
esac
