//! Folding updates into a view: staged at the new `as_of` first, then merged into the rows'
//! map a chunk at a time.

use super::key::key_of;
use super::lock;
use super::subscribe::{delta_values, Delta, Diffs, Ended, Feed};
use super::view::{Inner, Rows, Slot, ViewStore};
use hashbrown::HashMap;
use shopdiff_schemas::rows::{Row, Value};
use std::sync::Arc;

/// How many staged updates a merge folds in before it lets a waiting reader have the lock
/// (about 0.1-0.3 ms of a merge).
const MERGE_CHUNK: usize = 512;

/// Adds `d` copies of `r` to a key's rows; returns `1` when `r` became a row of it, `-1` when
/// it stopped being one, else 0.
pub(super) fn add_row<R: Row>(slot: &mut Slot<R>, r: &R, d: isize) -> isize {
    match slot.iter_mut().position(|(x, _)| x == r) {
        Some(i) => {
            slot[i].1 += d;
            if slot[i].1 == 0 {
                slot.swap_remove(i);
                return -1;
            }
            0
        }
        None => {
            slot.push((r.clone(), d));
            1
        }
    }
}

impl<R: Row> ViewStore<R> {
    /// Applies updates that all have the primary key `key` (encoded): one lookup of the key,
    /// retractions before insertions, so that a row that changes (`-old +new`, nearly every
    /// update) never holds two rows in its slot: a second row moves the slot's rows to the
    /// heap, an allocation per change that the slot would keep (about 50 MB on a month's
    /// replay). The slot is removed only once its run is applied and it is empty.
    fn apply_run(
        &self,
        rows: &mut Rows<R>,
        count: &mut usize,
        key: &[u8],
        run: &[(R, u64, isize)],
    ) {
        let slot = rows.slot_mut(key);
        let dels = run.iter().filter(|u| u.2 < 0);
        for (r, _, d) in dels.chain(run.iter().filter(|u| u.2 > 0)) {
            match add_row(slot, r, *d) {
                1 => *count += 1,
                -1 => *count -= 1,
                _ => {}
            }
        }
        if slot.is_empty() {
            rows.remove(key);
        } else if slot.spilled() && slot.len() == 1 {
            slot.shrink_to_fit();
        }
    }

    /// Folds the updates below `frontier` in completely (staged and merged); returns their
    /// consolidated changes as delta values (only when `render` is set: there are subscribers
    /// or listeners).
    pub(super) fn fold(&self, frontier: u64, render: bool) -> Option<Diffs> {
        let diffs = self.stage(frontier, render);
        self.merge();
        diffs
    }

