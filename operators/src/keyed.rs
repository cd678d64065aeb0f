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

use std::collections::BTreeMap;

use differential_dataflow::difference::Abelian;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::{Operator, OutputBuilderSession};
use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::MutableAntichain;

/// A per-key state that folds the key's values one at a time.
///
/// It must depend only on the multiset of values added so far (adding `v` with `diff` and
/// then with `-diff` gives back the same state), so the order of the updates of one time does
/// not matter.
pub trait Fold<V>: Default + 'static {
    /// Adds `diff` copies of `v` (a negative `diff` removes them).
    fn add(&mut self, v: &V, diff: isize);
    /// Whether this is the state of no values at all (it is then dropped).
    fn is_empty(&self) -> bool;
}

/// A multiset of values with the number of distinct values it holds (those with a positive
/// count), kept as values come and go: a distinct count that survives retractions, O(1) per
/// update. A [`Fold`] of its own (windowed distinct counts) and a part of larger per-key states
/// (distinct transactions of a product, a customer).
pub struct Distinct<X> {
    counts: HashMap<X, isize>,
    positive: usize,
}

impl<X> Default for Distinct<X> {
    fn default() -> Self {
        Distinct {
            counts: HashMap::new(),
            positive: 0,
        }
    }
}

impl<X> Distinct<X> {
    /// How many distinct values have a positive count.
    pub fn count(&self) -> usize {
        self.positive
    }
}

impl<X: Clone + Eq + std::hash::Hash + 'static> Fold<X> for Distinct<X> {
    fn add(&mut self, x: &X, diff: isize) {
        let n = self.counts.entry(x.clone()).or_insert(0);
        let before = *n > 0;
        *n += diff;
        let after = *n > 0;
        if *n == 0 {
            self.counts.remove(x);
        }
        match (before, after) {
            (false, true) => self.positive += 1,
            (true, false) => self.positive -= 1,
            _ => {}
        }
    }
    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// [`Keyed::fold_by_key`] on collections of `(K, V)`.
pub trait Keyed<'scope, K, V> {
    /// Folds each key's values into a state `S`; the key's row is `out(key, state)` (none
    /// when `None`). Emits, at each time, a retraction of the old row and the new row of
    /// every key whose row changed.
    fn fold_by_key<S, O, F>(self, name: &str, out: F) -> VecCollection<'scope, u64, (K, O), isize>
    where
        S: Fold<V>,
        O: ExchangeData,
        F: Fn(&K, &S) -> Option<O> + 'static;

    /// [`Keyed::fold_by_key`] that forgets the state of keys no update can reach any more
    /// (see [`Retire`]); their rows stay as they were.
    fn fold_by_key_retiring<S, O, F>(
        self,
        name: &str,
        retire: Option<Retire<K>>,
        out: F,
    ) -> VecCollection<'scope, u64, (K, O), isize>
    where
        S: Fold<V>,
        O: ExchangeData,
        F: Fn(&K, &S) -> Option<O> + 'static;
}

/// When a key of [`Keyed::fold_by_key_retiring`] can be forgotten: once the input frontier
/// `f` has passed `last(key) + below`, where `last(key)` bounds the event times of the key's
/// records (the end of its day, say) and no record older than `f - below` can arrive (the
/// lateness horizon, plus a tick). The operator looks every `below / 16` of logical time.
pub struct Retire<K> {
    pub below: u64,
    pub last: fn(&K) -> u64,
}

impl<K> Clone for Retire<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Retire<K> {}

