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
//! Rows are kept by encoded primary key ([`KeyVal`]s): the entries in one dense vector, a hash
//! table of their positions over it (`rows.rs`), and a run of one key's updates (a row's `-old, +new`) is folded with one lookup (the
//! B-tree of boxed keys this replaced spent about three quarters of a fold in cache misses). A
//! full read sorts the keys it answers (only the first `offset + limit` of them when nothing
//! filters), so reads still come out in key order. Workers push into a pending buffer under
//! its own lock, so a fold or a read never makes a worker wait. Updates folded in are also
//! kept, with their times, in a history bounded by `as_of` span and size: a read at an older
//! `as_of` subtracts the updates after it, and a subscription resumed with `since=` replays
//! them.

mod fold;
mod history;
mod key;
mod rows;
mod select;
mod stores;
mod subscribe;
#[cfg(test)]
mod tests;
mod view;

pub use history::HistoryConfig;
pub use key::{Key, KeyVal};
pub use select::{filter_text, Answer, ReadError, Select};
pub use stores::{Advance, ReadGuard, Stores};
pub use subscribe::{now_ms, Delta, Diffs, Ended, Feed, SubscribeReq, Subscription};
pub use view::{AnyView, ViewStore};

use std::sync::{Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panicking worker poisons the lock; the data is still consistent per update
    m.lock().unwrap_or_else(|e| e.into_inner())
}
