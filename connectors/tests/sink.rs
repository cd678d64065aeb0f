//! The continuous Parquet sink: random histories of `revenue_hourly`, `rfm` and `fraud_alerts`
//! are pushed at many `as_of`s, read back with the `parquet` crate by following the manifests
//! (parsed here as plain JSON, independently of the sink's own types), folded by `diff`, and
//! compared with a model of each view at every `as_of`. Also: a crash between data files and
//! manifest, resuming after a restart, compaction, snapshots, S3 (against moto when
//! `SHOPDIFF_S3_ENDPOINT` and `SHOPDIFF_S3_BUCKET` are set, skipped otherwise) and S3 errors.

use arrow::array::{
    Array, BooleanArray, Decimal128Array, Float64Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shopdiff_connectors::sink::{
    ParquetSink, RetryPolicy, S3Options, SinkConfig, SinkError, ViewDelta,
};
use shopdiff_schemas::rows::{self, ColKind, Value, ViewDef};
use shopdiff_schemas::time::civil_from_days;
use shopdiff_schemas::Str;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

// ------------------------------------------------------------------------------------ targets

/// Where a test writes, and a plain object-store client to read it back.
struct Target {
    target: String,
    s3: S3Options,
    reader: Arc<dyn ObjectStore>,
    root: String,
    local: Option<PathBuf>,
}

impl Target {
    fn config(&self) -> SinkConfig {
        let mut cfg = SinkConfig::new(self.target.clone());
        cfg.s3 = self.s3.clone();
        cfg.snapshot_every_ms = 0;
        cfg
    }

    fn full(&self, rel: &str) -> StorePath {
        if self.root.is_empty() {
            StorePath::from(rel)
        } else {
            StorePath::from(format!("{}/{rel}", self.root))
        }
    }

    async fn get(&self, rel: &str) -> Bytes {
        let r = self.reader.get(&self.full(rel)).await;
        r.unwrap_or_else(|e| panic!("{rel}: {e}"))
            .bytes()
            .await
            .unwrap()
    }

    /// Every object below the root, relative to it.
    async fn list(&self) -> Vec<String> {
        let root = StorePath::from(self.root.as_str());
        let metas: Vec<_> = if self.root.is_empty() {
            self.reader.list(None).try_collect().await.unwrap()
        } else {
            self.reader.list(Some(&root)).try_collect().await.unwrap()
        };
        let mut names: Vec<String> = metas
            .into_iter()
            .map(|m| {
                let s = m.location.as_ref().to_string();
                match self.root.is_empty() {
                    true => s,
                    false => s[self.root.len() + 1..].to_string(),
                }
            })
            .collect();
        names.sort();
        names
    }

    /// The data files present (whether live or not).
    async fn data_files(&self) -> BTreeSet<String> {
        self.list()
            .await
            .into_iter()
            .filter(|p| !p.starts_with("_manifest/"))
            .collect()
    }
}

fn local(name: &str) -> Target {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("shopdiff-sink-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Target {
        target: dir.display().to_string(),
        s3: S3Options::default(),
        reader: Arc::new(LocalFileSystem::new_with_prefix(&dir).unwrap()),
        root: String::new(),
        local: Some(dir),
    }
}

fn s3_env() -> Option<(String, String)> {
    match (
        std::env::var("SHOPDIFF_S3_ENDPOINT"),
        std::env::var("SHOPDIFF_S3_BUCKET"),
    ) {
        (Ok(e), Ok(b)) if !e.is_empty() && !b.is_empty() => Some((e, b)),
        _ => None,
    }
}

fn s3_options(endpoint: &str) -> S3Options {
    S3Options {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".to_string()),
        access_key_id: Some("test".to_string()),
        secret_access_key: Some("test".to_string()),
        allow_http: true,
    }
}

/// A fresh prefix in the test bucket, or `None` (with a notice) when no S3 server is set up.
fn s3(name: &str) -> Option<Target> {
    let Some((endpoint, bucket)) = s3_env() else {
        eprintln!(
            "skipped {name}: set SHOPDIFF_S3_ENDPOINT and SHOPDIFF_S3_BUCKET (scripts/s3.sh start) to run the S3 tests"
        );
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let root = format!("run-{}-{nanos}/{name}", std::process::id());
    let reader = AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(&bucket)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap();
    Some(Target {
        target: format!("s3://{bucket}/{root}"),
        s3: s3_options(&endpoint),
        reader: Arc::new(reader),
        root,
        local: None,
    })
}

// ------------------------------------------------------------------------------------ history

const DAY_MS: u64 = shopdiff_schemas::time::DAY_MS as u64;
const HOUR_MS: u64 = shopdiff_schemas::time::HOUR_MS as u64;
const VIEWS: [ViewDef; 3] = [rows::REVENUE_HOURLY, rows::RFM, rows::FRAUD_ALERTS];
/// 2024-03-10T23:30:00Z: histories cross midnight into a second date partition.
const START: u64 = 1_710_113_400_000;

/// A key column's value for key number `n`: unique per `n` through the string columns.
fn key_value(def: &ViewDef, c: usize, n: u64) -> Value {
    let col = &def.columns[c];
    match (col.name, col.kind) {
        ("dimension", _) => Value::Str(Str::from(
            ["total", "category", "brand", "country"][(n % 4) as usize],
        )),
        ("currency", _) => Value::Str(Str::from(["USD", "EUR", "GBP"][(n % 3) as usize])),
        ("rule", _) => Value::Str(Str::from(
            ["velocity", "amount", "geo", "risky_ip"][(n % 4) as usize],
        )),
        (name, ColKind::String) => Value::Str(Str::from(format!("{name}-{n}"))),
        (_, ColKind::Time) => Value::Time((START - DAY_MS + (n % 48) * HOUR_MS) as i64),
        (_, ColKind::Integer) => Value::Int(n as i64),
        (name, kind) => panic!("no key values for {name}: {kind:?}"),
    }
}

/// A plausible value of a non-key column.
fn random_value(col: &rows::Column, rng: &mut ChaCha8Rng) -> Value {
    match (col.name, col.kind) {
        ("segment", _) => Value::Str(Str::from(
            [
                "champions",
                "loyal",
                "new",
                "at_risk",
                "hibernating",
                "potential",
            ][rng.random_range(0..6)],
        )),
        (_, ColKind::String) => Value::Str(Str::from(format!("u{}", rng.random_range(0..500)))),
        (_, ColKind::Integer) => Value::Int(rng.random_range(0..10_000)),
        // cents, now and then negative, past an i64 or at the edge of DECIMAL(38,2)
        (_, ColKind::Money) => Value::Money(match rng.random_range(0..20) {
            0 => -rng.random_range(0..1_000_000),
            1 => 10i128.pow(38) - 1,
            2 => i64::MAX as i128 * 1_000,
            _ => rng.random_range(0..100_000_000),
        }),
        (_, ColKind::Time) => Value::Time((START - rng.random_range(0..90 * DAY_MS)) as i64),
        (_, ColKind::Number) => Value::Number(rng.random_range(0..4_000_000) as f64 / 8.0),
        (_, ColKind::Ratio(_)) if col.nullable && rng.random_bool(0.2) => Value::Null,
        (_, ColKind::Ratio(p)) => Value::Ratio(rng.random_range(0..100_000), p),
        (_, ColKind::Boolean) => Value::Bool(rng.random_bool(0.5)),
    }
}

fn random_row(def: &ViewDef, n: u64, rng: &mut ChaCha8Rng) -> Vec<Value> {
    (0..def.columns.len())
        .map(|c| match c < def.key_len {
            true => key_value(def, c, n),
            false => random_value(&def.columns[c], rng),
        })
        .collect()
}

/// Pushes of a random history: at each `as_of` some views insert, update (retract the old row,
/// add the new) or delete rows. `as_of`s advance 1 to 40 seconds at a time.
fn history(seed: u64, steps: usize) -> Vec<(u64, Vec<ViewDelta>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut current: Vec<BTreeMap<u64, Vec<Value>>> = vec![BTreeMap::new(); VIEWS.len()];
    let mut next_key = 0u64;
    let mut as_of = START;
    let mut out = Vec::new();
    for _ in 0..steps {
        as_of += 1000 * rng.random_range(1..=40);
        let mut deltas = Vec::new();
        for (v, def) in VIEWS.iter().enumerate() {
            if rng.random_bool(0.3) {
                continue;
            }
            let mut diffs = Vec::new();
            for _ in 0..rng.random_range(1..6) {
                let live = &mut current[v];
                let op = rng.random_range(0..10);
                if live.is_empty() || op < 4 {
                    next_key += 1;
                    let row = random_row(def, next_key, &mut rng);
                    live.insert(next_key, row.clone());
                    diffs.push((row, 1));
                } else {
                    let keys: Vec<u64> = live.keys().copied().collect();
                    let k = keys[rng.random_range(0..keys.len())];
                    let old = live.remove(&k).unwrap();
                    if diffs.iter().any(|(r, _)| r == &old) {
                        live.insert(k, old);
                        continue;
                    }
                    diffs.push((old, -1));
                    if op < 8 {
                        let row = random_row(def, k, &mut rng);
                        live.insert(k, row.clone());
                        diffs.push((row, 1));
                    }
                }
            }
            deltas.push(ViewDelta { view: *def, diffs });
        }
        out.push((as_of, deltas));
    }
    out
}

/// A row as the sink writes it (delta columns only), as a comparable key.
fn delta_key(def: &ViewDef, row: &[Value]) -> String {
    let delta: Vec<&Value> = def.delta_columns().iter().map(|&c| &row[c]).collect();
    format!("{delta:?}")
}

// ------------------------------------------------------------------------------ reading back

/// The manifests, read as plain JSON.
struct Committed {
    /// live data files: path → (view, kind)
    live: BTreeMap<String, (String, String)>,
    /// the `committed_as_of` of each change commit, in order
    commits: Vec<u64>,
    manifests: usize,
}

async fn read_manifests(t: &Target) -> Committed {
    let names: Vec<String> = t
        .list()
        .await
        .into_iter()
        .filter(|p| p.starts_with("_manifest/"))
        .collect();
    let mut live = BTreeMap::new();
    let mut commits = Vec::new();
    for (i, name) in names.iter().enumerate() {
        assert_eq!(name, &format!("_manifest/MANIFEST-{i:020}.json"));
        let m: serde_json::Value = serde_json::from_slice(&t.get(name).await).unwrap();
        assert_eq!(m["format"], "shopdiff.sink.manifest/1");
        assert_eq!(m["sequence"], i as u64);
        for path in m["removed"].as_array().unwrap() {
            assert!(
                live.remove(path.as_str().unwrap()).is_some(),
                "{path} not live"
            );
        }
        for f in m["added"].as_array().unwrap() {
            let path = f["path"].as_str().unwrap().to_string();
            let entry = (
                f["view"].as_str().unwrap().to_string(),
                f["kind"].as_str().unwrap().to_string(),
            );
            assert!(live.insert(path, entry).is_none());
        }
        if m["kind"] == "changes" {
            let c = m["committed_as_of"].as_u64().unwrap();
            assert_eq!(m["to_as_of"].as_u64(), Some(c));
            assert!(commits.last().is_none_or(|&l| l < c));
            commits.push(c);
        }
    }
    Committed {
        live,
        commits,
        manifests: names.len(),
    }
}

/// A value of `array` at `i`, typed as `kind`.
fn decode(kind: ColKind, array: &dyn Array, i: usize) -> Value {
    if array.is_null(i) {
        return Value::Null;
    }
    let any = array.as_any();
    match kind {
        ColKind::String => Value::Str(Str::from(
            any.downcast_ref::<StringArray>().unwrap().value(i),
        )),
        ColKind::Integer => Value::Int(any.downcast_ref::<Int64Array>().unwrap().value(i)),
        ColKind::Money => {
            let a = any.downcast_ref::<Decimal128Array>().unwrap();
            assert_eq!((a.precision(), a.scale()), (38, 2));
            Value::Money(a.value(i))
        }
        ColKind::Time => Value::Time(
            any.downcast_ref::<TimestampMillisecondArray>()
                .unwrap()
                .value(i),
        ),
        ColKind::Number => Value::Number(any.downcast_ref::<Float64Array>().unwrap().value(i)),
        ColKind::Ratio(p) => {
            let x = any.downcast_ref::<Float64Array>().unwrap().value(i);
            Value::Ratio((x * 10f64.powi(p as i32)).round() as i64, p)
        }
        ColKind::Boolean => Value::Bool(any.downcast_ref::<BooleanArray>().unwrap().value(i)),
    }
}

fn read_parquet(bytes: Bytes) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// One committed change: view, `as_of`, row key, diff.
type Change = (String, u64, String, i64);

/// Every change row of the live change files, checking each file's schema, name and
/// partition against its rows.
async fn read_changes(t: &Target, committed: &Committed) -> Vec<Change> {
    let mut out = Vec::new();
    for (path, (view, kind)) in &committed.live {
        if kind != "changes" {
            continue;
        }
        let def = rows::view_def(view).unwrap();
        let delta = def.delta_columns();
        let mut as_ofs = Vec::new();
        for batch in read_parquet(t.get(path).await) {
            let schema = batch.schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let mut expected: Vec<&str> = delta.iter().map(|&c| def.columns[c].name).collect();
            expected.extend(["as_of", "diff"]);
            assert_eq!(names, expected, "{path}");
            assert_eq!(
                schema.field(delta.len()).data_type(),
                &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
            );
            let at = batch
                .column(delta.len())
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            let diff = batch
                .column(delta.len() + 1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            for i in 0..batch.num_rows() {
                let mut full = vec![Value::Null; def.columns.len()];
                for (pos, &c) in delta.iter().enumerate() {
                    full[c] = decode(def.columns[c].kind, batch.column(pos).as_ref(), i);
                }
                let as_of = at.value(i) as u64;
                as_ofs.push(as_of);
                out.push((view.clone(), as_of, delta_key(&def, &full), diff.value(i)));
            }
        }
        // named by its first and last as_of, in the partition of their UTC day, sorted by as_of
        let (from, to) = (as_ofs[0], *as_ofs.last().unwrap());
        assert!(as_ofs.is_sorted(), "{path}");
        let (y, m, d) = civil_from_days((from / DAY_MS) as i64);
        assert_eq!(
            path,
            &format!("{view}/date={y:04}-{m:02}-{d:02}/changes-{from}-{to}.parquet")
        );
        assert_eq!(from / DAY_MS, to / DAY_MS, "{path} spans two days");
    }
    out.sort_by_key(|c| c.1);
    out
}

/// Folds the committed changes and compares them with the model at every `as_of` of the
/// history up to the last commit, and checks that nothing after it was written. Returns the
/// number of `as_of`s compared.
async fn verify(t: &Target, history: &[(u64, Vec<ViewDelta>)]) -> usize {
    let committed = read_manifests(t).await;
    let last = *committed.commits.last().expect("at least one commit");
    let changes = read_changes(t, &committed).await;
    assert!(
        changes.iter().all(|c| c.1 <= last),
        "changes after the last commit"
    );
    let mut model: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut folded: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut next = 0;
    let mut compared = 0;
    for (as_of, deltas) in history.iter().filter(|(a, _)| *a <= last) {
        for d in deltas {
            for (row, diff) in &d.diffs {
                *model
                    .entry((d.view.name.to_string(), delta_key(&d.view, row)))
                    .or_default() += diff;
            }
        }
        model.retain(|_, n| *n != 0);
        while next < changes.len() && changes[next].1 <= *as_of {
            let (view, _, key, diff) = &changes[next];
            *folded.entry((view.clone(), key.clone())).or_default() += diff;
            next += 1;
        }
        folded.retain(|_, n| *n != 0);
        assert_eq!(folded, model, "contents differ at as_of {as_of}");
        assert!(model.values().all(|&n| n == 1), "a row twice at {as_of}");
        compared += 1;
    }
    assert_eq!(
        next,
        changes.len(),
        "changes at an as_of that was never pushed"
    );
    compared
}

async fn push_all(sink: &mut ParquetSink, history: &[(u64, Vec<ViewDelta>)]) {
    for (as_of, deltas) in history {
        sink.push(*as_of, deltas.clone()).await.unwrap();
    }
}

// ------------------------------------------------------------------------------ scenarios

async fn round_trip(t: Target) {
    let history = history(1, 400);
    let mut sink = ParquetSink::open(t.config()).await.unwrap();
    assert_eq!(sink.committed_as_of(), None);
    push_all(&mut sink, &history).await;
    sink.flush().await.unwrap();
    let last = history.last().unwrap().0;
    assert_eq!(sink.committed_as_of(), Some(last));
    assert_eq!(sink.buffered(), 0);
    assert_eq!(verify(&t, &history).await, history.len());
    let committed = read_manifests(&t).await;
    // about 400 pushes of ~20 s, a commit per minute
    assert!(
        committed.commits.len() > 50,
        "{} commits",
        committed.commits.len()
    );
    // the history crosses midnight: two date partitions per view
    let dates: BTreeSet<&str> = committed
        .live
        .keys()
        .map(|p| p.split('/').nth(1).unwrap())
        .collect();
    assert_eq!(
        dates,
        BTreeSet::from(["date=2024-03-10", "date=2024-03-11"])
    );
    // nothing but live files, and the live files the sink reports are the manifests' ones
    assert_eq!(
        t.data_files().await,
        committed.live.keys().cloned().collect()
    );
    let reported: BTreeSet<String> = sink.live_files().map(|f| f.path.clone()).collect();
    assert_eq!(reported, committed.live.keys().cloned().collect());
    if let Some(dir) = &t.local {
        let some = committed.live.keys().next().unwrap();
        assert!(dir.join(some).is_file(), "{some} not on disk");
    }
}

async fn crash_before_manifest(t: Target) {
    let history = history(2, 300);
    let mut sink = ParquetSink::open(t.config()).await.unwrap();
    push_all(&mut sink, &history[..150]).await;
    let before = sink.committed_as_of().unwrap();
    let files_before = t.data_files().await;
    sink.fail_before_next_manifest();
    let mut failed = None;
    for (as_of, deltas) in &history[150..] {
        match sink.push(*as_of, deltas.clone()).await {
            Ok(()) => {}
            Err(SinkError::Injected { location, .. }) => {
                failed = Some((*as_of, location));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let (failed_at, location) = failed.expect("a commit was due");
    assert!(location.ends_with(".json"), "{location}");
    // the data files of the failed commit are there, uncommitted
    let orphans: Vec<String> = t
        .data_files()
        .await
        .difference(&files_before)
        .cloned()
        .collect();
    assert!(!orphans.is_empty());
    assert_eq!(sink.committed_as_of(), Some(before));
    drop(sink); // the crash: the buffer is lost

    let mut sink = ParquetSink::open(t.config()).await.unwrap();
    assert_eq!(sink.committed_as_of(), Some(before));
    assert!(before < failed_at);
    // no trace: the orphans are gone, only committed files remain
    assert_eq!(t.data_files().await, files_before);
    // the caller replays everything; what was committed is ignored
    push_all(&mut sink, &history).await;
    sink.flush().await.unwrap();
    assert_eq!(verify(&t, &history).await, history.len());
}

async fn resume(t: Target) {
    let history = history(3, 300);
    let mut sink = ParquetSink::open(t.config()).await.unwrap();
    // stop at a point where the end of the run is still buffered
    let mut k = 0;
    while k < 120 || sink.buffered() == 0 {
        sink.push(history[k].0, history[k].1.clone()).await.unwrap();
        k += 1;
    }
    let committed = sink.committed_as_of().unwrap();
    assert!(committed < history[k - 1].0);
    drop(sink); // stopped without a flush

    let mut sink = ParquetSink::open(t.config()).await.unwrap();
    assert_eq!(sink.committed_as_of(), Some(committed));
    // re-pushed old as_ofs are ignored, the rest continues
    for (as_of, deltas) in history.iter().filter(|(a, _)| *a <= committed) {
        sink.push(*as_of, deltas.clone()).await.unwrap();
    }
    assert_eq!(sink.buffered(), 0);
    push_all(&mut sink, &history).await;
    sink.flush().await.unwrap();
    assert_eq!(verify(&t, &history).await, history.len());
    // a third run pushing everything again adds nothing
    let manifests = read_manifests(&t).await.manifests;
    let mut sink = ParquetSink::open(t.config()).await.unwrap();
    push_all(&mut sink, &history).await;
    sink.flush().await.unwrap();
    assert_eq!(read_manifests(&t).await.manifests, manifests);
}

async fn compaction(t: Target) {
    let history = history(4, 400);
    let mut cfg = t.config();
    cfg.compact_min_files = 3;
    let mut sink = ParquetSink::open(cfg.clone()).await.unwrap();
    push_all(&mut sink, &history[..250]).await;
    sink.flush().await.unwrap();
    let before = read_manifests(&t).await;
    assert_eq!(verify(&t, &history[..250]).await, 250);
    sink.compact().await.unwrap();
    let after = read_manifests(&t).await;
    assert_eq!(after.manifests, before.manifests + 1);
    // one file per (view, day) now
    assert_eq!(after.live.len(), 6, "{:?}", after.live.keys());
    assert!(before.live.len() > 3 * after.live.len());
    // the inputs are deleted
    assert_eq!(t.data_files().await, after.live.keys().cloned().collect());
    assert_eq!(verify(&t, &history[..250]).await, 250);
    // nothing more to merge
    sink.compact().await.unwrap();
    assert_eq!(read_manifests(&t).await.manifests, after.manifests);
    drop(sink);
    // reopened after a compaction, the sink continues
    let mut sink = ParquetSink::open(cfg).await.unwrap();
    assert_eq!(sink.committed_as_of(), Some(history[249].0));
    push_all(&mut sink, &history).await;
    sink.flush().await.unwrap();
    sink.compact().await.unwrap();
    assert_eq!(read_manifests(&t).await.live.len(), 6);
    assert_eq!(verify(&t, &history).await, history.len());
}

async fn snapshots(t: Target) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut cfg = t.config();
    cfg.snapshot_every_ms = HOUR_MS;
    let mut sink = ParquetSink::open(cfg.clone()).await.unwrap();
    let as_of = START + 42_000;
    assert!(sink.snapshot_due(as_of));
    let mut given = BTreeMap::new();
    for def in VIEWS {
        // given in reverse key order; rfm's recency_days is kept in snapshots
        let rows: Vec<Vec<Value>> = (0..300)
            .rev()
            .map(|n| random_row(&def, n, &mut rng))
            .collect();
        sink.snapshot(as_of, def, rows.clone()).await.unwrap();
        given.insert(def.name, rows);
    }
    // an empty view is an empty file
    sink.snapshot(as_of, rows::DATA_QUALITY, Vec::new())
        .await
        .unwrap();
    assert!(!sink.snapshot_due(as_of + HOUR_MS - 1));
    assert!(sink.snapshot_due(as_of + HOUR_MS));
    drop(sink);
    let sink = ParquetSink::open(cfg).await.unwrap();
    assert!(
        !sink.snapshot_due(as_of + 1),
        "the last snapshot is read back"
    );
    assert_eq!(sink.committed_as_of(), None);

    let committed = read_manifests(&t).await;
    assert_eq!(committed.live.len(), 4);
    for (def, rows) in VIEWS.iter().map(|d| (d, &given[d.name])) {
        let path = format!("{}/snapshots/as_of={as_of}.parquet", def.name);
        assert_eq!(committed.live[&path].1, "snapshot");
        let bytes = t.get(&path).await;
        let meta = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap();
        let kv = meta
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap();
        assert!(kv
            .iter()
            .any(|k| k.key == "shopdiff.as_of" && k.value.as_deref() == Some(&*as_of.to_string())));
        let mut read = Vec::new();
        for batch in read_parquet(bytes) {
            assert_eq!(batch.num_columns(), def.columns.len());
            for i in 0..batch.num_rows() {
                read.push(
                    def.columns
                        .iter()
                        .enumerate()
                        .map(|(c, col)| decode(col.kind, batch.column(c).as_ref(), i))
                        .collect::<Vec<_>>(),
                );
            }
        }
        let mut expected = rows.clone();
        let key = |r: &Vec<Value>| format!("{:?}", &r[..def.key_len]);
        expected.sort_by_key(key);
        let mut sorted = read.clone();
        sorted.sort_by_key(key);
        assert_eq!(sorted, expected, "{}", def.name);
        assert_eq!(read.len(), 300);
    }
    let empty = read_parquet(
        t.get(&format!("data_quality/snapshots/as_of={as_of}.parquet"))
            .await,
    );
    assert_eq!(empty.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
}

// ------------------------------------------------------------------------------ local tests

#[tokio::test]
async fn history_round_trips_local() {
    round_trip(local("round-trip")).await;
}

#[tokio::test]
async fn crash_before_manifest_leaves_no_trace_local() {
    crash_before_manifest(local("crash")).await;
}

#[tokio::test]
async fn reopen_resumes_without_duplicates_local() {
    resume(local("resume")).await;
}

#[tokio::test]
async fn compaction_keeps_contents_local() {
    compaction(local("compaction")).await;
}

#[tokio::test]
async fn snapshots_read_back_local() {
    snapshots(local("snapshots")).await;
}

#[tokio::test]
async fn file_url_targets_and_view_selection() {
    let t = local("file-url");
    let mut cfg = t.config();
    cfg.target = format!("file://{}", t.local.as_ref().unwrap().display());
    cfg.views = Some(vec!["rfm".to_string()]);
    cfg.commit_every_ms = 0; // a commit per push
    let history = history(6, 20);
    let mut sink = ParquetSink::open(cfg).await.unwrap();
    push_all(&mut sink, &history).await;
    assert_eq!(sink.buffered(), 0);
    let committed = read_manifests(&t).await;
    assert_eq!(committed.commits.len(), 20);
    assert!(committed.live.values().all(|(v, _)| v == "rfm"));
    assert!(!committed.live.is_empty());
    // rfm's recency_days is not written
    let rfm: Vec<(u64, Vec<ViewDelta>)> = history
        .iter()
        .map(|(a, ds)| {
            (
                *a,
                ds.iter()
                    .filter(|d| d.view.name == "rfm")
                    .cloned()
                    .collect(),
            )
        })
        .collect();
    assert_eq!(verify(&t, &rfm).await, 20);
}

#[tokio::test]
async fn bad_rows_order_and_config_are_errors() {
    let t = local("errors");
    let mut sink = ParquetSink::open(t.config()).await.unwrap();
    let mut row = random_row(&rows::RFM, 1, &mut ChaCha8Rng::seed_from_u64(7));
    row[4] = Value::Str(Str::from("12.50")); // monetary must be money
    let bad = ViewDelta {
        view: rows::RFM,
        diffs: vec![(row, 1)],
    };
    let err = sink.push(START, vec![bad]).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("rfm") && text.contains("monetary"), "{text}");
    assert!(text.contains(&t.target), "{text}");
    assert_eq!(sink.buffered(), 0);
    let narrow = ViewDelta {
        view: rows::FRAUD_ALERTS,
        diffs: vec![(vec![Value::Str(Str::from("geo"))], 1)],
    };
    assert!(sink.push(START, vec![narrow]).await.is_err());
    sink.push(START + 1000, Vec::new()).await.unwrap();
    let err = sink.push(START + 1000, Vec::new()).await.unwrap_err();
    assert!(
        matches!(err, SinkError::Order { as_of, last, .. } if as_of == START + 1000 && last == START + 1000)
    );

    for target in ["", "ftp://host/x", "s3:///prefix"] {
        let err = ParquetSink::open(SinkConfig::new(target))
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::Config { .. }), "{target}: {err}");
    }
    let mut cfg = t.config();
    cfg.views = Some(vec!["revenue".to_string()]);
    let err = ParquetSink::open(cfg).await.unwrap_err();
    assert!(
        err.to_string().contains("unknown view \"revenue\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_foreign_manifest_is_a_conflict() {
    let t = local("conflict");
    let mut cfg = t.config();
    cfg.commit_every_ms = 0;
    let history = history(8, 10);
    let mut a = ParquetSink::open(cfg.clone()).await.unwrap();
    let mut b = ParquetSink::open(cfg.clone()).await.unwrap();
    push_all(&mut a, &history[..3]).await;
    // b has not seen a's commits: the same commit is identical (and so harmless) ...
    b.push(history[0].0, history[0].1.clone()).await.unwrap();
    assert_eq!(b.committed_as_of(), Some(history[0].0));
    // ... but a different one finds its sequence taken
    let err = b
        .push(history[2].0, history[2].1.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, SinkError::Conflict { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("MANIFEST-00000000000000000001.json"),
        "{err}"
    );
    assert_eq!(
        b.buffered(),
        history[2].1.iter().map(|d| d.diffs.len()).sum::<usize>()
    );
    drop(b);
    push_all(&mut a, &history[3..]).await;
    assert_eq!(verify(&t, &history).await, 10);
}

// ------------------------------------------------------------------------------ S3 tests

#[tokio::test]
async fn history_round_trips_s3() {
    if let Some(t) = s3("round-trip") {
        round_trip(t).await;
    }
}

#[tokio::test]
async fn crash_before_manifest_leaves_no_trace_s3() {
    if let Some(t) = s3("crash") {
        crash_before_manifest(t).await;
    }
}

#[tokio::test]
async fn reopen_resumes_without_duplicates_s3() {
    if let Some(t) = s3("resume") {
        resume(t).await;
    }
}

#[tokio::test]
async fn compaction_keeps_contents_s3() {
    if let Some(t) = s3("compaction") {
        compaction(t).await;
    }
}

#[tokio::test]
async fn snapshots_read_back_s3() {
    if let Some(t) = s3("snapshots") {
        snapshots(t).await;
    }
}

#[tokio::test]
async fn s3_missing_bucket_is_reported() {
    let Some((endpoint, _)) = s3_env() else {
        eprintln!("skipped s3_missing_bucket_is_reported: no SHOPDIFF_S3_ENDPOINT");
        return;
    };
    let mut cfg = SinkConfig::new("s3://shopdiff-no-such-bucket/p");
    cfg.s3 = s3_options(&endpoint);
    let err = ParquetSink::open(cfg).await.unwrap_err();
    let text = err.to_string();
    eprintln!("missing bucket: {text}");
    assert!(text.contains("s3://shopdiff-no-such-bucket/p"), "{text}");
    assert!(text.contains("bucket does not exist"), "{text}");
}

#[tokio::test]
async fn s3_server_down_is_reported_after_retries() {
    // a port nobody listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = SinkConfig::new("s3://shopdiff-test/down");
    cfg.s3 = s3_options(&format!("http://127.0.0.1:{port}"));
    cfg.retry = RetryPolicy {
        attempts: 3,
        first_backoff_ms: 10,
        max_backoff_ms: 20,
    };
    let err = ParquetSink::open(cfg).await.unwrap_err();
    let text = err.to_string();
    eprintln!("server down: {text}");
    assert!(
        matches!(err, SinkError::Store { attempts: 3, .. }),
        "{text}"
    );
    assert!(text.contains("s3://shopdiff-test/down/_manifest"), "{text}");
    assert!(text.contains("no answer from the S3 endpoint"), "{text}");
}

#[test]
fn s3_options_take_unset_fields_from_the_environment() {
    let env = |k: &str| match k {
        "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9000".to_string()),
        "AWS_DEFAULT_REGION" => Some("eu-west-3".to_string()),
        "AWS_ACCESS_KEY_ID" => Some("env-key".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("env-secret".to_string()),
        _ => None,
    };
    let given = S3Options {
        access_key_id: Some("given-key".to_string()),
        ..S3Options::default()
    };
    let o = given.with_lookup(env);
    assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(o.region.as_deref(), Some("eu-west-3"));
    assert_eq!(o.access_key_id.as_deref(), Some("given-key"));
    assert_eq!(o.secret_access_key.as_deref(), Some("env-secret"));
    assert!(o.allow_http, "an http:// endpoint allows http");
    let shown = format!("{o:?}");
    assert!(
        !shown.contains("env-secret") && shown.contains("<redacted>"),
        "{shown}"
    );
    let https = S3Options {
        endpoint: Some("https://s3.example".to_string()),
        ..S3Options::default()
    }
    .with_lookup(|_| None);
    assert!(!https.allow_http);
    assert_eq!(https.region, None);
}

/// While the target fails, a commit that failed waits for its backoff (pushes stay buffered
/// and are not re-encoded at each one), and past `max_buffered` changes the sink fails for
/// good with [`SinkError::Overflow`] instead of growing; the target keeps what was committed.
#[tokio::test]
async fn an_outage_backs_off_then_fails_at_the_buffer_bound() {
    let t = local("outage");
    let dir = t.local.clone().unwrap();
    let history = history(3, 400);
    let mut cfg = t.config();
    cfg.max_buffered = 300;
    let mut sink = ParquetSink::open(cfg.clone()).await.unwrap();
    let (before, after) = history.split_at(200);
    push_all(&mut sink, before).await;
    let committed = sink.committed_as_of().expect("commits before the outage");
    // the outage: the target directory turns into a file, so every write fails
    let moved = dir.with_extension("away");
    let _ = std::fs::remove_dir_all(&moved);
    std::fs::rename(&dir, &moved).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let (mut failed, mut buffered_ok, mut overflow) = (0, 0, None);
    for (as_of, deltas) in after {
        match sink.push(*as_of, deltas.clone()).await {
            Ok(()) if failed > 0 => {
                assert!(sink.backing_off());
                buffered_ok += 1;
            }
            Ok(()) => {}
            Err(SinkError::Overflow { buffered, max, .. }) => {
                overflow = Some((buffered, max));
                break;
            }
            Err(e) => {
                assert!(matches!(e, SinkError::Store { .. }), "{e}");
                failed += 1;
            }
        }
    }
    assert_eq!(
        failed, 1,
        "one commit attempt within the first second's backoff"
    );
    assert!(buffered_ok > 0, "pushes during the backoff are buffered");
    let (buffered, max) = overflow.expect("the bound is reached");
    assert!(buffered > max && max == 300, "{buffered} > {max}");
    assert_eq!(sink.committed_as_of(), Some(committed));
    drop(sink);
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&moved, &dir).unwrap();
    let reopened = ParquetSink::open(cfg).await.unwrap();
    assert_eq!(reopened.committed_as_of(), Some(committed));
}
