//! Replayed recorded streams through every view's dataflow, against the naive batch twins, with
//! 1, 2, 3 and 4 workers: the example stream in `examples/data/` (compared at every time at which
//! anything changes) and a freshly generated stream of 20,000 records (compared at every batch
//! frontier minus a tick, at the final `as_of`, once every window has expired and at about 40
//! other times at which something changes).
//!
//! The replay's batches are collected first; the harness (shared with
//! `dataflows/tests/reference.rs`) then feeds them into `all_views` in timely, advancing the
//! inputs to each batch's frontier, and the twins see the same updates: records with effect time
//! `<= T` and the tables' initial rows plus every change with time `<= T`.

#[path = "../../dataflows/tests/support/mod.rs"]
mod support;

use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, WriteOptions};
use shopdiff_connectors::{Batch, Replay, ReplayOptions, ReplayStats};
use shopdiff_dataflows::config::{ViewsConfig, INVENTORY_WINDOW_MS};
use std::path::{Path, PathBuf};
use std::time::Instant;
use support::{compare, critical_times, run_views, History};

/// Replays `dir` in batches of `batch_records` records.
fn replay(dir: &Path, batch_records: usize) -> (Vec<Batch>, ReplayStats) {
    let opts = ReplayOptions {
        batch_records,
        ..ReplayOptions::default()
    };
    let mut batches = Vec::new();
    let stats = Replay::open(dir, opts)
        .expect("a recorded stream")
        .run(|b| {
            batches.push(b);
            true
        })
        .expect("replaying");
    (batches, stats)
}

/// The history of the batches and their frontiers (increasing, without repeats). Checks the
/// sources' promise on the way: no update of a batch is earlier than the previous frontier.
fn history(batches: &[Batch]) -> (History, Vec<u64>) {
    let mut h = History::default();
    let mut frontiers: Vec<u64> = Vec::new();
    let mut prev = 0u64;
    for (i, b) in batches.iter().enumerate() {
        let times = b
            .lines
            .iter()
            .map(|x| x.1)
            .chain(b.events.iter().map(|x| x.1))
            .chain(b.quality.iter().map(|x| x.2))
            .chain(b.tables.iter().map(|x| x.1));
        for t in times {
            assert!(
                t >= prev,
                "batch {i} has an update at {t} < frontier {prev}"
            );
        }
        assert!(b.frontier >= prev, "batch {i}: frontier went back");
        prev = b.frontier;
        h.lines.extend(b.lines.iter().cloned());
        h.events.extend(b.events.iter().cloned());
        h.quality.extend(b.quality.iter().cloned());
        h.tables.extend(b.tables.iter().cloned());
        if b.frontier > 0 && frontiers.last() != Some(&b.frontier) {
            frontiers.push(b.frontier);
        }
    }
    (h, frontiers)
}

/// Runs the views over `h` with 1, 2, 3 and 4 workers and compares at `times` plus `extra` of the
/// times at which an input or an output changes or a window ends: all of them (`usize::MAX`) or
/// about that many, evenly spaced.
fn check(name: &str, h: &History, frontiers: &[u64], times: &[u64], extra: usize) {
    check_with(&ViewsConfig::default(), name, h, frontiers, times, extra)
}

/// [`check`] with the views' config `cfg`.
fn check_with(
    cfg: &ViewsConfig,
    name: &str,
    h: &History,
    frontiers: &[u64],
    times: &[u64],
    extra: usize,
) {
    let cfg = *cfg;
    for workers in [1, 2, 3, 4] {
        let started = Instant::now();
        let out = run_views(h, &cfg, workers, frontiers);
        let ran = started.elapsed();
        let mut at = times.to_vec();
        let critical = critical_times(h, &cfg, &out);
        let step = (critical.len() / extra.max(1)).max(1);
        at.extend(critical.iter().step_by(step));
        let label = format!("{name}, {workers} worker(s)");
        let n = compare(h, &cfg, &out, &at, &label).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{label}: {} output updates in {ran:?}, {n} times compared in {:?}",
            out.len(),
            started.elapsed() - ran
        );
    }
}

/// Every batch frontier minus a tick, the final `as_of`, and a time after every window.
fn as_ofs(frontiers: &[u64], stats: &ReplayStats, tick: u64) -> Vec<u64> {
    let mut t: Vec<u64> = frontiers.iter().map(|f| f.saturating_sub(tick)).collect();
    t.push(stats.as_of);
    t.push(stats.as_of + INVENTORY_WINDOW_MS);
    t
}

