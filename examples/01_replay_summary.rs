//! Run with: cargo run --release -p shopdiff-examples --example 01_replay_summary
//!
//! Replays the committed recorded stream (`examples/data/`) through every view with two workers
//! and prints how many rows each view has at the final `as_of`, and the daily revenue totals.

use shopdiff_schemas::rows::Value;
use shopdiff_server::cli::{replay_dir, EngineArgs};

fn main() -> anyhow::Result<()> {
    let engine = EngineArgs {
        workers: 2,
        tick_ms: 1000,
        lateness_ms: 5000,
        max_future_ms: shopdiff_connectors::ingest::DEFAULT_MAX_FUTURE_MS,
        horizon_ms: shopdiff_connectors::ingest::DEFAULT_HORIZON_MS,
        batch: 20_000,
        fraud_config: None,
    };
    let (stores, stats) = replay_dir(&shopdiff_examples::data_dir(), &engine, None)?;
    println!(
        "replayed {} transactions and {} behavior records; as_of {}",
        stats.transactions, stats.behavior, stats.as_of
    );
    for v in stores.iter() {
        println!("{:>20}: {} rows", v.def().name, v.len());
    }
    let daily = stores
        .get("revenue_daily")
        .ok_or_else(|| anyhow::anyhow!("no revenue_daily view"))?;
    println!("\ndaily revenue (dimension total):");
    for row in daily.snapshot().1 {
        if row[0] == Value::Str("total".into()) {
            println!(
                "  {:?} {:?} net {:?} orders {:?}",
                row[2], row[3], row[8], row[4]
            );
        }
    }
    Ok(())
}
