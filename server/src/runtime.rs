//! The runtime: timely workers, their inputs, the views' dataflow, probes and stores.
//!
//! A feeder (a replay, a generator, later Kafka and CDC) produces [`Batch`]es in the time model
//! of `connectors::ingest`. [`Engine::feed`] splits each batch over the workers round-robin;
//! each worker inserts its share at the records' own ticks and advances its inputs to the
//! batch's frontier, so records are spread over all workers and differential exchanges them by
//! key. Workers take a new batch only while fewer than [`MAX_IN_FLIGHT`] are incomplete, which
//! bounds memory; the feeder blocks on the workers' bounded queues.
//!
//! # A cluster of processes
//!
//! With a [`ClusterConfig`] the engine is one process of a timely cluster (see
//! [`crate::cluster`]): a process that feeds nothing closes its inputs
//! ([`Engine::close_inputs`]), every view's changes reach every process's stores, and when a
//! process dies the others' workers unwind and mark the stores failed ([`Stores::fail`]), so
//! they answer with the reason instead of numbers that silently stopped advancing.

pub use crate::cluster::ClusterConfig;
use crate::cluster::{execute_counting, install_panic_hook, to_every_process, FailOnPanic, Layout};
use crate::store::{HistoryConfig, Stores, ViewStore};
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use differential_dataflow::input::{Input, InputSession};
use shopdiff_connectors::Batch;
use shopdiff_dataflows::common::Coll;
use shopdiff_dataflows::config::ViewsConfig;
use shopdiff_dataflows::views::{all_views, InputColls};
use shopdiff_schemas::records::{Event, Line};
use shopdiff_schemas::rows::{
    self, AlertRow, CohortRow, FunnelRow, InventoryRow, ProductPerfRow, QualityRow, RevenueRow,
    RfmRow, Row, SegmentRow,
};
use shopdiff_schemas::tables::{Customer, IpRep, Product, TableRow};
use shopdiff_schemas::{Reason, Source, Str};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use timely::dataflow::operators::probe::Handle;
use timely::worker::Worker;

/// Batches a worker may have taken whose frontier its probe has not passed yet.
pub const MAX_IN_FLIGHT: usize = 3;

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads in this process.
    pub workers: usize,
    /// The views' settings (tick, fraud rules).
    pub views: ViewsConfig,
    /// This process's place in a multi-process cluster (`None`: a single process).
    pub cluster: Option<ClusterConfig>,
    /// Compute the views at every tick (`true`), or each batch at its `as_of` (`false`, the
    /// default): see [`Engine::feed`]. A cluster always computes every tick.
    pub fine_ticks: bool,
}

/// A worker's share of a batch.
#[derive(Default)]
struct Part {
    lines: Vec<(Line, u64)>,
    events: Vec<(Event, u64)>,
    quality: Vec<(Source, Reason, u64, i64)>,
    tables: Vec<(TableRow, u64, isize)>,
    frontier: u64,
}

enum Msg {
    Part(Part),
    /// No more input from this process: close the inputs once everything below the last
    /// frontier fed (given) is complete.
    Finish(u64),
}

/// Typed handles on the stores the workers write to.
#[derive(Clone)]
struct Sinks {
    rfm: Arc<ViewStore<RfmRow>>,
    rfm_segments: Arc<ViewStore<SegmentRow>>,
    cohorts: Arc<ViewStore<CohortRow>>,
    revenue_hourly: Arc<ViewStore<RevenueRow>>,
    revenue_daily: Arc<ViewStore<RevenueRow>>,
    fraud_alerts: Arc<ViewStore<AlertRow>>,
    product_performance: Arc<ViewStore<ProductPerfRow>>,
    inventory: Arc<ViewStore<InventoryRow>>,
    funnel_daily: Arc<ViewStore<FunnelRow>>,
    data_quality: Arc<ViewStore<QualityRow>>,
}

