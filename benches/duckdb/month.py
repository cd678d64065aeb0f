#!/usr/bin/env python3
"""DuckDB recomputing three of shopdiff's views from scratch over a recorded stream, as the
baseline a shop would otherwise run: revenue_daily (by product and day), product_performance
and funnel_daily (sessions per day reaching each stage). It reads the same JSON Lines files the
replay reads (validation and dedup left out: it does less work than shopdiff) and prints one
line: records, seconds, records/s and peak RSS.

Usage: benches/duckdb/month.py DIR   (with duckdb installed: benches/month.sh sets it up)
"""
import resource
import sys
import time

import duckdb

d = sys.argv[1]
t0 = time.time()
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f"""
CREATE TABLE tx AS SELECT transaction_id, user_id, session_id, product_id,
    TRY_CAST(price AS DECIMAL(18,2)) AS price, CAST(quantity AS BIGINT) AS quantity,
    TRY_CAST(discount_applied AS DECIMAL(18,2)) AS discount, TRY_CAST(timestamp AS TIMESTAMP) AS ts
FROM read_json('{d}/transactions.jsonl', format='newline_delimited', ignore_errors=true,
    columns={{'transaction_id':'VARCHAR','user_id':'VARCHAR','session_id':'VARCHAR',
             'product_id':'VARCHAR','price':'DOUBLE','quantity':'BIGINT',
             'discount_applied':'DOUBLE','timestamp':'VARCHAR'}})
""")
con.execute(f"""
CREATE TABLE ev AS SELECT session_id, event_type, event_properties.product_id AS product_id,
    TRY_CAST(timestamp AS TIMESTAMP) AS ts
FROM read_json('{d}/behavior.jsonl', format='newline_delimited', ignore_errors=true,
    columns={{'session_id':'VARCHAR','event_type':'VARCHAR','timestamp':'VARCHAR',
             'event_properties':'STRUCT(product_id VARCHAR)'}})
""")
records = con.execute("SELECT (SELECT count(*) FROM tx) + (SELECT count(*) FROM ev)").fetchone()[0]
revenue = con.execute("""
SELECT product_id, date_trunc('day', ts) AS day, sum(price * quantity) AS gross,
       sum(discount) AS discount, count(DISTINCT transaction_id) AS orders, sum(quantity) AS items
FROM tx GROUP BY ALL
""").fetchall()
perf = con.execute("""
WITH e AS (SELECT product_id, date_trunc('day', ts) AS day,
                  count(*) FILTER (WHERE event_type = 'product_view') AS views,
                  count(*) FILTER (WHERE event_type = 'add_to_cart') AS carts
           FROM ev WHERE product_id IS NOT NULL GROUP BY ALL),
     t AS (SELECT product_id, date_trunc('day', ts) AS day,
                  count(DISTINCT transaction_id) AS orders, sum(quantity) AS units
           FROM tx GROUP BY ALL)
SELECT * FROM e FULL OUTER JOIN t USING (product_id, day)
""").fetchall()
funnel = con.execute("""
WITH s AS (SELECT session_id, date_trunc('day', ts) AS day,
                  bool_or(event_type = 'product_view') AS pv,
                  bool_or(event_type = 'add_to_cart') AS cart,
                  bool_or(event_type = 'checkout_start') AS co
           FROM ev WHERE session_id IS NOT NULL GROUP BY ALL),
     b AS (SELECT DISTINCT session_id, date_trunc('day', ts) AS day FROM tx
           WHERE session_id IS NOT NULL)
SELECT day, count(*), count(*) FILTER (WHERE pv), count(*) FILTER (WHERE cart),
       count(*) FILTER (WHERE co), count(b.session_id)
FROM s FULL OUTER JOIN b USING (session_id, day) GROUP BY day
""").fetchall()
secs = time.time() - t0
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"duckdb views=3 records={records} seconds={secs:.2f} records_per_s={records / secs:.0f} "
      f"peak_rss_mb={rss_mb:.0f} rows={len(revenue) + len(perf) + len(funnel)}")
