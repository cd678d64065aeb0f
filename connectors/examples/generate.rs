//! Writes a generated recorded stream and prints what it wrote and how fast.
//!
//! Run with: `cargo run --release -p shopdiff-connectors --example generate -- OUT_DIR
//! [--records N] [--seed N] [--bad-rate R] [--duplicate-rate R] [--late-rate R]
//! [--anomaly-rate R] [--volume V] [--zstd] [--config FILE.json]`
//!
//! Throughput is reported per second of wall time and per second of CPU time of this process
//! (user + system, from `/proc/self/stat`): on a busy machine the second is the one to compare.

use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, WriteOptions};
use std::path::PathBuf;

/// User + system CPU seconds of this process, when `/proc` has them.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = GenConfig::default();
    let mut opts = WriteOptions::default();
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--records" => cfg.records = value()?.parse()?,
            "--seed" => cfg.seed = value()?.parse()?,
            "--bad-rate" => cfg.bad_rate = value()?.parse()?,
            "--duplicate-rate" => cfg.duplicate_rate = value()?.parse()?,
            "--late-rate" => cfg.late_rate = value()?.parse()?,
            "--anomaly-rate" => cfg.anomaly_rate = value()?.parse()?,
            "--volume" => cfg.volume = value()?.parse()?,
            "--config" => cfg = serde_json::from_str(&std::fs::read_to_string(value()?)?)?,
            "--zstd" => opts.zstd = true,
            "--no-progress" => opts.progress = false,
            d if !d.starts_with("--") => dir = Some(PathBuf::from(d)),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let dir = dir.ok_or("usage: generate OUT_DIR [--records N] [--zstd] ... (see the source)")?;
    let cpu0 = cpu_seconds();
    let stats = write_recorded_stream(&cfg, &dir, &opts)?;
    let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    let records = stats.transactions + stats.behavior;
    println!("{}", serde_json::to_string_pretty(&stats)?);
    println!(
        "{records} event records, {:.1} MB, in {:.3} s wall: {:.0} records/s",
        stats.bytes as f64 / 1e6,
        stats.elapsed.as_secs_f64(),
        stats.records_per_sec()
    );
    if let Some(cpu) = cpu.filter(|&c| c > 0.0) {
        println!(
            "{cpu:.2} s CPU (user + system): {:.0} records/s per CPU second",
            records as f64 / cpu
        );
    }
    Ok(())
}