impl Sinks {
    fn new(tick: u64, h: HistoryConfig) -> Sinks {
        Sinks {
            rfm: ViewStore::with_history(rows::RFM, tick, h),
            rfm_segments: ViewStore::with_history(rows::RFM_SEGMENTS, tick, h),
            cohorts: ViewStore::with_history(rows::COHORTS, tick, h),
            revenue_hourly: ViewStore::with_history(rows::REVENUE_HOURLY, tick, h),
            revenue_daily: ViewStore::with_history(rows::REVENUE_DAILY, tick, h),
            fraud_alerts: ViewStore::with_history(rows::FRAUD_ALERTS, tick, h),
            product_performance: ViewStore::with_history(rows::PRODUCT_PERFORMANCE, tick, h),
            inventory: ViewStore::with_history(rows::INVENTORY, tick, h),
            funnel_daily: ViewStore::with_history(rows::FUNNEL_DAILY, tick, h),
            data_quality: ViewStore::with_history(rows::DATA_QUALITY, tick, h),
        }
    }

    fn stores(&self) -> Stores {
        let mut s = Stores::new(self.rfm.tick());
        s.add(self.rfm.clone());
        s.add(self.rfm_segments.clone());
        s.add(self.cohorts.clone());
        s.add(self.revenue_hourly.clone());
        s.add(self.revenue_daily.clone());
        s.add(self.fraud_alerts.clone());
        s.add(self.product_performance.clone());
        s.add(self.inventory.clone());
        s.add(self.funnel_daily.clone());
        s.add(self.data_quality.clone());
        s
    }
}

/// A running engine: its workers, their queues and the view stores.
pub struct Engine {
    senders: Vec<Sender<Msg>>,
    /// The worker threads of this process, once they run: [`Engine::feed`] wakes them, since a
    /// worker with nothing to do parks (up to 1 ms) and a new part is no timely activation.
    threads: Arc<std::sync::Mutex<Vec<Option<std::thread::Thread>>>>,
    /// Filled once the workers run (at once for one process; once the cluster has connected
    /// otherwise). Behind a mutex only so that an `Engine` can be shared (`WorkerGuards` is
    /// not `Sync`).
    guards: Arc<std::sync::Mutex<Option<timely::communication::WorkerGuards<()>>>>,
    /// Connects the cluster and starts the workers (cluster mode only).
    connect: Option<std::thread::JoinHandle<()>>,
    stores: Stores,
    publisher: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    fed_frontier: std::sync::atomic::AtomicU64,
    /// What the processes of the cluster fed (their marks).
    marks: Arc<Marks>,
    inputs_closed: AtomicBool,
    cluster: Option<ClusterConfig>,
    /// Each batch is computed at its `as_of` (see [`Engine::feed`]).
    batch_ticks: bool,
    /// An `as_of` kept exact although no batch may end there ([`Engine::keep_exact`];
    /// `u64::MAX`: none).
    exact_as_of: std::sync::atomic::AtomicU64,
}

/// The frontiers the processes of a cluster fed, learnt from the `marks` control collection:
/// each process's first worker inserts `(process, frontier, closed)` with every batch (cluster
/// mode) and when it closes its inputs; every process receives every mark at once (data flows
/// ahead of the frontier).
struct Marks {
    /// The largest frontier any process fed before closing its inputs.
    closed: std::sync::atomic::AtomicU64,
    /// The largest frontier each process fed so far.
    fed: Vec<std::sync::atomic::AtomicU64>,
}

impl Marks {
    fn new(processes: usize) -> Marks {
        Marks {
            closed: Default::default(),
            fed: (0..processes).map(|_| Default::default()).collect(),
        }
    }

    fn record(&self, process: usize, frontier: u64, closed: bool) {
        if closed {
            self.closed.fetch_max(frontier, Ordering::Relaxed);
        }
        if let Some(f) = self.fed.get(process) {
            f.fetch_max(frontier, Ordering::Relaxed);
        }
    }
}

struct Inputs {
    /// `(process, frontier fed, inputs closed)`: see [`Marks`].
    marks: InputSession<u64, (usize, u64, bool), isize>,
    lines: InputSession<u64, Line, isize>,
    events: InputSession<u64, Event, isize>,
    quality: InputSession<u64, (Source, Reason), isize>,
    products: InputSession<u64, (Str, Product), isize>,
    customers: InputSession<u64, (Str, Customer), isize>,
    ips: InputSession<u64, (Str, IpRep), isize>,
}

