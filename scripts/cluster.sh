#!/usr/bin/env bash
# A shopdiff cluster of N processes with W workers each: timely's own cluster mode (one
# hostfile, `--processes/--process/--hostfile`), every process serving the whole API.
#
#   scripts/cluster.sh start N W [-- RUN_FLAGS...]   start N processes of W workers; RUN_FLAGS go
#                                                   to every `shopdiff run` (e.g. --replay DIR)
#   scripts/cluster.sh start                         after a crash: report the dead processes,
#                                                   stop the survivors, start every process again
#                                                   with the saved settings (state is rebuilt by
#                                                   replaying the sources from their start or
#                                                   committed positions)
#   scripts/cluster.sh stop                          stop every process (SIGTERM, then SIGKILL)
#   scripts/cluster.sh status                        each process: alive?, /health, /ready
#   scripts/cluster.sh urls                          the HTTP address of each process
#
# Process i listens for the others on 127.0.0.1:$((SHOPDIFF_CLUSTER_PORT + i)) (default 2101)
# and serves HTTP on 127.0.0.1:$((SHOPDIFF_HTTP_PORT + i)) (default 8080). Process 0 reads the
# sources (replay files, Kafka, PostgreSQL) and writes the sink; every process holds a shard of
# the state and answers reads and subscriptions for the whole cluster.
#
# Several machines: give every machine the same hostfile (one host:port per process, by index)
# in SHOPDIFF_HOSTFILE and list the indices to run on this machine in SHOPDIFF_PROCESSES_HERE
# (for example "0 1" here and "2 3" on the other machine); add `--http 0.0.0.0:8080 --token
# TOKEN=*` to RUN_FLAGS to serve beyond loopback. State (pid files, logs, settings) is in
# SHOPDIFF_CLUSTER_DIR (default .local/cluster).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${SHOPDIFF_CLUSTER_DIR:-$ROOT/.local/cluster}"
BIN="${SHOPDIFF_BIN:-$ROOT/target/release/shopdiff}"
SETTINGS="$DIR/settings"
mkdir -p "$DIR"

die() { echo "cluster.sh: $*" >&2; exit 2; }

load() {
    [[ -f "$SETTINGS" ]] || die "no cluster was started here (no $SETTINGS): scripts/cluster.sh start N W [-- RUN_FLAGS]"
    # shellcheck disable=SC1090
    source "$SETTINGS"
}

pid_of() { cat "$DIR/p$1.pid" 2>/dev/null || true; }
# alive and not a zombie (a killed process may wait a while for its reaper)
alive() {
    local p state
    p=$(pid_of "$1")
    [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null || return 1
    state=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null || echo "?")
    [[ "$state" != Z ]]
}
http_port() { echo $((HTTP_BASE + $1)); }

# GET a local URL; prints "STATUS BODY" (STATUS 000 when nothing answers)
get() {
    local port=$1 path=$2 out
    if command -v curl >/dev/null 2>&1; then
        out=$(curl -s -m 5 -w '\n%{http_code}' "http://127.0.0.1:$port$path" 2>/dev/null || true)
        echo "$(tail -n1 <<<"$out") $(sed '$d' <<<"$out" | head -c 300)"
        return
    fi
    # no curl: bash's /dev/tcp
    out=$( { exec 3<>"/dev/tcp/127.0.0.1/$port" &&
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3 && timeout 5 cat <&3; } 2>/dev/null || true)
    local status body
    status=$(printf '%s' "$out" | head -n1 | awk '{print $2}')
    body=$(printf '%s' "$out" | awk 'BEGIN{b=0} b{print} /^\r?$/{b=1}' | tr -d '\r' | head -c 300)
    echo "${status:-000} $body"
}

here() {
    if [[ -n "${PROCESSES_HERE:-}" ]]; then echo "$PROCESSES_HERE"; else seq 0 $((N - 1)); fi
}

start_all() {
    [[ -x "$BIN" ]] || { echo "building shopdiff (cargo build --release -p shopdiff-server)"; (cd "$ROOT" && cargo build --release -p shopdiff-server); }
    local i
    for i in $(here); do
        : >"$DIR/p$i.log"
        setsid "$BIN" run -w "$W" --processes "$N" --process "$i" --hostfile "$HOSTFILE" \
            --http "127.0.0.1:$(http_port "$i")" ${RUN_FLAGS[@]+"${RUN_FLAGS[@]}"} >>"$DIR/p$i.log" 2>&1 &
        echo $! >"$DIR/p$i.pid"
    done
    # wait until every local process answers HTTP (the engine may still be connecting)
    local deadline=$((SECONDS + 60)) pending
    while :; do
        pending=0
        for i in $(here); do
            if ! alive "$i"; then
                echo "process $i exited at start; last lines of $DIR/p$i.log:" >&2
                tail -n 20 "$DIR/p$i.log" >&2
                stop_all
                exit 1
            fi
            [[ "$(get "$(http_port "$i")" /health)" == 000* ]] && pending=1
        done
        [[ $pending == 0 ]] && break
        if ((SECONDS > deadline)); then
            echo "the processes did not answer HTTP within 60 s; logs in $DIR" >&2
            exit 1
        fi
        sleep 0.2
    done
    for i in $(here); do
        echo "process $i (pid $(pid_of "$i")): http://127.0.0.1:$(http_port "$i")/  log $DIR/p$i.log"
    done
}