impl<'scope, K, V> Keyed<'scope, K, V> for VecCollection<'scope, u64, (K, V), isize>
where
    K: ExchangeData + std::hash::Hash,
    V: ExchangeData,
{
    fn fold_by_key<S, O, F>(self, name: &str, out: F) -> VecCollection<'scope, u64, (K, O), isize>
    where
        S: Fold<V>,
        O: ExchangeData,
        F: Fn(&K, &S) -> Option<O> + 'static,
    {
        self.fold_by_key_retiring(name, None, out)
    }

    fn fold_by_key_retiring<S, O, F>(
        self,
        name: &str,
        retire: Option<Retire<K>>,
        out: F,
    ) -> VecCollection<'scope, u64, (K, O), isize>
    where
        S: Fold<V>,
        O: ExchangeData,
        F: Fn(&K, &S) -> Option<O> + 'static,
    {
        let pact = Exchange::new(|u: &((K, V), u64, isize)| (u.0).0.hashed());
        self.inner
            .unary_frontier::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
                pact,
                name,
                move |_capability, _info| {
                    let gauge = crate::state_size::gauge(name);
                    let mut buffer = Buffer::default();
                    let mut states: HashMap<K, Slot<S>> = HashMap::new();
                    // the keys a time touches, with their rows before it
                    let mut touched: Vec<(K, Option<O>)> = Vec::new();
                    let mut rows: Vec<((K, O), isize)> = Vec::new();
                    let mut epoch = 0u64;
                    let mut next_sweep = retire.map_or(u64::MAX, |r| r.below);
                    move |(input, frontier), output| {
                        let port = output.output_index();
                        input.for_each_stamp(|cap, data| {
                            buffer.stash(&cap, port, data.flat_map(|b| b.drain(..)));
                        });
                        while let Some((time, mut batch)) = buffer.next_ready(frontier) {
                            // one lookup per update: a key's first update of the time notes
                            // its row before the time (no sort of the time's updates)
                            epoch += 1;
                            for ((key, v), d) in batch.drain(..) {
                                let slot = match states.entry(key) {
                                    Entry::Occupied(e) => {
                                        if e.get().epoch != epoch {
                                            touched.push((e.key().clone(), None));
                                        }
                                        e.into_mut()
                                    }
                                    Entry::Vacant(e) => {
                                        touched.push((e.key().clone(), None));
                                        e.insert(Slot::default())
                                    }
                                };
                                if slot.epoch != epoch {
                                    slot.epoch = epoch;
                                    if let Some((k, old)) = touched.last_mut() {
                                        *old = out(k, &slot.state);
                                    }
                                }
                                slot.state.add(&v, d);
                            }
                            buffer.recycle(batch);
                            for (key, old) in touched.drain(..) {
                                let Some(slot) = states.get(&key) else {
                                    continue;
                                };
                                let new = out(&key, &slot.state);
                                if slot.state.is_empty() {
                                    states.remove(&key);
                                }
                                push_change(&mut rows, key, old, new);
                            }
                            buffer.give(output, time, &mut rows);
                            gauge.set(states.len(), states.allocation_size());
                        }
                        if let (Some(r), Some(&f)) = (retire, frontier.frontier().first()) {
                            if f >= next_sweep {
                                // every time below `f` is folded, and nothing older than
                                // `f - below` can come: the keys wholly below it keep their
                                // rows downstream and lose their state
                                let cutoff = f - r.below;
                                states.retain(|k, _| (r.last)(k) >= cutoff);
                                if states.len() < states.capacity() / 4 {
                                    states.shrink_to(states.len() * 2);
                                }
                                next_sweep = f + (r.below / 16).max(1);
                                gauge.set(states.len(), states.allocation_size());
                            }
                        }
                        buffer.downgrade();
                    }
                },
            )
            .as_collection()
    }
}

/// A key's state with the last time (an operator-local sequence number) that touched it.
#[derive(Default)]
struct Slot<S> {
    state: S,
    epoch: u64,
}

