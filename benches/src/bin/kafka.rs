//! Kafka throughput: which of producer, broker, consumer and engine limits a Kafka pipeline.
//!
//! Run with (a broker must be running, e.g. `scripts/kafka.sh start`):
//!   cargo run --release -p shopdiff-benches --bin kafka -- BROKERS [--records N] [--runs R] [-w N]
//!
//! Each run uses fresh topics with 4 partitions and measures, on the same workload:
//! * `produce`: the generator's records into `transactions` and `behavior` (acks=all, flushed);
//! * `bare_consume`: a plain rdkafka consumer reading both topics to their end (no parsing);
//! * `kafka_to_views`: the Kafka source into every view on `-w` workers (default 2), to the end;
//! * `replay`: the same records replayed from files, for reference.
//!
//! Prints each run and the medians, in records per second.

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use shopdiff_benches::flag_or;
use shopdiff_connectors::generator::{write_recorded_stream, GenConfig, WriteOptions};
use shopdiff_connectors::kafka::{
    create_topics, produce_generated, EndAt, KafkaSourceConfig, RecordProducer, Retry,
};
use shopdiff_dataflows::config::ViewsConfig;
use shopdiff_server::cli::{replay_dir, EngineArgs};
use shopdiff_server::kafka_driver::{run_kafka, KafkaRunOptions};
use shopdiff_server::EngineConfig;
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Reads both topics from the beginning to the end of every partition; returns messages.
fn bare_consume(brokers: &str, topics: &[&str]) -> anyhow::Result<u64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "shopdiff-bench-bare")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set(
            "fetch.wait.max.ms",
            std::env::var("BARE_FETCH_WAIT_MS").unwrap_or_else(|_| "100".into()),
        )
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut parts = 0usize;
    for t in topics {
        let md = c.fetch_metadata(Some(t), Duration::from_secs(10))?;
        for topic in md.topics() {
            for p in topic.partitions() {
                tpl.add_partition_offset(t, p.id(), Offset::Beginning)?;
                parts += 1;
            }
        }
    }
    c.assign(&tpl)?;
    // one EOF event per partition at its end (partition ids repeat across the topics)
    let mut eofs = 0usize;
    let mut n = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while eofs < parts && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                std::hint::black_box(m.payload().map(<[u8]>::len));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eofs += 1,
            Some(Err(e)) => eprintln!("bare consumer: {e}"),
            None => {}
        }
    }
    Ok(n)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let brokers = args
        .first()
        .context("usage: kafka BROKERS [--records N] [--runs R] [-w N]")?
        .clone();
    let records: u64 = flag_or(&args, "--records", 200_000)?;
    let runs: usize = flag_or(&args, "--runs", 3)?;
    let workers: usize = flag_or(&args, "-w", 2)?;
    let dir = std::env::temp_dir().join(format!("shopdiff-kafka-bench-{}", std::process::id()));
    let cfg = GenConfig {
        records,
        bad_rate: 0.001,
        duplicate_rate: 0.001,
        ..GenConfig::default()
    };
    let gen = write_recorded_stream(
        &cfg,
        &dir,
        &WriteOptions {
            progress: false,
            ..WriteOptions::default()
        },
    )?;
    let n = gen.transactions + gen.behavior;
    let retry = Retry::default();
    let (mut prod, mut bare, mut views, mut replay) = (vec![], vec![], vec![], vec![]);
    for run in 1..=runs {
        let stamp = format!("{}-{run}", std::process::id());
        let tx = format!("bench-tx-{stamp}");
        let bh = format!("bench-bh-{stamp}");
        create_topics(&brokers, &[&tx, &bh], 4, &retry)?;
        let producer = RecordProducer::connect(&brokers, &retry)?;
        let p = produce_generated(&cfg, &producer, &tx, &bh, None)?;
        prod.push(p.records_per_sec());

        let t = Instant::now();
        let got = bare_consume(&brokers, &[&tx, &bh])?;
        let s = t.elapsed().as_secs_f64();
        anyhow::ensure!(got == n, "bare consumer read {got} of {n} messages");
        bare.push(got as f64 / s);

        let mut src = KafkaSourceConfig::new(&brokers);
        src.transactions_topic = tx.clone();
        src.behavior_topic = bh.clone();
        src.group_id = format!("bench-{stamp}");
        src.end = EndAt::EndOfTopics;
        src.dead_letters_topic = None;
        src.batch_records = 50_000;
        src.tables_dir = Some(dir.clone());
        let t = Instant::now();
        let r = run_kafka(KafkaRunOptions {
            source: src,
            engine: EngineConfig {
                fine_ticks: false,
                cluster: None,
                workers,
                views: ViewsConfig::default(),
            },
            stop: None,
        })?;
        let s = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            r.stats.messages == n,
            "source read {} of {n}",
            r.stats.messages
        );
        views.push(n as f64 / s);

        let t = Instant::now();
        let engine = EngineArgs {
            workers,
            tick_ms: 1000,
            lateness_ms: 5000,
            max_future_ms: shopdiff_connectors::ingest::DEFAULT_MAX_FUTURE_MS,
            horizon_ms: shopdiff_connectors::ingest::DEFAULT_HORIZON_MS,
            batch: 50_000,
            fraud_config: None,
        };
        replay_dir(&dir, &engine, None)?;
        replay.push(n as f64 / t.elapsed().as_secs_f64());
        println!(
            "run {run}: records={n} produce={:.0}/s bare_consume={:.0}/s kafka_to_views={:.0}/s replay={:.0}/s (workers={workers})",
            prod[run - 1],
            bare[run - 1],
            views[run - 1],
            replay[run - 1]
        );
    }
    println!(
        "median of {runs}: records={n} produce={:.0}/s bare_consume={:.0}/s kafka_to_views={:.0}/s replay={:.0}/s (workers={workers})",
        median(prod),
        median(bare),
        median(views),
        median(replay)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
