//! The reference tests: every view's dataflow against its naive batch twin, at every time of
//! random histories, with 1, 2, 3 and 4 workers.
//!
//! A history is generated from a small random spec: a few users, products, sessions and IPs;
//! transactions of one to three lines (sharing user and session) in bursts over two hours around
//! a month boundary, so that the 10-minute and 1-hour fraud windows open and close; behavior
//! events of every kind; late records (effect time after `ceil_tick(ts)`, some beyond a window);
//! table upserts and deletes over time (product cost and inventory, product deletes, customers
//! moving between registration months or deleted, IP risk and Tor changes); lines of products and
//! users without a row; three currencies; ingest-level quality counts. The fraud thresholds are
//! small (velocity > 2, amount > 5000 cents, geo >= 2, risky >= 0.5) so that alerts fire and
//! clear.
//!
//! Each case runs `all_views` in timely, advancing the inputs coarsely (a few rounds) while every
//! update keeps its own time, then compares every view at every time at which an input or an
//! output changes or a window ends (see [`support::critical_times`]): between two such times
//! neither side changes, so this is a comparison at every time.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use shopdiff_dataflows::config::{FraudConfig, ViewsConfig, WindowRule};
use shopdiff_schemas::records::{Event, EventKind, Line};
use shopdiff_schemas::rows::Rule;
use shopdiff_schemas::tables::{Customer, IpRep, Product, TableRow};
use shopdiff_schemas::time::{
    ceil_tick, month_index, month_start, parse_rfc3339, Ms, DAY_MS, HOUR_MS,
};
use shopdiff_schemas::{Reason, Source, Str};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use support::{compare, critical_times, run_views, Captured, History};

const TICK: u64 = 1000;
/// Users `U0..U4`; customers rows start for `U0..U3` only.
const USERS: u8 = 5;
/// Products `P0..P6`; initial rows only for `P0..P4`.
const PRODUCTS: u8 = 7;
const SESSIONS: u8 = 6;
/// IPs `IP0..IP4`; initial rows only for `IP0..IP3`.
const IPS: u8 = 5;
/// Event times span two hours from [`base`].
const SPAN_MS: i64 = 2 * HOUR_MS;
/// How far a record of a burst may be from the burst's start.
const BURST_MS: i64 = 240_000;

/// 2024-03-31T23:00:00Z: the two hours cross an hour, a day and a month boundary.
fn base() -> Ms {
    parse_rfc3339("2024-03-31T23:00:00Z").expect("a valid time")
}

fn views_config() -> ViewsConfig {
    ViewsConfig {
        tick_ms: TICK,
        fraud: FraudConfig {
            velocity: WindowRule {
                window_ms: 10 * 60_000,
                threshold: 2,
            },
            amount: WindowRule {
                window_ms: HOUR_MS as u64,
                threshold: 5000,
            },
            geo: WindowRule {
                window_ms: HOUR_MS as u64,
                threshold: 2,
            },
            risky_ip_threshold: 500_000,
        },
        horizon_ms: None,
    }
}

// ------------------------------------------------------------------------------- the random spec

#[derive(Debug, Clone)]
struct LineSpec {
    product: u8,
    /// Added to the transaction's time.
    skew_ms: i64,
    price: i64,
    quantity: i64,
    /// Discount as a percentage of the gross.
    discount_pct: i64,
    currency: u8,
    /// 0 is `none`.
    country: u8,
    /// category, brand, payment method, channel, device type.
    dims: (u8, u8, u8, u8, u8),
    /// Seconds after `ceil_tick(ts)` at which the line takes effect (0: on time).
    late_s: u64,
}

#[derive(Debug, Clone)]
struct TxSpec {
    user: u8,
    session: Option<u8>,
    burst: usize,
    offset_ms: i64,
    lines: Vec<LineSpec>,
}

#[derive(Debug, Clone)]
struct EventSpec {
    user: u8,
    session: Option<u8>,
    kind: u8,
    product: Option<u8>,
    ip: Option<u8>,
    burst: usize,
    offset_ms: i64,
    late_s: u64,
}

#[derive(Debug, Clone)]
enum Op {
    /// Upsert `(id, cost, inventory)`.
    Product(u8, i64, i64),
    DropProduct(u8),
    /// Upsert `(user, registration month relative to March 2024, ms into the month)`.
    Customer(u8, i64, i64),
    DropCustomer(u8),
    /// Upsert `(ip, risk in millionths, is_tor)`.
    Ip(u8, Option<i64>, bool),
    DropIp(u8),
}

