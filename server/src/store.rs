//! View stores: every view's rows at one consistent `as_of`, a bounded history of its updates,
//! and the change feed that subscriptions and sinks follow.
//!
//! Workers push `(row, time, diff)` updates into a view's pending list as their operators
//! produce them, and report the probe's frontier with [`Stores::notify`]. A publisher thread
//! (or [`Stores::advance`] called directly) folds every pending update below a new frontier
//! into all views *under one write lock*, so a reader that takes the read lock sees every view
//! at the same `as_of = frontier - tick`. The dataflow never waits for readers: workers only
//! append to a pending list; a long read delays the publisher, never a worker.
//!
//! Rows are kept in a hash map by encoded primary key ([`KeyVal`]s), a key's row inline in its
//! entry, and a run of one key's updates (a row's `-old, +new`) is folded with one lookup (the
//! B-tree of boxed keys this replaced spent about three quarters of a fold in cache misses). A
//! full read sorts the keys it answers (only the first `offset + limit` of them when nothing
//! filters), so reads still come out in key order. Workers push into a pending buffer under
//! its own lock, so a fold or a read never makes a worker wait. Updates folded in are also
//! kept, with their times, in a history bounded by `as_of` span and size: a read at an older
//! `as_of` subtracts the updates after it, and a subscription resumed with `since=` replays
//! them.

use hashbrown::HashMap;
use shopdiff_schemas::rows::{ColKind, Row, Value, ViewDef};
use shopdiff_schemas::Str;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panicking worker poisons the lock; the data is still consistent per update
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A money value as a key's integer. No view keys on money; were one to, sums beyond an
/// `i64` (10^16 units) would share the extreme key.
fn money_key(c: shopdiff_schemas::money::Sum) -> i64 {
    c.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// One value of a primary key, ordered as the column's type orders.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyVal {
    Null,
    Bool(bool),
    Int(i64),
    Str(Str),
}

impl KeyVal {
    pub fn of(v: &Value) -> KeyVal {
        match v {
            Value::Null => KeyVal::Null,
            Value::Bool(b) => KeyVal::Bool(*b),
            Value::Int(i) | Value::Time(i) => KeyVal::Int(*i),
            Value::Money(c) => KeyVal::Int(money_key(*c)),
            Value::Ratio(i, _) => KeyVal::Int(*i),
            Value::Number(n) => KeyVal::Int(n.to_bits() as i64),
            Value::Str(s) => KeyVal::Str(s.clone()),
        }
    }

    /// Parses a key value given as text in a query, as the column's JSON shows it.
    pub fn parse(kind: ColKind, text: &str) -> Result<KeyVal, String> {
        match kind {
            ColKind::String => Ok(KeyVal::Str(Str::from(text))),
            ColKind::Integer => text
                .parse::<i64>()
                .map(KeyVal::Int)
                .map_err(|_| format!("`{text}` is not an integer")),
            ColKind::Money => shopdiff_schemas::money::parse_sum(text)
                .map(|c| KeyVal::Int(money_key(c)))
                .map_err(|e| format!("`{text}` is not an amount: {e:?}")),
            ColKind::Time => shopdiff_schemas::time::parse_rfc3339(text)
                .map(KeyVal::Int)
                .ok_or_else(|| format!("`{text}` is not an RFC 3339 time")),
            ColKind::Boolean => match text {
                "true" => Ok(KeyVal::Bool(true)),
                "false" => Ok(KeyVal::Bool(false)),
                _ => Err(format!("`{text}` is not true or false")),
            },
            ColKind::Ratio(_) | ColKind::Number => {
                Err("ratio and number columns are not keys".into())
            }
        }
    }
}

/// A primary key.
pub type Key = Vec<KeyVal>;

/// A primary key encoded so that its bytes compare as the key does (the order of [`KeyVal`],
/// column by column): the stores' maps compare keys with one `memcmp` instead of walking
/// enums of strings. Each value is a tag byte (null < bool < integer < string), then a bool as
/// one byte, an integer as its big-endian bits with the sign flipped, a string as its bytes
/// with `0x00` escaped as `00 FF` and ended by `00 00` (so a prefix sorts first).
type EncKey = Box<[u8]>;