impl Inputs {
    fn apply(&mut self, p: Part) {
        for (l, t) in p.lines {
            self.lines.update_at(l, t, 1);
        }
        for (e, t) in p.events {
            self.events.update_at(e, t, 1);
        }
        for (s, r, t, n) in p.quality {
            self.quality.update_at((s, r), t, n as isize);
        }
        for (row, t, d) in p.tables {
            match row {
                TableRow::Product(x) => self.products.update_at((x.product_id.clone(), x), t, d),
                TableRow::Customer(x) => self.customers.update_at((x.user_id.clone(), x), t, d),
                TableRow::Ip(x) => self.ips.update_at((x.ip_address.clone(), x), t, d),
            }
        }
        self.advance(p.frontier);
    }

    fn advance(&mut self, f: u64) {
        if f > *self.lines.time() {
            self.marks.advance_to(f);
            self.lines.advance_to(f);
            self.events.advance_to(f);
            self.quality.advance_to(f);
            self.products.advance_to(f);
            self.customers.advance_to(f);
            self.ips.advance_to(f);
        }
        self.marks.flush();
        self.lines.flush();
        self.events.flush();
        self.quality.flush();
        self.products.flush();
        self.customers.flush();
        self.ips.flush();
    }
}

fn sink<'s, R: Row + differential_dataflow::ExchangeData>(
    c: Coll<'s, R>,
    store: Arc<ViewStore<R>>,
    probe: &Handle<u64>,
    layout: Layout,
) {
    to_every_process(c, layout)
        .inspect_batch(move |_, upds| store.push(upds))
        .probe_with(probe);
}

fn build(
    worker: &mut Worker,
    sinks: Sinks,
    cfg: &ViewsConfig,
    probe: &Handle<u64>,
    layout: Layout,
    marks: Arc<Marks>,
) -> Inputs {
    worker.dataflow::<u64, _, _>(|scope| {
        let (marks_in, marks_coll) = scope.new_collection::<(usize, u64, bool), isize>();
        to_every_process(marks_coll, layout)
            .inspect(move |((p, f, closed), _, _)| marks.record(*p, *f, *closed))
            .probe_with(probe);
        let (lines_in, lines) = scope.new_collection::<Line, isize>();
        let (events_in, events) = scope.new_collection::<Event, isize>();
        let (quality_in, quality) = scope.new_collection::<(Source, Reason), isize>();
        let (products_in, products) = scope.new_collection::<(Str, Product), isize>();
        let (customers_in, customers) = scope.new_collection::<(Str, Customer), isize>();
        let (ips_in, ips) = scope.new_collection::<(Str, IpRep), isize>();
        let v = all_views(
            InputColls {
                lines,
                events,
                quality,
                products,
                customers,
                ips,
            },
            cfg,
        );
        sink(v.rfm, sinks.rfm, probe, layout);
        sink(v.rfm_segments, sinks.rfm_segments, probe, layout);
        sink(v.cohorts, sinks.cohorts, probe, layout);
        sink(v.revenue_hourly, sinks.revenue_hourly, probe, layout);
        sink(v.revenue_daily, sinks.revenue_daily, probe, layout);
        sink(v.fraud_alerts, sinks.fraud_alerts, probe, layout);
        sink(
            v.product_performance,
            sinks.product_performance,
            probe,
            layout,
        );
        sink(v.inventory, sinks.inventory, probe, layout);
        sink(v.funnel_daily, sinks.funnel_daily, probe, layout);
        sink(v.data_quality, sinks.data_quality, probe, layout);
        Inputs {
            marks: marks_in,
            lines: lines_in,
            events: events_in,
            quality: quality_in,
            products: products_in,
            customers: customers_in,
            ips: ips_in,
        }
    })
}

fn less_than(probe: &Handle<u64>, t: u64) -> bool {
    probe.less_than(&t)
}

struct WorkerCtx {
    sinks: Sinks,
    views: ViewsConfig,
    stores: Stores,
    layout: Layout,
    marks: Arc<Marks>,
    /// [`Spin`]'s limit, read once from `SHOPDIFF_SPIN_US`.
    spin: Duration,
}

/// How long a worker with one batch in flight keeps stepping instead of parking once it has
/// nothing to do ([`Spin`]); `SHOPDIFF_SPIN_US` overrides it (`0`: always park).
pub const SPIN_DEFAULT: Duration = Duration::from_millis(5);

/// The most a worker spins for one batch, whatever its steps look like.
const SPIN_CAP: Duration = Duration::from_millis(250);

