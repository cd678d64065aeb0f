//! [`Keyed::fold_by_key`] and [`Keyed::fold_by_key_retiring`]: per-key [`Fold`] states.

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::buffer::Buffer;
use super::{push_change, Slot};

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
                    let mut buffer = Buffer::named(name);
                    let mut states: HashMap<K, Slot<S>> = HashMap::new();
                    // the keys a time touches, with their rows before it
                    let mut touched: Vec<(K, Option<O>)> = Vec::new();
                    let mut rows: Vec<((K, O), isize)> = Vec::new();
                    let mut epoch = 0u64;
                    let mut sweep = retire.map(super::Sweep::new);
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
                        if let Some(sweep) = sweep.as_mut() {
                            if sweep.due(frontier.frontier().first().copied()) {
                                sweep.retain(&mut states);
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
