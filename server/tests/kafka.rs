//! The Kafka source and sinks against a real Kafka-protocol broker (tansu, see
//! `scripts/kafka.sh`). Each test needs `SHOPDIFF_KAFKA` (the brokers, e.g. `127.0.0.1:9092`)
//! and prints a notice and passes when it is not set; `scripts/test.sh` starts the broker and
//! sets it. Each test uses its own topics (unique names, created with the admin API) and its
//! own consumer groups. The tests hold one lock, so the broker-restart test disturbs no other.

use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, WriteOptions};
use shopdiff_connectors::kafka::{
    alert_messages, check_topics, create_topics, delete_topics, produce_generated, read_topic,
    EndAt, KafkaError, KafkaSource, KafkaSourceConfig, RecordProducer, Retry, StartFrom,
};
use shopdiff_dataflows::config::ViewsConfig;
use shopdiff_schemas::rows::Value;
use shopdiff_server::cli::{replay_dir, run_config, EngineArgs, RunArgs};
use shopdiff_server::kafka_driver::{run_kafka, KafkaRunOptions, KafkaRunResult};
use shopdiff_server::live::{EventSource, Served};
use shopdiff_server::store::Select;
use shopdiff_server::{EngineConfig, Stores};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static LOCK: Mutex<()> = Mutex::new(());

fn brokers(test: &str) -> Option<String> {
    match std::env::var("SHOPDIFF_KAFKA") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            eprintln!(
                "notice: {test} skipped: SHOPDIFF_KAFKA is not set (scripts/kafka.sh start; export SHOPDIFF_KAFKA=127.0.0.1:9092)"
            );
            None
        }
    }
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t-{name}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// Fresh topics for one test, deleted when dropped (tansu's SQLite keeps every topic, and a
/// broker with hundreds of test topics gets slow).
struct Topics {
    brokers: String,
    tx: String,
    bh: String,
    dead: String,
}

impl Drop for Topics {
    fn drop(&mut self) {
        if let Err(e) = delete_topics(
            &self.brokers,
            &[&self.tx, &self.bh, &self.dead],
            &Retry::default(),
        ) {
            eprintln!("warning: deleting the test topics: {e}");
        }
    }
}

impl Topics {
    fn create(brokers: &str, name: &str) -> Topics {
        let t = Topics {
            brokers: brokers.to_string(),
            tx: unique(&format!("{name}-tx")),
            bh: unique(&format!("{name}-bh")),
            dead: unique(&format!("{name}-dead")),
        };
        create_topics(brokers, &[&t.tx, &t.bh, &t.dead], 4, &Retry::default())
            .expect("creating topics");
        t
    }

    fn source(&self, brokers: &str, group: &str) -> KafkaSourceConfig {
        let mut c = KafkaSourceConfig::new(brokers);
        c.transactions_topic = self.tx.clone();
        c.behavior_topic = self.bh.clone();
        c.dead_letters_topic = Some(self.dead.clone());
        c.group_id = group.to_string();
        c.end = EndAt::EndOfTopics;
        c.batch_records = 2_000;
        c
    }
}

/// A directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(name));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A workload without records delivered beyond the lateness: which records are late depends
/// on how partitions interleave, so only then are the views independent of it.
fn workload(seed: u64, records: u64) -> GenConfig {
    GenConfig {
        seed,
        users: 300,
        products: 60,
        records,
        volume: 0.01,
        anomaly_rate: 0.02,
        bad_rate: 0.02,
        duplicate_rate: 0.02,
        late_rate: 0.0,
        ..GenConfig::default()
    }
}

/// Writes the workload's recorded stream into `dir` and produces its events into the topics.
fn produce(brokers: &str, cfg: &GenConfig, dir: &Path, t: &Topics) -> u64 {
    let opts = WriteOptions {
        progress: false,
        ..WriteOptions::default()
    };
    write_recorded_stream(cfg, dir, &opts).expect("generating");
    let producer = RecordProducer::connect(brokers, &Retry::default()).expect("producer");
    let s = produce_generated(cfg, &producer, &t.tx, &t.bh, None).expect("producing");
    eprintln!(
        "produced {} records in {:?} ({:.0}/s)",
        s.records(),
        s.elapsed,
        s.records_per_sec()
    );
    s.records()
}

fn engine(workers: usize) -> EngineConfig {
    EngineConfig {
        fine_ticks: false,
        cluster: None,
        workers,
        views: ViewsConfig::default(),
    }
}

fn run(source: KafkaSourceConfig) -> KafkaRunResult {
    run_kafka(KafkaRunOptions {
        source,
        engine: engine(2),
        stop: None,
    })
    .expect("kafka run")
}

type Snapshot = BTreeMap<String, (Option<u64>, Vec<Vec<Value>>)>;

fn snapshot(stores: &Stores) -> Snapshot {
    stores
        .iter()
        .map(|v| (v.def().name.to_string(), v.snapshot()))
        .collect()
}

fn replay_snapshot(dir: &Path) -> Snapshot {
    let args = EngineArgs {
        workers: 2,
        tick_ms: 1000,
        lateness_ms: 5000,
        max_future_ms: shopdiff_connectors::ingest::DEFAULT_MAX_FUTURE_MS,
        horizon_ms: shopdiff_connectors::ingest::DEFAULT_HORIZON_MS,
        batch: 20_000,
        fraud_config: None,
    };
    let (stores, _) = replay_dir(dir, &args, None).expect("replay");
    snapshot(&stores)
}

fn assert_same(label: &str, got: &Snapshot, want: &Snapshot) {
    assert_eq!(got.len(), 10, "{label}: views");
    for (name, (as_of, rows)) in want {
        let (g_as_of, g_rows) = &got[name];
        assert_eq!(g_as_of, as_of, "{label}: {name} as_of");
        if g_rows != rows {
            let w: BTreeSet<String> = rows.iter().map(|r| format!("{r:?}")).collect();
            let g: BTreeSet<String> = g_rows.iter().map(|r| format!("{r:?}")).collect();
            let missing: Vec<_> = w.difference(&g).take(5).collect();
            let extra: Vec<_> = g.difference(&w).take(5).collect();
            panic!(
                "{label}: {name} differs ({} vs {} rows); missing {missing:?}; extra {extra:?}",
                g_rows.len(),
                rows.len()
            );
        }
    }
}