/// A step that takes longer than this did some work (an idle step of the views' dataflow takes
/// a few microseconds).
const BUSY_STEP: Duration = Duration::from_micros(5);

/// Whether a worker waiting for its share of one batch (the other workers' exchanged records,
/// the next operator's activation) keeps stepping instead of parking.
///
/// Within an update the workers wait for each other many times, for a few to a few hundred
/// microseconds each; parked, each wait ends with a futex wake-up and, on a virtual machine, a
/// vCPU that has to be scheduled again, and the update bench measured those wake-ups at 1.5-2.5
/// ms of a 1,000-line update's 10-12 ms. So while exactly one batch is in flight (an update
/// arriving on a quiet engine: latency matters) a worker spins for up to [`SPIN_DEFAULT`] after
/// its last busy step, and never more than [`SPIN_CAP`] for one batch. With more batches in
/// flight (a replay, a backlog) or none (idle), it parks at once: the readers, the sequencer
/// and the publisher need the cores, and an idle engine burns none.
struct Spin {
    limit: Duration,
    /// The last step that did work (or the last wake-up).
    last_busy: std::time::Instant,
    /// When the worker started spinning for the current batch (`None`: it is not).
    since: Option<std::time::Instant>,
}

/// [`Spin`]'s limit: `SHOPDIFF_SPIN_US` in microseconds, else [`SPIN_DEFAULT`]; a value that is
/// not a whole number of microseconds is reported (naming the variable and the value) and the
/// default is used.
fn spin_limit_from_env() -> Duration {
    let Some(v) = std::env::var_os("SHOPDIFF_SPIN_US") else {
        return SPIN_DEFAULT;
    };
    match v.to_str().and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(us) => Duration::from_micros(us),
        None => {
            tracing::warn!(
                "SHOPDIFF_SPIN_US={v:?} is not a whole number of microseconds; the workers spin up to the default {} µs",
                SPIN_DEFAULT.as_micros()
            );
            SPIN_DEFAULT
        }
    }
}

impl Spin {
    fn new(limit: Duration) -> Spin {
        Spin {
            limit,
            last_busy: std::time::Instant::now(),
            since: None,
        }
    }

    /// Whether to step without parking, with `in_flight` batches in flight.
    fn active(&mut self, in_flight: usize) -> bool {
        if in_flight != 1 || self.limit.is_zero() {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        self.last_busy.elapsed() < self.limit && since.elapsed() < SPIN_CAP
    }

    /// One step without parking; notes whether it did work.
    fn step(&mut self, worker: &mut Worker) {
        let start = std::time::Instant::now();
        worker.step();
        if start.elapsed() > BUSY_STEP {
            self.last_busy = start;
        }
    }

    /// The worker parked (and was woken): what wakes it counts as work.
    fn parked(&mut self) {
        self.last_busy = std::time::Instant::now();
    }
}

fn worker_loop(worker: &mut Worker, rx: Receiver<Msg>, ctx: &WorkerCtx) {
    let _guard = FailOnPanic {
        stores: ctx.stores.clone(),
        cluster: ctx.layout.processes > 1,
    };
    let probe = Handle::new();
    let mut inputs = Some(build(
        worker,
        ctx.sinks.clone(),
        &ctx.views,
        &probe,
        ctx.layout,
        ctx.marks.clone(),
    ));
    let first_local = worker.index().is_multiple_of(ctx.layout.threads);
    let mut in_flight: std::collections::VecDeque<u64> = Default::default();
    let mut finishing = false;
    let mut spin = Spin::new(ctx.spin);
    loop {
        while in_flight.front().is_some_and(|f| !less_than(&probe, *f)) {
            in_flight.pop_front();
        }
        if let Some(i) = inputs.as_mut().filter(|_| !finishing) {
            if in_flight.len() < MAX_IN_FLIGHT {
                match rx.try_recv() {
                    Ok(Msg::Part(p)) => {
                        in_flight.push_back(p.frontier);
                        if first_local && ctx.layout.processes > 1 {
                            // tell the other processes how far this one fed
                            let t = *i.marks.time();
                            i.marks
                                .update_at((ctx.layout.process, p.frontier, false), t, 1);
                        }
                        i.apply(p);
                    }
                    Ok(Msg::Finish(fed)) => {
                        // tell every process how far this one fed, so a process that fed
                        // nothing knows the final as_of once every input is closed
                        if first_local && fed > 0 {
                            let t = *i.marks.time();
                            i.marks.update_at((ctx.layout.process, fed, true), t, 1);
                            i.advance(t);
                        }
                        finishing = true;
                    }
                    Err(TryRecvError::Disconnected) => finishing = true,
                    Err(TryRecvError::Empty) => {}
                }
            }
        }
        if spin.active(in_flight.len()) {
            spin.step(worker);
        } else {
            worker.step_or_park(Some(Duration::from_millis(1)));
            spin.parked();
        }
        probe.with_frontier(|f| {
            if let Some(t) = f.first() {
                // once a process closed its inputs, the frontier may run past the last one it
                // fed (records it inserted beyond it are never complete): never further
                let cap = ctx.marks.closed.load(Ordering::Relaxed);
                ctx.stores.notify(if cap > 0 { (*t).min(cap) } else { *t });
            }
        });
        if finishing {
            if let Some(i) = &inputs {
                if !less_than(&probe, *i.lines.time()) {
                    // everything this process fed is complete: close its inputs (dropping the
                    // sessions), then run until the whole cluster is done
                    inputs = None;
                }
            }
        }
        if inputs.is_none() && probe.done() {
            break;
        }
    }
}

impl Engine {
    /// Starts the workers and builds every view's dataflow.
    pub fn start(cfg: &EngineConfig) -> Result<Engine, String> {
        Self::start_with(cfg, HistoryConfig::default())
    }