/// [`ScanByKey::scan_by_key`] on collections of `(K, V)`.
pub trait ScanByKey<'scope, K, V> {
    /// Turns each update `(key, v, diff)` into output updates, with a per-key state `S` the
    /// step may read and change: `step(key, state, v, diff, out)` pushes `(data, r)` pairs to
    /// `out`, emitted at the update's time. A key's state is dropped when `empty(state)`.
    ///
    /// The outputs of one time, accumulated, must not depend on the order of that time's
    /// updates (they are applied one at a time, in arrival order; the outputs of the time are
    /// summed per `data` before they leave, so many updates adding to one output send one
    /// record). Meant for a stage that
    /// annotates records with what they change for their key, for instance a transaction's
    /// lines with the distinct-order changes they cause (`+1` when a transaction's first line
    /// for a revenue key arrives, `-1` when its last one leaves): downstream the distinct
    /// counts become plain sums ([`SumByKey::sum_by_key`]). Cost: one hash lookup per update
    /// plus the step, and one per output to sum them; no output buffering beyond the time's.
    fn scan_by_key<S, D, R, F, E>(
        self,
        name: &str,
        step: F,
        empty: E,
    ) -> VecCollection<'scope, u64, D, R>
    where
        S: Default + 'static,
        D: ExchangeData + std::hash::Hash,
        R: ExchangeData + differential_dataflow::difference::Semigroup,
        F: FnMut(&K, &mut S, V, isize, &mut Vec<(D, R)>) + 'static,
        E: Fn(&S) -> bool + 'static;
}

impl<'scope, K, V> ScanByKey<'scope, K, V> for VecCollection<'scope, u64, (K, V), isize>
where
    K: ExchangeData + std::hash::Hash,
    V: ExchangeData,
{
    fn scan_by_key<S, D, R, F, E>(
        self,
        name: &str,
        mut step: F,
        empty: E,
    ) -> VecCollection<'scope, u64, D, R>
    where
        S: Default + 'static,
        D: ExchangeData + std::hash::Hash,
        R: ExchangeData + differential_dataflow::difference::Semigroup,
        F: FnMut(&K, &mut S, V, isize, &mut Vec<(D, R)>) + 'static,
        E: Fn(&S) -> bool + 'static,
    {
        let pact = Exchange::new(|u: &((K, V), u64, isize)| (u.0).0.hashed());
        self.inner
            .unary_frontier::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
                pact,
                name,
                move |_capability, _info| {
                    let gauge = crate::state_size::gauge(name);
                    let mut buffer = Buffer::default();
                    let mut states: HashMap<K, S> = HashMap::new();
                    let mut rows: Vec<(D, R)> = Vec::new();
                    let mut combined: HashMap<D, R> = HashMap::new();
                    move |(input, frontier), output| {
                        let port = output.output_index();
                        input.for_each_stamp(|cap, data| {
                            buffer.stash(&cap, port, data.flat_map(|b| b.drain(..)));
                        });
                        while let Some((time, mut batch)) = buffer.next_ready(frontier) {
                            for ((key, v), d) in batch.drain(..) {
                                if let Some(state) = states.get_mut(&key) {
                                    step(&key, state, v, d, &mut rows);
                                    if empty(state) {
                                        states.remove(&key);
                                    }
                                } else {
                                    let mut state = S::default();
                                    step(&key, &mut state, v, d, &mut rows);
                                    if !empty(&state) {
                                        states.insert(key, state);
                                    }
                                }
                            }
                            buffer.recycle(batch);
                            // combined here, before the exchange: many updates of a time
                            // share an output (every line of an hour adds to its `all` key)
                            for (x, r) in rows.drain(..) {
                                match combined.entry(x) {
                                    Entry::Occupied(mut e) => e.get_mut().plus_equals(&r),
                                    Entry::Vacant(e) => {
                                        e.insert(r);
                                    }
                                }
                            }
                            rows.extend(combined.drain().filter(|(_, r)| !r.is_zero()));
                            buffer.give(output, time, &mut rows);
                            gauge.set(states.len(), states.allocation_size());
                        }
                        buffer.downgrade();
                    }
                },
            )
            .as_collection()
    }
}

