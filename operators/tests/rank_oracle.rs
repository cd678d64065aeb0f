//! Brute-force oracle and random scenarios for the ranking tests (`rank.rs`, `rank_state.rs`
//! include this file as a module); its own tests check the oracle against hand-computed cases.

use std::collections::BTreeMap;

use rand::Rng;

/// One change of a tick: set `key` to `Some(metric)`, or delete it with `None`.
pub type Change<K, M> = (K, Option<M>);

/// The bucket of every key by sorting all of them: `floor(k * r / n) + 1`.
pub fn brute_buckets<K: Ord + Clone, M: Ord>(current: &BTreeMap<K, M>, k: u64) -> BTreeMap<K, u64> {
    let mut order: Vec<(&M, &K)> = current.iter().map(|(key, metric)| (metric, key)).collect();
    order.sort();
    let n = order.len() as u128;
    let bucket = |rank: usize| (u128::from(k) * rank as u128 / n) as u64 + 1;
    order
        .into_iter()
        .enumerate()
        .map(|(rank, (_, key))| (key.clone(), bucket(rank)))
        .collect()
}

/// The consolidated, sorted changes from one bucket map to another.
pub fn diff_buckets<K: Ord + Clone>(
    old: &BTreeMap<K, u64>,
    new: &BTreeMap<K, u64>,
) -> Vec<((K, u64), isize)> {
    let mut out = Vec::new();
    for (key, &bucket) in old {
        if new.get(key) != Some(&bucket) {
            out.push(((key.clone(), bucket), -1));
        }
    }
    for (key, &bucket) in new {
        if old.get(key) != Some(&bucket) {
            out.push(((key.clone(), bucket), 1));
        }
    }
    out.sort();
    out
}

/// One tick as the tests see it: the input updates and what the operator must emit.
pub struct Tick<K, M> {
    /// Updates to `(key, metric)`, unconsolidated, in the order they were produced.
    pub updates: Vec<((K, M), isize)>,
    /// The expected output changes, consolidated and sorted.
    pub expected: Vec<((K, u64), isize)>,
    /// The bucket of every key after the tick.
    pub buckets: BTreeMap<K, u64>,
    /// The number of distinct keys whose metric or presence changed.
    pub changed_keys: usize,
}

/// Replays ticks of changes against a `key -> metric` map and the brute-force buckets.
pub struct Replay<K, M> {
    k: u64,
    current: BTreeMap<K, M>,
    buckets: BTreeMap<K, u64>,
}

impl<K: Ord + Clone, M: Ord + Clone> Replay<K, M> {
    pub fn new(k: u64) -> Self {
        Self {
            k,
            current: BTreeMap::new(),
            buckets: BTreeMap::new(),
        }
    }

    /// The number of keys present.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    /// Whether no key is present.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// The metric of `key`, if present.
    pub fn get(&self, key: &K) -> Option<&M> {
        self.current.get(key)
    }

    /// Applies one tick's changes in order (a key may change several times).
    pub fn tick(&mut self, changes: &[Change<K, M>]) -> Tick<K, M> {
        let before = self.current.clone();
        let mut updates = Vec::new();
        for (key, metric) in changes {
            if let Some(old) = self.current.remove(key) {
                updates.push(((key.clone(), old), -1));
            }
            if let Some(new) = metric {
                updates.push(((key.clone(), new.clone()), 1));
                self.current.insert(key.clone(), new.clone());
            }
        }
        let mut keys: Vec<&K> = changes.iter().map(|(key, _)| key).collect();
        keys.sort();
        keys.dedup();
        let changed_keys = keys
            .iter()
            .filter(|key| before.get(**key) != self.current.get(**key))
            .count();
        let buckets = brute_buckets(&self.current, self.k);
        let expected = diff_buckets(&self.buckets, &buckets);
        self.buckets = buckets.clone();
        Tick {
            updates,
            expected,
            buckets,
            changed_keys,
        }
    }
}

