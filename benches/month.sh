#!/usr/bin/env bash
# A shop's month, side by side in one run: shopdiff (all ten views, 2 workers) and DuckDB (three
# views, from scratch) on the same recorded stream of 100,000 customers, 5,000 products and 30
# days (~4.7M records), generated once into .local/month; then shopdiff's 1,000-line updates.
# Usage: benches/month.sh [DIR]     (DIR: another recorded stream instead)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=${1:-.local/month}
cargo build --release -p shopdiff-server -p shopdiff-benches >&2
if [ ! -f "$dir/behavior.jsonl" ]; then
  target/release/shopdiff generate --out "$dir" --users 100000 --products 5000 --days 30 \
    --bad-rate 0.001 --duplicate-rate 0.001 --late-rate 0.0005 >&2
fi
venv=.local/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb >&2
fi
target/release/replay "$dir" -w 2
"$venv/bin/python" benches/duckdb/month.py "$dir"
target/release/replay "$dir" -w 2 --updates 30 | head -1