fn quality(s: &Snapshot) -> BTreeMap<(String, String), i64> {
    s["data_quality"]
        .1
        .iter()
        .map(|r| {
            let text = |i: usize| match &r[i] {
                Value::Str(s) => s.to_string(),
                v => format!("{v:?}"),
            };
            let n = match &r[2] {
                Value::Int(n) => *n,
                v => panic!("records is {v:?}"),
            };
            ((text(0), text(1)), n)
        })
        .collect()
}

fn total_committed(r: &KafkaRunResult) -> i64 {
    r.committed.iter().map(|c| c.2.max(0)).sum()
}

#[test]
fn generated_stream_in_four_partitions_equals_its_replay() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(brokers) = brokers("generated_stream_in_four_partitions_equals_its_replay") else {
        return;
    };
    let t = Topics::create(&brokers, "equal");
    let dir = TempDir::new("kafka-equal");
    let cfg = workload(7, 12_000);
    let produced = produce(&brokers, &cfg, &dir.0, &t);
    let mut src = t.source(&brokers, &unique("g"));
    src.tables_dir = Some(dir.0.clone());
    let started = Instant::now();
    let r = run(src);
    eprintln!("consumed {:?} in {:?}", r.stats, started.elapsed());
    assert_eq!(r.stats.messages, produced);
    assert!(
        r.stats.rejected > 0 && r.stats.duplicates > 0,
        "{:?}",
        r.stats
    );
    assert_eq!(r.stats.late, 0);
    assert_eq!(r.stats.dead_letters, r.stats.rejected);
    // the records were spread over the partitions, and every offset is committed at the end
    let per_partition: Vec<i64> = r.committed.iter().map(|c| c.2).collect();
    assert_eq!(per_partition.len(), 8);
    assert!(per_partition.iter().all(|o| *o > 0), "{per_partition:?}");
    assert_eq!(total_committed(&r), produced as i64);
    let got = snapshot(&r.stores);
    let want = replay_snapshot(&dir.0);
    assert!(want["rfm"].1.len() > 50 && !want["fraud_alerts"].1.is_empty());
    assert_same("kafka vs replay", &got, &want);
    let q = quality(&got);
    assert_eq!(
        q[&("transactions".into(), "duplicate".into())]
            + q[&("behavior".into(), "duplicate".into())],
        r.stats.duplicates as i64
    );
}

#[test]
fn malformed_messages_are_dead_lettered_and_counted() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(brokers) = brokers("malformed_messages_are_dead_lettered_and_counted") else {
        return;
    };
    let t = Topics::create(&brokers, "bad");
    let p = RecordProducer::connect(&brokers, &Retry::default()).expect("producer");
    let good = r#"{"transaction_id":"T1","product_id":"P1","user_id":"U1","timestamp":"2024-07-01T10:00:00Z","price":10.5,"quantity":2,"currency":"USD"}"#;
    let bad: [(&str, &[u8], &str); 5] = [
        (&t.tx, b"{not json", "malformed_json"),
        (
            &t.tx,
            br#"{"transaction_id":"T2","product_id":"P1","user_id":"U1","timestamp":"2024-07-01T10:00:01Z","price":10.5,"quantity":2}"#,
            "missing_field",
        ),
        (
            &t.tx,
            br#"{"transaction_id":"T3","product_id":"P1","user_id":"U1","timestamp":"2024-07-01T10:00:01Z","price":10.5,"quantity":2,"currency":"usd"}"#,
            "bad_value",
        ),
        (&t.bh, b"\xff\xfe not utf-8", "malformed_json"),
        (
            &t.bh,
            br#"{"event_id":"E1","user_id":"U1","timestamp":"yesterday","event_type":"page_view"}"#,
            "bad_timestamp",
        ),
    ];
    p.send(&t.tx, Some(b"U1"), good.as_bytes(), None)
        .expect("send");
    for (topic, payload, _) in &bad {
        p.send(topic, Some(b"U1"), payload, None).expect("send");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    let r = run(t.source(&brokers, &unique("g")));
    assert_eq!(r.stats.messages, 6);
    assert_eq!(r.stats.rejected, 5);
    assert_eq!(r.stats.dead_letters, 5);
    let q = quality(&snapshot(&r.stores));
    let want: BTreeMap<(String, String), i64> = [
        (("transactions", "accepted"), 1),
        (("transactions", "malformed_json"), 1),
        (("transactions", "missing_field"), 1),
        (("transactions", "bad_value"), 1),
        (("behavior", "malformed_json"), 1),
        (("behavior", "bad_timestamp"), 1),
    ]
    .into_iter()
    .map(|((s, r), n)| ((s.to_string(), r.to_string()), n))
    .collect();
    // unknown_customer / unknown_product rows for the accepted line (no tables) aside
    let got: BTreeMap<_, _> = q
        .into_iter()
        .filter(|((_, r), _)| !r.starts_with("unknown_"))
        .collect();
    assert_eq!(got, want);
    let dead = read_topic(&brokers, &t.dead, Duration::from_secs(20)).expect("reading");
    assert_eq!(dead.len(), 5, "{dead:?}");
    let mut reasons: Vec<(String, String)> = dead
        .iter()
        .map(|m| {
            (
                m.header("source").unwrap_or("-").to_string(),
                m.header("reason").unwrap_or("-").to_string(),
            )
        })
        .collect();
    reasons.sort();
    let mut want_reasons: Vec<(String, String)> = bad
        .iter()
        .map(|(topic, _, reason)| {
            let source = if *topic == t.tx {
                "transactions"
            } else {
                "behavior"
            };
            (source.to_string(), reason.to_string())
        })
        .collect();
    want_reasons.sort();
    assert_eq!(reasons, want_reasons);
    for m in &dead {
        let pos = m.header("position").expect("position header");
        let parts: Vec<&str> = pos.rsplitn(3, '/').collect();
        assert_eq!(parts.len(), 3, "{pos}");
        assert!(parts[2] == t.tx || parts[2] == t.bh, "{pos}");
        let original = bad
            .iter()
            .find(|(_, p, _)| *p == m.payload.as_deref().unwrap_or_default())
            .expect("the original payload");
        assert_eq!(m.header("reason"), Some(original.2));
        assert_eq!(m.key.as_deref(), Some(&b"U1"[..]));
    }
    assert_eq!(
        dead.iter()
            .filter(|m| m.header("field") == Some("currency"))
            .count(),
        2,
        "missing and bad currency name the field"
    );
}

