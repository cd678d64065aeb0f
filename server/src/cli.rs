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

// parsed once per process: the size of the largest variant does not matter
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Replay a recorded stream as fast as possible and write every view's final contents.
    Replay(ReplayArgs),
    /// Generate a recorded stream (the built-in workload generator).
    Generate(GenerateArgs),
    /// The main job: the live generator (or a replay) feeding every view, the HTTP API and
    /// the dashboard, until Ctrl-C.
    Run(RunArgs),
    /// Generate a stream, replay it and print the top rows of each view.
    Demo(DemoArgs),
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
    /// A record more than this many milliseconds ahead of the wall clock is rejected as
    /// `future` (default 1 hour).
    #[arg(long, default_value_t = shopdiff_connectors::ingest::DEFAULT_MAX_FUTURE_MS)]
    pub max_future_ms: u64,
    /// Lateness horizon in milliseconds: a record older than `watermark - horizon` is rejected
    /// as `too_late`, and state below it is retired (default 7 days).
    #[arg(long, default_value_t = shopdiff_connectors::ingest::DEFAULT_HORIZON_MS)]
    pub horizon_ms: u64,
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
    #[command(flatten)]
    pub cluster: crate::cli_cluster::ClusterArgs,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed (the same seed gives the same files).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event records to generate (transactions and behavior together; default 1,000,000, or
    /// 1.57 per customer and day with `--days`).
    #[arg(long)]
    pub records: Option<u64>,
    /// Simulated days the records span (a shop's month: `--users 100000 --products 5000
    /// --days 30`, about 4.7 million records); without it the seed's full hourly volumes.
    #[arg(long)]
    pub days: Option<f64>,
    /// Multiplier on the seed's hourly volumes (default 1; set from `--days` when given).
    #[arg(long)]
    pub volume: Option<f64>,
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
    pub pg: crate::cli_pg::PgGenerateArgs,
    #[command(flatten)]
    pub kafka: crate::cli_kafka::KafkaGenArgs,
}

