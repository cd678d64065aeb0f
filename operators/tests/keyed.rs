//! Random change histories through the keyed aggregates, checked against a brute force at every
//! time, on 1, 2 and 3 workers.
//!
//! Updates are `(key, value)` with diffs of +1, +2 or -1 (the history may go negative: the
//! operators must give the same function of the accumulated input as the brute force, whatever
//! it is). Each worker feeds every `peers`-th update, so an insert and its retraction often enter
//! on different workers; inputs advance in coarse steps while updates keep their own times, and
//! times within a step arrive out of order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use differential_dataflow::input::Input;
use proptest::prelude::*;
use shopdiff_operators::keyed::{Fold, Keyed, LeftJoin, ScanByKey, SumByKey};

/// The largest value with a positive count, and the number of distinct such values.
#[derive(Default)]
struct MaxDistinct(BTreeMap<u8, isize>);

impl Fold<u8> for MaxDistinct {
    fn add(&mut self, v: &u8, diff: isize) {
        let n = self.0.entry(*v).or_insert(0);
        *n += diff;
        if *n == 0 {
            self.0.remove(v);
        }
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn summary(m: &BTreeMap<u8, isize>) -> Option<(u8, usize)> {
    let max = m.iter().rev().find(|(_, n)| **n > 0).map(|(v, _)| *v)?;
    Some((max, m.values().filter(|n| **n > 0).count()))
}

type Out<D> = Arc<Mutex<Vec<(D, u64, isize)>>>;

/// A fold row `(key, (max, distinct))` and a sum row `(key, sum)`.
type FoldRow = (u8, (u8, usize));
type SumRow = (u8, isize);
type Captured<D> = Vec<(D, u64, isize)>;

/// `(key, value, time, diff)`.
type Update = (u8, u8, u64, isize);

fn run(updates: &[Update], workers: usize, step: u64) -> (Captured<FoldRow>, Captured<SumRow>) {
    let folds: Out<(u8, (u8, usize))> = Arc::default();
    let sums: Out<(u8, isize)> = Arc::default();
    let (f, s) = (folds.clone(), sums.clone());
    let mut sorted = updates.to_vec();
    sorted.sort_by_key(|u| u.2 / step);
    timely::execute(timely::Config::process(workers), move |worker| {
        let (f, s) = (f.clone(), s.clone());
        let input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, values) = scope.new_collection::<(u8, u8), isize>();
            values
                .clone()
                .fold_by_key("MaxDistinct", |_k, m: &MaxDistinct| summary(&m.0))
                .inspect(move |u| f.lock().unwrap().push(*u));
            values
                .map(|(k, _)| k)
                .sum_by_key("Sums")
                .inspect(move |u| s.lock().unwrap().push(*u));
            input
        });
        feed(worker, input, &sorted, step);
    })
    .unwrap();
    let f = folds.lock().unwrap().clone();
    let s = sums.lock().unwrap().clone();
    (f, s)
}

/// Feeds `sorted` updates round-robin over the workers, advancing the input coarsely (to
/// multiples of `step`, a worker step at each) so several times are pending at once, then
/// closes it.
fn feed(
    worker: &mut timely::worker::Worker,
    mut input: differential_dataflow::input::InputSession<u64, (u8, u8), isize>,
    sorted: &[Update],
    step: u64,
) {
    let (index, peers) = (worker.index(), worker.peers());
    for (i, (k, v, t, d)) in sorted.iter().enumerate() {
        let at = t / step * step;
        if at > *input.time() {
            input.advance_to(at);
            input.flush();
            worker.step();
        }
        if i % peers == index {
            input.update_at((*k, *v), *t, *d);
        }
    }
    input.close();
}