fn enc_null(out: &mut Vec<u8>) {
    out.push(0);
}
fn enc_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(&[1, b as u8]);
}
fn enc_int(out: &mut Vec<u8>, i: i64) {
    out.push(2);
    out.extend_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes());
}
fn enc_str(out: &mut Vec<u8>, s: &str) {
    out.push(3);
    for &b in s.as_bytes() {
        if b == 0 {
            out.extend_from_slice(&[0, 0xFF]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn enc_keyvals(k: &[KeyVal]) -> EncKey {
    let mut out = Vec::with_capacity(16 * k.len());
    for v in k {
        match v {
            KeyVal::Null => enc_null(&mut out),
            KeyVal::Bool(b) => enc_bool(&mut out, *b),
            KeyVal::Int(i) => enc_int(&mut out, *i),
            KeyVal::Str(s) => enc_str(&mut out, s),
        }
    }
    out.into_boxed_slice()
}

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

/// Consolidated changes: delta-column values and their diffs.
pub type Diffs = Arc<Vec<(Vec<Value>, isize)>>;

/// The changes of one view at one `as_of`, as delta columns (see [`ViewDef::delta_columns`]).
#[derive(Debug, Clone)]
pub struct Delta {
    pub as_of: u64,
    pub diffs: Diffs,
}

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Feed {
    Update(Delta),
    Progress(u64),
}

/// Why a subscription ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Behind(usize),
    Shutdown,
    /// The engine stopped (a process of the cluster died): the reason.
    Failed(String),
}

struct Subscriber {
    tx: tokio::sync::mpsc::Sender<Feed>,
    ended: Arc<Mutex<Option<Ended>>>,
}

/// An advance of all views: the new `as_of` and each view's changes (empty when none).
#[derive(Debug, Clone)]
pub struct Advance {
    pub as_of: u64,
    pub views: Vec<(ViewDef, Diffs)>,
}

/// Writes to one element in each page of `v`'s spare capacity up to `upto` elements in all:
/// the kernel maps those pages now.
fn touch_pages<T>(v: &mut Vec<T>, upto: usize) {
    let step = (4096 / std::mem::size_of::<T>().max(1)).max(1);
    let n = upto.saturating_sub(v.len());
    for x in v.spare_capacity_mut().iter_mut().take(n).step_by(step) {
        *x = std::mem::MaybeUninit::zeroed();
    }
}

struct Folded<R> {
    as_of: u64,
    updates: Vec<(R, u64, isize)>,
}

/// A key's rows with their multiplicities: nearly always one, kept in the map's entry.
type Slot<R> = smallvec::SmallVec<[(R, isize); 1]>;

/// How many staged updates a merge folds in before it lets a waiting reader have the lock
/// (about 0.1-0.3 ms of a merge).
const MERGE_CHUNK: usize = 512;

/// A view's rows by encoded primary key.
type Rows<R> = HashMap<EncKey, Slot<R>>;

/// Adds `d` copies of `r` to a key's rows; returns `1` when `r` became a row of it, `-1` when
/// it stopped being one, else 0.
fn add_row<R: Row>(slot: &mut Slot<R>, r: &R, d: isize) -> isize {
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

/// The updates workers pushed and the publisher has not folded yet.
struct Pending<R> {
    buf: Vec<(R, u64, isize)>,
    /// How many updates' worth of `buf` may be memory nobody has written yet and should be
    /// written once before the workers push (0: none; see [`AnyView::prepare`]).
    touch: usize,
}

struct Inner<R> {
    rows: Rows<R>,
    count: usize,
    /// How many updates the last fold took (sizes the rows' headroom, see [`AnyView::prepare`]).
    last_fold: usize,
    /// A buffer dropped from the history, cleared, to take the next updates: its memory is
    /// already the process's, where a new buffer's first touch costs a page fault per page.
    spare: Vec<(R, u64, isize)>,
    history: VecDeque<Folded<R>>,
    history_len: usize,
    /// The smallest `as_of` the history can still answer.
    floor: u64,
    subscribers: Vec<Subscriber>,
    /// The frontier this view has been folded to.
    frontier: u64,
    /// Updates folded in so far, and the nanoseconds their stages and merges took.
    folded: u64,
    fold_ns: u64,
    merge_ns: u64,
    /// Updates of the current `as_of` not merged into `rows` yet: a view's state is `rows`
    /// plus these. [`ViewStore::stage`] puts an update's changes here, so the new `as_of` can
    /// be published before the rows' map takes them (one lookup per key, most of them cache
    /// misses in a large map: the larger part of an update's fold); the publisher merges them
    /// right after ([`ViewStore::merge`]). A read by key adds the staged updates of its key; any
    /// other read merges first.
    staged: Vec<(R, u64, isize)>,
    staged_as_of: u64,
    /// How many of `staged` are merged already (a merge goes a chunk at a time).
    merged: usize,
}

/// The maintained rows of one view.
pub struct ViewStore<R: Row> {
    def: ViewDef,
    tick: u64,
    inner: parking_lot::Mutex<Inner<R>>,
    pending: Mutex<Pending<R>>,
    history: HistoryConfig,
}

/// Writes the row's primary key, encoded (see [`EncKey`]), to `out` (cleared first): the same
/// bytes as [`enc_keyvals`] of its [`KeyVal`]s.
fn key_of<R: Row>(def: &ViewDef, r: &R, out: &mut Vec<u8>) {
    out.clear();
    for v in &r.key_values(def.key_len) {
        match v {
            Value::Null => enc_null(out),
            Value::Bool(b) => enc_bool(out, *b),
            Value::Int(i) | Value::Time(i) | Value::Ratio(i, _) => enc_int(out, *i),
            Value::Money(c) => enc_int(out, money_key(*c)),
            Value::Number(n) => enc_int(out, n.to_bits() as i64),
            Value::Str(s) => enc_str(out, s),
        }
    }
}

fn delta_values<R: Row>(def: &ViewDef, r: &R, as_of: u64) -> Vec<Value> {
    let mut v = r.values(as_of as i64);
    if def.columns.iter().any(|c| c.as_of_dependent) {
        let mut i = 0;
        v.retain(|_| {
            let keep = !def.columns[i].as_of_dependent;
            i += 1;
            keep
        });
    }
    v
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
                rows: HashMap::new(),
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

    /// Applies updates that all have the primary key `key` (encoded): one lookup of the key,
    /// insertions before retractions (a row that changes never empties its key on the way).
    fn apply_run(
        &self,
        rows: &mut Rows<R>,
        count: &mut usize,
        key: &[u8],
        run: &[(R, u64, isize)],
    ) {
        let slot = rows.entry_ref(key).or_default();
        let ins = run.iter().filter(|u| u.2 > 0);
        for (r, _, d) in ins.chain(run.iter().filter(|u| u.2 < 0)) {
            match add_row(slot, r, *d) {
                1 => *count += 1,
                -1 => *count -= 1,
                _ => {}
            }
        }
        if slot.is_empty() {
            rows.remove(key);
        }
    }

    /// Folds the updates below `frontier` in completely (staged and merged); returns their
    /// consolidated changes as delta values (only when `render` is set: there are subscribers
    /// or listeners).
    fn fold(&self, frontier: u64, render: bool) -> Option<Diffs> {
        let diffs = self.stage(frontier, render);
        self.merge();
        diffs
    }

    /// Makes the updates below `frontier` this view's state at `as_of = frontier - tick`
    /// without touching the rows' map: they become the staged updates (see [`Inner::staged`]),
    /// which reads add to the rows until [`ViewStore::merge`] folds them in. Merges whatever
    /// an earlier stage left first. Returns the consolidated changes as delta values when
    /// `render` is set (or there are subscribers, who get them here).
    fn stage(&self, frontier: u64, render: bool) -> Option<Diffs> {
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
        g.subscribers.retain(|s| match s.tx.try_send(feed.clone()) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                *lock(&s.ended) = Some(Ended::Behind(s.tx.max_capacity()));
                false
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
        });
        Some(diffs)
    }

    /// Folds the staged updates into the rows' map (no-op when nothing is staged), a chunk
    /// of [`MERGE_CHUNK`] updates at a time: between two chunks the lock goes to a waiting
    /// reader, so a read of one key waits for at most one chunk, not for the whole merge.
    fn merge(&self) {
        loop {
            let mut g = self.inner.lock();
            if self.merge_some(&mut g, MERGE_CHUNK) {
                break;
            }
            parking_lot::MutexGuard::unlock_fair(g);
        }
    }

    /// Merges every staged update.
    fn merge_locked(&self, g: &mut Inner<R>) {
        self.merge_some(g, usize::MAX);
    }

    /// Merges the next `limit` staged updates or a few more (whole runs of one key); returns
    /// whether every staged update is merged.
    fn merge_some(&self, g: &mut Inner<R>, limit: usize) -> bool {
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

    /// Keeps `now`, the updates just merged at `as_of`, in the history (or recycles their
    /// buffer when no history is kept), and drops what fell out of the history's span.
    fn keep_history(&self, g: &mut Inner<R>, now: Vec<(R, u64, isize)>, as_of: u64) {
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

    /// The rows of key `key` (encoded) at the current `as_of`: the merged rows with the staged
    /// updates of that key added (a scan of the staged updates, which are one update's worth).
    fn key_slot(&self, g: &Inner<R>, key: &[u8]) -> Option<(EncKey, Slot<R>)> {
        let mut slot: Slot<R> = g.rows.get(key).cloned().unwrap_or_default();
        let mut k = Vec::with_capacity(64);
        let staged = &g.staged[g.merged.min(g.staged.len())..];
        // one pass for the key's updates (usually a `-old, +new` pair), then insertions
        // before retractions
        let mut mine: Vec<&(R, u64, isize)> = Vec::new();
        for u in staged {
            key_of(&self.def, &u.0, &mut k);
            if k == key {
                mine.push(u);
            }
        }
        let ins = mine.iter().filter(|u| u.2 > 0);
        for (r, _, d) in ins.chain(mine.iter().filter(|u| u.2 < 0)) {
            add_row(&mut slot, r, *d);
        }
        (!slot.is_empty()).then(|| (key.into(), slot))
    }

    /// Rows (with multiplicity) at `as_of`, given the current `as_of`; `None` when the
    /// history no longer reaches back that far.
    fn rows_at(&self, g: &Inner<R>, as_of: u64, current: u64) -> Option<Vec<R>> {
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

/// A view's row slots in key order (reads answer in key order; the map has none).
fn by_key<R>(rows: &Rows<R>) -> Vec<&Slot<R>> {
    let mut slots: Vec<(&EncKey, &Slot<R>)> = rows.iter().collect();
    slots.sort_unstable_by(|a, b| a.0.cmp(b.0));
    slots.into_iter().map(|(_, slot)| slot).collect()
}

/// A read's selection: key lookup, column filters, order, paging.
#[derive(Debug, Clone, Default)]
pub struct Select {
    pub key: Option<Key>,
    /// `(column index, wanted value as JSON text)`.
    pub filters: Vec<(usize, String)>,
    pub order_by: Option<usize>,
    pub desc: bool,
    pub limit: Option<usize>,
    pub offset: usize,
    /// Keyset paging: only rows whose key is after this one (key order).
    pub after: Option<Key>,
    /// Give up past this instant ([`ReadError::Deadline`]): a read's cost is bounded.
    pub deadline: Option<std::time::Instant>,
}

/// Why a read has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The history no longer holds the `as_of` asked for.
    Gone,
    /// The read ran past its deadline.
    Deadline,
}

/// Counts a read's steps and looks at the clock at the first and every 1024th.
struct Budget {
    deadline: Option<std::time::Instant>,
    steps: u32,
}

impl Budget {
    fn new(deadline: Option<std::time::Instant>) -> Self {
        Budget { deadline, steps: 0 }
    }

    fn step(&mut self) -> Result<(), ReadError> {
        self.steps = self.steps.wrapping_add(1);
        match self.deadline {
            Some(d) if self.steps % 1024 == 1 && std::time::Instant::now() >= d => {
                Err(ReadError::Deadline)
            }
            _ => Ok(()),
        }
    }
}

/// The text a filter compares with: the value as JSON shows it, without quotes.
pub fn filter_text(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Money(c) => shopdiff_schemas::money::format_cents(*c),
        Value::Time(t) => shopdiff_schemas::time::format_rfc3339(*t),
        Value::Ratio(v, p) => format!("{}", *v as f64 / 10f64.powi(*p as i32)),
        Value::Number(n) => format!("{n}"),
        Value::Bool(b) => b.to_string(),
    }
}

fn matches(row: &[Value], filters: &[(usize, String)]) -> bool {
    filters.iter().all(|(i, want)| {
        let v = &row[*i];
        let text = filter_text(v);
        if text == *want {
            return true;
        }
        // numbers compare as numbers: `monetary=12.3` matches 12.30
        match (v.as_f64(), want.parse::<f64>()) {
            (Some(a), Ok(b)) => a == b,
            _ => false,
        }
    })
}

fn cmp_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        // nulls last in ascending order
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Time(x), Value::Time(y)) | (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Money(x), Value::Money(y)) => x.cmp(y),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => filter_text(a).cmp(&filter_text(b)),
        },
    }
}

/// A row ordered for `order_by` (then by key, so the order is total and stable).
struct Ranked {
    v: Vec<Value>,
    col: usize,
    key_len: usize,
    desc: bool,
}

impl Ranked {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        let o = cmp_values(&self.v[self.col], &other.v[self.col]);
        let o = if self.desc { o.reverse() } else { o };
        o.then_with(|| {
            self.v[..self.key_len]
                .iter()
                .map(KeyVal::of)
                .cmp(other.v[..other.key_len].iter().map(KeyVal::of))
        })
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.order(other).is_eq()
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order(other)
    }
}