    /// Makes the updates below `frontier` this view's state at `as_of = frontier - tick`
    /// without touching the rows' map: they become the staged updates (see [`Inner::staged`]),
    /// which reads add to the rows until [`ViewStore::merge`] folds them in. Merges whatever
    /// an earlier stage left first. Returns the consolidated changes as delta values when
    /// `render` is set (or there are subscribers, who get them here).
    pub(super) fn stage(&self, frontier: u64, render: bool) -> Option<Diffs> {
        let started = std::time::Instant::now();
        let as_of = frontier - self.tick;
        let mut g = self.inner.lock();
        let g = &mut *g;
        self.merge_locked(g);
        g.frontier = g.frontier.max(frontier);
        let pending = std::mem::take(&mut lock(&self.pending).buf);
        // usually every pending update is below the new frontier: no copy then
        let now = if pending.iter().all(|(_, t, _)| *t < frontier) {
            pending
        } else {
            let (now, mut keep): (Vec<_>, Vec<_>) =
                pending.into_iter().partition(|(_, t, _)| *t < frontier);
            // with whatever the workers pushed since
            let mut p = lock(&self.pending);
            keep.append(&mut p.buf);
            p.buf = keep;
            now
        };
        g.last_fold = now.len();
        g.folded += now.len() as u64;
        let render = render || !g.subscribers.is_empty();
        let diffs = render.then(|| {
            // consolidated: the deltas carry each changed row once
            let mut consolidated: HashMap<&R, isize> = HashMap::with_capacity(now.len());
            for (r, _, d) in &now {
                *consolidated.entry(r).or_insert(0) += d;
            }
            let mut changes: Vec<(&R, isize)> =
                consolidated.into_iter().filter(|(_, d)| *d != 0).collect();
            // retractions first, so a key's old row leaves before its new row arrives
            changes.sort_by_key(|(_, d)| *d > 0);
            let diffs: Vec<(Vec<Value>, isize)> = changes
                .iter()
                .map(|(r, d)| (delta_values(&self.def, *r, as_of), *d))
                .collect();
            diffs
        });
        if now.is_empty() {
            // nothing to merge: only the history's span moves
            self.keep_history(g, now, as_of);
        } else {
            g.staged = now;
            g.staged_as_of = as_of;
        }
        g.fold_ns += started.elapsed().as_nanos() as u64;
        let mut diffs = diffs?;
        diffs.sort_by_key(|(_, d)| *d > 0);
        let diffs = Arc::new(diffs);
        let feed = if diffs.is_empty() {
            Feed::Progress(as_of)
        } else {
            Feed::Update(Delta {
                as_of,
                diffs: diffs.clone(),
            })
        };
        g.subscribers.retain_mut(|s| {
            if let Some(idle) = s.stuck() {
                *lock(&s.ended) = Some(Ended::Stuck(idle));
                return false;
            }
            match s.tx.try_send(feed.clone()) {
                Ok(()) => true,
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    *lock(&s.ended) = Some(Ended::Behind(s.tx.max_capacity()));
                    false
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        Some(diffs)
    }

    /// Folds the staged updates into the rows' map (no-op when nothing is staged), a chunk
    /// of [`MERGE_CHUNK`] updates at a time: between two chunks the lock goes to a waiting
    /// reader, so a read of one key waits for at most one chunk, not for the whole merge.
    pub(super) fn merge(&self) {
        loop {
            let mut g = self.inner.lock();
            if self.merge_some(&mut g, MERGE_CHUNK) {
                break;
            }
            parking_lot::MutexGuard::unlock_fair(g);
        }
    }

    /// Merges every staged update.
    pub(super) fn merge_locked(&self, g: &mut Inner<R>) {
        self.merge_some(g, usize::MAX);
    }

    /// Merges the next `limit` staged updates or a few more (whole runs of one key); returns
    /// whether every staged update is merged.
    pub(super) fn merge_some(&self, g: &mut Inner<R>, limit: usize) -> bool {
        if g.staged.is_empty() {
            return true;
        }
        let started = std::time::Instant::now();
        let now = std::mem::take(&mut g.staged);
        let stop = g.merged.saturating_add(limit);
        // the rows take the updates as they are (the same sums as the consolidated changes):
        // a run of updates of one key (a row's `-old, +new`, which views emit side by side)
        // is one lookup of the key; rows take insertions before retractions, so the key of a
        // row that changes never empties on the way (no removal and re-insertion of its entry)
        let mut key = Vec::with_capacity(64);
        let mut next = Vec::with_capacity(64);
        let mut i = g.merged;
        if let Some((r, _, _)) = now.get(i) {
            key_of(&self.def, r, &mut key);
        }
        while i < now.len() && i < stop {
            let mut j = i + 1;
            while let Some((r, _, _)) = now.get(j) {
                key_of(&self.def, r, &mut next);
                if next != key {
                    break;
                }
                j += 1;
            }
            self.apply_run(&mut g.rows, &mut g.count, &key, &now[i..j]);
            // `next` holds the key of `now[j]`
            std::mem::swap(&mut key, &mut next);
            i = j;
        }
        let done = i >= now.len();
        if done {
            g.merged = 0;
            let as_of = g.staged_as_of;
            self.keep_history(g, now, as_of);
        } else {
            g.merged = i;
            g.staged = now;
        }
        g.merge_ns += started.elapsed().as_nanos() as u64;
        done
    }
}
