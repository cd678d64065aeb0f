//! The Kafka source and sinks against a real Kafka-protocol broker (tansu, see
//! `scripts/kafka.sh`). Each test needs `SHOPDIFF_KAFKA` (the brokers, e.g. `127.0.0.1:9092`)
//! and prints a notice and passes when it is not set; `scripts/test.sh` starts the broker and
//! sets it. Each test uses its own topics (unique names, created with the admin API) and its
//! own consumer groups. The tests hold one lock, so the broker-restart test disturbs no other.

use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, WriteOptions};
use shopdiff_connectors::kafka::{
    create_topics, produce_generated, read_topic, EndAt, KafkaError, KafkaSource,
    KafkaSourceConfig, RecordProducer, Retry, StartFrom,
};
use shopdiff_dataflows::config::ViewsConfig;
use shopdiff_schemas::rows::Value;
use shopdiff_server::cli::{replay_dir, EngineArgs};
use shopdiff_server::kafka_driver::{run_kafka, KafkaRunOptions, KafkaRunResult};
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

/// Fresh topics for one test.
struct Topics {
    tx: String,
    bh: String,
    dead: String,
}

impl Topics {
    fn create(brokers: &str, name: &str) -> Topics {
        let t = Topics {
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
