//! PostgreSQL CDC against a real server (`scripts/postgres.sh start`; `scripts/test.sh` starts it
//! and exports `SHOPDIFF_PG_URL`). Every test skips, with a notice, when `SHOPDIFF_PG_URL` is not
//! set, and works in a fresh database `t_<random>` with its own slot, dropped at the end.

mod support;

use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, WriteOptions};
use shopdiff_connectors::postgres::load::{by_tick, load_dir, read_changes, LoadOptions, Loader};
use shopdiff_connectors::postgres::{format_lsn, CdcConfig, CdcError};
use shopdiff_connectors::{Batch, Ingest, Replay, ReplayOptions, Stream, TimeConfig};
use shopdiff_dataflows::config::ViewsConfig;
use shopdiff_schemas::rows::Value;
use shopdiff_schemas::tables::TableRow;
use shopdiff_schemas::time::{parse_rfc3339, Ms};
use shopdiff_schemas::{parse_behavior, parse_transaction, Table};
use shopdiff_server::cdc::{replay_with_cdc, CdcDriver};
use shopdiff_server::cli::{replay_dir, EngineArgs};
use shopdiff_server::{Engine, EngineConfig, Stores};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(30);

fn base_url() -> Option<String> {
    match std::env::var("SHOPDIFF_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!(
                "SKIPPED: SHOPDIFF_PG_URL is not set (run scripts/postgres.sh start and export \
                 SHOPDIFF_PG_URL=$(scripts/postgres.sh url), or use scripts/test.sh)"
            );
            None
        }
    }
}

/// A fresh database and slot name, dropped (slot first) when the test ends.
struct Db {
    admin: String,
    name: String,
    url: String,
}

impl Db {
    fn new(base: &str) -> Db {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            nanos,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let (prefix, _) = base.rsplit_once('/').expect("a URL with a database");
        let admin = format!("{prefix}/postgres");
        let mut l = Loader::connect(&admin).expect("connecting to the admin database");
        l.client()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("creating the test database");
        Db {
            // plain TCP unless a test asks for TLS: the private server offers both
            url: format!("{prefix}/{name}?sslmode=disable"),
            admin,
            name,
        }
    }

    fn loader(&self) -> Loader {
        Loader::connect(&self.url).expect("connecting to the test database")
    }

