//! Producers: event records, dead letters and fraud alerts.

use super::{client_config, KafkaError, Retry, Watch};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde_json::value::RawValue;
use shopdiff_schemas::rows::Value;
use shopdiff_schemas::{Rejection, Source};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Most failed messages kept for a retry; beyond it they are counted as lost.
const MAX_RETAINED: usize = 100_000;

/// Counts deliveries and keeps the failed messages for a retry at the next flush.
#[derive(Default)]
pub struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    retry: Mutex<Vec<rdkafka::message::OwnedMessage>>,
    watch: Watch,
}

impl ClientContext for Deliveries {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.watch.error(error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, m)) => {
                use rdkafka::Message;
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() {
                    *first = Some(format!("{}/{}: {e}", m.topic(), m.partition()));
                }
                let mut retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
                if retry.len() < MAX_RETAINED {
                    retry.push(m.detach());
                }
            }
        }
    }
}

/// Writes records into topics; delivery runs on librdkafka's threads (acks from all replicas).
pub struct RecordProducer {
    producer: ThreadedProducer<Deliveries>,
    brokers: String,
}

/// The partitioning key of an event record: its `user_id` when that is a string (so a user's
/// records stay in one partition, in order), else none (librdkafka then picks a partition).
pub fn record_key(json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct K<'a> {
        #[serde(borrow)]
        user_id: Option<&'a RawValue>,
    }
    let k: K<'_> = serde_json::from_str(json).ok()?;
    serde_json::from_str::<String>(k.user_id?.get()).ok()
}

impl RecordProducer {
    /// Connects to `brokers` (retrying with backoff while they do not answer).
    pub fn connect(brokers: &str, retry: &Retry) -> Result<RecordProducer, KafkaError> {
        Self::connect_with(brokers, &[], retry)
    }

    /// [`connect`](Self::connect) with client options (librdkafka properties: credentials).
    pub fn connect_with(
        brokers: &str,
        options: &[(String, String)],
        retry: &Retry,
    ) -> Result<RecordProducer, KafkaError> {
        let producer: ThreadedProducer<Deliveries> = client_config(brokers, options)
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "200000")
            .set("message.timeout.ms", "60000")
            .create_with_context(Deliveries::default())
            .map_err(|source| KafkaError::Client {
                what: "creating a producer",
                topic: String::new(),
                source: Box::new(source),
            })?;
        retry.run(brokers, "producer", |timeout| {
            match producer.client().fetch_metadata(None, timeout) {
                Ok(_) => Ok(Ok(())),
                Err(e) => producer.context().watch.classify(brokers, e.to_string()),
            }
        })?;
        Ok(RecordProducer {
            producer,
            brokers: brokers.to_string(),
        })
    }

    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// Queues one message, waiting while librdkafka's queue is full.
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<(), KafkaError> {
        self.send_to(topic, None, key, payload, headers)
    }

    /// [`send`](Self::send) into one partition (`None`: the partitioner picks it by key).
    pub fn send_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<(), KafkaError> {
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(payload);
        if let Some(p) = partition {
            rec = rec.partition(p);
        }
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(h) = headers {
            rec = rec.headers(h);
        }
        loop {
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((source, _)) => {
                    return Err(KafkaError::Produce {
                        topic: topic.to_string(),
                        key: key
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                            .unwrap_or_default(),
                        source: Box::new(source),
                    })
                }
            }
        }
    }

    /// Queues a JSON event record keyed by its `user_id`.
    pub fn send_record(&self, topic: &str, json: &str) -> Result<(), KafkaError> {
        let key = record_key(json);
        self.send(
            topic,
            key.as_deref().map(str::as_bytes),
            json.as_bytes(),
            None,
        )
    }

    /// Waits until every queued message is delivered; a message that failed (a broker that
    /// restarts answers some requests with errors) is sent again, up to 5 more rounds with a
    /// growing pause; fails naming the first failure when some are still not delivered. Those
    /// are kept, and sent again by the next flush.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let ctx = self.producer.context();
        let lock = |m: &Mutex<Vec<rdkafka::message::OwnedMessage>>| {
            std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()))
        };
        for round in 0..=5u32 {
            self.flush_once(timeout)?;
            let failed = lock(&ctx.retry);
            let mut first = ctx.first_error.lock().unwrap_or_else(|e| e.into_inner());
            if failed.is_empty() {
                ctx.failed.store(0, Ordering::Relaxed);
                *first = None;
                return Ok(());
            }
            if round == 5 {
                let count = failed.len() as u64;
                // keep them for the next flush: a caller that retries loses nothing
                ctx.retry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(failed);
                return Err(KafkaError::Undelivered {
                    count,
                    first: first.clone().unwrap_or_default(),
                });
            }
            *first = None;
            drop(first);
            tracing::warn!(
                "{} message(s) not delivered; sending them again (round {})",
                failed.len(),
                round + 1
            );
            std::thread::sleep(Duration::from_millis(250 << round));
            ctx.failed.store(0, Ordering::Relaxed);
            for m in failed {
                use rdkafka::Message;
                self.send(
                    m.topic(),
                    m.key(),
                    m.payload().unwrap_or_default(),
                    m.headers().cloned(),
                )?;
            }
        }
        Ok(())
    }

    fn flush_once(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .flush(timeout)
            .map_err(|source| KafkaError::Produce {
                topic: String::new(),
                key: String::new(),
                source: Box::new(source),
            })
    }

    /// Messages acknowledged by the broker so far.
    pub fn delivered(&self) -> u64 {
        self.producer.context().delivered.load(Ordering::Relaxed)
    }

    /// Messages that could not be delivered.
    pub fn failed(&self) -> u64 {
        self.producer.context().failed.load(Ordering::Relaxed)
    }
}

