//! The Kafka source: `transactions` and `behavior` into [`Batch`]es (see the module docs of
//! [`crate::kafka`] for watermarks, idle partitions and the delivery guarantee).

use super::admin::{drain_events, fetch_partitions};
use super::producer::{DeadLetters, RecordProducer};
use super::{
    client_config, is_auth_error, KafkaError, Retry, Watch, BEHAVIOR_TOPIC, TRANSACTIONS_TOPIC,
};
use crate::ingest::{Fate, Ingest, Stream, TimeConfig};
use crate::replay::RecordedTables;
use crate::source::Batch;
use hashbrown::HashMap;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use shopdiff_schemas::records::{parse_behavior, parse_transaction};
use shopdiff_schemas::time::Ms;
use shopdiff_schemas::{Reason, Rejection};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where consumption starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The first offset of each partition.
    Earliest,
    /// The end of each partition: only records produced from now on.
    Latest,
    /// The consumer group's committed offsets (the beginning where there is none), without
    /// rebuilding what came before: for a process whose view state comes from elsewhere.
    Committed,
    /// A restart: read each partition from its beginning to rebuild the views and the dedup
    /// set; the records below the committed offsets are not dead-lettered or committed again.
    Recover,
    /// The first offset whose message timestamp is at or after this time (ms since the
    /// epoch); a ListOffsets request, which some brokers answer slowly: bounded by the retry's
    /// attempt timeout.
    Timestamp(Ms),
}

/// When the source ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndAt {
    /// Never: a live source (idle partitions stop holding `as_of` back).
    Never,
    /// Once every partition has been read to its end (its end when reached; records produced
    /// later are not waited for): every input is then exhausted, as at the end of a replay.
    EndOfTopics,
}

/// How a Kafka source runs.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    pub transactions_topic: String,
    pub behavior_topic: String,
    /// The consumer group whose offsets are committed and read back.
    pub group_id: String,
    pub start: StartFrom,
    pub end: EndAt,
    /// A partition at its end and without messages for this long no longer holds `as_of` back.
    pub idle_ms: u64,
    /// Records (accepted or not) per batch at most.
    pub batch_records: usize,
    /// A batch is cut at least this often (ms), so `as_of` advances while traffic is light.
    pub batch_ms: u64,
    pub time: TimeConfig,
    /// Where rejected records go (none: they are only counted).
    pub dead_letters_topic: Option<String>,
    /// Where the host produces the `fraud_alerts` view's changes (`shopdiff run --kafka`; the
    /// source itself only checks at open that the topic exists).
    pub alerts_topic: Option<String>,
    /// librdkafka properties for every client (consumers, dead-letter and alert producers):
    /// credentials such as `security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`.
    pub options: Vec<(String, String)>,
    /// `(index, count)`: this process is member `index` of `count` and consumes partition `p`
    /// of each topic iff `p % count == index` (see [`assigned_partitions`]). `None`: every
    /// partition.
    pub member: Option<(usize, usize)>,
    /// A recorded stream directory whose tables (initial rows, changes) join the events.
    pub tables_dir: Option<PathBuf>,
    pub retry: Retry,
    /// Stop after this many messages (tests: an interrupted run).
    pub max_messages: Option<u64>,
}

impl KafkaSourceConfig {
    /// The defaults: topics `transactions` and `behavior`, group `shopdiff`, from the
    /// beginning, live, idle after 2 s, batches of 20,000 records or 200 ms, dead letters to
    /// `dead_letters`.
    pub fn new(brokers: &str) -> KafkaSourceConfig {
        KafkaSourceConfig {
            brokers: brokers.to_string(),
            transactions_topic: TRANSACTIONS_TOPIC.to_string(),
            behavior_topic: BEHAVIOR_TOPIC.to_string(),
            group_id: "shopdiff".to_string(),
            start: StartFrom::Earliest,
            end: EndAt::Never,
            idle_ms: 2000,
            batch_records: 20_000,
            batch_ms: 200,
            time: TimeConfig::default(),
            dead_letters_topic: Some(super::DEAD_LETTERS_TOPIC.to_string()),
            alerts_topic: None,
            options: Vec::new(),
            member: None,
            tables_dir: None,
            retry: Retry::default(),
            max_messages: None,
        }
    }
}

