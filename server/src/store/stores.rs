//! Every view's store together: one shared `as_of`, the publisher that advances them all
//! under one write lock, the listeners of each advance, and the engine's health.

use super::lock;
use super::subscribe::{Diffs, Ended};
use super::view::AnyView;
use shopdiff_schemas::rows::ViewDef;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

/// An advance of all views: the new `as_of` and each view's changes (empty when none).
#[derive(Debug, Clone)]
pub struct Advance {
    pub as_of: u64,
    pub views: Vec<(ViewDef, Diffs)>,
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
