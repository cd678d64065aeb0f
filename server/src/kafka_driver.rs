//! Kafka source → engine, with the completion → commit loop.
//!
//! Each batch of the [`KafkaSource`] is fed to the engine; after each one the driver reads the
//! completed `as_of` (the smallest `as_of` over every view's store) and tells the source, which
//! commits, per partition, the offsets of the records whose effects are all in it. With an
//! alerts topic, the `fraud_alerts` view's changes between two completed `as_of`s are produced
//! as raise / clear events (the changes are taken between the snapshots the driver sees, so an
//! alert raised and cleared between two of them is not reported).

use crate::runtime::{Engine, EngineConfig};
use crate::store::Stores;
use shopdiff_connectors::kafka::{
    AlertProducer, KafkaError, KafkaSource, KafkaSourceConfig, KafkaStats, RecordProducer,
};
use shopdiff_schemas::rows::Value;
use std::collections::BTreeMap;
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
    /// Produce the `fraud_alerts` view's changes to this topic.
    pub alerts_topic: Option<String>,
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

/// Tracks the `fraud_alerts` view and produces its changes.
struct Alerts {
    producer: AlertProducer,
    rows: BTreeMap<String, Vec<Value>>,
    as_of: Option<u64>,
    sent: u64,
}

impl Alerts {
    fn publish(&mut self, stores: &Stores) -> Result<(), KafkaError> {
        let Some(view) = stores.get("fraud_alerts") else {
            return Ok(());
        };
        let (as_of, rows) = view.snapshot();
        let Some(as_of) = as_of else { return Ok(()) };
        if self.as_of == Some(as_of) {
            return Ok(());
        }
        self.as_of = Some(as_of);
        let now: BTreeMap<String, Vec<Value>> =
            rows.into_iter().map(|r| (format!("{r:?}"), r)).collect();
        let mut changes: Vec<(Vec<Value>, isize)> = Vec::new();
        for (k, r) in &self.rows {
            if !now.contains_key(k) {
                changes.push((r.clone(), -1));
            }
        }
        for (k, r) in &now {
            if !self.rows.contains_key(k) {
                changes.push((r.clone(), 1));
            }
        }
        self.rows = now;
        if !changes.is_empty() {
            self.sent += self.producer.send_changes(as_of, &changes)? as u64;
        }
        Ok(())
    }
}

/// Runs the Kafka source into a fresh engine until the source ends (`EndAt::EndOfTopics`,
/// `max_messages`) or `stop` is set, then finishes the views and commits what is complete.
pub fn run_kafka(opts: KafkaRunOptions) -> Result<KafkaRunResult, DriverError> {
    let brokers = opts.source.brokers.clone();
    let mut alerts = match &opts.alerts_topic {
        Some(topic) => Some(Alerts {
            producer: AlertProducer::new(
                RecordProducer::connect(&brokers, &opts.source.retry)?,
                topic,
            ),
            rows: BTreeMap::new(),
            as_of: None,
            sent: 0,
        }),
        None => None,
    };
    let mut source = KafkaSource::open(opts.source)?;
    let eng = Engine::start(&opts.engine).map_err(DriverError::Engine)?;
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
            if let Some(a) = &mut alerts {
                if let Err(e) = a.publish(eng.stores()) {
                    tracing::warn!("fraud alerts: {e}");
                }
            }
        }
    }
    let stores = eng.finish().map_err(DriverError::Engine)?;
    let as_of = completed_as_of(&stores);
    if let Some(t) = as_of {
        source.completed(t)?;
    }
    let mut warnings = Vec::new();
    if let Some(a) = &mut alerts {
        if let Err(e) = a
            .publish(&stores)
            .and_then(|_| a.producer.flush(Duration::from_secs(30)))
        {
            warnings.push(format!("fraud alerts: {e}"));
        }
    }
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
        alerts_sent: alerts.map_or(0, |a| a.sent),
        commit_errors,
        warnings,
    })
}