    fn exec(&self, sql: &str) {
        self.loader()
            .client()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn cdc(&self) -> CdcConfig {
        let mut c = CdcConfig::new(&self.url);
        c.slot = self.name.clone();
        c.publication = "shopdiff_test".into();
        c.status_interval = Duration::from_millis(200);
        c.max_backoff = Duration::from_millis(800);
        c
    }

    /// The slot's confirmed flush LSN.
    fn confirmed(&self) -> u64 {
        let mut l = Loader::connect(&self.admin).expect("admin");
        let row = l
            .client()
            .query_one(
                "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.name],
            )
            .expect("reading the slot");
        row.get::<_, i64>(0) as u64
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let Ok(mut l) = Loader::connect(&self.admin) else {
            return;
        };
        let c = l.client();
        // a source may still be stopping or reconnecting: retry until the slot is gone
        for _ in 0..50 {
            let _ = c.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND active_pid IS NOT NULL",
                &[&self.name],
            );
            let _ = c.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND active_pid IS NULL",
                &[&self.name],
            );
            let left = c
                .query_one(
                    "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                    &[&self.name],
                )
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0);
            if left == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn engine() -> Engine {
    Engine::start(&EngineConfig {
        fine_ticks: false,
        cluster: None,
        workers: 2,
        views: ViewsConfig::default(),
    })
    .expect("engine")
}

/// Every view's `(as_of, rows)`.
fn views(stores: &Stores) -> BTreeMap<String, (Option<u64>, Vec<Vec<Value>>)> {
    stores
        .iter()
        .map(|v| (v.def().name.to_string(), v.snapshot()))
        .collect()
}

/// The rows of a view as column name → value.
fn rows(stores: &Stores, view: &str) -> Vec<BTreeMap<&'static str, Value>> {
    let v = stores.get(view).expect("a view");
    let def = v.def();
    v.snapshot()
        .1
        .into_iter()
        .map(|r| def.columns.iter().map(|c| c.name).zip(r).collect())
        .collect()
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

fn ts(t: &str) -> Ms {
    parse_rfc3339(t).expect("a time")
}

#[test]
fn snapshot_plus_stream_gives_the_views_of_the_replay() {
    let Some(base) = base_url() else { return };
    let db = Db::new(&base);
    let tmp = support::TempDir::new("shopdiff-pg-stream");
    let dir = tmp.0.join("stream");
    let cfg = GenConfig {
        seed: 7,
        users: 300,
        products: 60,
        records: 8_000,
        volume: 0.02,
        anomaly_rate: 0.03,
        ..GenConfig::default()
    };
    let wopts = WriteOptions {
        progress: false,
        ..WriteOptions::default()
    };
    write_recorded_stream(&cfg, &dir, &wopts).expect("generating");

    // the reference: a plain replay of the directory
    let args = EngineArgs {
        workers: 2,
        tick_ms: 1000,
        lateness_ms: 5000,
        max_future_ms: shopdiff_connectors::ingest::DEFAULT_MAX_FUTURE_MS,
        horizon_ms: shopdiff_connectors::ingest::DEFAULT_HORIZON_MS,
        batch: 400,
        fraud_config: None,
    };
    let (reference, stats) = replay_dir(&dir, &args, None).expect("replaying");
    assert!(stats.changes_applied >= 10, "{stats:?}");

    // the tables go to PostgreSQL; CDC brings them back
    let loaded = load_dir(&db.url, &dir, &LoadOptions::default()).expect("loading");
    assert_eq!(loaded.refused, 0, "{loaded:?}");
    let mut cdc = CdcDriver::start(db.cdc()).expect("starting CDC");
    assert!(cdc.wait_snapshot(WAIT).expect("snapshot"));
    let groups: Vec<_> = by_tick(
        read_changes(&dir.join("changes.jsonl")).expect("changes"),
        1000,
    )
    .into_iter()
    .filter(|(t, _)| *t <= stats.as_of)
    .collect();
    assert_eq!(
        groups.iter().map(|g| g.1.len() as u64).sum::<u64>(),
        stats.changes_applied
    );

    // events from the files, tables from CDC (the stream's own table rows and changes are left
    // out by replay_with_cdc): before each batch, the changes the replay would have applied
    // before its frontier are committed upstream, one transaction per tick, and delivered
    let eng = engine();
    let mut loader = db.loader();
    let mut next = 0;
    let mut expected = 1; // the snapshot
    let opts = ReplayOptions {
        batch_records: 400,
        ..ReplayOptions::default()
    };
    let replay = Replay::open(&dir, opts).expect("the stream");
    let ev_stats = replay_with_cdc(replay, &eng, &mut cdc, WAIT, |frontier, cdc| {
        while next < groups.len() && groups[next].0 < frontier {
            if loader.apply_txn(&groups[next].1)? > 0 {
                expected += 1;
            }
            next += 1;
        }
        assert!(
            cdc.wait_received(expected, WAIT)?,
            "CDC delivered {} of {expected}",
            cdc.received()
        );
        Ok(())
    })
    .expect("replaying the events");
    assert_eq!(next, groups.len(), "every change was applied upstream");
    assert_eq!(ev_stats.as_of, stats.as_of);
    let got = eng.finish().expect("finishing");
    assert_eq!(cdc.tables().stats().txns + 1, expected);
    assert!(cdc.tables().stats().txns >= 10);
    assert_eq!(cdc.tables().stats().skipped_txns, 0);

    // the tables as the replay ends with them: initial rows, then every change up to as_of
    let mut expect: BTreeMap<(Table, String), TableRow> = BTreeMap::new();
    for t in Table::ALL {
        let lines = shopdiff_connectors::postgres::load::read_lines(
            &dir.join(format!("{}.jsonl", t.name())),
        )
        .expect("table file");
        for l in lines {
            let r = shopdiff_schemas::tables::parse_row(t, &l).expect("a valid row");
            expect.insert((t, r.key().to_string()), r);
        }
    }
    let mut changes = Vec::new();
    for l in shopdiff_connectors::postgres::load::read_lines(&dir.join("changes.jsonl"))
        .expect("changes")
    {
        let c = shopdiff_schemas::tables::parse_change(&l).expect("a change");
        changes.push((shopdiff_schemas::time::ceil_tick(c.at, 1000), c));
    }
    changes.sort_by_key(|c| c.0);
    for (t, c) in changes {
        if t > stats.as_of {
            continue;
        }
        match c.op.expect("a valid change") {
            shopdiff_schemas::tables::ChangeOp::Upsert(r) => {
                expect.insert((c.table, r.key().to_string()), r);
            }
            shopdiff_schemas::tables::ChangeOp::Delete(k) => {
                expect.remove(&(c.table, k.to_string()));
            }
        }
    }
    let st = cdc.tables().state();
    for ((t, k), r) in &expect {
        assert_eq!(st.get(*t, k), Some(r), "{t:?} {k}");
    }
    let n: usize = Table::ALL.iter().map(|t| st.len(*t)).sum();
    assert_eq!(n, expect.len());

    let want = views(&reference);
    let have = views(&got);
    assert_eq!(want.len(), 10);
    for (name, (as_of, r)) in &want {
        let (h_as_of, h) = &have[name];
        assert_eq!(h_as_of, as_of, "{name}: as_of");
        assert!(!r.is_empty() || name == "fraud_alerts", "{name} is empty");
        let missing: Vec<_> = r.iter().filter(|x| !h.contains(x)).take(5).collect();
        let extra: Vec<_> = h.iter().filter(|x| !r.contains(x)).take(5).collect();
        assert!(
            h == r,
            "{name}: {} rows vs {} in the replay; missing {missing:?}; extra {extra:?}",
            h.len(),
            r.len()
        );
    }

    // every transaction is in a completed as_of: all acknowledged, and the slot confirmed them
    cdc.ack_completed(&got);
    assert_eq!(cdc.tables().unacked(), 0);
    assert_eq!(cdc.tables().acked(), cdc.tables().last_lsn());
    let want_lsn = cdc.tables().last_lsn();
    let deadline = std::time::Instant::now() + WAIT;
    while db.confirmed() < want_lsn && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        db.confirmed() >= want_lsn,
        "slot confirmed {} < acknowledged {}",
        format_lsn(db.confirmed()),
        format_lsn(want_lsn)
    );
}

