//! The workload generator: determinism, a clean config, the config's serde form and checks,
//! the shape of the traffic and of the table changes. Noise, fraud and the example stream have
//! their own test files.

mod generator_support;

use generator_support::{all_items, files, noisy, replay, temp_dir, verdict};
use shopdiff_connectors::generator::{
    write_recorded_stream, GenConfig, GenStream, Generator, Note, WriteOptions,
};
use shopdiff_schemas::tables::parse_row;
use shopdiff_schemas::Table;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

#[test]
fn same_config_same_bytes() {
    let cfg = noisy(20_000);
    let opts = WriteOptions {
        progress: false,
        ..WriteOptions::default()
    };
    let (a, b) = (temp_dir("det-a"), temp_dir("det-b"));
    let sa = write_recorded_stream(&cfg, &a, &opts).expect("write a");
    let sb = write_recorded_stream(&cfg, &b, &opts).expect("write b");
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.len(), 7, "{:?}", fa.keys());
    assert_eq!(fa, fb);
    assert_eq!((sa.transactions + sa.behavior), cfg.records);
    assert_eq!(sa.transactions, sb.transactions);
    let other = temp_dir("det-c");
    write_recorded_stream(
        &GenConfig {
            seed: 8,
            ..cfg.clone()
        },
        &other,
        &opts,
    )
    .expect("write c");
    assert_ne!(files(&other)["behavior.jsonl"], fa["behavior.jsonl"]);
    // zstd output decompresses to the same lines
    let z = temp_dir("det-z");
    write_recorded_stream(&cfg, &z, &WriteOptions { zstd: true, ..opts }).expect("write z");
    let unz = zstd::decode_all(&files(&z)["transactions.jsonl.zst"][..]).expect("zstd");
    assert_eq!(unz, fa["transactions.jsonl"]);
    for d in [a, b, other, z] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn clean_config_has_no_noise() {
    let cfg = GenConfig {
        records: 5_000,
        anomaly_rate: 0.0,
        ..GenConfig::default()
    };
    let (g, items) = all_items(&cfg);
    assert!(items.iter().all(|i| i.note == Note::Valid));
    assert!(items.iter().all(|i| verdict(i).is_ok()));
    assert!(g.anomalies().is_empty());
    let tables = g.tables();
    assert!(tables.products.len() == 1_000 && tables.customers.len() > 9_000);
}

#[test]
fn realistic_shape() {
    let cfg = GenConfig {
        records: 100_000,
        ..GenConfig::default()
    };
    let (g, items) = all_items(&cfg);
    let r = replay(&items);
    let ratio = r.accepted[1] as f64 / r.accepted[0] as f64;
    assert!(
        (7.0..15.0).contains(&ratio),
        "behavior per transaction line {ratio}"
    );
    let orders: HashSet<&str> = r.lines.iter().map(|l| l.transaction_id.as_str()).collect();
    let multi = r.lines.len() - orders.len();
    assert!(multi * 10 > r.lines.len(), "few multi-line orders");
    let qty_ok = r
        .lines
        .iter()
        .filter(|l| (1..=3).contains(&l.quantity))
        .count();
    assert!(qty_ok * 100 >= r.lines.len() * 97);
    let currencies: BTreeSet<&str> = r.lines.iter().map(|l| l.currency.as_str()).collect();
    assert_eq!(
        currencies.into_iter().collect::<Vec<_>>(),
        ["CAD", "EUR", "GBP", "USD"]
    );
    let products: HashSet<String> = g
        .tables()
        .products
        .iter()
        .filter_map(|l| parse_row(Table::Products, &l.json).ok())
        .map(|r| r.key().to_string())
        .collect();
    let customers: HashSet<String> = g
        .tables()
        .customers
        .iter()
        .filter_map(|l| parse_row(Table::Customers, &l.json).ok())
        .map(|r| r.key().to_string())
        .collect();
    let share = |n: usize| n as f64 / r.lines.len() as f64;
    let unknown_p = share(
        r.lines
            .iter()
            .filter(|l| !products.contains(l.product_id.as_str()))
            .count(),
    );
    let unknown_c = share(
        r.lines
            .iter()
            .filter(|l| !customers.contains(l.user_id.as_str()))
            .count(),
    );
    assert!(
        (0.003..0.08).contains(&unknown_p),
        "unknown products {unknown_p}"
    );
    assert!(
        (0.005..0.08).contains(&unknown_c),
        "unknown customers {unknown_c}"
    );
    let changes = items
        .iter()
        .filter(|i| i.stream == GenStream::Change)
        .count();
    assert!(changes >= 50, "{changes} changes");
    for needle in [
        "\"table\":\"products\",\"op\":\"delete\"",
        "\"table\":\"customers\",\"op\":\"delete\"",
        "\"table\":\"customers\",\"op\":\"upsert\"",
        "\"table\":\"ip_reputation\",\"op\":\"upsert\"",
    ] {
        assert!(
            items.iter().any(|i| i.json.contains(needle)),
            "no change {needle}"
        );
    }
    // three-decimal discounts ending in 5 and offsets other than Z appear
    assert!(items
        .iter()
        .any(|i| i.json.contains("\"discount_applied\":")
            && i.json
                .split("\"discount_applied\":")
                .nth(1)
                .is_some_and(|d| {
                    let d = d.split(',').next().unwrap_or("");
                    d.len() > 3 && d.as_bytes()[d.len() - 4] == b'.' && d.ends_with('5')
                })));
    assert!(items
        .iter()
        .any(|i| i.json.contains("-04:00\"") || i.json.contains("+02:00\"")));
}

