//! The change feed: what subscribers receive, and how a subscription starts (a snapshot, or
//! the history after `since`).

use super::view::{by_key, ViewStore};
use hashbrown::HashMap;
use shopdiff_schemas::rows::{Row, Value, ViewDef};
use std::sync::{Arc, Mutex};

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

pub(super) struct Subscriber {
    pub(super) tx: tokio::sync::mpsc::Sender<Feed>,
    pub(super) ended: Arc<Mutex<Option<Ended>>>,
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
}
