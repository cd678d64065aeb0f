//! The command line: `shopdiff replay`, `shopdiff generate`, `shopdiff run`.

use crate::runtime::{Engine, EngineConfig};
use crate::store::Stores;
use clap::{Args, Parser, Subcommand};
use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, WriteOptions};
use shopdiff_connectors::{Replay, ReplayOptions, ReplayStats, TimeConfig};
use shopdiff_dataflows::config::{FraudConfig, ViewsConfig};
use shopdiff_schemas::rows::Value;
use shopdiff_schemas::time::format_rfc3339;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// shopdiff: incremental e-commerce analytics on differential dataflow.
#[derive(Parser, Debug)]
#[command(name = "shopdiff", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Replay a recorded stream as fast as possible and write every view's final contents.
    Replay(ReplayArgs),
    /// Generate a recorded stream (the built-in workload generator).
    Generate(GenerateArgs),
    /// Generate a stream, replay it and print the top rows of each view.
    Run(RunArgs),
    /// Read the Kafka topics into every view (see `cli_kafka`).
    Consume(crate::cli_kafka::ConsumeArgs),
}

/// Engine settings shared by the commands that run views.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Worker threads.
    #[arg(short = 'w', long = "workers", default_value_t = 2)]
    pub workers: usize,
    /// Tick length in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub tick_ms: u64,
    /// Allowed lateness in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub lateness_ms: u64,
    /// Records per input batch (each batch advances the frontier once).
    #[arg(long, default_value_t = 20_000)]
    pub batch: usize,
    /// A TOML file with the fraud rules' thresholds and windows (defaults: the contract's).
    #[arg(long)]
    pub fraud_config: Option<PathBuf>,
}