/// A small world: customers U1 (registered May 2024) and U2, products P1 and P2 (P2 with a
/// TOASTed description and a TOASTed NOT NULL name, its column widened to TEXT), IP 10.0.0.1 (low risk); one session S1 of U1 from that IP viewing and
/// buying P1 on 2024-07-01.
struct World {
    // dropped in this order: the source stops before its database goes
    cdc: CdcDriver,
    eng: Engine,
    ingest: Ingest,
    /// The frontier fed last.
    frontier: u64,
    db: Db,
}

const T: &str = "2024-07-01T10:00:00Z";

impl World {
    fn new(base: &str) -> World {
        let db = Db::new(base);
        let mut l = db.loader();
        l.create_tables(false).expect("tables");
        db.exec(
            "INSERT INTO customers (user_id, email, registration_date) VALUES \
               ('U1', 'u1@x', '2024-05-10 08:00:00'), ('U2', 'u2@x', '2024-06-02 00:00:00');
             INSERT INTO products (product_id, name, category_id, category_name, brand, price, cost, inventory_count, description) VALUES \
               ('P1', 'one', 'C1', 'c', 'b', 10.00, 4.00, 100, NULL), \
               ('P2', 'two', 'C1', 'c', 'b', 20.00, 5.00, 50, (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i));
             ALTER TABLE products ALTER COLUMN name TYPE TEXT;
             UPDATE products SET name = (SELECT string_agg(md5((-i)::text), '') FROM generate_series(1, 400) i) WHERE product_id = 'P2';
             INSERT INTO ip_reputation (ip_address, risk_score, is_tor) VALUES ('10.0.0.1', 0.100, false);
             ALTER TABLE products ADD COLUMN upstream_note TEXT DEFAULT 'extra';",
        );
        let mut cdc = CdcDriver::start(db.cdc()).expect("CDC");
        assert!(cdc.wait_snapshot(WAIT).expect("snapshot"));
        let eng = engine();
        let mut ingest = Ingest::new(TimeConfig::default());
        ingest.close(Stream::Behavior);
        let mut w = World {
            db,
            eng,
            cdc,
            ingest,
            frontier: 0,
        };
        // the snapshot at time 0
        w.frontier = w.cdc.feed(&w.eng, &mut w.ingest).expect("feeding");
        assert_eq!(w.frontier, 0);
        let e = parse_behavior(&format!(
            r#"{{"event_id":"E1","user_id":"U1","session_id":"S1","event_type":"product_view","timestamp":"{T}","event_properties":{{"product_id":"P1"}},"user_location":{{"ip_address":"10.0.0.1"}}}}"#
        ))
        .expect("an event");
        w.ingest.event(e);
        let line = parse_transaction(&format!(
            r#"{{"transaction_id":"X1","product_id":"P1","user_id":"U1","session_id":"S1","timestamp":"{T}","price":10,"quantity":2,"currency":"USD"}}"#
        ))
        .expect("a line");
        w.ingest.line(line);
        w.step();
        w
    }

    /// Feeds what CDC delivered (at the next tick) and completes one more tick.
    fn step(&mut self) {
        let target = self.frontier.max(ts(T) as u64) + 1000;
        self.frontier = self
            .cdc
            .feed_until(&self.eng, &mut self.ingest, target)
            .expect("feeding");
        assert!(
            self.cdc
                .wait_as_of(self.eng.stores(), self.frontier - 1000, WAIT),
            "views did not reach {}",
            self.frontier - 1000
        );
    }

    /// Runs `sql` upstream as one transaction, waits for CDC to deliver it and completes it.
    fn upstream(&mut self, sql: &str) {
        let before = self.cdc.received();
        self.db.exec(&format!("BEGIN; {sql}; COMMIT;"));
        assert!(
            self.cdc.wait_received(before + 1, WAIT).expect("CDC"),
            "no transaction for {sql}"
        );
        self.step();
    }

    fn stores(&self) -> &Stores {
        self.eng.stores()
    }
}

fn cohort(stores: &Stores, month: &str, offset: i64) -> Option<(i64, i64)> {
    rows(stores, "cohorts")
        .into_iter()
        .find(|r| {
            r["cohort_month"] == Value::Time(ts(month)) && r["month_offset"] == Value::Int(offset)
        })
        .map(|r| match (&r["cohort_size"], &r["active_customers"]) {
            (Value::Int(a), Value::Int(b)) => (*a, *b),
            _ => panic!("cohort row {r:?}"),
        })
}

