#!/usr/bin/env bash
# Local Kafka-protocol broker (tansu) for shopdiff development and tests.
#
#   scripts/kafka.sh install   # cargo install tansu (only when not on PATH)
#   scripts/kafka.sh start     # run tansu on 127.0.0.1:${KAFKA_PORT:-9092}, create topics
#   scripts/kafka.sh stop      # stop it
#   scripts/kafka.sh status    # is it running and answering?
#
# State lives in .local/kafka/ (git-ignored): sqlite database, pid file, logs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.local/kafka"
PORT="${KAFKA_PORT:-9092}"
HOST=127.0.0.1
PIDFILE="$DIR/tansu.pid"
LOG="$DIR/tansu.log"
TOPICS="${KAFKA_TOPICS:-transactions behavior fraud_alerts dead_letters}"
PARTITIONS="${KAFKA_PARTITIONS:-4}"
mkdir -p "$DIR"
export PATH="$HOME/.cargo/bin:$PATH"

install() {
    if command -v tansu >/dev/null 2>&1; then
        echo "tansu already installed: $(command -v tansu)"
        return 0
    fi
    echo "installing tansu (takes ~20 minutes); log: $DIR/install.log"
    # No CARGO_TARGET_DIR: let cargo install build in its own temporary dir.
    if ! env -u CARGO_TARGET_DIR cargo install tansu --locked --features libsql >"$DIR/install.log" 2>&1; then
        echo "tansu install FAILED; last lines of $DIR/install.log:" >&2
        tail -n 30 "$DIR/install.log" >&2
        return 1
    fi
    echo "tansu installed: $(command -v tansu)"
}

running() {
    [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

answers() {
    # The broker accepts TCP connections on its port.
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

create_topics() {
    local t out
    for t in $TOPICS; do
        if out=$(tansu topic create "$t" --partitions "$PARTITIONS" --broker "tcp://$HOST:$PORT" 2>&1); then
            echo "topic $t created ($PARTITIONS partitions)"
        elif grep -qiE 'exist' <<<"$out"; then
            echo "topic $t exists"
        else
            echo "topic $t: $out" >&2
        fi
    done
}

start() {
    if ! command -v tansu >/dev/null 2>&1; then
        echo "tansu is not installed: run scripts/kafka.sh install" >&2
        return 1
    fi
    if running; then
        echo "tansu already running (pid $(cat "$PIDFILE")) on $HOST:$PORT"
    else
        (
            cd "$DIR"
            # sqlite storage: the path is relative to the data dir (cwd).
            nohup tansu broker \
                --storage-engine "sqlite://tansu.db" \
                --listener-url "tcp://$HOST:$PORT" \
                --advertised-listener-url "tcp://$HOST:$PORT" \
                >>"$LOG" 2>&1 &
            echo $! >"$PIDFILE"
        )
        local i
        for i in $(seq 1 100); do
            if answers; then break; fi
            if ! running; then
                echo "tansu exited at start; last lines of $LOG:" >&2
                tail -n 30 "$LOG" >&2
                return 1
            fi
            sleep 0.2
        done
        if ! answers; then
            echo "tansu does not answer on $HOST:$PORT; see $LOG" >&2
            return 1
        fi
        echo "tansu started (pid $(cat "$PIDFILE")) on $HOST:$PORT"
    fi
    create_topics
}

stop() {
    if running; then
        local pid
        pid="$(cat "$PIDFILE")"
        kill "$pid"
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "tansu stopped (pid $pid)"
    else
        echo "tansu not running"
    fi
    rm -f "$PIDFILE"
}

status() {
    if running && answers; then
        echo "tansu running (pid $(cat "$PIDFILE")) on $HOST:$PORT"
    elif running; then
        echo "tansu process $(cat "$PIDFILE") alive but not answering on $HOST:$PORT"
        return 1
    else
        echo "tansu not running"
        return 1
    fi
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