#[test]
fn changes_touch_only_what_they_change() {
    let (g, items) = all_items(&GenConfig {
        records: 200_000,
        ..GenConfig::default()
    });
    type Object = serde_json::Map<String, serde_json::Value>;
    let mut rows: HashMap<(Table, String), Object> = HashMap::new();
    let key_of = |t: Table, o: &Object| o[t.key_column()].as_str().unwrap_or_default().to_string();
    for table in Table::ALL {
        for l in g
            .tables()
            .get(table)
            .iter()
            .filter(|l| l.note == Note::Valid)
        {
            let o: Object = serde_json::from_str(&l.json).expect("object");
            rows.insert((table, key_of(table, &o)), o);
        }
    }
    let mut compared = HashMap::new();
    for it in items
        .iter()
        .filter(|i| i.stream == GenStream::Change && i.note == Note::Valid)
    {
        let v: serde_json::Value = serde_json::from_str(&it.json).expect("change");
        let table = Table::parse(v["table"].as_str().expect("table")).expect("known table");
        let row: Object = serde_json::from_value(v["row"].clone()).expect("row");
        let key = (table, key_of(table, &row));
        if v["op"] == "delete" {
            assert_eq!(row.len(), 1, "{}", it.json);
            rows.remove(&key);
            continue;
        }
        let allowed: &[&str] = match table {
            Table::Products => &["price", "cost", "inventory_count", "updated_at"],
            Table::Customers => &["customer_tier", "registration_date", "last_login"],
            Table::IpReputation => &[
                "risk_score",
                "country_risk",
                "is_tor",
                "previous_fraud_incidents",
            ],
        };
        if let Some(before) = rows.get(&key) {
            let changed: Vec<&String> = row
                .keys()
                .filter(|k| before.get(*k) != row.get(*k))
                .collect();
            assert!(
                changed.iter().all(|k| allowed.contains(&k.as_str())),
                "{changed:?} in {}",
                it.json
            );
            *compared.entry(table).or_insert(0) += 1;
        }
        rows.insert(key, row);
    }
    assert_eq!(compared.len(), 3, "{compared:?}");
}

#[test]
fn config_round_trips_and_is_checked() {
    let cfg = noisy(10);
    let text = serde_json::to_string(&cfg).expect("json");
    assert!(
        text.contains("\"start\":\"2024-07-01T00:00:00.000Z\""),
        "{text}"
    );
    let back: GenConfig = serde_json::from_str(&text).expect("back");
    assert_eq!(back, cfg);
    let partial: GenConfig =
        serde_json::from_str("{\"records\":5,\"start\":\"2024-02-29T00:00:00Z\"}")
            .expect("partial");
    assert_eq!(
        (partial.records, partial.seed, partial.start),
        (5, 42, 1_709_164_800_000)
    );
    assert!(serde_json::from_str::<GenConfig>("{\"recods\":5}").is_err());
    for bad in [
        GenConfig {
            bad_rate: 0.9,
            ..GenConfig::default()
        },
        GenConfig {
            users: 0,
            ..GenConfig::default()
        },
        GenConfig {
            currencies: vec!["usd".into()],
            ..GenConfig::default()
        },
    ] {
        let err = Generator::new(bad).err().expect("rejected").to_string();
        assert!(err.starts_with("invalid generator config: "), "{err}");
    }
    let err = write_recorded_stream(&cfg, Path::new("/proc/nope/x"), &WriteOptions::default())
        .expect_err("cannot write");
    assert!(err.to_string().contains("/proc/nope/x"), "{err}");
}
