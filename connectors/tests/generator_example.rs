//! The committed example stream (`examples/data/`): it holds every case its README lists and
//! equals a fresh generation (`SHOPDIFF_REGEN=1` rewrites it).

mod generator_support;

use generator_support::{all_items, files, replay, temp_dir};
use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, WriteOptions};
use shopdiff_schemas::records::Line;
use shopdiff_schemas::tables::{parse_row, TableRow};
use shopdiff_schemas::time::Ms;
use shopdiff_schemas::{Reason, Table};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

/// The config of the committed example stream. Its seed is one whose 650 records hold every
/// case (see `examples/data/README.md`); after a change to the generator, pick another seed if
/// `example_data_covers_every_case` fails.
fn example_config() -> GenConfig {
    GenConfig {
        seed: 290,
        users: 100,
        products: 40,
        records: 650,
        volume: 0.0008,
        anomaly_rate: 0.06,
        bad_rate: 0.12,
        duplicate_rate: 0.03,
        late_rate: 0.025,
        ..GenConfig::default()
    }
}

#[test]
fn example_data_covers_every_case() {
    let (g, items) = all_items(&example_config());
    let kinds: BTreeSet<String> = items
        .iter()
        .map(|i| format!("{:?} {:?}", i.stream, i.note))
        .collect();
    use Reason::*;
    let mut want = vec![
        "Transactions Late".to_string(),
        "Behavior Late".into(),
        "Transactions Duplicate { changed: true }".into(),
        "Transactions Duplicate { changed: false }".into(),
        "Behavior Duplicate { changed: true }".into(),
        "Behavior Duplicate { changed: false }".into(),
    ];
    for r in [MalformedJson, MissingField, BadType, BadTimestamp, BadValue] {
        want.push(format!("Transactions Bad({r:?})"));
    }
    for r in [MalformedJson, MissingField, BadType, BadTimestamp] {
        want.push(format!("Behavior Bad({r:?})"));
    }
    for w in &want {
        assert!(
            kinds.contains(w),
            "the example stream has no {w}: pick another seed"
        );
    }
    let rules: BTreeSet<&str> = g.anomalies().iter().map(|a| a.rule.as_str()).collect();
    assert_eq!(rules.len(), 4, "{rules:?}: pick another seed");
    // lines of unknown products and customers, and purchases before the registration
    let registered: HashMap<String, Ms> = g
        .tables()
        .customers
        .iter()
        .filter_map(|l| match parse_row(Table::Customers, &l.json) {
            Ok(TableRow::Customer(c)) => Some((c.user_id.to_string(), c.registration_date)),
            _ => None,
        })
        .collect();
    let products: HashSet<String> = g
        .tables()
        .products
        .iter()
        .filter_map(|l| parse_row(Table::Products, &l.json).ok())
        .map(|r| r.key().to_string())
        .collect();
    let r = replay(&items);
    let count = |f: &dyn Fn(&Line) -> bool| r.lines.iter().filter(|l| f(l)).count();
    assert!(count(&|l| !products.contains(l.product_id.as_str())) > 0);
    assert!(count(&|l| !registered.contains_key(l.user_id.as_str())) > 0);
    assert!(
        count(&|l| registered
            .get(l.user_id.as_str())
            .is_some_and(|&t| t > l.ts))
            > 0
    );
    let text = |needle: &str| items.iter().any(|i| i.json.contains(needle));
    for needle in [
        "\"marketing_attribution\":null",
        "\"marketing_attribution\":{\"campaign_id\":null,\"channel\":null,\"referrer\":null}",
        "\"table\":\"customers\",\"op\":\"delete\"",
        "\"table\":\"products\",\"op\":\"delete\"",
        "\"table\":\"ip_reputation\",\"op\":\"upsert\"",
    ] {
        assert!(
            text(needle),
            "the example stream has no {needle}: pick another seed"
        );
    }
    let ts_forms = |re: fn(&str) -> bool| {
        items
            .iter()
            .filter_map(|i| i.json.split("\"timestamp\":\"").nth(1))
            .any(|t| re(&t[..t.find('"').unwrap_or(0)]))
    };
    assert!(
        ts_forms(|t| t.len() == 20 && t.ends_with('Z')),
        "no timestamp without a fraction"
    );
    assert!(
        ts_forms(|t| t.ends_with(":00") && !t.ends_with('Z')),
        "no timestamp with an offset"
    );
    let three_decimals = items
        .iter()
        .filter_map(|i| i.json.split("\"discount_applied\":").nth(1))
        .any(|d| {
            let d = d.split([',', '}']).next().unwrap_or("");
            d.find('.')
                .is_some_and(|p| d.len() - p == 4 && d.ends_with('5'))
        });
    assert!(
        three_decimals,
        "no discount with three decimals ending in 5"
    );
}

/// The committed example stream (`examples/data/`) equals a fresh generation; with
/// `SHOPDIFF_REGEN=1` it is rewritten instead.
#[test]
fn regenerate_example_data() {
    let cfg = example_config();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data");
    let opts = WriteOptions {
        progress: false,
        ..WriteOptions::default()
    };
    let hint = "examples/data is stale: run SHOPDIFF_REGEN=1 cargo test -p shopdiff-connectors \
                --test generator_example regenerate_example_data";
    if std::env::var("SHOPDIFF_REGEN").as_deref() == Ok("1") {
        let stats = write_recorded_stream(&cfg, &committed, &opts).expect("regenerate");
        eprintln!("{stats:#?}");
        return;
    }
    let fresh = temp_dir("example");
    write_recorded_stream(&cfg, &fresh, &opts).expect("generate");
    let want = files(&fresh);
    let mut have = files(&committed);
    have.retain(|name, _| name.ends_with(".jsonl"));
    assert_eq!(
        have.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{hint}"
    );
    for (name, bytes) in &want {
        assert!(have[name] == *bytes, "{name}: {hint}");
    }
    let _ = std::fs::remove_dir_all(fresh);
}