/// What a Kafka source did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaStats {
    /// Messages read (both topics).
    pub messages: u64,
    pub transactions: u64,
    pub behavior: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Messages below the committed offsets read again to rebuild state ([`StartFrom::Recover`]).
    pub recovered: u64,
    pub dead_letters: u64,
    /// Times a partition became idle / live again.
    pub idled: u64,
    pub reopened: u64,
    /// Successful offset commits (one per partition and commit).
    pub commits: u64,
    /// Consumer errors that did not stop the source (a broker restart, for instance).
    pub consume_errors: u64,
    pub table_rows: u64,
    pub changes_applied: u64,
}

/// The partitions of `ids` that member `index` of `count` consumes: `p % count == index`
/// (every partition without a membership). With as many members as partitions or fewer, each
/// partition has exactly one member and the members' shares differ by at most one partition
/// when the ids are `0..n`.
pub fn assigned_partitions(
    ids: &[i32],
    member: Option<(usize, usize)>,
) -> Result<Vec<i32>, KafkaError> {
    match member {
        None => Ok(ids.to_vec()),
        Some((index, count)) if count == 0 || index >= count => Err(KafkaError::Config(format!(
            "member {index} of {count}: the index must be below the number of members"
        ))),
        Some((index, count)) => Ok(ids
            .iter()
            .copied()
            .filter(|p| (*p as i64).rem_euclid(count as i64) == index as i64)
            .collect()),
    }
}

/// Checks the source's settings against the brokers without consuming: the membership is
/// valid, the brokers answer (retried as [`KafkaSource::open`] does) and accept the
/// credentials, and every topic the source reads or writes exists and may be described. The
/// same errors as `open`, for a caller that wants them before it starts anything else
/// (`shopdiff run --kafka` checks before it serves).
pub fn check_topics(cfg: &KafkaSourceConfig) -> Result<(), KafkaError> {
    assigned_partitions(&[], cfg.member)?;
    let consumer: BaseConsumer<Watch> = client_config(&cfg.brokers, &cfg.options)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .create_with_context(Watch::default())
        .map_err(client_err("creating a consumer", &cfg.transactions_topic))?;
    let pump = || drain_events(&consumer);
    for topic in [&cfg.transactions_topic, &cfg.behavior_topic]
        .into_iter()
        .chain(cfg.dead_letters_topic.iter())
        .chain(cfg.alerts_topic.iter())
    {
        fetch_partitions(consumer.client(), &cfg.brokers, topic, &cfg.retry, &pump)?;
    }
    Ok(())
}

struct Topic {
    name: String,
    stream: Stream,
    consumer: BaseConsumer<Watch>,
}

/// One partition: an input of the [`Ingest`].
struct Part {
    topic: usize,
    partition: i32,
    /// The offset after the last message read (-1: none read).
    next: i64,
    at_end: bool,
    last_msg: Instant,
    idle: bool,
    /// Greatest effect time of this partition's records read so far.
    max_time: u64,
    /// Messages below this offset only rebuild state.
    recover_until: i64,
    touched: bool,
    /// Per batch taken: (greatest effect time so far, next offset).
    pending: VecDeque<(u64, i64)>,
    committed: i64,
}

/// A Kafka source (see [`crate::kafka`]).
pub struct KafkaSource {
    cfg: KafkaSourceConfig,
    topics: Vec<Topic>,
    parts: Vec<Part>,
    index: HashMap<(usize, i32), usize>,
    ingest: Ingest,
    tables: Option<RecordedTables>,
    dead: Option<DeadLetters>,
    /// Dead letters queued since the last successful flush: flushed before a commit.
    dead_unflushed: bool,
    stats: KafkaStats,
    in_batch: usize,
    done: bool,
    last_error: Option<Instant>,
}

