//! A view's store: its rows by encoded key, the updates pending and staged, and the view
//! seen without its row type ([`AnyView`]).

use super::history::{Folded, HistoryConfig};
use super::key::EncKey;
use super::lock;
use super::select::{Answer, ReadError, Select};
use super::subscribe::{Diffs, Ended, SubscribeReq, Subscriber, Subscription};
use shopdiff_schemas::rows::{Row, Value, ViewDef};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Writes to one element in each page of `v`'s spare capacity up to `upto` elements in all:
/// the kernel maps those pages now.
fn touch_pages<T>(v: &mut Vec<T>, upto: usize) {
    let step = (4096 / std::mem::size_of::<T>().max(1)).max(1);
    let n = upto.saturating_sub(v.len());
    for x in v.spare_capacity_mut().iter_mut().take(n).step_by(step) {
        *x = std::mem::MaybeUninit::zeroed();
    }
}

/// A key's rows with their multiplicities: nearly always one, kept in the map's entry.
pub(super) type Slot<R> = smallvec::SmallVec<[(R, isize); 1]>;

pub(super) use super::rows::Rows;

/// The updates workers pushed and the publisher has not folded yet.
pub(super) struct Pending<R> {
    pub(super) buf: Vec<(R, u64, isize)>,
    /// How many updates' worth of `buf` may be memory nobody has written yet and should be
    /// written once before the workers push (0: none; see [`AnyView::prepare`]).
    pub(super) touch: usize,
}

pub(super) struct Inner<R> {
    pub(super) rows: Rows<R>,
    pub(super) count: usize,
    /// How many updates the last fold took (sizes the rows' headroom, see [`AnyView::prepare`]).
    pub(super) last_fold: usize,
    /// A buffer dropped from the history, cleared, to take the next updates: its memory is
    /// already the process's, where a new buffer's first touch costs a page fault per page.
    pub(super) spare: Vec<(R, u64, isize)>,
    pub(super) history: VecDeque<Folded<R>>,
    pub(super) history_len: usize,
    /// The smallest `as_of` the history can still answer.
    pub(super) floor: u64,
    pub(super) subscribers: Vec<Subscriber>,
    /// The frontier this view has been folded to.
    pub(super) frontier: u64,
    /// Updates folded in so far, and the nanoseconds their stages and merges took.
    pub(super) folded: u64,
    pub(super) fold_ns: u64,
    pub(super) merge_ns: u64,
    /// Updates of the current `as_of` not merged into `rows` yet: a view's state is `rows`
    /// plus these. [`ViewStore::stage`] puts an update's changes here, so the new `as_of` can
    /// be published before the rows' map takes them (one lookup per key, most of them cache
    /// misses in a large map: the larger part of an update's fold); the publisher merges them
    /// right after ([`ViewStore::merge`]). A read by key adds the staged updates of its key; any
    /// other read merges first.
    pub(super) staged: Vec<(R, u64, isize)>,
    pub(super) staged_as_of: u64,
    /// How many of `staged` are merged already (a merge goes a chunk at a time).
    pub(super) merged: usize,
}

/// The maintained rows of one view.
pub struct ViewStore<R: Row> {
    pub(super) def: ViewDef,
    pub(super) tick: u64,
    pub(super) inner: parking_lot::Mutex<Inner<R>>,
    pub(super) pending: Mutex<Pending<R>>,
    pub(super) history: HistoryConfig,
}

impl<R: Row> ViewStore<R> {
    pub fn new(def: ViewDef, tick: u64) -> Arc<Self> {
        Self::with_history(def, tick, HistoryConfig::default())
    }