/// Random ticks over keys `0..max_keys` and metrics `0..domain`: the size of the ranking
/// follows `targets` (grow, churn, drain to 0, regrow), batches hold 1..=n changes, about one
/// tick in eight is empty, and some ticks touch a key twice.
pub fn random_ticks<R: Rng>(
    rng: &mut R,
    targets: &[usize],
    ticks_per_target: usize,
    max_keys: u64,
    domain: u64,
) -> Vec<Vec<Change<u64, u64>>> {
    let mut present: BTreeMap<u64, u64> = BTreeMap::new();
    let mut ticks = Vec::new();
    for &target in targets {
        for _ in 0..ticks_per_target {
            let mut changes = Vec::new();
            if rng.random_ratio(1, 8) {
                ticks.push(changes);
                continue;
            }
            let batch = rng.random_range(1..=present.len().max(target).max(1));
            for _ in 0..batch {
                let change = random_change(rng, &present, target, max_keys, domain);
                match change.1 {
                    Some(metric) => present.insert(change.0, metric),
                    None => present.remove(&change.0),
                };
                changes.push(change);
            }
            ticks.push(changes);
        }
    }
    ticks
}

/// Moves the size toward `target`: insert below it, delete above it, else mostly metric changes.
fn random_change<R: Rng>(
    rng: &mut R,
    present: &BTreeMap<u64, u64>,
    target: usize,
    max_keys: u64,
    domain: u64,
) -> Change<u64, u64> {
    let n = present.len();
    let pick_present = |rng: &mut R| *present.keys().nth(rng.random_range(0..n)).unwrap();
    let grow = n < target && (n as u64) < max_keys;
    if n == 0 || (grow && rng.random_ratio(3, 4)) {
        let key = loop {
            let key = rng.random_range(0..max_keys);
            if !present.contains_key(&key) || n as u64 >= max_keys {
                break key;
            }
        };
        return (key, Some(rng.random_range(0..domain)));
    }
    if n > target && rng.random_ratio(3, 4) {
        return (pick_present(rng), None);
    }
    match rng.random_range(0..10) {
        0 => (pick_present(rng), None),
        1 => (
            rng.random_range(0..max_keys),
            Some(rng.random_range(0..domain)),
        ),
        _ => (pick_present(rng), Some(rng.random_range(0..domain))),
    }
}

#[test]
fn oracle_buckets_match_hand_computed_cases() {
    let map = |pairs: &[(u64, u64)]| pairs.iter().copied().collect::<BTreeMap<u64, u64>>();
    assert!(brute_buckets(&map(&[]), 5).is_empty());
    assert_eq!(brute_buckets(&map(&[(7, 3)]), 5), map(&[(7, 1)]));
    // n = 2, k = 5: ranks 0 and 1 score 1 and 3.
    assert_eq!(
        brute_buckets(&map(&[(1, 9), (2, 4)]), 5),
        map(&[(2, 1), (1, 3)])
    );
    // ties on the metric are broken by the key.
    let five = map(&[(5, 0), (4, 0), (3, 0), (2, 0), (1, 0)]);
    assert_eq!(
        brute_buckets(&five, 5),
        map(&[(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)])
    );
}

#[test]
fn oracle_replay_emits_only_changed_buckets() {
    let mut replay = Replay::<u64, u64>::new(2);
    let first = replay.tick(&[(1, Some(10)), (2, Some(20))]);
    assert_eq!(first.expected, vec![((1, 1), 1), ((2, 2), 1)]);
    let moved = replay.tick(&[(2, Some(5))]);
    assert_eq!(
        moved.expected,
        vec![((1, 1), -1), ((1, 2), 1), ((2, 1), 1), ((2, 2), -1)]
    );
    assert_eq!(moved.updates, vec![((2, 20), -1), ((2, 5), 1)]);
    let same = replay.tick(&[(1, Some(11)), (1, Some(10))]);
    assert!(same.expected.is_empty());
    assert_eq!(same.changed_keys, 0);
    let gone = replay.tick(&[(1, None), (2, None)]);
    assert_eq!(gone.expected, vec![((1, 2), -1), ((2, 1), -1)]);
    assert_eq!(replay.len(), 0);
    assert!(replay.is_empty());
}
