//! [`LeftJoin::left_join`]: a left outer join for small right sides.

use differential_dataflow::{ExchangeData, VecCollection};
use hashbrown::HashMap;

use super::join_fold::{JoinFold, JoinFolder, Rights};

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

/// The left records of a key as [`JoinFold::join_fold`]'s state, emitted with each right
/// record of the key (or with `None` while there is none).
struct Outer<V1>(std::marker::PhantomData<V1>);

/// `v1` with multiplicity `d` joined with the right records `right`.
fn rows<V1: Clone, V2: Clone>(
    v1: &V1,
    d: isize,
    right: &Rights<V2>,
    out: &mut Vec<((V1, Option<V2>), isize)>,
) {
    if right.is_empty() {
        out.push(((v1.clone(), None), d));
    }
    for (v2, n) in right {
        out.push(((v1.clone(), Some(v2.clone())), d * n));
    }
}

impl<K, V1, V2> JoinFolder<K, V1, V2, (V1, Option<V2>)> for Outer<V1>
where
    V1: ExchangeData + std::hash::Hash,
    V2: ExchangeData,
{
    type State = Multiset<V1>;

    fn left(
        &mut self,
        _key: &K,
        state: &mut Multiset<V1>,
        right: &Rights<V2>,
        v1: V1,
        d: isize,
        out: &mut Vec<((V1, Option<V2>), isize)>,
    ) {
        rows(&v1, d, right, out);
        state.add(v1, d);
    }

    fn right(
        &mut self,
        _key: &K,
        state: &Multiset<V1>,
        old: &Rights<V2>,
        new: &Rights<V2>,
        out: &mut Vec<((V1, Option<V2>), isize)>,
    ) {
        state.for_each(|v1, d| rows(v1, -d, old, out));
        state.for_each(|v1, d| rows(v1, d, new, out));
    }

    fn is_empty(&self, state: &Multiset<V1>) -> bool {
        state.is_empty()
    }
}

impl<V> Default for Multiset<V> {
    fn default() -> Self {
        Multiset::Small(smallvec::SmallVec::new())
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
        self.join_fold(name, right, Outer(std::marker::PhantomData))
    }
}
