//! The `fraud_alerts` view's changes into the `fraud_alerts` topic (`shopdiff run --kafka`,
//! `shopdiff consume --alerts`).
//!
//! A listener on [`Stores`] receives every advance in order (its `as_of` and each view's
//! consolidated changes, as the continuous sink does); a thread turns the `fraud_alerts` changes
//! of each advance into `raise` / `clear` events keyed by `rule|key`
//! ([`alert_messages`](shopdiff_connectors::kafka::alert_messages)) and produces them. Every
//! change of the view is reported, at the `as_of` where it happened: an alert raised and
//! cleared between two reads of the view is still raised and cleared in the topic.
//!
//! Delivery is at least once: librdkafka retries, a message that still fails is kept and sent
//! again by the next flush (every few seconds while failures are pending, and at the end), and
//! a restarted run (which rebuilds the views from the topics) produces the alerts of the
//! rebuilt history again. Consumers treat `raise` as an upsert and `clear` as a delete by key.

use crate::live::{EventSource, RunConfig};
use crate::runtime::Engine;
use crate::store::{Advance, Stores};
use shopdiff_connectors::kafka::{AlertProducer, RecordProducer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Advances buffered between the publisher and the producer (the publisher waits when full).
const QUEUE: usize = 64;

/// How long the final flush waits for the broker.
const FINAL_FLUSH: Duration = Duration::from_secs(30);

/// The running alert producer: its thread, stop flag and counters.
pub struct AlertsTask {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl AlertsTask {
    /// Starts following `stores`: call it before the first advance, so no change is missed.
    pub fn start(producer: AlertProducer, stores: &Stores) -> Result<AlertsTask, String> {
        let rx = stores.listen(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), sent.clone());
        let handle = std::thread::Builder::new()
            .name("alerts".into())
            .spawn(move || follow(producer, rx, flag, count))
            .map_err(|e| format!("cannot start the fraud-alerts thread: {e}"))?;
        Ok(AlertsTask {
            stop,
            sent,
            handle: Some(handle),
        })
    }

    /// Connects a producer to the Kafka source's brokers (with its client options) and starts
    /// following `stores`; `None` when the run has no Kafka source or its alerts are off.
    pub fn for_run(cfg: &RunConfig, stores: &Stores) -> Result<Option<AlertsTask>, String> {
        let EventSource::Kafka(k) = &cfg.source else {
            return Ok(None);
        };
        let Some(topic) = &k.alerts_topic else {
            return Ok(None);
        };
        let producer = RecordProducer::connect_with(&k.brokers, &k.options, &k.retry)
            .map_err(|e| format!("fraud alerts to {topic}: {e}"))?;
        Self::start(AlertProducer::new(producer, topic), stores).map(Some)
    }

    /// Alert messages queued so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Produces what is buffered, waits for the broker's acknowledgements and stops.
    pub fn stop(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the fraud-alerts thread panicked".into()),
            None => Ok(()),
        }
    }

    /// [`stop`](Self::stop) once the stores have folded everything `engine` was fed (at most
    /// `timeout`), so the last changes are produced too.
    pub fn stop_after(&mut self, engine: &Engine, timeout: Duration) -> Result<(), String> {
        let want = engine.fed_frontier();
        let stores = engine.stores();
        let t0 = Instant::now();
        // (nothing fed: nothing to wait for)
        while want > 0
            && stores.as_of().map(|a| a + stores.tick()) < Some(want)
            && t0.elapsed() < timeout
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop()
    }
}

impl Drop for AlertsTask {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Queues the alert messages of one advance; returns how many.
fn produce(producer: &AlertProducer, adv: &Advance) -> Result<usize, String> {
    let Some((_, diffs)) = adv.views.iter().find(|(def, _)| def.name == "fraud_alerts") else {
        return Ok(0);
    };
    if diffs.is_empty() {
        return Ok(0);
    }
    producer
        .send_changes(adv.as_of, diffs)
        .map_err(|e| e.to_string())
}

fn follow(
    producer: AlertProducer,
    rx: crossbeam_channel::Receiver<Arc<Advance>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> Result<(), String> {
    let mut last_retry = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(adv) => match produce(&producer, &adv) {
                Ok(n) => {
                    sent.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => tracing::error!("fraud alerts at as_of {}: {e}", adv.as_of),
            },
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        // messages the broker refused are sent again now and then, not only at the end
        if producer.failed() > 0 && last_retry.elapsed() >= Duration::from_secs(5) {
            last_retry = Instant::now();
            if let Err(e) = producer.flush(Duration::from_secs(5)) {
                tracing::warn!("fraud alerts: {e} (kept; sent again later)");
            }
        }
    }
    producer
        .flush(FINAL_FLUSH)
        .map_err(|e| format!("fraud alerts: {e}"))
}