/// Rejected records, written to the dead-letter topic with their original key and value and
/// headers `reason`, `field`, `source` and `position` (`topic/partition/offset`).
pub struct DeadLetters {
    producer: RecordProducer,
    topic: String,
    sent: u64,
}

impl DeadLetters {
    pub fn new(producer: RecordProducer, topic: &str) -> DeadLetters {
        DeadLetters {
            producer,
            topic: topic.to_string(),
            sent: 0,
        }
    }

    /// Queues the dead letter of one rejected message.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        source: Source,
        rejection: &Rejection,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(), KafkaError> {
        let position = format!("{topic}/{partition}/{offset}");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(rejection.reason.as_str()),
            })
            .insert(Header {
                key: "field",
                value: Some(rejection.field),
            })
            .insert(Header {
                key: "source",
                value: Some(source.as_str()),
            })
            .insert(Header {
                key: "position",
                value: Some(position.as_str()),
            });
        self.producer
            .send(&self.topic, key, payload, Some(headers))?;
        self.sent += 1;
        Ok(())
    }

    /// Dead letters queued so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}

/// One message for the fraud-alerts topic.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertMessage {
    /// `rule|key`.
    pub key: String,
    /// `{"event": "raise" | "clear", "rule", "key", "user_id", "measure", "threshold", "as_of"}`.
    pub payload: String,
    pub raised: bool,
}

fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Str(s) => serde_json::Value::from(s.as_str()),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Money(c) => serde_json::Value::from(shopdiff_schemas::money::format_cents(*c)),
        Value::Time(t) => serde_json::Value::from(*t),
        Value::Ratio(..) | Value::Number(_) => v
            .as_f64()
            .map(serde_json::Value::from)
            .unwrap_or(serde_json::Value::Null),
        Value::Bool(b) => serde_json::Value::from(*b),
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Str(s)) => s.to_string(),
        _ => String::new(),
    }
}

