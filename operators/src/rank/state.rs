//! The order-statistic state behind [`Ntile`](super::Ntile), usable without timely.
//!
//! [`NtileState`] holds one ranking: the ordered set of `(metric, key)` entries and the `k - 1`
//! bucket thresholds. [`NtileState::apply`] takes the changes of one time, changes to the set in,
//! changes to `(key, bucket)` out, consolidated. See the [module docs](super) for the algorithm
//! and its cost.

use std::collections::BTreeSet;
use std::fmt::{self, Debug, Display};
use std::ops::Bound;

/// Sorts `v[start..]` by its data (an unstable, in-place sort: differential's `consolidate`
/// sorts stably, which allocates half the slice as scratch and measured 15% of a ranking's
/// time), sums the diffs of equal data and drops the zero sums.
fn consolidate_from<T: Ord>(v: &mut Vec<(T, isize)>, start: usize) {
    if v.len() < start + 2 {
        if v.get(start).is_some_and(|(_, d)| *d == 0) {
            v.truncate(start);
        }
        return;
    }
    v[start..].sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut w = start;
    for r in start..v.len() {
        if w > start && v[w - 1].0 == v[r].0 {
            v[w - 1].1 += v[r].1;
        } else {
            if w > start && v[w - 1].1 == 0 {
                w -= 1;
            }
            v.swap(w, r);
            w += 1;
        }
    }
    if w > start && v[w - 1].1 == 0 {
        w -= 1;
    }
    v.truncate(w);
}

/// The exact bucket `floor(k * rank / n) + 1` of the 0-based `rank` among `n` entries.
///
/// Integer arithmetic in `u128`, so no rounding and no overflow. Panics unless `rank < n`.
pub fn bucket_of_rank(rank: u64, n: u64, buckets: u64) -> u64 {
    assert!(rank < n, "rank {rank} out of range for {n} entries");
    (u128::from(buckets) * u128::from(rank) / u128::from(n)) as u64 + 1
}

/// `ceil(j * n / k)`: the rank of the first entry whose bucket exceeds `j`, or `n` if none.
fn boundary_rank(j: u64, n: usize, buckets: u64) -> usize {
    (u128::from(j) * n as u128).div_ceil(u128::from(buckets)) as usize
}

/// The bucket of `entry` given the thresholds (`None` is `+inf`): one more than the number of
/// thresholds at or below it. Thresholds are non-decreasing, so this is a binary search.
fn score<E: Ord>(entry: &E, thresholds: &[Option<E>]) -> u64 {
    1 + thresholds.partition_point(|t| t.as_ref().is_some_and(|t| t <= entry)) as u64
}

/// An input that is not a set of `(metric, key)` entries. Nothing is applied when it is returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RankError {
    /// An entry's consolidated diff at one time is neither `+1` nor `-1`.
    Multiplicity {
        /// The `(metric, key)` entry, `Debug`-formatted.
        entry: String,
        /// Its consolidated diff.
        diff: isize,
    },
    /// A `-1` for an entry the ranking does not hold.
    Missing {
        /// The `(metric, key)` entry, `Debug`-formatted.
        entry: String,
    },
    /// A `+1` for an entry the ranking already holds.
    Duplicate {
        /// The `(metric, key)` entry, `Debug`-formatted.
        entry: String,
    },
}

impl Display for RankError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = "hint: the input must be a set, each key with one metric; `distinct()` upstream";
        match self {
            Self::Multiplicity { entry, diff } => {
                write!(
                    f,
                    "ranking input is not a set: {entry} has diff {diff}; {hint}"
                )
            }
            Self::Missing { entry } => {
                write!(
                    f,
                    "ranking input retracts {entry}, which is not present; {hint}"
                )
            }
            Self::Duplicate { entry } => {
                write!(
                    f,
                    "ranking input inserts {entry}, which is already present; {hint}"
                )
            }
        }
    }
}

impl std::error::Error for RankError {}

/// What one [`NtileState::apply`] did; `walk_steps` is the work beyond the `O(log n)` seeks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepStats {
    /// Entries inserted (consolidated).
    pub inserted: usize,
    /// Entries removed (consolidated).
    pub removed: usize,
    /// Entries visited while moving the thresholds; at most `(k - 1) * (2 * B + 1)` for
    /// `B = inserted + removed`, and each visited entry is inserted, a threshold, or a key whose
    /// bucket changed.
    pub walk_steps: usize,
    /// Output rows pushed (consolidated, no zero diffs).
    pub emitted: usize,
}