#[test]
fn example_stream_matches_the_twins_at_every_time() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data");
    let (batches, stats) = replay(&dir, 50);
    let (h, frontiers) = history(&batches);
    assert!(
        h.lines.len() > 40 && h.events.len() > 400 && h.tables.len() > 300,
        "the example stream is smaller than expected: {stats:?}"
    );
    assert!(stats.late > 0 && stats.duplicates > 0 && stats.rejected > 0);
    assert!(frontiers.len() > 5, "too few batches: {frontiers:?}");
    let tick = ViewsConfig::default().tick_ms;
    check(
        "examples/data",
        &h,
        &frontiers,
        &as_ofs(&frontiers, &stats, tick),
        usize::MAX,
    );
}

/// A directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn generated_stream_matches_the_twins() {
    let dir = TempDir::new("shopdiff-replay-reference");
    let cfg = GenConfig {
        seed: 20_261_125,
        users: 400,
        products: 80,
        records: 20_000,
        volume: 0.01,
        anomaly_rate: 0.02,
        bad_rate: 0.02,
        duplicate_rate: 0.02,
        late_rate: 0.02,
        ..GenConfig::default()
    };
    let opts = WriteOptions {
        progress: false,
        ..WriteOptions::default()
    };
    write_recorded_stream(&cfg, &dir.0, &opts).expect("generating");
    let (batches, stats) = replay(&dir.0, 2_000);
    let (h, frontiers) = history(&batches);
    assert!(stats.late > 0 && stats.duplicates > 0 && stats.rejected > 0);
    assert!(stats.changes_applied > 0, "{stats:?}");
    assert!(frontiers.len() >= 8, "too few batches: {frontiers:?}");
    eprintln!(
        "generated: {} lines, {} events, {} table updates, {} batches, as_of {} ({} h after the first frontier)",
        h.lines.len(),
        h.events.len(),
        h.tables.len(),
        batches.len(),
        stats.as_of,
        (stats.as_of - frontiers[0]) / 3_600_000
    );
    let tick = ViewsConfig::default().tick_ms;
    check(
        "generated",
        &h,
        &frontiers,
        &as_ofs(&frontiers, &stats, tick),
        40,
    );
}

/// Appends to `file` a copy of its last record whose `field` is `kind` (any, when `None`) and
/// whose timestamp is within an hour of `hours_before` the stream's end, with `id_field` set to
/// `id`: a late arrival, delivered last, for a day long over.
fn append_late_copy(file: &Path, id_field: &str, id: &str, kind: Option<(&str, &str)>) {
    let text = std::fs::read_to_string(file).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ts = |r: &serde_json::Value| {
        r["timestamp"]
            .as_str()
            .and_then(shopdiff_schemas::time::parse_rfc3339)
    };
    let end = records.iter().filter_map(ts).max().unwrap();
    let hour = shopdiff_schemas::time::HOUR_MS;
    let target = end - 40 * hour;
    let mut late = records
        .iter()
        .rev()
        .find(|r| {
            ts(r).is_some_and(|t| (t - target).abs() < hour)
                && kind.is_none_or(|(f, v)| r[f].as_str() == Some(v))
        })
        .unwrap_or_else(|| panic!("no record 40 h before the end of {}", file.display()))
        .clone();
    late[id_field] = serde_json::Value::String(id.into());
    let mut text = text;
    text.push_str(&late.to_string());
    text.push('\n');
    std::fs::write(file, text).unwrap();
}

