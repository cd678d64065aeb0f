//! Kafka source → engine, with the completion → commit loop.
//!
//! Each batch of the [`KafkaSource`] is fed to the engine; after each one the driver reads the
//! completed `as_of` (the smallest `as_of` over every view's store) and tells the source, which
//! commits, per partition, the offsets of the records whose effects are all in it. With an
//! alerts topic (`KafkaSourceConfig::alerts_topic`), every change of the `fraud_alerts` view is
//! produced as raise / clear events by an [`AlertsTask`] on the stores' change feed.

use crate::alerts_task::AlertsTask;
use crate::runtime::{Engine, EngineConfig};
use crate::store::Stores;
use shopdiff_connectors::kafka::{
    AlertProducer, KafkaError, KafkaSource, KafkaSourceConfig, KafkaStats, RecordProducer,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why a Kafka run failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("engine: {0}")]
    Engine(String),
}

/// How a Kafka run goes.
#[derive(Clone)]
pub struct KafkaRunOptions {
    pub source: KafkaSourceConfig,
    pub engine: EngineConfig,
    /// Set to stop a live run (the run then finishes the views and commits what is complete).
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a Kafka run did.
pub struct KafkaRunResult {
    pub stores: Stores,
    pub stats: KafkaStats,
    /// The completed `as_of` at the end.
    pub as_of: Option<u64>,
    /// `(topic, partition, committed offset)` at the end.
    pub committed: Vec<(String, i32, i64)>,
    /// `(topic, partition, next offset to read)` at the end.
    pub positions: Vec<(String, i32, i64)>,
    pub alerts_sent: u64,
    /// Commits that failed and were retried later (the broker was away).
    pub commit_errors: u64,
    /// Problems that did not stop the run (dead letters or alerts not delivered at the end).
    pub warnings: Vec<String>,
}

pub use crate::cdc::completed_as_of;

/// Runs the Kafka source into a fresh engine until the source ends (`EndAt::EndOfTopics`,
/// `max_messages`) or `stop` is set, then finishes the views and commits what is complete.
pub fn run_kafka(opts: KafkaRunOptions) -> Result<KafkaRunResult, DriverError> {
    let producer = match &opts.source.alerts_topic {
        Some(topic) => Some(AlertProducer::new(
            RecordProducer::connect_with(
                &opts.source.brokers,
                &opts.source.options,
                &opts.source.retry,
            )?,
            topic,
        )),
        None => None,
    };
    let mut source = KafkaSource::open(opts.source)?;
    let eng = Engine::start(&opts.engine).map_err(DriverError::Engine)?;
    // listening before the first batch: every change of the view is produced
    let mut alerts = match producer {
        Some(p) => Some(AlertsTask::start(p, eng.stores()).map_err(DriverError::Engine)?),
        None => None,
    };
    let mut last_frontier: Option<u64> = None;
    let mut commit_errors = 0u64;
    let mut last_done: Option<u64> = None;
    while !opts
        .stop
        .as_ref()
        .is_some_and(|s| s.load(Ordering::Relaxed))
    {
        let Some(b) = source.next_batch()? else { break };
        if !(b.is_empty() && last_frontier == Some(b.frontier)) {
            last_frontier = Some(b.frontier);
            if !eng.feed(b) {
                return Err(DriverError::Engine("the workers stopped".into()));
            }
        }
        let done = completed_as_of(eng.stores());
        if let Some(as_of) = done.filter(|_| done != last_done) {
            last_done = done;
            if let Err(e) = source.completed(as_of) {
                commit_errors += 1;
                tracing::warn!("{e} (retried at the next completion)");
            }
        }
    }
    let stores = eng.finish().map_err(DriverError::Engine)?;
    let as_of = completed_as_of(&stores);
    if let Some(t) = as_of {
        source.completed(t)?;
    }
    let mut warnings = Vec::new();
    // the engine has folded everything: the task produces what is left and flushes
    if let Some(a) = &mut alerts {
        if let Err(e) = a.stop() {
            warnings.push(e);
        }
    }
    let alerts_sent = alerts.as_ref().map_or(0, |a| a.sent());
    if let Err(e) = source.flush(Duration::from_secs(30)) {
        warnings.push(format!("dead letters: {e}"));
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(KafkaRunResult {
        stores,
        stats: source.stats().clone(),
        as_of,
        committed: source.committed(),
        positions: source.positions(),
        alerts_sent,
        commit_errors,
        warnings,
    })
}
