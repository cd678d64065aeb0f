//! The built-in generator into Kafka: its event records, in delivery order, into the event
//! topics, as fast as possible or at a fixed rate.

use super::producer::RecordProducer;
use super::KafkaError;
use crate::generator::{GenConfig, GenError, GenStream, Generator};
use std::time::{Duration, Instant};

/// What a production did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProduceStats {
    pub transactions: u64,
    pub behavior: u64,
    /// Table changes of the workload (not produced: they belong to the tables' source).
    pub changes_skipped: u64,
    /// Payload bytes produced.
    pub bytes: u64,
    /// Wall time including the final flush.
    pub elapsed: Duration,
}

impl ProduceStats {
    pub fn records(&self) -> u64 {
        self.transactions + self.behavior
    }
    pub fn records_per_sec(&self) -> f64 {
        self.records() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why producing a generated workload failed.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Generator(#[from] GenError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Produces the event records of `cfg`'s workload (the same records, in the same order, as the
/// `transactions.jsonl` and `behavior.jsonl` that `write_recorded_stream` writes for it) into
/// the two topics, keyed by `user_id`. `rate` limits records per second (none: as fast as the
/// producer takes them). Waits until every record is acknowledged.
pub fn produce_generated(
    cfg: &GenConfig,
    producer: &RecordProducer,
    transactions_topic: &str,
    behavior_topic: &str,
    rate: Option<f64>,
) -> Result<ProduceStats, ProduceError> {
    let started = Instant::now();
    let mut gen = Generator::new(cfg.clone())?;
    let mut stats = ProduceStats::default();
    let rate = rate.filter(|r| *r > 0.0);
    while let Some(item) = gen.next_item() {
        let topic = match item.stream {
            GenStream::Transactions => {
                stats.transactions += 1;
                transactions_topic
            }
            GenStream::Behavior => {
                stats.behavior += 1;
                behavior_topic
            }
            GenStream::Change => {
                stats.changes_skipped += 1;
                gen.recycle(item);
                continue;
            }
        };
        producer.send_record(topic, &item.json)?;
        stats.bytes += item.json.len() as u64;
        gen.recycle(item);
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(stats.records() as f64 / r);
            let el = started.elapsed();
            if due > el {
                std::thread::sleep(due - el);
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    stats.elapsed = started.elapsed();
    Ok(stats)
}