/// An answer: the rows' values (all columns, in column order) and how many matched.
#[derive(Debug, Clone)]
pub struct Answer {
    pub rows: Vec<Vec<Value>>,
    pub total: usize,
}

/// A view store seen without its row type.
pub trait AnyView: Send + Sync {
    fn def(&self) -> ViewDef;
    /// Every time below `frontier` is complete: fold it in (call through [`Stores`]), staged
    /// and merged.
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
    /// Approximate bytes of maintained rows (for metrics).
    fn approx_bytes(&self) -> usize;
    /// Ends every subscription with `why` (their streams end after what was already sent).
    fn end_subscriptions(&self, why: Ended);
}

/// A subscription request.
pub struct SubscribeReq {
    pub since: Option<u64>,
    pub capacity: usize,
}

/// A registered subscription: its first event(s), the live feed and how it ended.
pub struct Subscription {
    pub snapshot: Option<(u64, Vec<Vec<Value>>)>,
    /// History after `since` (when resuming), in `as_of` order.
    pub backlog: Vec<Delta>,
    pub rx: tokio::sync::mpsc::Receiver<Feed>,
    pub ended: Arc<Mutex<Option<Ended>>>,
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
        let mut budget = Budget::new(sel.deadline);
        let after = sel.after.as_ref().map(|k| enc_keyvals(k));
        let mut g = self.inner.lock();
        // a read of one key at the current `as_of` adds the staged updates of its key; any
        // other read merges them first
        let key = sel
            .key
            .as_ref()
            .filter(|_| as_of >= current)
            .map(|k| enc_keyvals(k));
        let staged_key = match &key {
            Some(k) if !g.staged.is_empty() => self.key_slot(&g, k),
            Some(_) => None,
            None => {
                self.merge_locked(&mut g);
                None
            }
        };
        let g = g;
        let t = as_of as i64;
        let mut out: Vec<Vec<Value>> = Vec::new();
        let mut total = None;
        if as_of >= current {
            let mut slots: Vec<(&EncKey, &Slot<R>)> = match &key {
                Some(_) if !g.staged.is_empty() => {
                    staged_key.iter().map(|(k, slot)| (k, slot)).collect()
                }
                Some(k) => g.rows.get_key_value(k).into_iter().collect(),
                None => g.rows.iter().collect(),
            };
            if let Some(a) = &after {
                slots.retain(|(k, _)| **k > *a);
            }
            let want = sel.limit.map(|l| sel.offset.saturating_add(l));
            if let (Some(i), Some(k)) = (sel.order_by, want) {
                // top-k without materialising every row: a bounded heap whose top is the
                // worst row kept so far (ties go by key, so the order does not depend on the
                // map's)
                let key_len = self.def.key_len;
                let mut heap: std::collections::BinaryHeap<Ranked> = Default::default();
                let mut total = 0usize;
                for (r, n) in slots.into_iter().flat_map(|(_, slot)| slot) {
                    budget.step()?;
                    let v = r.values(t);
                    if !matches(&v, &sel.filters) {
                        continue;
                    }
                    for _ in 0..(*n).max(0) {
                        total += 1;
                        let item = Ranked {
                            v: v.clone(),
                            col: i,
                            key_len,
                            desc: sel.desc,
                        };
                        if heap.len() < k {
                            heap.push(item);
                        } else if heap.peek().is_some_and(|top| item < *top) {
                            heap.pop();
                            heap.push(item);
                        }
                    }
                }
                let rows: Vec<Vec<Value>> = heap
                    .into_sorted_vec()
                    .into_iter()
                    .skip(sel.offset)
                    .map(|x| x.v)
                    .collect();
                return Ok(Answer { rows, total });
            }
            // key order; when nothing filters or reorders, only the first `want` keys sorted
            // (every key holds at least one row)
            let head = want.filter(|w| {
                *w > 0 && *w < slots.len() && sel.filters.is_empty() && sel.order_by.is_none()
            });
            if let Some(w) = head {
                total = Some(
                    slots
                        .iter()
                        .flat_map(|(_, slot)| slot.iter())
                        .map(|(_, n)| (*n).max(0) as usize)
                        .sum(),
                );
                slots.select_nth_unstable_by(w - 1, |a, b| a.0.cmp(b.0));
                slots.truncate(w);
            }
            slots.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (r, n) in slots.into_iter().flat_map(|(_, slot)| slot) {
                budget.step()?;
                let v = r.values(t);
                if matches(&v, &sel.filters) {
                    for _ in 0..(*n).max(0) {
                        out.push(v.clone());
                    }
                }
            }
        } else {
            let rows = self.rows_at(&g, as_of, current).ok_or(ReadError::Gone)?;
            drop(g);
            for r in rows {
                budget.step()?;
                let v = r.values(t);
                let key_ok = sel.key.as_ref().is_none_or(|k| {
                    v[..self.def.key_len]
                        .iter()
                        .map(KeyVal::of)
                        .eq(k.iter().cloned())
                });
                let after_ok = sel.after.as_ref().is_none_or(|a| {
                    v[..self.def.key_len]
                        .iter()
                        .map(KeyVal::of)
                        .cmp(a.iter().cloned())
                        .is_gt()
                });
                if key_ok && after_ok && matches(&v, &sel.filters) {
                    out.push(v);
                }
            }
            out.sort_by(|a, b| {
                a[..self.def.key_len]
                    .iter()
                    .map(KeyVal::of)
                    .cmp(b[..self.def.key_len].iter().map(KeyVal::of))
            });
        }
        let total = total.unwrap_or(out.len());
        if let Some(i) = sel.order_by {
            let desc = sel.desc;
            let by = |a: &Vec<Value>, b: &Vec<Value>| {
                let o = cmp_values(&a[i], &b[i]);
                if desc {
                    o.reverse()
                } else {
                    o
                }
            };
            let want = sel.offset.saturating_add(sel.limit.unwrap_or(usize::MAX));
            if want < out.len() / 2 && want > 0 {
                // top-k: partition then sort only the head
                out.select_nth_unstable_by(want - 1, by);
                out.truncate(want);
            }
            out.sort_by(by);
        }
        let rows: Vec<Vec<Value>> = out
            .into_iter()
            .skip(sel.offset)
            .take(sel.limit.unwrap_or(usize::MAX))
            .collect();
        Ok(Answer { rows, total })
    }

    fn subscribe(&self, req: SubscribeReq, current: u64) -> Option<Subscription> {
        let mut g = self.inner.lock();
        self.merge_locked(&mut g);
        let (tx, rx) = tokio::sync::mpsc::channel(req.capacity.max(1));
        let ended = Arc::new(Mutex::new(None));
        let (snapshot, backlog) = match req.since {
            None => {
                let t = current as i64;
                let rows = by_key(&g.rows)
                    .into_iter()
                    .flatten()
                    .flat_map(|(r, n)| std::iter::repeat_n(r.values(t), (*n).max(0) as usize))
                    .collect();
                (Some((current, rows)), Vec::new())
            }
            Some(since) => {
                if since < g.floor || since > current {
                    return None;
                }
                let mut backlog = Vec::new();
                for f in g.history.iter() {
                    if f.as_of <= since {
                        continue;
                    }
                    let mut c: HashMap<&R, isize> = HashMap::new();
                    for (r, t, d) in &f.updates {
                        if *t > since {
                            *c.entry(r).or_insert(0) += d;
                        }
                    }
                    let mut diffs: Vec<(Vec<Value>, isize)> = c
                        .into_iter()
                        .filter(|(_, d)| *d != 0)
                        .map(|(r, d)| (delta_values(&self.def, r, f.as_of), d))
                        .collect();
                    diffs.sort_by_key(|(_, d)| *d > 0);
                    backlog.push(Delta {
                        as_of: f.as_of,
                        diffs: Arc::new(diffs),
                    });
                }
                (None, backlog)
            }
        };
        g.subscribers.push(Subscriber {
            tx,
            ended: ended.clone(),
        });
        Some(Subscription {
            snapshot,
            backlog,
            rx,
            ended,
        })
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
        let g = self.inner.lock();
        let pending = lock(&self.pending).buf.len();
        (g.count + g.history_len + g.staged.len() + pending)
            * (std::mem::size_of::<R>() + 3 * std::mem::size_of::<usize>())
    }
}

