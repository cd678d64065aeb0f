//! Random change histories through the window operators, checked against a brute force at every
//! tick (and at every time where anything changes) on 1, 2 and 4 workers.
//!
//! A record is `(key, (value, lo, len))`. `temporal_filter` keeps it during `[lo, lo + len)`;
//! the aggregates use a window of width `W` over `lo`, so at `T` they see the records with
//! `T - W < lo <= T`. Histories mix inserts, retractions of records inserted earlier, late
//! records, records already expired on arrival, records that start in the future, duplicates
//! (multiplicity 2), and empty intervals (`len == 0`). Each worker feeds every `peers`-th update,
//! so an insert and its retraction often enter on different workers. Inputs advance in coarse
//! steps while updates keep their own times (`update_at`), as in shopdiff's replay.
//!
//! Outputs are exchanged to worker 0 and captured there. Worker 0 checks twice: each time the
//! probe passes the input time `F`, every time `< F` (what a query may read at that point), and
//! once at the end, every time. An inspector also checks that no update arrives for a time the
//! frontier has already passed.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::input::Input;
use differential_dataflow::{ExchangeData, VecCollection};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shopdiff_operators::window::{TemporalFilter, WindowAggregates};
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::{Exchange, Inspect, Probe};

const TICK: u64 = 1_000;

/// `(key, (value, lo, len))`.
type Rec = (u32, (i64, u64, u64));
type Row = (u32, i64);
type Updates<D> = Rc<RefCell<Vec<(D, u64, isize)>>>;

/// One input update.
#[derive(Clone, Debug)]
struct Op {
    rec: Rec,
    time: u64,
    diff: isize,
}

/// One abstract step of a history, interpreted by [`build`].
#[derive(Clone, Debug)]
struct Step {
    /// Ticks to advance the clock by.
    dt: u64,
    /// Extra milliseconds, so that update times need not fall on ticks.
    jitter: u64,
    /// 0..=4 insert a new record, 5..=7 retract a live one, 8..=9 insert a live one again.
    kind: u8,
    key: u32,
    value: i64,
    /// Start relative to the update time, in ticks: negative is late (or expired), positive
    /// starts in the future.
    lo_off: i64,
    /// Interval length for `temporal_filter`, in ticks (0 = empty).
    len: u64,
    pick: usize,
}

/// The shape of one run.
#[derive(Clone, Debug)]
struct Params {
    /// Window width of the aggregates.
    width: u64,
    /// Inputs advance to multiples of `advance` ticks.
    advance: u64,
    /// Whether workers wait for the probe after each advance.
    sync: bool,
}

fn ceil_tick(ms: u64) -> u64 {
    ms.div_ceil(TICK) * TICK
}

/// Turns abstract steps into a valid history: retractions only remove live records.
fn build(steps: &[Step]) -> Vec<Op> {
    let (mut time, mut ops) = (0u64, Vec::new());
    let mut live: BTreeMap<Rec, isize> = BTreeMap::new();
    for s in steps {
        time += s.dt * TICK + s.jitter;
        let alive: Vec<Rec> = live
            .iter()
            .filter(|(_, m)| **m > 0)
            .map(|(r, _)| *r)
            .collect();
        let (rec, diff) = match s.kind {
            5..=7 if !alive.is_empty() => (alive[s.pick % alive.len()], -1),
            8..=9 if !alive.is_empty() => (alive[s.pick % alive.len()], 1),
            _ => {
                let lo = ceil_tick(time.saturating_add_signed(s.lo_off * TICK as i64));
                ((s.key, (s.value, lo, s.len * TICK)), 1)
            }
        };
        *live.entry(rec).or_default() += diff;
        ops.push(Op { rec, time, diff });
    }
    ops
}

/// What every output should hold at one time.
#[derive(Debug, PartialEq)]
struct Views {
    filtered: BTreeMap<Rec, isize>,
    count: BTreeMap<Row, isize>,
    sum: BTreeMap<Row, isize>,
    distinct: BTreeMap<Row, isize>,
    max: BTreeMap<Row, isize>,
}

