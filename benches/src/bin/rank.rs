//! Benchmark of the incremental ntile operator (`shopdiff_operators::rank`).
//!
//! Run with: `cargo run --release -p shopdiff-benches --bin rank -- [--n 1000000] [--updates 10000]
//! [--buckets 5] [--workers 1] [--seed 1]` (`--n` may repeat; default: 100,000 then 1,000,000).
//!
//! For each `n`: load `n` customers with random monetary metrics (integer cents, uniform in
//! `[0, 1000 n)`) at time 0, then apply `updates` purchases, each raising one random customer's
//! metric by a uniform `[1, 50 n)` cents (a rank jump of up to ~5 % of `n`, so the expected
//! number of boundary crossings does not depend on `n`), each at its own time (1000 ms apart),
//! stepping until the probe passes that time. Reported per update: median / p99 / max wall time
//! through the dataflow, the mean and max output rows (a changed key is 2 rows), and the same
//! updates applied to a bare `NtileState` (the operator's own work, without timely). Peak RSS
//! is the process's `VmHWM`, so the second line includes the first.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use differential_dataflow::input::Input;
use shopdiff_operators::rank::{Ntile, NtileState};
use timely::dataflow::operators::probe::Handle;

/// Command-line options.
struct Options {
    sizes: Vec<u64>,
    updates: usize,
    buckets: u64,
    workers: usize,
    seed: u64,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        sizes: Vec::new(),
        updates: 10_000,
        buckets: 5,
        workers: 1,
        seed: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .replace('_', "")
                .parse::<u64>()
                .with_context(|| format!("{flag} {value}"))
        };
        match flag.as_str() {
            "--n" => options.sizes.push(number()?),
            "--updates" => options.updates = number()? as usize,
            "--buckets" => options.buckets = number()?,
            "--workers" => options.workers = number()? as usize,
            "--seed" => options.seed = number()?,
            _ => bail!(
                "unknown flag {flag}; expected --n, --updates, --buckets, --workers or --seed"
            ),
        }
    }
    if options.sizes.is_empty() {
        options.sizes = vec![100_000, 1_000_000];
    }
    if options.sizes.contains(&0) || options.buckets == 0 || options.workers == 0 {
        bail!("--n, --buckets and --workers must be positive");
    }
    Ok(options)
}

/// SplitMix64: a small deterministic generator, so every worker can replay the same stream.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// The workload: initial metrics, then `(customer, old, new)` purchases.
struct Workload {
    initial: Vec<i64>,
    purchases: Vec<(u64, i64, i64)>,
}

fn workload(n: u64, updates: usize, seed: u64) -> Workload {
    let mut rng = SplitMix(seed ^ n);
    let initial: Vec<i64> = (0..n).map(|_| rng.below(1000 * n) as i64).collect();
    let mut current = initial.clone();
    let purchases = (0..updates)
        .map(|_| {
            let customer = rng.below(n);
            let old = current[customer as usize];
            let new = old + 1 + rng.below(50 * n - 1) as i64;
            current[customer as usize] = new;
            (customer, old, new)
        })
        .collect();
    Workload { initial, purchases }
}

/// What one run through the dataflow measured (worker 0's view).
struct DataflowRun {
    load: Duration,
    latencies: Vec<Duration>,
    rows: Vec<usize>,
}