#[test]
fn a_burst_of_future_records_on_one_partition_changes_nothing_but_their_count() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(brokers) =
        brokers("a_burst_of_future_records_on_one_partition_changes_nothing_but_their_count")
    else {
        return;
    };
    let t = Topics::create(&brokers, "future");
    let p = RecordProducer::connect(&brokers, &Retry::default()).expect("producer");
    // at the head of one partition (one key): 30 lines and an event dated 9999
    for i in 0..30 {
        let line = format!(
            r#"{{"transaction_id":"POISON{i}","product_id":"P00001","user_id":"U000001","timestamp":"9999-12-31T23:59:59Z","price":1.00,"quantity":1,"currency":"USD"}}"#
        );
        p.send(&t.tx, Some(b"poison"), line.as_bytes(), None)
            .expect("send");
    }
    let ev = r#"{"event_id":"POISON","user_id":"U000001","session_id":"S1","timestamp":"9999-12-31T23:59:59Z","event_type":"page_view"}"#;
    p.send(&t.bh, Some(b"poison"), ev.as_bytes(), None)
        .expect("send");
    p.flush(Duration::from_secs(30)).expect("flush");
    let dir = TempDir::new("kafka-future");
    let cfg = workload(19, 8_000);
    let produced = produce(&brokers, &cfg, &dir.0, &t);
    let mut src = t.source(&brokers, &unique("g"));
    src.tables_dir = Some(dir.0.clone());
    let r = run(src);
    assert_eq!(r.stats.messages, produced + 31);
    let mut got = snapshot(&r.stores);
    let want = replay_snapshot(&dir.0);
    let mut q = quality(&got);
    assert_eq!(
        q.remove(&("transactions".into(), "future".into())),
        Some(30)
    );
    assert_eq!(q.remove(&("behavior".into(), "future".into())), Some(1));
    assert_eq!(q, quality(&want));
    got.remove("data_quality");
    let mut want = want;
    want.remove("data_quality");
    // as_of and every other view as the replay of the clean stream
    for (name, (as_of, rows)) in &want {
        assert_eq!(&got[name].0, as_of, "{name} as_of");
        assert_eq!(&got[name].1, rows, "{name}");
    }
    let dead = read_topic(&brokers, &t.dead, Duration::from_secs(20)).expect("reading");
    assert_eq!(
        dead.iter()
            .filter(|m| m.header("reason") == Some("future"))
            .count(),
        31
    );
}

