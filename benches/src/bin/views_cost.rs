//! Which view costs what: one view at a time on one worker, a full replay of `DIR`, then
//! batches of 1,000 new order lines at the next ticks.
//!
//! Run with: cargo run --release -p shopdiff-benches --bin views_cost -- DIR [--view NAME]
//!           [--updates N]
//!
//! Without `--view` it measures every view in turn. For each it prints the replay's records/s
//! and the median and p99 time until a batch of 1,000 lines is complete in that view.

use differential_dataflow::input::Input;
use differential_dataflow::Collection;
use shopdiff_benches::peak_rss_mb;
use shopdiff_connectors::generator::{GenConfig, GenStream, Generator};
use shopdiff_connectors::{Replay, ReplayOptions, TimeConfig};
use shopdiff_dataflows::config::ViewsConfig;
use shopdiff_schemas::records::{Event, Line};
use shopdiff_schemas::tables::{Customer, IpRep, Product, TableRow};
use shopdiff_schemas::{Reason, Source, Str};
use std::path::{Path, PathBuf};
use std::time::Instant;
use timely::dataflow::operators::probe::Handle;

const VIEWS: [&str; 10] = [
    "rfm",
    "rfm_segments",
    "cohorts",
    "revenue_hourly",
    "revenue_daily",
    "fraud_alerts",
    "product_performance",
    "inventory",
    "funnel_daily",
    "data_quality",
];

