//! `shopdiff run`: the main job. An engine, a source feeding it (the live generator or a
//! replay), and the query server with the dashboard, until Ctrl-C (or `--exit-after`).
//!
//! The source runs on its own thread and only talks to the engine through
//! [`Engine::feed`](crate::Engine::feed); the server runs on a small tokio runtime and only
//! reads the stores. A slow client therefore never slows the views, and a burst of input never
//! blocks a read for longer than one fold of the stores.

use crate::auth::Auth;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::runtime::{Engine, EngineConfig};
use crate::store::HistoryConfig;
use shopdiff_connectors::generator::GenConfig;
use shopdiff_connectors::live::{Feeder, LiveGenerator};
use shopdiff_connectors::{Replay, ReplayOptions, TimeConfig};
use shopdiff_dataflows::config::ViewsConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the events come from.
#[derive(Debug, Clone)]
pub enum EventSource {
    /// The built-in generator, paced by the wall clock at `speed` times the seed's volumes;
    /// its first `backfill_ms` of simulated time (from `gen.start`) are fed at once, as history.
    Generator {
        gen: GenConfig,
        speed: f64,
        backfill_ms: u64,
    },
    /// A recorded stream, replayed as fast as possible; the server keeps serving after it.
    Replay { dir: PathBuf, batch: usize },
    /// The Kafka topics (tables from `tables_dir` in its config, or PostgreSQL).
    Kafka(Box<shopdiff_connectors::kafka::KafkaSourceConfig>),
}

/// Everything `shopdiff run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub workers: usize,
    pub time: TimeConfig,
    pub views: ViewsConfig,
    pub source: EventSource,
    pub http: SocketAddr,
    pub auth: Auth,
    pub history: HistoryConfig,
    pub subscriber_buffer: usize,
    /// Live subscriptions at most, over every view.
    pub max_subscribers: usize,
    /// A subscriber that takes no event for this long while events wait for it is dropped.
    pub subscriber_timeout: Duration,
    /// A read's deadline (waiting for a reader slot included); past it, 503.
    pub read_timeout: Duration,
    /// Reads served at once, off the reactor.
    pub readers: usize,
    /// Serve any `Host` even on a loopback bind (else only loopback names, against DNS
    /// rebinding).
    pub any_host: bool,
    /// Where rejected records go (a replay or the live generator), with their reason.
    pub dead_letters: Option<PathBuf>,
    /// Serve HTTPS with these files.
    pub tls: Option<http::TlsFiles>,
    /// How often the live source cuts a batch.
    pub flush_ms: u64,
    /// Stop after this long (tests, demos); `None`: until Ctrl-C.
    pub exit_after: Option<Duration>,
    /// What `run` does when the source or a sink fails.
    pub on_failure: crate::health::OnFailure,
    /// Print progress lines to stderr every so often.
    pub progress: bool,
    /// Take the tables from PostgreSQL by CDC instead of the source's own.
    pub postgres: Option<shopdiff_connectors::postgres::CdcConfig>,
    /// Write continuous Parquet.
    pub sink: Option<shopdiff_connectors::sink::SinkConfig>,
    /// This process's place in a multi-process cluster (`None`: one process). Process 0
    /// reads the sources (and writes the sink); every process serves every view.
    pub cluster: Option<crate::runtime::ClusterConfig>,
}

impl RunConfig {
    /// Does this process read the event and table sources (and write the sink)? Process 0 of
    /// a cluster does, the others hold shards of the state and serve.
    pub fn reads_sources(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.process == 0)
    }

    /// Does this process read events? Process 0 does; with Kafka every process of a cluster
    /// reads its share of the partitions ([`RunConfig::kafka_share`]).
    pub fn reads_events(&self) -> bool {
        self.reads_sources() || matches!(self.source, EventSource::Kafka(_))
    }

    /// This process's Kafka source: in a cluster of N processes, process `i` consumes the
    /// partitions `p` with `p % N == i` (each read once in the cluster), and only process 0
    /// takes the tables from files (PostgreSQL is read by process 0 as well).
    pub fn kafka_share(
        &self,
        k: &shopdiff_connectors::kafka::KafkaSourceConfig,
    ) -> shopdiff_connectors::kafka::KafkaSourceConfig {
        let mut k = k.clone();
        if let Some(c) = &self.cluster {
            k.member = Some((c.process, c.processes()));
            if c.process != 0 {
                k.tables_dir = None;
            }
        }
        k
    }
}

/// Milliseconds since the epoch.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A running job: its engine, state for the server, and the threads to stop.
pub struct Job {
    pub engine: Arc<Engine>,
    pub state: Arc<AppState>,
    stop: Arc<AtomicBool>,
    feeder: Option<std::thread::JoinHandle<Result<(), String>>>,
    sink: Option<crate::sink_task::SinkTask>,
    alerts: Option<crate::alerts_task::AlertsTask>,
}