#[derive(Debug, Clone)]
struct Spec {
    /// Burst starts, ms after [`base`].
    bursts: Vec<i64>,
    products: Vec<Option<(i64, i64)>>,
    customers: Vec<Option<(i64, i64)>>,
    ips: Vec<Option<(Option<i64>, bool)>>,
    txs: Vec<TxSpec>,
    events: Vec<EventSpec>,
    /// `(ms after base, op)`.
    changes: Vec<(i64, Op)>,
    /// `(source, reason, ms after base, count)`.
    quality: Vec<(Source, Reason, i64, i64)>,
    /// Input rounds before the inputs close.
    rounds: usize,
}

fn late_s() -> impl Strategy<Value = u64> {
    prop_oneof![6 => Just(0u64), 1 => 1u64..30, 1 => 30u64..1500]
}

fn user() -> impl Strategy<Value = u8> {
    prop_oneof![3 => Just(0u8), 2 => Just(1u8), 2 => 2u8..USERS]
}

fn risk() -> impl Strategy<Value = Option<i64>> {
    proptest::option::weighted(0.8, (0i64..=1000).prop_map(|r| r * 1000))
}

fn line_spec() -> impl Strategy<Value = LineSpec> {
    (
        0u8..PRODUCTS,
        prop_oneof![3 => Just(0i64), 1 => 0i64..3000],
        0i64..3000,
        1i64..4,
        prop_oneof![4 => Just(0i64), 1 => 0i64..=100],
        0u8..3,
        0u8..4,
        (0u8..2, 0u8..2, 0u8..2, 0u8..3, 0u8..2),
        late_s(),
    )
        .prop_map(
            |(product, skew_ms, price, quantity, discount_pct, currency, country, dims, late_s)| {
                LineSpec {
                    product,
                    skew_ms,
                    price,
                    quantity,
                    discount_pct,
                    currency,
                    country,
                    dims,
                    late_s,
                }
            },
        )
}

fn tx_spec() -> impl Strategy<Value = TxSpec> {
    (
        user(),
        proptest::option::weighted(0.85, 0u8..SESSIONS),
        0usize..3,
        0i64..BURST_MS,
        proptest::collection::vec(line_spec(), 1..4),
    )
        .prop_map(|(user, session, burst, offset_ms, lines)| TxSpec {
            user,
            session,
            burst,
            offset_ms,
            lines,
        })
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    (
        user(),
        proptest::option::weighted(0.9, 0u8..SESSIONS),
        0u8..7,
        proptest::option::weighted(0.8, 0u8..PRODUCTS),
        proptest::option::weighted(0.7, 0u8..IPS),
        0usize..3,
        0i64..BURST_MS,
        late_s(),
    )
        .prop_map(
            |(user, session, kind, product, ip, burst, offset_ms, late_s)| EventSpec {
                user,
                session,
                kind,
                product,
                ip,
                burst,
                offset_ms,
                late_s,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..PRODUCTS, 0i64..2000, 0i64..20).prop_map(|(p, c, i)| Op::Product(p, c, i)),
        1 => (0u8..PRODUCTS).prop_map(Op::DropProduct),
        2 => (0u8..USERS, -2i64..2, 0i64..28 * DAY_MS).prop_map(|(u, m, o)| Op::Customer(u, m, o)),
        1 => (0u8..USERS).prop_map(Op::DropCustomer),
        3 => (0u8..IPS, risk(), proptest::bool::weighted(0.2)).prop_map(|(i, r, t)| Op::Ip(i, r, t)),
        1 => (0u8..IPS).prop_map(Op::DropIp),
    ]
}

fn quality_spec() -> impl Strategy<Value = (Source, Reason, i64, i64)> {
    let sources = Source::ALL.to_vec();
    let reasons = vec![
        Reason::Accepted,
        Reason::MalformedJson,
        Reason::MissingField,
        Reason::BadType,
        Reason::BadTimestamp,
        Reason::BadValue,
        Reason::Duplicate,
        Reason::Late,
    ];
    (
        proptest::sample::select(sources),
        proptest::sample::select(reasons),
        0i64..SPAN_MS,
        1i64..4,
    )
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::collection::vec(0i64..SPAN_MS - BURST_MS, 3),
        proptest::collection::vec(proptest::option::weighted(0.85, (0i64..2000, 0i64..20)), 5),
        proptest::collection::vec(
            proptest::option::weighted(0.85, (-2i64..2, 0i64..28 * DAY_MS)),
            4,
        ),
        proptest::collection::vec(
            proptest::option::weighted(0.85, (risk(), proptest::bool::weighted(0.15))),
            4,
        ),
        proptest::collection::vec(tx_spec(), 0..24),
        proptest::collection::vec(event_spec(), 0..30),
        proptest::collection::vec((0i64..SPAN_MS, op()), 0..12),
        proptest::collection::vec(quality_spec(), 0..6),
        1usize..6,
    )
        .prop_map(
            |(bursts, products, customers, ips, txs, events, changes, quality, rounds)| Spec {
                bursts,
                products,
                customers,
                ips,
                txs,
                events,
                changes,
                quality,
                rounds,
            },
        )
}

