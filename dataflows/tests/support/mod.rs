//! The reference harness: runs [`all_views`] in timely with any number of workers over a
//! [`History`] of input updates, captures every view's output updates, and compares each view,
//! accumulated up to a time `T`, with its naive twin [`batch_all`] over the inputs visible at `T`.
//!
//! Shared by `dataflows/tests/reference.rs` and (through `#[path]`) by
//! `server/tests/replay_reference.rs`, so it depends only on timely, differential, the schemas and
//! the dataflows.
#![allow(dead_code)]

use differential_dataflow::input::{Input, InputSession};
use shopdiff_dataflows::batch::{batch_all, AllViews, Visible};
use shopdiff_dataflows::common::Coll;
use shopdiff_dataflows::config::{ViewsConfig, INVENTORY_WINDOW_MS};
use shopdiff_dataflows::views::{all_views, InputColls};
use shopdiff_schemas::records::{Event, Line};
use shopdiff_schemas::rows::{
    AlertRow, CohortRow, FunnelRow, InventoryRow, ProductPerfRow, QualityRow, RevenueRow, RfmRow,
    SegmentRow,
};
use shopdiff_schemas::tables::{Customer, IpRep, Product, TableRow};
use shopdiff_schemas::time::ceil_tick;
use shopdiff_schemas::{Reason, Source, Str};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Handle;

/// Every update of every input, each at its logical (effect) time.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Accepted, de-duplicated order lines (each a `+1`).
    pub lines: Vec<(Line, u64)>,
    /// Accepted, de-duplicated behavior events (each a `+1`).
    pub events: Vec<(Event, u64)>,
    /// Ingest-level `data_quality` counts `(source, reason, time, count)`.
    pub quality: Vec<(Source, Reason, u64, i64)>,
    /// Table rows in (`+1`) and out (`-1`): an upsert is `-old` and `+new`.
    pub tables: Vec<(TableRow, u64, isize)>,
}

impl History {
    /// Every time at which an input changes.
    pub fn input_times(&self) -> BTreeSet<u64> {
        let mut t = BTreeSet::new();
        t.extend(self.lines.iter().map(|x| x.1));
        t.extend(self.events.iter().map(|x| x.1));
        t.extend(self.quality.iter().map(|x| x.2));
        t.extend(self.tables.iter().map(|x| x.1));
        t
    }

    /// The largest time of any update (0 when empty).
    pub fn max_time(&self) -> u64 {
        self.input_times().last().copied().unwrap_or(0)
    }
}

/// One view's output updates `(row, time, diff)`, in no particular order.
pub type Updates<R> = Vec<(R, u64, isize)>;

/// Runs a closure-like macro body once per view field name.
macro_rules! per_view {
    ($m:ident) => {
        $m!(
            rfm,
            rfm_segments,
            cohorts,
            revenue_hourly,
            revenue_daily,
            fraud_alerts,
            product_performance,
            inventory,
            funnel_daily,
            data_quality
        )
    };
}

/// Every view's captured output updates, from all workers.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    pub rfm: Updates<RfmRow>,
    pub rfm_segments: Updates<SegmentRow>,
    pub cohorts: Updates<CohortRow>,
    pub revenue_hourly: Updates<RevenueRow>,
    pub revenue_daily: Updates<RevenueRow>,
    pub fraud_alerts: Updates<AlertRow>,
    pub product_performance: Updates<ProductPerfRow>,
    pub inventory: Updates<InventoryRow>,
    pub funnel_daily: Updates<FunnelRow>,
    pub data_quality: Updates<QualityRow>,
}

impl Captured {
    /// Every time at which some view's output has an update.
    pub fn output_times(&self) -> BTreeSet<u64> {
        let mut t = BTreeSet::new();
        macro_rules! add {
            ($($v:ident),*) => { $( t.extend(self.$v.iter().map(|x| x.1)); )* };
        }
        per_view!(add);
        t
    }