fn run_dataflow(work: &Workload, buckets: u64, workers: usize) -> Result<DataflowRun> {
    let work = std::sync::Arc::new(Workload {
        initial: work.initial.clone(),
        purchases: work.purchases.clone(),
    });
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let emitted = Rc::new(Cell::new(0usize));
        let counter = Rc::clone(&emitted);
        let probe = Handle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, spend) = scope.new_collection::<(u64, i64), isize>();
            spend
                .ntile(buckets, 0)
                .inspect_batch(move |_, rows| counter.set(counter.get() + rows.len()))
                .probe_with(&probe);
            input
        });
        let feeder = worker.index() == 0;
        let started = Instant::now();
        if feeder {
            for (customer, metric) in work.initial.iter().enumerate() {
                input.insert((customer as u64, *metric));
            }
        }
        input.advance_to(1000);
        input.flush();
        worker.step_while(|| probe.less_than(input.time()));
        let load = started.elapsed();
        let (mut latencies, mut rows) = (Vec::new(), Vec::new());
        for (i, &(customer, old, new)) in work.purchases.iter().enumerate() {
            let before = emitted.get();
            let started = Instant::now();
            if feeder {
                input.remove((customer, old));
                input.insert((customer, new));
            }
            input.advance_to(1000 * (i as u64 + 2));
            input.flush();
            worker.step_while(|| probe.less_than(input.time()));
            latencies.push(started.elapsed());
            rows.push(emitted.get() - before);
        }
        DataflowRun {
            load,
            latencies,
            rows,
        }
    })
    .map_err(anyhow::Error::msg)?;
    let mut runs = guards
        .join()
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let mut run = runs.swap_remove(0);
    // The owner (worker 0 % peers = 0) counted the output; other workers saw none.
    run.rows = runs.iter().fold(run.rows, |acc, other| {
        acc.iter().zip(&other.rows).map(|(a, b)| a + b).collect()
    });
    Ok(run)
}

/// The same workload on a bare `NtileState`: the operator's own work per update.
fn run_state(work: &Workload, buckets: u64) -> (Duration, Vec<Duration>) {
    let mut state = NtileState::<u64, i64>::new(buckets);
    let mut out = Vec::new();
    let started = Instant::now();
    let mut load: Vec<((i64, u64), isize)> = work
        .initial
        .iter()
        .enumerate()
        .map(|(c, m)| ((*m, c as u64), 1))
        .collect();
    state.apply(&mut load, &mut out).expect("a set");
    let load_time = started.elapsed();
    let mut latencies = Vec::with_capacity(work.purchases.len());
    for &(customer, old, new) in &work.purchases {
        out.clear();
        let started = Instant::now();
        let mut updates = vec![((old, customer), -1), ((new, customer), 1)];
        state.apply(&mut updates, &mut out).expect("a set");
        latencies.push(started.elapsed());
    }
    (load_time, latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A `/proc/self/status` field such as `VmHWM` (peak RSS) or `VmRSS`, e.g. `"25304 kB"`.
fn status_field(name: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status
        .lines()
        .find(|line| line.split(':').next() == Some(name));
    line.map_or_else(
        || "unknown".into(),
        |line| {
            line.split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

fn report(n: u64, options: &Options, run: &DataflowRun, state: &(Duration, Vec<Duration>)) {
    let mut sorted = run.latencies.clone();
    sorted.sort();
    let mut bare = state.1.clone();
    bare.sort();
    let updates = run.rows.len().max(1) as f64;
    let mean_rows = run.rows.iter().sum::<usize>() as f64 / updates;
    let max_rows = run.rows.iter().max().copied().unwrap_or(0);
    println!(
        "n={n} k={} workers={} updates={}: load {:.0} ms (bare state {:.0} ms); per update \
         median {:.1} us, p99 {:.1} us, max {:.1} us; output rows per update mean {:.3} (max {max_rows}, \
         i.e. {:.3} changed keys); bare NtileState::apply median {:.2} us, p99 {:.2} us; \
         peak RSS so far {}, RSS now {}",
        options.buckets,
        options.workers,
        run.latencies.len(),
        run.load.as_secs_f64() * 1e3,
        state.0.as_secs_f64() * 1e3,
        micros(percentile(&sorted, 0.5)),
        micros(percentile(&sorted, 0.99)),
        micros(*sorted.last().unwrap_or(&Duration::ZERO)),
        mean_rows,
        mean_rows / 2.0,
        micros(percentile(&bare, 0.5)),
        micros(percentile(&bare, 0.99)),
        status_field("VmHWM"),
        status_field("VmRSS"),
    );
}

fn main() -> Result<()> {
    let options = parse_options()?;
    if options.updates == 0 {
        bail!("--updates must be positive");
    }
    for &n in &options.sizes {
        let work = workload(n, options.updates, options.seed);
        let run = run_dataflow(&work, options.buckets, options.workers)?;
        let state = run_state(&work, options.buckets);
        report(n, &options, &run, &state);
    }
    Ok(())
}
