//! Replay throughput: records/s and peak RSS of a full replay with every view.
//!
//! Run with: cargo run --release -p shopdiff-benches --bin replay -- DIR [-w N] [--parse-only]
//!            [--updates N [--lines L] [--gap-ms G] [--no-history]] [--views revenue_hourly,revenue_daily,data_quality]
//!
//! `DIR` is a recorded stream (make one with `shopdiff generate --out DIR --records 5000000`).
//! Prints records, seconds, records/s, the process's peak RSS (VmHWM) and RSS per million
//! customers (`rfm` rows). `--parse-only` reads and validates both event files on one thread,
//! without the engine. `--updates N`: after the replay, N batches of 1,000 (`--lines L`) new order lines
//! (from the generator with another seed, so existing and new customers buy), each at the next
//! tick; reports the median and p99 time from handing a batch to the engine until every view
//! is readable at its `as_of` (published: every view staged), the two parts of it (the workers
//! until their probe passed; the publisher's stage), the merge into the rows' maps that follows
//! and a read of one of the batch's customers in `rfm` right after the `as_of` is out (it adds
//! the staged updates of its key while the merge runs, and must find the customer), the
//! updates each view folds per batch with the time their stage and merge took, and each
//! thread's CPU time and page faults over the updates. The batches are
//! made first and arrive `--gap-ms` apart (default 20; what making one took when they were
//! made in between). `--views A,B,..` replays through only those views (of
//! `revenue_hourly`, `revenue_daily`, `data_quality`, `rfm`): issue 2's figure, from when these
//! were the only views; the same batches, split and stores as the engine, without the others.

use anyhow::Context;
use shopdiff_benches::{flag, peak_rss_mb, thread_cpu_delta, thread_cpu_ms, thread_faults};
use shopdiff_connectors::files::{require, LineReader};
use shopdiff_connectors::generator::{GenConfig, GenStream, Generator};
use shopdiff_connectors::{Batch, Replay, ReplayOptions, TimeConfig};
use shopdiff_schemas::records::{is_blank, parse_behavior, parse_transaction};
use shopdiff_server::cli::{replay_dir, EngineArgs};
use shopdiff_server::store::{HistoryConfig, KeyVal, Select};
use shopdiff_server::Engine;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .context(
                "usage: replay DIR [-w N] [--parse-only | --views A,B | --updates N [--lines L] [--gap-ms G] [--no-history]]",
            )?,
    );
    let workers = flag(&args, "-w")?.unwrap_or(2);
    if args.iter().any(|a| a == "--parse-only") {
        return parse_only(&dir);
    }
    if let Some(v) = args
        .iter()
        .position(|a| a == "--views")
        .and_then(|i| args.get(i + 1))
    {
        let names: Vec<String> = v.split(',').map(str::to_string).collect();
        return selected(&dir, workers, &names);
    }
    if let Some(n) = flag::<usize>(&args, "--updates")? {
        let lines = flag(&args, "--lines")?.unwrap_or(1000);
        let history = !args.iter().any(|a| a == "--no-history");
        let gap_ms = flag(&args, "--gap-ms")?.unwrap_or(20);
        return updates(&dir, workers, n, lines, history, gap_ms);
    }
    let engine = EngineArgs {
        workers,
        tick_ms: 1000,
        lateness_ms: 5000,
        max_future_ms: shopdiff_connectors::ingest::DEFAULT_MAX_FUTURE_MS,
        horizon_ms: shopdiff_connectors::ingest::DEFAULT_HORIZON_MS,
        batch: 50_000,
        fraud_config: None,
    };
    let start = Instant::now();
    let (stores, stats) = replay_dir(&dir, &engine, None)?;
    let secs = start.elapsed().as_secs_f64();
    let records = stats.transactions + stats.behavior;
    let rows: usize = stores.iter().map(|v| v.len()).sum();
    let customers = stores.get("rfm").map_or(0, |v| v.len());
    // order lines: every record of the transactions stream, rejected ones included
    println!(
        "replay workers={workers} records={records} seconds={secs:.2} records_per_s={:.0} peak_rss_mb={:.0} view_rows={rows} customers={customers} peak_rss_mb_per_million_customers={:.0} order_lines={} peak_rss_mb_per_million_lines={:.0}",
        records as f64 / secs,
        peak_rss_mb(),
        peak_rss_mb() / (customers.max(1) as f64 / 1e6),
        stats.transactions,
        peak_rss_mb() / (stats.transactions.max(1) as f64 / 1e6)
    );
    print_state(&stores);
    Ok(())
}

