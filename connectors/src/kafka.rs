//! Kafka sources and sinks (contract section 6, "Kafka topics"), on rdkafka (librdkafka).
//!
//! * [`KafkaSource`] consumes `transactions` and `behavior` (names configurable) and turns each
//!   message's value into records through the same validation as a replay
//!   (`parse_transaction` / `parse_behavior`) and the same time model ([`Ingest`]), with one
//!   watermark input per topic partition. It yields [`Batch`]es for `Engine::feed`.
//! * [`RecordProducer`] writes JSON records into the event topics (key = `user_id`, so a user's
//!   records keep their order in one partition); [`DeadLetters`] writes rejected records to
//!   `dead_letters` with headers `reason`, `field`, `source` and `position`
//!   (`topic/partition/offset`); [`AlertProducer`] turns the `fraud_alerts` view's changes into
//!   `raise` / `clear` events keyed by `rule|key` (the server's `alerts_task` feeds it every
//!   change of the view from the stores' change feed, in `shopdiff run --kafka` and `shopdiff
//!   consume --alerts`).
//! * [`create_topics`] creates topics with the admin API (idempotent); every connection to the
//!   brokers is retried with exponential backoff ([`Retry`]) and fails with a message that names
//!   the brokers.
//!
//! # Settings and errors
//!
//! [`KafkaSourceConfig::options`] (`--kafka-option KEY=VALUE`, parsed by [`parse_option`]) are
//! librdkafka properties given to every client of the source, its dead-letter producer and the
//! alert producer: credentials such as `security.protocol`, `sasl.mechanism`, `sasl.username`,
//! `sasl.password` (this build of librdkafka has SASL/PLAIN, not TLS or SCRAM: those need the
//! rdkafka crate's `ssl` feature). Each kind of failure has its own [`KafkaError`]:
//!
//! * [`KafkaError::Unreachable`]: no broker answered within the retries (names the brokers).
//! * [`KafkaError::MissingTopic`]: an event topic, or the dead-letter or alert topic (checked
//!   at [`KafkaSource::open`], not at the first send, which would only time out), does not
//!   exist; the message says how to create it.
//! * [`KafkaError::Authentication`]: the brokers refused the credentials (a failed SASL or TLS
//!   handshake). librdkafka only reports it through its error callback while the metadata
//!   request times out, so each client's context (`Watch`) keeps the first such error and the
//!   retry loop stops at once with it instead of retrying an "unreachable" broker. Refused
//!   credentials while running stop the source with the same error.
//! * [`KafkaError::NotAuthorized`]: a missing ACL (topic, group or cluster authorization).
//! * An undecodable message (not UTF-8, not JSON, a missing or bad field) is not an error of
//!   the source: it is a rejected record, counted in `data_quality` and dead-lettered.
//!
//! None of them loses a committed record: offsets are only committed as described below.
//!
//! # Watermarks and idle partitions
//!
//! Every assigned partition of both topics is an input of [`Ingest`]: the watermark is the
//! smallest, over the live partitions, of the largest event time seen minus the allowed
//! lateness. A partition whose consumer position is at the partition's end (librdkafka's
//! partition-EOF event, so no ListOffsets request is needed) and that has had no message for
//! `idle_ms` is idle: it no longer holds the watermark back, so a quiet partition does not stall
//! `as_of`. When it has messages again it is live again; the watermark never goes back, so its
//! records older than the watermark are `late`. When every partition is idle, everything seen is
//! complete (`as_of = ceil_tick` of the largest event time seen), as for an exhausted replay.
//!
//! # Delivery guarantee
//!
//! At-least-once in, exactly-once in the views:
//!
//! * Offsets are committed (to the consumer group, with `commit` on a manual assignment) only
//!   for records whose effects are in a completed `as_of`: for each batch the source keeps, per
//!   partition, the next offset and the greatest effect time of the partition's records so far;
//!   [`KafkaSource::completed`] commits a partition's offset once the engine's completed `as_of`
//!   (the smallest `as_of` over the views) reaches that time.
//! * De-duplication by identity (`(transaction_id, product_id)`, `event_id`) is in memory
//!   ([`Ingest`]) and so are the views: neither survives a restart. A restarted process therefore
//!   rebuilds them: with [`StartFrom::Recover`] it reads every partition from its beginning, the
//!   records below the committed offsets only to rebuild the views and the dedup set (they
//!   produce no dead letters again and are not committed again), then continues past them. Each
//!   record thus counts once: the views equal those of an uninterrupted run, whatever the
//!   previous process had read, fed or committed before it stopped. A record delivered twice by
//!   Kafka (a producer retry) is a duplicate by identity, counted in `data_quality` as
//!   `duplicate`, exactly as a duplicate in a recorded stream.
//! * [`StartFrom::Committed`] resumes at the committed offsets without rebuilding; it is meant
//!   for a process whose view state is restored from elsewhere (a checkpoint or a sink), since
//!   otherwise the views only reflect records after those offsets.
//! * Before a commit, the dead letters queued so far are flushed: a record's offset is committed
//!   only once its dead letter is acknowledged (a failed flush commits nothing; the next
//!   completion tries again, and a restart dead-letters the uncommitted records again). A
//!   message the broker did not acknowledge is kept by the producer and sent again by the next
//!   flush.
//! * Dead letters and fraud alerts are produced at least once (records between the last commit
//!   and a crash are dead-lettered again after a restart; a restarted run produces the alerts
//!   of the rebuilt history again).
//!
//! # Ordering and partitions
//!
//! One consumer per topic per process, with every partition assigned to it, or this process's
//! share of them (no group rebalancing). [`KafkaSourceConfig::member`] `= Some((index, count))`
//! makes the process member `index` of `count`: it consumes partition `p` of each topic iff
//! `p % count == index` ([`assigned_partitions`]; default `None`: every partition). The members
//! of a cluster thus read each partition exactly once, and their shares differ by at most one
//! partition. Only the assigned partitions are watermark inputs, so each member's frontier
//! covers its own share; the cluster's `as_of` is the smallest over the members. A member with
//! no partition (more members than partitions) holds nothing back. A member whose partitions
//! are all idle ([`KafkaSource::all_idle`]) follows the others with
//! [`KafkaSource::raise_watermark`] (`shopdiff run` does it with the frontier the other
//! processes fed), so an idle share never holds the cluster's `as_of` back, exactly as an idle
//! partition does not hold one process's watermark back. De-duplication is per member: a
//! re-delivery lands in the same partition (same key), so it is caught; two deliveries of one
//! identity under different keys read by different members would both count. A member reads
//! `tables_dir` like any source: give it to one member only, or the tables count once per
//! member. `Engine::feed` then spreads the records round-robin over the workers and
//! differential exchanges them by key. Order is kept within a partition only; records of
//! different partitions interleave as they are fetched, so which records are `late` (and which
//! delivery of an identity that spans partitions is the first) can differ from a replay of the
//! same records. Keying by `user_id` keeps a user's records (and their re-deliveries) in one
//! partition.

