//! The Kafka parts of the command line: `shopdiff generate --kafka BROKERS [--rate N]` and
//! `shopdiff consume --kafka BROKERS ...` (kept out of `cli.rs`).

use crate::cli::{load_fraud, write_snapshots, EngineArgs, GenerateArgs};
use crate::kafka_driver::{run_kafka, KafkaRunOptions};
use crate::runtime::EngineConfig;
use clap::Args;
use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, WriteOptions};
use shopdiff_connectors::kafka::{
    create_topics, produce_generated, EndAt, KafkaSourceConfig, RecordProducer, Retry, StartFrom,
    BEHAVIOR_TOPIC, DEAD_LETTERS_TOPIC, FRAUD_ALERTS_TOPIC, TRANSACTIONS_TOPIC,
};
use shopdiff_connectors::TimeConfig;
use shopdiff_dataflows::config::ViewsConfig;
use shopdiff_schemas::time::{format_rfc3339, parse_rfc3339};
use std::path::PathBuf;
use std::time::Instant;

/// `generate --kafka`: writes the recorded stream to `--out` as usual (its tables and changes
/// are what `consume --tables` reads; its event files are the replay twin of the topics), then
/// produces the same event records into `transactions` and `behavior`.
pub fn generate_kafka(
    a: &GenerateArgs,
    cfg: &GenConfig,
    brokers: &str,
    rate: Option<f64>,
) -> anyhow::Result<()> {
    let stats = write_recorded_stream(
        cfg,
        &a.out,
        &WriteOptions {
            zstd: a.zstd,
            progress: true,
            ..WriteOptions::default()
        },
    )?;
    eprintln!(
        "wrote the recorded stream ({} transactions, {} behavior) into {}",
        stats.transactions,
        stats.behavior,
        a.out.display()
    );
    let retry = Retry::default();
    create_topics(
        brokers,
        &[
            TRANSACTIONS_TOPIC,
            BEHAVIOR_TOPIC,
            FRAUD_ALERTS_TOPIC,
            DEAD_LETTERS_TOPIC,
        ],
        4,
        &retry,
    )?;
    let producer = RecordProducer::connect(brokers, &retry)?;
    match rate {
        Some(r) => eprintln!("producing to {brokers} at {r:.0} records/s"),
        None => eprintln!("producing to {brokers} as fast as possible"),
    }
    let p = produce_generated(cfg, &producer, TRANSACTIONS_TOPIC, BEHAVIOR_TOPIC, rate)?;
    eprintln!(
        "produced {} transactions and {} behavior records ({} MB) to {brokers} in {:.2}s ({:.0} records/s)",
        p.transactions,
        p.behavior,
        p.bytes / 1_000_000,
        p.elapsed.as_secs_f64(),
        p.records_per_sec()
    );
    Ok(())
}

/// `generate --kafka BROKERS [--rate N]`.
#[derive(Args, Debug, Clone, Default)]
pub struct KafkaGenArgs {
    /// Also produce the event records into the Kafka topics at these brokers (`host:port`).
    #[arg(long)]
    pub kafka: Option<String>,
    /// With --kafka: records per second (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
}

/// `shopdiff consume`: the Kafka topics into every view.
#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Brokers, `host:port[,host:port]`.
    #[arg(long)]
    pub kafka: String,
    /// A recorded stream directory whose tables (initial rows and changes) join the events.
    #[arg(long)]
    pub tables: Option<PathBuf>,
    /// Where to start: earliest, latest, committed, recover, or an RFC 3339 time.
    #[arg(long, default_value = "recover")]
    pub from: String,
    /// Stop once every partition has been read to its end (otherwise run live).
    #[arg(long)]
    pub until_end: bool,
    /// Consumer group.
    #[arg(long, default_value = "shopdiff")]
    pub group: String,
    /// A partition at its end and quiet for this long no longer holds `as_of` back.
    #[arg(long, default_value_t = 2000)]
    pub idle_ms: u64,
    /// Produce the fraud_alerts view's changes to the `fraud_alerts` topic.
    #[arg(long)]
    pub alerts: bool,
    /// A librdkafka client property `KEY=VALUE` for every client, e.g. credentials:
    /// `security.protocol=SASL_PLAINTEXT`, `sasl.mechanism=PLAIN`, `sasl.username=...` (repeatable).
    #[arg(long = "kafka-option")]
    pub kafka_options: Vec<String>,
    /// Write `<OUT>/<view>.parquet` at the end.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `earliest`, `latest`, `committed`, `recover` or an RFC 3339 time.
pub(crate) fn parse_start(s: &str) -> anyhow::Result<StartFrom> {
    Ok(match s {
        "earliest" => StartFrom::Earliest,
        "latest" => StartFrom::Latest,
        "committed" => StartFrom::Committed,
        "recover" => StartFrom::Recover,
        t => StartFrom::Timestamp(parse_rfc3339(t).ok_or_else(|| {
            anyhow::anyhow!(
                "--from {t:?}: expected earliest, latest, committed, recover or an RFC 3339 time"
            )
        })?),
    })
}

/// `KEY=VALUE` client options.
pub(crate) fn parse_options(opts: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    opts.iter()
        .map(|o| shopdiff_connectors::kafka::parse_option(o).map_err(anyhow::Error::from))
        .collect()
}

pub fn consume_cmd(a: &ConsumeArgs) -> anyhow::Result<()> {
    let tick = a.engine.tick_ms.max(1);
    let mut source = KafkaSourceConfig::new(&a.kafka);
    source.group_id = a.group.clone();
    source.start = parse_start(&a.from)?;
    source.end = if a.until_end {
        EndAt::EndOfTopics
    } else {
        EndAt::Never
    };
    source.idle_ms = a.idle_ms;
    source.batch_records = a.engine.batch.max(1);
    source.time = TimeConfig {
        tick_ms: tick,
        lateness_ms: a.engine.lateness_ms,
        max_future_ms: a.engine.max_future_ms,
        horizon_ms: a.engine.horizon_ms,
    };
    source.tables_dir = a.tables.clone();
    source.alerts_topic = a.alerts.then(|| FRAUD_ALERTS_TOPIC.to_string());
    source.options = parse_options(&a.kafka_options)?;
    let opts = KafkaRunOptions {
        source,
        engine: EngineConfig {
            fine_ticks: false,
            cluster: None,
            workers: a.engine.workers,
            views: ViewsConfig {
                tick_ms: tick,
                fraud: load_fraud(a.engine.fraud_config.as_deref())?,
                horizon_ms: Some(a.engine.horizon_ms),
            },
        },
        stop: None,
    };
    let started = Instant::now();
    let r = run_kafka(opts)?;
    let secs = started.elapsed().as_secs_f64();
    let s = &r.stats;
    eprintln!(
        "consumed {} messages ({} transactions, {} behavior; {} rejected, {} duplicates, {} late, {} dead letters) in {secs:.2}s ({:.0} messages/s) with {} workers; as_of {}; {} offset commits, {} alerts",
        s.messages,
        s.transactions,
        s.behavior,
        s.rejected,
        s.duplicates,
        s.late,
        s.dead_letters,
        s.messages as f64 / secs.max(1e-9),
        a.engine.workers,
        r.as_of.map(|t| format_rfc3339(t as i64)).unwrap_or_else(|| "-".into()),
        s.commits,
        r.alerts_sent,
    );
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(out) = &a.snapshot {
        write_snapshots(&r.stores, out)?;
        eprintln!("wrote view snapshots to {}", out.display());
    }
    Ok(())
}