/// Distinct values per key, the way revenue counts orders: a stage keyed by the value keeps
/// each value's count per key and emits `+1 / -1` for the key when the value's count there
/// turns positive or stops being positive; `sum_by_key` adds those up.
fn run_scan(updates: &[Update], workers: usize, step: u64) -> Captured<SumRow> {
    let rows: Out<SumRow> = Arc::default();
    let r = rows.clone();
    let mut sorted = updates.to_vec();
    sorted.sort_by_key(|u| u.2 / step);
    timely::execute(timely::Config::process(workers), move |worker| {
        let r = r.clone();
        let input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, values) = scope.new_collection::<(u8, u8), isize>();
            values
                .map(|(k, v)| (v, k))
                .scan_by_key(
                    "DistinctByValue",
                    |_v, counts: &mut BTreeMap<u8, isize>, k: u8, d, out: &mut Vec<(u8, isize)>| {
                        let n = counts.entry(k).or_insert(0);
                        let before = *n > 0;
                        *n += d;
                        let after = *n > 0;
                        if *n == 0 {
                            counts.remove(&k);
                        }
                        if before != after {
                            out.push((k, if after { 1 } else { -1 }));
                        }
                    },
                    |counts| counts.is_empty(),
                )
                .sum_by_key("Sums")
                .inspect(move |u| r.lock().unwrap().push(*u));
            input
        });
        feed(worker, input, &sorted, step);
    })
    .unwrap();
    let out = rows.lock().unwrap().clone();
    out
}

/// The number of values with a positive count, per key where it is not zero.
fn brute_distinct(updates: &[Update], t: u64) -> BTreeMap<SumRow, isize> {
    let mut per_key: BTreeMap<u8, BTreeMap<u8, isize>> = BTreeMap::new();
    for (k, v, time, d) in updates {
        if *time <= t {
            *per_key.entry(*k).or_default().entry(*v).or_insert(0) += d;
        }
    }
    let mut out = BTreeMap::new();
    for (k, m) in &per_key {
        let n = m.values().filter(|n| **n > 0).count() as isize;
        if n != 0 {
            out.insert((*k, n), 1);
        }
    }
    out
}

type JoinRow = (u8, Option<u8>);

/// `left_join` of `left` (`(key, value, time, diff)`) with `right`: captured output updates.
fn run_join(
    left: &[Update],
    right: &[Update],
    workers: usize,
    step: u64,
) -> Vec<(JoinRow, u64, isize)> {
    let rows: Out<JoinRow> = Arc::default();
    let r = rows.clone();
    let mut all: Vec<(bool, Update)> = left
        .iter()
        .map(|u| (true, *u))
        .chain(right.iter().map(|u| (false, *u)))
        .collect();
    all.sort_by_key(|(_, u)| u.2 / step);
    timely::execute(timely::Config::process(workers), move |worker| {
        let r = r.clone();
        let (mut li, mut ri) = worker.dataflow::<u64, _, _>(|scope| {
            let (li, l) = scope.new_collection::<(u8, u8), isize>();
            let (ri, rc) = scope.new_collection::<(u8, u8), isize>();
            l.left_join("Join", rc)
                .inspect(move |u| r.lock().unwrap().push(*u));
            (li, ri)
        });
        let (index, peers) = (worker.index(), worker.peers());
        for (i, (is_left, (k, v, t, d))) in all.iter().enumerate() {
            let at = t / step * step;
            if at > *li.time() {
                li.advance_to(at);
                ri.advance_to(at);
                li.flush();
                ri.flush();
                worker.step();
            }
            if i % peers == index {
                if *is_left {
                    li.update_at((*k, *v), *t, *d);
                } else {
                    ri.update_at((*k, *v), *t, *d);
                }
            }
        }
        li.close();
        ri.close();
    })
    .unwrap();
    let out = rows.lock().unwrap().clone();
    out
}

/// The join of `left` and `right` (run with `workers`, times batched by `step`) equals the
/// brute-force join at every time.
fn check_join(
    left: &[Update],
    right: &[Update],
    workers: usize,
    step: u64,
) -> Result<(), TestCaseError> {
    let rows = run_join(left, right, workers, step);
    for t in 0..41 {
        prop_assert_eq!(at(&rows, t), brute_join(left, right, t), "join at {}", t);
    }
    Ok(())
}

