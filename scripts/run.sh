#!/usr/bin/env bash
# The main job on the embedded default: builds shopdiff, generates a workload with the built-in
# generator, replays it through every view with 2 workers and prints the top rows of each view.
# Usage: scripts/run.sh [shopdiff run flags, e.g. --records 1000000 -w 2]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p shopdiff-server
exec target/release/shopdiff run "$@"