stop_all() {
    local i p
    for i in $(seq 0 $((N - 1))); do
        alive "$i" && kill -TERM "$(pid_of "$i")" 2>/dev/null || true
    done
    for _ in $(seq 1 100); do
        local any=0
        for i in $(seq 0 $((N - 1))); do alive "$i" && any=1; done
        [[ $any == 0 ]] && break
        sleep 0.1
    done
    for i in $(seq 0 $((N - 1))); do
        p=$(pid_of "$i")
        if [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
        rm -f "$DIR/p$i.pid"
    done
}

status() {
    local i down=0 p
    for i in $(seq 0 $((N - 1))); do
        p=$(pid_of "$i")
        if alive "$i"; then
            echo "process $i: running (pid $p), http://127.0.0.1:$(http_port "$i") health: $(get "$(http_port "$i")" /health) ready: $(get "$(http_port "$i")" /ready)"
        elif [[ -n "${PROCESSES_HERE:-}" ]] && ! grep -qw "$i" <<<"$PROCESSES_HERE"; then
            echo "process $i: on another machine"
        elif [[ -z "$p" ]]; then
            down=1
            echo "process $i: stopped"
        else
            down=1
            echo "process $i: DOWN${p:+ (pid $p is gone)}; last lines of $DIR/p$i.log:"
            tail -n 3 "$DIR/p$i.log" 2>/dev/null | sed 's/^/    /'
        fi
    done
    return $down
}

cmd="${1:-status}"
shift || true
case "$cmd" in
    start)
        if [[ $# -ge 2 ]]; then
            if [[ -f "$SETTINGS" ]]; then
                load
                for i in $(seq 0 $((N - 1))); do
                    alive "$i" && die "a cluster is running here (process $i, pid $(pid_of "$i")): scripts/cluster.sh stop first"
                done
            fi
            N=$1 W=$2
            shift 2
            [[ "${1:-}" == "--" ]] && shift
            [[ "$N" =~ ^[1-9][0-9]*$ && "$W" =~ ^[1-9][0-9]*$ ]] || die "N and W must be positive numbers: start N W [-- RUN_FLAGS]"
            HTTP_BASE="${SHOPDIFF_HTTP_PORT:-8080}"
            PROCESSES_HERE="${SHOPDIFF_PROCESSES_HERE:-}"
            if [[ -n "${SHOPDIFF_HOSTFILE:-}" ]]; then
                HOSTFILE="$(cd "$(dirname "$SHOPDIFF_HOSTFILE")" && pwd)/$(basename "$SHOPDIFF_HOSTFILE")"
                lines=$(grep -cvE '^\s*(#|$)' "$HOSTFILE" || true)
                [[ "$lines" -ge "$N" ]] || die "$HOSTFILE has $lines address(es) for $N processes"
            else
                HOSTFILE="$DIR/hosts.txt"
                base="${SHOPDIFF_CLUSTER_PORT:-2101}"
                : >"$HOSTFILE"
                for i in $(seq 0 $((N - 1))); do echo "127.0.0.1:$((base + i))" >>"$HOSTFILE"; done
            fi
            RUN_FLAGS=("$@")
            {
                printf 'N=%q\nW=%q\nHTTP_BASE=%q\nHOSTFILE=%q\nPROCESSES_HERE=%q\n' \
                    "$N" "$W" "$HTTP_BASE" "$HOSTFILE" "$PROCESSES_HERE"
                declare -p RUN_FLAGS | sed "s/^declare -a/declare -ga/"
            } >"$SETTINGS"
            echo "starting $N process(es) x $W worker(s); hostfile $HOSTFILE"
            start_all
        elif [[ $# -eq 0 ]]; then
            load
            dead=()
            live=()
            stopped=()
            for i in $(here); do
                if ! alive "$i"; then
                    dead+=("$i")
                elif [[ "$(get "$(http_port "$i")" /health)" == 503* ]]; then
                    # alive, but its engine stopped: a peer (maybe on another machine) died
                    stopped+=("$i")
                else
                    live+=("$i")
                fi
            done
            if [[ ${#dead[@]} -eq 0 && ${#stopped[@]} -eq 0 ]]; then
                echo "every process is running"
                status || true
                exit 0
            fi
            if [[ ${#dead[@]} -eq 0 ]]; then
                echo "process(es) ${stopped[*]} report a lost peer; restarting them (start the other machines' processes again too)"
            elif [[ $((${#live[@]} + ${#stopped[@]})) -gt 0 ]]; then
                echo "process(es) ${dead[*]} are down; a timely cluster cannot take a process back, so the survivors (${live[*]} ${stopped[*]}) are stopped and every process starts again"
            else
                echo "starting the cluster again"
            fi
            stop_all
            echo "restarting $N process(es) x $W worker(s); state is rebuilt from the sources"
            start_all
        else
            die "usage: start N W [-- RUN_FLAGS]  (or start with no arguments to restart)"
        fi
        ;;
    stop)
        load
        stop_all
        echo "stopped"
        ;;
    status)
        load
        status
        ;;
    urls)
        load
        for i in $(here); do echo "http://127.0.0.1:$(http_port "$i")"; done
        ;;
    *)
        die "unknown command $cmd (start | stop | status | urls)"
        ;;
esac
