//! The change feed: what subscribers receive, and how a subscription starts (a snapshot, or
//! the history after `since`).

use super::view::{by_key, ViewStore};
use hashbrown::HashMap;
use shopdiff_schemas::rows::{Row, Value, ViewDef};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
    /// Events waited unread for this many milliseconds: the client stopped reading.
    Stuck(u64),
    Shutdown,
    /// The engine stopped (a process of the cluster died): the reason.
    Failed(String),
}

pub(super) struct Subscriber {
    pub(super) tx: tokio::sync::mpsc::Sender<Feed>,
    pub(super) ended: Arc<Mutex<Option<Ended>>>,
    /// When the client last took an event ([`now_ms`]), and how long events may wait unread.
    pub(super) pulled: Arc<AtomicU64>,
    pub(super) stuck_after: Option<Duration>,
    /// When the oldest event still unread was sent.
    pub(super) unread_since: u64,
}

impl Subscriber {
    /// Called before each send: how long the client has taken nothing while events waited
    /// for it, when that is longer than allowed (a client that stopped reading is dropped
    /// then, whether or not its buffer is full).
    pub(super) fn stuck(&mut self) -> Option<u64> {
        let limit = self.stuck_after?.as_millis() as u64;
        let now = now_ms();
        if self.tx.capacity() == self.tx.max_capacity() {
            // nothing unread: the event about to be sent is the oldest
            self.unread_since = now;
            return None;
        }
        let idle = now.saturating_sub(self.pulled.load(Ordering::Relaxed).max(self.unread_since));
        (idle > limit).then_some(idle)
    }
}

/// Milliseconds on a process-wide monotonic clock.
pub fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A subscription request.
pub struct SubscribeReq {
    pub since: Option<u64>,
    pub capacity: usize,
    /// Drop the subscriber when an event has waited unread this long (`None`: only when its
    /// buffer is full).
    pub stuck_after: Option<Duration>,
}

/// A registered subscription: its first event(s), the live feed and how it ended.
pub struct Subscription {
    pub snapshot: Option<(u64, Vec<Vec<Value>>)>,
    /// History after `since` (when resuming), in `as_of` order.
    pub backlog: Vec<Delta>,
    pub rx: tokio::sync::mpsc::Receiver<Feed>,
    pub ended: Arc<Mutex<Option<Ended>>>,
    /// Set to [`now_ms`] by the reader each time the client takes an event.
    pub pulled: Arc<AtomicU64>,
}

pub(super) fn delta_values<R: Row>(def: &ViewDef, r: &R, as_of: u64) -> Vec<Value> {
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
    /// Registers a subscriber (see [`AnyView::subscribe`](super::AnyView::subscribe)).
    pub(super) fn open_subscription(
        &self,
        req: SubscribeReq,
        current: u64,
    ) -> Option<Subscription> {
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
        let pulled = Arc::new(AtomicU64::new(now_ms()));
        g.subscribers.push(Subscriber {
            tx,
            ended: ended.clone(),
            pulled: pulled.clone(),
            stuck_after: req.stuck_after,
            unread_since: now_ms(),
        });
        Some(Subscription {
            snapshot,
            backlog,
            rx,
            ended,
            pulled,
        })
    }
}