/// `shopdiff run`: every flag has a twin of the same name (with `_` for `-`) in `--config`.
#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// A TOML file with any of these settings (flags given on the command line win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve a recorded stream (replayed as fast as possible, then kept) instead of the live generator.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Read the events from Kafka brokers (see the Kafka section of the README).
    #[arg(long)]
    pub kafka: Option<String>,
    /// Kafka: where to start: recover (default: every partition from its beginning, to rebuild
    /// the views, then on past the committed offsets), earliest, latest, committed, or an RFC
    /// 3339 time.
    #[arg(long)]
    pub kafka_from: Option<String>,
    /// Kafka: the consumer group whose offsets are committed (default shopdiff).
    #[arg(long)]
    pub kafka_group: Option<String>,
    /// Kafka: a partition at its end and quiet for this many ms no longer holds as_of back
    /// (default 2000).
    #[arg(long)]
    pub kafka_idle_ms: Option<u64>,
    /// Kafka: a librdkafka client property `KEY=VALUE` for every client, e.g. credentials
    /// (`security.protocol=SASL_SSL`, `sasl.mechanism=PLAIN`, `sasl.username=...`; repeatable).
    #[arg(long = "kafka-option")]
    pub kafka_options: Vec<String>,
    /// Kafka: a file of client properties, one `KEY=VALUE` per line (credentials stay out of
    /// `ps`; `#` starts a comment).
    #[arg(long)]
    pub kafka_option_file: Option<PathBuf>,
    /// Kafka: the transactions topic (default transactions).
    #[arg(long)]
    pub transactions_topic: Option<String>,
    /// Kafka: the behavior topic (default behavior).
    #[arg(long)]
    pub behavior_topic: Option<String>,
    /// Kafka: where rejected records go (default dead_letters).
    #[arg(long)]
    pub dead_letters_topic: Option<String>,
    /// Kafka: where the fraud_alerts view's changes go as raise / clear events (default
    /// fraud_alerts).
    #[arg(long)]
    pub alerts_topic: Option<String>,
    /// Kafka: do not produce fraud alerts.
    #[arg(long)]
    pub no_alerts: bool,
    /// Take the tables (initial rows and changes) from a recorded stream's files.
    #[arg(long)]
    pub tables: Option<PathBuf>,
    /// Read the tables from PostgreSQL by logical replication (snapshot, then changes).
    #[arg(long)]
    pub postgres: Option<String>,
    /// The PostgreSQL password, read from this file (else `PGPASSWORD`) when the URL has none.
    #[arg(long)]
    pub postgres_password_file: Option<PathBuf>,
    /// PostgreSQL replication slot (default shopdiff).
    #[arg(long)]
    pub pg_slot: Option<String>,
    /// PostgreSQL publication, created for the three tables when missing (default shopdiff).
    #[arg(long)]
    pub pg_publication: Option<String>,
    /// Drop and re-create the slot and copy the tables anew (needed when the slot exists from an
    /// earlier run, was dropped or was invalidated).
    #[arg(long)]
    pub pg_resnapshot: bool,
    /// Write continuous Parquet to a directory or s3://bucket/prefix (S3 settings from
    /// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    #[arg(long)]
    pub sink: Option<String>,
    /// Sink: commit every this many ms of as_of (default 60000).
    #[arg(long)]
    pub sink_commit_ms: Option<u64>,
    /// Sink: a full snapshot of every view every this many ms of as_of (default 3600000; 0 never).
    #[arg(long)]
    pub sink_snapshot_ms: Option<u64>,
    /// Changes the sink buffers at most while its writes fail (default 5000000); past it the
    /// job fails (a restart resumes after the last committed as_of).
    #[arg(long)]
    pub sink_max_buffered: Option<usize>,
    /// Address of the HTTP server (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long)]
    pub http: Option<String>,
    /// Worker threads (default 2).
    #[arg(short = 'w', long)]
    pub workers: Option<usize>,
    /// Live generator: multiple of real time (default 60: a simulated minute per second).
    #[arg(long)]
    pub speed: Option<f64>,
    /// Live generator: multiplier on the seed's hourly volumes (default 1).
    #[arg(long)]
    pub volume: Option<f64>,
    /// Live generator: random seed (default 42).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Live generator: users (default 10000).
    #[arg(long)]
    pub users: Option<usize>,
    /// Live generator: products (default 1000).
    #[arg(long)]
    pub products: Option<usize>,
    /// Live generator: fraction of sessions turned into a fraud pattern (default 0.002).
    #[arg(long)]
    pub anomaly_rate: Option<f64>,
    /// Live generator: fraction of malformed or invalid records (default 0.001).
    #[arg(long)]
    pub bad_rate: Option<f64>,
    /// Live generator: stop after this many records (default: practically never).
    #[arg(long)]
    pub records: Option<u64>,
    /// Live generator: start this many simulated days in the past and feed them at once, so
    /// the views open on a shop's history (default 0; `scripts/run.sh` uses 30). Without
    /// `--volume`, the volume is then a shop's (about 1.6 records per user and day).
    #[arg(long)]
    pub backfill_days: Option<f64>,
    /// Tick length in milliseconds (default 1000).
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Allowed lateness in milliseconds (default 5000).
    #[arg(long)]
    pub lateness_ms: Option<u64>,
    /// A record more than this many milliseconds ahead of its source's reference clock (the
    /// wall clock; the simulated clock for the live generator) is `future` (default 3600000).
    #[arg(long)]
    pub max_future_ms: Option<u64>,
    /// Lateness horizon in milliseconds: older records are `too_late`, and state below it is
    /// retired (default 604800000, 7 days).
    #[arg(long)]
    pub horizon_ms: Option<u64>,
    /// Replay and Kafka: records per batch at most (default 20000).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Live source: milliseconds between batches (default 100).
    #[arg(long)]
    pub flush_ms: Option<u64>,
    /// A TOML file with the fraud rules.
    #[arg(long)]
    pub fraud_config: Option<PathBuf>,
    /// A bearer token and its scopes, `TOKEN=view,view,metrics` or `TOKEN=*` (repeatable; also SHOPDIFF_TOKENS).
    #[arg(long = "token")]
    pub tokens: Vec<String>,
    /// A file of bearer tokens, one `TOKEN=SCOPES` per line (tokens stay out of `ps`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Serve without tokens even on a non-loopback address.
    #[arg(long)]
    pub allow_anonymous: bool,
    /// Keep this much `as_of` history for `as_of=` reads and `since=` resumes (default 3600000).
    #[arg(long)]
    pub history_ms: Option<u64>,
    /// Events buffered per subscriber before a slow one is disconnected (default 1024).
    #[arg(long)]
    pub subscriber_buffer: Option<usize>,
    /// Live subscriptions at most, over every view (default 256); more get 503.
    #[arg(long)]
    pub max_subscribers: Option<usize>,
    /// A subscriber that takes no event for this many ms while events wait for it is dropped
    /// and counted (default 30000).
    #[arg(long)]
    pub subscriber_timeout_ms: Option<u64>,
    /// A read's deadline in ms, waiting for a reader included (default 10000); past it, 503
    /// with Retry-After.
    #[arg(long)]
    pub read_timeout_ms: Option<u64>,
    /// Reads served at once, off the HTTP reactor (default 2).
    #[arg(long)]
    pub readers: Option<usize>,
    /// On a loopback --http, serve any Host header (by default only loopback names, so that
    /// a web page cannot reach the server through DNS rebinding).
    #[arg(long)]
    pub any_host: bool,
    /// Write rejected records of a replay or the live generator, and table rows CDC rejects,
    /// with reason and position, to this JSON Lines file (Kafka events go to
    /// --dead-letters-topic).
    #[arg(long)]
    pub dead_letters: Option<PathBuf>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub exit_after: Option<f64>,
    /// When the source or a sink fails for good: `exit` (the default) stops with a non-zero
    /// code so that a supervisor restarts the job; `serve` keeps serving the last `as_of`
    /// with `/health` 503 naming the failed part.
    #[arg(long, value_enum)]
    pub on_failure: Option<crate::health::OnFailure>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: crate::cli_cluster::ClusterArgs,
}