/// [`SumByKey::sum_by_key`] on collections of `K` with an abelian difference `R`.
pub trait SumByKey<'scope, K, R> {
    /// The sum of each key's differences, as a row `(key, sum)` while the sum is not zero:
    /// differential's `count()`, kept in a hash map.
    fn sum_by_key(self, name: &str) -> VecCollection<'scope, u64, (K, R), isize>;
}

impl<'scope, K, R> SumByKey<'scope, K, R> for VecCollection<'scope, u64, K, R>
where
    K: ExchangeData + std::hash::Hash,
    R: ExchangeData + Abelian,
{
    fn sum_by_key(self, name: &str) -> VecCollection<'scope, u64, (K, R), isize> {
        let pact = Exchange::new(|u: &(K, u64, R)| u.0.hashed());
        self.inner
            .unary_frontier::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
                pact,
                name,
                move |_capability, _info| {
                    let gauge = crate::state_size::gauge(name);
                    let mut buffer = Buffer::default();
                    let mut sums: HashMap<K, Slot<R>> = HashMap::new();
                    // the keys a time touches, with their sums before it
                    let mut touched: Vec<(K, Option<R>)> = Vec::new();
                    let mut rows: Vec<((K, R), isize)> = Vec::new();
                    let mut epoch = 0u64;
                    move |(input, frontier), output| {
                        let port = output.output_index();
                        input.for_each_stamp(|cap, data| {
                            buffer.stash(&cap, port, data.flat_map(|b| b.drain(..)));
                        });
                        while let Some((time, mut batch)) = buffer.next_ready(frontier) {
                            // one lookup per update, no sort (see `fold_by_key`)
                            epoch += 1;
                            for (key, d) in batch.drain(..) {
                                match sums.entry(key) {
                                    Entry::Occupied(mut e) => {
                                        if e.get().epoch != epoch {
                                            let old = e.get().state.clone();
                                            touched.push((e.key().clone(), Some(old)));
                                            e.get_mut().epoch = epoch;
                                        }
                                        e.get_mut().state.plus_equals(&d);
                                    }
                                    Entry::Vacant(e) => {
                                        touched.push((e.key().clone(), None));
                                        e.insert(Slot { state: d, epoch });
                                    }
                                }
                            }
                            buffer.recycle(batch);
                            for (key, old) in touched.drain(..) {
                                let Some(slot) = sums.get(&key) else { continue };
                                let new = (!slot.state.is_zero()).then(|| slot.state.clone());
                                if new.is_none() {
                                    sums.remove(&key);
                                }
                                push_change(&mut rows, key, old, new);
                            }
                            buffer.give(output, time, &mut rows);
                            gauge.set(sums.len(), sums.allocation_size());
                        }
                        buffer.downgrade();
                    }
                },
            )
            .as_collection()
    }
}

/// [`LeftJoin::left_join`] on collections of `(K, V1)`.
pub trait LeftJoin<'scope, K, V1> {
    /// Each left record `(k, v1)` with every right record `(k, v2)` of its key, as
    /// `(v1, Some(v2))` (multiplicities multiply, as in a join), or as `(v1, None)` while the
    /// key has no right record: a left outer join keeping only the values. Per key, the left
    /// records are kept in a hash map and the right ones in a small list: a left change costs
    /// one lookup and emits one row per right record; a right change re-emits the key's left
    /// records (`O(left records of the key)`, once per key and time: a time's right changes
    /// are sorted by key), meant for right sides with few records per key.
    fn left_join<V2>(
        self,
        name: &str,
        right: VecCollection<'scope, u64, (K, V2), isize>,
    ) -> VecCollection<'scope, u64, (V1, Option<V2>), isize>
    where
        V2: ExchangeData;
}

/// One side's update in [`LeftJoin::left_join`].
enum Side<V1, V2> {
    Left(V1),
    Right(V2),
}

/// A multiset: a small vector searched linearly while it has few distinct values (most keys of
/// a join have one: a session's transaction, a product row), a hash map past
/// [`MULTISET_SMALL`] (a product's thousands of lines), so an update costs O(1) either way and
/// a key with one value allocates nothing beyond its entry.
enum Multiset<V> {
    Small(smallvec::SmallVec<[(V, isize); 1]>),
    Large(HashMap<V, isize>),
}