impl Job {
    /// Starts the engine and the source thread (not the HTTP server).
    pub fn start(cfg: &RunConfig) -> Result<Job, String> {
        let engine = Arc::new(Engine::start_with(
            &EngineConfig {
                fine_ticks: false,
                cluster: cfg.cluster.clone(),
                workers: cfg.workers,
                views: cfg.views,
            },
            cfg.history,
        )?);
        let metrics = Arc::new(Metrics::default());
        let health = crate::health::Health::new();
        let state = Arc::new(AppState {
            subscriber_buffer: cfg.subscriber_buffer,
            max_subscribers: cfg.max_subscribers,
            read_timeout: cfg.read_timeout,
            subscriber_timeout: cfg.subscriber_timeout,
            readers: Arc::new(tokio::sync::Semaphore::new(cfg.readers.max(1))),
            loopback_hosts: cfg.http.ip().is_loopback() && !cfg.any_host,
            ..AppState::new(
                engine.stores().clone(),
                metrics.clone(),
                health.clone(),
                cfg.auth.clone(),
            )
        });
        // the sink listens before the first advance, so it sees every change
        let sink = match cfg.sink.as_ref().filter(|_| cfg.reads_sources()) {
            Some(c) => {
                health.register("sink", "parquet");
                let task = crate::sink_task::SinkTask::start(
                    c.clone(),
                    engine.stores().clone(),
                    health.clone(),
                )?;
                if let Some(c) = task.committed_as_of() {
                    engine.keep_exact(c);
                }
                Some(task)
            }
            None => None,
        };
        // every process holds every view: one of them produces the alerts
        let alerts = if cfg.reads_sources() {
            crate::alerts_task::AlertsTask::for_run(cfg, engine.stores())?
        } else {
            None
        };
        let stop = Arc::new(AtomicBool::new(false));
        let feeder = if cfg.reads_events() {
            let kind = match (&cfg.source, cfg.postgres.is_some()) {
                (EventSource::Generator { .. }, false) => "generator",
                (EventSource::Generator { .. }, true) => "generator+postgres",
                (EventSource::Replay { .. }, false) => "replay",
                (EventSource::Replay { .. }, true) => "replay+postgres",
                (EventSource::Kafka(_), false) => "kafka",
                (EventSource::Kafka(_), true) => "kafka+postgres",
            };
            health.register("source", kind);
            let (engine, stop, cfg) = (engine.clone(), stop.clone(), cfg.clone());
            let health = health.clone();
            Some(
                std::thread::Builder::new()
                    .name("source".into())
                    .spawn(move || {
                        let part = crate::health::PartGuard::new(health, "source");
                        part.finish(feed(&cfg, &engine, &metrics, &stop))
                    })
                    .map_err(|e| format!("cannot start the source thread: {e}"))?,
            )
        } else {
            // this process of the cluster reads no source: its inputs must not hold the
            // cluster's frontier back
            engine.close_inputs();
            None
        };
        Ok(Job {
            engine,
            state,
            stop,
            feeder,
            sink,
            alerts,
        })
    }

    /// Stops the source; returns its error, if it failed.
    pub fn stop(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut feeder = self.feeder.take();
        if self.engine.cluster().is_some() {
            // in a cluster the source may wait on workers that wait on a process that is
            // gone or stuck: give it a few seconds, then leave it to the process exit
            let t0 = Instant::now();
            while feeder.as_ref().is_some_and(|h| !h.is_finished())
                && t0.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            if feeder.as_ref().is_some_and(|h| !h.is_finished()) {
                tracing::warn!("the source thread did not stop within 5 s; leaving it");
                feeder = None;
            }
        }
        let source = match feeder.map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the source thread panicked".into()),
            None => Ok(()),
        };
        if let Some(mut s) = self.sink.take() {
            // let the last batch fed become an as_of the sink can write
            let want = self.engine.fed_frontier();
            let t0 = Instant::now();
            while self
                .engine
                .stores()
                .as_of()
                .map(|a| a + self.engine.stores().tick())
                < Some(want)
                && t0.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            s.stop()?;
        }
        if let Some(mut a) = self.alerts.take() {
            a.stop_after(&self.engine, Duration::from_secs(10))?;
        }
        source
    }

    /// Has the source ended (a replay that reached its end, or an error)?
    pub fn source_done(&self) -> bool {
        self.feeder.as_ref().is_none_or(|h| h.is_finished())
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn open_replay(cfg: &RunConfig, dir: &std::path::Path, batch: usize) -> Result<Replay, String> {
    Replay::open(
        dir,
        ReplayOptions {
            time: cfg.time,
            batch_records: batch.max(1),
            dead_letters: cfg.dead_letters.clone(),
        },
    )
    .map_err(|e| e.to_string())
}

fn start_cdc(cfg: &RunConfig) -> Result<Option<crate::cdc::CdcDriver>, String> {
    let Some(pg) = &cfg.postgres else {
        return Ok(None);
    };
    let mut cdc = crate::cdc::CdcDriver::start(pg.clone()).map_err(|e| e.to_string())?;
    // the events' dead letters, if any, join this writer (one file, whole lines)
    if let Some(p) = &cfg.dead_letters {
        cdc.set_dead_letters(
            shopdiff_connectors::dead_letters::DeadLetters::open(Some(p))
                .map_err(|e| e.to_string())?,
        );
    }
    if !cdc
        .wait_snapshot(Duration::from_secs(120))
        .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "no initial snapshot from PostgreSQL ({}) within 120 s",
            crate::secrets::redact_url(&pg.url)
        ));
    }
    if cfg.progress {
        eprintln!("tables: initial snapshot from PostgreSQL received; following its changes");
    }
    Ok(Some(cdc))
}