/// The config-file twin of [`RunArgs`].
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    replay: Option<PathBuf>,
    kafka: Option<String>,
    kafka_from: Option<String>,
    kafka_group: Option<String>,
    kafka_idle_ms: Option<u64>,
    kafka_options: Option<Vec<String>>,
    kafka_option_file: Option<PathBuf>,
    transactions_topic: Option<String>,
    behavior_topic: Option<String>,
    dead_letters_topic: Option<String>,
    alerts_topic: Option<String>,
    no_alerts: Option<bool>,
    tables: Option<PathBuf>,
    postgres: Option<String>,
    postgres_password_file: Option<PathBuf>,
    pg_slot: Option<String>,
    pg_publication: Option<String>,
    pg_resnapshot: Option<bool>,
    sink: Option<String>,
    sink_commit_ms: Option<u64>,
    sink_snapshot_ms: Option<u64>,
    sink_max_buffered: Option<usize>,
    http: Option<String>,
    workers: Option<usize>,
    speed: Option<f64>,
    volume: Option<f64>,
    seed: Option<u64>,
    users: Option<usize>,
    products: Option<usize>,
    anomaly_rate: Option<f64>,
    bad_rate: Option<f64>,
    records: Option<u64>,
    backfill_days: Option<f64>,
    tick_ms: Option<u64>,
    lateness_ms: Option<u64>,
    max_future_ms: Option<u64>,
    horizon_ms: Option<u64>,
    batch: Option<usize>,
    flush_ms: Option<u64>,
    fraud_config: Option<PathBuf>,
    tokens: Option<Vec<String>>,
    token_file: Option<PathBuf>,
    allow_anonymous: Option<bool>,
    history_ms: Option<u64>,
    subscriber_buffer: Option<usize>,
    max_subscribers: Option<usize>,
    read_timeout_ms: Option<u64>,
    subscriber_timeout_ms: Option<u64>,
    readers: Option<usize>,
    any_host: Option<bool>,
    dead_letters: Option<PathBuf>,
    exit_after: Option<f64>,
    on_failure: Option<crate::health::OnFailure>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    processes: Option<usize>,
    process: Option<usize>,
    hostfile: Option<PathBuf>,
    cluster_port: Option<u16>,
}