mod admin;
mod generate;
mod producer;
mod source;

pub use admin::{create_topics, create_topics_with, delete_topics, read_topic, ReceivedMessage};
pub use generate::{produce_generated, ProduceError, ProduceStats};
pub use producer::{
    alert_messages, record_key, AlertMessage, AlertProducer, DeadLetters, RecordProducer,
};
pub use source::{
    assigned_partitions, check_topics, EndAt, KafkaSource, KafkaSourceConfig, KafkaStats, StartFrom,
};

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// The default topic names of contract section 6.
pub const TRANSACTIONS_TOPIC: &str = "transactions";
pub const BEHAVIOR_TOPIC: &str = "behavior";
pub const FRAUD_ALERTS_TOPIC: &str = "fraud_alerts";
pub const DEAD_LETTERS_TOPIC: &str = "dead_letters";

/// Why a Kafka source or sink failed. Every variant names what it was working on.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot reach the Kafka brokers at {brokers} after {attempts} attempt(s) over {waited:?}: {last} (hint: is the broker running? scripts/kafka.sh start)")]
    Unreachable {
        brokers: String,
        attempts: u32,
        waited: Duration,
        last: String,
    },
    #[error("topic {topic} does not exist on {brokers} (hint: scripts/kafka.sh start creates the topics; or `tansu topic create {topic} --partitions 4`)")]
    MissingTopic { topic: String, brokers: String },
    #[error("authentication with the Kafka brokers at {brokers} failed: {detail} (hint: check the security.protocol, sasl.* and ssl.* client options, --kafka-option KEY=VALUE)")]
    Authentication { brokers: String, detail: String },
    #[error("not authorized on the Kafka brokers at {brokers}: {detail} (topic {topic}; hint: the principal needs read/write ACLs on the topic and the consumer group)")]
    NotAuthorized {
        topic: String,
        brokers: String,
        detail: String,
    },
    #[error("Kafka settings: {0}")]
    Config(String),
    #[error("{what} (topic {topic}): {source}")]
    Client {
        what: &'static str,
        topic: String,
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error("committing offset {offset} of {topic}/{partition}: {source}")]
    Commit {
        topic: String,
        partition: i32,
        offset: i64,
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error("consuming {topic}: {source}")]
    Consume {
        topic: String,
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error("producing to {topic} (key {key:?}): {source}")]
    Produce {
        topic: String,
        key: String,
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error("{count} message(s) were not delivered; the first: {first} (hint: does the topic exist? is the broker up?)")]
    Undelivered { count: u64, first: String },
    #[error("creating topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("deleting topic {topic}: {reason}")]
    DeleteTopic { topic: String, reason: String },
    #[error("{0}")]
    Tables(#[from] crate::files::FileError),
}

