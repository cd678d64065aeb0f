#!/usr/bin/env bash
# End-to-end check of `shopdiff run --sink`: DuckDB's read_parquet over the committed files gives
# the same rows as the HTTP API at the same as_of, for every view, for a local directory and
# (when scripts/s3.sh runs: SHOPDIFF_S3_ENDPOINT and SHOPDIFF_S3_BUCKET are set) for an S3 bucket.
# Usage: scripts/sink-e2e.sh   (needs target/release/shopdiff and scripts/s3.sh's virtualenv)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=target/release/shopdiff
py=.local/moto-venv/bin/python
[ -x "$bin" ] || cargo build --release -p shopdiff-server
if [ ! -x "$py" ]; then scripts/s3.sh install >/dev/null; fi
"$py" -c "import duckdb" 2>/dev/null || .local/moto-venv/bin/pip install -q duckdb
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

check() { # target local-dir-to-read
  local target=$1 dir=$2 port
  port=$(free_port)
  "$bin" run --replay examples/data --batch 40 --sink "$target" --sink-commit-ms 300000 --http "127.0.0.1:$port" -w 2 --exit-after 30 \
    >"$tmp/run.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do grep -q "still serving" "$tmp/run.log" && break; sleep 0.1; done
  sleep 0.5
  curl -sf "http://127.0.0.1:$port/v1/views" >"$tmp/views.json"
  for v in $("$py" -c 'import json,sys; print(" ".join(v["name"] for v in json.load(open(sys.argv[1]))["views"]))' "$tmp/views.json"); do
    curl -sf "http://127.0.0.1:$port/v1/views/$v" >"$tmp/api-$v.json"
  done
  kill -INT "$pid"; wait "$pid" || true
  if [ "$target" != "$dir" ]; then
    "$py" - "$target" "$dir" <<'EOF'
import os, sys, boto3
target, out = sys.argv[1], sys.argv[2]
bucket, _, prefix = target[len("s3://"):].partition("/")
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
                  aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
                  aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"))
n = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    for o in page.get("Contents", []):
        rel = o["Key"][len(prefix) + 1:]
        os.makedirs(os.path.join(out, os.path.dirname(rel)), exist_ok=True)
        s3.download_file(bucket, o["Key"], os.path.join(out, rel))
        n += 1
print(f"downloaded {n} objects from {target}")
EOF
  fi
  "$py" - "$dir" "$tmp" <<'EOF'
import datetime, decimal, glob, json, os, sys
import duckdb
sys.path.insert(0, "scripts")
root, tmp = sys.argv[1], sys.argv[2]
names = sorted(glob.glob(os.path.join(root, "_manifest", "MANIFEST-*.json")))
live, committed = {}, None
for i, name in enumerate(names):
    m = json.load(open(name))
    assert m["sequence"] == i, name
    for p in m["removed"]:
        live.pop(p)
    for e in m["added"]:
        live[e["path"]] = e
    committed = m["committed_as_of"]
views = json.load(open(os.path.join(tmp, "views.json")))["views"]
con = duckdb.connect()
def norm(v):
    if v is None: return None
    if isinstance(v, bool): return v
    if isinstance(v, (int,)): return v
    if isinstance(v, decimal.Decimal): return str(v.quantize(decimal.Decimal("0.01")))
    if isinstance(v, float): return round(v, 6)
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None: v = v.replace(tzinfo=datetime.timezone.utc)
        return v.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
    return v
def norm_api(v):
    if isinstance(v, float): return round(v, 6)
    return v
checked = 0
for view in views:
    name = view["name"]
    cols = [c["name"] for c in view["columns"] if c["in_deltas"]]
    api = json.load(open(os.path.join(tmp, f"api-{name}.json")))
    assert api["as_of"] == committed, (name, api["as_of"], committed)
    want = sorted(tuple(norm_api(r[c]) for c in cols) for r in api["rows"])
    files = [os.path.join(root, e["path"]) for e in live.values() if e["view"] == name and e["kind"] == "changes"]
    got = []
    if files:
        sel = ", ".join(f'"{c}"' for c in cols)
        rows = con.execute(
            f"SELECT {sel}, sum(diff) FROM read_parquet(?, hive_partitioning = false) "
            "WHERE epoch_ms(as_of) <= ? GROUP BY ALL HAVING sum(diff) <> 0", [files, committed]).fetchall()
        for r in rows:
            assert r[-1] == 1, (name, r)
            got.append(tuple(norm(v) for v in r[:-1]))
    got.sort()
    assert got == want, (name, [g for g in got if g not in want][:3], [w for w in want if w not in got][:3])
    checked += len(want)
print(f"duckdb over {root}: {len(views)} views, {checked} rows equal to the API at as_of {committed}")
EOF
}

check "$tmp/lake" "$tmp/lake"
if [ -n "${SHOPDIFF_S3_ENDPOINT:-}" ]; then
  export AWS_ENDPOINT_URL="$SHOPDIFF_S3_ENDPOINT" AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
  check "s3://${SHOPDIFF_S3_BUCKET:-shopdiff-test}/e2e-$$-$RANDOM" "$tmp/s3-copy"
else
  echo "SHOPDIFF_S3_ENDPOINT not set (scripts/s3.sh start): the S3 variant is skipped"
fi
echo "sink e2e passed"
