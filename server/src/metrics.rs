//! Process metrics in the Prometheus text format (`GET /metrics`).
//!
//! Counters are plain atomics updated by the feeder (records in and rejected per source and
//! reason, watermark) and by the HTTP layer (request latency histograms per route); gauges
//! (rows per view, history, subscribers, `as_of`) are read from the stores when scraped.
//! No label ever carries a customer value: labels are views, sources, reasons and routes.

use crate::store::{AnyView, Stores};
use shopdiff_connectors::Batch;
use shopdiff_schemas::{Reason, Source};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Latency buckets in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The engine's and server's counters.
#[derive(Default)]
pub struct Metrics {
    accepted: Mutex<BTreeMap<&'static str, u64>>,
    rejected: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    watermark_ms: AtomicI64,
    batches: AtomicU64,
    requests: Mutex<BTreeMap<(&'static str, u16), Histogram>>,
    sse_dropped: AtomicU64,
    /// Reads refused or cut at their deadline (queued or running too long).
    read_deadlines: AtomicU64,
    /// Identities kept for dedup (lines, events), as of the last batch.
    identities: [AtomicU64; 2],
}

/// One metric with a sample per view (`{view="name"}`), with its `HELP` line unless `help` is
/// empty and its `TYPE` line.
fn per_view(
    o: &mut String,
    stores: &Stores,
    name: &str,
    kind: &str,
    help: &str,
    value: &dyn Fn(&dyn AnyView) -> String,
) {
    if !help.is_empty() {
        let _ = writeln!(o, "# HELP {name} {help}");
    }
    let _ = writeln!(o, "# TYPE {name} {kind}");
    for v in stores.iter() {
        let _ = writeln!(
            o,
            "{name}{{view=\"{}\"}} {}",
            v.def().name,
            value(v.as_ref())
        );
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn source_name(s: Source) -> &'static str {
    s.as_str()
}

fn reason_name(r: Reason) -> &'static str {
    r.as_str()
}

impl Metrics {
    /// Counts a batch handed to the engine.
    pub fn batch(&self, b: &Batch) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        // a batch made without an event source (table changes alone) knows no identities
        if b.identities != (0, 0) {
            self.identities[0].store(b.identities.0, Ordering::Relaxed);
            self.identities[1].store(b.identities.1, Ordering::Relaxed);
        }
        {
            let mut a = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
            *a.entry("transactions").or_insert(0) += b.lines.len() as u64;
            *a.entry("behavior").or_insert(0) += b.events.len() as u64;
        }
        if !b.quality.is_empty() {
            let mut r = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
            for (s, reason, _, n) in &b.quality {
                if *reason == Reason::Accepted {
                    continue;
                }
                *r.entry((source_name(*s), reason_name(*reason)))
                    .or_insert(0) += (*n).max(0) as u64;
            }
        }
    }

    pub fn set_watermark(&self, ms: i64) {
        self.watermark_ms.store(ms, Ordering::Relaxed);
    }