    /// Starts the workers, keeping `history` of every view for older reads and resumes.
    ///
    /// In a cluster the workers start once every process of the hostfile has connected (in a
    /// background thread: this returns at once, [`Engine::feed`] blocks until then, and the
    /// stores say what they wait for). An error to connect fails the stores.
    pub fn start_with(cfg: &EngineConfig, history: HistoryConfig) -> Result<Engine, String> {
        install_panic_hook();
        crate::tune_allocator();
        let sinks = Sinks::new(cfg.views.tick_ms, history);
        let stores = sinks.stores();
        // SHOPDIFF_FINE_TICKS (any value) computes every tick, to compare
        let batch_ticks = !cfg.fine_ticks
            && cfg.cluster.is_none()
            && std::env::var_os("SHOPDIFF_FINE_TICKS").is_none();
        stores.set_batch_as_ofs(batch_ticks);
        let workers = cfg.workers.max(1);
        let layout = Layout {
            process: cfg.cluster.as_ref().map_or(0, |c| c.process),
            processes: cfg.cluster.as_ref().map_or(1, |c| c.processes()),
            threads: workers,
        };
        let marks = Arc::new(Marks::new(layout.processes));
        let ctx = Arc::new(WorkerCtx {
            sinks,
            views: cfg.views,
            stores: stores.clone(),
            layout,
            marks: marks.clone(),
            spin: spin_limit_from_env(),
        });
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| bounded::<Msg>(2)).unzip();
        let receivers = Arc::new(std::sync::Mutex::new(
            receivers.into_iter().map(Some).collect::<Vec<_>>(),
        ));
        let threads: Arc<std::sync::Mutex<Vec<Option<std::thread::Thread>>>> =
            Arc::new(std::sync::Mutex::new(vec![None; workers]));
        let worker_threads = threads.clone();
        let body = move |worker: &mut Worker| {
            let local = worker.index() % workers;
            let rx = receivers.lock().ok().and_then(|mut r| r[local].take());
            let Some(rx) = rx else { return };
            if let Ok(mut t) = worker_threads.lock() {
                t[local] = Some(std::thread::current());
            }
            worker_loop(worker, rx, &ctx);
        };
        let guards = Arc::new(std::sync::Mutex::new(None));
        let mut connect = None;
        match &cfg.cluster {
            None => {
                let g = timely::execute(timely::Config::process(workers), body)?;
                if let Ok(mut slot) = guards.lock() {
                    *slot = Some(g);
                }
            }
            Some(c) => {
                let config = timely::Config {
                    communication: timely::CommunicationConfig::Cluster {
                        threads: workers,
                        process: c.process,
                        addresses: c.addresses.clone(),
                        report: false,
                        zerocopy: false,
                    },
                    worker: timely::WorkerConfig::default(),
                };
                stores.set_note(Some(format!(
                    "process {} of {} is connecting to the others: {}",
                    c.process,
                    c.processes(),
                    c.addresses.join(", ")
                )));
                let (slot, st) = (guards.clone(), stores.clone());
                connect = Some(
                    std::thread::Builder::new()
                        .name("cluster-connect".into())
                        .spawn(move || {
                            match execute_counting(config, st.cluster_bytes_sent(), body) {
                                Ok(g) => {
                                    st.set_note(None);
                                    if let Ok(mut s) = slot.lock() {
                                        *s = Some(g);
                                    }
                                }
                                Err(e) => st.fail(&format!("cannot start the cluster: {e}")),
                            }
                        })
                        .map_err(|e| format!("cannot start the cluster thread: {e}"))?,
                );
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (pub_stores, pub_stop) = (stores.clone(), stop.clone());
        let publisher = std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || pub_stores.publish_until(&pub_stop))
            .map_err(|e| format!("cannot start the publisher thread: {e}"))?;
        Ok(Engine {
            senders,
            threads,
            guards,
            connect,
            stores,
            publisher: Some(publisher),
            stop,
            fed_frontier: Default::default(),
            marks,
            inputs_closed: AtomicBool::new(false),
            cluster: cfg.cluster.clone(),
            batch_ticks,
            exact_as_of: std::sync::atomic::AtomicU64::new(u64::MAX),
        })
    }

    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Keeps the views' state at `as_of` exact in their history even when batches are
    /// computed at their own `as_of`s (see [`Engine::feed`]): a restarted sink resumes from
    /// its committed `as_of` by difference with it. Call before the first batch.
    pub fn keep_exact(&self, as_of: u64) {
        self.exact_as_of.store(as_of, Ordering::Relaxed);
    }