/// Where the memory is: each operator's entries and table bytes, each view store's bytes.
fn print_state(stores: &shopdiff_server::store::Stores) {
    for (name, entries, bytes) in shopdiff_operators::state_size::sizes() {
        println!(
            "  state operator={name} entries={entries} table_mb={:.1}",
            bytes as f64 / 1e6
        );
    }
    for (name, bytes) in shopdiff_operators::state_size::peaks().into_iter().take(8) {
        println!(
            "  peak operator={} mb={:.1}",
            name.replace(' ', "_"),
            bytes as f64 / 1e6
        );
    }
    for v in stores.iter() {
        println!(
            "  store view={} rows={} mb={:.1}",
            v.def().name,
            v.len(),
            v.approx_bytes() as f64 / 1e6
        );
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Replays `dir`, then measures batches of 1,000 new order lines.
fn updates(
    dir: &std::path::Path,
    workers: usize,
    n: usize,
    size: usize,
    history: bool,
    gap_ms: u64,
) -> anyhow::Result<()> {
    let tick = 1000u64;
    let history = if history {
        HistoryConfig::default()
    } else {
        HistoryConfig::none()
    };
    let (engine, stats) = shopdiff_benches::replayed_base(dir, workers, history, tick)?;
    let wait_for = |f: u64| shopdiff_benches::wait_for_frontier(&engine, f, tick);
    let base = stats.transactions + stats.behavior;
    // new order lines: the generator with another seed, same user and product id space
    let gen = Generator::new(GenConfig {
        seed: 4242,
        records: (n as u64 + 10) * 20 * size.max(1000) as u64,
        bad_rate: 0.0,
        ..GenConfig::default()
    })?;
    let mut lines = gen
        .filter(|i| i.stream == GenStream::Transactions)
        .filter_map(|i| shopdiff_schemas::records::parse_transaction(&i.json).ok());
    let mut t = engine.fed_frontier().max(stats.as_of + tick);
    let mut ms = Vec::with_capacity(n);
    let (mut compute, mut folds) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut batches = Vec::with_capacity(n);
    for k in 0..n {
        let mut b = Batch::default();
        for _ in 0..size {
            let Some(mut l) = lines.next() else {
                anyhow::bail!("the generator ran out of lines after {k} batches");
            };
            l.ts = t as i64;
            l.transaction_id = format!("N{k:05}-{}", l.transaction_id).into();
            b.lines.push((l, t));
        }
        b.frontier = t + tick;
        batches.push(b);
        t += tick;
    }
    // every batch is made before the first is timed (the generator's CPU stays out of the
    // per-thread figures); batches arrive `gap_ms` apart, as they would from a stream
    let cpu_before = thread_cpu_ms();
    let mut t = engine.fed_frontier().max(stats.as_of + tick);
    // page faults during the updates (feed until readable) and between them
    let (mut during, mut between) = (Default::default(), Default::default());
    let mut last = thread_faults();
    let add = |sum: &mut std::collections::BTreeMap<String, f64>,
               a: &std::collections::BTreeMap<String, f64>,
               b: &std::collections::BTreeMap<String, f64>| {
        for (k, v) in b {
            *sum.entry(k.clone()).or_insert(0.0) += v - a.get(k).copied().unwrap_or(0.0);
        }
    };
    // updates each view folded over all batches
    let folded = |e: &Engine| -> Vec<(String, (u64, u64, u64))> {
        e.stores()
            .iter()
            .map(|v| (v.def().name.to_string(), v.folded_updates()))
            .collect()
    };
    let folded_before = folded(&engine);
    let (mut merges, mut reads) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (k, b) in batches.into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(gap_ms));
        if k > 0 {
            // the previous batch's merge into the rows' maps, long done after the pause
            merges.push(engine.stores().last_merge().as_secs_f64() * 1e3);
        }
        let before = thread_faults();
        add(&mut between, &last, &before);
        let user = b.lines.first().map(|(l, _)| l.user_id.clone());
        let s = Instant::now();
        anyhow::ensure!(engine.feed(b), "engine stopped");
        wait_for(t + tick)?;
        ms.push(s.elapsed().as_secs_f64() * 1e3);
        // a read of one of the batch's customers in `rfm` at once, at the new `as_of`: the
        // staged updates are usually not merged yet
        if let Some(user) = user {
            let r = Instant::now();
            let g = engine.stores().read();
            let as_of = g.as_of().unwrap_or(0);
            let sel = Select {
                key: Some(vec![KeyVal::Str(user.clone())]),
                ..Select::default()
            };
            let rows = g
                .get("rfm")
                .and_then(|v| v.select(&sel, as_of, as_of))
                .map(|a| a.rows.len());
            drop(g);
            reads.push(r.elapsed().as_secs_f64() * 1e3);

            anyhow::ensure!(rows == Some(1), "rfm has no row for {user} at {as_of}");
        }
        last = thread_faults();
        add(&mut during, &before, &last);
        // the latency's two parts: the workers (feed until their probe passed) and the fold
        let (reported, fold) = engine.stores().last_advance();
        if let Some(at) = reported.filter(|at| *at >= s) {
            compute.push((at - s).as_secs_f64() * 1e3);
        }
        folds.push(fold.as_secs_f64() * 1e3);
        t += tick;
    }
    let cpu = thread_cpu_delta(&cpu_before, &thread_cpu_ms());
    let wall: f64 = ms.iter().sum();
    println!(
        "updates on a base of {base} records, workers={workers}: {n} batches of {size} order lines, each reflected in every view: median {:.1} ms, p99 {:.1} ms; peak_rss_mb={:.0}",
        pct(&mut ms, 0.5),
        pct(&mut ms, 0.99),
        peak_rss_mb()
    );
    if !compute.is_empty() && !folds.is_empty() {
        println!(
            "  of which the workers (feed until the probe passed): median {:.1} ms; the publisher's stage of every view: median {:.1} ms",
            pct(&mut compute, 0.5),
            pct(&mut folds, 0.5)
        );
    }
    if !merges.is_empty() && !reads.is_empty() {
        println!(
            "  then the merge into the rows' maps, after the as_of is out: median {:.1} ms; a key read of rfm at once: median {:.3} ms, p99 {:.3} ms",
            pct(&mut merges, 0.5),
            pct(&mut reads, 0.5),
            pct(&mut reads, 0.99)
        );
    }
    println!("  CPU ms per thread over the {wall:.0} ms of all updates: {cpu}");
    let per: Vec<String> = folded(&engine)
        .iter()
        .zip(&folded_before)
        .map(|((name, after), (_, before))| {
            let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1e6 / n.max(1) as f64;
            format!(
                "{name}={}/{:.2}+{:.2}ms",
                after.0.saturating_sub(before.0) / n.max(1) as u64,
                per(after.1, before.1),
                per(after.2, before.2)
            )
        })
        .collect();
    println!(
        "  updates folded per batch and the time their stage + merge took, by view: {}",
        per.join(" ")
    );
    let none = Default::default();
    println!(
        "  page faults per thread, during the updates: {}; between them: {}",
        thread_cpu_delta(&none, &during),
        thread_cpu_delta(&none, &between)
    );
    drop(engine);
    Ok(())
}