fn client_err(
    what: &'static str,
    topic: &str,
) -> impl FnOnce(rdkafka::error::KafkaError) -> KafkaError {
    let topic = topic.to_string();
    move |source| KafkaError::Client {
        what,
        topic,
        source: Box::new(source),
    }
}

impl KafkaSource {
    /// Connects (retrying with backoff while the brokers do not answer), finds the partitions
    /// of both topics, checks that the dead-letter and alert topics exist, decides the start
    /// offsets and assigns the partitions (all, or this member's share).
    pub fn open(cfg: KafkaSourceConfig) -> Result<KafkaSource, KafkaError> {
        assigned_partitions(&[], cfg.member)?;
        let mut topics = Vec::new();
        for (name, stream) in [
            (&cfg.transactions_topic, Stream::Transactions),
            (&cfg.behavior_topic, Stream::Behavior),
        ] {
            let consumer: BaseConsumer<Watch> = client_config(&cfg.brokers, &cfg.options)
                .set("group.id", &cfg.group_id)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("enable.partition.eof", "true")
                .set("auto.offset.reset", "earliest")
                .set("fetch.wait.max.ms", "100")
                .create_with_context(Watch::default())
                .map_err(client_err("creating a consumer", name))?;
            topics.push(Topic {
                name: name.clone(),
                stream,
                consumer,
            });
        }
        // before any partition is assigned: a broker busy serving the first fetches of a
        // backlog (tansu) can be slow to answer a new client's metadata request
        let dead = match &cfg.dead_letters_topic {
            Some(topic) => Some(DeadLetters::new(
                RecordProducer::connect_with(&cfg.brokers, &cfg.options, &cfg.retry)?,
                topic,
            )),
            None => None,
        };
        let now = Instant::now();
        let mut parts = Vec::new();
        let mut index = HashMap::new();
        for (ti, t) in topics.iter().enumerate() {
            let pump = || drain_events(&t.consumer);
            let all = fetch_partitions(
                t.consumer.client(),
                &cfg.brokers,
                &t.name,
                &cfg.retry,
                &pump,
            )?;
            if ti == 0 {
                // the topics we write to: a missing one would only fail at the first send
                for out in [&cfg.dead_letters_topic, &cfg.alerts_topic]
                    .into_iter()
                    .flatten()
                {
                    fetch_partitions(t.consumer.client(), &cfg.brokers, out, &cfg.retry, &pump)?;
                }
            }
            let ids = assigned_partitions(&all, cfg.member)?;
            if ids.is_empty() {
                // more members than partitions: nothing to assign here
                continue;
            }
            let starts = start_offsets(&cfg, t, &ids)?;
            let mut tpl = TopicPartitionList::new();
            for (p, (start, committed)) in ids.iter().zip(starts) {
                tpl.add_partition_offset(&t.name, *p, start)
                    .map_err(client_err("assigning partitions", &t.name))?;
                index.insert((ti, *p), parts.len());
                parts.push(Part {
                    topic: ti,
                    partition: *p,
                    next: -1,
                    at_end: false,
                    last_msg: now,
                    idle: false,
                    max_time: 0,
                    recover_until: if cfg.start == StartFrom::Recover {
                        committed
                    } else {
                        0
                    },
                    touched: false,
                    pending: VecDeque::new(),
                    committed,
                });
            }
            t.consumer
                .assign(&tpl)
                .map_err(client_err("assigning partitions", &t.name))?;
        }
        let mut ingest = Ingest::with_inputs(cfg.time, parts.len());
        if parts.is_empty() {
            // a member without partitions: its one (placeholder) input holds nothing back
            ingest.close_input(0);
        }
        let mut stats = KafkaStats::default();
        let tables = match &cfg.tables_dir {
            Some(dir) => {
                let t = RecordedTables::open(dir, &mut ingest)?;
                stats.table_rows = t.stats().table_rows;
                for w in &t.stats().warnings {
                    tracing::warn!("{w}");
                }
                Some(t)
            }
            None => None,
        };
        Ok(KafkaSource {
            cfg,
            topics,
            parts,
            index,
            ingest,
            tables,
            dead,
            dead_unflushed: false,
            stats,
            in_batch: 0,
            done: false,
            last_error: None,
        })
    }