#[test]
fn a_registration_date_update_moves_the_customer_between_cohorts_in_one_as_of() {
    let Some(base) = base_url() else { return };
    let mut w = World::new(&base);
    let as_of = w.stores().get("cohorts").and_then(|v| v.as_of());
    assert_eq!(cohort(w.stores(), "2024-05-01T00:00:00Z", 2), Some((1, 1)));
    assert_eq!(cohort(w.stores(), "2024-06-01T00:00:00Z", 1), None);
    w.upstream(
        "UPDATE customers SET registration_date = '2024-06-15 12:00:00' WHERE user_id = 'U1'",
    );
    let st = w.stores();
    assert!(st.get("cohorts").and_then(|v| v.as_of()) > as_of);
    // in one as_of: gone from May, in June (whose size is now 2), never both
    assert_eq!(cohort(st, "2024-05-01T00:00:00Z", 2), None);
    assert_eq!(cohort(st, "2024-06-01T00:00:00Z", 1), Some((2, 1)));
    let u1 = w.cdc.tables().state().get(Table::Customers, "U1").cloned();
    assert!(
        matches!(u1, Some(TableRow::Customer(c)) if c.registration_date == ts("2024-06-15T12:00:00Z"))
    );
}

#[test]
fn a_product_delete_turns_its_lines_into_unmatched_lines() {
    let Some(base) = base_url() else { return };
    let mut w = World::new(&base);
    let p1 = |st: &Stores| {
        rows(st, "revenue_daily")
            .into_iter()
            .find(|r| r["dimension"] == s("product") && r["value"] == s("P1"))
            .expect("P1's revenue row")
    };
    let unknown = |st: &Stores| {
        rows(st, "data_quality")
            .into_iter()
            .find(|r| r["source"] == s("transactions") && r["reason"] == s("unknown_product"))
            .map(|r| r["records"].clone())
    };
    let r = p1(w.stores());
    assert_eq!(r["cost"], Value::Money(800));
    assert_eq!(r["unmatched_lines"], Value::Int(0));
    assert_eq!(unknown(w.stores()), None);
    // an update of P2 leaves its TOASTed name and description out (unchanged-TOAST markers):
    // the NOT NULL name is taken as validated from the current row, so it is applied, not
    // rejected
    let mut l = w.db.loader();
    let toast: String = l
        .client()
        .query_one(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'products'",
            &[],
        )
        .expect("toast table")
        .get(0);
    let chunks: i64 = l
        .client()
        .query_one(&format!("SELECT count(*) FROM {toast}"), &[])
        .expect("toast rows")
        .get(0);
    assert!(
        chunks > 0,
        "P2's name and description are stored out of line"
    );
    w.upstream("UPDATE products SET cost = 6.50 WHERE product_id = 'P2'");
    assert!(matches!(
        w.cdc.tables().state().get(Table::Products, "P2"),
        Some(TableRow::Product(p)) if p.cost == 650
    ));
    assert_eq!(w.cdc.tables().stats().rejected, 0);
    // an upstream column added while streaming is tolerated
    w.upstream("ALTER TABLE products ADD COLUMN late_note TEXT; UPDATE products SET late_note = 'x', inventory_count = 7 WHERE product_id = 'P2'");
    assert!(matches!(
        w.cdc.tables().state().get(Table::Products, "P2"),
        Some(TableRow::Product(p)) if p.inventory_count == 7
    ));
    w.upstream("DELETE FROM products WHERE product_id = 'P1'");
    let st = w.stores();
    let r = p1(st);
    assert_eq!(r["unmatched_lines"], Value::Int(1));
    assert_eq!(r["cost"], Value::Money(0));
    assert_eq!(r["net"], Value::Money(2000));
    assert_eq!(unknown(st), Some(Value::Int(1)));
    // the line still counts in product_performance; P1 left inventory
    let pp: Vec<_> = rows(st, "product_performance")
        .into_iter()
        .filter(|r| r["product_id"] == s("P1"))
        .collect();
    assert_eq!(pp.len(), 1);
    assert_eq!(pp[0]["orders"], Value::Int(1));
    assert_eq!(pp[0]["units"], Value::Int(2));
    let inv: Vec<_> = rows(st, "inventory")
        .into_iter()
        .map(|r| r["product_id"].clone())
        .collect();
    assert_eq!(inv, vec![s("P2")]);
}

