//! Incremental global rank / ntile: changes to `(key, metric)` in, changes to `(key, bucket)` out.
//!
//! Keys are ordered by `(metric, key)` ascending (ties on the metric are broken by the key); the
//! key of 0-based rank `r` among the `n` present gets `bucket = floor(k * r / n) + 1`, so for
//! `k = 5` quintile scores `1..=5`. The input must be a set in which each key has at most one
//! metric at a time; a metric change is `-(key, old) +(key, new)` at one time.
//!
//! # How order statistics are kept
//!
//! One [`NtileState`] per ranking: a `BTreeSet<(M, K)>` of the entries and, for `j` in `1..k`,
//! the threshold `T_j`, a value with exactly `b_j = ceil(j * n / k)` entries below it: the entry
//! at rank `b_j` when it was last moved (`+inf` when `b_j = n`). With integers only,
//! `r >= b_j` iff `j <= k * r / n`, so an entry's bucket is
//! `1 + #{j : entry >= T_j}`: a binary search over the thresholds, no per-key bucket stored, and
//! an old bucket is recomputed from the old entry and the old thresholds. For the updates of
//! one time (consolidated: `D` removed, `I` inserted entries):
//!
//! 1. retract `(key, bucket under old T)` for each entry of `D`;
//! 2. for each `j`, count the entries now below `T_j`: `c = b_j(n) + #{I < T_j} - #{D < T_j}`;
//! 3. apply `D` and `I` to the set; `b' = ceil(j * n' / k)`;
//! 4. if `c = b'`, `T_j` stays (even if its entry was removed: only the count below it
//!    matters); otherwise walk from `T_j` forward `b' - c` entries or backward `c - b'` entries
//!    (one `O(log n)` seek, then one step per entry) and land on the new `T_j` (`+inf` if
//!    `b' = n'`);
//! 5. every untouched entry walked over lies between the old and the new `T_j`, and is exactly
//!    a key whose bucket changed (entries keep their relative order, and a bucket only compares
//!    the entry with the thresholds): retract its old bucket, insert its new one;
//! 6. insert `(key, bucket under new T)` for each entry of `I`; consolidate, so a key that
//!    moves within its bucket emits nothing and no zero diff leaves.
//!
//! # Cost per change
//!
//! Per time with `B` consolidated updates and `Δ` keys whose bucket changes:
//! `O(B log n + k log B + Δ log k)` plus, for each threshold that moves, one `O(log n)` seek.
//! Each walk takes at most `|b' - b| + #I + #D <= 2B` steps, each of them an inserted entry or
//! a changed key. A single key's metric change therefore emits at most `k` keys (itself and one
//! per boundary), and adding or removing one key likewise; no re-sort, no re-emission when `n`
//! grows by one. Times with no net change cost nothing beyond their buffering. Memory: one copy
//! of each `(M, K)` in the set (about 40 B of B-tree overhead each) plus the updates waiting for
//! their time to complete.
//!
//! # What crosses workers, and why gathering is justified
//!
//! All updates of one ranking are exchanged to one owner worker, `route % peers` (timely routes
//! by global worker index, so this works across processes); the output leaves from that worker,
//! and downstream operators exchange it by key as usual. A rank is a global order statistic: any
//! change can move a key on any worker, so the whole order must be visible somewhere. Kept on
//! one core it costs `O(B log n + Δ)` per time, which the benchmark (`benches/src/bin/rank.rs`)
//! measures at a few microseconds per change, far below the per-time overhead of the dataflow.
//! Several rankings of one dataflow can use different `route`s to live on different workers.
//!
//! # Times
//!
//! Time is `u64`. Updates are buffered by their own time (several batches of one time, times
//! arriving out of order), and a time is processed, in ascending order, only once the input
//! frontier has passed it; its output is sent at a capability for exactly that time. The
//! operator holds one capability, for its earliest buffered time.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use differential_dataflow::input::Input;
//! use shopdiff_operators::rank::Ntile;
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&seen);
//! timely::execute(timely::Config::thread(), move |worker| {
//!     let sink = Arc::clone(&sink);
//!     // (customer, spend in cents), ranked into halves on the worker `0 % peers`.
//!     let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
//!         let (input, spend) = scope.new_collection::<(String, i64), isize>();
//!         let (probe, _) = spend
//!             .ntile(2, 0)
//!             .inspect(move |update| sink.lock().unwrap().push(update.clone()))
//!             .probe();
//!         (input, probe)
//!     });
//!     input.insert(("ann".to_string(), 500));
//!     input.insert(("bob".to_string(), 900));
//!     input.advance_to(1000);
//!     // bob's spend drops below ann's: both change halves.
//!     input.remove(("bob".to_string(), 900));
//!     input.insert(("bob".to_string(), 100));
//!     input.advance_to(2000);
//!     input.flush();
//!     worker.step_while(|| probe.less_than(input.time()));
//! })
//! .unwrap();
//!
//! let mut seen = seen.lock().unwrap().clone();
//! seen.sort_by_key(|(_, time, _)| *time);
//! let at = |t: u64| {
//!     let mut rows: Vec<_> = seen.iter().filter(|u| u.1 == t).map(|u| (u.0.clone(), u.2)).collect();
//!     rows.sort();
//!     rows
//! };
//! assert_eq!(at(0), vec![(("ann".into(), 1), 1), (("bob".into(), 2), 1)]);
//! assert_eq!(
//!     at(1000),
//!     vec![(("ann".into(), 1), -1), (("ann".into(), 2), 1), (("bob".into(), 1), 1), (("bob".into(), 2), -1)]
//! );
//! ```