/// One ranking: changes to a set of `(metric, key)` in, changes to `(key, bucket)` out.
///
/// Entries are ordered by `(metric, key)`; the entry of 0-based rank `r` among `n` is in bucket
/// `floor(k * r / n) + 1`. State: the entries in a `BTreeSet` and, for `j` in `1..k`, the
/// threshold `T_j`, a value with exactly `ceil(j * n / k)` entries below it (`None` = `+inf`).
/// It is the entry of that rank when the threshold last moved, and stays put while the count
/// below it stays right, even if that entry has since been removed. An entry's bucket is
/// `1 + #{j : entry >= T_j}`, so no per-key bucket is stored.
#[derive(Clone, Debug)]
pub struct NtileState<K, M> {
    buckets: u64,
    entries: BTreeSet<(M, K)>,
    thresholds: Vec<Option<(M, K)>>,
    // Scratch, kept for its allocations.
    inserted: Vec<(M, K)>,
    removed: Vec<(M, K)>,
    crossers: Vec<(M, K)>,
}

impl<K: Ord + Clone + Debug, M: Ord + Clone + Debug> NtileState<K, M> {
    /// An empty ranking into `buckets` buckets (`k`). Panics if `buckets` is 0.
    ///
    /// It keeps `k - 1` thresholds and each time costs `O(k)` besides the changes, so `k` is
    /// meant to be small (quintiles, deciles, percentiles).
    pub fn new(buckets: u64) -> Self {
        assert!(buckets >= 1, "ntile needs at least one bucket");
        let thresholds = (1..buckets).map(|_| None).collect();
        Self {
            buckets,
            entries: BTreeSet::new(),
            thresholds,
            inserted: Vec::new(),
            removed: Vec::new(),
            crossers: Vec::new(),
        }
    }

    /// The number of buckets `k`.
    pub fn buckets(&self) -> u64 {
        self.buckets
    }

    /// The number of entries `n`.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the ranking holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bucket of `entry` if the ranking holds it, in `O(log n + log k)`.
    pub fn bucket(&self, entry: &(M, K)) -> Option<u64> {
        self.entries
            .contains(entry)
            .then(|| score(entry, &self.thresholds))
    }

    /// Applies the changes of one time (drained from `updates`, in any order, unconsolidated)
    /// and pushes the resulting changes to `(key, bucket)` onto `out`, consolidated: a key
    /// whose bucket changed gets `-1` for the old and `+1` for the new, nothing else is pushed.
    ///
    /// Cost: `O(B log n + k log B + Δ log k)` for `B` consolidated updates and `Δ` changed keys.
    /// On `Err` the ranking is unchanged and `updates` has been drained.
    pub fn apply(
        &mut self,
        updates: &mut Vec<((M, K), isize)>,
        out: &mut Vec<((K, u64), isize)>,
    ) -> Result<StepStats, RankError> {
        consolidate_from(updates, 0);
        self.split(updates)?;
        let mut stats = StepStats {
            inserted: self.inserted.len(),
            removed: self.removed.len(),
            ..StepStats::default()
        };
        if self.inserted.is_empty() && self.removed.is_empty() {
            return Ok(stats);
        }
        // counted before the set changes (it needs the old `n`); the set checks the changes as
        // it applies them, and an invalid one undoes them all
        let below = self.counts_below();
        self.change_entries()?;
        let start = out.len();
        for entry in &self.removed {
            out.push(((entry.1.clone(), score(entry, &self.thresholds)), -1));
        }
        let thresholds = self.move_thresholds(&below, &mut stats.walk_steps);
        self.crossers.sort_unstable();
        self.crossers.dedup();
        for entry in self.crossers.drain(..) {
            let (old, new) = (score(&entry, &self.thresholds), score(&entry, &thresholds));
            if old != new {
                out.push(((entry.1.clone(), old), -1));
                out.push(((entry.1, new), 1));
            }
        }
        self.thresholds = thresholds;
        for entry in &self.inserted {
            out.push(((entry.1.clone(), score(entry, &self.thresholds)), 1));
        }
        consolidate_from(out, start);
        stats.emitted = out.len() - start;
        Ok(stats)
    }

    /// Splits consolidated `updates` into sorted `inserted` and `removed`, checking that each
    /// diff is `+1` or `-1` (whether they keep the entries a set is checked as they are
    /// applied, by [`Self::change_entries`]: one search per change instead of two).
    fn split(&mut self, updates: &mut Vec<((M, K), isize)>) -> Result<(), RankError> {
        self.inserted.clear();
        self.removed.clear();
        for (entry, diff) in updates.drain(..) {
            match diff {
                1 => self.inserted.push(entry),
                -1 => self.removed.push(entry),
                diff => {
                    let entry = format!("{entry:?}");
                    self.inserted.clear();
                    self.removed.clear();
                    return Err(RankError::Multiplicity { entry, diff });
                }
            }
        }
        Ok(())
    }