    /// Total number of output updates.
    pub fn len(&self) -> usize {
        let mut n = 0;
        macro_rules! add {
            ($($v:ident),*) => { $( n += self.$v.len(); )* };
        }
        per_view!(add);
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

type Sink<R> = Arc<Mutex<Updates<R>>>;

#[derive(Clone, Default)]
struct Sinks {
    rfm: Sink<RfmRow>,
    rfm_segments: Sink<SegmentRow>,
    cohorts: Sink<CohortRow>,
    revenue_hourly: Sink<RevenueRow>,
    revenue_daily: Sink<RevenueRow>,
    fraud_alerts: Sink<AlertRow>,
    product_performance: Sink<ProductPerfRow>,
    inventory: Sink<InventoryRow>,
    funnel_daily: Sink<FunnelRow>,
    data_quality: Sink<QualityRow>,
}

fn take<R>(s: &Sink<R>) -> Updates<R> {
    std::mem::take(&mut *s.lock().unwrap_or_else(|e| e.into_inner()))
}

fn capture<'s, R>(c: Coll<'s, R>, sink: Sink<R>, probe: &Handle<u64>)
where
    R: differential_dataflow::ExchangeData,
{
    c.inspect_batch(move |_, upds| {
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(upds.iter().cloned())
    })
    .probe_with(probe);
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
    fn advance_to(&mut self, t: u64) {
        self.lines.advance_to(t);
        self.events.advance_to(t);
        self.quality.advance_to(t);
        self.products.advance_to(t);
        self.customers.advance_to(t);
        self.ips.advance_to(t);
        self.lines.flush();
        self.events.flush();
        self.quality.flush();
        self.products.flush();
        self.customers.flush();
        self.ips.flush();
    }

    fn close(self) {
        self.lines.close();
        self.events.close();
        self.quality.close();
        self.products.close();
        self.customers.close();
        self.ips.close();
    }
}

/// The history's updates sorted by time (stable), each list on its own.
struct Sorted {
    lines: Vec<(Line, u64)>,
    events: Vec<(Event, u64)>,
    quality: Vec<(Source, Reason, u64, i64)>,
    tables: Vec<(TableRow, u64, isize)>,
}

/// Where a worker is in each sorted list.
#[derive(Default)]
struct Cursor {
    lines: usize,
    events: usize,
    quality: usize,
    tables: usize,
}

impl Sorted {
    /// Inserts this worker's share (global index `i` with `i % peers == me`) of the updates with
    /// time `< until`, each at its own time.
    fn feed(&self, c: &mut Cursor, inp: &mut Inputs, until: u64, me: usize, peers: usize) {
        while let Some((l, t)) = self.lines.get(c.lines).filter(|x| x.1 < until) {
            if c.lines % peers == me {
                inp.lines.update_at(l.clone(), *t, 1);
            }
            c.lines += 1;
        }
        while let Some((e, t)) = self.events.get(c.events).filter(|x| x.1 < until) {
            if c.events % peers == me {
                inp.events.update_at(e.clone(), *t, 1);
            }
            c.events += 1;
        }
        while let Some((s, r, t, n)) = self.quality.get(c.quality).filter(|x| x.2 < until) {
            if c.quality % peers == me {
                inp.quality.update_at((*s, *r), *t, *n as isize);
            }
            c.quality += 1;
        }
        while let Some((row, t, d)) = self.tables.get(c.tables).filter(|x| x.1 < until) {
            if c.tables % peers == me {
                match row.clone() {
                    TableRow::Product(x) => {
                        inp.products.update_at((x.product_id.clone(), x), *t, *d)
                    }
                    TableRow::Customer(x) => {
                        inp.customers.update_at((x.user_id.clone(), x), *t, *d)
                    }
                    TableRow::Ip(x) => inp.ips.update_at((x.ip_address.clone(), x), *t, *d),
                }
            }
            c.tables += 1;
        }
    }
}

/// Runs every view over `h` with `workers` workers in one process and returns every output
/// update. The inputs are advanced coarsely, to each of `frontiers` in turn (increasing; each
/// round inserts the updates with time below the frontier, at their own times, spread over the
/// workers round-robin, and waits until the views are complete there); then the rest is
/// inserted, the inputs are closed and the dataflow runs to completion, so that every window
/// has expired.
pub fn run_views(h: &History, cfg: &ViewsConfig, workers: usize, frontiers: &[u64]) -> Captured {
    let mut sorted = Sorted {
        lines: h.lines.clone(),
        events: h.events.clone(),
        quality: h.quality.clone(),
        tables: h.tables.clone(),
    };
    sorted.lines.sort_by_key(|x| x.1);
    sorted.events.sort_by_key(|x| x.1);
    sorted.quality.sort_by_key(|x| x.2);
    sorted.tables.sort_by_key(|x| x.1);
    let sorted = Arc::new(sorted);
    let frontiers = Arc::new(frontiers.to_vec());
    assert!(
        frontiers.windows(2).all(|w| w[0] < w[1]),
        "frontiers must increase: {frontiers:?}"
    );
    let sinks = Sinks::default();
    let worker_sinks = sinks.clone();
    let cfg = *cfg;
    let abort = Arc::new(AtomicBool::new(false));
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let (me, peers) = (worker.index(), worker.peers());
        let probe = Handle::new();
        let s = worker_sinks.clone();
        let mut inputs = worker.dataflow::<u64, _, _>(|scope| {
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
                &cfg,
            );
            macro_rules! cap {
                ($($v:ident),*) => { $( capture(v.$v, s.$v.clone(), &probe); )* };
            }
            per_view!(cap);
            Inputs {
                lines: lines_in,
                events: events_in,
                quality: quality_in,
                products: products_in,
                customers: customers_in,
                ips: ips_in,
            }
        });
        // a worker that panics makes the others stop waiting for it, so the test fails
        // instead of hanging
        let failed = || abort.load(Ordering::Relaxed);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut cursor = Cursor::default();
            for &f in frontiers.iter() {
                sorted.feed(&mut cursor, &mut inputs, f, me, peers);
                inputs.advance_to(f);
                worker.step_while(|| !failed() && probe.less_than(&f));
            }
            sorted.feed(&mut cursor, &mut inputs, u64::MAX, me, peers);
            inputs.close();
            worker.step_while(|| !failed() && !probe.done());
        }));
        if let Err(panic) = run {
            abort.store(true, Ordering::Relaxed);
            std::panic::resume_unwind(panic);
        }
        assert!(!failed(), "worker {me} stopped: another worker failed");
    })
    .expect("starting timely");
    let failures: Vec<String> = guards.join().into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "workers failed: {failures:?}");
    let mut out = Captured::default();
    macro_rules! collect {
        ($($v:ident),*) => { $( out.$v = take(&sinks.$v); )* };
    }
    per_view!(collect);
    out
}