    pub fn stats(&self) -> &KafkaStats {
        &self.stats
    }

    pub fn config(&self) -> &KafkaSourceConfig {
        &self.cfg
    }

    /// `as_of` once every input is exhausted: `ceil_tick` of the largest event time seen.
    pub fn final_as_of(&self) -> u64 {
        self.ingest.final_as_of()
    }

    /// Whether the source has ended ([`EndAt::EndOfTopics`] or `max_messages`).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether every assigned partition is idle (at its end and quiet for `idle_ms`), so none
    /// holds the watermark back (true with none assigned).
    pub fn all_idle(&self) -> bool {
        self.parts.iter().all(|p| p.idle)
    }

    /// Raises the watermark to at least `w` (it never goes back): a cluster member whose
    /// partitions are all idle follows the other members this way, so it does not hold the
    /// cluster's `as_of` back. Its records older than `w` that arrive later are late.
    pub fn raise_watermark(&mut self, w: shopdiff_schemas::time::Ms) {
        self.ingest.raise_watermark(w);
    }

    /// The frontier of the next batch (every later record takes effect at or after it).
    pub fn frontier(&self) -> u64 {
        self.ingest.frontier()
    }

    /// Whether every assigned partition has been read to its end (true with none assigned).
    pub fn all_at_end(&self) -> bool {
        self.parts.iter().all(|p| p.at_end)
    }

    /// `(topic, partition, committed offset)` of every partition (-1: none).
    pub fn committed(&self) -> Vec<(String, i32, i64)> {
        self.parts
            .iter()
            .map(|p| (self.topics[p.topic].name.clone(), p.partition, p.committed))
            .collect()
    }

    /// `(topic, partition, next offset to read)` of every partition (-1: nothing read).
    pub fn positions(&self) -> Vec<(String, i32, i64)> {
        self.parts
            .iter()
            .map(|p| (self.topics[p.topic].name.clone(), p.partition, p.next))
            .collect()
    }

    /// The next batch: after `batch_records` records, `batch_ms`, or the end. `None` once the
    /// source has ended. A batch may be empty (its frontier may still have advanced).
    pub fn next_batch(&mut self) -> Result<Option<Batch>, KafkaError> {
        if self.done {
            return Ok(None);
        }
        let started = Instant::now();
        let batch_ms = Duration::from_millis(self.cfg.batch_ms.max(1));
        let topics = std::mem::take(&mut self.topics);
        let res = self.fill(&topics, started, batch_ms);
        self.topics = topics;
        res?;
        Ok(Some(self.cut()))
    }

    fn fill(
        &mut self,
        topics: &[Topic],
        started: Instant,
        batch_ms: Duration,
    ) -> Result<(), KafkaError> {
        let mut turn = 0usize;
        loop {
            let mut got = 0;
            for (ti, t) in topics.iter().enumerate() {
                for _ in 0..1024 {
                    match t.consumer.poll(Duration::ZERO) {
                        None => break,
                        Some(r) => {
                            got += 1;
                            self.handle(ti, t, r)?;
                        }
                    }
                    if self.in_batch >= self.cfg.batch_records || self.limit_reached() {
                        break;
                    }
                }
            }
            self.check_idle();
            if self.limit_reached() {
                self.done = true;
                return Ok(());
            }
            if self.cfg.end == EndAt::EndOfTopics && self.parts.iter().all(|p| p.at_end) {
                for i in 0..self.parts.len() {
                    self.ingest.close_input(i);
                }
                self.done = true;
                return Ok(());
            }
            if self.in_batch >= self.cfg.batch_records || started.elapsed() >= batch_ms {
                return Ok(());
            }
            if got == 0 {
                // nothing waiting: block briefly on one of the consumers
                turn += 1;
                let ti = turn % topics.len().max(1);
                if let Some(t) = topics.get(ti) {
                    if let Some(r) = t.consumer.poll(Duration::from_millis(5)) {
                        self.handle(ti, t, r)?;
                    }
                }
            }
        }
    }

