//! View stores: each view's rows at the latest complete `as_of`, fed by the dataflow's deltas.
//!
//! Workers push `(row, time, diff)` updates as their operators produce them; when the probe says
//! every time below a frontier is complete, the store folds the pending updates below it and its
//! `as_of` becomes `frontier - tick`. Readers therefore always see one consistent `as_of`.

use shopdiff_schemas::rows::{Row, Value, ViewDef};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

struct Inner<R> {
    rows: HashMap<R, isize>,
    pending: Vec<(R, u64, isize)>,
    frontier: u64,
}

/// The maintained rows of one view.
pub struct ViewStore<R: Row> {
    def: ViewDef,
    tick: u64,
    inner: Mutex<Inner<R>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panicking worker poisons the lock; the data is still consistent per update
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<R: Row> ViewStore<R> {
    pub fn new(def: ViewDef, tick: u64) -> Arc<Self> {
        Arc::new(ViewStore {
            def,
            tick,
            inner: Mutex::new(Inner {
                rows: HashMap::new(),
                pending: Vec::new(),
                frontier: 0,
            }),
        })
    }

    /// Updates produced by a worker.
    pub fn push(&self, updates: &[(R, u64, isize)]) {
        lock(&self.inner).pending.extend_from_slice(updates);
    }

    /// The rows at the current `as_of` (`None` before the first complete tick).
    pub fn rows(&self) -> (Option<u64>, Vec<R>) {
        let g = lock(&self.inner);
        let as_of = self.as_of_of(g.frontier);
        let mut rows: Vec<R> = g
            .rows
            .iter()
            .flat_map(|(r, n)| std::iter::repeat_n(r.clone(), (*n).max(0) as usize))
            .collect();
        rows.sort();
        (as_of, rows)
    }

    fn as_of_of(&self, frontier: u64) -> Option<u64> {
        frontier.checked_sub(self.tick)
    }
}

/// A view store seen without its row type.
pub trait AnyView: Send + Sync {
    fn def(&self) -> ViewDef;
    /// Every time below `frontier` is complete: fold it in.
    fn advance(&self, frontier: u64);
    /// The `as_of` and every row's values at it, sorted by key.
    fn snapshot(&self) -> (Option<u64>, Vec<Vec<Value>>);
    /// Number of rows.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The current `as_of`.
    fn as_of(&self) -> Option<u64>;
}

impl<R: Row> AnyView for ViewStore<R> {
    fn def(&self) -> ViewDef {
        self.def
    }

    fn advance(&self, frontier: u64) {
        let mut g = lock(&self.inner);
        if frontier <= g.frontier {
            return;
        }
        let pending = std::mem::take(&mut g.pending);
        let mut keep = Vec::new();
        for (r, t, d) in pending {
            if t < frontier {
                let n = g.rows.entry(r.clone()).or_insert(0);
                *n += d;
                if *n == 0 {
                    g.rows.remove(&r);
                }
            } else {
                keep.push((r, t, d));
            }
        }
        g.pending = keep;
        g.frontier = frontier;
    }

    fn snapshot(&self) -> (Option<u64>, Vec<Vec<Value>>) {
        let (as_of, rows) = self.rows();
        let t = as_of.unwrap_or(0) as i64;
        (as_of, rows.iter().map(|r| r.values(t)).collect())
    }

    fn len(&self) -> usize {
        lock(&self.inner).rows.len()
    }

    fn as_of(&self) -> Option<u64> {
        self.as_of_of(lock(&self.inner).frontier)
    }
}

/// Every view's store, by name.
#[derive(Clone, Default)]
pub struct Stores {
    views: Vec<Arc<dyn AnyView>>,
}

impl Stores {
    pub fn add(&mut self, v: Arc<dyn AnyView>) {
        self.views.push(v);
    }
    pub fn get(&self, name: &str) -> Option<&Arc<dyn AnyView>> {
        self.views.iter().find(|v| v.def().name == name)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn AnyView>> {
        self.views.iter()
    }
    pub fn advance(&self, frontier: u64) {
        for v in &self.views {
            v.advance(frontier);
        }
    }
}
