//! The runtime: timely workers, their inputs, the views' dataflow, probes and stores.
//!
//! A feeder (a replay, a generator, later Kafka and CDC) produces [`Batch`]es in the time model
//! of `connectors::ingest`. [`Engine::feed`] splits each batch over the workers round-robin;
//! each worker inserts its share at the records' own ticks and advances its inputs to the
//! batch's frontier, so records are spread over all workers and differential exchanges them by
//! key. Workers take a new batch only while fewer than [`MAX_IN_FLIGHT`] are incomplete, which
//! bounds memory; the feeder blocks on the workers' bounded queues.

use crate::store::{Stores, ViewStore};
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use differential_dataflow::input::{Input, InputSession};
use shopdiff_connectors::Batch;
use shopdiff_dataflows::common::Coll;
use shopdiff_dataflows::data_quality::data_quality;
use shopdiff_dataflows::revenue::{revenue, Granularity};
use shopdiff_schemas::records::{Event, Line};
use shopdiff_schemas::rows::{self, QualityRow, RevenueRow, Row};
use shopdiff_schemas::tables::{Customer, IpRep, Product, TableRow};
use shopdiff_schemas::{Reason, Source, Str};
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
    /// Tick length in milliseconds.
    pub tick_ms: u64,
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
    revenue_hourly: Arc<ViewStore<RevenueRow>>,
    revenue_daily: Arc<ViewStore<RevenueRow>>,
    data_quality: Arc<ViewStore<QualityRow>>,
}

/// A running engine: its workers, their queues and the view stores.
pub struct Engine {
    senders: Vec<Sender<Msg>>,
    guards: Option<timely::communication::WorkerGuards<()>>,
    stores: Stores,
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

fn build(worker: &mut Worker, sinks: Sinks, probe: &Handle<u64>) -> Inputs {
    worker.dataflow::<u64, _, _>(|scope| {
        let (lines_in, lines) = scope.new_collection::<Line, isize>();
        let (events_in, _events) = scope.new_collection::<Event, isize>();
        let (quality_in, quality) = scope.new_collection::<(Source, Reason), isize>();
        let (products_in, products) = scope.new_collection::<(Str, Product), isize>();
        let (customers_in, customers) = scope.new_collection::<(Str, Customer), isize>();
        let (ips_in, _ips) = scope.new_collection::<(Str, IpRep), isize>();
        sink(
            revenue(lines.clone(), products.clone(), Granularity::Hourly),
            sinks.revenue_hourly,
            probe,
        );
        sink(
            revenue(lines.clone(), products.clone(), Granularity::Daily),
            sinks.revenue_daily,
            probe,
        );
        sink(
            data_quality(quality, lines, products, customers),
            sinks.data_quality,
            probe,
        );
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

fn worker_loop(worker: &mut Worker, rx: Receiver<Msg>, sinks: Sinks, stores: Stores) {
    let probe = Handle::new();
    let mut inputs = build(worker, sinks, &probe);
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
                stores.advance(*t);
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
        let sinks = Sinks {
            revenue_hourly: ViewStore::new(rows::REVENUE_HOURLY, cfg.tick_ms),
            revenue_daily: ViewStore::new(rows::REVENUE_DAILY, cfg.tick_ms),
            data_quality: ViewStore::new(rows::DATA_QUALITY, cfg.tick_ms),
        };
        let mut stores = Stores::default();
        stores.add(sinks.revenue_hourly.clone());
        stores.add(sinks.revenue_daily.clone());
        stores.add(sinks.data_quality.clone());
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
            worker_loop(worker, rx, sinks.clone(), worker_stores.clone());
        })?;
        Ok(Engine {
            senders,
            guards: Some(guards),
            stores,
        })
    }

    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Hands a batch to the workers, split round-robin; blocks while their queues are full.
    pub fn feed(&self, b: Batch) -> bool {
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
        if let Some(g) = self.guards.take() {
            for r in g.join() {
                r?;
            }
        }
        Ok(self.stores.clone())
    }
}
