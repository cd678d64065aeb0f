//! Continuous Parquet sink throughput: diffs/s and bytes/s written to a local directory for a
//! synthetic change stream over every view.
//!
//! Run with: cargo run --release -p shopdiff-benches --bin sink -- [DIR] [--diffs N]
//!
//! Pushes `N` diffs (default 2,000,000) spread evenly over the ten views, 2,000 diffs per
//! `as_of`, one `as_of` per second, a commit per minute of `as_of` (the defaults), then flushes.
//! Only the time inside `push` and `flush` is measured (building the synthetic rows is not).
//! Three runs, each into a fresh `DIR/run-<i>` (default `target/sink-bench`); prints each run
//! and the median.

use anyhow::Context;
use shopdiff_connectors::sink::{ParquetSink, SinkConfig, ViewDelta};
use shopdiff_schemas::rows::{ColKind, Value, ViewDef, ALL_VIEWS};
use shopdiff_schemas::Str;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PER_AS_OF: usize = 2_000;
/// 2024-03-11T00:00:00Z
const START: u64 = 1_710_115_200_000;

/// A deterministic, plausible row of `def` for key number `n`, version `v`.
fn row(def: &ViewDef, n: u64, v: u64) -> Vec<Value> {
    def.columns
        .iter()
        .enumerate()
        .map(|(c, col)| {
            let key = c < def.key_len;
            let x = if key {
                n
            } else {
                n.wrapping_mul(31).wrapping_add(v * 7 + c as u64)
            };
            match col.kind {
                ColKind::String if key => Value::Str(Str::from(format!("{}-{n}", col.name))),
                ColKind::String => {
                    Value::Str(Str::from(["USD", "EUR", "loyal", "new"][(x % 4) as usize]))
                }
                ColKind::Integer => Value::Int((x % 10_000) as i64),
                ColKind::Money => Value::Money((x % 10_000_000) as i128),
                ColKind::Time => Value::Time((START - (x % 720) * 3_600_000) as i64),
                ColKind::Ratio(p) => Value::Ratio((x % 10_000) as i64, p),
                ColKind::Number => Value::Number((x % 100_000) as f64 / 4.0),
                ColKind::Boolean => Value::Bool(x.is_multiple_of(2)),
            }
        })
        .collect()
}

/// The deltas at step `s`: per view, half retractions of the previous version of some rows and
/// half insertions of their new version.
fn deltas(s: u64, per_view: usize) -> Vec<ViewDelta> {
    ALL_VIEWS
        .iter()
        .map(|def| {
            let mut diffs = Vec::with_capacity(per_view);
            for i in 0..(per_view / 2) as u64 {
                let n = (s * 37 + i * 101) % 50_000;
                diffs.push((row(def, n, s), -1));
                diffs.push((row(def, n, s + 1), 1));
            }
            ViewDelta { view: *def, diffs }
        })
        .collect()
}

struct Run {
    diffs: usize,
    bytes: u64,
    files: usize,
    secs: f64,
}

async fn run(dir: PathBuf, total: usize) -> anyhow::Result<Run> {
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = SinkConfig::new(dir.display().to_string());
    cfg.snapshot_every_ms = 0;
    let mut timed = Duration::ZERO;
    let t = Instant::now();
    let mut sink = ParquetSink::open(cfg).await?;
    timed += t.elapsed();
    let per_view = PER_AS_OF / ALL_VIEWS.len();
    let steps = total / PER_AS_OF;
    for s in 0..steps as u64 {
        let d = deltas(s, per_view);
        let t = Instant::now();
        sink.push(START + s * 1000, d).await?;
        timed += t.elapsed();
    }
    let t = Instant::now();
    sink.flush().await?;
    timed += t.elapsed();
    let bytes = sink.live_files().map(|f| f.bytes).sum();
    let files = sink.live_files().count();
    Ok(Run {
        diffs: steps * PER_AS_OF,
        bytes,
        files,
        secs: timed.as_secs_f64(),
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let total = match args.iter().position(|a| a == "--diffs") {
        Some(i) => args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .context("--diffs takes a number")?,
        None => 2_000_000,
    };
    let dir = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--diffs"))
        .map(|(_, a)| PathBuf::from(a))
        .unwrap_or_else(|| PathBuf::from("target/sink-bench"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    for i in 0..3 {
        let r = rt.block_on(run(dir.join(format!("run-{i}")), total))?;
        println!(
            "run {i}: diffs={} files={} bytes={} seconds={:.2} diffs_per_s={:.0} mb_per_s={:.1}",
            r.diffs,
            r.files,
            r.bytes,
            r.secs,
            r.diffs as f64 / r.secs,
            r.bytes as f64 / r.secs / 1e6
        );
        runs.push(r);
    }
    runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let m = &runs[1];
    println!(
        "sink median of 3: diffs={} views={} files={} bytes={} seconds={:.2} diffs_per_s={:.0} mb_per_s={:.1} bytes_per_diff={:.1}",
        m.diffs,
        ALL_VIEWS.len(),
        m.files,
        m.bytes,
        m.secs,
        m.diffs as f64 / m.secs,
        m.bytes as f64 / m.secs / 1e6,
        m.bytes as f64 / m.diffs as f64
    );
    Ok(())
}