/// Merges the config file under the flags.
fn merge_run_file(a: &RunArgs) -> anyhow::Result<RunArgs> {
    let f: RunFile = match &a.config {
        None => RunFile::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", p.display()))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
    };
    Ok(RunArgs {
        config: a.config.clone(),
        replay: a.replay.clone().or(f.replay),
        kafka: a.kafka.clone().or(f.kafka),
        kafka_from: a.kafka_from.clone().or(f.kafka_from),
        kafka_group: a.kafka_group.clone().or(f.kafka_group),
        kafka_idle_ms: a.kafka_idle_ms.or(f.kafka_idle_ms),
        kafka_options: if a.kafka_options.is_empty() {
            f.kafka_options.unwrap_or_default()
        } else {
            a.kafka_options.clone()
        },
        transactions_topic: a.transactions_topic.clone().or(f.transactions_topic),
        behavior_topic: a.behavior_topic.clone().or(f.behavior_topic),
        dead_letters_topic: a.dead_letters_topic.clone().or(f.dead_letters_topic),
        alerts_topic: a.alerts_topic.clone().or(f.alerts_topic),
        no_alerts: a.no_alerts || f.no_alerts.unwrap_or(false),
        tables: a.tables.clone().or(f.tables),
        postgres: a.postgres.clone().or(f.postgres),
        postgres_password_file: a
            .postgres_password_file
            .clone()
            .or(f.postgres_password_file),
        kafka_option_file: a.kafka_option_file.clone().or(f.kafka_option_file),
        token_file: a.token_file.clone().or(f.token_file),
        pg_slot: a.pg_slot.clone().or(f.pg_slot),
        pg_publication: a.pg_publication.clone().or(f.pg_publication),
        pg_resnapshot: a.pg_resnapshot || f.pg_resnapshot.unwrap_or(false),
        sink: a.sink.clone().or(f.sink),
        sink_commit_ms: a.sink_commit_ms.or(f.sink_commit_ms),
        sink_snapshot_ms: a.sink_snapshot_ms.or(f.sink_snapshot_ms),
        sink_max_buffered: a.sink_max_buffered.or(f.sink_max_buffered),
        http: a.http.clone().or(f.http),
        workers: a.workers.or(f.workers),
        speed: a.speed.or(f.speed),
        volume: a.volume.or(f.volume),
        seed: a.seed.or(f.seed),
        users: a.users.or(f.users),
        products: a.products.or(f.products),
        anomaly_rate: a.anomaly_rate.or(f.anomaly_rate),
        bad_rate: a.bad_rate.or(f.bad_rate),
        records: a.records.or(f.records),
        backfill_days: a.backfill_days.or(f.backfill_days),
        tick_ms: a.tick_ms.or(f.tick_ms),
        lateness_ms: a.lateness_ms.or(f.lateness_ms),
        max_future_ms: a.max_future_ms.or(f.max_future_ms),
        horizon_ms: a.horizon_ms.or(f.horizon_ms),
        batch: a.batch.or(f.batch),
        flush_ms: a.flush_ms.or(f.flush_ms),
        fraud_config: a.fraud_config.clone().or(f.fraud_config),
        tokens: if a.tokens.is_empty() {
            f.tokens.unwrap_or_default()
        } else {
            a.tokens.clone()
        },
        allow_anonymous: a.allow_anonymous || f.allow_anonymous.unwrap_or(false),
        history_ms: a.history_ms.or(f.history_ms),
        subscriber_buffer: a.subscriber_buffer.or(f.subscriber_buffer),
        max_subscribers: a.max_subscribers.or(f.max_subscribers),
        read_timeout_ms: a.read_timeout_ms.or(f.read_timeout_ms),
        subscriber_timeout_ms: a.subscriber_timeout_ms.or(f.subscriber_timeout_ms),
        readers: a.readers.or(f.readers),
        any_host: a.any_host || f.any_host.unwrap_or(false),
        dead_letters: a.dead_letters.clone().or(f.dead_letters),
        exit_after: a.exit_after.or(f.exit_after),
        on_failure: a.on_failure.or(f.on_failure),
        tls_cert: a.tls_cert.clone().or(f.tls_cert),
        tls_key: a.tls_key.clone().or(f.tls_key),
        cluster: a.cluster.or(&crate::cli_cluster::ClusterArgs {
            processes: f.processes,
            process: f.process,
            hostfile: f.hostfile,
            cluster_port: f.cluster_port,
        }),
    })
}

