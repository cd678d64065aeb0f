//! Replay throughput: records/s and peak RSS of a full replay with every view.
//!
//! Run with: cargo run --release -p shopdiff-benches --bin replay -- DIR [-w N] [--parse-only]
//!
//! `DIR` is a recorded stream (make one with `shopdiff generate --out DIR --records 5000000`).
//! Prints records, seconds, records/s and the process's peak RSS (VmHWM). `--parse-only` reads
//! and validates both event files on one thread, without the engine.

use anyhow::Context;
use shopdiff_benches::peak_rss_mb;
use shopdiff_connectors::files::{require, LineReader};
use shopdiff_schemas::records::{is_blank, parse_behavior, parse_transaction};
use shopdiff_server::cli::{replay_dir, EngineArgs};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .context("usage: replay DIR [-w N] [--parse-only]")?,
    );
    let workers = args
        .iter()
        .position(|a| a == "-w")
        .and_then(|i| args.get(i + 1))
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    if args.iter().any(|a| a == "--parse-only") {
        return parse_only(&dir);
    }
    let engine = EngineArgs {
        workers,
        tick_ms: 1000,
        lateness_ms: 5000,
        batch: 50_000,
        fraud_config: None,
    };
    let start = Instant::now();
    let (stores, stats) = replay_dir(&dir, &engine, None)?;
    let secs = start.elapsed().as_secs_f64();
    let records = stats.transactions + stats.behavior;
    let rows: usize = stores.iter().map(|v| v.len()).sum();
    println!(
        "replay workers={workers} records={records} seconds={secs:.2} records_per_s={:.0} peak_rss_mb={:.0} view_rows={rows}",
        records as f64 / secs,
        peak_rss_mb()
    );
    Ok(())
}

fn parse_only(dir: &std::path::Path) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut n = 0u64;
    let mut ok = 0u64;
    for (name, tx) in [("transactions", true), ("behavior", false)] {
        let mut r = LineReader::open(&require(dir, name)?)?;
        while let Some((_, bytes)) = r.next_line()? {
            let Ok(text) = std::str::from_utf8(bytes) else {
                continue;
            };
            if is_blank(text) {
                continue;
            }
            n += 1;
            let good = if tx {
                parse_transaction(text).is_ok()
            } else {
                parse_behavior(text).is_ok()
            };
            ok += good as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "parse-only records={n} accepted={ok} seconds={secs:.2} records_per_s_per_core={:.0}",
        n as f64 / secs
    );
    Ok(())
}
