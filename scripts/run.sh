#!/usr/bin/env bash
# The main job on the embedded default: builds shopdiff and runs `shopdiff run`: the built-in
# generator live, every view on 2 workers, the HTTP API and the dashboard on
# http://127.0.0.1:8080 (printed at start), until Ctrl-C. The generator first backfills 30
# simulated days of a shop's history (a few seconds), so the dashboard opens on a month of
# segments, cohorts, funnel days and fraud alerts, then goes on live.
# Usage: scripts/run.sh [shopdiff run flags, e.g. --speed 120 -w 2, or --replay examples/data]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! pkg-config --exists libpq 2>/dev/null; then   # the CDC crate links libpq
  apt-get install -y libpq-dev pkg-config >/dev/null || { apt-get update >/dev/null && apt-get install -y libpq-dev pkg-config >/dev/null; }
fi
cargo build --release -p shopdiff-server
backfill=(--backfill-days 30)
for a in "$@"; do
  case "$a" in --replay|--replay=*|--kafka|--kafka=*|--backfill-days|--backfill-days=*|--config|--config=*) backfill=() ;; esac
done
exec target/release/shopdiff run "${backfill[@]}" "$@"