/// The most distinct values a [`Multiset`] keeps in its vector.
const MULTISET_SMALL: usize = 16;

impl<V: Eq + std::hash::Hash> Multiset<V> {
    fn add(&mut self, v: V, d: isize) {
        match self {
            Multiset::Small(s) => match s.iter().position(|(x, _)| *x == v) {
                Some(i) => {
                    s[i].1 += d;
                    if s[i].1 == 0 {
                        s.swap_remove(i);
                    }
                }
                None if s.len() < MULTISET_SMALL => s.push((v, d)),
                None => {
                    let mut m: HashMap<V, isize> = s.drain(..).collect();
                    m.insert(v, d);
                    *self = Multiset::Large(m);
                }
            },
            Multiset::Large(m) => match m.entry(v) {
                hashbrown::hash_map::Entry::Occupied(mut e) => {
                    *e.get_mut() += d;
                    if *e.get() == 0 {
                        e.remove();
                    }
                }
                hashbrown::hash_map::Entry::Vacant(e) => {
                    e.insert(d);
                }
            },
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Multiset::Small(s) => s.is_empty(),
            Multiset::Large(m) => m.is_empty(),
        }
    }

    /// Calls `f` with each value and its multiplicity.
    fn for_each(&self, mut f: impl FnMut(&V, isize)) {
        match self {
            Multiset::Small(s) => s.iter().for_each(|(v, d)| f(v, *d)),
            Multiset::Large(m) => m.iter().for_each(|(v, d)| f(v, *d)),
        }
    }
}

/// A key's records in [`LeftJoin::left_join`].
struct JoinState<V1, V2> {
    left: Multiset<V1>,
    right: Vec<(V2, isize)>,
}

impl<V1, V2> Default for JoinState<V1, V2> {
    fn default() -> Self {
        JoinState {
            left: Multiset::Small(smallvec::SmallVec::new()),
            right: Vec::new(),
        }
    }
}

impl<V1: ExchangeData + std::hash::Hash, V2: ExchangeData> JoinState<V1, V2> {
    /// The rows of `v1` with multiplicity `d` against the current right records.
    fn rows(&self, v1: &V1, d: isize, out: &mut Vec<((V1, Option<V2>), isize)>) {
        if self.right.is_empty() {
            out.push(((v1.clone(), None), d));
        }
        for (v2, n) in &self.right {
            out.push(((v1.clone(), Some(v2.clone())), d * n));
        }
    }

    /// Every row of the key, with multiplicities times `sign`.
    fn all_rows(&self, sign: isize, out: &mut Vec<((V1, Option<V2>), isize)>) {
        self.left.for_each(|v1, d| self.rows(v1, sign * d, out));
    }

    fn add_left(&mut self, v1: V1, d: isize) {
        self.left.add(v1, d);
    }

    fn is_empty(&self) -> bool {
        self.left.is_empty() && self.right.is_empty()
    }

    fn add_right(&mut self, v2: V2, d: isize) {
        match self.right.iter().position(|(x, _)| *x == v2) {
            Some(i) => {
                self.right[i].1 += d;
                if self.right[i].1 == 0 {
                    self.right.swap_remove(i);
                }
            }
            None => self.right.push((v2, d)),
        }
    }

    /// Applies one key's updates of one time, emitting the changes of its rows.
    /// The key's right records change by `updates`: its rows are retracted as they were and
    /// emitted again with the new right records.
    fn apply_right(
        &mut self,
        updates: impl IntoIterator<Item = (V2, isize)>,
        out: &mut Vec<((V1, Option<V2>), isize)>,
    ) {
        self.all_rows(-1, out);
        for (v2, d) in updates {
            self.add_right(v2, d);
        }
        self.all_rows(1, out);
    }
}