#[test]
fn broker_down_at_start_is_reported_after_retries() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // a closed port: nothing listens on port 1
    let mut c = KafkaSourceConfig::new("127.0.0.1:1");
    c.retry = Retry {
        attempts: 3,
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
        attempt_timeout: Duration::from_millis(500),
    };
    let started = Instant::now();
    let err = match KafkaSource::open(c) {
        Ok(_) => panic!("a source on a closed port"),
        Err(e) => e,
    };
    let waited = started.elapsed();
    let msg = err.to_string();
    eprintln!("{msg} after {waited:?}");
    assert!(
        matches!(err, KafkaError::Unreachable { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(msg.contains("127.0.0.1:1") && msg.contains("scripts/kafka.sh start"));
    // two backoffs (100 ms, 200 ms) between the three attempts
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

#[test]
fn restart_from_committed_offsets_equals_an_uninterrupted_run() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(brokers) = brokers("restart_from_committed_offsets_equals_an_uninterrupted_run")
    else {
        return;
    };
    let t = Topics::create(&brokers, "restart");
    let dir = TempDir::new("kafka-restart");
    let cfg = workload(11, 16_000);
    let produced = produce(&brokers, &cfg, &dir.0, &t);
    let with_tables = |mut c: KafkaSourceConfig| {
        c.tables_dir = Some(dir.0.clone());
        c.batch_records = 500;
        c
    };
    // the uninterrupted run (its own group and dead-letter topic)
    let mut whole = with_tables(t.source(&brokers, &unique("whole")));
    whole.dead_letters_topic = None;
    let a = run(whole);
    assert_eq!(a.stats.messages, produced);

    // an interrupted run: it stops after 85% of the messages; what is complete is committed.
    // (tansu hands out partitions nearly one after another, and as_of waits for the slowest
    // partition, so an early stop would find no complete as_of at all.)
    let group = unique("restart");
    let stop_at = produced * 85 / 100;
    let mut first = with_tables(t.source(&brokers, &group));
    first.max_messages = Some(stop_at);
    first.end = EndAt::Never;
    let b1 = run(first);
    let c1 = total_committed(&b1);
    eprintln!(
        "first run: {:?}, as_of {:?}, committed {:?}, positions {:?}",
        b1.stats, b1.as_of, b1.committed, b1.positions
    );
    assert_eq!(b1.stats.messages, stop_at);
    assert!(
        c1 > 0 && c1 < stop_at as i64,
        "committed {c1} of {stop_at} read"
    );

    // resuming at the committed offsets reads exactly the rest
    let mut resume = with_tables(t.source(&brokers, &group));
    resume.start = StartFrom::Committed;
    let bc = run(resume);
    assert_eq!(bc.stats.messages as i64, produced as i64 - c1);
    assert_eq!(total_committed(&bc), produced as i64);

    // a restart rebuilds from the beginning: no loss, no double count
    let mut restart = with_tables(t.source(&brokers, &group));
    restart.start = StartFrom::Recover;
    let b2 = run(restart);
    assert_eq!(b2.stats.messages, produced);
    assert_eq!(b2.stats.recovered, produced, "everything was committed");
    assert_eq!(
        b2.stats.dead_letters, 0,
        "no dead letter twice below the commits"
    );
    assert_same(
        "restarted vs uninterrupted",
        &snapshot(&b2.stores),
        &snapshot(&a.stores),
    );
    assert_same(
        "uninterrupted vs replay",
        &snapshot(&a.stores),
        &replay_snapshot(&dir.0),
    );
    // every rejected record has a dead letter; those below the first commit exactly one
    let dead = read_topic(&brokers, &t.dead, Duration::from_secs(30)).expect("reading");
    let positions: BTreeSet<&str> = dead.iter().filter_map(|m| m.header("position")).collect();
    assert_eq!(positions.len() as u64, a.stats.rejected);
    assert_eq!(
        dead.len() as u64,
        b1.stats.dead_letters + bc.stats.dead_letters
    );
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh")
}

#[test]
fn broker_restarted_mid_stream() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(brokers) = brokers("broker_restarted_mid_stream") else {
        return;
    };
    if std::env::var("SHOPDIFF_KAFKA_RESTART").ok().as_deref() != Some("1") {
        eprintln!("notice: broker_restarted_mid_stream skipped: set SHOPDIFF_KAFKA_RESTART=1 when the broker is the one of scripts/kafka.sh (scripts/test.sh does)");
        return;
    }
    let t = Topics::create(&brokers, "bounce");
    let dir = TempDir::new("kafka-bounce");
    let cfg = workload(13, 16_000);
    let produced = produce(&brokers, &cfg, &dir.0, &t);
    let mut src = t.source(&brokers, &unique("bounce"));
    src.tables_dir = Some(dir.0.clone());
    src.batch_records = 200;
    src.batch_ms = 20;
    // the broker goes away for a second while the run reads
    let bouncer = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        let stop = std::process::Command::new("bash")
            .arg(script())
            .arg("stop")
            .status();
        std::thread::sleep(Duration::from_secs(1));
        let start = std::process::Command::new("bash")
            .arg(script())
            .arg("start")
            .status();
        (stop.map(|s| s.success()), start.map(|s| s.success()))
    });
    let r = run(src);
    let (stop, start) = bouncer.join().expect("bouncer");
    assert!(matches!(stop, Ok(true)) && matches!(start, Ok(true)));
    eprintln!("bounced run: {:?} {:?}", r.stats, r.warnings);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.stats.messages, produced);
    assert_eq!(total_committed(&r), produced as i64);
    // every rejected record has its dead letter (failed sends were sent again)
    let dead = read_topic(&brokers, &t.dead, Duration::from_secs(30)).expect("reading");
    let positions: BTreeSet<&str> = dead.iter().filter_map(|m| m.header("position")).collect();
    assert_eq!(positions.len() as u64, r.stats.rejected);
    assert_same(
        "bounced vs replay",
        &snapshot(&r.stores),
        &replay_snapshot(&dir.0),
    );
}

// ---- shopdiff run --kafka (live::Served), idle partitions, start positions, bad settings ----

/// Fresh topics for a served run: the event topics, dead letters and fraud alerts.
struct RunTopics {
    t: Topics,
    alerts: String,
}

impl Drop for RunTopics {
    fn drop(&mut self) {
        let _ = delete_topics(&self.t.brokers, &[&self.alerts], &Retry::default());
    }
}

impl RunTopics {
    fn create(brokers: &str, name: &str) -> RunTopics {
        let t = Topics::create(brokers, name);
        let alerts = unique(&format!("{name}-alerts"));
        create_topics(brokers, &[&alerts], 4, &Retry::default()).expect("creating topics");
        RunTopics { t, alerts }
    }

    /// `shopdiff run --kafka BROKERS --tables DIR ...` as flags.
    fn args(&self, brokers: &str, group: &str, tables: &Path) -> RunArgs {
        RunArgs {
            kafka: Some(brokers.to_string()),
            tables: Some(tables.to_path_buf()),
            kafka_group: Some(group.to_string()),
            kafka_idle_ms: Some(300),
            transactions_topic: Some(self.t.tx.clone()),
            behavior_topic: Some(self.t.bh.clone()),
            dead_letters_topic: Some(self.t.dead.clone()),
            alerts_topic: Some(self.alerts.clone()),
            http: Some("127.0.0.1:0".into()),
            workers: Some(2),
            batch: Some(2_000),
            // every as_of of the run stays readable (the alert check reads them back)
            history_ms: Some(10 * 365 * 86_400_000),
            ..RunArgs::default()
        }
    }
}

/// Waits until `f` holds (polling every 50 ms) or panics after `secs`.
fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A GET over HTTP/1.0: status and body.
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status: u16 = buf[9..12].parse().unwrap();
    let body = buf.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("").into();
    (status, body)
}

/// The committed offsets of `group` on the source's topics, summed.
fn committed_sum(mut cfg: KafkaSourceConfig) -> i64 {
    cfg.start = StartFrom::Committed;
    cfg.dead_letters_topic = None;
    cfg.tables_dir = None;
    let s = KafkaSource::open(cfg).expect("opening a source to read the commits");
    s.committed().iter().map(|c| c.2.max(0)).sum()
}

fn text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        v => format!("{v:?}"),
    }
}

