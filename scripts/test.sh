#!/usr/bin/env bash
# The one test command: formatting, lints, every test, the examples, and the public contract
# check with 1, 2 and 4 workers. Works on a fresh machine with the Rust toolchain and python3.
# Usage: scripts/test.sh            (from anywhere in the repository)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --release -- -D warnings

step "cargo build --release (binary, examples, benches)"
cargo build --release --workspace --all-targets

step "private PostgreSQL for the CDC tests (scripts/postgres.sh)"
SHOPDIFF_PG_URL="$(scripts/postgres.sh start)"
export SHOPDIFF_PG_URL
trap 'scripts/postgres.sh stop || true' EXIT

step "cargo test --release"
cargo test --release --workspace

checks="${SHOPDIFF_SHARED:-../shared}/checks/contract-check.sh"
if [ -x "$checks" ] || [ -f "$checks" ]; then
  for w in 1 2 4; do
    step "contract check, $w workers"
    bash "$checks" target/release/shopdiff "$w"
  done
else
  echo "contract check skipped: $checks not found (set SHOPDIFF_SHARED to the shared/ directory)" >&2
  exit 1
fi

step "replay of the committed example stream"
target/release/shopdiff replay examples/data --snapshot target/example-snapshot -w 2
echo
echo "all checks passed"