mod state;

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::{Operator, OutputBuilderSession};
use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::MutableAntichain;

pub use state::{bucket_of_rank, NtileState, RankError, StepStats};

/// Changes to `(K, M)` in, changes to `(K, bucket)` out: the ntile of each key among all keys
/// ordered by `(M, K)`.
pub trait Ntile<'scope, K, M> {
    /// Ranks into `buckets` buckets (`k >= 1`, small); `route` picks the worker that owns this
    /// ranking (`route % peers`), so several rankings of one dataflow can live on different
    /// workers. Panics if `buckets` is 0, or if the input is not a set (see [`RankError`]).
    fn ntile(self, buckets: u64, route: u64) -> VecCollection<'scope, u64, (K, u64), isize>;
}

impl<'scope, K: ExchangeData, M: ExchangeData> Ntile<'scope, K, M>
    for VecCollection<'scope, u64, (K, M), isize>
{
    fn ntile(self, buckets: u64, route: u64) -> VecCollection<'scope, u64, (K, u64), isize> {
        let mut owner = Owner::new(NtileState::new(buckets));
        let pact = Exchange::new(move |_: &((K, M), u64, isize)| route);
        self.inner
            .unary_frontier::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
                pact,
                "Ntile",
                move |_capability, _info| {
                    let gauge = crate::state_size::gauge("Ntile");
                    move |(input, frontier), output| {
                        input.for_each_stamp(|cap, data| {
                            owner.stash(&cap, data, output.output_index());
                        });
                        owner.release(frontier, output);
                        // a B-tree holds its entries in nodes of up to 11, about 2/3 full
                        let n = owner.state.len();
                        gauge.set(n, n * std::mem::size_of::<(M, K)>() * 3 / 2);
                    }
                },
            )
            .as_collection()
    }
}

/// The operator's state on each worker; only the owner of the ranking ever receives updates.
struct Owner<K, M> {
    state: NtileState<K, M>,
    /// Updates waiting for their time to complete, by time.
    pending: BTreeMap<u64, Updates<K, M>>,
    /// A capability at or below every pending time, `None` when nothing is pending.
    held: Option<Capability<u64>>,
    out: Vec<((K, u64), isize)>,
}

/// Changes to `(metric, key)` entries, as [`NtileState::apply`] takes them.
type Updates<K, M> = Vec<((M, K), isize)>;

type Output<'a, K> =
    OutputBuilderSession<'a, u64, CapacityContainerBuilder<Vec<((K, u64), u64, isize)>>>;

impl<K: ExchangeData, M: ExchangeData> Owner<K, M> {
    fn new(state: NtileState<K, M>) -> Self {
        Self {
            state,
            pending: BTreeMap::new(),
            held: None,
            out: Vec::new(),
        }
    }

    /// Buffers a message's updates by time and keeps a capability for its least time.
    fn stash<'d>(
        &mut self,
        cap: &InputCapability<u64>,
        data: impl Iterator<Item = &'d mut Vec<((K, M), u64, isize)>>,
        port: usize,
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
        for batch in data {
            for ((key, metric), time, diff) in batch.drain(..) {
                self.pending
                    .entry(time)
                    .or_default()
                    .push(((metric, key), diff));
            }
        }
    }

    /// Processes, in ascending order, every pending time the input frontier has passed.
    fn release(&mut self, frontier: &MutableAntichain<u64>, output: &mut Output<'_, K>) {
        while let Some(entry) = self.pending.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            let (time, mut updates) = entry.remove_entry();
            if let Err(error) = self.state.apply(&mut updates, &mut self.out) {
                panic!("ntile at time {time}: {error}");
            }
            if self.out.is_empty() {
                continue;
            }
            let held = self.held.as_ref().filter(|held| *held.time() <= time);
            let Some(held) = held else {
                panic!("ntile: updates at time {time} arrived without a capability for it");
            };
            let cap = held.delayed(&time);
            let rows = self.out.drain(..).map(|(row, diff)| (row, time, diff));
            output.session(&cap).give_iterator(rows);
        }
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