/// Every view's store, by name, advanced together to one shared `as_of`.
#[derive(Clone, Default)]
pub struct Stores {
    views: Vec<Arc<dyn AnyView>>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    tick: AtomicU64,
    /// The frontier every view has been folded to (0: nothing yet). Readers hold it read.
    frontier: RwLock<u64>,
    /// The latest frontier the workers reported, and a wake-up for the publisher.
    reported: Mutex<u64>,
    wake: Condvar,
    listeners: Mutex<Vec<crossbeam_channel::Sender<Arc<Advance>>>>,
    advances: AtomicU64,
    /// Why the engine behind the stores stopped; every read answers with it from then on.
    failure: Mutex<Option<String>>,
    /// What the engine is waiting for before its first `as_of` (a cluster connecting).
    note: Mutex<Option<String>>,
    /// Bytes this process sent to the other processes of its cluster.
    sent_bytes: Arc<AtomicU64>,
    /// The publisher's helper thread (see [`fold_helper`]).
    fold_helper: Mutex<Option<crossbeam_channel::Sender<HelperMsg>>>,
    /// When the workers last reported a new frontier (the probe passed it).
    reported_at: Mutex<Option<std::time::Instant>>,
    /// How long the last stage of every view took, in nanoseconds (before the `as_of` is out).
    last_fold_ns: AtomicU64,
    /// How long the last merge of every view's staged updates took (after it is out).
    last_merge_ns: AtomicU64,
    /// The frontier of the last advance, and a wake-up for whoever waits for one
    /// ([`Stores::wait_as_of`]).
    advanced: Mutex<u64>,
    advanced_cv: Condvar,
    /// Whether only the published `as_of`s are exact (the engine computes each batch at its
    /// `as_of`), and those published, oldest first (at most [`PUBLISHED_KEPT`]).
    batch_as_ofs: std::sync::atomic::AtomicBool,
    published: Mutex<VecDeque<u64>>,
}

