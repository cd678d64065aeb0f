//! Hostile input through the real ingest (file replay: the reader threads, validation, dedup,
//! the watermark, the tables) and the `shopdiff` binary (contract sections 2, 3 and 4):
//!
//! * a poisoned clock: one transaction and one behavior record dated 9999 at the head of a
//!   normal stream change nothing but two `future` rejections;
//! * money at the bounds: 1,000 lines of 10^18 cents each sum exactly (past an `i64`), the
//!   snapshot writes them as `DECIMAL(38,2)` and the replay exits 0; money and quantities
//!   beyond the bounds, in any notation, are `bad_value`;
//! * a lateness horizon: records older than `watermark - horizon` are `too_late`.

use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, WriteOptions};
use shopdiff_connectors::{Replay, ReplayOptions, TimeConfig};
use shopdiff_dataflows::config::ViewsConfig;
use shopdiff_schemas::rows::Value;
use shopdiff_server::store::{HistoryConfig, Select, Stores};
use shopdiff_server::{Engine, EngineConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shopdiff-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Replays `dir` on 2 workers and returns the stores at the final `as_of`.
fn replay(dir: &Path, time: TimeConfig) -> Stores {
    let engine = Engine::start_with(
        &EngineConfig {
            fine_ticks: false,
            cluster: None,
            workers: 2,
            views: ViewsConfig::default(),
        },
        HistoryConfig::default(),
    )
    .unwrap();
    Replay::open(
        dir,
        ReplayOptions {
            time,
            batch_records: 1_000,
            dead_letters: None,
        },
    )
    .unwrap()
    .run(|b| engine.feed(b))
    .unwrap();
    engine.finish().unwrap()
}

/// Every view's rows at the stores' `as_of`, as text.
fn views(stores: &Stores) -> BTreeMap<String, Vec<String>> {
    let as_of = stores.as_of().unwrap();
    stores
        .iter()
        .map(|v| {
            let name = v.def().name;
            let mut rows: Vec<String> = v
                .select(&Select::default(), as_of, as_of)
                .unwrap()
                .rows
                .into_iter()
                .map(|r| format!("{r:?}"))
                .collect();
            rows.sort();
            (name.to_string(), rows)
        })
        .collect()
}

/// `data_quality` as `(source, reason) -> records`.
fn quality(stores: &Stores) -> BTreeMap<(String, String), i64> {
    let as_of = stores.as_of().unwrap();
    let v = stores.get("data_quality").unwrap();
    v.select(&Select::default(), as_of, as_of)
        .unwrap()
        .rows
        .into_iter()
        .map(|r| match (&r[0], &r[1], &r[2]) {
            (Value::Str(s), Value::Str(q), Value::Int(n)) => ((s.to_string(), q.to_string()), *n),
            other => panic!("data_quality row {other:?}"),
        })
        .collect()
}

fn prepend(path: &Path, line: &str) {
    let rest = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, format!("{line}\n{rest}")).unwrap();
}

#[test]
fn a_poisoned_clock_changes_nothing_but_two_future_rejections() {
    let clean = temp_dir("clean");
    let cfg = GenConfig {
        seed: 11,
        users: 500,
        products: 100,
        records: 30_000,
        volume: 0.05,
        anomaly_rate: 0.02,
        ..GenConfig::default()
    };
    write_recorded_stream(&cfg, &clean, &WriteOptions::default()).unwrap();
    let poisoned = temp_dir("poisoned");
    for f in std::fs::read_dir(&clean).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, poisoned.join(f.file_name().unwrap())).unwrap();
    }
    prepend(
        &poisoned.join("transactions.jsonl"),
        r#"{"transaction_id":"POISON","product_id":"P1","user_id":"U1","timestamp":"9999-12-31T23:59:59Z","price":1.00,"quantity":1,"currency":"USD"}"#,
    );
    prepend(
        &poisoned.join("behavior.jsonl"),
        r#"{"event_id":"POISON","user_id":"U1","session_id":"S1","timestamp":"9999-12-31T23:59:59Z","event_type":"page_view"}"#,
    );
    let a = replay(&clean, TimeConfig::default());
    let b = replay(&poisoned, TimeConfig::default());
    assert_eq!(a.as_of(), b.as_of());
    assert!(a.as_of().unwrap() < 253_402_300_799_000);
    let (mut va, mut vb) = (views(&a), views(&b));
    let fraud = &va["fraud_alerts"];
    assert!(!fraud.is_empty(), "the clean stream raises alerts");
    let (qa, mut qb) = (quality(&a), quality(&b));
    for s in ["transactions", "behavior"] {
        assert_eq!(qb.remove(&(s.into(), "future".into())), Some(1), "{s}");
    }
    assert_eq!(qa, qb);
    assert_eq!(qa.get(&("transactions".into(), "late".into())), None);
    va.remove("data_quality");
    vb.remove("data_quality");
    assert_eq!(va, vb);
    let _ = std::fs::remove_dir_all(&clean);
    let _ = std::fs::remove_dir_all(&poisoned);
}

