//! [`ScanByKey::scan_by_key`]: a step over each update with a per-key state.

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::buffer::Buffer;
use super::Retire;

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
    ///
    /// [`SumByKey::sum_by_key`]: super::SumByKey::sum_by_key
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

    /// [`ScanByKey::scan_by_key`] that forgets the state of keys no update can reach any more
    /// (see [`Retire`]): once the frontier is past `last(key) + below`, the key's state is
    /// dropped as if it were empty.
    fn scan_by_key_retiring<S, D, R, F, E>(
        self,
        name: &str,
        retire: Option<Retire<K>>,
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
        step: F,
        empty: E,
    ) -> VecCollection<'scope, u64, D, R>
    where
        S: Default + 'static,
        D: ExchangeData + std::hash::Hash,
        R: ExchangeData + differential_dataflow::difference::Semigroup,
        F: FnMut(&K, &mut S, V, isize, &mut Vec<(D, R)>) + 'static,
        E: Fn(&S) -> bool + 'static,
    {
        self.scan_by_key_retiring(name, None, step, empty)
    }

    fn scan_by_key_retiring<S, D, R, F, E>(
        self,
        name: &str,
        retire: Option<Retire<K>>,
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
                    let mut buffer = Buffer::named(name);
                    let mut states: HashMap<K, S> = HashMap::new();
                    let mut rows: Vec<(D, R)> = Vec::new();
                    let mut combined: HashMap<D, R> = HashMap::new();
                    let mut sweep = retire.map(super::Sweep::new);
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