/// How many published `as_of`s the stores remember for [`Stores::snap_as_of`]: more than an
/// hour of 100 ms batches.
const PUBLISHED_KEPT: usize = 100_000;

/// A consistent read of several views: the read lock held while it lives.
pub struct ReadGuard<'a> {
    stores: &'a Stores,
    frontier: std::sync::RwLockReadGuard<'a, u64>,
}

impl ReadGuard<'_> {
    /// The `as_of` every view is at (`None` before the first complete tick).
    pub fn as_of(&self) -> Option<u64> {
        let tick = self.stores.shared.tick.load(Ordering::Relaxed);
        if *self.frontier == 0 {
            None
        } else {
            self.frontier.checked_sub(tick)
        }
    }
    pub fn get(&self, name: &str) -> Option<&Arc<dyn AnyView>> {
        self.stores.get(name)
    }
}

/// Below this many pending updates in all views together, one thread folds them: a second
/// thread costs more to start than it saves.
const PARALLEL_FOLD_MIN: usize = 4096;

/// What a [`FoldJob`] does to each view.
#[derive(Clone, Copy)]
enum Step {
    /// [`AnyView::stage_to`] the frontier, rendering the changes or not.
    Stage(u64, bool),
    /// [`AnyView::merge_staged`], on two threads or on the caller's alone.
    Merge(bool),
}

/// One step of every view, shared by the publisher and its helper thread: each takes the next
/// view (largest first) until none is left.
struct FoldJob {
    views: Vec<Arc<dyn AnyView>>,
    order: Vec<usize>,
    next: std::sync::atomic::AtomicUsize,
    slots: Vec<Mutex<Option<Diffs>>>,
    step: Step,
}

impl FoldJob {
    fn work(&self) {
        loop {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = self.order.get(k) else { break };
            let d = match self.step {
                Step::Stage(frontier, render) => self.views[i].stage_to(frontier, render),
                Step::Merge(_) => {
                    self.views[i].merge_staged();
                    None
                }
            };
            *lock(&self.slots[i]) = d;
        }
    }
}

/// A job for the fold helper, and where it says it is done.
type HelperMsg = (Arc<FoldJob>, crossbeam_channel::Sender<()>);

/// The publisher's helper thread, started at the first fold that wants one and kept for the
/// stores' lifetime (it ends when they are dropped): a thread per fold cost a fresh allocator
/// heap each time, whose first touches of new pages were half of the fold's time.
fn fold_helper(
    slot: &Mutex<Option<crossbeam_channel::Sender<HelperMsg>>>,
) -> Option<crossbeam_channel::Sender<HelperMsg>> {
    let mut g = lock(slot);
    if g.is_none() {
        let (tx, rx) = crossbeam_channel::unbounded::<HelperMsg>();
        let spawned = std::thread::Builder::new()
            .name("publisher-2".into())
            .spawn(move || {
                for (job, done) in rx {
                    job.work();
                    let _ = done.send(());
                }
            });
        if spawned.is_ok() {
            *g = Some(tx);
        }
    }
    g.clone()
}

