//! [`LeftJoin::left_join`]: a left outer join for small right sides.

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::buffer::Buffer;

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
                    let mut buffer: Buffer<(K, Side<V1, V2>), isize> = Buffer::named(name);
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
