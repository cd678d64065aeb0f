//! Fraud scenarios through the whole engine: every attack the generator injects (its
//! `anomalies.jsonl` manifest) raises exactly its alert at the tick of its first record, holds
//! it through its last, and a windowed alert is cleared once its window has passed; no alert
//! appears that the manifest does not explain.

use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, Rule, WriteOptions};
use shopdiff_connectors::{Replay, ReplayOptions, TimeConfig};
use shopdiff_dataflows::config::{FraudConfig, ViewsConfig};
use shopdiff_schemas::rows::Value;
use shopdiff_schemas::time::ceil_tick;
use shopdiff_server::store::{HistoryConfig, Select};
use shopdiff_server::{Engine, EngineConfig};
use std::collections::BTreeSet;

const TICK: u64 = 1000;

#[test]
fn every_injected_attack_raises_and_clears_its_alert() {
    let dir = std::env::temp_dir().join(format!("shopdiff-fraud-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // with bad records, duplicates and late records around the attacks
    let cfg = GenConfig {
        seed: 7,
        users: 2_000,
        products: 300,
        records: 120_000,
        volume: 0.05,
        anomaly_rate: 0.01,
        bad_rate: 0.03,
        duplicate_rate: 0.02,
        late_rate: 0.01,
        ..GenConfig::default()
    };
    write_recorded_stream(&cfg, &dir, &WriteOptions::default()).unwrap();
    let manifest: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("anomalies.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for rule in Rule::ALL {
        let n = manifest
            .iter()
            .filter(|a| a["rule"] == rule.as_str())
            .count();
        assert!(n >= 2, "{n} {} patterns", rule.as_str());
    }

    let fraud = FraudConfig::default();
    let engine = Engine::start_with(
        &EngineConfig {
            fine_ticks: true,
            cluster: None,
            workers: 2,
            views: ViewsConfig {
                tick_ms: TICK,
                fraud,
                horizon_ms: None,
            },
        },
        // keep every update: the test reads the alerts at many past as_ofs
        HistoryConfig {
            span_ms: u64::MAX / 4,
            max_updates: usize::MAX,
        },
    )
    .unwrap();
    let replay = Replay::open(
        &dir,
        ReplayOptions {
            time: TimeConfig::default(),
            batch_records: 2_000,
            dead_letters: None,
        },
    )
    .unwrap();
    replay.run(|b| engine.feed(b)).unwrap();
    let stores = engine.finish().unwrap();
    let current = stores.as_of().unwrap();
    let alerts = stores.get("fraud_alerts").unwrap();
    let at = |t: u64| -> BTreeSet<(String, String, String)> {
        let t = t.min(current);
        alerts
            .select(&Select::default(), t, current)
            .unwrap()
            .rows
            .into_iter()
            .map(|r| {
                let s = |v: &Value| match v {
                    Value::Str(s) => s.to_string(),
                    other => format!("{other:?}"),
                };
                (s(&r[0]), s(&r[1]), s(&r[2]))
            })
            .collect()
    };
    let ms = |a: &serde_json::Value, f: &str| -> u64 {
        shopdiff_schemas::time::parse_rfc3339(a[f].as_str().unwrap()).unwrap() as u64
    };
    let window = |rule: &str| -> Option<u64> {
        match rule {
            "velocity" => Some(fraud.velocity.window_ms),
            "amount" => Some(fraud.amount.window_ms),
            "geo" => Some(fraud.geo.window_ms),
            _ => None,
        }
    };
    let explained = |rule: &str, key: &str, t: u64| {
        manifest.iter().any(|a| {
            a["rule"] == rule && a["key"] == key && {
                let first = ceil_tick(ms(a, "first") as i64, TICK);
                match window(rule) {
                    Some(w) => first <= t && t < ceil_tick(ms(a, "last") as i64, TICK) + w,
                    None => first <= t,
                }
            }
        })
    };
    let mut checked = 0;
    let mut cleared = 0;
    for a in &manifest {
        let rule = a["rule"].as_str().unwrap();
        let key = a["key"].as_str().unwrap().to_string();
        let user = a["user_id"].as_str().unwrap().to_string();
        let want = (rule.to_string(), key.clone(), user);
        let first = ceil_tick(ms(a, "first") as i64, TICK);
        let last = ceil_tick(ms(a, "last") as i64, TICK);
        if last > current {
            continue;
        }
        assert!(
            at(first).contains(&want),
            "not raised at its first tick: {a}"
        );
        assert!(
            !at(first - TICK).iter().any(|x| x.0 == rule && x.1 == key),
            "raised before its first record: {a}"
        );
        assert!(
            at(last).contains(&want),
            "not held through its last tick: {a}"
        );
        if let Some(w) = window(rule) {
            let gone = last + w;
            if gone <= current {
                // unless another injected pattern of the same key is still in its window
                let again = manifest.iter().any(|b| {
                    b != a
                        && b["rule"] == rule
                        && b["key"] == key.as_str()
                        && ceil_tick(ms(b, "first") as i64, TICK) <= gone
                        && gone < ceil_tick(ms(b, "last") as i64, TICK) + w
                });
                if !again {
                    assert!(
                        !at(gone).iter().any(|x| x.0 == rule && x.1 == key),
                        "still raised once its window passed (as_of {gone}): {a}"
                    );
                    cleared += 1;
                }
            }
        }
        // every alert present at these moments is explained by the manifest
        for t in [first, last] {
            for (r, k, _) in at(t) {
                assert!(
                    explained(&r, &k, t),
                    "alert {r} {k} at {t} is not an injected pattern"
                );
            }
        }
        checked += 1;
    }
    eprintln!("{checked} injected patterns checked, {cleared} clears");
    assert!(checked >= 8, "{checked} patterns checked");
    assert!(cleared >= 4, "{cleared} clears checked");
    let _ = std::fs::remove_dir_all(&dir);
}