fn probe_of<'s, D: differential_dataflow::Data>(
    c: Collection<'s, u64, Vec<(D, u64, isize)>>,
    p: &Handle<u64>,
) {
    c.probe_with(p);
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn new_lines(n: usize) -> Vec<Line> {
    let gen = match Generator::new(GenConfig {
        seed: 4242,
        records: (n as u64 + 10) * 20_000,
        bad_rate: 0.0,
        ..GenConfig::default()
    }) {
        Ok(g) => g,
        Err(e) => panic!("generator: {e}"),
    };
    gen.filter(|i| i.stream == GenStream::Transactions)
        .filter_map(|i| shopdiff_schemas::records::parse_transaction(&i.json).ok())
        .take(n * 1000)
        .collect()
}

fn one(dir: &Path, view: &'static str, updates: usize, extra: &[Line]) {
    let dir = dir.to_path_buf();
    let extra = extra.to_vec();
    timely::execute_directly(move |worker| {
        let probe = Handle::new();
        let cfg = ViewsConfig::default();
        let (
            mut lines_in,
            mut events_in,
            mut quality_in,
            mut products_in,
            mut customers_in,
            mut ips_in,
        ) = worker.dataflow::<u64, _, _>(|scope| {
            let (li, lines) = scope.new_collection::<Line, isize>();
            let (ei, events) = scope.new_collection::<Event, isize>();
            let (qi, quality) = scope.new_collection::<(Source, Reason), isize>();
            let (pi, products) = scope.new_collection::<(Str, Product), isize>();
            let (ci, customers) = scope.new_collection::<(Str, Customer), isize>();
            let (ii, ips) = scope.new_collection::<(Str, IpRep), isize>();
            use shopdiff_dataflows::*;
            match view {
                "rfm" => probe_of(rfm::rfm(lines), &probe),
                "rfm_segments" => probe_of(rfm::rfm_segments(rfm::rfm(lines)), &probe),
                "cohorts" => probe_of(cohorts::cohorts(lines, customers), &probe),
                "revenue_hourly" => probe_of(
                    revenue::revenue(lines, products, revenue::Granularity::Hourly),
                    &probe,
                ),
                "revenue_daily" => probe_of(
                    revenue::revenue(lines, products, revenue::Granularity::Daily),
                    &probe,
                ),
                "fraud_alerts" => probe_of(
                    fraud::fraud_alerts(lines, events, ips, &cfg.fraud, cfg.tick_ms),
                    &probe,
                ),
                "product_performance" => probe_of(
                    product_performance::product_performance(lines, events, &cfg),
                    &probe,
                ),
                "inventory" => probe_of(inventory::inventory(lines, products, cfg.tick_ms), &probe),
                "funnel_daily" => probe_of(funnel::funnel(lines, events, &cfg), &probe),
                _ => probe_of(
                    data_quality::data_quality(quality, lines, products, customers),
                    &probe,
                ),
            }
            (li, ei, qi, pi, ci, ii)
        });
        let replay = match Replay::open(
            &dir,
            ReplayOptions {
                time: TimeConfig::default(),
                batch_records: 50_000,
                dead_letters: None,
            },
        ) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let start = Instant::now();
        let mut frontier = 0u64;
        let stats = replay.run(|b| {
            for (l, t) in b.lines {
                lines_in.update_at(l, t, 1);
            }
            for (e, t) in b.events {
                events_in.update_at(e, t, 1);
            }
            for (s, r, t, n) in b.quality {
                quality_in.update_at((s, r), t, n as isize);
            }
            for (row, t, d) in b.tables {
                match row {
                    TableRow::Product(x) => products_in.update_at((x.product_id.clone(), x), t, d),
                    TableRow::Customer(x) => customers_in.update_at((x.user_id.clone(), x), t, d),
                    TableRow::Ip(x) => ips_in.update_at((x.ip_address.clone(), x), t, d),
                }
            }
            frontier = frontier.max(b.frontier);
            lines_in.advance_to(frontier);
            lines_in.flush();
            events_in.advance_to(frontier);
            events_in.flush();
            quality_in.advance_to(frontier);
            quality_in.flush();
            products_in.advance_to(frontier);
            products_in.flush();
            customers_in.advance_to(frontier);
            customers_in.flush();
            ips_in.advance_to(frontier);
            ips_in.flush();
            while probe.less_than(&frontier) {
                worker.step();
            }
            true
        });
        let stats = match stats {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let base = stats.transactions + stats.behavior;
        let secs = start.elapsed().as_secs_f64();
        let tick = 1000u64;
        let mut t = frontier;
        let mut ms = Vec::new();
        let rss_before = shopdiff_server::metrics::resident_bytes().unwrap_or(0);
        let mut added = 0usize;
        for (k, chunk) in extra.chunks(1000).take(updates).enumerate() {
            let s = Instant::now();
            for l in chunk {
                let mut l = l.clone();
                l.ts = t as i64;
                l.transaction_id = format!("N{k:05}-{}", l.transaction_id).into();
                lines_in.update_at(l, t, 1);
                added += 1;
            }
            t += tick;
            lines_in.advance_to(t);
            lines_in.flush();
            events_in.advance_to(t);
            events_in.flush();
            quality_in.advance_to(t);
            quality_in.flush();
            products_in.advance_to(t);
            products_in.flush();
            customers_in.advance_to(t);
            customers_in.flush();
            ips_in.advance_to(t);
            ips_in.flush();
            while probe.less_than(&t) {
                worker.step();
            }
            ms.push(s.elapsed().as_secs_f64() * 1e3);
        }
        let grown = shopdiff_server::metrics::resident_bytes()
            .unwrap_or(0)
            .saturating_sub(rss_before);
        println!(
            "{view:<20} replay {:>8.0} records/s   1,000 lines: median {:>7.2} ms  p99 {:>7.2} ms   RSS growth {:>6.0} bytes/line   (base {base}, peak RSS so far {:.0} MB)",
            base as f64 / secs,
            pct(&mut ms, 0.5),
            pct(&mut ms, 0.99),
            grown as f64 / added.max(1) as f64,
            peak_rss_mb()
        );
    });
}

fn main() {
    // freed memory stays with the allocator, so RSS growth is the state the updates added
    shopdiff_server::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: views_cost DIR [--view NAME] [--updates N]");
        std::process::exit(2)
    };
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let updates: usize = get("--updates").and_then(|v| v.parse().ok()).unwrap_or(30);
    let extra = new_lines(updates);
    match get("--view") {
        Some(v) => match VIEWS.iter().find(|x| **x == v) {
            Some(v) => one(&dir, v, updates, &extra),
            None => {
                eprintln!("no view {v}; views: {}", VIEWS.join(", "));
                std::process::exit(2)
            }
        },
        None => {
            for v in VIEWS {
                one(&dir, v, updates, &extra);
            }
        }
    }
}
