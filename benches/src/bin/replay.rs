//! Replay throughput: records/s and peak RSS of a full replay with every view.
//!
//! Run with: cargo run --release -p shopdiff-benches --bin replay -- DIR [-w N] [--parse-only]
//!            [--updates N]
//!
//! `DIR` is a recorded stream (make one with `shopdiff generate --out DIR --records 5000000`).
//! Prints records, seconds, records/s, the process's peak RSS (VmHWM) and RSS per million
//! customers (`rfm` rows). `--parse-only` reads and validates both event files on one thread,
//! without the engine. `--updates N`: after the replay, N batches of 1,000 new order lines
//! (from the generator with another seed, so existing and new customers buy), each at the next
//! tick; reports the median and p99 time from handing a batch to the engine until every view
//! is readable at its `as_of`.

use anyhow::Context;
use shopdiff_benches::peak_rss_mb;
use shopdiff_connectors::files::{require, LineReader};
use shopdiff_connectors::generator::{GenConfig, GenStream, Generator};
use shopdiff_connectors::{Batch, Replay, ReplayOptions, TimeConfig};
use shopdiff_dataflows::config::ViewsConfig;
use shopdiff_schemas::records::{is_blank, parse_behavior, parse_transaction};
use shopdiff_server::cli::{replay_dir, EngineArgs};
use shopdiff_server::{Engine, EngineConfig};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    if let Some(n) = args
        .iter()
        .position(|a| a == "--updates")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
    {
        return updates(&dir, workers, n);
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
    let customers = stores.get("rfm").map_or(0, |v| v.len());
    println!(
        "replay workers={workers} records={records} seconds={secs:.2} records_per_s={:.0} peak_rss_mb={:.0} view_rows={rows} customers={customers} peak_rss_mb_per_million_customers={:.0}",
        records as f64 / secs,
        peak_rss_mb(),
        peak_rss_mb() / (customers.max(1) as f64 / 1e6)
    );
    Ok(())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Replays `dir`, then measures batches of 1,000 new order lines.
fn updates(dir: &std::path::Path, workers: usize, n: usize) -> anyhow::Result<()> {
    let tick = 1000u64;
    let engine = Engine::start(&EngineConfig {
        cluster: None,
        workers,
        views: ViewsConfig::default(),
    })
    .map_err(anyhow::Error::msg)?;
    let replay = Replay::open(
        dir,
        ReplayOptions {
            time: TimeConfig::default(),
            batch_records: 50_000,
            dead_letters: None,
        },
    )?;
    let start = Instant::now();
    let stats = replay.run(|b| engine.feed(b))?;
    let wait_for = |f: u64| -> anyhow::Result<()> {
        let t0 = Instant::now();
        while engine.stores().as_of().is_none_or(|a| a + tick < f) {
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(600), "as_of stuck");
            std::thread::yield_now();
        }
        Ok(())
    };
    wait_for(engine.fed_frontier())?;
    let base = stats.transactions + stats.behavior;
    eprintln!(
        "base: {base} records replayed in {:.1}s; as_of {}",
        start.elapsed().as_secs_f64(),
        stats.as_of
    );
    // new order lines: the generator with another seed, same user and product id space
    let gen = Generator::new(GenConfig {
        seed: 4242,
        records: (n as u64 + 10) * 20_000,
        bad_rate: 0.0,
        ..GenConfig::default()
    })?;
    let mut lines = gen
        .filter(|i| i.stream == GenStream::Transactions)
        .filter_map(|i| shopdiff_schemas::records::parse_transaction(&i.json).ok());
    let mut t = engine.fed_frontier().max(stats.as_of + tick);
    let mut ms = Vec::with_capacity(n);
    for k in 0..n {
        let mut b = Batch::default();
        for _ in 0..1000 {
            let Some(mut l) = lines.next() else {
                anyhow::bail!("the generator ran out of lines after {k} batches");
            };
            l.ts = t as i64;
            l.transaction_id = format!("N{k:05}-{}", l.transaction_id).into();
            b.lines.push((l, t));
        }
        b.frontier = t + tick;
        let s = Instant::now();
        anyhow::ensure!(engine.feed(b), "engine stopped");
        wait_for(t + tick)?;
        ms.push(s.elapsed().as_secs_f64() * 1e3);
        t += tick;
    }
    println!(
        "updates on a base of {base} records, workers={workers}: {n} batches of 1,000 order lines, each reflected in every view: median {:.1} ms, p99 {:.1} ms; peak_rss_mb={:.0}",
        pct(&mut ms, 0.5),
        pct(&mut ms, 0.99),
        peak_rss_mb()
    );
    drop(engine);
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