/// The times at which a view can change: every input time, every output time and, for every
/// line, the end of each of its windows (`ceil_tick(ts) + W`). Between two consecutive times of
/// this set neither the dataflow's output nor the twins' answer changes, so comparing at each of
/// them compares at every time of the history.
pub fn critical_times(h: &History, cfg: &ViewsConfig, out: &Captured) -> Vec<u64> {
    let mut t = h.input_times();
    t.extend(out.output_times());
    t.insert(0);
    let f = &cfg.fraud;
    let windows = [
        f.velocity.window_ms,
        f.amount.window_ms,
        f.geo.window_ms,
        INVENTORY_WINDOW_MS,
    ];
    for (l, _) in &h.lines {
        let start = ceil_tick(l.ts, cfg.tick_ms);
        t.extend(windows.iter().map(|w| start.saturating_add(*w)));
    }
    t.into_iter().collect()
}

/// One view's output, accumulated up to a time.
struct Acc<'a, R> {
    ups: Vec<&'a (R, u64, isize)>,
    pos: usize,
    state: BTreeMap<R, isize>,
}

impl<'a, R: Ord + Clone + Debug> Acc<'a, R> {
    fn new(ups: &'a [(R, u64, isize)]) -> Self {
        let mut ups: Vec<_> = ups.iter().collect();
        ups.sort_by_key(|x| x.1);
        Acc {
            ups,
            pos: 0,
            state: BTreeMap::new(),
        }
    }

    /// The rows at `t` (times must be asked in increasing order), sorted; an error when a row's
    /// multiplicity is not 0 or 1.
    fn at(&mut self, t: u64, view: &str) -> Result<Vec<R>, String> {
        while let Some((r, time, d)) = self.ups.get(self.pos).copied() {
            if *time > t {
                break;
            }
            let m = self.state.entry(r.clone()).or_insert(0);
            *m += d;
            if *m == 0 {
                self.state.remove(r);
            }
            self.pos += 1;
        }
        if let Some((r, m)) = self.state.iter().find(|(_, m)| **m != 1) {
            return Err(format!(
                "{view} at {t}: row with multiplicity {m} (must be 0 or 1): {r:?}"
            ));
        }
        Ok(self.state.keys().cloned().collect())
    }
}

/// Describes the difference of two sorted row lists (at most a few rows each way).
fn diff<R: Ord + Debug>(got: &[R], want: &[R]) -> String {
    let g: BTreeSet<&R> = got.iter().collect();
    let w: BTreeSet<&R> = want.iter().collect();
    let extra: Vec<_> = g.difference(&w).take(6).collect();
    let missing: Vec<_> = w.difference(&g).take(6).collect();
    format!(
        "{} rows from the dataflow, {} from the twin\n  only in the dataflow: {extra:#?}\n  only in the twin: {missing:#?}",
        got.len(),
        want.len()
    )
}

