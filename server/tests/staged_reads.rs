//! Reads right after each `as_of` is published, while the views' staged updates are usually
//! still being merged into their rows (see `store::ViewStore::stage`): a read of one key
//! answers exactly the rows a full read of the view gives at the same `as_of`, for every key
//! each view had at the `as_of` before (changed, unchanged or gone), at every `as_of` of a
//! generated stream, with 2 workers. Whether the publisher merged a view before the key reads is
//! up to the threads; the store's own tests take every step of a merge deterministically.

mod support;

use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, WriteOptions};
use shopdiff_connectors::{Replay, ReplayOptions};
use shopdiff_schemas::rows::Value;
use shopdiff_server::store::{KeyVal, Select};
use shopdiff_server::{Engine, EngineConfig};
use std::time::Duration;
use support::TempDir;

/// The key of a full read's row, as a key read takes it.
fn key_of(row: &[Value], key_len: usize) -> Vec<KeyVal> {
    row[..key_len].iter().map(KeyVal::of).collect()
}

#[test]
fn key_reads_at_a_fresh_as_of_match_the_full_read() {
    // a generated stream (tricky records included), replayed in small batches
    let tmp = TempDir::new("shopdiff-staged-reads");
    let dir = tmp.0.join("stream");
    let cfg = GenConfig {
        seed: 20_261_205,
        users: 300,
        products: 60,
        records: 8_000,
        volume: 0.01,
        bad_rate: 0.01,
        duplicate_rate: 0.01,
        late_rate: 0.01,
        ..GenConfig::default()
    };
    let opts = WriteOptions {
        progress: false,
        ..WriteOptions::default()
    };
    write_recorded_stream(&cfg, &dir, &opts).expect("generating");
    let mut batches = Vec::new();
    Replay::open(
        &dir,
        ReplayOptions {
            batch_records: 500,
            ..ReplayOptions::default()
        },
    )
    .expect("the generated stream")
    .run(|b| {
        batches.push(b);
        true
    })
    .expect("replaying the generated stream");
    assert!(batches.len() > 5, "too few batches: {}", batches.len());
    let engine = Engine::start(&EngineConfig {
        fine_ticks: false,
        cluster: None,
        workers: 2,
        views: Default::default(),
    })
    .expect("engine");
    let tick = engine.stores().tick();
    let mut checked = 0usize;
    let mut prev_keys: Vec<Vec<Vec<KeyVal>>> = vec![Vec::new(); engine.stores().iter().count()];
    for b in batches {
        let frontier = b.frontier;
        assert!(engine.feed(b), "the engine stopped");
        let Some(as_of) = engine
            .stores()
            .wait_as_of(frontier.saturating_sub(tick), Duration::from_secs(60))
        else {
            continue;
        };
        let g = engine.stores().read();
        assert_eq!(g.as_of(), Some(as_of));
        // first every key each view had at the previous `as_of`, by key (nothing at this
        // `as_of` has merged the views yet, unless the publisher got there first), then each
        // view's full read (which merges it)
        let by_key: Vec<Vec<Vec<Vec<Value>>>> = engine
            .stores()
            .iter()
            .zip(&prev_keys)
            .map(|(v, keys)| {
                keys.iter()
                    .map(|k| {
                        let sel = Select {
                            key: Some(k.clone()),
                            ..Select::default()
                        };
                        v.select(&sel, as_of, as_of).expect("key read").rows
                    })
                    .collect()
            })
            .collect();
        for ((v, keys), rows) in engine.stores().iter().zip(&mut prev_keys).zip(&by_key) {
            let def = v.def();
            let all = v
                .select(&Select::default(), as_of, as_of)
                .expect("full read");
            for (k, rows) in keys.iter().zip(rows) {
                let want: Vec<Vec<Value>> = all
                    .rows
                    .iter()
                    .filter(|r| &key_of(r, def.key_len) == k)
                    .cloned()
                    .collect();
                assert_eq!(rows, &want, "{} key {k:?} at {as_of}", def.name);
                checked += 1;
            }
            *keys = all.rows.iter().map(|r| key_of(r, def.key_len)).collect();
            keys.dedup();
        }
        drop(g);
    }
    assert!(checked > 100, "only {checked} key reads checked");
    engine.finish().expect("finish");
}