impl<'scope, K, V1> LeftJoin<'scope, K, V1> for VecCollection<'scope, u64, (K, V1), isize>
where
    K: ExchangeData + std::hash::Hash,
    V1: ExchangeData + std::hash::Hash,
{
    fn left_join<V2>(
        self,
        name: &str,
        right: VecCollection<'scope, u64, (K, V2), isize>,
    ) -> VecCollection<'scope, u64, (V1, Option<V2>), isize>
    where
        V2: ExchangeData,
    {
        let left_pact = Exchange::new(|u: &((K, V1), u64, isize)| (u.0).0.hashed());
        let right_pact = Exchange::new(|u: &((K, V2), u64, isize)| (u.0).0.hashed());
        self.inner
            .binary_frontier::<_, CapacityContainerBuilder<Vec<_>>, _, _, _, _>(
                right.inner,
                left_pact,
                right_pact,
                name,
                move |_capability, _info| {
                    let gauge = crate::state_size::gauge(name);
                    let mut buffer: Buffer<(K, Side<V1, V2>), isize> = Buffer::default();
                    let mut states: HashMap<K, JoinState<V1, V2>> = HashMap::new();
                    let mut rows: Vec<((V1, Option<V2>), isize)> = Vec::new();
                    let mut rights: Vec<((K, V2), isize)> = Vec::new();
                    move |(left, left_frontier), (right, right_frontier), output| {
                        let port = output.output_index();
                        left.for_each_stamp(|cap, data| {
                            let updates = data.flat_map(|b| b.drain(..));
                            let updates = updates.map(|((k, v), t, d)| ((k, Side::Left(v)), t, d));
                            buffer.stash(&cap, port, updates);
                        });
                        right.for_each_stamp(|cap, data| {
                            let updates = data.flat_map(|b| b.drain(..));
                            let updates = updates.map(|((k, v), t, d)| ((k, Side::Right(v)), t, d));
                            buffer.stash(&cap, port, updates);
                        });
                        let frontiers = [left_frontier, right_frontier];
                        while let Some((time, mut batch)) = buffer.next_ready_all(&frontiers) {
                            // right changes first, sorted by key so that a key's rows are
                            // re-emitted once per time (only the right side is sorted); then
                            // each left change costs one lookup
                            rights.extend(
                                batch
                                    .extract_if(.., |(x, _)| matches!(x.1, Side::Right(_)))
                                    .filter_map(|((k, side), d)| match side {
                                        Side::Right(v2) => Some(((k, v2), d)),
                                        Side::Left(_) => None,
                                    }),
                            );
                            rights.sort_unstable_by(|a, b| (a.0).0.cmp(&(b.0).0));
                            let mut updates = rights.drain(..).peekable();
                            while let Some(((key, v2), d)) = updates.next() {
                                let mut group = vec![(v2, d)];
                                while let Some(((_, v2), d)) =
                                    updates.next_if(|((k, _), _)| *k == key)
                                {
                                    group.push((v2, d));
                                }
                                let state = states.entry(key.clone()).or_default();
                                state.apply_right(group, &mut rows);
                                if state.is_empty() {
                                    states.remove(&key);
                                }
                            }
                            drop(updates);
                            for ((key, side), d) in batch.drain(..) {
                                let Side::Left(v1) = side else { continue };
                                match states.entry(key) {
                                    Entry::Occupied(mut e) => {
                                        e.get().rows(&v1, d, &mut rows);
                                        e.get_mut().add_left(v1, d);
                                        if e.get().is_empty() {
                                            e.remove();
                                        }
                                    }
                                    Entry::Vacant(e) => {
                                        let mut state = JoinState::default();
                                        state.rows(&v1, d, &mut rows);
                                        state.add_left(v1, d);
                                        if !state.is_empty() {
                                            e.insert(state);
                                        }
                                    }
                                }
                            }
                            buffer.recycle(batch);
                            rows.retain(|(_, d)| *d != 0);
                            buffer.give(output, time, &mut rows);
                            gauge.set(states.len(), states.allocation_size());
                        }
                        buffer.downgrade();
                    }
                },
            )
            .as_collection()
    }
}