/// The brute force: records present at `t`, then per key over those with `t - width < lo <= t`.
fn expected(present: &BTreeMap<Rec, isize>, t: u64, width: u64) -> Views {
    let filtered = present
        .iter()
        .filter(|((_, (_, lo, len)), _)| *lo <= t && t < lo + len)
        .map(|(r, m)| (*r, *m))
        .collect();
    let mut per_key: BTreeMap<u32, KeyAgg> = BTreeMap::new();
    for ((key, (value, lo, _)), m) in present {
        // The contract's window, closed on the right: T - W < lo <= T.
        if (t as i128) - (width as i128) < *lo as i128 && *lo <= t {
            let agg = per_key.entry(*key).or_default();
            agg.count += *m as i64;
            agg.sum += *m as i64 * value;
            agg.values.insert(*value);
        }
    }
    let rows = |f: fn(&KeyAgg) -> i64| {
        per_key
            .iter()
            .map(|(k, agg)| ((*k, f(agg)), 1))
            .collect::<BTreeMap<Row, isize>>()
    };
    Views {
        filtered,
        count: rows(|a| a.count),
        sum: rows(|a| a.sum),
        distinct: rows(|a| a.values.len() as i64),
        max: rows(|a| *a.values.last().unwrap()),
    }
}

/// The brute force's aggregates of one key.
#[derive(Default)]
struct KeyAgg {
    count: i64,
    sum: i64,
    values: BTreeSet<i64>,
}

/// Everything worker 0 captured.
#[derive(Default)]
struct Captured {
    filtered: Updates<Rec>,
    count: Updates<Row>,
    sum: Updates<Row>,
    distinct: Updates<Row>,
    max: Updates<Row>,
    errors: Rc<RefCell<Vec<String>>>,
}

/// Running accumulation of one captured output, read in time order.
struct Sweep<D> {
    updates: Vec<(D, u64, isize)>,
    next: usize,
    state: BTreeMap<D, isize>,
}

impl<D: Ord + Clone> Sweep<D> {
    fn new(updates: &Updates<D>) -> Self {
        let mut updates = updates.borrow().clone();
        updates.sort_by_key(|u| u.1);
        Self {
            updates,
            next: 0,
            state: BTreeMap::new(),
        }
    }
    fn at(&mut self, t: u64) -> &BTreeMap<D, isize> {
        while let Some((d, _, r)) = self.updates.get(self.next).filter(|u| u.1 <= t) {
            let m = self.state.entry(d.clone()).or_default();
            *m += r;
            if *m == 0 {
                self.state.remove(d);
            }
            self.next += 1;
        }
        &self.state
    }
}

/// Compares the outputs with the brute force at every check point in `[from, upto)`.
fn check(ops: &[Op], p: &Params, cap: &Captured, from: u64, upto: u64) -> Result<(), String> {
    if let Some(e) = cap.errors.borrow().first() {
        return Err(e.clone());
    }
    let last = ops
        .iter()
        .map(|o| o.time.max(o.rec.1 .1))
        .max()
        .unwrap_or(0);
    let horizon = last + p.width.max(6 * TICK) + TICK;
    let mut points: BTreeSet<u64> = (0..=horizon / TICK).map(|i| i * TICK).collect();
    for Op {
        rec: (_, (_, lo, len)),
        time,
        ..
    } in ops
    {
        points.extend([*time, *lo, lo + len, lo + p.width]);
    }
    let mut sorted = ops.to_vec();
    sorted.sort_by_key(|o| o.time);
    let (mut next, mut present) = (0, BTreeMap::new());
    let (mut filtered, mut count) = (Sweep::new(&cap.filtered), Sweep::new(&cap.count));
    let (mut sum, mut distinct) = (Sweep::new(&cap.sum), Sweep::new(&cap.distinct));
    let mut max = Sweep::new(&cap.max);
    for t in points.into_iter().filter(|t| *t < upto) {
        while let Some(op) = sorted.get(next).filter(|o| o.time <= t) {
            *present.entry(op.rec).or_insert(0isize) += op.diff;
            next += 1;
        }
        present.retain(|_, m| *m != 0);
        if t < from {
            continue;
        }
        let want = expected(&present, t, p.width);
        let got = Views {
            filtered: filtered.at(t).clone(),
            count: count.at(t).clone(),
            sum: sum.at(t).clone(),
            distinct: distinct.at(t).clone(),
            max: max.at(t).clone(),
        };
        if got != want {
            return Err(format!("at time {t}:\n got {got:?}\nwant {want:?}"));
        }
    }
    Ok(())
}

