//! The tech-notes pitfall (a delayed negation is not a window once records can be retracted),
//! and hand-written cases of the temporal filter with their exact output.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::input::Input;
use differential_dataflow::VecCollection;
use shopdiff_operators::window::{TemporalFilter, WindowAggregates};

type Update<D> = (D, u64, isize);

/// Feeds `updates` (each at its own time) to `logic` on one worker and returns what came out.
fn run<D, O, L>(updates: Vec<Update<D>>, logic: L) -> Vec<Update<O>>
where
    D: differential_dataflow::ExchangeData + Sync,
    O: differential_dataflow::ExchangeData,
    L: for<'s> Fn(VecCollection<'s, u64, D, isize>) -> VecCollection<'s, u64, O, isize>
        + Send
        + Sync
        + 'static,
{
    let out = timely::execute(timely::Config::thread(), move |worker| {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&seen);
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, coll) = scope.new_collection::<D, isize>();
            logic(coll).inspect(move |u| sink.borrow_mut().push(u.clone()));
            input
        });
        for (d, t, r) in updates.clone() {
            input.update_at(d, t, r);
        }
        input.close();
        while worker.step_or_park(None) {}
        let seen = seen.borrow().clone();
        seen
    })
    .unwrap();
    out.join().pop().unwrap().unwrap()
}

/// The collection at time `t`: all updates at times `<= t`, summed.
fn at<D: Ord + Clone>(updates: &[Update<D>], t: u64) -> BTreeMap<D, isize> {
    let mut acc = BTreeMap::new();
    for (d, _, r) in updates.iter().filter(|u| u.1 <= t) {
        *acc.entry(d.clone()).or_insert(0) += r;
    }
    acc.retain(|_, r| *r != 0);
    acc
}

/// `('a', start 0)` inserted at 0 and removed at 4 s, with a 10 s window.
fn inserted_then_removed() -> Vec<Update<(char, u64)>> {
    vec![(('a', 0), 0, 1), (('a', 0), 4_000, -1)]
}

const WIDTH: u64 = 10_000;

#[test]
fn delayed_negation_gives_a_negative_count_under_retraction() {
    let naive = run(inserted_then_removed(), |lines| {
        let expiry = lines.clone().delay(|t| t + WIDTH).negate();
        lines.concat(expiry).map(|(k, _)| k).count()
    });
    // The pitfall, reproduced: between 10 s and 14 s the "window" holds 'a' -1 times.
    assert_eq!(at(&naive, 10_000), BTreeMap::from([(('a', -1), 1)]));
    assert_eq!(at(&naive, 13_999), BTreeMap::from([(('a', -1), 1)]));
    assert!(at(&naive, 14_000).is_empty());
}

#[test]
fn temporal_filter_never_counts_negative_under_retraction() {
    let ours = run(inserted_then_removed(), |lines| {
        lines.window_count(WIDTH, |&(_, start)| start)
    });
    for t in (0..20_000).step_by(500) {
        let want = if t < 4_000 {
            BTreeMap::from([(('a', 1), 1)])
        } else {
            BTreeMap::new()
        };
        assert_eq!(at(&ours, t), want, "at {t}");
    }
    assert!(ours.iter().all(|((_, count), _, _)| *count > 0));
}

#[test]
fn late_record_leaves_width_after_its_start_not_its_arrival() {
    // Starts at 0, arrives at 4 s: the contract keeps it while T - 10 s < 0 <= T, so until 10 s.
    let late = vec![(('a', 0u64), 4_000u64, 1isize)];
    let naive = run(late.clone(), |lines| {
        let expiry = lines.clone().delay(|t| t + WIDTH).negate();
        lines.concat(expiry).map(|(k, _)| k).count()
    });
    assert_eq!(
        at(&naive, 12_000),
        BTreeMap::from([(('a', 1), 1)]),
        "naive keeps it too long"
    );
    let ours = run(late, |lines| lines.window_count(WIDTH, |&(_, start)| start));
    assert!(at(&ours, 3_999).is_empty());
    assert_eq!(at(&ours, 4_000), BTreeMap::from([(('a', 1), 1)]));
    assert_eq!(at(&ours, 9_999), BTreeMap::from([(('a', 1), 1)]));
    assert!(at(&ours, 10_000).is_empty());
}

/// `(name, lo, hi)` records, filtered on `[lo, hi)`.
fn filtered(updates: Vec<Update<(char, u64, u64)>>) -> Vec<Update<(char, u64, u64)>> {
    let mut out = run(updates, |c| c.temporal_filter(|&(_, lo, hi)| (lo, hi)));
    out.sort_by_key(|u| (u.1, u.0));
    out
}

#[test]
fn temporal_filter_rewrites_each_update_exactly() {
    let a = ('a', 2_000, 5_000);
    // Arrives before its start: enters at lo, leaves at hi.
    assert_eq!(
        filtered(vec![(a, 0, 1)]),
        vec![(a, 2_000, 1), (a, 5_000, -1)]
    );
    // Late: enters on arrival, still leaves at hi.
    assert_eq!(
        filtered(vec![(a, 3_000, 1)]),
        vec![(a, 3_000, 1), (a, 5_000, -1)]
    );
    // Already expired on arrival, or an empty interval: nothing at all.
    assert_eq!(filtered(vec![(a, 5_000, 1), (a, 9_000, 2)]), vec![]);
    let empty = ('e', 3_000, 3_000);
    let backwards = ('b', 3_000, 1_000);
    assert_eq!(filtered(vec![(empty, 0, 1), (backwards, 0, 1)]), vec![]);
    // Multiplicity 2 enters and leaves as 2.
    assert_eq!(
        filtered(vec![(a, 0, 2)]),
        vec![(a, 2_000, 2), (a, 5_000, -2)]
    );
    // Retracted inside the window: the insert's and the retraction's removals at hi cancel
    // inside the operator, so nothing is sent at 5 s.
    assert_eq!(
        filtered(vec![(a, 0, 1), (a, 3_000, -1)]),
        vec![(a, 2_000, 1), (a, 3_000, -1)]
    );
    // Retracted before it started: never visible.
    assert_eq!(filtered(vec![(a, 0, 1), (a, 1_000, -1)]), vec![]);
}
