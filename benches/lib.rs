//! Shared helpers for the benchmark binaries.

/// The process's peak resident set size in MB (`VmHWM` from `/proc/self/status`), 0 if unknown.
pub use shopdiff_server::metrics::peak_rss_mb;

/// CPU time (user + system, in ms) of each thread of this process by thread name, from
/// `/proc/self/task/*/stat` (Linux; empty elsewhere). Threads of one name are summed.
pub fn thread_cpu_ms() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    // clock ticks per second: 100 on every Linux we run on
    let tick_ms = 10.0;
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
        // after comm: state(0) ... utime(11) stime(12)
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) * tick_ms;
    }
    out
}

/// The CPU each thread spent between two [`thread_cpu_ms`] readings, as `name=ms` pairs.
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