/// Turns `shopdiff run`'s flags and config file into a [`crate::live::RunConfig`].
pub fn run_config(a: &RunArgs) -> anyhow::Result<crate::live::RunConfig> {
    use crate::live::{EventSource, RunConfig};
    let a = merge_run_file(a)?;
    if a.tables.is_some() && a.kafka.is_none() {
        anyhow::bail!("--tables goes with --kafka (a replay takes its own tables; the live generator makes its own)");
    }
    if a.kafka.is_none() {
        let kafka_only = [
            ("--kafka-from", a.kafka_from.is_some()),
            ("--kafka-group", a.kafka_group.is_some()),
            ("--kafka-idle-ms", a.kafka_idle_ms.is_some()),
            ("--kafka-option", !a.kafka_options.is_empty()),
            ("--transactions-topic", a.transactions_topic.is_some()),
            ("--behavior-topic", a.behavior_topic.is_some()),
            ("--dead-letters-topic", a.dead_letters_topic.is_some()),
            ("--alerts-topic", a.alerts_topic.is_some()),
            ("--no-alerts", a.no_alerts),
        ];
        if let Some((flag, _)) = kafka_only.iter().find(|(_, given)| *given) {
            anyhow::bail!("{flag} goes with --kafka");
        }
    }
    if a.no_alerts && a.alerts_topic.is_some() {
        anyhow::bail!("--no-alerts and --alerts-topic: give one");
    }
    let http = a.http.as_deref().unwrap_or("127.0.0.1:8080");
    let http: std::net::SocketAddr = http
        .parse()
        .map_err(|e| anyhow::anyhow!("--http {http}: not an address like 127.0.0.1:8080: {e}"))?;
    let mut tokens = Vec::new();
    let from_file = match &a.token_file {
        Some(p) => crate::secrets::read_lines(p)?,
        None => Vec::new(),
    };
    for t in a.tokens.iter().chain(&from_file) {
        tokens.extend(crate::auth::parse_tokens(t).map_err(|e| anyhow::anyhow!("--token: {e}"))?);
    }
    if let Ok(env) = std::env::var("SHOPDIFF_TOKENS") {
        tokens.extend(
            crate::auth::parse_tokens(&env).map_err(|e| anyhow::anyhow!("SHOPDIFF_TOKENS: {e}"))?,
        );
    }
    let auth = if !tokens.is_empty() {
        crate::auth::Auth::with_tokens(tokens)
    } else if http.ip().is_loopback() || a.allow_anonymous {
        crate::auth::Auth::open()
    } else {
        anyhow::bail!(
            "--http {http} is not a loopback address: give tokens (--token TOKEN=*, SHOPDIFF_TOKENS, or tokens in --config), or --allow-anonymous"
        );
    };
    let tick_ms = a.tick_ms.unwrap_or(1000).max(1);
    let defaults = TimeConfig::default();
    let time = TimeConfig {
        tick_ms,
        lateness_ms: a.lateness_ms.unwrap_or(defaults.lateness_ms),
        max_future_ms: a.max_future_ms.unwrap_or(defaults.max_future_ms),
        horizon_ms: a.horizon_ms.unwrap_or(defaults.horizon_ms),
    };
    let views = ViewsConfig {
        tick_ms,
        fraud: load_fraud(a.fraud_config.as_deref())?,
        horizon_ms: Some(time.horizon_ms),
    };
    let source = match (&a.replay, &a.kafka) {
        (Some(_), Some(_)) => anyhow::bail!("--replay and --kafka are two event sources: give one"),
        (None, Some(brokers)) => {
            use shopdiff_connectors::kafka::{KafkaSourceConfig, StartFrom, FRAUD_ALERTS_TOPIC};
            let mut k = KafkaSourceConfig::new(brokers);
            k.time = time;
            if a.postgres.is_none() {
                k.tables_dir = a.tables.clone();
            }
            k.start = match &a.kafka_from {
                Some(s) => crate::cli_kafka::parse_start(s)
                    .map_err(|e| anyhow::anyhow!("--kafka-from: {e}"))?,
                None => StartFrom::Recover,
            };
            if let Some(g) = &a.kafka_group {
                k.group_id = g.clone();
            }
            if let Some(ms) = a.kafka_idle_ms {
                k.idle_ms = ms;
            }
            if let Some(n) = a.batch {
                k.batch_records = n.max(1);
            }
            let mut opts = a.kafka_options.clone();
            if let Some(p) = &a.kafka_option_file {
                opts.extend(crate::secrets::read_lines(p)?);
            }
            k.options = crate::cli_kafka::parse_options(&opts)?;
            if let Some(t) = &a.transactions_topic {
                k.transactions_topic = t.clone();
            }
            if let Some(t) = &a.behavior_topic {
                k.behavior_topic = t.clone();
            }
            if let Some(t) = &a.dead_letters_topic {
                k.dead_letters_topic = Some(t.clone());
            }
            k.alerts_topic = if a.no_alerts {
                None
            } else {
                Some(
                    a.alerts_topic
                        .clone()
                        .unwrap_or_else(|| FRAUD_ALERTS_TOPIC.to_string()),
                )
            };
            EventSource::Kafka(Box::new(k))
        }
        (Some(dir), None) => EventSource::Replay {
            dir: dir.clone(),
            batch: a.batch.unwrap_or(20_000),
        },
        (None, None) => {
            let backfill_days = a.backfill_days.unwrap_or(0.0);
            if !(0.0..=366.0).contains(&backfill_days) {
                anyhow::bail!("--backfill-days {backfill_days}: give 0 to 366 days");
            }
            let backfill_ms = (backfill_days * 86_400_000.0) as u64;
            let start = crate::live::wall_ms() - backfill_ms as i64;
            let users = a.users.unwrap_or(10_000);
            let volume = match a.volume {
                Some(v) => v,
                // a shop's volume over the backfill, the same after it
                None if backfill_ms > 0 => GenConfig::volume_for_days(
                    start,
                    backfill_days,
                    (users as f64
                        * shopdiff_connectors::generator::RECORDS_PER_CUSTOMER_DAY
                        * backfill_days) as u64,
                ),
                None => 1.0,
            };
            let gen = GenConfig {
                seed: a.seed.unwrap_or(42),
                users,
                products: a.products.unwrap_or(1_000),
                start,
                records: a.records.unwrap_or(1_000_000_000),
                volume,
                anomaly_rate: a.anomaly_rate.unwrap_or(0.002),
                bad_rate: a.bad_rate.unwrap_or(0.001),
                ..GenConfig::default()
            };
            gen.validate()
                .map_err(|e| anyhow::anyhow!("generator settings: {e}"))?;
            EventSource::Generator {
                gen,
                backfill_ms,
                speed: a.speed.unwrap_or(60.0),
            }
        }
    };
    let password = match &a.postgres_password_file {
        Some(p) => Some(crate::secrets::read_file(p)?),
        None => std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()),
    };
    let postgres = a.postgres.as_ref().map(|url| {
        let url = match &password {
            Some(pw) => crate::secrets::with_password(url, pw),
            None => url.clone(),
        };
        let mut c = shopdiff_connectors::postgres::CdcConfig::new(&url);
        if let Some(s) = &a.pg_slot {
            c.slot = s.clone();
        }
        if let Some(p) = &a.pg_publication {
            c.publication = p.clone();
        }
        c.resnapshot = a.pg_resnapshot;
        c
    });
    let sink = a.sink.as_ref().map(|t| {
        let mut c = shopdiff_connectors::sink::SinkConfig::new(t.clone());
        c.s3 = c.s3.with_env();
        if let Some(ms) = a.sink_commit_ms {
            c.commit_every_ms = ms;
        }
        if let Some(ms) = a.sink_snapshot_ms {
            c.snapshot_every_ms = ms;
        }
        if let Some(n) = a.sink_max_buffered {
            c.max_buffered = n;
        }
        c
    });
    Ok(RunConfig {
        postgres,
        sink,
        workers: a.workers.unwrap_or(2).max(1),
        time,
        views,
        source,
        http,
        auth,
        history: crate::store::HistoryConfig {
            span_ms: a.history_ms.unwrap_or(3_600_000),
            ..Default::default()
        },
        subscriber_buffer: a.subscriber_buffer.unwrap_or(1024).max(1),
        max_subscribers: a.max_subscribers.unwrap_or(256),
        read_timeout: std::time::Duration::from_millis(a.read_timeout_ms.unwrap_or(10_000).max(1)),
        subscriber_timeout: std::time::Duration::from_millis(
            a.subscriber_timeout_ms.unwrap_or(30_000).max(1),
        ),
        readers: a.readers.unwrap_or(crate::http::DEFAULT_READERS).max(1),
        any_host: a.any_host,
        dead_letters: a.dead_letters.clone(),
        tls: match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => Some(crate::http::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        },
        flush_ms: a.flush_ms.unwrap_or(100),
        exit_after: a.exit_after.map(std::time::Duration::from_secs_f64),
        on_failure: a.on_failure.unwrap_or_default(),
        progress: true,
        cluster: a.cluster.config()?,
    })
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // a client that hangs up mid-stream is not an error of ours
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,warp::server=off")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let res = match cli.cmd {
        Cmd::Replay(a) => replay_cmd(&a),
        Cmd::Generate(a) => generate_cmd(&a).map(|_| ()),
        Cmd::Run(a) => run_cmd(&a),
        Cmd::Demo(a) => demo_cmd(&a),
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
        max_future_ms: e.max_future_ms,
        horizon_ms: e.horizon_ms,
    }
}