fn brute_join(left: &[Update], right: &[Update], t: u64) -> BTreeMap<JoinRow, isize> {
    let acc = |us: &[Update]| {
        let mut m: BTreeMap<u8, BTreeMap<u8, isize>> = BTreeMap::new();
        for (k, v, time, d) in us {
            if *time <= t {
                *m.entry(*k).or_default().entry(*v).or_insert(0) += d;
            }
        }
        for vs in m.values_mut() {
            vs.retain(|_, n| *n != 0);
        }
        m
    };
    let (l, r) = (acc(left), acc(right));
    let mut out = BTreeMap::new();
    for (k, vs) in &l {
        let ws = r.get(k).cloned().unwrap_or_default();
        for (v, n) in vs {
            if ws.is_empty() {
                *out.entry((*v, None)).or_insert(0) += n;
            }
            for (w, m) in &ws {
                *out.entry((*v, Some(*w))).or_insert(0) += n * m;
            }
        }
    }
    out.retain(|_, n| *n != 0);
    out
}

/// The accumulated rows at `t`.
fn at<D: Ord + Clone>(updates: &[(D, u64, isize)], t: u64) -> BTreeMap<D, isize> {
    let mut m = BTreeMap::new();
    for (d, time, diff) in updates {
        if *time <= t {
            *m.entry(d.clone()).or_insert(0) += diff;
        }
    }
    m.retain(|_, n| *n != 0);
    m
}

fn brute(updates: &[Update], t: u64) -> (BTreeMap<FoldRow, isize>, BTreeMap<SumRow, isize>) {
    let mut per_key: BTreeMap<u8, BTreeMap<u8, isize>> = BTreeMap::new();
    for (k, v, time, d) in updates {
        if *time <= t {
            *per_key.entry(*k).or_default().entry(*v).or_insert(0) += d;
        }
    }
    let mut folds = BTreeMap::new();
    let mut sums = BTreeMap::new();
    for (k, m) in &per_key {
        if let Some(s) = summary(m) {
            folds.insert((*k, s), 1);
        }
        let total: isize = m.values().sum();
        if total != 0 {
            sums.insert((*k, total), 1);
        }
    }
    (folds, sums)
}

fn update() -> impl Strategy<Value = Update> {
    (
        0u8..4,
        0u8..6,
        0u64..40,
        prop_oneof![3 => Just(1isize), 1 => Just(2), 2 => Just(-1)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn keyed_aggregates_match_brute_force(
        updates in prop::collection::vec(update(), 0..60),
        workers in 1usize..4,
        step in 1u64..8,
    ) {
        let (folds, sums) = run(&updates, workers, step);
        for t in 0..41 {
            let (bf, bs) = brute(&updates, t);
            prop_assert_eq!(at(&folds, t), bf, "fold at {}", t);
            prop_assert_eq!(at(&sums, t), bs, "sum at {}", t);
        }
        // every output is a row (+1) or its retraction (-1)
        prop_assert!(folds.iter().all(|u| u.2 == 1 || u.2 == -1));
    }

    #[test]
    fn scan_by_key_distinct_counts_match_brute_force(
        updates in prop::collection::vec(update(), 0..60),
        workers in 1usize..4,
        step in 1u64..8,
    ) {
        let rows = run_scan(&updates, workers, step);
        for t in 0..41 {
            prop_assert_eq!(at(&rows, t), brute_distinct(&updates, t), "distinct at {}", t);
        }
    }

    /// Keys with dozens of distinct left values: the join state's multiset moves from its
    /// vector to a hash map (past 16 values) and back to empty, with retractions.
    #[test]
    fn left_join_matches_brute_force_with_many_values_per_key(
        left in prop::collection::vec(
            (0u8..2, 0u8..60, 0u64..40, prop_oneof![3 => Just(1isize), 2 => Just(-1)]),
            0..150,
        ),
        right in prop::collection::vec(update(), 0..8),
        workers in 1usize..4,
        step in 1u64..8,
    ) {
        check_join(&left, &right, workers, step)?;
    }

    #[test]
    fn left_join_matches_brute_force(
        left in prop::collection::vec(update(), 0..50),
        right in prop::collection::vec(update(), 0..12),
        workers in 1usize..4,
        step in 1u64..8,
    ) {
        check_join(&left, &right, workers, step)?;
    }
}