#[test]
fn an_ip_reputation_update_raises_a_risky_ip_alert() {
    let Some(base) = base_url() else { return };
    let mut w = World::new(&base);
    let risky = |st: &Stores| {
        rows(st, "fraud_alerts")
            .into_iter()
            .filter(|r| r["rule"] == s("risky_ip"))
            .collect::<Vec<_>>()
    };
    assert!(risky(w.stores()).is_empty());
    // received but not yet in a completed as_of: the slot must not confirm it
    let confirmed = w.db.confirmed();
    w.db.exec("UPDATE ip_reputation SET risk_score = 0.950 WHERE ip_address = '10.0.0.1'");
    assert!(w.cdc.wait_received(2, WAIT).expect("CDC"));
    let lsn = w.cdc.last_received_lsn();
    assert!(lsn > confirmed);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        w.db.confirmed() < lsn,
        "the slot confirmed {} before the views completed it",
        format_lsn(lsn)
    );
    w.step();
    let deadline = std::time::Instant::now() + WAIT;
    while w.db.confirmed() < lsn && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(w.db.confirmed() >= lsn);
    let a = risky(w.stores());
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["key"], s("X1"));
    assert_eq!(a[0]["user_id"], s("U1"));
    assert_eq!(a[0]["measure"], Value::Number(0.95));
    // and cleared when the score drops again
    w.upstream("UPDATE ip_reputation SET risk_score = 0.200 WHERE ip_address = '10.0.0.1'");
    assert!(risky(w.stores()).is_empty());
}

/// The current rows of the three tables upstream, as shopdiff keeps them.
fn upstream_rows(db: &Db) -> Vec<TableRow> {
    let mut l = db.loader();
    let mut out = Vec::new();
    for t in Table::ALL {
        let sql = match t {
            Table::Products => "SELECT json_build_object('product_id', product_id, 'name', name, \
                'category_id', category_id, 'category_name', category_name, 'brand', brand, \
                'price', price, 'cost', cost, 'inventory_count', inventory_count)::text FROM products",
            Table::Customers => "SELECT json_build_object('user_id', user_id, 'email', email, \
                'registration_date', to_char(registration_date, 'YYYY-MM-DD HH24:MI:SS.MS'))::text \
                FROM customers",
            Table::IpReputation => "SELECT json_build_object('ip_address', ip_address, \
                'risk_score', risk_score, 'is_tor', is_tor)::text FROM ip_reputation",
        };
        for r in l.client().query(sql, &[]).expect("select") {
            let json: String = r.get(0);
            out.push(shopdiff_schemas::tables::parse_row(t, &json).expect("a valid row"));
        }
    }
    out.sort();
    out
}

fn cdc_rows(w: &World) -> Vec<TableRow> {
    let st = w.cdc.tables().state();
    let mut out: Vec<TableRow> = Table::ALL
        .iter()
        .flat_map(|t| {
            st.keys(*t)
                .into_iter()
                .filter_map(|k| st.get(*t, &k).cloned())
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_killed_connection_and_a_restarted_source_lose_and_repeat_nothing() {
    let Some(base) = base_url() else { return };
    let mut w = World::new(&base);
    w.upstream("UPDATE products SET inventory_count = 90 WHERE product_id = 'P1'");
    // delivered but not yet in a completed as_of, so not acknowledged: the server sends it
    // again after the reconnect, and the source must drop the repeat
    let before = w.cdc.received();
    w.db.exec("UPDATE products SET inventory_count = 85 WHERE product_id = 'P1'");
    assert!(w.cdc.wait_received(before + 1, WAIT).expect("CDC"));
    // kill the walsender, and write while the source reconnects
    w.db.exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_replication r \
         JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = '{}'",
        w.db.name
    ));
    for i in 0..5 {
        w.db.exec(&format!(
            "UPDATE products SET inventory_count = {} WHERE product_id = 'P1'",
            80 - i
        ));
    }
    w.db.exec("INSERT INTO customers (user_id, email, registration_date) VALUES ('U3', 'u3@x', '2024-06-20 00:00:00')");
    assert!(w
        .cdc
        .wait_received(before + 7, WAIT)
        .expect("CDC after a reconnect"));
    std::thread::sleep(Duration::from_millis(500));
    w.step();
    assert_eq!(w.cdc.received(), before + 7, "a transaction was repeated");
    assert_eq!(w.cdc.tables().stats().reconnects, 1);
    assert_eq!(cdc_rows(&w), upstream_rows(&w.db));
    assert!(matches!(
        w.cdc.tables().state().get(Table::Products, "P1"),
        Some(TableRow::Product(p)) if p.inventory_count == 76
    ));

    // one more delivered and not acknowledged, then stop the source, write, and restart it
    // after the last LSN it delivered: the server resends from the acknowledged LSN, the new
    // source drops what the old one delivered
    let before = w.cdc.received();
    w.db.exec("UPDATE products SET inventory_count = 70 WHERE product_id = 'P1'");
    assert!(w.cdc.wait_received(before + 1, WAIT).expect("CDC"));
    w.cdc.stop();
    std::thread::sleep(Duration::from_millis(500));
    w.db.exec("DELETE FROM customers WHERE user_id = 'U2'");
    w.db.exec("UPDATE ip_reputation SET is_tor = true WHERE ip_address = '10.0.0.1'");
    w.cdc.restart(w.db.cdc()).expect("restarting");
    assert!(w
        .cdc
        .wait_received(before + 3, WAIT)
        .expect("CDC after a restart"));
    std::thread::sleep(Duration::from_millis(500));
    w.step();
    assert_eq!(w.cdc.received(), before + 3, "a transaction was repeated");
    assert_eq!(w.cdc.tables().stats().skipped_txns, 0);
    assert_eq!(cdc_rows(&w), upstream_rows(&w.db));
    // the Tor IP raises the alert: the views saw the resumed stream
    assert!(rows(w.stores(), "fraud_alerts")
        .iter()
        .any(|r| r["rule"] == s("risky_ip") && r["key"] == s("X1")));
    // acknowledged through the last transaction, and confirmed by the slot
    w.cdc.ack_completed(w.eng.stores());
    let last = w.cdc.tables().last_lsn();
    assert_eq!(w.cdc.tables().acked(), last);
    let deadline = std::time::Instant::now() + WAIT;
    while w.db.confirmed() < last && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(w.db.confirmed() >= last);
}

#[test]
fn unchanged_toasted_columns_are_marked_and_taken_from_the_current_row() {
    use shopdiff_connectors::postgres::{start, CdcEvent, RawOp};
    let Some(base) = base_url() else { return };
    let db = Db::new(&base);
    db.loader().create_tables(false).expect("tables");
    db.exec(
        "ALTER TABLE products ALTER COLUMN name TYPE TEXT;
         INSERT INTO products (product_id, name, category_id, category_name, brand, price, cost, inventory_count) \
           VALUES ('P9', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i), 'C', 'c', 'b', 9.00, 3.00, 5);",
    );
    let (rx, ack) = start(db.cdc()).expect("CDC");
    let current = loop {
        match rx.recv_timeout(WAIT).expect("an event") {
            CdcEvent::Snapshot { rows, .. } => break rows,
            _ => continue,
        }
    };
    assert_eq!(current.len(), 1);
    db.exec("UPDATE products SET cost = 3.50 WHERE product_id = 'P9'");
    let changes = loop {
        match rx.recv_timeout(WAIT).expect("an event") {
            CdcEvent::Txn { changes, .. } => break changes,
            _ => continue,
        }
    };
    assert_eq!(changes.len(), 1);
    let RawOp::Upsert { unchanged, .. } = &changes[0].op else {
        panic!("an upsert: {changes:?}")
    };
    assert_eq!(
        unchanged,
        &vec!["name"],
        "the TOASTed name came as unchanged"
    );
    let resolved = changes[0].resolve(Some(&current[0]), 0).expect("a change");
    assert_eq!(
        resolved.op,
        Ok(shopdiff_schemas::tables::ChangeOp::Upsert(
            TableRow::Product(shopdiff_schemas::Product {
                product_id: "P9".into(),
                cost: 350,
                inventory_count: 5,
            })
        ))
    );
    // without the current row it would be a rejection naming the column
    assert!(matches!(
        changes[0].resolve(None, 0).map(|c| c.op),
        Some(Err(r)) if r.field == "name"
    ));
    ack.stop();
}

