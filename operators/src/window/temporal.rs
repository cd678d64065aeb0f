//! [`TemporalFilter`] and [`SlidingWindow`]: changes to `D` in, changes to "`D` while its
//! validity interval contains the time" out.
//!
//! See the [module documentation](super) for the semantics and the cost.

use std::collections::BTreeMap;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::difference::Abelian;
use differential_dataflow::{AsCollection, Data, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Capability, CapabilitySet, Operator};

/// Keeps each record only while the time lies in the record's own validity interval.
///
/// Changes to a collection of `D` in; changes to the collection of those `d` with
/// `lo(d) <= t < hi(d)` out, where `(lo, hi) = validity(d)`.
pub trait TemporalFilter<'scope, D, R> {
    /// Rewrites each update `(d, t, r)` into `(d, max(t, lo), r)` and `(d, max(t, hi), -r)`.
    ///
    /// Nothing is emitted for an update that arrives after `hi` (the record has already
    /// expired) or whose interval is empty (`hi <= lo`). Updates that take effect later than
    /// their arrival time wait in the operator, in time order, and leave it when the input
    /// frontier reaches their time; the operator holds one capability, for the earliest
    /// waiting time. It needs no exchange and works with any number of workers.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use shopdiff_operators::window::TemporalFilter;
    ///
    /// timely::example(|scope| {
    ///     // (name, lo, hi): "a" is valid during [2, 5).
    ///     let (mut input, coll) = scope.new_collection::<(char, u64, u64), isize>();
    ///     coll.temporal_filter(|&(_, lo, hi)| (lo, hi))
    ///         .inspect(|(d, t, r)| println!("{d:?} {t} {r}"));
    ///     input.insert(('a', 2, 5));
    /// });
    /// ```
    fn temporal_filter<F>(self, validity: F) -> VecCollection<'scope, u64, D, R>
    where
        F: Fn(&D) -> (u64, u64) + 'static;
}

/// A trailing window of fixed width over a start time taken from each record.
///
/// Changes to a collection of `D` in; changes to the collection of those `d` with
/// `start(d) <= t < start(d) + width` out. At a tick `T` this is exactly the records with
/// `T - width < start(d) <= T`: the window is closed on the right.
pub trait SlidingWindow<'scope, D, R> {
    /// [`TemporalFilter::temporal_filter`] with validity `(start(d), start(d) + width)`.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use shopdiff_operators::window::SlidingWindow;
    ///
    /// timely::example(|scope| {
    ///     // (key, start tick in ms)
    ///     let (mut input, lines) = scope.new_collection::<(u32, u64), isize>();
    ///     lines.sliding_window(3_000, |&(_, start)| start).map(|(k, _)| k).count();
    ///     input.insert((7, 1_000));
    /// });
    /// ```
    fn sliding_window<F>(self, width: u64, start: F) -> VecCollection<'scope, u64, D, R>
    where
        F: Fn(&D) -> u64 + 'static;
}

impl<'scope, D: Data, R: Abelian + 'static> TemporalFilter<'scope, D, R>
    for VecCollection<'scope, u64, D, R>
{
    fn temporal_filter<F>(self, validity: F) -> VecCollection<'scope, u64, D, R>
    where
        F: Fn(&D) -> (u64, u64) + 'static,
    {
        type Builder<D, R> = CapacityContainerBuilder<Vec<(D, u64, R)>>;
        self.inner
            .unary_frontier::<Builder<D, R>, _, _, _>(Pipeline, "TemporalFilter", |_, _| {
                let gauge = crate::state_size::gauge("TemporalFilter");
                let mut pending = Pending::<D, R>::default();
                move |(input, frontier), output| {
                    let port = output.output_index();
                    input.for_each_stamp(|cap, batches| {
                        let Some(&least) = cap.least() else {
                            // An empty stamp makes no progress claim, so neither do we: both
                            // halves of every update leave at once, under an empty stamp.
                            let none = CapabilitySet::new();
                            let mut session = output.session(&none);
                            for batch in batches {
                                for (d, t, r) in batch.drain(..) {
                                    if let Some((start, end)) = interval(t, validity(&d)) {
                                        session.give((d.clone(), end, negated(&r)));
                                        session.give((d, start, r));
                                    }
                                }
                            }
                            return;
                        };
                        let mut session = output.session(&cap);
                        let mut earliest = u64::MAX;
                        for batch in batches {
                            for (d, t, r) in batch.drain(..) {
                                let Some((start, end)) = interval(t, validity(&d)) else {
                                    continue;
                                };
                                pending.push(end, d.clone(), negated(&r));
                                earliest = earliest.min(end);
                                if start == t {
                                    session.give((d, t, r));
                                } else {
                                    pending.push(start, d, r);
                                    earliest = earliest.min(start);
                                }
                            }
                        }
                        drop(session);
                        if earliest < u64::MAX {
                            // `earliest > t >= least`, so the input capability covers it.
                            debug_assert!(least <= earliest);
                            pending.hold(|| cap.delayed(&earliest, port), earliest);
                        }
                    });
                    // Release what the input frontier has reached: no input can still produce an
                    // update before those times, and downstream has not passed them because we
                    // hold a capability for the earliest waiting time.
                    let reached = frontier.frontier().first().copied();
                    let ready = pending
                        .by_time
                        .keys()
                        .next()
                        .is_some_and(|first| reached.is_none_or(|f| *first <= f));
                    if let (true, Some(cap)) = (ready, pending.cap.as_ref()) {
                        let mut session = output.session(cap);
                        let left = release(&mut pending.by_time, reached, |u| session.give(u));
                        pending.parked -= left;
                    }
                    pending.downgrade();
                    // a parked update's vector slot, plus a tree node per waiting time
                    let slot = std::mem::size_of::<(D, R)>();
                    let node = std::mem::size_of::<(u64, Vec<(D, R)>)>() + 16;
                    let bytes = pending.parked * slot + pending.by_time.len() * node;
                    gauge.set(pending.parked, bytes);
                }
            })
            .as_collection()
    }
}