/// Exchanges `coll` to worker 0, records its updates there, and checks they respect progress.
fn sink<D: ExchangeData>(
    coll: VecCollection<'_, u64, D, isize>,
    probe: &Handle<u64>,
    into: &Updates<D>,
    errors: &Rc<RefCell<Vec<String>>>,
) {
    let (into, errors) = (Rc::clone(into), Rc::clone(errors));
    let mut frontier = 0u64;
    coll.inner
        .exchange(|_| 0)
        .inspect_core(move |event| match event {
            Err(f) => frontier = f.first().copied().unwrap_or(u64::MAX),
            Ok((_, data)) => {
                for (d, t, r) in data.iter() {
                    if *t < frontier {
                        let e = format!("{d:?} at {t} arrived after the frontier {frontier}");
                        errors.borrow_mut().push(e);
                    }
                    into.borrow_mut().push((d.clone(), *t, *r));
                }
            }
        })
        .probe_with(probe);
}

/// Runs the history on `peers` workers, checking on worker 0.
fn run(ops: &[Op], p: &Params, peers: usize) -> Result<(), String> {
    let (ops, p) = (Arc::new(ops.to_vec()), p.clone());
    let guards = timely::execute(timely::Config::process(peers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let probe = Handle::new();
        let cap = Captured::default();
        let width = p.width;
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, recs) = scope.new_collection::<Rec, isize>();
            let start = |&(_, (_, lo, _)): &Rec| lo;
            let filtered = recs
                .clone()
                .temporal_filter(|&(_, (_, lo, len))| (lo, lo + len));
            sink(filtered, &probe, &cap.filtered, &cap.errors);
            let count = recs.clone().window_count(width, start);
            sink(count, &probe, &cap.count, &cap.errors);
            let sum = recs.clone().window_sum(width, start, |v| v.0);
            sink(sum, &probe, &cap.sum, &cap.errors);
            let distinct = recs.clone().window_distinct_count(width, start, |v| v.0);
            sink(distinct, &probe, &cap.distinct, &cap.errors);
            let max = recs.window_max(width, start, |v| v.0);
            sink(max, &probe, &cap.max, &cap.errors);
            input
        });
        let step = p.advance * TICK;
        let mut checked = 0;
        for (i, op) in ops.iter().enumerate() {
            let boundary = op.time / step * step;
            if boundary > *input.time() {
                input.advance_to(boundary);
                input.flush();
                if p.sync {
                    worker.step_while(|| probe.less_than(input.time()));
                    if index == 0 {
                        check(&ops, &p, &cap, checked, boundary)?;
                        checked = boundary;
                    }
                }
            }
            if i % peers == index {
                input.update_at(op.rec, op.time, op.diff);
            }
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
        if index == 0 {
            check(&ops, &p, &cap, checked, u64::MAX)?;
        }
        Ok::<(), String>(())
    })
    .map_err(|e| e.to_string())?;
    for result in guards.join() {
        result.map_err(|e| format!("worker panicked: {e}"))??;
    }
    Ok(())
}