/// Takes `step` on every view; returns each view's diffs (of a stage), in the views' order.
/// With many updates the publisher and its helper thread share the views, the largest first:
/// views are independent (one lock each). A stage runs under the stores' write lock, so
/// readers see every view at the same `as_of`. Halves the step's time when the workers are
/// idle, which they are once the probe passed the frontier.
fn fold_all(
    views: &[Arc<dyn AnyView>],
    helper: &Mutex<Option<crossbeam_channel::Sender<HelperMsg>>>,
    step: Step,
) -> Vec<Option<Diffs>> {
    // a stage without rendering only moves buffers, and a merge without a backlog leaves the
    // other core to readers: neither takes a second thread (nor sizes the views)
    let heavy = matches!(step, Step::Stage(_, true) | Step::Merge(true));
    let sizes: Vec<usize> = match step {
        _ if !heavy => Vec::new(),
        Step::Stage(..) => views.iter().map(|v| v.pending_len()).collect(),
        Step::Merge(_) => views.iter().map(|v| v.staged_len()).collect(),
    };
    if !heavy || sizes.iter().sum::<usize>() < PARALLEL_FOLD_MIN {
        return views
            .iter()
            .map(|v| match step {
                Step::Stage(frontier, render) => v.stage_to(frontier, render),
                Step::Merge(_) => {
                    v.merge_staged();
                    None
                }
            })
            .collect();
    }
    let mut order: Vec<usize> = (0..views.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let job = Arc::new(FoldJob {
        views: views.to_vec(),
        order,
        next: std::sync::atomic::AtomicUsize::new(0),
        slots: views.iter().map(|_| Mutex::new(None)).collect(),
        step,
    });
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    // without a helper (no thread to be had) this thread folds them all
    let helped = fold_helper(helper).is_some_and(|h| h.send((job.clone(), done_tx)).is_ok());
    job.work();
    if helped {
        // the helper may still be folding its last view
        let _ = done_rx.recv();
    }
    job.slots.iter().map(|m| lock(m).take()).collect()
}

impl Stores {
    pub fn new(tick: u64) -> Stores {
        let s = Stores::default();
        s.shared.tick.store(tick, Ordering::Relaxed);
        s
    }
    pub fn add(&mut self, v: Arc<dyn AnyView>) {
        self.views.push(v);
    }
    pub fn get(&self, name: &str) -> Option<&Arc<dyn AnyView>> {
        self.views.iter().find(|v| v.def().name == name)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn AnyView>> {
        self.views.iter()
    }
    pub fn tick(&self) -> u64 {
        self.shared.tick.load(Ordering::Relaxed)
    }

    /// Takes the read lock: every view stays at one `as_of` while the guard lives.
    pub fn read(&self) -> ReadGuard<'_> {
        ReadGuard {
            stores: self,
            frontier: self
                .shared
                .frontier
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// The shared `as_of` (`None` before the first complete tick).
    pub fn as_of(&self) -> Option<u64> {
        self.read().as_of()
    }

    /// When the workers last reported a new frontier (their probe passed it: every view's
    /// changes below it are computed), and how long the publisher's last stage of every view
    /// took (the fold until the `as_of` is out): the two parts of an update's latency
    /// (benches, metrics).
    pub fn last_advance(&self) -> (Option<std::time::Instant>, Duration) {
        let at = *lock(&self.shared.reported_at);
        let fold = Duration::from_nanos(self.shared.last_fold_ns.load(Ordering::Relaxed));
        (at, fold)
    }

    /// How long the publisher's last merge of the staged updates into the rows' maps took
    /// (after the `as_of` was out; benches, metrics).
    pub fn last_merge(&self) -> Duration {
        Duration::from_nanos(self.shared.last_merge_ns.load(Ordering::Relaxed))
    }

    /// Blocks until every view is readable at `as_of` or later, or `timeout` passed (or the
    /// engine failed); returns the `as_of` then (`None`: none yet). Without polling: the
    /// publisher wakes the waiters after each advance.
    pub fn wait_as_of(&self, as_of: u64, timeout: Duration) -> Option<u64> {
        let tick = self.tick();
        let deadline = std::time::Instant::now() + timeout;
        let mut g = lock(&self.shared.advanced);
        loop {
            let now = std::time::Instant::now();
            if *g >= as_of.saturating_add(tick) || now >= deadline || self.failure().is_some() {
                break;
            }
            g = self
                .shared
                .advanced_cv
                .wait_timeout(g, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        drop(g);
        self.as_of()
    }

    /// How many advances have been folded (metrics).
    pub fn advances(&self) -> u64 {
        self.shared.advances.load(Ordering::Relaxed)
    }

    /// Receives every advance (as_of and all views' changes), blocking the publisher when
    /// full: for durable consumers such as sinks. Dropping the receiver unregisters it.
    pub fn listen(&self, capacity: usize) -> crossbeam_channel::Receiver<Arc<Advance>> {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        lock(&self.shared.listeners).push(tx);
        rx
    }

    /// The engine behind these stores stopped for `reason` (a process of the cluster died, a
    /// worker panicked): reads answer with it instead of numbers that no longer advance, and
    /// every subscription ends with it. The first reason sticks.
    pub fn fail(&self, reason: &str) {
        {
            let mut f = lock(&self.shared.failure);
            if f.is_some() {
                return;
            }
            *f = Some(reason.to_string());
        }
        tracing::error!("the engine stopped: {reason}; reads answer 503 until it is restarted");
        for v in &self.views {
            v.end_subscriptions(Ended::Failed(reason.to_string()));
        }
        self.shared.wake.notify_all();
        // whoever waits for an `as_of` (`wait_as_of`) learns now that none will come; the
        // lock orders the notification after a waiter's check of the failure
        drop(lock(&self.shared.advanced));
        self.shared.advanced_cv.notify_all();
    }

    /// Why the engine stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.shared.failure).clone()
    }

    /// Says what the engine waits for before its first `as_of` (`None` clears it).
    pub fn set_note(&self, note: Option<String>) {
        *lock(&self.shared.note) = note;
    }

    /// The counter of bytes this process sends to the other processes of its cluster.
    pub fn cluster_bytes_sent(&self) -> Arc<AtomicU64> {
        self.shared.sent_bytes.clone()
    }

    /// What the engine waits for, if anything.
    pub fn note(&self) -> Option<String> {
        lock(&self.shared.note).clone()
    }

    /// A worker saw the probe pass `frontier`: wake the publisher.
    pub fn notify(&self, frontier: u64) {
        let mut r = lock(&self.shared.reported);
        if frontier > *r {
            *r = frontier;
            *lock(&self.shared.reported_at) = Some(std::time::Instant::now());
            self.shared.wake.notify_all();
        }
    }

    /// The publisher: folds reported frontiers until `stop` says so and nothing is left.
    pub fn publish_until(&self, stop: &std::sync::atomic::AtomicBool) {
        loop {
            let target = {
                let r = lock(&self.shared.reported);
                let (r, _) = self
                    .shared
                    .wake
                    .wait_timeout_while(r, Duration::from_millis(20), |r| {
                        *r <= self.folded() && !stop.load(Ordering::Relaxed)
                    })
                    .unwrap_or_else(|e| e.into_inner());
                *r
            };
            if target > self.folded() {
                self.advance(target);
                for v in &self.views {
                    v.prepare();
                }
            } else if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }

    fn folded(&self) -> u64 {
        *self
            .shared
            .frontier
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the stores that only the published `as_of`s are exact (see
    /// [`Stores::snap_as_of`]).
    pub fn set_batch_as_ofs(&self, on: bool) {
        self.shared.batch_as_ofs.store(on, Ordering::Relaxed);
    }

    /// The `as_of` a read asked at `t` answers at: `t` itself when every tick is exact, else
    /// the latest published `as_of` at or before `t` (`t` when none is remembered: older than
    /// anything kept, so the history will not reach it either).
    pub fn snap_as_of(&self, t: u64) -> u64 {
        if !self.shared.batch_as_ofs.load(Ordering::Relaxed) {
            return t;
        }
        let p = lock(&self.shared.published);
        match p.partition_point(|a| *a <= t) {
            0 => t,
            i => p[i - 1],
        }
    }

    /// Folds every view to `frontier` at once (no-op unless it moves forward).
    pub fn advance(&self, frontier: u64) {
        let tick = self.tick();
        if frontier < tick {
            return;
        }
        let mut f = self
            .shared
            .frontier
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if frontier <= *f {
            return;
        }
        let mut listeners = lock(&self.shared.listeners);
        let render = !listeners.is_empty();
        let started = std::time::Instant::now();
        // staged: every view's state at the new `as_of`, its rows' map not updated yet
        let step = Step::Stage(frontier, render);
        let views: Vec<(ViewDef, Diffs)> = fold_all(&self.views, &self.shared.fold_helper, step)
            .into_iter()
            .zip(&self.views)
            .filter_map(|(d, v)| Some((v.def(), d?)))
            .collect();
        *f = frontier;
        if self.shared.batch_as_ofs.load(Ordering::Relaxed) {
            let mut p = lock(&self.shared.published);
            if p.len() >= PUBLISHED_KEPT {
                p.pop_front();
            }
            p.push_back(frontier - tick);
        }
        let took = started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.shared.last_fold_ns.store(took, Ordering::Relaxed);
        self.shared.advances.fetch_add(1, Ordering::Relaxed);
        *lock(&self.shared.advanced) = frontier;
        self.shared.advanced_cv.notify_all();
        // send without the write lock: a listener that is full must not block readers, and
        // the sink reads the stores itself (it would deadlock on a lock held while it is full).
        // Only the publisher advances, so the advances still go out in order.
        drop(f);
        if render {
            let adv = Arc::new(Advance {
                as_of: frontier - tick,
                views,
            });
            listeners.retain(|l| l.send(adv.clone()).is_ok());
        }
        drop(listeners);
        // the rows' maps take the staged updates now that the `as_of` is out (reads meanwhile
        // add them, or merge first). On this thread alone while nothing else waits, so the
        // other core is free for readers (a read by key scans the staged updates meanwhile)
        // and the next update's workers; on two threads when the workers already reported a
        // later frontier (a backlog: a replay, a burst), where the merge holds up the next
        // advance.
        let started = std::time::Instant::now();
        let backlog = *lock(&self.shared.reported) > frontier;
        fold_all(&self.views, &self.shared.fold_helper, Step::Merge(backlog));
        let took = started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.shared.last_merge_ns.store(took, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopdiff_schemas::rows::{Segment, SegmentRow, RFM_SEGMENTS};

    fn seg(segment: Segment, customers: i64) -> SegmentRow {
        SegmentRow {
            segment,
            customers,
            monetary: customers as i128 * 100,
        }
    }

    fn keyval() -> impl proptest::strategy::Strategy<Value = KeyVal> {
        use proptest::prelude::*;
        prop_oneof![
            Just(KeyVal::Null),
            any::<bool>().prop_map(KeyVal::Bool),
            prop_oneof![any::<i64>(), -3i64..3, Just(i64::MIN), Just(i64::MAX)]
                .prop_map(KeyVal::Int),
            "[a\\x00\\x01\\xFFé]{0,4}".prop_map(|s| KeyVal::Str(Str::from(s))),
        ]
    }

    proptest::proptest! {
        /// Encoded keys compare exactly as the keys do, and equal only when the keys are.
        #[test]
        fn encoded_keys_keep_the_key_order(
            a in proptest::collection::vec(keyval(), 1..4),
            b in proptest::collection::vec(keyval(), 1..4),
        ) {
            proptest::prop_assert_eq!(enc_keyvals(&a).cmp(&enc_keyvals(&b)), a.cmp(&b));
        }
    }

    #[test]
    fn folds_keep_history_and_answer_older_as_ofs() {
        let v = ViewStore::with_history(RFM_SEGMENTS, 1000, HistoryConfig::default());
        v.push(&[
            (seg(Segment::Loyal, 3), 1000, 1),
            (seg(Segment::New, 1), 2000, 1),
        ]);
        v.fold(2000, false); // as_of 1000: only the loyal row
        v.push(&[
            (seg(Segment::Loyal, 3), 3000, -1),
            (seg(Segment::Loyal, 4), 3000, 1),
        ]);
        v.fold(4000, false); // as_of 3000
        assert_eq!(v.rows(), vec![seg(Segment::Loyal, 4), seg(Segment::New, 1)]);
        // every update counted once, whichever fold took it
        assert_eq!(v.folded_updates().0, 4);
        let at = |t| {
            let mut rows: Vec<Vec<Value>> = v.select(&Select::default(), t, 3000).unwrap().rows;
            rows.sort_by_key(|r| format!("{r:?}"));
            rows
        };
        assert_eq!(at(1000), vec![seg(Segment::Loyal, 3).values(1000)]);
        assert_eq!(at(2000).len(), 2);
        assert_eq!(at(3000).len(), 2);
        // key lookup at an older as_of
        let k = Select {
            key: Some(vec![KeyVal::Str(Str::from("loyal"))]),
            ..Select::default()
        };
        let old = v.select(&k, 1000, 3000).unwrap();
        assert_eq!(old.rows, vec![seg(Segment::Loyal, 3).values(1000)]);
        let now = v.select(&k, 3000, 3000).unwrap();
        assert_eq!(now.rows, vec![seg(Segment::Loyal, 4).values(3000)]);
    }

    #[test]
    fn waiting_for_an_as_of_ends_with_the_advance_or_the_failure() {
        let stores = Arc::new(Stores::new(1000));
        let s = stores.clone();
        let t = std::thread::spawn(move || s.wait_as_of(2000, Duration::from_secs(120)));
        std::thread::sleep(Duration::from_millis(20));
        stores.advance(3000);
        assert_eq!(t.join().ok().flatten(), Some(2000));
        // an as_of that will never come: the failure wakes the waiter long before its timeout
        let s = stores.clone();
        let started = std::time::Instant::now();
        let t = std::thread::spawn(move || s.wait_as_of(9000, Duration::from_secs(120)));
        std::thread::sleep(Duration::from_millis(20));
        stores.fail("a worker panicked");
        assert_eq!(t.join().ok().flatten(), Some(2000));
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn recycled_update_buffers_keep_the_history_exact() {
        // a history of at most 6 updates: buffers leave it at nearly every fold and come back,
        // cleared, as the next update buffer; fresh ones are touched by `prepare`
        let v = ViewStore::with_history(
            RFM_SEGMENTS,
            1000,
            HistoryConfig {
                span_ms: 1 << 40,
                max_updates: 6,
            },
        );
        let mut states = Vec::new();
        for k in 1..=20i64 {
            let t = k as u64 * 1000;
            let mut ups = vec![(seg(Segment::Loyal, k), t, 1)];
            if k > 1 {
                ups.push((seg(Segment::Loyal, k - 1), t, -1));
            }
            // folds of varying sizes: rows that come and go within the time
            for j in 0..k % 4 {
                ups.push((seg(Segment::New, j), t, 1));
                ups.push((seg(Segment::New, j), t, -1));
            }
            v.push(&ups);
            v.fold(t + 1000, false);
            v.prepare();
            states.push((t, vec![seg(Segment::Loyal, k).values(t as i64)]));
        }
        assert_eq!(v.rows(), vec![seg(Segment::Loyal, 20)]);
        let mut answered = 0;
        for (t, rows) in &states {
            if let Some(a) = v.select(&Select::default(), *t, 20_000) {
                assert_eq!(&a.rows, rows, "as_of {t}");
                answered += 1;
            }
        }
        assert!((2..states.len()).contains(&answered), "{answered}");
    }

    /// A segment row of segment `i` (of the six) with `customers` `c`.
    fn seg_of(i: usize, c: i64) -> SegmentRow {
        let s = [
            Segment::Champions,
            Segment::Loyal,
            Segment::New,
            Segment::AtRisk,
            Segment::Hibernating,
            Segment::Potential,
        ];
        seg(s[i % 6], c)
    }

    proptest::proptest! {
        /// Folds by runs of one key (one lookup per run) keep exactly the multiset of rows a
        /// plain count keeps, with several rows under one key, rows that come and go within a
        /// fold, and retractions before insertions; and a paged read (the first `offset +
        /// limit` keys picked, then sorted) is the same slice of the fully sorted read, with
        /// the full total.
        #[test]
        fn folds_by_key_runs_keep_the_rows_and_paged_reads_their_order(
            folds in proptest::collection::vec(
                proptest::collection::vec((0usize..6, 0i64..3, proptest::prop_oneof![
                    proptest::strategy::Just(1isize),
                    proptest::strategy::Just(-1isize),
                    proptest::strategy::Just(2isize),
                ]), 0..16),
                1..8,
            ),
            render in proptest::bool::ANY,
            limit in 1usize..5,
            offset in 0usize..4,
        ) {
            let v = ViewStore::with_history(RFM_SEGMENTS, 1000, HistoryConfig::default());
            let mut want: std::collections::BTreeMap<SegmentRow, isize> = Default::default();
            for (k, ups) in folds.iter().enumerate() {
                let t = k as u64 * 1000;
                let ups: Vec<(SegmentRow, u64, isize)> =
                    ups.iter().map(|(s, c, d)| (seg_of(*s, *c), t, *d)).collect();
                for (r, _, d) in &ups {
                    *want.entry(r.clone()).or_insert(0) += d;
                }
                want.retain(|_, n| *n != 0);
                v.push(&ups);
                v.fold(t + 1000, render);
                v.prepare();
                // only rows with positive counts are read; the store keeps the rest counted
                let mut expected: Vec<SegmentRow> = want
                    .iter()
                    .flat_map(|(r, n)| std::iter::repeat_n(r.clone(), (*n).max(0) as usize))
                    .collect();
                expected.sort();
                proptest::prop_assert_eq!(v.rows(), expected);
                let all = v.select(&Select::default(), t, t).unwrap();
                let page = v
                    .select(
                        &Select {
                            limit: Some(limit),
                            offset,
                            ..Select::default()
                        },
                        t,
                        t,
                    )
                    .unwrap();
                let slice: Vec<Vec<Value>> =
                    all.rows.iter().skip(offset).take(limit).cloned().collect();
                if want.values().all(|n| *n > 0) {
                    // (a key whose rows all have negative counts reads as no row, so the
                    // page could come out short; a consistent view never has one)
                    proptest::prop_assert_eq!(&page.rows, &slice);
                    proptest::prop_assert_eq!(page.total, all.total);
                }
            }
        }
    }

    proptest::proptest! {
        /// While an update is staged and while its merge goes a chunk at a time, a read of
        /// one key answers that key's rows at the new `as_of` (the merged rows plus the staged
        /// updates not merged yet), every older `as_of` still reads from the history, and a
        /// read of every row (which merges first) equals a store that folded each update at
        /// once.
        #[test]
        fn staged_updates_read_by_key_and_merged_a_chunk_at_a_time(
            folds in proptest::collection::vec(
                proptest::collection::vec((0usize..6, 0i64..3, proptest::prop_oneof![
                    proptest::strategy::Just(1isize),
                    proptest::strategy::Just(-1isize),
                ]), 0..24),
                1..6,
            ),
            chunk in 1usize..6,
        ) {
            let staged = ViewStore::with_history(RFM_SEGMENTS, 1000, HistoryConfig::default());
            let folded = ViewStore::with_history(RFM_SEGMENTS, 1000, HistoryConfig::default());
            let key_rows = |v: &ViewStore<SegmentRow>, s: usize, t: u64| {
                let sel = Select {
                    key: Some(vec![KeyVal::Str(Str::from(seg_of(s, 0).segment.as_str()))]),
                    ..Select::default()
                };
                let mut rows = v.select(&sel, t, t).map(|a| a.rows);
                if let Some(rows) = rows.as_mut() {
                    rows.sort_by_key(|r| format!("{r:?}"));
                }
                rows
            };
            for (k, ups) in folds.iter().enumerate() {
                let t = k as u64 * 1000;
                let ups: Vec<(SegmentRow, u64, isize)> =
                    ups.iter().map(|(s, c, d)| (seg_of(*s, *c), t, *d)).collect();
                staged.push(&ups);
                folded.push(&ups);
                folded.fold(t + 1000, false);
                staged.stage(t + 1000, false);
                loop {
                    for s in 0..6 {
                        proptest::prop_assert_eq!(key_rows(&staged, s, t), key_rows(&folded, s, t));
                    }
                    if t >= 1000 {
                        // the `as_of` before: undone from the history, after a full merge
                        let before = |v: &ViewStore<SegmentRow>| {
                            let mut rows = v.select(&Select::default(), t - 1000, t).unwrap().rows;
                            rows.sort_by_key(|r| format!("{r:?}"));
                            rows
                        };
                        proptest::prop_assert_eq!(before(&staged), before(&folded));
                    }
                    let mut g = staged.inner.lock();
                    if staged.merge_some(&mut g, chunk) {
                        break;
                    }
                }
                proptest::prop_assert_eq!(staged.rows(), folded.rows());
                proptest::prop_assert_eq!(AnyView::len(&*staged), AnyView::len(&*folded));
                proptest::prop_assert_eq!(staged.staged_len(), 0);
            }
        }
    }

    #[test]
    fn a_subscriber_that_does_not_read_is_dropped_with_the_reason_others_are_not() {
        let v = ViewStore::with_history(RFM_SEGMENTS, 1000, HistoryConfig::default());
        v.push(&[(seg(Segment::Loyal, 1), 0, 1)]);
        v.fold(1000, false);
        let mut slow = v
            .subscribe(
                SubscribeReq {
                    since: None,
                    capacity: 2,
                },
                0,
            )
            .unwrap();
        let mut fast = v
            .subscribe(
                SubscribeReq {
                    since: None,
                    capacity: 2,
                },
                0,
            )
            .unwrap();
        assert_eq!(slow.snapshot.as_ref().map(|s| s.1.len()), Some(1));
        for t in 1..=5u64 {
            v.push(&[(seg(Segment::Loyal, t as i64), t * 1000, 1)]);
            v.fold((t + 1) * 1000, false);
            // the fast one keeps up
            match fast.rx.try_recv() {
                Ok(Feed::Update(d)) => assert_eq!(d.as_of, t * 1000),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(v.subscribers(), 1);
        assert_eq!(*slow.ended.lock().unwrap(), Some(Ended::Behind(2)));
        // what was buffered is still delivered, then the feed ends
        assert!(matches!(slow.rx.try_recv(), Ok(Feed::Update(_))));
        assert!(matches!(slow.rx.try_recv(), Ok(Feed::Update(_))));
        assert!(slow.rx.try_recv().is_err());
        assert!(fast.ended.lock().unwrap().is_none());
    }

    #[test]
    fn since_replays_exactly_the_updates_after_it() {
        let v = ViewStore::with_history(RFM_SEGMENTS, 1000, HistoryConfig::default());
        v.push(&[(seg(Segment::Loyal, 1), 1000, 1)]);
        v.push(&[(seg(Segment::New, 1), 2000, 1)]);
        v.push(&[
            (seg(Segment::New, 1), 3000, -1),
            (seg(Segment::New, 2), 3000, 1),
        ]);
        v.fold(4000, false); // one fold over three ticks
        let s = v
            .subscribe(
                SubscribeReq {
                    since: Some(1000),
                    capacity: 8,
                },
                3000,
            )
            .unwrap();
        assert!(s.snapshot.is_none());
        assert_eq!(s.backlog.len(), 1);
        let diffs = &s.backlog[0].diffs;
        // from the state at 1000 (loyal only): + new 2, nothing else
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].1, 1);
        assert_eq!(diffs[0].0, seg(Segment::New, 2).values(3000));
        // beyond the history: refused
        let small = ViewStore::with_history(
            RFM_SEGMENTS,
            1000,
            HistoryConfig {
                span_ms: 0,
                max_updates: 0,
            },
        );
        small.push(&[(seg(Segment::Loyal, 1), 1000, 1)]);
        small.fold(2000, false);
        small.push(&[(seg(Segment::Loyal, 1), 2000, -1)]);
        small.fold(3000, false);
        assert!(small
            .subscribe(
                SubscribeReq {
                    since: Some(1000),
                    capacity: 8
                },
                2000
            )
            .is_none());
        assert!(small.select(&Select::default(), 1000, 2000).is_none());
    }
}
