//! The bounded history of a view's updates: what `as_of=` reads and `since=` resumes see.

use super::lock;
use super::view::{Inner, ViewStore};
use hashbrown::HashMap;
use shopdiff_schemas::rows::Row;

/// How much history a store keeps for `as_of=` reads and `since=` resumes.
#[derive(Debug, Clone, Copy)]
pub struct HistoryConfig {
    /// Keep updates of the last `span_ms` of `as_of`.
    pub span_ms: u64,
    /// And at most this many updates per view (older ones are dropped first).
    pub max_updates: usize,
}

impl HistoryConfig {
    /// No history: reads only at the current `as_of` (a batch replay).
    pub fn none() -> Self {
        HistoryConfig {
            span_ms: 0,
            max_updates: 0,
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            span_ms: 3_600_000,
            max_updates: 1_000_000,
        }
    }
}

pub(super) struct Folded<R> {
    pub(super) as_of: u64,
    pub(super) updates: Vec<(R, u64, isize)>,
}

impl<R: Row> ViewStore<R> {
    /// Keeps `now`, the updates just merged at `as_of`, in the history (or recycles their
    /// buffer when no history is kept), and drops what fell out of the history's span.
    pub(super) fn keep_history(&self, g: &mut Inner<R>, now: Vec<(R, u64, isize)>, as_of: u64) {
        if !now.is_empty() && self.history.max_updates == 0 {
            // no history kept: only the floor moves, and the buffer takes the next updates
            // (with whatever the workers pushed meanwhile)
            g.floor = g.floor.max(as_of);
            let mut buffer = now;
            buffer.clear();
            let mut p = lock(&self.pending);
            buffer.append(&mut p.buf);
            p.buf = buffer;
        } else if !now.is_empty() {
            // the buffer moves to the history: the next one is a spare buffer or sized like it
            // with a quarter more room, so the workers' pushes do not grow it by doubling (a
            // copy into fresh memory) when the next update is a little larger; only the last
            // update's size is written ahead, so untouched room costs no resident memory
            let mut p = lock(&self.pending);
            let want = now.len() + now.len() / 4 + 64;
            if p.buf.capacity() < want {
                // (a spare far larger than needed would keep its size in the history)
                let fits = want..=now.len().max(1024) * 4;
                if fits.contains(&g.spare.capacity()) {
                    let mut buffer = std::mem::take(&mut g.spare);
                    buffer.append(&mut p.buf);
                    p.buf = buffer;
                } else {
                    let more = want - p.buf.len().min(want);
                    p.buf.reserve(more);
                    p.touch = now.len();
                }
            }
            drop(p);
            g.history_len += now.len();
            g.history.push_back(Folded {
                as_of,
                updates: now,
            });
        }
        let span_floor = as_of.saturating_sub(self.history.span_ms);
        while let Some(front) = g.history.front() {
            if front.as_of < span_floor || g.history_len > self.history.max_updates {
                g.floor = g.floor.max(front.as_of);
                g.history_len -= front.updates.len();
                if let Some(mut old) = g.history.pop_front().map(|f| f.updates) {
                    old.clear();
                    g.spare = old;
                }
            } else {
                break;
            }
        }
    }

    /// Rows (with multiplicity) at `as_of`, given the current `as_of`; `None` when the
    /// history no longer reaches back that far.
    pub(super) fn rows_at(&self, g: &Inner<R>, as_of: u64, current: u64) -> Option<Vec<R>> {
        let mut rows: Vec<R> = Vec::with_capacity(g.count);
        if as_of >= current {
            for (r, n) in g.rows.values().flatten() {
                rows.extend(std::iter::repeat_n(r.clone(), (*n).max(0) as usize));
            }
            return Some(rows);
        }
        if as_of < g.floor {
            return None;
        }
        let mut undo: HashMap<R, isize> = HashMap::new();
        for f in g.history.iter().rev() {
            if f.as_of <= as_of {
                break;
            }
            for (r, t, d) in &f.updates {
                if *t > as_of {
                    *undo.entry(r.clone()).or_insert(0) -= d;
                }
            }
        }
        // the rows now, each corrected by what came after `as_of`, without copying the map
        for (r, n) in g.rows.values().flatten() {
            let n = *n + undo.remove(r).unwrap_or(0);
            rows.extend(std::iter::repeat_n(r.clone(), n.max(0) as usize));
        }
        for (r, d) in undo {
            if d > 0 {
                rows.extend(std::iter::repeat_n(r, d as usize));
            }
        }
        Some(rows)
    }
}