/// The fraud-alerts topic's messages for the changes of the `fraud_alerts` view at one `as_of`:
/// rows `rule, key, user_id, measure, threshold` with their diffs (`+1` in, `-1` out). An
/// alert that appears is `raise`d, one that disappears is `clear`ed, and one whose measure
/// changed is `raise`d again with the new measure (consumers treat `raise` as an upsert by
/// `rule|key`). Messages are in key order.
pub fn alert_messages(as_of: u64, changes: &[(Vec<Value>, isize)]) -> Vec<AlertMessage> {
    /// The row that came in and the row that went out, per `rule|key`.
    type InOut<'a> = (Option<&'a Vec<Value>>, Option<&'a Vec<Value>>);
    let mut by_key: BTreeMap<String, InOut<'_>> = BTreeMap::new();
    for (row, diff) in changes {
        if *diff == 0 {
            continue;
        }
        let key = format!("{}|{}", text(row.first()), text(row.get(1)));
        let e = by_key.entry(key).or_default();
        if *diff > 0 {
            e.0 = Some(row);
        } else {
            e.1 = Some(row);
        }
    }
    by_key
        .into_iter()
        .filter_map(|(key, (added, removed))| {
            let (row, raised) = match (added, removed) {
                (Some(a), _) => (a, true),
                (None, Some(r)) => (r, false),
                (None, None) => return None,
            };
            let field = |i: usize| row.get(i).map(json_value).unwrap_or_default();
            let payload = serde_json::json!({
                "event": if raised { "raise" } else { "clear" },
                "rule": field(0),
                "key": field(1),
                "user_id": field(2),
                "measure": field(3),
                "threshold": field(4),
                "as_of": as_of,
            });
            Some(AlertMessage {
                key,
                payload: payload.to_string(),
                raised,
            })
        })
        .collect()
}

/// Produces the `fraud_alerts` view's changes as raise / clear events keyed by `rule|key`.
pub struct AlertProducer {
    producer: RecordProducer,
    topic: String,
}

impl AlertProducer {
    pub fn new(producer: RecordProducer, topic: &str) -> AlertProducer {
        AlertProducer {
            producer,
            topic: topic.to_string(),
        }
    }

    /// Queues the messages for the view's changes at `as_of`; returns how many.
    pub fn send_changes(
        &self,
        as_of: u64,
        changes: &[(Vec<Value>, isize)],
    ) -> Result<usize, KafkaError> {
        let msgs = alert_messages(as_of, changes);
        for m in &msgs {
            self.producer.send(
                &self.topic,
                Some(m.key.as_bytes()),
                m.payload.as_bytes(),
                None,
            )?;
        }
        Ok(msgs.len())
    }

    /// Messages not delivered since the last flush (a flush sends them again).
    pub fn failed(&self) -> u64 {
        self.producer.failed()
    }

    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopdiff_schemas::Str;

    fn row(rule: &str, key: &str, m: f64) -> Vec<Value> {
        vec![
            Value::Str(Str::from(rule)),
            Value::Str(Str::from(key)),
            Value::Str(Str::from("U1")),
            Value::Number(m),
            Value::Number(5.0),
        ]
    }

    #[test]
    fn raise_update_and_clear() {
        let changes = vec![
            (row("velocity", "U1", 6.0), 1),
            (row("geo", "U2", 2.0), -1),
            (row("amount", "U3", 7000.0), -1),
            (row("amount", "U3", 8000.0), 1),
        ];
        let m = alert_messages(1000, &changes);
        let keys: Vec<_> = m.iter().map(|m| (m.key.as_str(), m.raised)).collect();
        assert_eq!(
            keys,
            vec![
                ("amount|U3", true),
                ("geo|U2", false),
                ("velocity|U1", true)
            ]
        );
        let v: serde_json::Value = serde_json::from_str(&m[0].payload).unwrap();
        assert_eq!(v["event"], "raise");
        assert_eq!(v["measure"], 8000.0);
        assert_eq!(v["as_of"], 1000);
        let v: serde_json::Value = serde_json::from_str(&m[1].payload).unwrap();
        assert_eq!(v["event"], "clear");
        assert_eq!(v["rule"], "geo");
    }

    #[test]
    fn keys_of_records() {
        assert_eq!(
            record_key(r#"{"a":1,"user_id":"U7"}"#).as_deref(),
            Some("U7")
        );
        assert_eq!(record_key(r#"{"user_id":7}"#), None);
        assert_eq!(record_key("not json"), None);
    }
}