    pub fn with_history(def: ViewDef, tick: u64, history: HistoryConfig) -> Arc<Self> {
        Arc::new(ViewStore {
            def,
            tick,
            history,
            inner: parking_lot::Mutex::new(Inner {
                rows: Rows::default(),
                count: 0,
                last_fold: 0,
                spare: Vec::new(),
                history: VecDeque::new(),
                history_len: 0,
                floor: 0,
                subscribers: Vec::new(),
                frontier: 0,
                folded: 0,
                fold_ns: 0,
                merge_ns: 0,
                staged: Vec::new(),
                staged_as_of: 0,
                merged: 0,
            }),
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                touch: 0,
            }),
        })
    }

    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// Updates produced by a worker.
    pub fn push(&self, updates: &[(R, u64, isize)]) {
        lock(&self.pending).buf.extend_from_slice(updates);
    }

    /// The typed rows at the current `as_of` (tests and examples).
    pub fn rows(&self) -> Vec<R> {
        let mut g = self.inner.lock();
        self.merge_locked(&mut g);
        let mut rows: Vec<R> = g
            .rows
            .values()
            .flatten()
            .flat_map(|(r, n)| std::iter::repeat_n(r.clone(), (*n).max(0) as usize))
            .collect();
        rows.sort();
        rows
    }
}

/// A view's row slots in key order (reads answer in key order; the map has none).
pub(super) fn by_key<R>(rows: &Rows<R>) -> Vec<&Slot<R>> {
    let mut slots: Vec<(&EncKey, &Slot<R>)> = rows.iter().collect();
    slots.sort_unstable_by(|a, b| a.0.cmp(b.0));
    slots.into_iter().map(|(_, slot)| slot).collect()
}

/// A view store seen without its row type.
pub trait AnyView: Send + Sync {
    fn def(&self) -> ViewDef;
    /// Every time below `frontier` is complete: fold it in (call through
    /// [`Stores`](super::Stores)), staged and merged.
    fn fold_to(&self, frontier: u64, render: bool) -> Option<Diffs>;
    /// Every time below `frontier` is complete: make it the view's state without merging it
    /// into the rows' map yet (reads see it); returns its changes when `render` is set.
    fn stage_to(&self, frontier: u64, render: bool) -> Option<Diffs>;
    /// Merges what [`AnyView::stage_to`] staged into the rows' map.
    fn merge_staged(&self);
    /// Updates staged and not merged yet.
    fn staged_len(&self) -> usize;
    /// Every row's values at the store's current `as_of` (no selection), sorted by key.
    fn snapshot(&self) -> (Option<u64>, Vec<Vec<Value>>);
    /// Number of rows.
    fn len(&self) -> usize;
    /// Updates pushed and not folded yet.
    fn pending_len(&self) -> usize;
    /// Writes once to each page of a freshly reserved update buffer, so that the workers'
    /// pushes do not take the page faults of its first touch, and grows the rows' map ahead
    /// of the next folds' new keys (the publisher calls it after an advance is out, off the
    /// update's path).
    fn prepare(&self);
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The current `as_of`.
    fn as_of(&self) -> Option<u64>;
    /// A selection at `as_of` (the current `as_of` is `current`), within `sel.deadline`.
    fn select_within(&self, sel: &Select, as_of: u64, current: u64) -> Result<Answer, ReadError>;
    /// A selection without a deadline; `None` when history is gone.
    fn select(&self, sel: &Select, as_of: u64, current: u64) -> Option<Answer> {
        let sel = Select {
            deadline: None,
            ..sel.clone()
        };
        self.select_within(&sel, as_of, current).ok()
    }
    /// Registers a subscriber; returns the snapshot at `current` (unless resuming), or the
    /// history after `since`; `None` when `since` is older than the history.
    fn subscribe(&self, sub: SubscribeReq, current: u64) -> Option<Subscription>;
    /// Updates kept for history.
    fn history_len(&self) -> usize;
    /// Updates folded in since the store was made, and the time their stages and merges
    /// took in nanoseconds (metrics, benches).
    fn folded_updates(&self) -> (u64, u64, u64);
    fn subscribers(&self) -> usize;
    /// Approximate bytes of the maintained rows (their table as allocated, keys included) and
    /// of the update buffers (for metrics and benches).
    fn approx_bytes(&self) -> usize;
    /// Ends every subscription with `why` (their streams end after what was already sent).
    fn end_subscriptions(&self, why: Ended);
}