/// A recorded stream with the given transaction lines, one product `P1` (cost 10^10) and one
/// customer.
fn money_stream(dir: &Path, lines: &[String]) {
    std::fs::write(dir.join("transactions.jsonl"), lines.join("\n")).unwrap();
    std::fs::write(dir.join("behavior.jsonl"), "").unwrap();
    std::fs::write(
        dir.join("products.jsonl"),
        r#"{"product_id":"P1","name":"Gold bar","category_id":"C1","category_name":"Gold","brand":"B","cost":10000000000.00,"price":10000000000.00,"inventory_count":5}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("customers.jsonl"),
        r#"{"user_id":"U1","email":"a@b.c","registration_date":"2024-01-01"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("ip_reputation.jsonl"), "").unwrap();
}

fn tx(id: usize, user: &str, price: &str, quantity: &str, discount: &str) -> String {
    format!(
        r#"{{"transaction_id":"T{id}","product_id":"P1","user_id":"{user}","session_id":"S{id}","timestamp":"2024-03-01T10:{:02}:{:02}Z","price":{price},"quantity":{quantity},"discount_applied":{discount},"currency":"USD"}}"#,
        (id / 60) % 60,
        id % 60
    )
}

#[test]
fn money_at_the_bounds_sums_exactly_and_beyond_them_is_bad_value() {
    let dir = temp_dir("money");
    // 1,000 lines of the largest price and quantity: 10^18 cents each, 10^21 in all
    let mut lines: Vec<String> = (0..1_000)
        .map(|i| tx(i, "U1", "10000000000", "1000000", "0"))
        .collect();
    let bad = [
        tx(5_000, "U2", "1e99999999999999999999", "1", "0"),
        tx(5_001, "U2", "100000000000000", "1", "0"),
        tx(5_002, "U2", "10000000000.01", "1", "0"),
        tx(5_003, "U2", "-0.004", "1", "0"),
        tx(5_004, "U2", "1", "1000001", "0"),
        tx(5_005, "U2", "1", "1", "1e30"),
        tx(5_006, "U2", "1", "1", "-0.004"),
    ];
    lines.extend(bad.iter().cloned());
    money_stream(&dir, &lines);
    let stores = replay(&dir, TimeConfig::default());
    let q = quality(&stores);
    assert_eq!(q.get(&("products".into(), "missing_field".into())), None);
    assert_eq!(q[&("transactions".into(), "bad_value".into())], 7);
    assert_eq!(q[&("transactions".into(), "accepted".into())], 1_000);
    let as_of = stores.as_of().unwrap();
    let row_of = |view: &str, key: &[&str]| -> Vec<Value> {
        let v = stores.get(view).unwrap();
        let rows = v.select(&Select::default(), as_of, as_of).unwrap().rows;
        rows.into_iter()
            .find(|r| {
                key.iter()
                    .enumerate()
                    .all(|(i, k)| matches!(&r[i], Value::Str(s) if s == k))
            })
            .unwrap_or_else(|| panic!("{view}: no row {key:?}"))
    };
    let total: i128 = 1_000 * 1_000_000_000_000_000_000;
    let rfm = row_of("rfm", &["U1"]);
    assert_eq!(rfm[4], Value::Money(total), "rfm.monetary");
    let seg = stores.get("rfm_segments").unwrap();
    let seg_sum: i128 = seg
        .select(&Select::default(), as_of, as_of)
        .unwrap()
        .rows
        .iter()
        .map(|r| match r[2] {
            Value::Money(m) => m,
            ref o => panic!("{o:?}"),
        })
        .sum();
    assert_eq!(seg_sum, total);
    let rev = row_of("revenue_daily", &["total", "all"]);
    // gross, discount, net, cost (10^6 * 10^12 cents per line), margin
    assert_eq!(rev[6], Value::Money(total));
    assert_eq!(rev[7], Value::Money(0));
    assert_eq!(rev[8], Value::Money(total));
    assert_eq!(rev[9], Value::Money(total));
    assert_eq!(rev[10], Value::Money(0));
    // the fraud amount rule saw an hour of them
    let alerts = stores.get("fraud_alerts").unwrap();
    assert!(alerts
        .select(&Select::default(), as_of, as_of)
        .unwrap()
        .rows
        .iter()
        .any(|r| r[0] == Value::Str("amount".into())));

    // the binary: exit 0 and DECIMAL(38,2) money in the snapshot
    let out = dir.join("snapshot");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_shopdiff"))
        .arg("replay")
        .arg(&dir)
        .arg("--snapshot")
        .arg(&out)
        .args(["-w", "2"])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let file = std::fs::File::open(out.join("rfm.parquet")).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = reader.schema().clone();
    let (i, field) = schema.column_with_name("monetary").unwrap();
    assert_eq!(
        field.data_type(),
        &arrow::datatypes::DataType::Decimal128(38, 2)
    );
    let batch = reader.build().unwrap().next().unwrap().unwrap();
    let col = batch
        .column(i)
        .as_any()
        .downcast_ref::<arrow::array::Decimal128Array>()
        .unwrap();
    assert_eq!(col.value(0), total);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn records_older_than_the_horizon_are_too_late() {
    let dir = temp_dir("horizon");
    let day = |d: u32, id: usize| {
        format!(
            r#"{{"transaction_id":"H{id}","product_id":"P1","user_id":"U1","timestamp":"2024-03-{d:02}T12:00:00Z","price":1,"quantity":1,"currency":"USD"}}"#
        )
    };
    // days 1..20 in order, then a record of day 10 (inside a 14-day horizon: late), one of
    // day 3 (outside it: too_late), and a second delivery of day 2's line (too_late, not a
    // duplicate)
    let mut lines: Vec<String> = (1..=20).map(|d| day(d, d as usize)).collect();
    lines.push(day(10, 100));
    lines.push(day(3, 101));
    lines.push(day(2, 2));
    money_stream(&dir, &lines);
    let time = TimeConfig {
        horizon_ms: 14 * 86_400_000,
        ..TimeConfig::default()
    };
    let stores = replay(&dir, time);
    let q = quality(&stores);
    let get = |r: &str| q.get(&("transactions".into(), r.into())).copied();
    assert_eq!(get("accepted"), Some(21));
    assert_eq!(get("late"), Some(1));
    assert_eq!(get("too_late"), Some(2));
    assert_eq!(get("duplicate"), None);
    let _ = std::fs::remove_dir_all(&dir);
}