// --------------------------------------------------------------------- from a spec to a history

fn pick(names: &[&str], i: u8) -> Str {
    Str::from(names[i as usize % names.len()])
}

fn product_row(id: u8, cost: i64, inventory_count: i64) -> TableRow {
    TableRow::Product(Product {
        product_id: format!("P{id}").into(),
        cost,
        inventory_count,
    })
}

fn customer_row(user: u8, month: i64, into_month: i64) -> TableRow {
    let march = month_index(base());
    TableRow::Customer(Customer {
        user_id: format!("U{user}").into(),
        registration_date: month_start(march + month) + into_month,
    })
}

fn ip_row(ip: u8, risk: Option<i64>, is_tor: bool) -> TableRow {
    TableRow::Ip(IpRep {
        ip_address: format!("IP{ip}").into(),
        risk,
        is_tor,
    })
}

/// Table rows keyed by `(table, key)`; upserts and deletes become `-old`/`+new` updates.
#[derive(Default)]
struct Tables {
    rows: BTreeMap<(u8, Str), TableRow>,
}

impl Tables {
    fn key(row: &TableRow) -> (u8, Str) {
        let t = match row {
            TableRow::Product(_) => 0,
            TableRow::Customer(_) => 1,
            TableRow::Ip(_) => 2,
        };
        (t, row.key().clone())
    }

    fn upsert(&mut self, row: TableRow, t: u64, out: &mut Vec<(TableRow, u64, isize)>) {
        if let Some(old) = self.rows.insert(Self::key(&row), row.clone()) {
            out.push((old, t, -1));
        }
        out.push((row, t, 1));
    }

    fn delete(&mut self, table: u8, key: Str, t: u64, out: &mut Vec<(TableRow, u64, isize)>) {
        if let Some(old) = self.rows.remove(&(table, key)) {
            out.push((old, t, -1));
        }
    }
}

