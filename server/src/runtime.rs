//! The runtime: timely workers, their inputs, the views' dataflow, probes and stores.
//!
//! A feeder (a replay, a generator, later Kafka and CDC) produces [`Batch`]es in the time model
//! of `connectors::ingest`. [`Engine::feed`] splits each batch over the workers round-robin;
//! each worker inserts its share at the records' own ticks and advances its inputs to the
//! batch's frontier, so records are spread over all workers and differential exchanges them by
//! key. Workers take a new batch only while fewer than [`MAX_IN_FLIGHT`] are incomplete, which
//! bounds memory; the feeder blocks on the workers' bounded queues.

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
    /// No more input: finish once everything below the last frontier is complete.
    Finish,
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
    /// Behind a mutex only so that an `Engine` can be shared (`WorkerGuards` is not `Sync`).
    guards: std::sync::Mutex<Option<timely::communication::WorkerGuards<()>>>,
    stores: Stores,
    publisher: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    fed_frontier: std::sync::atomic::AtomicU64,
}

struct Inputs {
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
            self.lines.advance_to(f);
            self.events.advance_to(f);
            self.quality.advance_to(f);
            self.products.advance_to(f);
            self.customers.advance_to(f);
            self.ips.advance_to(f);
        }
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
) {
    c.inspect_batch(move |_, upds| store.push(upds))
        .probe_with(probe);
}

fn build(worker: &mut Worker, sinks: Sinks, cfg: &ViewsConfig, probe: &Handle<u64>) -> Inputs {
    worker.dataflow::<u64, _, _>(|scope| {
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
        sink(v.rfm, sinks.rfm, probe);
        sink(v.rfm_segments, sinks.rfm_segments, probe);
        sink(v.cohorts, sinks.cohorts, probe);
        sink(v.revenue_hourly, sinks.revenue_hourly, probe);
        sink(v.revenue_daily, sinks.revenue_daily, probe);
        sink(v.fraud_alerts, sinks.fraud_alerts, probe);
        sink(v.product_performance, sinks.product_performance, probe);
        sink(v.inventory, sinks.inventory, probe);
        sink(v.funnel_daily, sinks.funnel_daily, probe);
        sink(v.data_quality, sinks.data_quality, probe);
        Inputs {
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

fn worker_loop(
    worker: &mut Worker,
    rx: Receiver<Msg>,
    sinks: Sinks,
    cfg: &ViewsConfig,
    stores: Stores,
) {
    let probe = Handle::new();
    let mut inputs = build(worker, sinks, cfg, &probe);
    let mut in_flight: std::collections::VecDeque<u64> = Default::default();
    let mut finishing = false;
    loop {
        while in_flight.front().is_some_and(|f| !less_than(&probe, *f)) {
            in_flight.pop_front();
        }
        if !finishing && in_flight.len() < MAX_IN_FLIGHT {
            match rx.try_recv() {
                Ok(Msg::Part(p)) => {
                    in_flight.push_back(p.frontier);
                    inputs.apply(p);
                }
                Ok(Msg::Finish) | Err(TryRecvError::Disconnected) => finishing = true,
                Err(TryRecvError::Empty) => {}
            }
        }
        worker.step_or_park(Some(Duration::from_millis(1)));
        probe.with_frontier(|f| {
            if let Some(t) = f.first() {
                stores.notify(*t);
            }
        });
        if finishing && !less_than(&probe, *inputs.lines.time()) {
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
    pub fn start_with(cfg: &EngineConfig, history: HistoryConfig) -> Result<Engine, String> {
        let sinks = Sinks::new(cfg.views.tick_ms, history);
        let stores = sinks.stores();
        let views = cfg.views;
        let workers = cfg.workers.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| bounded::<Msg>(2)).unzip();
        let receivers = Arc::new(std::sync::Mutex::new(
            receivers.into_iter().map(Some).collect::<Vec<_>>(),
        ));
        let worker_stores = stores.clone();
        let guards = timely::execute(timely::Config::process(workers), move |worker| {
            let rx = receivers
                .lock()
                .ok()
                .and_then(|mut r| r[worker.index()].take());
            let Some(rx) = rx else { return };
            worker_loop(worker, rx, sinks.clone(), &views, worker_stores.clone());
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let (pub_stores, pub_stop) = (stores.clone(), stop.clone());
        let publisher = std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || pub_stores.publish_until(&pub_stop))
            .map_err(|e| format!("cannot start the publisher thread: {e}"))?;
        Ok(Engine {
            senders,
            guards: std::sync::Mutex::new(Some(guards)),
            stores,
            publisher: Some(publisher),
            stop,
            fed_frontier: Default::default(),
        })
    }

    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Hands a batch to the workers, split round-robin; blocks while their queues are full.
    pub fn feed(&self, b: Batch) -> bool {
        self.fed_frontier.fetch_max(b.frontier, Ordering::Relaxed);
        let n = self.senders.len();
        let mut parts: Vec<Part> = (0..n)
            .map(|_| Part {
                frontier: b.frontier,
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
        parts
            .into_iter()
            .zip(&self.senders)
            .all(|(p, s)| s.send(Msg::Part(p)).is_ok())
    }

    /// No more input: waits until every view is complete at the last frontier fed, then stops
    /// the workers.
    pub fn finish(mut self) -> Result<Stores, String> {
        for s in &self.senders {
            let _ = s.send(Msg::Finish);
        }
        let guards = self.guards.lock().ok().and_then(|mut g| g.take());
        if let Some(g) = guards {
            for r in g.join() {
                r?;
            }
        }
        self.stop_publisher();
        // everything below the last frontier fed is complete
        self.stores
            .advance(self.fed_frontier.load(Ordering::Relaxed));
        Ok(self.stores.clone())
    }

    /// The largest frontier fed so far.
    pub fn fed_frontier(&self) -> u64 {
        self.fed_frontier.load(Ordering::Relaxed)
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
    }
}