fn parse_only(dir: &std::path::Path) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut n = 0u64;
    let mut ok = 0u64;
    for (name, tx) in [("transactions", true), ("behavior", false)] {
        let mut r = LineReader::open(&require(dir, name)?)?;
        while let Some((_, bytes)) = r.next_line()? {
            let Ok(text) = std::str::from_utf8(bytes) else {
                continue;
            };
            if is_blank(text) {
                continue;
            }
            n += 1;
            let good = if tx {
                parse_transaction(text).is_ok()
            } else {
                parse_behavior(text).is_ok()
            };
            ok += good as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "parse-only records={n} accepted={ok} seconds={secs:.2} records_per_s_per_core={:.0}",
        n as f64 / secs
    );
    Ok(())
}

/// `--views a,b,c`: the replay through only the named views, on `workers` workers in this
/// process, each view's output folded into its store as in the engine (same batches, same
/// round-robin split, same advance per batch); everything else of the engine left out.
fn selected(dir: &std::path::Path, workers: usize, names: &[String]) -> anyhow::Result<()> {
    use differential_dataflow::input::Input;
    use shopdiff_dataflows::common::Coll;
    use shopdiff_dataflows::*;
    use shopdiff_schemas::records::{Event, Line};
    use shopdiff_schemas::rows::{self, Row};
    use shopdiff_schemas::tables::{Customer, IpRep, Product, TableRow};
    use shopdiff_schemas::{Reason, Source, Str};
    use shopdiff_server::store::{HistoryConfig, ViewStore};
    use std::sync::Arc;
    use timely::dataflow::operators::probe::Handle;

    for n in names {
        anyhow::ensure!(
            shopdiff_schemas::rows::ALL_VIEWS
                .iter()
                .any(|d| d.name == n),
            "no view {n}"
        );
    }
    let tick = 1000u64;
    // as `shopdiff replay`: no history of updates (no `as_of` reads in a batch replay)
    let h = HistoryConfig::none();
    let rh = ViewStore::with_history(rows::REVENUE_HOURLY, tick, h);
    let rd = ViewStore::with_history(rows::REVENUE_DAILY, tick, h);
    let dq = ViewStore::with_history(rows::DATA_QUALITY, tick, h);
    let rfm_s = ViewStore::with_history(rows::RFM, tick, h);
    let mut stores = shopdiff_server::Stores::new(tick);
    let has = |n: &str| names.iter().any(|x| x == n);
    for (n, s) in [
        (
            "revenue_hourly",
            rh.clone() as Arc<dyn shopdiff_server::AnyView>,
        ),
        ("revenue_daily", rd.clone()),
        ("data_quality", dq.clone()),
        ("rfm", rfm_s.clone()),
    ] {
        if has(n) {
            stores.add(s);
        }
    }
    anyhow::ensure!(
        names.iter().all(
            |n| ["revenue_hourly", "revenue_daily", "data_quality", "rfm"].contains(&n.as_str())
        ),
        "--views takes revenue_hourly, revenue_daily, data_quality and rfm"
    );
    let label = names.join(",");
    let names = names.to_vec();
    type Part = (
        Vec<(Line, u64)>,
        Vec<(Event, u64)>,
        Vec<(Source, Reason, u64, i64)>,
        Vec<(TableRow, u64, isize)>,
        u64,
    );
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| crossbeam_channel::bounded::<Option<Part>>(2))
        .unzip();
    let receivers = std::sync::Mutex::new(receivers.into_iter().map(Some).collect::<Vec<_>>());
    let wstores = stores.clone();
    shopdiff_server::tune_allocator();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let Some(rx) = receivers
            .lock()
            .ok()
            .and_then(|mut r| r[worker.index()].take())
        else {
            return;
        };
        fn sink<'s, R: Row + differential_dataflow::ExchangeData>(
            c: Coll<'s, R>,
            s: Arc<ViewStore<R>>,
            p: &Handle<u64>,
        ) {
            c.inspect_batch(move |_, u| s.push(u)).probe_with(p);
        }
        let probe = Handle::new();
        let (mut li, mut ei, mut qi, mut pi, mut ci, mut ii) =
            worker.dataflow::<u64, _, _>(|scope| {
                let (li, lines) = scope.new_collection::<Line, isize>();
                let (ei, events) = scope.new_collection::<Event, isize>();
                let (qi, quality) = scope.new_collection::<(Source, Reason), isize>();
                let (pi, products) = scope.new_collection::<(Str, Product), isize>();
                let (ci, customers) = scope.new_collection::<(Str, Customer), isize>();
                let (ii, ips) = scope.new_collection::<(Str, IpRep), isize>();
                let has = |n: &str| names.iter().any(|x| x == n);
                if has("revenue_hourly") && has("revenue_daily") {
                    let priced = revenue::priced_lines(lines.clone(), products.clone());
                    let (hourly, daily) = revenue::revenue_views(priced, None);
                    sink(hourly, rh.clone(), &probe);
                    sink(daily, rd.clone(), &probe);
                } else {
                    let one = [
                        ("revenue_hourly", revenue::Granularity::Hourly, &rh),
                        ("revenue_daily", revenue::Granularity::Daily, &rd),
                    ];
                    for (_, g, store) in one.into_iter().filter(|(n, _, _)| has(n)) {
                        let v = revenue::revenue(lines.clone(), products.clone(), g);
                        sink(v, store.clone(), &probe);
                    }
                }
                if has("rfm") {
                    sink(rfm::rfm(lines.clone()), rfm_s.clone(), &probe);
                }
                // An input that nothing reads keeps every update it is given (timely hands the
                // container back to the input session, which goes on appending to it): give
                // the inputs these views leave unread a probe, which drops them.
                events.probe_with(&probe);
                ips.probe_with(&probe);
                if has("data_quality") {
                    sink(
                        data_quality::data_quality(quality, lines, products, customers),
                        dq.clone(),
                        &probe,
                    );
                } else {
                    quality.probe_with(&probe);
                    customers.probe_with(&probe);
                    if !has("revenue_hourly") && !has("revenue_daily") {
                        products.probe_with(&probe);
                    }
                    if !has("rfm") && !has("revenue_hourly") && !has("revenue_daily") {
                        lines.probe_with(&probe);
                    }
                }
                (li, ei, qi, pi, ci, ii)
            });
        let mut in_flight = std::collections::VecDeque::new();
        let mut done = false;
        loop {
            while in_flight.front().is_some_and(|f| !probe.less_than(f)) {
                in_flight.pop_front();
            }
            if !done && in_flight.len() < 3 {
                match rx.try_recv() {
                    Ok(Some((lines, events, quality, tables, frontier))) => {
                        for (l, t) in lines {
                            li.update_at(l, t, 1);
                        }
                        for (e, t) in events {
                            ei.update_at(e, t, 1);
                        }
                        for (s, r, t, n) in quality {
                            qi.update_at((s, r), t, n as isize);
                        }
                        for (row, t, d) in tables {
                            match row {
                                TableRow::Product(x) => {
                                    pi.update_at((x.product_id.clone(), x), t, d)
                                }
                                TableRow::Customer(x) => ci.update_at((x.user_id.clone(), x), t, d),
                                TableRow::Ip(x) => ii.update_at((x.ip_address.clone(), x), t, d),
                            }
                        }
                        if frontier > *li.time() {
                            li.advance_to(frontier);
                            ei.advance_to(frontier);
                            qi.advance_to(frontier);
                            pi.advance_to(frontier);
                            ci.advance_to(frontier);
                            ii.advance_to(frontier);
                        }
                        li.flush();
                        ei.flush();
                        qi.flush();
                        pi.flush();
                        ci.flush();
                        ii.flush();
                        in_flight.push_back(frontier);
                    }
                    Ok(None) | Err(crossbeam_channel::TryRecvError::Disconnected) => done = true,
                    Err(crossbeam_channel::TryRecvError::Empty) => {}
                }
            }
            worker.step_or_park(Some(Duration::from_millis(1)));
            probe.with_frontier(|f| {
                if let Some(t) = f.first() {
                    wstores.notify(*t);
                }
            });
            if done && !probe.less_than(li.time()) {
                break;
            }
        }
    })
    .map_err(anyhow::Error::msg)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (pub_stores, pub_stop) = (stores.clone(), stop.clone());
    let publisher = std::thread::spawn(move || pub_stores.publish_until(&pub_stop));
    let replay = Replay::open(
        dir,
        ReplayOptions {
            time: TimeConfig::default(),
            batch_records: 50_000,
            dead_letters: None,
        },
    )?;
    let start = Instant::now();
    let mut fed = 0u64;
    let stats = replay.run(|b| {
        fed = fed.max(b.frontier);
        let n = senders.len();
        // sized up front, as `Engine::feed` does
        let mut parts: Vec<Part> = (0..n)
            .map(|_| {
                (
                    Vec::with_capacity(b.lines.len().div_ceil(n)),
                    Vec::with_capacity(b.events.len().div_ceil(n)),
                    Vec::new(),
                    Vec::new(),
                    b.frontier,
                )
            })
            .collect();
        for (i, x) in b.lines.into_iter().enumerate() {
            parts[i % n].0.push(x);
        }
        for (i, x) in b.events.into_iter().enumerate() {
            parts[i % n].1.push(x);
        }
        for (i, x) in b.quality.into_iter().enumerate() {
            parts[i % n].2.push(x);
        }
        for (i, x) in b.tables.into_iter().enumerate() {
            parts[i % n].3.push(x);
        }
        parts
            .into_iter()
            .zip(&senders)
            .all(|(p, s)| s.send(Some(p)).is_ok())
    })?;
    for s in &senders {
        let _ = s.send(None);
    }
    for r in guards.join() {
        r.map_err(anyhow::Error::msg)?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    stores.notify(0);
    let _ = publisher.join();
    stores.advance(fed);
    let secs = start.elapsed().as_secs_f64();
    let records = stats.transactions + stats.behavior;
    let rows: usize = stores.iter().map(|v| v.len()).sum();
    println!(
        "replay views={} workers={workers} records={records} seconds={secs:.2} records_per_s={:.0} peak_rss_mb={:.0} view_rows={rows}",
        label,
        records as f64 / secs,
        peak_rss_mb(),
    );
    Ok(())
}
