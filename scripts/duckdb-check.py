#!/usr/bin/env python3
"""Cross-checks a continuous Parquet sink with DuckDB.

Usage: scripts/duckdb-check.py DIR VIEW AS_OF

Follows the manifests of the sink in DIR (a local directory) in sequence order, takes the live
change files of VIEW, and prints the view's rows at AS_OF (integer milliseconds; it must not be
after the last committed as_of): the change rows with as_of <= AS_OF, summed by diff per row,
rows whose sum is 0 left out. Each printed row ends with its multiplicity (1 for a set).
Needs the duckdb Python package (scripts/s3.sh installs a venv; `.local/moto-venv/bin/pip
install duckdb`, then run this script with `.local/moto-venv/bin/python`).
"""
import glob
import json
import os
import sys

import duckdb


def live_files(root):
    live = {}
    committed = None
    names = sorted(glob.glob(os.path.join(root, "_manifest", "MANIFEST-*.json")))
    for i, name in enumerate(names):
        with open(name) as f:
            m = json.load(f)
        if m["sequence"] != i:
            sys.exit(f"{name}: sequence {m['sequence']}, expected {i}")
        for path in m["removed"]:
            live.pop(path)
        for entry in m["added"]:
            live[entry["path"]] = entry
        committed = m["committed_as_of"]
    return live, committed


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    root, view, as_of = sys.argv[1], sys.argv[2], int(sys.argv[3])
    live, committed = live_files(root)
    if committed is None or as_of > committed:
        sys.exit(f"as_of {as_of} is after the last committed as_of {committed}")
    files = [
        os.path.join(root, e["path"])
        for e in live.values()
        if e["view"] == view and e["kind"] == "changes" and e["from_as_of"] <= as_of
    ]
    if not files:
        print(f"-- {view} at {as_of}: no rows")
        return
    con = duckdb.connect()
    rel = con.execute(
        "SELECT * EXCLUDE (as_of, diff), sum(diff) AS multiplicity "
        "FROM read_parquet(?, hive_partitioning = false) WHERE epoch_ms(as_of) <= ? "
        "GROUP BY ALL HAVING sum(diff) <> 0 ORDER BY ALL",
        [files, as_of],
    )
    columns = [d[0] for d in rel.description]
    rows = rel.fetchall()
    print(f"-- {view} at {as_of}: {len(rows)} rows from {len(files)} files")
    print("\t".join(columns))
    for row in rows:
        print("\t".join("" if v is None else str(v) for v in row))


if __name__ == "__main__":
    main()