fn run_all(ops: &[Op], p: &Params) -> Result<(), String> {
    for peers in [1, 2, 4] {
        run(ops, p, peers).map_err(|e| format!("{peers} workers, {p:?}: {e}"))?;
    }
    Ok(())
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let jitter = prop_oneof![4 => Just(0u64), 1 => Just(1), 1 => Just(499), 1 => Just(999)];
    (
        0..3u64,
        jitter,
        0..10u8,
        0..3u32,
        -3..6i64,
        -6..4i64,
        0..5u64,
        any::<usize>(),
    )
        .prop_map(|(dt, jitter, kind, key, value, lo_off, len, pick)| Step {
            dt,
            jitter,
            kind,
            key,
            value,
            lo_off,
            len,
            pick,
        })
}

fn params_strategy() -> impl Strategy<Value = Params> {
    (1..5u64, 1..4u64, any::<bool>()).prop_map(|(w, advance, sync)| Params {
        width: w * TICK,
        advance,
        sync,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn windows_match_brute_force(
        steps in prop::collection::vec(step_strategy(), 1..40),
        params in params_strategy(),
    ) {
        let ops = build(&steps);
        if let Err(e) = run_all(&ops, &params) {
            prop_assert!(false, "{}\nops: {:?}", e, ops);
        }
    }
}

/// Longer seeded histories: more records per key, more overlap between windows.
#[test]
fn seeded_random_histories_match_brute_force() {
    for seed in 0..12u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let steps: Vec<Step> = (0..rng.random_range(60..160))
            .map(|_| Step {
                dt: if rng.random_bool(0.6) {
                    0
                } else {
                    rng.random_range(1..3)
                },
                jitter: if rng.random_bool(0.8) {
                    0
                } else {
                    rng.random_range(0..TICK)
                },
                kind: rng.random_range(0..10),
                key: rng.random_range(0..4),
                value: rng.random_range(-5..20),
                lo_off: rng.random_range(-8..4),
                len: rng.random_range(0..6),
                pick: rng.random::<u32>() as usize,
            })
            .collect();
        let params = Params {
            width: rng.random_range(1..8) * TICK,
            advance: rng.random_range(1..4),
            sync: seed % 3 != 0,
        };
        let ops = build(&steps);
        if let Err(e) = run_all(&ops, &params) {
            panic!("seed {seed}: {e}");
        }
    }
}

/// The brute force itself must see the cases the histories are meant to contain.
#[test]
fn histories_contain_every_kind_of_update() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let steps: Vec<Step> = (0..400)
        .map(|_| Step {
            dt: rng.random_range(0..3),
            jitter: 0,
            kind: rng.random_range(0..10),
            key: rng.random_range(0..3),
            value: rng.random_range(-3..6),
            lo_off: rng.random_range(-6..4),
            len: rng.random_range(0..5),
            pick: rng.random::<u32>() as usize,
        })
        .collect();
    let ops = build(&steps);
    let width = 3 * TICK;
    let late = ops
        .iter()
        .filter(|o| o.diff > 0 && o.rec.1 .1 < o.time && o.time < o.rec.1 .1 + width);
    let expired = ops
        .iter()
        .filter(|o| o.diff > 0 && o.rec.1 .1 + width <= o.time);
    let future = ops.iter().filter(|o| o.rec.1 .1 > o.time);
    let retracted = ops.iter().filter(|o| o.diff < 0);
    let mut mult: BTreeMap<Rec, isize> = BTreeMap::new();
    let mut doubled = 0;
    for o in &ops {
        let m = mult.entry(o.rec).or_default();
        *m += o.diff;
        assert!(*m >= 0, "a retraction of a record that is not present");
        doubled += usize::from(*m >= 2);
    }
    for (name, n) in [
        ("late", late.count()),
        ("expired", expired.count()),
        ("future", future.count()),
        ("retracted", retracted.count()),
        ("doubled", doubled),
    ] {
        assert!(n > 5, "only {n} {name} updates");
    }
}