impl<R: Row> AnyView for ViewStore<R> {
    fn def(&self) -> ViewDef {
        self.def
    }

    fn fold_to(&self, frontier: u64, render: bool) -> Option<Diffs> {
        self.fold(frontier, render)
    }

    fn stage_to(&self, frontier: u64, render: bool) -> Option<Diffs> {
        self.stage(frontier, render)
    }

    fn merge_staged(&self) {
        self.merge();
    }

    fn staged_len(&self) -> usize {
        let g = self.inner.lock();
        g.staged.len() - g.merged.min(g.staged.len())
    }

    fn snapshot(&self) -> (Option<u64>, Vec<Vec<Value>>) {
        let as_of = self.as_of();
        let t = as_of.unwrap_or(0);
        let mut g = self.inner.lock();
        self.merge_locked(&mut g);
        let rows = by_key(&g.rows)
            .into_iter()
            .flatten()
            .flat_map(|(r, n)| std::iter::repeat_n(r.values(t as i64), (*n).max(0) as usize))
            .collect();
        (as_of, rows)
    }

    fn len(&self) -> usize {
        let mut g = self.inner.lock();
        self.merge_locked(&mut g);
        g.count
    }

    fn pending_len(&self) -> usize {
        lock(&self.pending).buf.len()
    }

    fn prepare(&self) {
        // taken out and touched without the lock, so a worker pushing meanwhile never waits
        // for the page faults; what it pushed meanwhile joins the touched buffer
        let fresh = {
            let mut p = lock(&self.pending);
            let upto = std::mem::take(&mut p.touch);
            (upto > 0).then(|| (std::mem::take(&mut p.buf), upto))
        };
        if let Some((mut buffer, upto)) = fresh {
            touch_pages(&mut buffer, upto);
            let mut p = lock(&self.pending);
            buffer.append(&mut p.buf);
            p.buf = buffer;
        }
        // room in the rows' map for the next folds' new keys, made now rather than by a
        // rehash in the middle of a fold (readers wait for it; workers never do)
        let mut g = self.inner.lock();
        self.merge_locked(&mut g);
        let room = g.last_fold.max(256) * 2;
        if g.rows.capacity() - g.rows.len() < room {
            g.rows.reserve(room);
        }
    }

    fn as_of(&self) -> Option<u64> {
        let f = self.inner.lock().frontier;
        if f == 0 {
            None
        } else {
            f.checked_sub(self.tick)
        }
    }

    fn select_within(&self, sel: &Select, as_of: u64, current: u64) -> Result<Answer, ReadError> {
        self.select_rows(sel, as_of, current)
    }

    fn subscribe(&self, req: SubscribeReq, current: u64) -> Option<Subscription> {
        self.open_subscription(req, current)
    }

    fn history_len(&self) -> usize {
        self.inner.lock().history_len
    }

    fn folded_updates(&self) -> (u64, u64, u64) {
        let g = self.inner.lock();
        (g.folded, g.fold_ns, g.merge_ns)
    }

    fn subscribers(&self) -> usize {
        self.inner.lock().subscribers.len()
    }

    fn end_subscriptions(&self, why: Ended) {
        let mut g = self.inner.lock();
        for sub in g.subscribers.drain(..) {
            *lock(&sub.ended) = Some(why.clone());
        }
    }

    fn approx_bytes(&self) -> usize {
        // the rows' index and entries as allocated, each key's boxed bytes (about 32 with the
        // allocator's rounding), and the update buffers' capacities
        let g = self.inner.lock();
        let pending = lock(&self.pending).buf.capacity();
        let update = std::mem::size_of::<(R, u64, isize)>();
        g.rows.allocation_size()
            + g.rows.len() * 32
            + (g.history_len + g.staged.capacity() + g.spare.capacity() + pending) * update
    }
}
