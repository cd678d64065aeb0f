//! [`WindowAggregates`]: changes to `(K, V)` records in, changes to `(K, aggregate over the
//! records of K in a trailing window)` out.
//!
//! See the [module documentation](super) for the window semantics and the cost.

use std::collections::BTreeMap;
use std::hash::Hash;

use differential_dataflow::{ExchangeData, VecCollection};

use super::SlidingWindow;
use crate::keyed::{Distinct, Fold, Keyed, SumByKey};

/// Per-key aggregates over a trailing window of `width` ms.
///
/// Every method takes the window's `width` and a `start` function giving each record's window
/// start (for shopdiff `ceil_tick(timestamp)`): at a tick `T` the window of key `k` holds the
/// records `(k, v)` present at `T` with `T - width < start((k, v)) <= T`. Outputs have one row
/// per key with a non-empty window and no row otherwise. Each call builds its own
/// [`SlidingWindow`]; to compute several aggregates over one window, window once and aggregate
/// the result with the [`crate::keyed`] operators these methods are made of.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use differential_dataflow::input::Input;
/// use shopdiff_operators::window::WindowAggregates;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = Arc::clone(&seen);
/// timely::example(move |scope| {
///     // (user, (cents, start tick)), summed over a 3 s window.
///     let (mut input, lines) = scope.new_collection::<(u32, (i64, u64)), isize>();
///     lines
///         .window_sum(3_000, |&(_, (_, start))| start, |&(cents, _)| cents)
///         .inspect(move |update| sink.lock().unwrap().push(*update));
///     input.insert((1, (250, 1_000)));
///     input.insert((1, (-250, 2_000)));
/// });
/// let mut seen = seen.lock().unwrap().clone();
/// seen.sort_by_key(|&(row, t, r)| (t, r, row));
/// assert_eq!(
///     seen,
///     vec![
///         ((1, 250), 1_000, 1),
///         ((1, 250), 2_000, -1),
///         ((1, 0), 2_000, 1), // two lines in the window, net 0: still a row
///         ((1, 0), 4_000, -1),
///         ((1, -250), 4_000, 1),
///         ((1, -250), 5_000, -1),
///     ]
/// );
/// ```
pub trait WindowAggregates<'scope, K, V> {
    /// Changes to `(K, V)` in, changes to `(K, number of records in the window)` out.
    ///
    /// A record with multiplicity 2 counts twice. Built from `count`.
    fn window_count<S>(self, width: u64, start: S) -> VecCollection<'scope, u64, (K, i64), isize>
    where
        S: Fn(&(K, V)) -> u64 + 'static;

    /// Changes to `(K, V)` in, changes to `(K, sum of amount(v) over the window)` out.
    ///
    /// A key whose window is not empty has a row even when its sum is 0. Built from `explode`
    /// with a `(records, amount)` difference and `count`, so a change costs a lookup of one key
    /// whatever the number of values per key. `amount` is accumulated as `isize` (64 bits on
    /// every supported target).
    fn window_sum<S, A>(
        self,
        width: u64,
        start: S,
        amount: A,
    ) -> VecCollection<'scope, u64, (K, i64), isize>
    where
        S: Fn(&(K, V)) -> u64 + 'static,
        A: Fn(&V) -> i64 + 'static;

    /// Changes to `(K, V)` in, changes to `(K, number of distinct of(v) in the window)` out.
    ///
    /// `of` picks what is counted (`|v| v.clone()` counts distinct values); it lets the record
    /// carry its start time without the time taking part in the distinction. Built from
    /// `distinct` and `count`.
    fn window_distinct_count<S, X, F>(
        self,
        width: u64,
        start: S,
        of: F,
    ) -> VecCollection<'scope, u64, (K, i64), isize>
    where
        S: Fn(&(K, V)) -> u64 + 'static,
        X: ExchangeData + Hash,
        F: Fn(&V) -> X + 'static;

    /// Changes to `(K, V)` in, changes to `(K, greatest of(v) in the window)` out.
    ///
    /// Built from `reduce`: a change to a key costs time linear in the number of distinct
    /// `of(v)` of that key in the window.
    fn window_max<S, X, F>(
        self,
        width: u64,
        start: S,
        of: F,
    ) -> VecCollection<'scope, u64, (K, X), isize>
    where
        S: Fn(&(K, V)) -> u64 + 'static,
        X: ExchangeData,
        F: Fn(&V) -> X + 'static;
}

impl<'scope, K, V> WindowAggregates<'scope, K, V> for VecCollection<'scope, u64, (K, V), isize>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    fn window_count<S>(self, width: u64, start: S) -> VecCollection<'scope, u64, (K, i64), isize>
    where
        S: Fn(&(K, V)) -> u64 + 'static,
    {
        self.sliding_window(width, start)
            .map(|(k, _)| k)
            .sum_by_key("WindowCounts")
            .map(|(k, n)| (k, n as i64))
    }

    fn window_sum<S, A>(
        self,
        width: u64,
        start: S,
        amount: A,
    ) -> VecCollection<'scope, u64, (K, i64), isize>
    where
        S: Fn(&(K, V)) -> u64 + 'static,
        A: Fn(&V) -> i64 + 'static,
    {
        self.sliding_window(width, start)
            .explode(move |(k, v)| {
                let cents = amount(&v) as isize;
                Some((k, (1isize, cents)))
            })
            .sum_by_key("WindowSums")
            // A zero record count with a non-zero sum only comes from retractions of records
            // that were never inserted; such keys have no window and no row.
            .flat_map(|(k, (records, sum))| (records > 0).then_some((k, sum as i64)))
    }

    fn window_distinct_count<S, X, F>(
        self,
        width: u64,
        start: S,
        of: F,
    ) -> VecCollection<'scope, u64, (K, i64), isize>
    where
        S: Fn(&(K, V)) -> u64 + 'static,
        X: ExchangeData + Hash,
        F: Fn(&V) -> X + 'static,
    {
        self.sliding_window(width, start)
            .map(move |(k, v)| {
                let x = of(&v);
                (k, x)
            })
            .fold_by_key("WindowDistinct", |_k, s: &Distinct<X>| {
                (s.count() > 0).then_some(s.count() as i64)
            })
    }

    fn window_max<S, X, F>(
        self,
        width: u64,
        start: S,
        of: F,
    ) -> VecCollection<'scope, u64, (K, X), isize>
    where
        S: Fn(&(K, V)) -> u64 + 'static,
        X: ExchangeData,
        F: Fn(&V) -> X + 'static,
    {
        self.sliding_window(width, start)
            .map(move |(k, v)| {
                let x = of(&v);
                (k, x)
            })
            .fold_by_key("WindowMax", |_k, s: &Multiset<X>| {
                // skip any value left negative by bad input
                s.0.iter()
                    .rev()
                    .find(|(_, n)| **n > 0)
                    .map(|(x, _)| x.clone())
            })
    }
}

/// The values of a key with their counts; `positive` counts those above zero (the distinct
/// count).
/// The values of a key with their counts, in order (for the maximum).
struct Multiset<X>(BTreeMap<X, isize>);

impl<X> Default for Multiset<X> {
    fn default() -> Self {
        Multiset(BTreeMap::new())
    }
}

impl<X: ExchangeData> Fold<X> for Multiset<X> {
    fn add(&mut self, x: &X, diff: isize) {
        let n = self.0.entry(x.clone()).or_insert(0);
        *n += diff;
        if *n == 0 {
            self.0.remove(x);
        }
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