    /// Removes `removed` from the set and adds `inserted`; if an entry to remove is missing or
    /// one to insert is already there, puts the set back as it was and says which.
    fn change_entries(&mut self) -> Result<(), RankError> {
        for (i, entry) in self.removed.iter().enumerate() {
            if !self.entries.remove(entry) {
                for e in &self.removed[..i] {
                    self.entries.insert(e.clone());
                }
                return Err(RankError::Missing {
                    entry: format!("{entry:?}"),
                });
            }
        }
        for (i, entry) in self.inserted.iter().enumerate() {
            if !self.entries.insert(entry.clone()) {
                for e in &self.inserted[..i] {
                    self.entries.remove(e);
                }
                for e in &self.removed {
                    self.entries.insert(e.clone());
                }
                return Err(RankError::Duplicate {
                    entry: format!("{entry:?}"),
                });
            }
        }
        Ok(())
    }

    /// For each threshold `T_j`, the number of entries below it once the changes are applied:
    /// `ceil(j * n / k)` before, plus the inserted and minus the removed entries below `T_j`.
    fn counts_below(&self) -> Vec<usize> {
        let n = self.entries.len();
        let (ins, rem) = (&self.inserted, &self.removed);
        (1..self.buckets)
            .zip(&self.thresholds)
            .map(|(j, threshold)| {
                let before = boundary_rank(j, n, self.buckets);
                match threshold {
                    Some(t) => {
                        before + ins.partition_point(|e| e < t) - rem.partition_point(|e| e < t)
                    }
                    None => before + ins.len() - rem.len(),
                }
            })
            .collect()
    }

    /// New thresholds for the (already updated) entries, collecting into `crossers` the
    /// untouched entries that lie between an old and a new threshold.
    fn move_thresholds(&mut self, below: &[usize], steps: &mut usize) -> Vec<Option<(M, K)>> {
        let n = self.entries.len();
        let mut walk = Walk {
            entries: &self.entries,
            inserted: &self.inserted,
            crossers: &mut self.crossers,
            steps,
        };
        (1..self.buckets)
            .zip(&self.thresholds)
            .zip(below)
            .map(|((j, old), &count)| {
                let target = boundary_rank(j, n, self.buckets);
                match old {
                    _ if count == target => old.clone(),
                    Some(t) if count < target => walk.forward(t, target - count, target == n),
                    _ => walk.backward(old.as_ref(), count - target),
                }
            })
            .collect()
    }
}

/// Walks the updated entries from an old threshold to its new position.
struct Walk<'a, K, M> {
    entries: &'a BTreeSet<(M, K)>,
    inserted: &'a [(M, K)],
    crossers: &'a mut Vec<(M, K)>,
    steps: &'a mut usize,
}

impl<K: Ord + Clone, M: Ord + Clone> Walk<'_, K, M> {
    fn visit(&mut self, entry: &(M, K)) {
        *self.steps += 1;
        if self.inserted.binary_search(entry).is_err() {
            self.crossers.push(entry.clone());
        }
    }

    /// From the first entry `>= old`, passes `skip` entries (their bucket drops) and returns the
    /// next one, or `+inf` if the target rank is `n`.
    fn forward(&mut self, old: &(M, K), skip: usize, to_end: bool) -> Option<(M, K)> {
        let mut iter = self.entries.range((Bound::Included(old), Bound::Unbounded));
        for _ in 0..skip {
            let entry = iter.next().expect("ranking: rank accounting is consistent");
            self.visit(entry);
        }
        if to_end {
            return None;
        }
        *self.steps += 1;
        iter.next().cloned()
    }

    /// From the last entry `< old` (`old = None` is `+inf`), goes back `count` entries (their
    /// bucket rises) and returns the last one visited.
    fn backward(&mut self, old: Option<&(M, K)>, count: usize) -> Option<(M, K)> {
        let upper = old.map_or(Bound::Unbounded, Bound::Excluded);
        let mut iter = self.entries.range((Bound::Unbounded, upper)).rev();
        let mut last = None;
        for _ in 0..count {
            let entry = iter.next().expect("ranking: rank accounting is consistent");
            self.visit(entry);
            last = Some(entry);
        }
        last.cloned()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The in-place consolidation gives differential's: the prefix untouched, the rest
        /// sorted with equal data summed and zero sums dropped.
        #[test]
        fn consolidates_like_differential(
            prefix in proptest::collection::vec((0u8..4, -2isize..3), 0..4),
            rest in proptest::collection::vec((0u8..6, -2isize..3), 0..40),
        ) {
            let mut ours: Vec<(u8, isize)> = prefix.iter().chain(&rest).copied().collect();
            super::consolidate_from(&mut ours, prefix.len());
            let mut theirs: Vec<(u8, isize)> = prefix.iter().chain(&rest).copied().collect();
            differential_dataflow::consolidation::consolidate_from(&mut theirs, prefix.len());
            prop_assert_eq!(ours, theirs);
        }
    }
}