#[test]
fn an_idle_publication_does_not_pin_wal() {
    let Some(base) = base_url() else { return };
    let db = Db::new(&base);
    db.loader().create_tables(false).expect("tables");
    db.exec("CREATE TABLE unrelated (x INTEGER)");
    let mut cdc = CdcDriver::start(db.cdc()).expect("CDC");
    assert!(cdc.wait_snapshot(WAIT).expect("snapshot"));
    let start = db.confirmed();
    // WAL the publication does not carry
    for i in 0..20 {
        db.exec(&format!("INSERT INTO unrelated VALUES ({i})"));
    }
    let mut l = db.loader();
    let now: i64 = l
        .client()
        .query_one(
            "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
            &[],
        )
        .expect("wal lsn")
        .get(0);
    assert!(now as u64 > start, "the inserts wrote WAL");
    let deadline = std::time::Instant::now() + WAIT;
    while db.confirmed() < now as u64 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        db.confirmed() >= now as u64,
        "slot stuck at {} (started at {}), WAL at {}",
        format_lsn(db.confirmed()),
        format_lsn(start),
        format_lsn(now as u64)
    );
    assert_eq!(cdc.received(), 1, "nothing but the snapshot");
}

#[test]
fn a_table_without_primary_key_or_with_a_wrong_type_is_rejected_at_start() {
    let Some(base) = base_url() else { return };
    let db = Db::new(&base);
    db.loader().create_tables(false).expect("tables");
    db.exec("ALTER TABLE ip_reputation DROP CONSTRAINT ip_reputation_pkey");
    let err = CdcDriver::start(db.cdc()).err().expect("an error");
    assert_eq!(
        err,
        CdcError::NoPrimaryKey {
            table: "ip_reputation".into(),
            column: "ip_address".into()
        }
    );
    assert!(err
        .to_string()
        .contains("table ip_reputation: no primary key"));
    db.exec("ALTER TABLE ip_reputation ADD PRIMARY KEY (ip_address); ALTER TABLE customers ALTER COLUMN registration_date TYPE text");
    let err = CdcDriver::start(db.cdc()).err().expect("an error");
    assert!(
        matches!(&err, CdcError::ColumnType { table, column, found, .. }
            if table == "customers" && column == "registration_date" && found == "text"),
        "{err}"
    );
    // a missing table is named too, and no slot was left behind by the failed starts
    db.exec("DROP TABLE products");
    let err = CdcDriver::start(db.cdc()).err().expect("an error");
    assert_eq!(
        err,
        CdcError::MissingTable {
            table: "products".into()
        }
    );
    let mut l = db.loader();
    let n: i64 = l
        .client()
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&db.name],
        )
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn an_existing_slot_needs_resnapshot_and_a_missing_one_is_reported() {
    let Some(base) = base_url() else { return };
    let db = Db::new(&base);
    db.loader().create_tables(false).expect("tables");
    db.exec("INSERT INTO ip_reputation (ip_address, risk_score) VALUES ('1.1.1.1', 0.5)");
    let mut cdc = CdcDriver::start(db.cdc()).expect("CDC");
    assert!(cdc.wait_snapshot(WAIT).expect("snapshot"));
    cdc.stop();
    drop(cdc);
    std::thread::sleep(Duration::from_millis(500));
    // a fresh start finds the slot: it has no state to resume from
    let err = CdcDriver::start(db.cdc()).err().expect("an error");
    assert!(matches!(err, CdcError::SlotExists { .. }), "{err}");
    assert!(err.to_string().contains("--pg-resnapshot"));
    // resuming a dropped slot is reported
    db.exec(&format!("SELECT pg_drop_replication_slot('{}')", db.name));
    let mut cfg = db.cdc();
    cfg.resume_after = Some(1);
    let err = CdcDriver::start(cfg.clone()).err().expect("an error");
    assert_eq!(
        err,
        CdcError::SlotMissing {
            slot: db.name.clone()
        }
    );
    // with re-snapshot the slot is created and the tables copied anew
    cfg.resnapshot = true;
    let mut cdc = CdcDriver::start(cfg).expect("CDC");
    assert!(cdc.wait_snapshot(WAIT).expect("snapshot"));
    let mut b = Batch::default();
    cdc.merge(&mut b).expect("merge");
    assert_eq!(b.tables.len(), 1);
}

