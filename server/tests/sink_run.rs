//! `shopdiff run --sink DIR` through the whole job: the lake folded by `diff` equals the served
//! views, also after a run stopped half-way and a restart that batches differently (so its
//! first `as_of` after the committed one straddles it).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Decimal128Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, WriteOptions};
use shopdiff_connectors::sink::manifest::{Manifest, State, MANIFEST_DIR};
use shopdiff_connectors::sink::{FileKind, SinkConfig};
use shopdiff_connectors::TimeConfig;
use shopdiff_dataflows::config::ViewsConfig;
use shopdiff_schemas::rows::Value;
use shopdiff_server::auth::Auth;
use shopdiff_server::live::{EventSource, RunConfig, Served};
use shopdiff_server::store::HistoryConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn config(stream: &Path, batch: usize, lake: &Path) -> RunConfig {
    let mut sink = SinkConfig::new(lake.to_string_lossy().to_string());
    sink.commit_every_ms = 20 * 60_000;
    sink.snapshot_every_ms = 0;
    RunConfig {
        cluster: None,
        workers: 2,
        time: TimeConfig::default(),
        views: ViewsConfig::default(),
        source: EventSource::Replay {
            dir: stream.to_path_buf(),
            batch,
        },
        http: "127.0.0.1:0".parse().unwrap(),
        auth: Auth::open(),
        history: HistoryConfig {
            span_ms: 30 * 86_400_000,
            max_updates: 10_000_000,
        },
        subscriber_buffer: 64,
        max_subscribers: 256,
        read_timeout: Duration::from_secs(10),
        subscriber_timeout: Duration::from_secs(30),
        readers: 2,
        any_host: false,
        dead_letters: None,
        tls: None,
        postgres: None,
        sink: Some(sink),
        flush_ms: 20,
        exit_after: None,
        on_failure: shopdiff_server::health::OnFailure::Exit,
        progress: false,
    }
}

/// The live change files of `view` per the manifests, folded by diff: `(segment, customers,
/// monetary cents) -> count` for rfm_segments, or a row count for other views.
fn folded(lake: &Path, view: &str) -> (Option<u64>, BTreeMap<String, i64>) {
    let mut state = State::default();
    let mut seqs: Vec<PathBuf> = std::fs::read_dir(lake.join(MANIFEST_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    seqs.sort();
    for p in seqs {
        let m: Manifest = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        state.apply(&m).unwrap();
    }
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for f in state.live.values() {
        if f.view != view || f.kind != FileKind::Changes {
            continue;
        }
        let file = std::fs::File::open(lake.join(&f.path)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let schema = batch.schema();
            let diff_col = schema.index_of("diff").unwrap();
            let asof_col = schema.index_of("as_of").unwrap();
            let diffs = batch.column(diff_col).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                let mut key = Vec::new();
                for (c, field) in schema.fields().iter().enumerate() {
                    if c == diff_col || c == asof_col {
                        continue;
                    }
                    let col = batch.column(c);
                    let v = match col.data_type() {
                        arrow::datatypes::DataType::Utf8 => {
                            col.as_string::<i32>().value(i).to_string()
                        }
                        arrow::datatypes::DataType::Int64 => {
                            col.as_primitive::<Int64Type>().value(i).to_string()
                        }
                        arrow::datatypes::DataType::Decimal128(_, _) => {
                            col.as_primitive::<Decimal128Type>().value(i).to_string()
                        }
                        _ if col.is_null(i) => "null".into(),
                        _ => format!("{}:{:?}", field.name(), col.slice(i, 1)),
                    };
                    key.push(v);
                }
                *out.entry(key.join("|")).or_insert(0) += diffs.value(i);
            }
        }
    }
    out.retain(|_, n| *n != 0);
    (state.committed_as_of, out)
}

fn served_segments(s: &Served) -> BTreeMap<String, i64> {
    let (_, rows) = s
        .job
        .engine
        .stores()
        .get("rfm_segments")
        .unwrap()
        .snapshot();
    rows.into_iter()
        .map(|r| {
            let text: Vec<String> = r
                .iter()
                .map(|v| match v {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    Value::Money(c) => c.to_string(),
                    other => format!("{other:?}"),
                })
                .collect();
            (text.join("|"), 1)
        })
        .collect()
}

fn wait_done(s: &Served) {
    let t0 = Instant::now();
    while !s.job.source_done() {
        assert!(t0.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(20));
    }
    let want = s.job.engine.fed_frontier();
    while s.job.engine.stores().as_of().map(|a| a + 1000) < Some(want) {
        assert!(t0.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_lake_equals_the_views_across_a_restart() {
    let root = std::env::temp_dir().join(format!("shopdiff-sinkrun-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (stream, lake) = (root.join("stream"), root.join("lake"));
    let gen = GenConfig {
        seed: 11,
        users: 800,
        products: 120,
        records: 40_000,
        volume: 0.05,
        bad_rate: 0.01,
        duplicate_rate: 0.01,
        ..GenConfig::default()
    };
    write_recorded_stream(&gen, &stream, &WriteOptions::default()).unwrap();

    // run 1: stopped when about half of the stream's two hours have passed
    let s = Served::start(&config(&stream, 700, &lake)).unwrap();
    let t0 = Instant::now();
    let half = loop {
        if let Some(a) = s.job.engine.stores().as_of() {
            if a > gen.start as u64 + 3_600_000 {
                break a;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    };
    s.stop().unwrap();
    let (committed1, _) = folded(&lake, "rfm_segments");
    let committed1 = committed1.expect("run 1 committed nothing");
    assert!(committed1 >= half, "{committed1} < {half}");

    // run 2: the whole stream again, cut into other batches
    let s = Served::start(&config(&stream, 1_300, &lake)).unwrap();
    wait_done(&s);
    let final_as_of = s.job.engine.stores().as_of().unwrap();
    let served = served_segments(&s);
    let rows: BTreeMap<&'static str, usize> = s
        .job
        .engine
        .stores()
        .iter()
        .map(|v| (v.def().name, v.len()))
        .collect();
    s.stop().unwrap();
    let (committed2, lake_segments) = folded(&lake, "rfm_segments");
    assert_eq!(committed2, Some(final_as_of));
    assert!(committed2.unwrap() > committed1);
    assert_eq!(lake_segments, served, "rfm_segments in the lake");
    // every view: as many rows, each once
    for (view, n) in rows {
        let (_, f) = folded(&lake, view);
        assert_eq!(f.len(), n, "{view}: rows in the lake");
        assert!(
            f.values().all(|c| *c == 1),
            "{view}: a row twice or retracted too often"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
