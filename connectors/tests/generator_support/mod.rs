//! Helpers shared by the generator's integration tests.
#![allow(dead_code)]

use shopdiff_connectors::generator::{GenConfig, GenItem, GenStream, Generator, Note};
use shopdiff_schemas::records::{parse_behavior, parse_transaction, Event, Line};
use shopdiff_schemas::tables::parse_change;
use shopdiff_schemas::time::Ms;
use shopdiff_schemas::Reason;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// A config with every kind of noise, stretched over a few hours so every pattern fits.
pub fn noisy(records: u64) -> GenConfig {
    GenConfig {
        seed: 7,
        users: 2_000,
        products: 300,
        records,
        volume: 0.05,
        anomaly_rate: 0.01,
        bad_rate: 0.03,
        duplicate_rate: 0.02,
        late_rate: 0.01,
        ..GenConfig::default()
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shopdiff-gen-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn all_items(cfg: &GenConfig) -> (Generator, Vec<GenItem>) {
    let mut g = Generator::new(cfg.clone()).expect("valid config");
    let items: Vec<GenItem> = g.by_ref().collect();
    (g, items)
}

pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read"))
        })
        .collect()
}

/// The reason a stream record is rejected with, if it is.
pub fn verdict(item: &GenItem) -> Result<(), Reason> {
    match item.stream {
        GenStream::Transactions => parse_transaction(&item.json)
            .map(|_| ())
            .map_err(|r| r.reason),
        GenStream::Behavior => parse_behavior(&item.json).map(|_| ()).map_err(|r| r.reason),
        GenStream::Change => {
            let c = parse_change(&item.json).expect("a change line names its table and time");
            c.op.map(|_| ()).map_err(|r| r.reason)
        }
    }
}

/// What a replay sees: accepted records, duplicates and late records per stream.
#[derive(Default)]
pub struct Replayed {
    pub lines: Vec<Line>,
    pub events: Vec<Event>,
    pub duplicates: [u64; 2],
    pub late: [u64; 2],
    pub accepted: [u64; 2],
    pub behind_over_2500: u64,
}

pub fn replay(items: &[GenItem]) -> Replayed {
    let mut r = Replayed::default();
    let mut newest = [Ms::MIN; 2];
    let mut seen: [HashSet<String>; 2] = Default::default();
    for it in items {
        let (i, id, ts) = match it.stream {
            GenStream::Transactions => match parse_transaction(&it.json) {
                Ok(l) => (0, format!("{}/{}", l.transaction_id, l.product_id), l.ts),
                Err(_) => continue,
            },
            GenStream::Behavior => match parse_behavior(&it.json) {
                Ok(e) => (1, e.event_id.to_string(), e.ts),
                Err(_) => continue,
            },
            GenStream::Change => continue,
        };
        if !seen[i].insert(id) {
            r.duplicates[i] += 1;
            assert!(matches!(it.note, Note::Duplicate { .. }), "{}", it.json);
            continue;
        }
        assert!(!matches!(it.note, Note::Duplicate { .. }), "{}", it.json);
        r.accepted[i] += 1;
        if newest[i] != Ms::MIN && ts < newest[i] - 5_000 {
            r.late[i] += 1;
            assert_eq!(it.note, Note::Late, "{}", it.json);
        } else {
            assert_ne!(it.note, Note::Late, "{}", it.json);
            if newest[i].saturating_sub(ts) > 2_500 {
                r.behind_over_2500 += 1;
            }
        }
        newest[i] = newest[i].max(ts);
        match it.stream {
            GenStream::Transactions => r.lines.push(parse_transaction(&it.json).expect("valid")),
            _ => r.events.push(parse_behavior(&it.json).expect("valid")),
        }
    }
    r
}
