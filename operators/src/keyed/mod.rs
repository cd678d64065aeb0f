//! Per-key aggregates kept in a hash map, for a totally ordered time: changes in, changes to one
//! row per key out.
//!
//! * [`Keyed::fold_by_key`]: changes to `(K, V)` in, changes to `(K, O)` out, where `O` is
//!   computed from a per-key state `S` that folds the key's values ([`Fold`]). It covers a
//!   reduce whose state can be updated by one value at a time: max over a multiset, distinct
//!   counts, sums, and an n-way join of tagged values by key.
//! * [`SumByKey::sum_by_key`]: changes to `K` with any abelian difference `R` in, changes to
//!   `(K, R)` out: the same output as differential's `count()` (one row per key whose sum is
//!   not zero).
//! * [`ScanByKey::scan_by_key`]: changes to `(K, V)` in, any changes out, computed by a step
//!   that reads and updates a per-key state (a transaction's lines turned into the order
//!   changes they cause per revenue key).
//! * [`LeftJoin::left_join`]: changes to `(K, V1)` and `(K, V2)` in, changes to
//!   `(V1, Option<V2>)` out: a left outer join for small right sides (dimension tables).
//!
//! # Why not `reduce` / `count`
//!
//! A differential `reduce` keeps the input and the output as arrangements and, for every key
//! that changes at a time, replays that key's history from both traces (cursor seeks through
//! every batch of the spine, then the merges that compact them). With one-second ticks nearly
//! every key changes at its own times, so a replay spends most of its time there. These
//! operators instead keep, per key, only the current state (no history: time is totally
//! ordered and an update is only applied once its time is complete), so one update costs one
//! hash-map lookup and one state update, and a key changed at a time emits at most one
//! retraction and one insertion. The state is not an arrangement: it cannot be shared or read
//! from outside, and nothing else needs it.
//!
//! # Times
//!
//! Time is `u64`. Updates are exchanged by a hash of the key (so a key's state lives on one
//! worker, in any number of workers or processes), buffered by their own time (several batches
//! of one time, times arriving out of order), and a time is applied, in ascending order, only
//! once the input frontier has passed it; its output is sent at a capability for exactly that
//! time. The operator holds one capability, for its earliest buffered time. So at every time
//! `t` the output, accumulated, is exactly the function of the input accumulated to `t`.
//!
//! # Cost
//!
//! Per time with `B` updates over `k` keys: `B` hash lookups and state updates (no sort: a
//! key's first update of the time notes its row before the time, and the `k` touched keys are
//! visited once more at the end), `2 k` output rows at most. Memory: one state per key with a
//! non-empty state, plus the updates waiting for their time to complete.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use differential_dataflow::input::Input;
//! use shopdiff_operators::keyed::{Fold, Keyed, SumByKey};
//!
//! /// The largest value of a key, kept as a multiset so that it survives retractions.
//! #[derive(Default)]
//! struct Max(std::collections::BTreeMap<u64, isize>);
//! impl Fold<u64> for Max {
//!     fn add(&mut self, v: &u64, diff: isize) {
//!         let n = self.0.entry(*v).or_insert(0);
//!         *n += diff;
//!         if *n == 0 {
//!             self.0.remove(v);
//!         }
//!     }
//!     fn is_empty(&self) -> bool {
//!         self.0.is_empty()
//!     }
//! }
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&seen);
//! timely::execute(timely::Config::thread(), move |worker| {
//!     let sink = Arc::clone(&sink);
//!     let mut input = worker.dataflow::<u64, _, _>(|scope| {
//!         let (input, values) = scope.new_collection::<(char, u64), isize>();
//!         values
//!             .clone()
//!             .fold_by_key("Max", |_k, s: &Max| s.0.keys().next_back().copied())
//!             .inspect(move |update| sink.lock().unwrap().push(*update));
//!         // the number of values per key, as `count()` would give it
//!         values.map(|(k, _)| k).sum_by_key("Counts");
//!         input
//!     });
//!     input.insert(('a', 5));
//!     input.insert(('a', 3));
//!     input.advance_to(1);
//!     input.remove(('a', 5));
//!     input.close();
//! })
//! .unwrap();
//! let mut seen = seen.lock().unwrap().clone();
//! seen.sort_by_key(|&(_, t, d)| (t, d));
//! assert_eq!(seen, vec![(('a', 5), 0, 1), (('a', 5), 1, -1), (('a', 3), 1, 1)]);
//! ```

mod buffer;
mod fold;
mod join_fold;
mod left_join;
mod scan;
mod sum;

pub use fold::{Distinct, Fold, Keyed, Retire};
pub use join_fold::{JoinFold, JoinFolder, Rights};
pub use left_join::LeftJoin;
pub use scan::ScanByKey;
pub use sum::SumByKey;

/// A key's state with the last time (an operator-local sequence number) that touched it.
#[derive(Default)]
struct Slot<S> {
    state: S,
    epoch: u64,
}

/// A key's row went from `old` to `new` (`None`: no row): retracts the old and inserts the new,
/// nothing when they are equal.
fn push_change<K: Clone, O: PartialEq>(
    rows: &mut Vec<((K, O), isize)>,
    key: K,
    old: Option<O>,
    new: Option<O>,
) {
    if old != new {
        if let Some(o) = old {
            rows.push(((key.clone(), o), -1));
        }
        if let Some(n) = new {
            rows.push(((key, n), 1));
        }
    }
}

/// When and what a retiring operator forgets ([`Retire`]): it looks every `below / 16` of
/// logical time and drops the keys wholly below `frontier - below`.
struct Sweep<K> {
    retire: Retire<K>,
    next: u64,
    cutoff: u64,
}

impl<K> Sweep<K> {
    fn new(retire: Retire<K>) -> Self {
        Sweep {
            next: retire.below,
            cutoff: 0,
            retire,
        }
    }

    /// Whether a sweep is due at input frontier `f` (none once the input is closed): every
    /// time below `f` is applied then, and nothing older than `f - below` can still come.
    fn due(&mut self, f: Option<u64>) -> bool {
        match f {
            Some(f) if f >= self.next => {
                self.cutoff = f - self.retire.below;
                self.next = f + (self.retire.below / 16).max(1);
                true
            }
            _ => false,
        }
    }

    /// Drops the states of the keys no update can reach (their rows stay downstream as they
    /// were), and gives memory back once the map is mostly empty.
    fn retain<V, S: std::hash::BuildHasher>(&self, states: &mut hashbrown::HashMap<K, V, S>)
    where
        K: Eq + std::hash::Hash,
    {
        states.retain(|k, _| (self.retire.last)(k) >= self.cutoff);
        if states.len() < states.capacity() / 4 {
            states.shrink_to(states.len() * 2);
        }
    }
}