/// The history of a spec and the frontiers of its input rounds.
fn history(s: &Spec) -> (History, Vec<u64>) {
    let base = base();
    let mut h = History::default();
    let effect = |ts: Ms, late_s: u64| ceil_tick(ts, TICK) + late_s * TICK;
    for (n, tx) in s.txs.iter().enumerate() {
        let at = base + s.bursts[tx.burst] + tx.offset_ms;
        let mut products = BTreeSet::new();
        for l in &tx.lines {
            // the identity of a line is (transaction, product)
            if !products.insert(l.product) {
                continue;
            }
            let ts = at + l.skew_ms;
            let gross = l.price * l.quantity;
            let line = Line {
                transaction_id: format!("T{n}").into(),
                product_id: format!("P{}", l.product).into(),
                user_id: format!("U{}", tx.user).into(),
                session_id: tx.session.map(|x| format!("S{x}").into()),
                ts,
                price: l.price,
                quantity: l.quantity,
                discount: gross * l.discount_pct / 100,
                currency: pick(&["USD", "EUR", "GBP"], l.currency),
                category_id: pick(&["C0", "C1"], l.dims.0),
                brand: pick(&["B0", "B1"], l.dims.1),
                country: pick(&["none", "US", "DE", "FR"], l.country),
                payment_method: pick(&["card", "paypal"], l.dims.2),
                channel: pick(&["none", "email", "search"], l.dims.3),
                device_type: pick(&["mobile", "desktop"], l.dims.4),
            };
            h.lines.push((line, effect(ts, l.late_s)));
        }
    }
    let kinds = [
        EventKind::PageView,
        EventKind::ProductView,
        EventKind::Search,
        EventKind::AddToCart,
        EventKind::RemoveFromCart,
        EventKind::CheckoutStart,
        EventKind::Other,
    ];
    for (n, e) in s.events.iter().enumerate() {
        let ts = base + s.bursts[e.burst] + e.offset_ms;
        let event = Event {
            event_id: format!("E{n}").into(),
            user_id: format!("U{}", e.user).into(),
            session_id: e.session.map(|x| format!("S{x}").into()),
            kind: kinds[e.kind as usize % kinds.len()],
            product_id: e.product.map(|p| format!("P{p}").into()),
            ip: e.ip.map(|i| format!("IP{i}").into()),
            ts,
        };
        h.events.push((event, effect(ts, e.late_s)));
    }
    let mut tables = Tables::default();
    for (i, p) in s.products.iter().enumerate() {
        if let Some((cost, inv)) = p {
            tables.upsert(product_row(i as u8, *cost, *inv), 0, &mut h.tables);
        }
    }
    for (i, c) in s.customers.iter().enumerate() {
        if let Some((month, into)) = c {
            tables.upsert(customer_row(i as u8, *month, *into), 0, &mut h.tables);
        }
    }
    for (i, r) in s.ips.iter().enumerate() {
        if let Some((risk, tor)) = r {
            tables.upsert(ip_row(i as u8, *risk, *tor), 0, &mut h.tables);
        }
    }
    let mut changes: Vec<(u64, &Op)> = s
        .changes
        .iter()
        .map(|(at, op)| (ceil_tick(base + at, TICK), op))
        .collect();
    changes.sort_by_key(|c| c.0); // stable: spec order among equal times
    for (t, op) in changes {
        let out = &mut h.tables;
        match *op {
            Op::Product(p, cost, inv) => tables.upsert(product_row(p, cost, inv), t, out),
            Op::DropProduct(p) => tables.delete(0, format!("P{p}").into(), t, out),
            Op::Customer(u, month, into) => tables.upsert(customer_row(u, month, into), t, out),
            Op::DropCustomer(u) => tables.delete(1, format!("U{u}").into(), t, out),
            Op::Ip(i, risk, tor) => tables.upsert(ip_row(i, risk, tor), t, out),
            Op::DropIp(i) => tables.delete(2, format!("IP{i}").into(), t, out),
        }
    }
    for &(source, reason, at, n) in &s.quality {
        h.quality
            .push((source, reason, ceil_tick(base + at, TICK), n));
    }
    // round frontiers at evenly spaced input times
    let times: Vec<u64> = h.input_times().into_iter().collect();
    let mut frontiers: Vec<u64> = (1..=s.rounds)
        .filter_map(|k| times.get(k * times.len() / (s.rounds + 1)).copied())
        .filter(|t| *t > 0)
        .collect();
    frontiers.dedup();
    (h, frontiers)
}

// ------------------------------------------------------------------------------------- the tests

/// What the random cases exercised, to check that the thresholds are actually crossed.
#[derive(Debug, Default)]
struct Coverage {
    cases: usize,
    raised: BTreeMap<Rule, usize>,
    cleared: BTreeMap<Rule, usize>,
    compared_times: usize,
    output_updates: usize,
}

impl Coverage {
    fn add(&mut self, out: &Captured, times: usize) {
        self.cases += 1;
        self.compared_times += times;
        self.output_updates += out.len();
        let rules = |d: isize| -> BTreeSet<Rule> {
            out.fraud_alerts
                .iter()
                .filter(|x| x.2 == d)
                .map(|x| x.0.rule)
                .collect()
        };
        for r in rules(1) {
            *self.raised.entry(r).or_default() += 1;
        }
        for r in rules(-1) {
            *self.cleared.entry(r).or_default() += 1;
        }
    }
}

