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

step "Kafka broker for server/tests/kafka.rs (tansu; the first install takes ~20 minutes)"
scripts/kafka.sh install
scripts/kafka.sh start
trap 'scripts/kafka.sh stop' EXIT
export SHOPDIFF_KAFKA="127.0.0.1:${KAFKA_PORT:-9092}" SHOPDIFF_KAFKA_RESTART=1

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