/// How often and how patiently to retry connecting to the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (at least one).
    pub attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub initial: Duration,
    /// Longest wait between two attempts.
    pub max: Duration,
    /// Timeout of one attempt (a metadata request).
    pub attempt_timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 8,
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

impl Retry {
    /// Runs `f` until it succeeds, the budget is spent, or it fails with an error that a retry
    /// cannot fix (`Ok(Err(_))` from `f`). Each failure is logged with the next wait.
    pub(crate) fn run<T>(
        &self,
        brokers: &str,
        what: &str,
        mut f: impl FnMut(Duration) -> Result<Result<T, KafkaError>, String>,
    ) -> Result<T, KafkaError> {
        let started = Instant::now();
        let mut wait = self.initial;
        let attempts = self.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match f(self.attempt_timeout) {
                Ok(r) => return r,
                Err(e) => last = e,
            }
            if attempt < attempts {
                tracing::warn!(
                    "cannot reach the Kafka brokers at {brokers} ({what}), attempt {attempt}/{attempts}: {last}; retrying in {wait:?}"
                );
                eprintln!(
                    "warning: cannot reach the Kafka brokers at {brokers} ({what}), attempt {attempt}/{attempts}: {last}; retrying in {wait:?}"
                );
                std::thread::sleep(wait);
                wait = (wait * 2).min(self.max);
            }
        }
        Err(KafkaError::Unreachable {
            brokers: brokers.to_string(),
            attempts,
            waited: started.elapsed(),
            last,
        })
    }
}

/// The settings every client shares, then `options` (librdkafka properties such as
/// `security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`), which win.
pub(crate) fn client_config(brokers: &str, options: &[(String, String)]) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        // logs of a broker that is down are reported by us, with context
        .set("log_level", "3");
    for (k, v) in options {
        c.set(k, v);
    }
    c
}

/// Parses a client option `KEY=VALUE` (a librdkafka property).
pub fn parse_option(s: &str) -> Result<(String, String), KafkaError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(KafkaError::Config(format!(
            "client option {s:?}: expected KEY=VALUE, a librdkafka property such as security.protocol=SASL_SSL"
        ))),
    }
}

/// Whether a client error means the brokers refused our credentials (or the TLS handshake).
pub(crate) fn is_auth_error(code: Option<rdkafka::types::RDKafkaErrorCode>) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        code,
        Some(C::Authentication | C::SaslAuthenticationFailed | C::SSL)
    )
}

/// Whether a client error means the principal lacks an ACL.
pub(crate) fn is_authorization_error(code: Option<rdkafka::types::RDKafkaErrorCode>) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        code,
        Some(
            C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::ClusterAuthorizationFailed
        )
    )
}

/// A client context that keeps the first authentication failure librdkafka reports on any of
/// the client's connections (a metadata request alone only times out when the handshake
/// fails, so the retry loop asks it why). Partition ends are expected (they drive idleness);
/// other client-level errors are warnings, reported by the callers with the topic when they
/// matter.
#[derive(Default)]
pub(crate) struct Watch {
    auth: std::sync::Mutex<Option<String>>,
}

impl Watch {
    pub(crate) fn note(&self, error: &rdkafka::error::KafkaError, reason: &str) {
        if is_auth_error(error.rdkafka_error_code()) {
            let mut a = self.auth.lock().unwrap_or_else(|e| e.into_inner());
            if a.is_none() {
                *a = Some(if reason.is_empty() {
                    error.to_string()
                } else {
                    reason.to_string()
                });
            }
        }
    }

    /// The first authentication failure seen, if any.
    pub(crate) fn auth_failure(&self) -> Option<String> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The error for a failed attempt: an authentication failure (no retry can fix it) if one
    /// was seen, else the attempt's own error (retried).
    pub(crate) fn classify<T>(
        &self,
        brokers: &str,
        attempt_error: String,
    ) -> Result<Result<T, KafkaError>, String> {
        match self.auth_failure() {
            Some(detail) => Ok(Err(KafkaError::Authentication {
                brokers: brokers.to_string(),
                detail,
            })),
            None => Err(attempt_error),
        }
    }
}

impl rdkafka::ClientContext for Watch {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.note(&error, reason);
        if !matches!(error, rdkafka::error::KafkaError::PartitionEOF(_))
            && !reason.contains("reached end of partition")
        {
            tracing::warn!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Watch {}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future (rdkafka's admin calls) to completion on this thread.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}