/// The tables' state, replayed up to a time.
struct TableAt<'a> {
    ups: Vec<&'a (TableRow, u64, isize)>,
    pos: usize,
    rows: BTreeMap<TableRow, isize>,
}

impl<'a> TableAt<'a> {
    fn new(ups: &'a [(TableRow, u64, isize)]) -> Self {
        let mut ups: Vec<_> = ups.iter().collect();
        ups.sort_by_key(|x| x.1);
        TableAt {
            ups,
            pos: 0,
            rows: BTreeMap::new(),
        }
    }

    /// `products`, `customers` and `ip_reputation` at `t` (asked in increasing order).
    #[allow(clippy::type_complexity)]
    fn at(
        &mut self,
        t: u64,
    ) -> (
        BTreeMap<Str, Product>,
        BTreeMap<Str, Customer>,
        BTreeMap<Str, IpRep>,
    ) {
        while let Some((row, time, d)) = self.ups.get(self.pos).copied() {
            if *time > t {
                break;
            }
            let m = self.rows.entry(row.clone()).or_insert(0);
            *m += d;
            if *m == 0 {
                self.rows.remove(row);
            }
            self.pos += 1;
        }
        let (mut p, mut c, mut i) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for (row, m) in &self.rows {
            assert_eq!(*m, 1, "the history's tables are not a set at {t}: {row:?}");
            let dup = match row.clone() {
                TableRow::Product(x) => p.insert(x.product_id.clone(), x).is_some(),
                TableRow::Customer(x) => c.insert(x.user_id.clone(), x).is_some(),
                TableRow::Ip(x) => i.insert(x.ip_address.clone(), x).is_some(),
            };
            assert!(!dup, "two rows with the key of {row:?} at {t}");
        }
        (p, c, i)
    }
}

/// One accumulator per view.
struct Accs<'a> {
    rfm: Acc<'a, RfmRow>,
    rfm_segments: Acc<'a, SegmentRow>,
    cohorts: Acc<'a, CohortRow>,
    revenue_hourly: Acc<'a, RevenueRow>,
    revenue_daily: Acc<'a, RevenueRow>,
    fraud_alerts: Acc<'a, AlertRow>,
    product_performance: Acc<'a, ProductPerfRow>,
    inventory: Acc<'a, InventoryRow>,
    funnel_daily: Acc<'a, FunnelRow>,
    data_quality: Acc<'a, QualityRow>,
}

/// Compares every view of `out` with the twins at each of `times` (any order, deduplicated
/// here): accumulated output up to `T` against [`batch_all`] of the inputs visible at `T`.
/// Returns the number of times compared, or the first difference.
pub fn compare(
    h: &History,
    cfg: &ViewsConfig,
    out: &Captured,
    times: &[u64],
    label: &str,
) -> Result<usize, String> {
    let times: BTreeSet<u64> = times.iter().copied().collect();
    let mut tables = TableAt::new(&h.tables);
    let mut accs = Accs {
        rfm: Acc::new(&out.rfm),
        rfm_segments: Acc::new(&out.rfm_segments),
        cohorts: Acc::new(&out.cohorts),
        revenue_hourly: Acc::new(&out.revenue_hourly),
        revenue_daily: Acc::new(&out.revenue_daily),
        fraud_alerts: Acc::new(&out.fraud_alerts),
        product_performance: Acc::new(&out.product_performance),
        inventory: Acc::new(&out.inventory),
        funnel_daily: Acc::new(&out.funnel_daily),
        data_quality: Acc::new(&out.data_quality),
    };
    for &t in &times {
        let (products, customers, ips) = tables.at(t);
        let v = Visible {
            as_of: t,
            lines: &h.lines,
            events: &h.events,
            products: &products,
            customers: &customers,
            ips: &ips,
            quality: &h.quality,
            tick_ms: cfg.tick_ms,
        };
        let want: AllViews = batch_all(&v, &cfg.fraud);
        macro_rules! check {
            ($($v:ident),*) => { $(
                let got = accs.$v.at(t, stringify!($v)).map_err(|e| format!("{label}: {e}"))?;
                if got != want.$v {
                    return Err(format!(
                        "{label}: {} differs at {t}: {}",
                        stringify!($v),
                        diff(&got, &want.$v)
                    ));
                }
            )* };
        }
        per_view!(check);
    }
    Ok(times.len())
}