fn feed(
    cfg: &RunConfig,
    engine: &Engine,
    metrics: &Metrics,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut cdc = if cfg.reads_sources() {
        start_cdc(cfg)?
    } else {
        None
    };
    match &cfg.source {
        EventSource::Replay { dir, batch } if cdc.is_some() => {
            let Some(cdc) = cdc.as_mut() else {
                return Ok(());
            };
            let replay = open_replay(cfg, dir, *batch)?;
            crate::cdc::replay_with_cdc(replay, engine, cdc, Duration::from_secs(120), |_, _| {
                Ok(())
            })
            .map_err(|e| e.to_string())?;
            // the events are over: table changes keep coming, one tick each
            let tick = cfg.time.tick_ms;
            while !stop.load(Ordering::Relaxed) {
                // changes go in at the last frontier; the batch closes that tick
                let f = engine.fed_frontier().max(cdc.last_frontier());
                let mut b = shopdiff_connectors::Batch {
                    frontier: f + tick,
                    ..Default::default()
                };
                if cdc.pending() > 0 {
                    cdc.merge(&mut b).map_err(|e| e.to_string())?;
                    engine.feed(b);
                }
                cdc.ack_completed(engine.stores());
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }
        EventSource::Replay { dir, batch } => {
            let replay = open_replay(cfg, dir, *batch)?;
            let stats = replay
                .run(|b| {
                    metrics.batch(&b);
                    !stop.load(Ordering::Relaxed) && engine.feed(b)
                })
                .map_err(|e| e.to_string())?;
            if cfg.progress {
                eprintln!(
                    "replay of {} done: {} records, as_of {}; still serving",
                    dir.display(),
                    stats.transactions + stats.behavior,
                    stats.as_of
                );
            }
            Ok(())
        }
        EventSource::Kafka(kcfg) => {
            let mut source = shopdiff_connectors::kafka::KafkaSource::open(cfg.kafka_share(kcfg))
                .map_err(|e| e.to_string())?;
            let mut last_done = None;
            while !stop.load(Ordering::Relaxed) {
                let Some(mut b) = source.next_batch().map_err(|e| e.to_string())? else {
                    break;
                };
                // a cluster member whose partitions are all idle follows the others: its
                // input frontier must not hold the cluster's as_of back (as one process, idle
                // partitions do not hold the watermark back either)
                let peer = engine.peer_frontier();
                if cfg.cluster.is_some() && source.all_idle() && peer > b.frontier {
                    source.raise_watermark(peer as shopdiff_schemas::time::Ms);
                    b.frontier = b.frontier.max(source.frontier());
                }
                if let Some(cdc) = cdc.as_mut() {
                    cdc.merge(&mut b).map_err(|e| e.to_string())?;
                    cdc.ack_completed(engine.stores());
                }
                metrics.batch(&b);
                if !engine.feed(b) {
                    break;
                }
                // commit the offsets whose records are in a complete as_of
                let done = crate::cdc::completed_as_of(engine.stores());
                if let Some(as_of) = done.filter(|_| done != last_done) {
                    last_done = done;
                    if let Err(e) = source.completed(as_of) {
                        tracing::warn!("kafka commit: {e} (retried at the next completion)");
                    }
                }
            }
            let _ = source.flush(Duration::from_secs(10));
            Ok(())
        }
        EventSource::Generator {
            gen,
            speed,
            backfill_ms,
        } => {
            let mut feeder = Feeder::new(cfg.time);
            if let Some(p) = &cfg.dead_letters {
                feeder.set_dead_letters(
                    shopdiff_connectors::dead_letters::DeadLetters::open(Some(p))
                        .map_err(|e| e.to_string())?,
                );
            }
            let mut live = LiveGenerator::new(gen, *speed, cdc.is_none(), &mut feeder)?;
            live.backfill(*backfill_ms);
            if *backfill_ms > 0 && cfg.progress {
                eprintln!(
                    "live: backfilling {:.1} simulated days of history, then live at {speed}x",
                    *backfill_ms as f64 / 86_400_000.0
                );
            }
            let wall0 = Instant::now();
            let mut last_report = Instant::now();
            let flush = Duration::from_millis(cfg.flush_ms.max(1));
            while !stop.load(Ordering::Relaxed) {
                let elapsed = wall0.elapsed().as_millis() as u64;
                let done = live.feed_due(elapsed, 200_000, &mut feeder).is_none();
                let mut b = feeder.cut();
                if let Some(cdc) = cdc.as_mut() {
                    cdc.merge(&mut b).map_err(|e| e.to_string())?;
                    cdc.ack_completed(engine.stores());
                }
                metrics.batch(&b);
                if let Some(w) = feeder.ingest().watermark() {
                    metrics.set_watermark(w);
                }
                if !engine.feed(b) || done {
                    break;
                }
                if cfg.progress && last_report.elapsed() >= Duration::from_secs(10) {
                    last_report = Instant::now();
                    let s = &feeder.stats;
                    eprintln!(
                        "live: {} transaction lines, {} behavior events ({} rejected, {} duplicates, {} late), {} table changes; as_of {:?}",
                        s.transactions, s.behavior, s.rejected, s.duplicates, s.late, s.changes_applied,
                        engine.stores().as_of()
                    );
                }
                if let Err(e) = feeder.flush_dead_letters() {
                    tracing::error!("dead letters: {e}");
                }
                std::thread::sleep(flush);
            }
            feeder.flush_dead_letters().map_err(|e| e.to_string())
        }
    }
}

/// A job with its HTTP server running on its own runtime.
pub struct Served {
    pub job: Job,
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    rt: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    /// Starts the job and binds the server (port 0 picks a free port: see `addr`).
    pub fn start(cfg: &RunConfig) -> anyhow::Result<Served> {
        // a wrong certificate is an error before anything starts
        let acceptor = match &cfg.tls {
            Some(files) => Some(http::tls_acceptor(files).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let job = Job::start(cfg).map_err(anyhow::Error::msg)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("http")
            .enable_all()
            .build()?;
        let state = job.state.clone();
        let want = cfg.http;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(want))
            .map_err(|e| anyhow::anyhow!("cannot listen on {want}: {e}"))?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            let _ = rx.await;
        };
        let server = match acceptor {
            Some(a) => rt.spawn(http::serve_tls(state, listener, a, stop)),
            None => rt.spawn(http::serve(state, listener, stop)),
        };
        Ok(Served {
            scheme: if cfg.tls.is_some() { "https" } else { "http" },
            job,
            addr,
            rt: Some(rt),
            shutdown: Some(tx),
            server: Some(server),
        })
    }

    /// Stops the server and the source.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop_server();
        self.job.stop()
    }

    fn stop_server(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let (Some(rt), Some(server)) = (self.rt.take(), self.server.take()) {
            let _ =
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), server).await });
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// Runs the job and the server until Ctrl-C or `exit_after`.
pub fn run(cfg: RunConfig) -> anyhow::Result<()> {
    let served = Served::start(&cfg)?;
    let (local, sc) = (served.addr, served.scheme);
    if let Some(c) = &cfg.cluster {
        eprintln!(
            "process {} of a cluster of {} ({}); {}",
            c.process,
            c.processes(),
            c.addresses.join(", "),
            if c.process == 0 {
                "this process reads the sources"
            } else {
                "process 0 reads the sources; this one holds a shard and serves every view"
            }
        );
    }
    eprintln!("shopdiff is serving {sc}://{local}/ (dashboard), {sc}://{local}/v1/views (API), {sc}://{local}/metrics; Ctrl-C stops it");
    let wait = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = wait.block_on(async {
        let exit_after = async {
            match cfg.exit_after {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        // Ctrl-C, or SIGTERM from scripts/cluster.sh stop
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        // a part that fails ends the run (unless told to keep serving)
        let health = served.job.state.health.clone();
        let failed = async {
            if cfg.on_failure == crate::health::OnFailure::Serve {
                return std::future::pending().await;
            }
            loop {
                if let Some(f) = health.failed() {
                    return f;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            _ = exit_after => None,
            _ = tokio::signal::ctrl_c() => None,
            _ = term => None,
            f = failed => Some(f),
        }
    });
    eprintln!("stopping");
    let stopped = served.stop();
    if let Some((part, why)) = outcome {
        anyhow::bail!("the {part} failed: {why} (--on-failure serve keeps serving instead)");
    }
    stopped.map_err(anyhow::Error::msg)
}