#[test]
fn shopdiff_run_kafka_serves_the_replay_with_dead_letters_and_alerts() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(brokers) =
        brokers("shopdiff_run_kafka_serves_the_replay_with_dead_letters_and_alerts")
    else {
        return;
    };
    let rt = RunTopics::create(&brokers, "run");
    let dir = TempDir::new("kafka-run");
    let gen = GenConfig {
        anomaly_rate: 0.05,
        ..workload(17, 10_000)
    };
    let produced = produce(&brokers, &gen, &dir.0, &rt.t);
    let group = unique("run");
    let cfg = run_config(&rt.args(&brokers, &group, &dir.0)).expect("run config");
    let EventSource::Kafka(k) = &cfg.source else {
        panic!("not a Kafka source: {:?}", cfg.source)
    };
    let source_cfg = (**k).clone();
    assert_eq!(source_cfg.start, StartFrom::Recover);
    let args = EngineArgs {
        workers: 2,
        tick_ms: 1000,
        lateness_ms: 5000,
        max_future_ms: shopdiff_connectors::ingest::DEFAULT_MAX_FUTURE_MS,
        horizon_ms: shopdiff_connectors::ingest::DEFAULT_HORIZON_MS,
        batch: 20_000,
        fraud_config: None,
    };
    let (replayed, replay_stats) = replay_dir(&dir.0, &args, None).expect("replay");
    let want = snapshot(&replayed);
    let final_as_of = want["rfm"].0.expect("replay as_of");

    let started = Instant::now();
    let served = Served::start(&cfg).expect("shopdiff run --kafka");
    let stores = served.job.engine.stores().clone();
    // live: complete once every partition is read and idle (300 ms)
    wait_for("the run's as_of to reach the replay's", 120, || {
        stores.as_of() == Some(final_as_of)
    });
    eprintln!("run --kafka complete in {:?}", started.elapsed());
    assert_same("run --kafka vs replay", &snapshot(&stores), &want);
    // the HTTP API serves the same answer
    let (status, body) = http_get(served.addr, "/v1/views/rfm_segments");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["as_of"], final_as_of);
    assert_eq!(
        v["rows"].as_array().map(Vec::len),
        Some(want["rfm_segments"].1.len())
    );
    // the offsets of everything read are committed once complete
    wait_for("every offset to be committed", 30, || {
        committed_sum(source_cfg.clone()) == produced as i64
    });
    // then, live, one record two hours later: the windowed alerts (velocity, amount, geo) of
    // the stream clear as as_of passes it (however the backlog was batched, the run has at
    // least one as_of that raises and one that clears)
    let later = final_as_of + 2 * 3_600_000;
    let late_line = format!(
        r#"{{"transaction_id":"T-later","product_id":"P-later","user_id":"U-later","timestamp":"{}","price":1.0,"quantity":1,"currency":"USD"}}"#,
        shopdiff_schemas::time::format_rfc3339(later as i64)
    );
    let p = RecordProducer::connect(&brokers, &Retry::default()).expect("producer");
    p.send_record(&rt.t.tx, &late_line).expect("send");
    p.flush(Duration::from_secs(30)).expect("flush");
    wait_for("as_of to reach the later record", 60, || {
        stores.as_of() == Some(later)
    });
    let alert_rows = stores.get("fraud_alerts").expect("fraud_alerts").clone();
    let final_alerts = alert_rows
        .select(&Select::default(), later, later)
        .expect("final rows")
        .rows;
    served.stop().expect("stopping the run");

    // item: every rejected record has its dead letter, with reason and position
    let dead = read_topic(&brokers, &rt.t.dead, Duration::from_secs(30)).expect("reading");
    let positions: BTreeSet<&str> = dead.iter().filter_map(|m| m.header("position")).collect();
    assert!(replay_stats.rejected > 0);
    assert_eq!(
        dead.len() as u64,
        replay_stats.rejected,
        "one dead letter each"
    );
    assert_eq!(positions.len() as u64, replay_stats.rejected);
    assert!(dead.iter().all(|m| m.header("reason").is_some()
        && matches!(m.header("source"), Some("transactions" | "behavior"))));

    // item: the alerts topic holds exactly the view's changes, at the as_of of each change
    let msgs = read_topic(&brokers, &rt.alerts, Duration::from_secs(30)).expect("reading");
    let mut by_as_of: BTreeMap<u64, BTreeSet<(String, String)>> = BTreeMap::new();
    for m in &msgs {
        let p: serde_json::Value = serde_json::from_str(m.payload_str()).expect("alert json");
        let key = String::from_utf8(m.key.clone().unwrap_or_default()).unwrap();
        assert_eq!(
            key,
            format!(
                "{}|{}",
                p["rule"].as_str().unwrap(),
                p["key"].as_str().unwrap()
            )
        );
        by_as_of
            .entry(p["as_of"].as_u64().expect("as_of"))
            .or_default()
            .insert((key, p.to_string()));
    }
    let raised = msgs
        .iter()
        .filter(|m| m.payload_str().contains(r#""event":"raise""#));
    let cleared = msgs
        .iter()
        .filter(|m| m.payload_str().contains(r#""event":"clear""#));
    let (raised, cleared) = (raised.count(), cleared.count());
    eprintln!(
        "{} alert messages ({raised} raise, {cleared} clear) at {} as_ofs",
        msgs.len(),
        by_as_of.len()
    );
    assert!(
        raised > 0 && cleared > 0,
        "raises {raised}, clears {cleared}"
    );
    assert_eq!(raised + cleared, msgs.len());
    // between two as_ofs with messages the view did not change (each change gives at least
    // one message), so the messages at each as_of are exactly the view's rows there minus
    // its rows at the previous one
    let rows_at = |t: u64| -> Vec<(Vec<Value>, isize)> {
        alert_rows
            .select(&Select::default(), t, later)
            .expect("as_of in the history")
            .rows
            .into_iter()
            .map(|r| (r, 1))
            .collect()
    };
    let mut previous: Vec<(Vec<Value>, isize)> = Vec::new();
    for (as_of, got) in &by_as_of {
        let now = rows_at(*as_of);
        let mut changes: Vec<(Vec<Value>, isize)> = previous
            .iter()
            .filter(|r| !now.contains(r))
            .map(|(r, _)| (r.clone(), -1))
            .collect();
        changes.extend(now.iter().filter(|r| !previous.contains(r)).cloned());
        let want: BTreeSet<(String, String)> = alert_messages(*as_of, &changes)
            .into_iter()
            .map(|m| {
                let p: serde_json::Value = serde_json::from_str(&m.payload).unwrap();
                (m.key, p.to_string())
            })
            .collect();
        assert_eq!(got, &want, "alert messages at as_of {as_of}");
        previous = now;
    }
    // and what is still raised at the end is the view's final contents (the alerts without a
    // window, risky_ip)
    let open: BTreeSet<String> = {
        let mut last: BTreeMap<String, bool> = BTreeMap::new();
        for set in by_as_of.values() {
            for (key, p) in set {
                last.insert(key.clone(), p.contains(r#""event":"raise""#));
            }
        }
        last.into_iter()
            .filter(|(_, r)| *r)
            .map(|(k, _)| k)
            .collect()
    };
    let want_open: BTreeSet<String> = final_alerts
        .iter()
        .map(|r| format!("{}|{}", text(&r[0]), text(&r[1])))
        .collect();
    assert_eq!(open, want_open);
}

/// A transaction line at `base + i` seconds.
fn line_at(i: u64, base: i64) -> String {
    let ts = shopdiff_schemas::time::format_rfc3339(base + i as i64 * 1000);
    format!(
        r#"{{"transaction_id":"T{i}","product_id":"P1","user_id":"U{}","timestamp":"{ts}","price":10.5,"quantity":1,"currency":"USD"}}"#,
        i % 7
    )
}

#[test]
fn a_quiet_partition_does_not_stall_as_of() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(brokers) = brokers("a_quiet_partition_does_not_stall_as_of") else {
        return;
    };
    let t = Topics::create(&brokers, "idle");
    let base: i64 = 1_719_828_000_000; // 2024-07-01T10:00:00Z
    let (total, quiet_after) = (150u64, 8u64);
    let (tick, lateness) = (1000u64, 5000u64);
    // transactions, one per 20 ms of wall time and one second of event time apart: records
    // 0..8 go round all four partitions, then only to 0, 1 and 2, so partition 3 stops
    // receiving after record 7 (event time base + 7 s); every behavior partition stays empty
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let producer = {
        let (brokers, topic, sent) = (brokers.clone(), t.tx.clone(), sent.clone());
        std::thread::spawn(move || {
            let p = RecordProducer::connect(&brokers, &Retry::default()).expect("producer");
            for i in 0..total {
                let part = if i < quiet_after { i % 4 } else { i % 3 } as i32;
                p.send_to(&topic, Some(part), None, line_at(i, base).as_bytes(), None)
                    .expect("send");
                sent.store(i + 1, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
            p.flush(Duration::from_secs(30)).expect("flush");
        })
    };
    let mut cfg = t.source(&brokers, &unique("idle"));
    cfg.end = EndAt::Never;
    cfg.idle_ms = 1000;
    cfg.batch_ms = 50;
    let mut source = KafkaSource::open(cfg).expect("source");
    let eng = shopdiff_server::Engine::start(&engine(2)).expect("engine");
    let quiet_last = base as u64 + (quiet_after - 1) * 1000;
    // as_of while records still arrive: (as_of, largest event time fed)
    let mut mid_run: Vec<(u64, u64)> = Vec::new();
    let mut max_fed = 0u64;
    let t0 = Instant::now();
    loop {
        let b = source.next_batch().expect("batch").expect("a live source");
        for (l, _) in &b.lines {
            max_fed = max_fed.max(l.ts as u64);
        }
        assert!(eng.feed(b));
        let n = sent.load(std::sync::atomic::Ordering::SeqCst);
        let as_of = eng.stores().as_of();
        if n < total {
            if let Some(a) = as_of {
                mid_run.push((a, max_fed));
            }
        } else if as_of == Some(base as u64 + (total - 1) * 1000) {
            break; // all read and every partition idle: everything is complete
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no final as_of");
    }
    producer.join().expect("producer");
    eprintln!("stats {:?}", source.stats());
    // held back by partition 3, the watermark could not pass base + 7 s - lateness. While
    // the other partitions were still live (as_of held at their watermark, below the largest
    // event time fed minus the lateness), as_of passed partition 3's last record by far: the
    // quiet partition was released, and the live ones were not.
    let partial: Vec<&(u64, u64)> = mid_run
        .iter()
        .filter(|(a, max)| *a >= quiet_last + 10 * tick && *a + lateness <= *max + tick)
        .collect();
    eprintln!(
        "{} of {} mid-run as_ofs past the quiet partition with the others live; last {:?}",
        partial.len(),
        mid_run.len(),
        mid_run
            .last()
            .map(|(a, m)| ((a - base as u64) / 1000, (m - base as u64) / 1000))
    );
    assert!(
        !partial.is_empty(),
        "as_of never passed the quiet partition while the others were live: {mid_run:?}"
    );
    assert!(
        source.stats().idled >= 5,
        "partition 3 and the four behavior partitions idled: {:?}",
        source.stats()
    );
    assert_eq!(source.stats().messages, total);
    assert_eq!(source.stats().late, 0, "released, not skipped past");
    let stores = eng.finish().expect("finish");
    let q = quality(&snapshot(&stores));
    assert_eq!(q[&("transactions".into(), "accepted".into())], total as i64);
}

#[test]
fn start_at_a_time_or_at_the_end() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(brokers) = brokers("start_at_a_time_or_at_the_end") else {
        return;
    };
    let t = Topics::create(&brokers, "start");
    let base: i64 = 1_719_828_000_000;
    let p = RecordProducer::connect(&brokers, &Retry::default()).expect("producer");
    let send = |from: u64, n: u64| {
        for i in from..from + n {
            p.send_record(&t.tx, &line_at(i, base)).expect("send");
        }
        p.flush(Duration::from_secs(30)).expect("flush");
    };
    let ids = |b: &shopdiff_connectors::Batch| -> Vec<u64> {
        b.lines
            .iter()
            .map(|(l, _)| l.transaction_id[1..].parse().unwrap())
            .collect()
    };
    send(0, 20);
    std::thread::sleep(Duration::from_millis(1100));
    let at = shopdiff_server::live::wall_ms();
    std::thread::sleep(Duration::from_millis(100));
    send(100, 15);

    // a timestamp: the messages produced from then on
    let mut c = t.source(&brokers, &unique("time"));
    c.start = StartFrom::Timestamp(at);
    let mut s = KafkaSource::open(c).expect("source from a time");
    let mut got = Vec::new();
    while let Some(b) = s.next_batch().expect("batch") {
        got.extend(ids(&b));
    }
    got.sort_unstable();
    assert_eq!(got, (100..115).collect::<Vec<_>>());

    // latest: only what is produced after the source reached the ends
    let mut c = t.source(&brokers, &unique("latest"));
    c.start = StartFrom::Latest;
    c.end = EndAt::Never;
    c.max_messages = Some(10);
    let mut s = KafkaSource::open(c).expect("source from the end");
    let t0 = Instant::now();
    let mut got = Vec::new();
    while !s.all_at_end() {
        got.extend(ids(&s.next_batch().expect("batch").expect("live")));
        assert!(t0.elapsed() < Duration::from_secs(20), "ends not reached");
    }
    send(200, 10);
    while let Some(b) = s.next_batch().expect("batch") {
        got.extend(ids(&b));
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "new records not read"
        );
    }
    got.sort_unstable();
    assert_eq!(got, (200..210).collect::<Vec<_>>());
}

#[test]
fn missing_topics_and_refused_credentials_are_named() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(brokers) = brokers("missing_topics_and_refused_credentials_are_named") else {
        return;
    };
    let t = Topics::create(&brokers, "names");
    let quick = Retry {
        attempts: 3,
        initial: Duration::from_millis(100),
        max: Duration::from_millis(200),
        attempt_timeout: Duration::from_secs(2),
    };
    let open_err = |c: KafkaSourceConfig| match KafkaSource::open(c) {
        Ok(_) => panic!("opened"),
        Err(e) => e,
    };
    // an event topic that does not exist (check_topics: what `shopdiff run --kafka` checks
    // before it serves)
    let mut c = t.source(&brokers, &unique("g"));
    c.retry = quick;
    check_topics(&c).expect("the test's topics exist");
    c.behavior_topic = unique("no-such-behavior");
    for e in [open_err(c.clone()), check_topics(&c).unwrap_err()] {
        assert!(
            matches!(&e, KafkaError::MissingTopic { topic, .. } if topic.starts_with("t-no-such")),
            "{e:?}"
        );
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
    // a topic the source writes to: refused at open, not after the first send's timeout
    for missing in ["dead", "alerts"] {
        let mut c = t.source(&brokers, &unique("g"));
        c.retry = quick;
        let name = unique(&format!("no-such-{missing}"));
        if missing == "dead" {
            c.dead_letters_topic = Some(name.clone());
        } else {
            c.alerts_topic = Some(name.clone());
        }
        let started = Instant::now();
        let e = open_err(c);
        assert!(
            matches!(&e, KafkaError::MissingTopic { topic, .. } if *topic == name),
            "{e:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // credentials the broker refuses (this broker has no SASL): an authentication error as
    // soon as librdkafka reports the failed handshake (tansu: after about 6 s), not the end
    // of the retries of an unreachable broker
    let mut c = t.source(&brokers, &unique("g"));
    c.retry = Retry {
        attempts: 10,
        ..quick
    };
    c.options = ["security.protocol=SASL_PLAINTEXT", "sasl.mechanism=PLAIN"]
        .iter()
        .chain(&["sasl.username=shopdiff", "sasl.password=wrong"])
        .map(|o| shopdiff_connectors::kafka::parse_option(o).unwrap())
        .collect();
    let started = Instant::now();
    let e = open_err(c);
    eprintln!("{e} after {:?}", started.elapsed());
    assert!(matches!(e, KafkaError::Authentication { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(18),
        "{:?}",
        started.elapsed()
    );
    assert!(e.to_string().contains("authentication"), "{e}");
}

#[test]
fn run_config_file_is_the_twin_of_the_kafka_flags() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("kafka-config");
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("run.toml");
    std::fs::write(
        &file,
        r#"
kafka = "127.0.0.1:9092,127.0.0.1:9093"
tables = "/data/stream"
kafka_from = "committed"
kafka_group = "analytics"
kafka_idle_ms = 750
kafka_options = ["security.protocol=SASL_PLAINTEXT", "sasl.mechanism=PLAIN"]
transactions_topic = "tx"
behavior_topic = "bh"
dead_letters_topic = "dl"
alerts_topic = "alerts"
batch = 5000
workers = 3
http = "127.0.0.1:0"
"#,
    )
    .unwrap();
    let from_file = run_config(&RunArgs {
        config: Some(file.clone()),
        ..RunArgs::default()
    })
    .expect("config file");
    let from_flags = run_config(&RunArgs {
        kafka: Some("127.0.0.1:9092,127.0.0.1:9093".into()),
        tables: Some("/data/stream".into()),
        kafka_from: Some("committed".into()),
        kafka_group: Some("analytics".into()),
        kafka_idle_ms: Some(750),
        kafka_options: vec![
            "security.protocol=SASL_PLAINTEXT".into(),
            "sasl.mechanism=PLAIN".into(),
        ],
        transactions_topic: Some("tx".into()),
        behavior_topic: Some("bh".into()),
        dead_letters_topic: Some("dl".into()),
        alerts_topic: Some("alerts".into()),
        batch: Some(5000),
        workers: Some(3),
        http: Some("127.0.0.1:0".into()),
        ..RunArgs::default()
    })
    .expect("flags");
    assert_eq!(format!("{from_file:?}"), format!("{from_flags:?}"));
    let EventSource::Kafka(k) = &from_file.source else {
        panic!("{:?}", from_file.source)
    };
    assert_eq!(k.brokers, "127.0.0.1:9092,127.0.0.1:9093");
    assert_eq!(k.tables_dir.as_deref(), Some(Path::new("/data/stream")));
    assert_eq!(k.start, StartFrom::Committed);
    assert_eq!(k.group_id, "analytics");
    assert_eq!(k.idle_ms, 750);
    assert_eq!(k.batch_records, 5000);
    assert_eq!(
        (k.transactions_topic.as_str(), k.behavior_topic.as_str()),
        ("tx", "bh")
    );
    assert_eq!(k.dead_letters_topic.as_deref(), Some("dl"));
    assert_eq!(k.alerts_topic.as_deref(), Some("alerts"));
    assert_eq!(k.options.len(), 2);
    assert_eq!(from_file.workers, 3);

    // the defaults: recover, group shopdiff, alerts to fraud_alerts; --no-alerts turns them off
    let defaults = |no_alerts: bool| {
        let c = run_config(&RunArgs {
            kafka: Some("127.0.0.1:9092".into()),
            no_alerts,
            ..RunArgs::default()
        })
        .expect("defaults");
        match c.source {
            EventSource::Kafka(k) => *k,
            s => panic!("{s:?}"),
        }
    };
    let k = defaults(false);
    assert_eq!(k.start, StartFrom::Recover);
    assert_eq!(k.group_id, "shopdiff");
    assert_eq!(k.alerts_topic.as_deref(), Some("fraud_alerts"));
    assert_eq!(k.dead_letters_topic.as_deref(), Some("dead_letters"));
    assert_eq!(defaults(true).alerts_topic, None);
    std::fs::write(&file, "kafka = \"127.0.0.1:9092\"\nno_alerts = true\n").unwrap();
    let c = run_config(&RunArgs {
        config: Some(file),
        ..RunArgs::default()
    })
    .unwrap();
    assert!(matches!(&c.source, EventSource::Kafka(k) if k.alerts_topic.is_none()));
    // Kafka settings without --kafka, and contradictions, are refused
    for (args, flag) in [
        (
            RunArgs {
                kafka_group: Some("g".into()),
                ..RunArgs::default()
            },
            "--kafka-group goes with --kafka",
        ),
        (
            RunArgs {
                kafka: Some("127.0.0.1:9092".into()),
                kafka_from: Some("yesterday".into()),
                ..RunArgs::default()
            },
            "--kafka-from",
        ),
        (
            RunArgs {
                kafka: Some("127.0.0.1:9092".into()),
                kafka_options: vec!["no-equals-sign".into()],
                ..RunArgs::default()
            },
            "KEY=VALUE",
        ),
        (
            RunArgs {
                kafka: Some("127.0.0.1:9092".into()),
                no_alerts: true,
                alerts_topic: Some("a".into()),
                ..RunArgs::default()
            },
            "--no-alerts and --alerts-topic",
        ),
    ] {
        let e = run_config(&args).expect_err(flag).to_string();
        assert!(e.contains(flag), "{e}");
    }
}

/// Issues 5 and 7: in a cluster of two processes each partition is read once, by one
/// process (`p % 2`), with per-process watermarks; a process whose partitions are idle follows
/// the other, so both processes end at the replay's `as_of` with exactly its views, and the
/// offsets of every partition are committed by its reader.
#[test]
fn a_two_process_cluster_reads_each_partition_once_and_equals_the_replay() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(brokers) =
        brokers("a_two_process_cluster_reads_each_partition_once_and_equals_the_replay")
    else {
        return;
    };
    let rt = RunTopics::create(&brokers, "cluster");
    let dir = TempDir::new("kafka-cluster");
    let produced = produce(&brokers, &workload(23, 8_000), &dir.0, &rt.t);
    let want = replay_snapshot(&dir.0);
    let final_as_of = want["rfm"].0.expect("replay as_of");
    let group = unique("cluster");
    let port = (0..200u16)
        .map(|i| {
            21_000
                + (std::process::id() as u16)
                    .wrapping_mul(13)
                    .wrapping_add(i * 101)
                    % 30_000
        })
        .find(|p| (0..2).all(|k| std::net::TcpListener::bind(("127.0.0.1", p + k)).is_ok()))
        .expect("two free ports");
    let served: Vec<Served> = (0..2)
        .map(|p| {
            let mut a = rt.args(&brokers, &group, &dir.0);
            a.workers = Some(1);
            a.cluster = shopdiff_server::cli_cluster::ClusterArgs {
                processes: Some(2),
                process: Some(p),
                cluster_port: Some(port),
                ..Default::default()
            };
            let cfg = run_config(&a).expect("run config");
            Served::start(&cfg).expect("shopdiff run --kafka in a cluster")
        })
        .collect();
    for (p, s) in served.iter().enumerate() {
        let stores = s.job.engine.stores().clone();
        wait_for(
            &format!("process {p} to reach the replay's as_of"),
            120,
            || stores.as_of() == Some(final_as_of),
        );
        assert_same(&format!("process {p} vs replay"), &snapshot(&stores), &want);
    }
    let source_cfg = rt.t.source(&brokers, &group);
    wait_for("every partition's offset to be committed", 30, || {
        committed_sum(source_cfg.clone()) == produced as i64
    });
    // one record an hour later, into partition 0 (read by process 0 only): process 1's
    // partitions stay idle, and it must follow, or the cluster's as_of would stay behind
    let later = final_as_of + 3_600_000;
    let line = format!(
        r#"{{"transaction_id":"T-later","product_id":"P-later","user_id":"U-later","timestamp":"{}","price":1.0,"quantity":1,"currency":"USD"}}"#,
        shopdiff_schemas::time::format_rfc3339(later as i64)
    );
    let p = RecordProducer::connect(&brokers, &Retry::default()).expect("producer");
    p.send_to(&rt.t.tx, Some(0), None, line.as_bytes(), None)
        .expect("send");
    p.flush(Duration::from_secs(30)).expect("flush");
    for (i, s) in served.iter().enumerate() {
        let stores = s.job.engine.stores().clone();
        wait_for(
            &format!("process {i} to follow to the later record"),
            60,
            || stores.as_of() == Some(later),
        );
    }
    for s in served {
        s.stop().expect("stopping");
    }
}
