//! Run with: cargo run --release -p shopdiff-examples --example 02_fraud_and_quality
//!
//! Replays the committed recorded stream and prints the fraud alerts active at the final
//! `as_of` and the `data_quality` counts per source and reason.

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
    let (stores, _) = replay_dir(&shopdiff_examples::data_dir(), &engine, None)?;
    for name in ["fraud_alerts", "data_quality"] {
        let v = stores
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("no view {name}"))?;
        let (as_of, rows) = v.snapshot();
        println!("\n{name} at as_of {as_of:?}:");
        for r in rows {
            println!("  {r:?}");
        }
    }
    Ok(())
}