/// Replays `dir` into a fresh engine and returns the stores at the final `as_of`.
pub fn replay_dir(
    dir: &Path,
    engine: &EngineArgs,
    dead_letters: Option<PathBuf>,
) -> anyhow::Result<(Stores, ReplayStats)> {
    let (stores, stats) = replay_dir_in(dir, engine, dead_letters, None)?;
    Ok((stores, stats.unwrap_or_default()))
}

/// [`replay_dir`] as one process of a cluster: process 0 reads `dir` (the other processes
/// need not have it) and its records are exchanged by key over every worker of every process;
/// every process returns the stores with every view whole at the final `as_of`. The stats are
/// those of the process that read the files.
pub fn replay_dir_in(
    dir: &Path,
    engine: &EngineArgs,
    dead_letters: Option<PathBuf>,
    cluster: Option<crate::runtime::ClusterConfig>,
) -> anyhow::Result<(Stores, Option<ReplayStats>)> {
    let reads = cluster.as_ref().is_none_or(|c| c.process == 0);
    let replay = if reads {
        let opts = ReplayOptions {
            time: time_config(engine),
            batch_records: engine.batch.max(1),
            dead_letters,
        };
        Some(Replay::open(dir, opts)?)
    } else {
        None
    };
    let views = ViewsConfig {
        tick_ms: engine.tick_ms.max(1),
        fraud: load_fraud(engine.fraud_config.as_deref())?,
        horizon_ms: Some(engine.horizon_ms),
    };
    // A replay answers no `as_of` reads and no resumes: its stores keep no history of
    // updates (the live engine keeps an hour), which was most of a long replay's memory.
    let eng = Engine::start_with(
        &EngineConfig {
            fine_ticks: false,
            cluster,
            workers: engine.workers,
            views,
        },
        crate::store::HistoryConfig::none(),
    )
    .map_err(anyhow::Error::msg)?;
    let stats = match replay {
        Some(r) => Some(r.run(|b| eng.feed(b))?),
        None => None,
    };
    if let Some(why) = eng.stores().failure() {
        anyhow::bail!("{why}");
    }
    let stores = eng.finish().map_err(anyhow::Error::msg)?;
    Ok((stores, stats))
}