    /// This process's place in the cluster (`None`: a single process).
    pub fn cluster(&self) -> Option<&ClusterConfig> {
        self.cluster.as_ref()
    }

    /// Hands a batch to the workers, split round-robin; blocks while their queues are full.
    /// `false` once the workers are gone (the engine failed or finished).
    ///
    /// Unless the engine computes every tick ([`EngineConfig::fine_ticks`], and always in a
    /// cluster), every update of the batch whose tick is below its frontier is fed at the
    /// batch's `as_of` (`frontier - tick`) instead. No `as_of` between two batches is ever
    /// published, so every published one is still exact: each view is a function of the
    /// records and table rows up to it, and windows take their bounds from the records'
    /// own ticks (a record whose window has passed by the `as_of` enters and leaves at
    /// once). The dataflow then works through one time per batch rather than one per tick
    /// (a shop's month has about two records per tick: 2.8x the replay's records/s).
    /// Updates at or past the frontier keep their tick. A read at an older `as_of` answers at
    /// the latest published one at or before it ([`Stores::snap_as_of`]).
    pub fn feed(&self, mut b: Batch) -> bool {
        if self.inputs_closed.load(Ordering::Relaxed) {
            return false;
        }
        let prev = self.fed_frontier.fetch_max(b.frontier, Ordering::Relaxed);
        if self.batch_ticks {
            let exact = self.exact_as_of.load(Ordering::Relaxed);
            b.compute_at_as_of(
                prev,
                self.stores.tick(),
                (exact != u64::MAX).then_some(exact),
            );
        }
        let n = self.senders.len();
        // sized up front: no vector of a part grows by doubling
        let mut parts: Vec<Part> = (0..n)
            .map(|_| Part {
                frontier: b.frontier,
                lines: Vec::with_capacity(b.lines.len().div_ceil(n)),
                events: Vec::with_capacity(b.events.len().div_ceil(n)),
                ..Part::default()
            })
            .collect();
        for (i, x) in b.lines.into_iter().enumerate() {
            parts[i % n].lines.push(x);
        }
        for (i, x) in b.events.into_iter().enumerate() {
            parts[i % n].events.push(x);
        }
        for (i, x) in b.quality.into_iter().enumerate() {
            parts[i % n].quality.push(x);
        }
        for (i, x) in b.tables.into_iter().enumerate() {
            parts[i % n].tables.push(x);
        }
        let sent = parts
            .into_iter()
            .zip(&self.senders)
            .all(|(p, s)| s.send(Msg::Part(p)).is_ok());
        self.wake_workers();
        sent
    }