/// Runs `cases` random histories with `workers` workers and compares at every time.
fn random_histories(workers: usize, cases: u32) {
    let cfg = views_config();
    let started = Instant::now();
    let coverage = RefCell::new(Coverage::default());
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&spec(), |s| {
        let (h, frontiers) = history(&s);
        let out = run_views(&h, &cfg, workers, &frontiers);
        let times = critical_times(&h, &cfg, &out);
        let label = format!("{workers} worker(s), rounds {frontiers:?}");
        let n = compare(&h, &cfg, &out, &times, &label).map_err(TestCaseError::fail)?;
        coverage.borrow_mut().add(&out, n);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let c = coverage.into_inner();
    eprintln!(
        "{workers} worker(s): {} cases, {} times compared, {} output updates, {:?}; raised {:?}, cleared {:?}",
        c.cases,
        c.compared_times,
        c.output_updates,
        started.elapsed(),
        c.raised,
        c.cleared
    );
    for rule in [Rule::Velocity, Rule::Amount, Rule::Geo, Rule::RiskyIp] {
        assert!(
            c.raised.get(&rule).copied().unwrap_or(0) > 0,
            "no case raised a {rule:?} alert: {c:?}"
        );
    }
    for rule in [Rule::Velocity, Rule::Amount, Rule::Geo] {
        assert!(
            c.cleared.get(&rule).copied().unwrap_or(0) > 0,
            "no case cleared a {rule:?} alert: {c:?}"
        );
    }
}

#[test]
fn random_histories_1_worker() {
    random_histories(1, 32);
}

#[test]
fn random_histories_2_workers() {
    random_histories(2, 32);
}

#[test]
fn random_histories_4_workers() {
    random_histories(4, 32);
}

/// A hand-made history that crosses every threshold, with a late line beyond its window, a
/// deleted product, a customer moving months and an IP turning into Tor: compared at every time
/// with 1, 2, 3 and 4 workers, fed in one round and in one round per input time.
#[test]
fn scripted_history_every_rule() {
    let cfg = views_config();
    let b = base();
    let mut h = History::default();
    let line = |tx: &str, p: &str, u: &str, s: &str, ts: Ms, price: i64, country: &str| Line {
        transaction_id: tx.into(),
        product_id: p.into(),
        user_id: u.into(),
        session_id: Some(s.into()),
        ts,
        price,
        quantity: 1,
        discount: 0,
        currency: "USD".into(),
        category_id: "C0".into(),
        brand: "B0".into(),
        country: country.into(),
        payment_method: "card".into(),
        channel: "none".into(),
        device_type: "mobile".into(),
    };
    let on_time = |l: Line| {
        let t = ceil_tick(l.ts, TICK);
        (l, t)
    };
    // U0: three transactions in two minutes (velocity), 6000 cents (amount), US and DE (geo)
    h.lines
        .push(on_time(line("T0", "P0", "U0", "S0", b + 1_500, 2000, "US")));
    h.lines.push(on_time(line(
        "T1",
        "P0",
        "U0",
        "S0",
        b + 60_250,
        2000,
        "DE",
    )));
    h.lines.push(on_time(line(
        "T2",
        "P1",
        "U0",
        "S0",
        b + 119_999,
        2000,
        "US",
    )));
    h.lines
        .push(on_time(line("T2", "P9", "U0", "S0", b + 119_999, 10, "US")));
    // U1: a line 30 minutes late, already out of the velocity window when it arrives
    let late = line("T3", "P1", "U1", "S1", b + 300_000, 100, "FR");
    let t = ceil_tick(late.ts, TICK) + 30 * 60_000;
    h.lines.push((late, t));
    // S1 saw IP1, which turns into Tor later: risky_ip for T3
    h.events.push((
        Event {
            event_id: "E0".into(),
            user_id: "U1".into(),
            session_id: Some("S1".into()),
            kind: EventKind::ProductView,
            product_id: Some("P1".into()),
            ip: Some("IP1".into()),
            ts: b + 200_000,
        },
        ceil_tick(b + 200_000, TICK),
    ));
    let mut tables = Tables::default();
    tables.upsert(product_row(0, 500, 3), 0, &mut h.tables);
    tables.upsert(product_row(1, 700, 10), 0, &mut h.tables);
    tables.upsert(customer_row(0, 0, 0), 0, &mut h.tables);
    tables.upsert(ip_row(1, Some(100_000), false), 0, &mut h.tables);
    let t1 = ceil_tick(b + 3_600_000, TICK);
    tables.delete(0, "P0".into(), t1, &mut h.tables);
    tables.upsert(customer_row(0, 1, 5), t1, &mut h.tables);
    tables.upsert(ip_row(1, Some(100_000), true), t1 + TICK, &mut h.tables);
    h.quality.push((
        Source::Transactions,
        Reason::Accepted,
        ceil_tick(b, TICK),
        5,
    ));
    let every_time: Vec<u64> = h.input_times().into_iter().filter(|t| *t > 0).collect();
    for workers in [1, 2, 3, 4] {
        for frontiers in [Vec::new(), every_time.clone()] {
            let out = run_views(&h, &cfg, workers, &frontiers);
            let times = critical_times(&h, &cfg, &out);
            let label = format!("scripted, {workers} worker(s), {} rounds", frontiers.len());
            compare(&h, &cfg, &out, &times, &label).unwrap_or_else(|e| panic!("{e}"));
            let raised: BTreeSet<Rule> = out
                .fraud_alerts
                .iter()
                .filter(|x| x.2 > 0)
                .map(|x| x.0.rule)
                .collect();
            assert_eq!(raised.len(), 4, "{label}: raised only {raised:?}");
            let net: isize = out
                .fraud_alerts
                .iter()
                .filter(|x| x.0.rule != Rule::RiskyIp)
                .map(|x| x.2)
                .sum();
            assert_eq!(net, 0, "{label}: windowed alerts must all clear");
        }
    }
}