/// Issue 7: in a cluster the slot is read once, by process 0, and a 2 x 1 cluster serves on
/// both processes exactly the views of one process reading the same slot.
#[test]
fn a_cluster_reads_the_slot_once_and_serves_the_views_of_one_process() {
    let Some(base) = base_url() else { return };
    let db = Db::new(&base);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/data");
    // (the example's tables hold a few invalid rows on purpose: PostgreSQL refuses them)
    let loaded = load_dir(&db.url, &dir, &LoadOptions::default()).expect("loading");
    assert!(loaded.rows.iter().all(|n| *n > 0), "{loaded:?}");
    let args = EngineArgs {
        workers: 2,
        tick_ms: 1000,
        lateness_ms: 5000,
        max_future_ms: shopdiff_connectors::ingest::DEFAULT_MAX_FUTURE_MS,
        horizon_ms: shopdiff_connectors::ingest::DEFAULT_HORIZON_MS,
        batch: 400,
        fraud_config: None,
    };
    let (_, stats) = replay_dir(&dir, &args, None).expect("replaying");
    let bin = env!("CARGO_BIN_EXE_shopdiff");
    let run = |http: u16, cluster: Option<(usize, u16)>| {
        let mut c = std::process::Command::new(bin);
        c.args(["run", "--replay"])
            .arg(&dir)
            .args([
                "--batch",
                "100",
                "-w",
                "1",
                "--http",
                &format!("127.0.0.1:{http}"),
            ])
            .args(["--postgres", &db.url, "--pg-slot", &db.name])
            .args(["--pg-publication", "shopdiff_test", "--pg-resnapshot"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some((p, port)) = cluster {
            c.args(["--processes", "2", "--process", &p.to_string()])
                .args(["--cluster-port", &port.to_string()]);
        }
        support::KillOnDrop(c.spawn().expect("starting shopdiff run"))
    };
    let addr = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let reference = {
        let http = support::free_ports(1);
        let _one = run(http, None);
        support::wait_as_of(addr(http), stats.as_of);
        support::all_views(addr(http))
    };
    assert!(reference["views"]["rfm"]["rows"]
        .as_array()
        .is_some_and(|r| !r.is_empty()));
    // the single process has stopped: its walsender goes away
    let t0 = std::time::Instant::now();
    while active_consumers(&db) > 0 {
        assert!(t0.elapsed() < WAIT, "the slot stays active");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (http, port) = (support::free_ports(2), support::free_ports(2));
    let _p1 = run(http + 1, Some((1, port)));
    let _p0 = run(http, Some((0, port)));
    support::wait_as_of(addr(http), stats.as_of);
    support::wait_as_of(addr(http + 1), stats.as_of);
    assert_eq!(
        active_consumers(&db),
        1,
        "one reader of the slot in the cluster"
    );
    assert_eq!(support::all_views(addr(http)), reference, "process 0");
    assert_eq!(support::all_views(addr(http + 1)), reference, "process 1");
}

/// Walsenders streaming the test's slot.
fn active_consumers(db: &Db) -> i64 {
    let mut l = Loader::connect(&db.admin).expect("admin");
    l.client()
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active",
            &[&db.name],
        )
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(-1)
}

/// A row PostgreSQL accepts and the contract rejects (a `NaN` risk score) is counted under its
/// table and written to the dead letters with its text, origin `postgres` and its
/// transaction's LSN; the table keeps its previous row.
#[test]
fn a_rejected_cdc_row_is_dead_lettered_with_its_lsn() {
    let Some(base) = base_url() else { return };
    let mut w = World::new(&base);
    let file = std::env::temp_dir().join(format!("shopdiff-cdc-dead-{}.jsonl", w.db.name));
    w.cdc.set_dead_letters(
        shopdiff_connectors::dead_letters::DeadLetters::open(Some(&file)).expect("dead letters"),
    );
    w.upstream("UPDATE ip_reputation SET risk_score = 'NaN' WHERE ip_address = '10.0.0.1'");
    let lsn = w.cdc.last_received_lsn();
    let text = std::fs::read_to_string(&file).expect("the dead-letter file");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let d = &lines[0];
    assert_eq!(d["source"], "ip_reputation", "{d}");
    assert_eq!(d["file"], "postgres", "{d}");
    assert_eq!(d["line"].as_u64(), Some(lsn), "{d}");
    assert_eq!(d["field"], "risk_score", "{d}");
    assert!(d["record"].as_str().unwrap().contains("NaN"), "{d}");
    let q = rows(w.stores(), "data_quality");
    let counted: i64 = q
        .iter()
        .filter(|r| {
            r["source"] == s("ip_reputation") && r["reason"] == d["reason"].as_str().map(s).unwrap()
        })
        .map(|r| match &r["records"] {
            Value::Int(n) => *n,
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(counted, 1, "{q:?}");
    let _ = std::fs::remove_file(&file);
}

/// TLS to PostgreSQL (the private server has a self-signed certificate): `sslmode=require`
/// encrypts the control connection and the replication stream, `verify-full` with the
/// server's certificate as `sslrootcert` checks it, and `verify-full` without a root
/// certificate, or with one that did not sign the server's, is refused saying why.
#[test]
fn postgres_over_tls_with_sslmode_require_and_verify_full() {
    let Some(base) = base_url() else { return };
    let Ok(cert) = std::env::var("SHOPDIFF_PG_CERT") else {
        eprintln!("SKIPPED: SHOPDIFF_PG_CERT is not set (scripts/postgres.sh cert)");
        return;
    };
    let db = Db::new(&base);
    db.loader().create_tables(false).expect("tables");
    db.exec(
        "INSERT INTO customers (user_id, email, registration_date) VALUES ('U1', 'u1@x', '2024-05-10 08:00:00')",
    );
    let ssl_of = |url: &str| -> bool {
        let mut l = Loader::connect(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        l.client()
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .expect("pg_stat_ssl")
            .get(0)
    };
    let url = db.url.trim_end_matches("?sslmode=disable").to_string();
    assert!(!ssl_of(&db.url));
    assert!(ssl_of(&format!("{url}?sslmode=require")));
    assert!(ssl_of(&format!(
        "{url}?sslmode=verify-full&sslrootcert={cert}"
    )));
    let err = Loader::connect(&format!("{url}?sslmode=verify-full"))
        .err()
        .expect("verify-full without a root certificate")
        .to_string();
    assert!(err.contains("sslrootcert"), "{err}");
    // a certificate of its own, which did not sign the server's
    let other = std::env::temp_dir().join(format!("{}-other.crt", db.name));
    let key = std::env::temp_dir().join(format!("{}-other.key", db.name));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&other)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    let err = Loader::connect(&format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        other.display()
    ))
    .err()
    .expect("a certificate that is not the server's issuer")
    .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let _ = (std::fs::remove_file(&other), std::fs::remove_file(&key));
    // the replication stream (libpq) over TLS too
    let mut cfg = db.cdc();
    cfg.url = format!("{url}?sslmode=require");
    let mut cdc = CdcDriver::start(cfg).expect("CDC over TLS");
    assert!(cdc.wait_snapshot(WAIT).expect("snapshot"));
    let mut admin = Loader::connect(&db.admin).expect("admin");
    let deadline = std::time::Instant::now() + WAIT;
    let walsender_ssl = loop {
        let row = admin
            .client()
            .query_opt(
                "SELECT s.ssl FROM pg_replication_slots r JOIN pg_stat_ssl s ON s.pid = r.active_pid WHERE r.slot_name = $1",
                &[&db.name],
            )
            .expect("pg_stat_ssl of the walsender");
        match row {
            Some(r) => break r.get::<_, bool>(0),
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            None => panic!("the slot never became active"),
        }
    };
    assert!(walsender_ssl, "the replication connection is not encrypted");
    drop(cdc);
}