    /// Unparks this process's workers, so they take what was just sent without waiting out
    /// their park.
    fn wake_workers(&self) {
        if let Ok(threads) = self.threads.lock() {
            threads.iter().flatten().for_each(|t| t.unpark());
        }
    }

    /// This process feeds nothing more: its workers close their inputs once what it fed is
    /// complete, so they no longer hold the cluster's frontier back. A process of a cluster
    /// that reads no source calls this at once. Idempotent.
    pub fn close_inputs(&self) {
        if self.inputs_closed.swap(true, Ordering::Relaxed) {
            return;
        }
        let fed = self.fed_frontier.load(Ordering::Relaxed);
        for s in &self.senders {
            let _ = s.send(Msg::Finish(fed));
        }
        self.wake_workers();
    }

    /// No more input: waits until every view is complete at the last frontier fed (by any
    /// process of the cluster), then stops the workers.
    pub fn finish(mut self) -> Result<Stores, String> {
        self.close_inputs();
        if let Some(c) = self.connect.take() {
            let _ = c.join();
        }
        let guards = self.guards.lock().ok().and_then(|mut g| g.take());
        if let Some(g) = guards {
            for r in g.join() {
                r?;
            }
        }
        if let Some(why) = self.stores.failure() {
            return Err(why);
        }
        self.stop_publisher();
        // everything below the last frontier fed is complete
        let last = self
            .fed_frontier
            .load(Ordering::Relaxed)
            .max(self.marks.closed.load(Ordering::Relaxed));
        self.stores.advance(last);
        Ok(self.stores.clone())
    }

    /// The largest frontier fed so far.
    pub fn fed_frontier(&self) -> u64 {
        self.fed_frontier.load(Ordering::Relaxed)
    }

    /// The largest frontier another process of the cluster fed (0 in a single process): a
    /// process whose own sources are all idle may advance to it, so that it does not hold the
    /// cluster's `as_of` back (each process's input frontier bounds the global one).
    pub fn peer_frontier(&self) -> u64 {
        let me = self.cluster.as_ref().map_or(0, |c| c.process);
        self.marks
            .fed
            .iter()
            .enumerate()
            .filter(|(p, _)| *p != me)
            .map(|(_, f)| f.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    fn stop_publisher(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.stores.notify(0);
        if let Some(p) = self.publisher.take() {
            let _ = p.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_publisher();
        if self.cluster.is_some() {
            // the workers of a cluster only end with every process's inputs closed: a process
            // that stops on its own (Ctrl-C) leaves them to the process exit instead of
            // waiting for the others
            if let Ok(mut g) = self.guards.lock() {
                if let Some(g) = g.take() {
                    std::mem::forget(g);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn spin(limit: Duration, busy_ago: Duration) -> Spin {
        Spin {
            limit,
            last_busy: Instant::now() - busy_ago,
            since: None,
        }
    }

    /// A worker spins only with exactly one batch in flight, within the limit after its last
    /// busy step, and not at all when the limit is 0.
    #[test]
    fn a_worker_spins_only_for_a_lone_batch_and_only_for_a_while() {
        // a limit no scheduling hiccup of the test thread reaches, where it must spin
        let long = Duration::from_secs(600);
        let mut s = spin(long, Duration::ZERO);
        assert!(!s.active(0), "idle: park");
        assert!(!s.active(2), "a backlog: park, the readers need the core");
        assert!(s.active(1), "one batch, just busy: spin");
        let mut s = spin(SPIN_DEFAULT, SPIN_DEFAULT * 2);
        assert!(!s.active(1), "idle past the limit: park");
        s.limit = long;
        s.parked();
        assert!(s.active(1), "woken: spin again");
        let mut s = spin(Duration::ZERO, Duration::ZERO);
        assert!(!s.active(1), "SHOPDIFF_SPIN_US=0: never spin");
    }

    /// However busy its steps look, a worker spins at most `SPIN_CAP` for one batch, and the
    /// cap starts again with the next batch.
    #[test]
    fn spinning_for_one_batch_is_capped() {
        let mut s = spin(Duration::from_secs(600), Duration::ZERO);
        assert!(s.active(1));
        s.since = Some(Instant::now() - SPIN_CAP);
        assert!(!s.active(1), "past the cap");
        assert!(!s.active(0), "the batch is done");
        assert!(s.active(1), "the next batch spins again");
    }
}