impl<'scope, D: Data, R: Abelian + 'static> SlidingWindow<'scope, D, R>
    for VecCollection<'scope, u64, D, R>
{
    fn sliding_window<F>(self, width: u64, start: F) -> VecCollection<'scope, u64, D, R>
    where
        F: Fn(&D) -> u64 + 'static,
    {
        self.temporal_filter(move |d| {
            let lo = start(d);
            (lo, lo.saturating_add(width))
        })
    }
}

/// The times at which an update at `t` of a record valid during `[lo, hi)` enters and leaves,
/// or `None` when it would enter and leave at the same time (already expired, or empty).
fn interval(t: u64, (lo, hi): (u64, u64)) -> Option<(u64, u64)> {
    let (start, end) = (t.max(lo), t.max(hi));
    (start < end).then_some((start, end))
}

fn negated<R: Abelian>(r: &R) -> R {
    let mut r = r.clone();
    r.negate();
    r
}

/// Updates waiting for their time, and the one capability that covers them all.
///
/// Invariant: `cap` is `Some` exactly when `by_time` is not empty, at a time no later than
/// the first key of `by_time`.
struct Pending<D, R> {
    by_time: BTreeMap<u64, Vec<(D, R)>>,
    cap: Option<Capability<u64>>,
    /// Updates parked in `by_time`.
    parked: usize,
}

impl<D, R> Default for Pending<D, R> {
    fn default() -> Self {
        Self {
            by_time: BTreeMap::new(),
            cap: None,
            parked: 0,
        }
    }
}

impl<D: Data, R: Abelian + 'static> Pending<D, R> {
    fn push(&mut self, time: u64, d: D, r: R) {
        self.parked += 1;
        self.by_time.entry(time).or_default().push((d, r));
    }

    /// Makes sure a capability no later than `time` is held, minting it with `mint` if needed.
    fn hold(&mut self, mint: impl FnOnce() -> Capability<u64>, time: u64) {
        if self.cap.as_ref().is_none_or(|held| *held.time() > time) {
            self.cap = Some(mint());
        }
    }

    /// Moves the capability to the earliest waiting time, or drops it when nothing waits.
    fn downgrade(&mut self) {
        match self.by_time.keys().next() {
            Some(first) => {
                if let Some(cap) = self.cap.as_mut() {
                    cap.downgrade(first);
                }
            }
            None => self.cap = None,
        }
    }
}

/// Hands out, consolidated, every update at a time not beyond `reached` (all of them when the
/// input is complete, `reached == None`).
/// Returns how many parked updates left.
fn release<D: Data, R: Abelian>(
    by_time: &mut BTreeMap<u64, Vec<(D, R)>>,
    reached: Option<u64>,
    mut give: impl FnMut((D, u64, R)),
) -> usize {
    let mut left = 0;
    while let Some(entry) = by_time.first_entry() {
        if reached.is_some_and(|f| *entry.key() > f) {
            break;
        }
        let (time, mut updates) = entry.remove_entry();
        left += updates.len();
        consolidate(&mut updates);
        for (d, r) in updates {
            give((d, time, r));
        }
    }
    left
}
