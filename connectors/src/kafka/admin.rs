//! Topics: creation with the admin API, partition counts from metadata, and reading a whole
//! topic (for tests and tools).

use super::{block_on, client_config, KafkaError, Retry};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Creates each topic with `partitions` partitions (replication 1); a topic that already
/// exists is left as it is. Retries while the brokers cannot be reached.
pub fn create_topics(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
    retry: &Retry,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(brokers)
            .create()
            .map_err(|source| KafkaError::Client {
                what: "creating an admin client",
                topic: topics.join(","),
                source: Box::new(source),
            })?;
    // a metadata round trip first: it tells "broker down" apart from "request refused"
    let first = topics.first().copied().unwrap_or(super::TRANSACTIONS_TOPIC);
    retry.run(brokers, "create topics", |timeout| {
        admin
            .inner()
            .fetch_metadata(None, timeout)
            .map(|_| Ok(()))
            .map_err(|e| e.to_string())
    })?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(retry.attempt_timeout));
    let results =
        block_on(admin.create_topics(&new, &opts)).map_err(|source| KafkaError::Client {
            what: "creating topics",
            topic: first.to_string(),
            source: Box::new(source),
        })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    // wait until the metadata shows every topic (creation is asynchronous on some brokers)
    let deadline = Instant::now() + retry.attempt_timeout;
    for t in topics {
        loop {
            match fetch_partitions_once(admin.inner(), t, retry.attempt_timeout) {
                Ok(Some(_)) => break,
                _ if Instant::now() >= deadline => {
                    return Err(KafkaError::MissingTopic {
                        topic: t.to_string(),
                        brokers: brokers.to_string(),
                    })
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    Ok(())
}

/// The partitions of `topic`, `Ok(None)` when the topic does not exist, `Err` when the brokers
/// did not answer.
fn fetch_partitions_once<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Vec<i32>>, String> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| e.to_string())?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(None);
    }
    let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ps.sort_unstable();
    Ok(Some(ps))
}

/// The partition ids of `topic`, retrying while the brokers cannot be reached; a missing topic
/// is an error naming it.
pub fn fetch_partitions<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    brokers: &str,
    topic: &str,
    retry: &Retry,
) -> Result<Vec<i32>, KafkaError> {
    retry.run(brokers, "metadata", |timeout| {
        fetch_partitions_once(client, topic, timeout).map(|r| {
            r.ok_or_else(|| KafkaError::MissingTopic {
                topic: topic.to_string(),
                brokers: brokers.to_string(),
            })
        })
    })
}

/// One message read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Headers with UTF-8 values (others are left out), in order.
    pub headers: Vec<(String, String)>,
}

impl ReceivedMessage {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn payload_str(&self) -> &str {
        self.payload
            .as_deref()
            .and_then(|p| std::str::from_utf8(p).ok())
            .unwrap_or("")
    }
}

/// Reads every message of `topic` from the beginning until each partition is at its end (or
/// `timeout` passes), in partition then offset order. For tests and tools.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<ReceivedMessage>, KafkaError> {
    let consumer: BaseConsumer = client_config(brokers)
        .set("group.id", format!("shopdiff-read-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|source| KafkaError::Client {
            what: "creating a consumer",
            topic: topic.to_string(),
            source: Box::new(source),
        })?;
    let retry = Retry {
        attempts: 3,
        ..Retry::default()
    };
    let parts = fetch_partitions(consumer.client(), brokers, topic, &retry)?;
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|source| KafkaError::Client {
                what: "assigning partitions",
                topic: topic.to_string(),
                source: Box::new(source),
            })?;
    }
    consumer.assign(&tpl).map_err(|source| KafkaError::Client {
        what: "assigning partitions",
        topic: topic.to_string(),
        source: Box::new(source),
    })?;
    let mut out: BTreeMap<(i32, i64), ReceivedMessage> = BTreeMap::new();
    let mut at_end: BTreeMap<i32, bool> = parts.iter().map(|p| (*p, false)).collect();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !at_end.values().all(|e| *e) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p, true);
            }
            Some(Err(e)) => tracing::warn!("reading {topic}: {e}"),
            Some(Ok(m)) => {
                at_end.insert(m.partition(), false);
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .filter_map(|h| {
                                let v = std::str::from_utf8(h.value?).ok()?;
                                Some((h.key.to_string(), v.to_string()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(
                    (m.partition(), m.offset()),
                    ReceivedMessage {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        headers,
                    },
                );
            }
        }
    }
    Ok(out.into_values().collect())
}