    fn limit_reached(&self) -> bool {
        self.cfg
            .max_messages
            .is_some_and(|m| self.stats.messages >= m)
    }

    fn check_idle(&mut self) {
        let idle = Duration::from_millis(self.cfg.idle_ms);
        for (i, p) in self.parts.iter_mut().enumerate() {
            if !p.idle && p.at_end && p.last_msg.elapsed() >= idle {
                p.idle = true;
                self.ingest.close_input(i);
                self.stats.idled += 1;
            }
        }
    }

    fn handle(
        &mut self,
        ti: usize,
        topic: &Topic,
        r: Result<BorrowedMessage<'_>, rdkafka::error::KafkaError>,
    ) -> Result<(), KafkaError> {
        let m = match r {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                if let Some(&i) = self.index.get(&(ti, p)) {
                    self.parts[i].at_end = true;
                }
                return Ok(());
            }
            Err(e @ rdkafka::error::KafkaError::MessageConsumptionFatal(_)) => {
                return Err(KafkaError::Consume {
                    topic: topic.name.clone(),
                    source: Box::new(e),
                })
            }
            Err(e) if is_auth_error(e.rdkafka_error_code()) => {
                // credentials refused (revoked while running): no retry fixes that; what was
                // committed stays committed
                return Err(KafkaError::Authentication {
                    brokers: self.cfg.brokers.clone(),
                    detail: format!("consuming {}: {e}", topic.name),
                });
            }
            Err(e) => {
                // transient (a broker restart): librdkafka reconnects and resumes on its own
                self.stats.consume_errors += 1;
                if self
                    .last_error
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
                {
                    self.last_error = Some(Instant::now());
                    tracing::warn!("consuming {}: {e} (retrying)", topic.name);
                    eprintln!("warning: consuming {}: {e} (retrying)", topic.name);
                }
                return Ok(());
            }
        };
        let Some(&pi) = self.index.get(&(ti, m.partition())) else {
            tracing::warn!(
                "message from unassigned partition {}/{}",
                topic.name,
                m.partition()
            );
            return Ok(());
        };
        let offset = m.offset();
        let recovering = {
            let p = &mut self.parts[pi];
            p.next = offset + 1;
            p.at_end = false;
            p.last_msg = Instant::now();
            p.touched = true;
            if p.idle {
                p.idle = false;
                self.ingest.reopen_input(pi);
                self.stats.reopened += 1;
            }
            offset < p.recover_until
        };
        self.stats.messages += 1;
        self.in_batch += 1;
        if recovering {
            self.stats.recovered += 1;
        }
        let payload = m.payload().unwrap_or(&[]);
        let text = std::str::from_utf8(payload);
        let time = match topic.stream {
            Stream::Transactions => {
                self.stats.transactions += 1;
                match text
                    .map_err(|_| Rejection::new(Reason::MalformedJson, ""))
                    .and_then(parse_transaction)
                {
                    Ok(l) => {
                        let ts = l.ts;
                        let fate = self.ingest.line_from(pi, l);
                        self.fate_time(fate, ts)
                    }
                    Err(rej) => Err(rej),
                }
            }
            Stream::Behavior => {
                self.stats.behavior += 1;
                match text
                    .map_err(|_| Rejection::new(Reason::MalformedJson, ""))
                    .and_then(parse_behavior)
                {
                    Ok(e) => {
                        let ts = e.ts;
                        let fate = self.ingest.event_from(pi, e);
                        self.fate_time(fate, ts)
                    }
                    Err(rej) => Err(rej),
                }
            }
        };
        let time = match time {
            Ok(t) => t,
            Err(rej) => {
                self.stats.rejected += 1;
                let source = topic.stream.source();
                let t = self.ingest.rejected(source, rej.reason, None);
                if let (Some(dead), false) = (&mut self.dead, recovering) {
                    dead.send(
                        source,
                        &rej,
                        &topic.name,
                        m.partition(),
                        offset,
                        m.key(),
                        payload,
                    )?;
                    self.dead_unflushed = true;
                    self.stats.dead_letters += 1;
                }
                t
            }
        };
        let p = &mut self.parts[pi];
        p.max_time = p.max_time.max(time);
        Ok(())
    }

    fn fate_time(&mut self, fate: Fate, ts: Ms) -> Result<u64, Rejection> {
        Ok(match fate {
            Fate::Accepted { time, late } => {
                if late {
                    self.stats.late += 1;
                }
                time
            }
            Fate::Duplicate => {
                self.stats.duplicates += 1;
                self.ingest.arrival_time(Some(ts))
            }
            // counted and dead-lettered by the caller like any rejection
            Fate::Rejected(reason) => return Err(Rejection::new(reason, "timestamp")),
        })
    }

    fn cut(&mut self) -> Batch {
        let frontier = self.ingest.frontier();
        if let Some(t) = &mut self.tables {
            t.apply_due(frontier, &mut self.ingest);
            self.stats.changes_applied = t.stats().changes_applied;
        }
        let b = self.ingest.take_batch();
        for p in &mut self.parts {
            if p.touched {
                p.touched = false;
                p.pending.push_back((p.max_time, p.next));
            }
        }
        self.in_batch = 0;
        b
    }

    /// The engine has completed every view at `as_of`: commits, per partition, the offset after
    /// the last record whose effects (and those of every earlier record of the partition) are
    /// at or before `as_of`. Dead letters queued so far are delivered first (a record is only
    /// committed once its dead letter is in the topic; on a failure nothing is committed and
    /// the next completion tries again). Returns the number of partitions committed.
    pub fn completed(&mut self, as_of: u64) -> Result<usize, KafkaError> {
        let due = self
            .parts
            .iter()
            .any(|p| p.pending.front().is_some_and(|(t, _)| *t <= as_of));
        if !due {
            return Ok(0);
        }
        if self.dead_unflushed {
            if let Some(d) = &self.dead {
                d.flush(Duration::from_secs(30))?;
            }
            self.dead_unflushed = false;
        }
        let mut n = 0;
        for ti in 0..self.topics.len() {
            let mut tpl = TopicPartitionList::new();
            let mut which = Vec::new();
            for (i, p) in self.parts.iter_mut().enumerate() {
                if p.topic != ti {
                    continue;
                }
                let mut ready = None;
                while p.pending.front().is_some_and(|(t, _)| *t <= as_of) {
                    ready = p.pending.pop_front().map(|(_, o)| o);
                }
                if let Some(o) = ready.filter(|o| *o > p.committed) {
                    let name = &self.topics[ti].name;
                    tpl.add_partition_offset(name, p.partition, Offset::Offset(o))
                        .map_err(|source| KafkaError::Commit {
                            topic: name.clone(),
                            partition: p.partition,
                            offset: o,
                            source: Box::new(source),
                        })?;
                    which.push((i, o));
                }
            }
            if which.is_empty() {
                continue;
            }
            let t = &self.topics[ti];
            if let Err(source) = t.consumer.commit(&tpl, CommitMode::Sync) {
                // put them back: the next completion retries
                for (i, o) in &which {
                    self.parts[*i].pending.push_front((0, *o));
                }
                let (i, o) = which[0];
                return Err(KafkaError::Commit {
                    topic: t.name.clone(),
                    partition: self.parts[i].partition,
                    offset: o,
                    source: Box::new(source),
                });
            }
            for (i, o) in which {
                self.parts[i].committed = o;
                n += 1;
            }
        }
        self.stats.commits += n as u64;
        Ok(n)
    }

    /// Waits for the dead letters to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        match &self.dead {
            Some(d) => d.flush(timeout),
            None => Ok(()),
        }
    }
}

