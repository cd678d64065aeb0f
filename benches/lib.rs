//! Shared helpers for the benchmark binaries.

/// The process's peak resident set size in MB (`VmHWM` from `/proc/self/status`), 0 if unknown.
pub use shopdiff_server::metrics::peak_rss_mb;

/// The value after `name` in `args`, parsed (`None` when the flag is absent); a flag without a
/// value or with one that does not parse is an error naming both.
pub fn flag<T: std::str::FromStr>(args: &[String], name: &str) -> anyhow::Result<Option<T>> {
    let Some(i) = args.iter().position(|a| a == name) else {
        return Ok(None);
    };
    let v = args
        .get(i + 1)
        .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?;
    v.parse()
        .map(Some)
        .map_err(|_| anyhow::anyhow!("{name}: `{v}` is not a valid value"))
}

/// [`flag`], or `default` when the flag is absent.
pub fn flag_or<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> anyhow::Result<T> {
    Ok(flag(args, name)?.unwrap_or(default))
}

/// CPU time (user + system, in ms) of each thread of this process by thread name, from
/// `/proc/self/task/*/stat` (Linux; empty elsewhere). Threads of one name are summed.
pub fn thread_cpu_ms() -> std::collections::BTreeMap<String, f64> {
    thread_stat(|f| (f(11) + f(12)) * 10.0)
}

/// Minor page faults (first touches of memory) of each thread by thread name, summed like
/// [`thread_cpu_ms`].
pub fn thread_faults() -> std::collections::BTreeMap<String, f64> {
    thread_stat(|f| f(7))
}

/// One figure per thread name from `/proc/self/task/*/stat`: `pick` gets the fields after the
/// thread's name (0: state, 7: minor faults, 11/12: user/system clock ticks).
fn thread_stat(
    pick: impl Fn(&dyn Fn(usize) -> f64) -> f64,
) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ..." - comm may hold spaces, so split after the last ')'
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // (clock ticks are 10 ms on every Linux we run on)
        *out.entry(name).or_insert(0.0) += pick(&field);
    }
    out
}

/// What each thread added between two [`thread_cpu_ms`] (or [`thread_faults`]) readings, as
/// `name=n` pairs.
pub fn thread_cpu_delta(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
) -> String {
    after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .map(|(k, d)| format!("{k}={d:.0}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Blocks until the publisher says every view of `engine` reached frontier `f` (its `as_of` at
/// least `f - tick`), without polling: a polling loop's wake-ups take CPU from the workers on
/// a small machine. An error after ten minutes.
pub fn wait_for_frontier(
    engine: &shopdiff_server::Engine,
    f: u64,
    tick: u64,
) -> anyhow::Result<()> {
    let at = engine
        .stores()
        .wait_as_of(f.saturating_sub(tick), std::time::Duration::from_secs(600));
    anyhow::ensure!(at.is_some_and(|a| a + tick >= f), "as_of stuck below {f}");
    Ok(())
}

/// An engine on `workers` workers (all views, default settings, `history` kept) with the
/// recorded stream in `dir` replayed into it and every view caught up: the base that the
/// update benches change. Prints the base's size and time to stderr.
pub fn replayed_base(
    dir: &std::path::Path,
    workers: usize,
    history: shopdiff_server::store::HistoryConfig,
    tick: u64,
) -> anyhow::Result<(shopdiff_server::Engine, shopdiff_connectors::ReplayStats)> {
    use shopdiff_connectors::{Replay, ReplayOptions, TimeConfig};
    let engine = shopdiff_server::Engine::start_with(
        &shopdiff_server::EngineConfig {
            fine_ticks: false,
            cluster: None,
            workers,
            views: shopdiff_dataflows::config::ViewsConfig::default(),
        },
        history,
    )
    .map_err(anyhow::Error::msg)?;
    let opts = ReplayOptions {
        time: TimeConfig::default(),
        batch_records: 50_000,
        dead_letters: None,
    };
    let start = std::time::Instant::now();
    let stats = Replay::open(dir, opts)?.run(|b| engine.feed(b))?;
    wait_for_frontier(&engine, engine.fed_frontier(), tick)?;
    eprintln!(
        "base: {} records replayed in {:.1}s; as_of {}",
        stats.transactions + stats.behavior,
        start.elapsed().as_secs_f64(),
        stats.as_of
    );
    Ok((engine, stats))
}
