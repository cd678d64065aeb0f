#!/usr/bin/env bash
# RSS over a live run of 30 simulated days: the live generator at --speed 17280 (a simulated
# day in 5 s) with the same 10,000 customers throughout, sampling `/metrics` every second, and
# printing the resident memory, the state held by the operators and the dedup identities at
# simulated days 10, 20 and 30. Usage: benches/live-month.sh [extra `shopdiff run` flags]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p shopdiff-server >&2
port=$(( 20000 + RANDOM % 20000 ))
target/release/shopdiff run --speed 17280 --volume 0.0022 --users 10000 --products 1000 --history-ms 60000 \
  --http "127.0.0.1:$port" "$@" >/tmp/shopdiff-live-month.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
start=""
declare -A seen=()
for i in $(seq 1 400); do
  sleep 1
  m=$(curl -s "127.0.0.1:$port/metrics" || true)
  as_of=$(echo "$m" | awk '/^shopdiff_as_of_ms /{print $2}')
  if [ -z "$as_of" ] || [ "$as_of" = "-1" ]; then continue; fi
  [ -z "$start" ] && start=$as_of
  day=$(( (as_of - start) / 86400000 ))
  rss=$(echo "$m" | awk '/^shopdiff_process_resident_bytes /{printf "%.0f", $2/1e6}')
  state=$(echo "$m" | awk '/^shopdiff_state_bytes/{s+=$2} END{printf "%.0f", s/1e6}')
  stores=$(echo "$m" | awk '/^shopdiff_view_store_bytes/{s+=$2} END{printf "%.0f", s/1e6}')
  ids=$(echo "$m" | awk '/^shopdiff_dedup_identities/{s+=$2} END{print s}')
  for d in 10 20 30; do
    if [ "$day" -ge "$d" ] && [ -z "${seen[$d]:-}" ]; then
      seen[$d]=1
      echo "day=$d rss_mb=$rss operator_tables_mb=$state store_mb=$stores dedup_identities=$ids"
    fi
  done
  [ "$day" -ge 30 ] && break
done
