#!/usr/bin/env bash
# End-to-end test of the dashboard in headless Chromium (Debian's `chromium`, installed here
# when missing). Two runs of the real binary:
#   1. `shopdiff run --replay examples/data`: once the replay is over the page must show exactly
#      the API's numbers (revenue total, customers, active alerts, data-quality records).
#   2. `shopdiff run` (live generator): numbers appear and change between two loads.
# Usage: scripts/dashboard-e2e.sh [--screenshot FILE.png]   (needs target/release/shopdiff)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shot=""
if [ "${1:-}" = "--screenshot" ]; then shot="${2:?--screenshot needs a file}"; fi
bin=target/release/shopdiff
[ -x "$bin" ] || cargo build --release -p shopdiff-server

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian package)"
  (apt-get install -y chromium >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null))
fi

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() {
  for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$1/ready" >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "server on port $1 never became ready" >&2; return 1
}

# playwright-core drives the machine's chromium (no browser download)
e2e=scripts/e2e
if [ ! -d "$e2e/node_modules/playwright-core" ]; then
  (cd "$e2e" && npm install --no-audit --no-fund --silent >/dev/null)
fi
page() { # url wait_ms [screenshot] -> JSON of what the page shows at two moments
  node "$e2e/dashboard.mjs" "$@"
}

# 1. replay: the page equals the API
port=$(free_port)
"$bin" run --replay examples/data --http "127.0.0.1:$port" -w 2 >"$tmp/replay.log" 2>&1 &
pids+=($!)
wait_ready "$port"
for _ in $(seq 1 300); do grep -q "still serving" "$tmp/replay.log" && break; sleep 0.1; done
sleep 0.5
page "http://127.0.0.1:$port/" 500 > "$tmp/replay.json"
python3 - "$port" "$tmp/replay.json" <<'EOF'
import json, re, sys, urllib.request
port, path = sys.argv[1], sys.argv[2]
shown = json.load(open(path))
assert not shown["errors"], shown["errors"]
page = shown["second"]
def api(q):
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}{q}"))
def text(id_):
    return page[id_.replace("-", "_")]
def fmt(x):  # the page's en-US number format (max 2 decimals)
    s = f"{x:,.2f}".rstrip("0").rstrip(".")
    return s
rev = api("/v1/views/revenue_hourly?dimension=total")["rows"]
want_rev = fmt(sum(int(r["net"].replace(".", "")) for r in rev) / 100)
assert text("revenue-total") == want_rev, (text("revenue-total"), want_rev)
segs = api("/v1/views/rfm_segments")["rows"]
want_cust = f'{sum(r["customers"] for r in segs):,} customers'
assert text("customers-total") == want_cust, (text("customers-total"), want_cust)
alerts = api("/v1/views/fraud_alerts")["rows"]
assert text("alerts-count") == str(len(alerts)), (text("alerts-count"), len(alerts))
q = api("/v1/views/data_quality")["rows"]
allr = sum(r["records"] for r in q); bad = sum(r["records"] for r in q if r["reason"] != "accepted")
want_q = f"{allr:,} records, {bad:,} not accepted"
assert text("quality-total") == want_q, (text("quality-total"), want_q)
as_of = api("/ready")["as_of"]
assert page["as_of"] == as_of, (page["as_of"], as_of)
assert page["segments"] > 0 and page["cohort_cells"] > 0 and page["revenue_bars"] > 0, page
print(f"replay: page matches the API at as_of {as_of}: revenue {want_rev}, {want_cust}, {len(alerts)} alerts, {want_q}")
EOF
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true

# 2. live: numbers appear and change
port=$(free_port)
"$bin" run --http "127.0.0.1:$port" -w 2 --speed 120 >"$tmp/live.log" 2>&1 &
pids+=($!)
wait_ready "$port"
sleep 2
page "http://127.0.0.1:$port/" 4000 $shot > "$tmp/live.json"
python3 - "$tmp/live.json" <<'EOF'
import json, sys
shown = json.load(open(sys.argv[1]))
assert not shown["errors"], shown["errors"]
a, b = shown["first"], shown["second"]
n = lambda s: int(s.split()[0].replace(",", ""))
assert n(a["sessions"]) > 0, a
assert b["as_of"] > a["as_of"], f"as_of did not advance: {a} {b}"
assert n(b["sessions"]) > n(a["sessions"]), f"sessions did not grow: {a} {b}"
assert b["status"] == "live", b
print(f"live: as_of {a['as_of']} -> {b['as_of']}, {a['customers_total']} -> {b['customers_total']}, sessions {a['sessions']} -> {b['sessions']}, {b['alerts_count']} active alerts")
EOF
if [ -n "$shot" ]; then echo "screenshot written to $shot"; fi
echo "dashboard e2e passed"
