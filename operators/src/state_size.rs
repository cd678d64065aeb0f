//! How much state each operator holds, for `/metrics` and the benches: every keyed operator,
//! ranking and window reports, after each activation, its entries and the bytes of its tables
//! (hash maps and trees as allocated: the keys and states inline in them, not what those point
//! to, such as a fold's own vectors or a string's bytes).
//!
//! Gauges are registered by operator name on each worker; [`sizes`] sums them by name. The
//! gauges of a dataflow that ended keep their last values until an operator of another
//! dataflow registers (so a bench reads the sizes a replay ended with).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Shared {
    name: String,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    /// The most bytes it ever reported (a buffer's peak, say).
    peak: AtomicUsize,
    ended: AtomicBool,
}

/// One operator instance's size, set by the operator (which owns it).
#[derive(Debug)]
pub struct Gauge(Arc<Shared>);

impl Gauge {
    /// Records the operator's current entries and table bytes.
    pub fn set(&self, entries: usize, bytes: usize) {
        self.0.entries.store(entries, Ordering::Relaxed);
        self.0.bytes.store(bytes, Ordering::Relaxed);
        self.0.peak.fetch_max(bytes, Ordering::Relaxed);
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Relaxed);
    }
}

static GAUGES: Mutex<Vec<Arc<Shared>>> = Mutex::new(Vec::new());

/// A new gauge for an operator called `name` (one per worker; [`sizes`] adds them up).
pub fn gauge(name: &str) -> Gauge {
    let g = Arc::new(Shared {
        name: name.to_string(),
        ..Shared::default()
    });
    let mut all = GAUGES.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|s| !s.ended.load(Ordering::Relaxed));
    all.push(g.clone());
    Gauge(g)
}

/// The most bytes each operator of this process reported at once, by name, summed over
/// workers (peaks of different workers need not coincide, so this bounds the joint peak from
/// above), largest first: `(name, bytes)`.
pub fn peaks() -> Vec<(String, usize)> {
    let all = GAUGES.lock().unwrap_or_else(|e| e.into_inner());
    let mut by_name: std::collections::BTreeMap<String, usize> = Default::default();
    for g in all.iter() {
        *by_name.entry(g.name.clone()).or_default() += g.peak.load(Ordering::Relaxed);
    }
    let mut out: Vec<(String, usize)> = by_name.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// The state of every operator of this process by name, summed over workers, largest first:
/// `(name, entries, bytes)`.
pub fn sizes() -> Vec<(String, usize, usize)> {
    let all = GAUGES.lock().unwrap_or_else(|e| e.into_inner());
    let mut by_name: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for g in all.iter() {
        let e = by_name.entry(g.name.clone()).or_default();
        e.0 += g.entries.load(Ordering::Relaxed);
        e.1 += g.bytes.load(Ordering::Relaxed);
    }
    let mut out: Vec<(String, usize, usize)> =
        by_name.into_iter().map(|(n, (e, b))| (n, e, b)).collect();
    out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    out
}