fn replay_cmd(a: &ReplayArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let cluster = a.cluster.config()?;
    let (stores, stats) =
        replay_dir_in(&a.dir, &a.engine, a.dead_letters.clone(), cluster.clone())?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(c) = &cluster {
        eprintln!(
            "process {} of {}: sent {} bytes to the other processes",
            c.process,
            c.processes(),
            stores
                .cluster_bytes_sent()
                .load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    eprintln!("peak RSS {:.0} MB", crate::metrics::peak_rss_mb());
    let Some(stats) = stats else {
        // a process of a cluster that did not read the files: it holds every view too
        eprintln!(
            "process {} of {}: every view complete at as_of {} after {secs:.2}s",
            cluster.as_ref().map_or(0, |c| c.process),
            cluster.as_ref().map_or(1, |c| c.processes()),
            stores.as_of().map_or("none".into(), |t| t.to_string()),
        );
        if let Some(out) = &a.snapshot {
            write_snapshots(&stores, out)?;
            eprintln!(
                "wrote {} view snapshots to {}",
                stores.iter().count(),
                out.display()
            );
        }
        return Ok(());
    };
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

fn gen_config(a: &GenerateArgs) -> anyhow::Result<GenConfig> {
    let base = GenConfig {
        seed: a.seed,
        users: a.users,
        products: a.products,
        records: a.records.unwrap_or(1_000_000),
        volume: a.volume.unwrap_or(1.0),
        anomaly_rate: a.anomaly_rate,
        bad_rate: a.bad_rate,
        duplicate_rate: a.duplicate_rate,
        late_rate: a.late_rate,
        ..GenConfig::default()
    };
    let cfg = match a.days {
        Some(d) if !(d > 0.0 && d <= 3650.0) => {
            anyhow::bail!("--days {d} is outside (0, 3650]")
        }
        Some(_) if a.volume.is_some() => {
            anyhow::bail!("--days sets the volume: give --days or --volume, not both")
        }
        Some(d) => base.for_days(d, a.records),
        None => base,
    };
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("generator settings: {e}"))?;
    Ok(cfg)
}

fn generate_cmd(a: &GenerateArgs) -> anyhow::Result<()> {
    if let Some(brokers) = &a.kafka.kafka {
        return crate::cli_kafka::generate_kafka(a, &gen_config(a)?, brokers, a.kafka.rate);
    }
    let opts = WriteOptions {
        zstd: a.zstd,
        progress: true,
        ..WriteOptions::default()
    };
    let cfg = gen_config(a)?;
    if a.days.is_some() {
        eprintln!(
            "{} records over {} days: volume {:.4} of the seed's hourly volumes",
            cfg.records,
            a.days.unwrap_or_default(),
            cfg.volume
        );
    }
    let stats = write_recorded_stream(&cfg, &a.out, &opts)?;
    eprintln!(
        "generated {} transactions and {} behavior records into {} ({:.0} records/s)",
        stats.transactions,
        stats.behavior,
        a.out.display(),
        stats.records_per_sec()
    );
    crate::cli_pg::after_generate(&a.pg, &a.out)
}

fn run_cmd(a: &RunArgs) -> anyhow::Result<()> {
    let cfg = run_config(a)?;
    if let crate::live::EventSource::Kafka(k) = &cfg.source {
        // a broker that refuses us or a missing topic is an error before serving, not a
        // source thread that stops while the server keeps serving nothing
        shopdiff_connectors::kafka::check_topics(k)?;
    }
    crate::live::run(cfg)
}

#[derive(Args, Debug)]
pub struct DemoArgs {
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

fn demo_cmd(a: &DemoArgs) -> anyhow::Result<()> {
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("shopdiff-demo-{}", std::process::id())),
    };
    let stream = dir.join("stream");
    eprintln!("generating {} records into {}", a.records, stream.display());
    let gen = GenerateArgs {
        out: stream.clone(),
        seed: 42,
        records: Some(a.records),
        days: None,
        volume: None,
        users: 10_000,
        products: 1_000,
        anomaly_rate: 0.001,
        bad_rate: 0.001,
        duplicate_rate: 0.001,
        late_rate: 0.0005,
        zstd: false,
        pg: Default::default(),
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
