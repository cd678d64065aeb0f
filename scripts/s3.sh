#!/usr/bin/env bash
# A local S3-compatible server (moto) for the sink tests: start | stop | status.
# moto is installed once into .local/moto-venv (ignored by git); the server keeps its state in
# memory, so a restart starts from an empty store. Environment:
#   S3_PORT   (default 5055)            S3_BUCKET (default shopdiff-test, created on start)
# `start` prints the endpoint and the variables the tests read:
#   SHOPDIFF_S3_ENDPOINT=http://127.0.0.1:5055 SHOPDIFF_S3_BUCKET=shopdiff-test
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD/.local"
venv="$root/moto-venv"
pidfile="$root/moto.pid"
log="$root/moto.log"
port="${S3_PORT:-5055}"
bucket="${S3_BUCKET:-shopdiff-test}"
endpoint="http://127.0.0.1:$port"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
answers() { curl -s -o /dev/null "$endpoint/" 2>/dev/null; }

install() {
  if [ -x "$venv/bin/moto_server" ]; then return; fi
  echo "installing moto[server] into $venv" >&2
  mkdir -p "$root"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]"
}

start() {
  install
  if running; then
    echo "moto already running (pid $(cat "$pidfile"))" >&2
  else
    if answers; then
      echo "port $port already answers but not with our moto: set S3_PORT" >&2
      exit 1
    fi
    mkdir -p "$root"
    nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      answers && break
      if ! running; then
        echo "moto_server exited; its log ($log):" >&2
        tail -20 "$log" >&2
        exit 1
      fi
      sleep 0.2
    done
    answers || { echo "moto_server did not answer on $endpoint within 20 s" >&2; exit 1; }
  fi
  curl -sf -X PUT "$endpoint/$bucket" >/dev/null || {
    echo "cannot create bucket $bucket at $endpoint" >&2
    exit 1
  }
  echo "SHOPDIFF_S3_ENDPOINT=$endpoint SHOPDIFF_S3_BUCKET=$bucket"
}

stop() {
  if running; then
    kill "$(cat "$pidfile")"
    for _ in $(seq 1 50); do running || break; sleep 0.1; done
    echo "moto stopped" >&2
  else
    echo "moto not running" >&2
  fi
  rm -f "$pidfile"
}

status() {
  if running && answers; then
    echo "moto running (pid $(cat "$pidfile")) at $endpoint"
  elif running; then
    echo "moto process $(cat "$pidfile") alive but not answering at $endpoint"
    exit 1
  else
    echo "moto not running"
    exit 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
