//! Topics: creation with the admin API, partition counts from metadata, and reading a whole
//! topic (for tests and tools).

use super::{block_on, client_config, is_authorization_error, KafkaError, Retry, Watch};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
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
    create_topics_with(brokers, &[], topics, partitions, retry)
}

/// [`create_topics`] with client options (credentials).
pub fn create_topics_with(
    brokers: &str,
    options: &[(String, String)],
    topics: &[&str],
    partitions: i32,
    retry: &Retry,
) -> Result<(), KafkaError> {
    let admin: AdminClient<Watch> = client_config(brokers, options)
        .create_with_context(Watch::default())
        .map_err(|source| KafkaError::Client {
            what: "creating an admin client",
            topic: topics.join(","),
            source: Box::new(source),
        })?;
    // a metadata round trip first: it tells "broker down" apart from "request refused"
    let first = topics.first().copied().unwrap_or(super::TRANSACTIONS_TOPIC);
    retry.run(brokers, "create topics", |timeout| {
        match admin.inner().fetch_metadata(None, timeout) {
            Ok(_) => Ok(Ok(())),
            Err(e) => admin.inner().context().classify(brokers, e.to_string()),
        }
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
            Err((topic, code)) if is_authorization_error(Some(code)) => {
                return Err(KafkaError::NotAuthorized {
                    topic,
                    brokers: brokers.to_string(),
                    detail: format!("creating the topic: {code}"),
                })
            }
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
            match fetch_partitions_once(admin.inner(), brokers, t, retry.attempt_timeout) {
                Ok(Ok(_)) => break,
                Ok(Err(e @ KafkaError::NotAuthorized { .. })) => return Err(e),
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

/// Deletes topics and their records (a topic that does not exist is fine). For tests and
/// tools: a broker whose storage keeps every topic (tansu's SQLite) stays small and fast.
pub fn delete_topics(brokers: &str, topics: &[&str], retry: &Retry) -> Result<(), KafkaError> {
    let admin: AdminClient<Watch> = client_config(brokers, &[])
        .create_with_context(Watch::default())
        .map_err(|source| KafkaError::Client {
            what: "creating an admin client",
            topic: topics.join(","),
            source: Box::new(source),
        })?;
    let opts = AdminOptions::new().operation_timeout(Some(retry.attempt_timeout));
    let results =
        block_on(admin.delete_topics(topics, &opts)).map_err(|source| KafkaError::Client {
            what: "deleting topics",
            topic: topics.join(","),
            source: Box::new(source),
        })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::DeleteTopic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// The partitions of `topic`: `Ok(Err(MissingTopic | NotAuthorized))` when the brokers answer
/// that the topic does not exist or may not be described, `Err` when they did not answer.
fn fetch_partitions_once(
    client: &rdkafka::client::Client<Watch>,
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Result<Vec<i32>, KafkaError>, String> {
    let md = match client.fetch_metadata(Some(topic), timeout) {
        Ok(md) => md,
        Err(e) if is_authorization_error(e.rdkafka_error_code()) => {
            return Ok(Err(KafkaError::NotAuthorized {
                topic: topic.to_string(),
                brokers: brokers.to_string(),
                detail: e.to_string(),
            }))
        }
        Err(e) => return client.context().classify(brokers, e.to_string()),
    };
    let missing = || {
        Ok(Err(KafkaError::MissingTopic {
            topic: topic.to_string(),
            brokers: brokers.to_string(),
        }))
    };
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return missing();
    };
    if let Some(e) = t.error() {
        let code = RDKafkaErrorCode::from(e);
        if is_authorization_error(Some(code)) {
            return Ok(Err(KafkaError::NotAuthorized {
                topic: topic.to_string(),
                brokers: brokers.to_string(),
                detail: format!("describing the topic: {code}"),
            }));
        }
        return missing();
    }
    if t.partitions().is_empty() {
        return missing();
    }
    let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ps.sort_unstable();
    Ok(Ok(ps))
}

/// Serves a consumer's queued events (before any assignment: errors only, one per poll), so
/// its context sees them.
pub(crate) fn drain_events(consumer: &BaseConsumer<Watch>) {
    for _ in 0..1000 {
        if consumer.poll(Duration::ZERO).is_none() {
            break;
        }
    }
}

/// The partition ids of `topic`, retrying while the brokers cannot be reached; a missing topic,
/// refused credentials and a missing ACL are errors saying so. `pump` serves the client's
/// queued events first (a consumer's errors arrive through its poll).
pub(crate) fn fetch_partitions(
    client: &rdkafka::client::Client<Watch>,
    brokers: &str,
    topic: &str,
    retry: &Retry,
    pump: &dyn Fn(),
) -> Result<Vec<i32>, KafkaError> {
    retry.run(brokers, "metadata", |timeout| {
        let r = fetch_partitions_once(client, brokers, topic, timeout);
        if r.is_err() {
            pump();
            if let Some(detail) = client.context().auth_failure() {
                return Ok(Err(KafkaError::Authentication {
                    brokers: brokers.to_string(),
                    detail,
                }));
            }
        }
        r
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
    let consumer: BaseConsumer<Watch> = client_config(brokers, &[])
        .set("group.id", format!("shopdiff-read-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create_with_context(Watch::default())
        .map_err(|source| KafkaError::Client {
            what: "creating a consumer",
            topic: topic.to_string(),
            source: Box::new(source),
        })?;
    let retry = Retry {
        attempts: 3,
        ..Retry::default()
    };
    let parts = fetch_partitions(consumer.client(), brokers, topic, &retry, &|| {
        drain_events(&consumer)
    })?;
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