/// Four days replayed with a two-day lateness horizon: the funnel's session-days and the
/// products' days are retired as their days fall below it, and every view still equals its
/// twin at every batch's `as_of` (the ingest rejects what is older than the horizon, so no
/// retired state is ever needed again). A product view and an order line 40 hours late, for a
/// day that is over but within the horizon, arrive last: retired a day too early, their
/// session-day and product-day would be counted twice.
#[test]
fn state_retired_below_the_horizon_changes_no_view() {
    let dir = TempDir::new("shopdiff-replay-horizon");
    let cfg = GenConfig {
        seed: 20_261_207,
        users: 300,
        products: 60,
        anomaly_rate: 0.02,
        bad_rate: 0.01,
        duplicate_rate: 0.02,
        late_rate: 0.05,
        ..GenConfig::default()
    }
    .for_days(4.0, Some(16_000));
    let opts = WriteOptions {
        progress: false,
        ..WriteOptions::default()
    };
    write_recorded_stream(&cfg, &dir.0, &opts).expect("generating");
    append_late_copy(
        &dir.0.join("behavior.jsonl"),
        "event_id",
        "E-late-1",
        Some(("event_type", "product_view")),
    );
    append_late_copy(
        &dir.0.join("transactions.jsonl"),
        "transaction_id",
        "T-late-1",
        None,
    );
    let day = shopdiff_schemas::time::DAY_MS as u64;
    let ropts = ReplayOptions {
        batch_records: 1_000,
        time: shopdiff_connectors::TimeConfig {
            horizon_ms: 2 * day,
            ..Default::default()
        },
        ..ReplayOptions::default()
    };
    let mut batches = Vec::new();
    let stats = Replay::open(&dir.0, ropts)
        .expect("a recorded stream")
        .run(|b| {
            batches.push(b);
            true
        })
        .expect("replaying");
    let (h, frontiers) = history(&batches);
    assert!(
        stats.as_of - frontiers[0] > 3 * day,
        "the stream spans {} h",
        (stats.as_of - frontiers[0]) / 3_600_000
    );
    // both late copies were accepted (within the horizon), long after their day ended
    let late_line = h.lines.iter().find(|x| x.0.transaction_id == "T-late-1");
    let late_event = h.events.iter().find(|x| x.0.event_id == "E-late-1");
    for (ts, at) in [
        late_line.map(|x| (x.0.ts, x.1)).expect("the late line"),
        late_event.map(|x| (x.0.ts, x.1)).expect("the late event"),
    ] {
        assert!(at as i64 > shopdiff_schemas::time::day_start(ts) + 36 * 3_600_000);
    }
    let views = ViewsConfig {
        horizon_ms: Some(2 * day),
        ..ViewsConfig::default()
    };
    let tick = views.tick_ms;
    check_with(
        &views,
        "horizon",
        &h,
        &frontiers,
        &as_ofs(&frontiers, &stats, tick),
        40,
    );
}

/// The batches as the engine feeds them by default: each computed at its `as_of`
/// ([`Batch::compute_at_as_of`]).
fn at_their_as_ofs(batches: &[Batch], tick: u64) -> Vec<Batch> {
    let mut prev = 0;
    batches
        .iter()
        .map(|b| {
            let mut b = b.clone();
            b.compute_at_as_of(prev, tick, None);
            prev = prev.max(b.frontier);
            b
        })
        .collect()
}

/// The views computed from batches moved to their `as_of`s equal the twins of the original
/// records at every batch's `as_of` (the only ones published), at the final one and once
/// every window has passed, with 1, 2, 3 and 4 workers.
#[test]
fn batches_computed_at_their_as_of_match_the_twins_at_every_published_as_of() {
    let tick = ViewsConfig::default().tick_ms;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data");
    let dir = TempDir::new("shopdiff-replay-coarse");
    let cfg = GenConfig {
        seed: 20_261_207,
        users: 300,
        products: 60,
        records: 12_000,
        volume: 0.01,
        anomaly_rate: 0.03,
        bad_rate: 0.02,
        duplicate_rate: 0.02,
        late_rate: 0.02,
        ..GenConfig::default()
    };
    let opts = WriteOptions {
        progress: false,
        ..WriteOptions::default()
    };
    write_recorded_stream(&cfg, &dir.0, &opts).expect("generating");
    for (name, dir, batch) in [
        ("examples/data", example.as_path(), 50),
        ("generated", &dir.0, 1_000),
    ] {
        let (batches, stats) = replay(dir, batch);
        let (fine, frontiers) = history(&batches);
        let (coarse, coarse_frontiers) = history(&at_their_as_ofs(&batches, tick));
        assert_eq!(frontiers, coarse_frontiers);
        // the move did something: far fewer distinct times
        let (nf, nc) = (fine.input_times().len(), coarse.input_times().len());
        assert!(nc * 2 < nf, "{name}: {nc} times of {nf}");
        let times = as_ofs(&frontiers, &stats, tick);
        let cfg = ViewsConfig::default();
        for workers in [1, 2, 3, 4] {
            let out = run_views(&coarse, &cfg, workers, &frontiers);
            let label = format!("{name} at the batches' as_ofs, {workers} worker(s)");
            let n = compare(&fine, &cfg, &out, &times, &label).unwrap_or_else(|e| panic!("{e}"));
            eprintln!("{label}: {n} as_ofs compared");
        }
    }
}