    /// A subscriber was disconnected for falling behind.
    /// A read answered 503 because it ran (or waited) past its deadline.
    pub fn read_deadline(&self) {
        self.read_deadlines.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sse_dropped(&self) {
        self.sse_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one request's latency under its route.
    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let h = m.entry((route, status)).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, stores: &Stores, health: &crate::health::Health) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP shopdiff_records_accepted_total Event records accepted, per source."
        );
        let _ = writeln!(o, "# TYPE shopdiff_records_accepted_total counter");
        for (s, n) in self
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(o, "shopdiff_records_accepted_total{{source=\"{s}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP shopdiff_records_rejected_total Records rejected, duplicate or late, per source and reason.");
        let _ = writeln!(o, "# TYPE shopdiff_records_rejected_total counter");
        for ((s, r), n) in self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "shopdiff_records_rejected_total{{source=\"{s}\",reason=\"{r}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP shopdiff_dedup_identities Identities kept for dedup, per source: those older than the lateness horizon are retired."
        );
        let _ = writeln!(o, "# TYPE shopdiff_dedup_identities gauge");
        for (i, s) in ["transactions", "behavior"].iter().enumerate() {
            let n = self.identities[i].load(Ordering::Relaxed);
            let _ = writeln!(o, "shopdiff_dedup_identities{{source=\"{s}\"}} {n}");
        }
        let _ = writeln!(o, "# TYPE shopdiff_batches_total counter");
        let _ = writeln!(
            o,
            "shopdiff_batches_total {}",
            self.batches.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP shopdiff_cluster_bytes_sent_total Bytes this process sent to the other processes of its cluster."
        );
        let _ = writeln!(o, "# TYPE shopdiff_cluster_bytes_sent_total counter");
        let _ = writeln!(
            o,
            "shopdiff_cluster_bytes_sent_total {}",
            stores.cluster_bytes_sent().load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP shopdiff_engine_up 1 while the engine runs, 0 once it stopped (a process of the cluster died)."
        );
        let _ = writeln!(o, "# TYPE shopdiff_engine_up gauge");
        let _ = writeln!(
            o,
            "shopdiff_engine_up {}",
            u8::from(stores.failure().is_none())
        );
        let as_of = stores.as_of();
        let wm = self.watermark_ms.load(Ordering::Relaxed);
        let now = now_ms();
        let _ = writeln!(
            o,
            "# HELP shopdiff_as_of_ms The as_of every view is readable at."
        );
        let _ = writeln!(o, "# TYPE shopdiff_as_of_ms gauge");
        let _ = writeln!(o, "shopdiff_as_of_ms {}", as_of.map_or(-1, |a| a as i64));
        let _ = writeln!(
            o,
            "# HELP shopdiff_as_of_lag_ms Wall clock minus as_of (meaningful for live sources)."
        );
        let _ = writeln!(o, "# TYPE shopdiff_as_of_lag_ms gauge");
        if let Some(a) = as_of {
            let _ = writeln!(o, "shopdiff_as_of_lag_ms {}", now - a as i64);
        }
        let _ = writeln!(o, "# TYPE shopdiff_watermark_ms gauge");
        let _ = writeln!(o, "shopdiff_watermark_ms {wm}");
        let _ = writeln!(
            o,
            "# HELP shopdiff_watermark_lag_ms Wall clock minus the input watermark."
        );
        let _ = writeln!(o, "# TYPE shopdiff_watermark_lag_ms gauge");
        if wm > 0 {
            let _ = writeln!(o, "shopdiff_watermark_lag_ms {}", now - wm);
        }
        let _ = writeln!(o, "# TYPE shopdiff_advances_total counter");
        let _ = writeln!(o, "shopdiff_advances_total {}", stores.advances());
        let _ = writeln!(
            o,
            "# HELP shopdiff_last_fold_seconds How long the last stage of every view's changes took (before the as_of was published)."
        );
        let _ = writeln!(o, "# TYPE shopdiff_last_fold_seconds gauge");
        let _ = writeln!(
            o,
            "shopdiff_last_fold_seconds {}",
            stores.last_advance().1.as_secs_f64()
        );
        let _ = writeln!(
            o,
            "# HELP shopdiff_last_merge_seconds How long the last merge of the staged changes into the views' rows took (after the as_of was published)."
        );
        let _ = writeln!(o, "# TYPE shopdiff_last_merge_seconds gauge");
        let _ = writeln!(
            o,
            "shopdiff_last_merge_seconds {}",
            stores.last_merge().as_secs_f64()
        );
        per_view(
            &mut o,
            stores,
            "shopdiff_view_rows",
            "gauge",
            "Rows of each view at as_of.",
            &|v| v.len().to_string(),
        );
        per_view(
            &mut o,
            stores,
            "shopdiff_view_history_updates",
            "gauge",
            "",
            &|v| v.history_len().to_string(),
        );
        per_view(
            &mut o,
            stores,
            "shopdiff_view_folded_updates_total",
            "counter",
            "Updates the publisher folded into each view's store.",
            &|v| v.folded_updates().0.to_string(),
        );
        per_view(
            &mut o,
            stores,
            "shopdiff_view_fold_seconds_total",
            "counter",
            "Time the publisher spent folding each view's updates.",
            &|v| {
                let (_, stage, merge) = v.folded_updates();
                ((stage + merge) as f64 / 1e9).to_string()
            },
        );
        per_view(
            &mut o,
            stores,
            "shopdiff_view_store_bytes",
            "gauge",
            "Approximate bytes of a view's served state.",
            &|v| v.approx_bytes().to_string(),
        );
        let parts = health.parts();
        for (metric, help, which) in [
            (
                "shopdiff_source_up",
                "1 while the job's event source runs (or finished its files), 0 once it failed.",
                "source",
            ),
            (
                "shopdiff_sink_up",
                "1 while a sink (Parquet lake, alerts topic) works, 0 once it failed.",
                "sink",
            ),
        ] {
            let _ = writeln!(o, "# HELP {metric} {help}");
            let _ = writeln!(o, "# TYPE {metric} gauge");
            for p in parts.iter().filter(|p| p.part.starts_with(which)) {
                let label = &metric["shopdiff_".len()..metric.len() - "_up".len()];
                let _ = writeln!(
                    o,
                    "{metric}{{{label}=\"{}\",state=\"{}\"}} {}",
                    p.kind,
                    p.state.label(),
                    u8::from(p.state.up())
                );
            }
        }
        let state = shopdiff_operators::state_size::sizes();
        for (metric, help, pick) in [
            (
                "shopdiff_state_entries",
                "Entries (keys, parked updates) each dataflow operator holds, over this process's workers.",
                0,
            ),
            (
                "shopdiff_state_bytes",
                "Bytes of each dataflow operator's tables (keys and states inline, not what they point to).",
                1,
            ),
        ] {
            let _ = writeln!(o, "# HELP {metric} {help}");
            let _ = writeln!(o, "# TYPE {metric} gauge");
            for (name, entries, bytes) in &state {
                let v = if pick == 0 { entries } else { bytes };
                let _ = writeln!(o, "{metric}{{operator=\"{name}\"}} {v}");
            }
        }
        per_view(&mut o, stores, "shopdiff_subscribers", "gauge", "", &|v| {
            v.subscribers().to_string()
        });
        let _ = writeln!(o, "# TYPE shopdiff_subscribers_dropped_total counter");
        let _ = writeln!(
            o,
            "shopdiff_subscribers_dropped_total {}",
            self.sse_dropped.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP shopdiff_read_deadlines_total Reads answered 503 past their deadline."
        );
        let _ = writeln!(o, "# TYPE shopdiff_read_deadlines_total counter");
        let _ = writeln!(
            o,
            "shopdiff_read_deadlines_total {}",
            self.read_deadlines.load(Ordering::Relaxed)
        );
        if let Some(rss) = resident_bytes() {
            let _ = writeln!(o, "# TYPE shopdiff_process_resident_bytes gauge");
            let _ = writeln!(o, "shopdiff_process_resident_bytes {rss}");
        }
        let _ = writeln!(o, "# HELP shopdiff_http_request_duration_seconds HTTP request latency per route and status.");
        let _ = writeln!(o, "# TYPE shopdiff_http_request_duration_seconds histogram");
        for ((route, status), h) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let l = format!("route=\"{route}\",status=\"{status}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "shopdiff_http_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                o,
                "shopdiff_http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                o,
                "shopdiff_http_request_duration_seconds_sum{{{l}}} {}",
                h.sum
            );
            let _ = writeln!(
                o,
                "shopdiff_http_request_duration_seconds_count{{{l}}} {}",
                h.count
            );
        }
        o
    }
}

/// The process's peak resident set size in MB (`VmHWM` from `/proc/self/status`), 0 if unknown.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resident set size from `/proc/self/statm` (Linux).
pub fn resident_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