/// The output handle of these operators: updates `(data, time, diff)` in vectors.
type VecOutput<'a, D, R> =
    OutputBuilderSession<'a, u64, CapacityContainerBuilder<Vec<(D, u64, R)>>>;

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

/// Updates `(data, diff)` waiting for their time to complete, and one capability at or below
/// all of them.
struct Buffer<X, R> {
    pending: BTreeMap<u64, Vec<(X, R)>>,
    held: Option<Capability<u64>>,
    /// Emptied vectors of applied times, reused for new times: a time's vector can hold
    /// megabytes (a batch of 1,000 lines is 16,000 revenue updates at one time), and a fresh one
    /// per time cost page faults on new memory, the largest single cost of an update.
    spare: Vec<Vec<(X, R)>>,
}

impl<X, R> Default for Buffer<X, R> {
    fn default() -> Self {
        Buffer {
            pending: BTreeMap::new(),
            held: None,
            spare: Vec::new(),
        }
    }
}

impl<X, R> Buffer<X, R> {
    /// Buffers a message's updates by time and keeps a capability for its least time.
    fn stash(
        &mut self,
        cap: &InputCapability<u64>,
        port: usize,
        updates: impl Iterator<Item = (X, u64, R)>,
    ) {
        if let Some(cap) = cap.retain_least(port) {
            if self
                .held
                .as_ref()
                .is_none_or(|held| cap.time() < held.time())
            {
                self.held = Some(cap);
            }
        }
        let spare = &mut self.spare;
        for (x, time, diff) in updates {
            self.pending
                .entry(time)
                .or_insert_with(|| spare.pop().unwrap_or_default())
                .push((x, diff));
        }
    }

    /// Takes back an applied time's vector (emptied here) for later times; keeps a few.
    fn recycle(&mut self, mut v: Vec<(X, R)>) {
        if self.spare.len() < 4 {
            v.clear();
            self.spare.push(v);
        }
    }

    /// The earliest buffered time the frontier has passed, with its updates.
    fn next_ready(&mut self, frontier: &MutableAntichain<u64>) -> Option<(u64, Vec<(X, R)>)> {
        self.next_ready_all(&[frontier])
    }

    /// The earliest buffered time every input frontier has passed, with its updates.
    fn next_ready_all(
        &mut self,
        frontiers: &[&MutableAntichain<u64>],
    ) -> Option<(u64, Vec<(X, R)>)> {
        let entry = self.pending.first_entry()?;
        if frontiers.iter().any(|f| f.less_equal(entry.key())) {
            return None;
        }
        Some(entry.remove_entry())
    }

    /// Sends `rows` (drained) at `time`, a time that was buffered; nothing when empty.
    fn give<D: Clone + 'static, R2: Clone + 'static>(
        &self,
        output: &mut VecOutput<'_, D, R2>,
        time: u64,
        rows: &mut Vec<(D, R2)>,
    ) {
        if rows.is_empty() {
            return;
        }
        let cap = self.capability(time);
        output
            .session(&cap)
            .give_iterator(rows.drain(..).map(|(x, r)| (x, time, r)));
    }

    /// A capability for a time that was buffered.
    fn capability(&self, time: u64) -> Capability<u64> {
        match self.held.as_ref().filter(|held| *held.time() <= time) {
            Some(held) => held.delayed(&time),
            None => panic!("keyed aggregate: updates at time {time} without a capability"),
        }
    }

    /// Keeps the capability at the earliest buffered time, or drops it when nothing waits.
    fn downgrade(&mut self) {
        match self.pending.keys().next() {
            Some(&next) => {
                if let Some(held) = self.held.as_mut().filter(|held| *held.time() < next) {
                    held.downgrade(&next);
                }
            }
            None => self.held = None,
        }
    }
}
