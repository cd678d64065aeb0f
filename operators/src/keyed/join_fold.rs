//! [`JoinFold::join_fold`]: left records folded per key into a compact state, joined with a
//! small right side (a dimension table) without keeping the left records themselves.

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use hashbrown::HashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::buffer::Buffer;

/// A key's right records, with their multiplicities (a table row: nearly always one).
pub type Rights<V2> = [(V2, isize)];

/// The callbacks of [`JoinFold::join_fold`] for one key: what a left update and a change of
/// the right records emit.
pub trait JoinFolder<K, V1, V2, D>: 'static {
    /// A key's folded left records.
    type State: Default + 'static;
    /// Folds the left update `(v1, diff)` into `state` and pushes its outputs, joined with the
    /// key's current right records `right`.
    fn left(
        &mut self,
        key: &K,
        state: &mut Self::State,
        right: &Rights<V2>,
        v1: V1,
        diff: isize,
        out: &mut Vec<(D, isize)>,
    );
    /// The key's right records went from `old` to `new`: pushes the changes of the outputs of
    /// everything folded in `state` (retract as joined with `old`, insert as joined with `new`).
    fn right(
        &mut self,
        key: &K,
        state: &Self::State,
        old: &Rights<V2>,
        new: &Rights<V2>,
        out: &mut Vec<(D, isize)>,
    );
    /// Whether `state` holds nothing (the key is then dropped once it has no right records).
    fn is_empty(&self, state: &Self::State) -> bool;
    /// Bytes the folder holds outside the operator's table (the states' own maps, say), for
    /// the operator's state gauge.
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// [`JoinFold::join_fold`] on collections of `(K, V1)`.
pub trait JoinFold<'scope, K, V1> {
    /// A join of the left records with the right records of their key in which the left side
    /// is kept only as the folder's per-key state (sums per class of records, say), not record
    /// by record: a left update costs one lookup and the folder's step; a change of a key's
    /// right records costs the folder's `right` over the key's state (`O(state)`, once per key
    /// and time: a time's right changes are applied first, grouped by key, then its left
    /// updates see the new right records). Meant for a table as the right side: a product's
    /// cost joined with its lines folded into sums that the cost multiplies.
    fn join_fold<V2, D, F>(
        self,
        name: &str,
        right: VecCollection<'scope, u64, (K, V2), isize>,
        folder: F,
    ) -> VecCollection<'scope, u64, D, isize>
    where
        V2: ExchangeData,
        D: ExchangeData,
        F: JoinFolder<K, V1, V2, D>;
}

/// One side's update.
enum Side<V1, V2> {
    Left(V1),
    Right(V2),
}

/// A key's state and right records.
struct Entry<S, V2> {
    state: S,
    right: Vec<(V2, isize)>,
}

impl<'scope, K, V1> JoinFold<'scope, K, V1> for VecCollection<'scope, u64, (K, V1), isize>
where
    K: ExchangeData + std::hash::Hash,
    V1: ExchangeData,
{
    fn join_fold<V2, D, F>(
        self,
        name: &str,
        right: VecCollection<'scope, u64, (K, V2), isize>,
        mut folder: F,
    ) -> VecCollection<'scope, u64, D, isize>
    where
        V2: ExchangeData,
        D: ExchangeData,
        F: JoinFolder<K, V1, V2, D>,
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
                    let mut buffer: Buffer<(K, Side<V1, V2>), isize> = Buffer::named(name);
                    let mut states: HashMap<K, Entry<F::State, V2>> = HashMap::new();
                    let mut rows: Vec<(D, isize)> = Vec::new();
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
                                let entry = states.entry(key.clone()).or_insert_with(|| Entry {
                                    state: F::State::default(),
                                    right: Vec::new(),
                                });
                                let old = entry.right.clone();
                                add(&mut entry.right, v2, d);
                                while let Some(((_, v2), d)) =
                                    updates.next_if(|((k, _), _)| *k == key)
                                {
                                    add(&mut entry.right, v2, d);
                                }
                                folder.right(&key, &entry.state, &old, &entry.right, &mut rows);
                                if entry.right.is_empty() && folder.is_empty(&entry.state) {
                                    states.remove(&key);
                                }
                            }
                            drop(updates);
                            for ((key, side), d) in batch.drain(..) {
                                let Side::Left(v1) = side else { continue };
                                match states.entry(key) {
                                    hashbrown::hash_map::Entry::Occupied(mut e) => {
                                        let (k, entry) = (e.key().clone(), e.get_mut());
                                        folder.left(
                                            &k,
                                            &mut entry.state,
                                            &entry.right,
                                            v1,
                                            d,
                                            &mut rows,
                                        );
                                        if entry.right.is_empty() && folder.is_empty(&entry.state) {
                                            e.remove();
                                        }
                                    }
                                    hashbrown::hash_map::Entry::Vacant(e) => {
                                        let mut state = F::State::default();
                                        folder.left(e.key(), &mut state, &[], v1, d, &mut rows);
                                        if !folder.is_empty(&state) {
                                            e.insert(Entry {
                                                state,
                                                right: Vec::new(),
                                            });
                                        }
                                    }
                                }
                            }
                            buffer.recycle(batch);
                            rows.retain(|(_, d)| *d != 0);
                            buffer.give(output, time, &mut rows);
                            gauge.set(states.len(), states.allocation_size() + folder.heap_bytes());
                        }
                        buffer.downgrade();
                    }
                },
            )
            .as_collection()
    }
}

/// Adds `d` copies of `v` to a small multiset.
fn add<V: PartialEq>(set: &mut Vec<(V, isize)>, v: V, d: isize) {
    match set.iter().position(|(x, _)| *x == v) {
        Some(i) => {
            set[i].1 += d;
            if set[i].1 == 0 {
                set.swap_remove(i);
            }
        }
        None => set.push((v, d)),
    }
}