/// Per partition: the offset to start at and the committed offset (-1: none).
fn start_offsets(
    cfg: &KafkaSourceConfig,
    t: &Topic,
    ids: &[i32],
) -> Result<Vec<(Offset, i64)>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for p in ids {
        tpl.add_partition(&t.name, *p);
    }
    let committed: Vec<i64> = match cfg.start {
        StartFrom::Committed | StartFrom::Recover => {
            let got = cfg
                .retry
                .run(&cfg.brokers, "committed offsets", |timeout| {
                    t.consumer
                        .committed_offsets(tpl.clone(), timeout)
                        .map(Ok)
                        .map_err(|e| e.to_string())
                })?;
            ids.iter()
                .map(
                    |p| match got.find_partition(&t.name, *p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => -1,
                    },
                )
                .collect()
        }
        _ => vec![-1; ids.len()],
    };
    let starts: Vec<Offset> = match cfg.start {
        StartFrom::Earliest | StartFrom::Recover => vec![Offset::Beginning; ids.len()],
        StartFrom::Latest => vec![Offset::End; ids.len()],
        StartFrom::Committed => committed
            .iter()
            .map(|o| {
                if *o >= 0 {
                    Offset::Offset(*o)
                } else {
                    Offset::Beginning
                }
            })
            .collect(),
        StartFrom::Timestamp(ms) => {
            let mut q = TopicPartitionList::new();
            for p in ids {
                q.add_partition_offset(&t.name, *p, Offset::Offset(ms))
                    .map_err(client_err("offsets for a time", &t.name))?;
            }
            let got = t
                .consumer
                .offsets_for_times(q, cfg.retry.attempt_timeout)
                .map_err(client_err("offsets for a time (ListOffsets)", &t.name))?;
            ids.iter()
                .map(
                    |p| match got.find_partition(&t.name, *p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) if o >= 0 => Offset::Offset(o),
                        _ => Offset::End,
                    },
                )
                .collect()
        }
    };
    Ok(starts.into_iter().zip(committed).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_without_a_membership() {
        assert_eq!(
            assigned_partitions(&[0, 1, 2, 3], None).unwrap(),
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn members_share_the_partitions_exactly_once() {
        let ids: Vec<i32> = (0..4).collect();
        assert_eq!(assigned_partitions(&ids, Some((0, 2))).unwrap(), [0, 2]);
        assert_eq!(assigned_partitions(&ids, Some((1, 2))).unwrap(), [1, 3]);
        assert_eq!(assigned_partitions(&ids, Some((0, 1))).unwrap(), ids);
        // more members than partitions: the last ones get none
        assert_eq!(assigned_partitions(&ids, Some((3, 5))).unwrap(), [3]);
        assert!(assigned_partitions(&ids, Some((4, 5))).unwrap().is_empty());
        for n in 1..=12i32 {
            let ids: Vec<i32> = (0..n).collect();
            for count in 1..=6usize {
                let mut seen = Vec::new();
                let mut shares = Vec::new();
                for index in 0..count {
                    let mine = assigned_partitions(&ids, Some((index, count))).unwrap();
                    shares.push(mine.len());
                    seen.extend(mine);
                }
                seen.sort_unstable();
                assert_eq!(seen, ids, "{n} partitions, {count} members");
                let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(hi - lo <= 1, "{n} partitions, {count} members: {shares:?}");
            }
        }
    }

    #[test]
    fn a_bad_membership_is_refused() {
        for m in [(0, 0), (2, 2), (5, 3)] {
            let e = assigned_partitions(&[0, 1], Some(m)).unwrap_err();
            assert!(matches!(e, KafkaError::Config(_)), "{e:?}");
            assert!(e.to_string().contains("member"), "{e}");
        }
    }
}