/// Loads the fraud rules, naming the file and field on error.
pub fn load_fraud(path: Option<&Path>) -> anyhow::Result<FraudConfig> {
    let Some(path) = path else {
        return Ok(FraudConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    FraudConfig::from_toml_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The recorded-stream directory.
    pub dir: PathBuf,
    /// Write `<OUT>/<view>.parquet` with every view at the final `as_of`.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Write rejected records, with reason and position, to this JSON Lines file.
    #[arg(long)]
    pub dead_letters: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed (the same seed gives the same files).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event records to generate (transactions and behavior together).
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Users in the customer base.
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Products in the catalog.
    #[arg(long, default_value_t = 1_000)]
    pub products: usize,
    /// Fraction of sessions turned into a fraud pattern.
    #[arg(long, default_value_t = 0.001)]
    pub anomaly_rate: f64,
    /// Fraction of records made malformed or invalid.
    #[arg(long, default_value_t = 0.0)]
    pub bad_rate: f64,
    /// Fraction of records delivered twice.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_rate: f64,
    /// Fraction of records delivered late (beyond the allowed lateness).
    #[arg(long, default_value_t = 0.0)]
    pub late_rate: f64,
    /// Compress the files with zstd (`.jsonl.zst`).
    #[arg(long)]
    pub zstd: bool,
    #[command(flatten)]
    pub kafka: crate::cli_kafka::KafkaGenArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Event records to generate.
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Rows to print per view.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Where to keep the generated stream and the snapshot (a temporary directory by default).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let res = match cli.cmd {
        Cmd::Replay(a) => replay_cmd(&a),
        Cmd::Generate(a) => generate_cmd(&a).map(|_| ()),
        Cmd::Run(a) => run_cmd(&a),
        Cmd::Consume(a) => crate::cli_kafka::consume_cmd(&a),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn time_config(e: &EngineArgs) -> TimeConfig {
    TimeConfig {
        tick_ms: e.tick_ms.max(1),
        lateness_ms: e.lateness_ms,
    }
}

/// Replays `dir` into a fresh engine and returns the stores at the final `as_of`.
pub fn replay_dir(
    dir: &Path,
    engine: &EngineArgs,
    dead_letters: Option<PathBuf>,
) -> anyhow::Result<(Stores, ReplayStats)> {
    let opts = ReplayOptions {
        time: time_config(engine),
        batch_records: engine.batch.max(1),
        dead_letters,
    };
    let replay = Replay::open(dir, opts)?;
    let views = ViewsConfig {
        tick_ms: engine.tick_ms.max(1),
        fraud: load_fraud(engine.fraud_config.as_deref())?,
    };
    let eng = Engine::start(&EngineConfig {
        workers: engine.workers,
        views,
    })
    .map_err(anyhow::Error::msg)?;
    let stats = replay.run(|b| eng.feed(b))?;
    let stores = eng.finish().map_err(anyhow::Error::msg)?;
    Ok((stores, stats))
}

fn replay_cmd(a: &ReplayArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let (stores, stats) = replay_dir(&a.dir, &a.engine, a.dead_letters.clone())?;
    let secs = start.elapsed().as_secs_f64();
    for w in &stats.warnings {
        eprintln!("warning: {w}");
    }
    let records = stats.transactions + stats.behavior;
    eprintln!(
        "replayed {records} records ({} transactions, {} behavior; {} rejected, {} duplicates, {} late) in {secs:.2}s ({:.0} records/s) with {} workers; as_of {} ({})",
        stats.transactions,
        stats.behavior,
        stats.rejected,
        stats.duplicates,
        stats.late,
        records as f64 / secs.max(1e-9),
        a.engine.workers,
        stats.as_of,
        format_rfc3339(stats.as_of as i64),
    );
    if let Some(out) = &a.snapshot {
        write_snapshots(&stores, out)?;
        eprintln!(
            "wrote {} view snapshots to {}",
            stores.iter().count(),
            out.display()
        );
    }
    Ok(())
}

/// Writes `<out>/<view>.parquet` for every view.
pub fn write_snapshots(stores: &Stores, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", out.display()))?;
    for v in stores.iter() {
        let (as_of, rows) = v.snapshot();
        shopdiff_connectors::parquet::write_snapshot(out, &v.def(), &rows, as_of.unwrap_or(0))?;
    }
    Ok(())
}

fn gen_config(a: &GenerateArgs) -> GenConfig {
    GenConfig {
        seed: a.seed,
        users: a.users,
        products: a.products,
        records: a.records,
        anomaly_rate: a.anomaly_rate,
        bad_rate: a.bad_rate,
        duplicate_rate: a.duplicate_rate,
        late_rate: a.late_rate,
        ..GenConfig::default()
    }
}

fn generate_cmd(a: &GenerateArgs) -> anyhow::Result<()> {
    if let Some(brokers) = &a.kafka.kafka {
        return crate::cli_kafka::generate_kafka(a, &gen_config(a), brokers, a.kafka.rate);
    }
    let opts = WriteOptions {
        zstd: a.zstd,
        progress: true,
        ..WriteOptions::default()
    };
    let stats = write_recorded_stream(&gen_config(a), &a.out, &opts)?;
    eprintln!(
        "generated {} transactions and {} behavior records into {} ({:.0} records/s)",
        stats.transactions,
        stats.behavior,
        a.out.display(),
        stats.records_per_sec()
    );
    Ok(())
}

fn run_cmd(a: &RunArgs) -> anyhow::Result<()> {
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("shopdiff-run-{}", std::process::id())),
    };
    let stream = dir.join("stream");
    eprintln!("generating {} records into {}", a.records, stream.display());
    let gen = GenerateArgs {
        out: stream.clone(),
        seed: 42,
        records: a.records,
        users: 10_000,
        products: 1_000,
        anomaly_rate: 0.001,
        bad_rate: 0.001,
        duplicate_rate: 0.001,
        late_rate: 0.0005,
        zstd: false,
        kafka: Default::default(),
    };
    generate_cmd(&gen)?;
    let start = Instant::now();
    let (stores, stats) = replay_dir(&stream, &a.engine, None)?;
    eprintln!(
        "replayed {} records in {:.2}s",
        stats.transactions + stats.behavior,
        start.elapsed().as_secs_f64()
    );
    for v in stores.iter() {
        print_top(v.as_ref(), a.top);
    }
    let snap = dir.join("snapshot");
    write_snapshots(&stores, &snap)?;
    eprintln!("snapshot written to {}", snap.display());
    Ok(())
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Money(c) => shopdiff_schemas::money::format_cents(*c),
        Value::Time(t) => format_rfc3339(*t),
        Value::Ratio(v, p) => format!("{:.*}", *p as usize, *v as f64 / 10f64.powi(*p as i32)),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
    }
}

fn print_top(v: &dyn crate::store::AnyView, top: usize) {
    let def = v.def();
    let (as_of, rows) = v.snapshot();
    println!(
        "\n== {} ({} rows, as_of {}) ==",
        def.name,
        rows.len(),
        as_of
            .map(|t| format_rfc3339(t as i64))
            .unwrap_or_else(|| "-".into())
    );
    println!(
        "{}",
        def.columns
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    for r in rows.iter().take(top) {
        println!("{}", r.iter().map(show).collect::<Vec<_>>().join(" | "));
    }
}
