//! The `ntile` operator in timely dataflows with 1, 2 and 4 workers, against the brute-force
//! oracle tick by tick: inputs fed from worker 0 or spread over all workers, times out of
//! order within an advance, one time split over several flushes, cancelling noise updates.

#[allow(dead_code)]
#[path = "rank_oracle.rs"]
mod oracle;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::ExchangeData;
use oracle::{random_ticks, Change, Replay, Tick};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shopdiff_operators::rank::Ntile;
use timely::dataflow::operators::probe::Handle;
use timely::worker::Worker;

/// Captured output of one ranking: `((key, bucket), time, diff)` as emitted.
type Out<K> = Vec<((K, u64), u64, isize)>;
/// The oracle's ticks, each with its time.
type Expected<K, M> = Vec<(u64, Tick<K, M>)>;
/// An output change `((key, bucket), diff)`.
type Row<K> = ((K, u64), isize);
/// Input ticks: a time and its updates to `(key, metric)`.
type Ticks<K, M> = Vec<(u64, Vec<((K, M), isize)>)>;

/// How the workers feed the input.
#[derive(Clone, Copy, Debug)]
struct Plan {
    workers: usize,
    /// Spread updates over all workers (else worker 0 feeds everything).
    spread: bool,
    /// Ticks per `advance_to`: their updates are sent shuffled, so times arrive out of order.
    round: usize,
    /// At most this many flushes (with a `step`) per round, so one time comes in pieces.
    chunks: usize,
    seed: u64,
}

/// Runs one dataflow with one `ntile(k, route)` per ranking over the same input.
fn run<K: ExchangeData + Sync, M: ExchangeData + Sync>(
    plan: Plan,
    rankings: &[(u64, u64)],
    ticks: Ticks<K, M>,
) -> Vec<Out<K>> {
    let ticks = Arc::new(ticks);
    let captured: Vec<Arc<Mutex<Out<K>>>> = rankings.iter().map(|_| Arc::default()).collect();
    let (sinks, rankings) = (captured.clone(), rankings.to_vec());
    let poison = Arc::new(AtomicBool::new(false));
    let guards = timely::execute(timely::Config::process(plan.workers), move |worker| {
        let poison = Poison(Arc::clone(&poison));
        let (index, peers) = (worker.index(), worker.peers() as u64);
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, metrics) = scope.new_collection::<(K, M), isize>();
            let probe = Handle::new();
            for (&(k, route), sink) in rankings.iter().zip(&sinks) {
                let sink = Arc::clone(sink);
                metrics
                    .clone()
                    .ntile(k, route)
                    .inspect(move |update| {
                        // All of a ranking's output leaves from its owner.
                        assert_eq!(index as u64, route % peers, "output of ranking {route}");
                        sink.lock().unwrap().push(update.clone());
                    })
                    .probe_with(&probe);
            }
            (input, probe)
        });
        feed(worker, &mut input, &probe, &ticks, plan, &poison);
        drop(input);
        while worker.step_or_park(Some(Duration::from_millis(5))) {
            poison.check();
        }
    })
    .expect("timely starts");
    // Belt and braces for `Poison`: never wait forever.
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(guards.join()));
    let results = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("workers finish in 120 s");
    for result in results {
        result.expect("worker finishes");
    }
    captured
        .iter()
        .map(|out| out.lock().unwrap().clone())
        .collect()
}

/// Set when a worker panics, so that the others (which would wait for it forever) panic too.
struct Poison(Arc<AtomicBool>);

impl Poison {
    fn check(&self) {
        assert!(!self.0.load(Ordering::SeqCst), "another worker panicked");
    }
}

impl Drop for Poison {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

fn feed<K: ExchangeData, M: ExchangeData>(
    worker: &mut Worker,
    input: &mut InputSession<u64, (K, M), isize>,
    probe: &Handle<u64>,
    ticks: &Ticks<K, M>,
    plan: Plan,
    poison: &Poison,
) {
    let (index, peers) = (worker.index(), worker.peers());
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed.wrapping_add(index as u64));
    let mut serial = 0;
    let end = ticks.last().map_or(0, |(time, _)| time + 1);
    for (round, group) in ticks.chunks(plan.round).enumerate() {
        let mut updates = Vec::new();
        for (time, tick) in group {
            for (data, diff) in tick {
                if (plan.spread && serial % peers == index) || (!plan.spread && index == 0) {
                    updates.push((data.clone(), *time, *diff));
                }
                serial += 1;
            }
        }
        updates.shuffle(&mut rng);
        let pieces = rng.random_range(1..=plan.chunks);
        for piece in updates.chunks(updates.len().div_ceil(pieces).max(1)) {
            for (data, time, diff) in piece {
                input.update_at(data.clone(), *time, *diff);
            }
            input.flush();
            worker.step();
            poison.check();
        }
        let next = ticks
            .get((round + 1) * plan.round)
            .map_or(end, |(time, _)| *time);
        input.advance_to(next);
        input.flush();
        if rng.random_ratio(1, 2) {
            while probe.less_than(input.time()) {
                worker.step();
                poison.check();
            }
        }
    }
}

/// Turns changes into timed ticks (irregular gaps) with cancelling noise, and their oracle.
fn prepare<R: Rng>(
    rng: &mut R,
    k: u64,
    changes: &[Vec<Change<u64, u64>>],
) -> (Ticks<u64, u64>, Expected<u64, u64>) {
    let mut replay = Replay::new(k);
    let (mut ticks, mut expected) = (Vec::new(), Vec::new());
    let mut time = rng.random_range(0..3u64);
    for tick_changes in changes {
        let tick = replay.tick(tick_changes);
        let mut updates = tick.updates.clone();
        if rng.random_ratio(1, 4) {
            let noise = (rng.random_range(0..20), rng.random_range(0..4));
            updates.push((noise, 1));
            updates.push((noise, -1));
        }
        ticks.push((time, updates));
        expected.push((time, tick));
        time += [1, 7, 1000, 1500][rng.random_range(0..4)];
    }
    (ticks, expected)
}

/// Compares a captured change stream with the oracle at every tick.
fn check<K: Ord + Clone + Debug, M>(
    k: u64,
    captured: &Out<K>,
    expected: &Expected<K, M>,
    label: &str,
) {
    let mut rows = BTreeSet::new();
    let mut by_time: BTreeMap<u64, Vec<Row<K>>> = BTreeMap::new();
    for (row, time, diff) in captured {
        assert!(
            *diff == 1 || *diff == -1,
            "{label}: diff {diff} for {row:?} at {time}"
        );
        assert!(
            rows.insert((row.clone(), *time)),
            "{label}: {row:?} twice at {time}"
        );
        by_time.entry(*time).or_default().push((row.clone(), *diff));
    }
    let mut accumulated: BTreeMap<K, u64> = BTreeMap::new();
    for (time, tick) in expected {
        let mut got = by_time.remove(time).unwrap_or_default();
        got.sort();
        assert_eq!(got, tick.expected, "{label}: changes at time {time}");
        for ((key, bucket), _) in got.iter().filter(|(_, diff)| *diff < 0) {
            assert_eq!(
                accumulated.remove(key),
                Some(*bucket),
                "{label}: retraction at {time}"
            );
        }
        for ((key, bucket), _) in got.into_iter().filter(|(_, diff)| *diff > 0) {
            assert!(
                accumulated.insert(key, bucket).is_none(),
                "{label}: two buckets at {time}"
            );
        }
        assert_eq!(accumulated, tick.buckets, "{label}: buckets at time {time}");
        if tick.changed_keys == 1 {
            let keys: BTreeSet<&K> = tick.expected.iter().map(|((key, _), _)| key).collect();
            assert!(
                keys.len() <= k as usize,
                "{label}: one change moved {} keys",
                keys.len()
            );
        }
    }
    assert!(
        by_time.is_empty(),
        "{label}: output at times without input: {:?}",
        by_time.keys()
    );
}

fn run_and_check(plan: Plan, k: u64, route: u64, changes: &[Vec<Change<u64, u64>>]) {
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let (ticks, expected) = prepare(&mut rng, k, changes);
    let out = run(plan, &[(k, route)], ticks);
    check(
        k,
        &out[0],
        &expected,
        &format!("{plan:?} k {k} route {route}"),
    );
}

#[test]
fn seeded_histories_match_oracle_on_1_2_4_workers() {
    for workers in [1, 2, 4] {
        for seed in 0..6u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(100 + seed);
            let domain = [2, 3, 50][(seed % 3) as usize];
            let changes = random_ticks(&mut rng, &[25, 0, 40, 3, 0, 15], 12, 60, domain);
            let plan = Plan {
                workers,
                spread: seed % 2 == 1,
                round: 1 + seed as usize % 4,
                chunks: 3,
                seed,
            };
            run_and_check(plan, 5, seed, &changes);
        }
    }
}

#[test]
fn several_rankings_on_string_keys_share_one_dataflow() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let changes = random_ticks(&mut rng, &[30, 0, 20], 15, 40, 3);
    let names = |key: u64| {
        if key.is_multiple_of(2) {
            format!("U{key}")
        } else {
            format!("u{key:03}")
        }
    };
    let changes: Vec<Vec<Change<String, i64>>> = changes
        .iter()
        .map(|tick| {
            tick.iter()
                .map(|(key, m)| (names(*key), m.map(|m| m as i64 - 1)))
                .collect()
        })
        .collect();
    let rankings = [(5, 0), (3, 1), (10, 3)];
    let mut replays: Vec<Replay<String, i64>> =
        rankings.iter().map(|&(k, _)| Replay::new(k)).collect();
    let mut expected: Vec<Expected<String, i64>> = rankings.iter().map(|_| Vec::new()).collect();
    let mut ticks = Vec::new();
    for (i, tick_changes) in changes.iter().enumerate() {
        let time = 1000 * i as u64;
        for (replay, expected) in replays.iter_mut().zip(&mut expected) {
            expected.push((time, replay.tick(tick_changes)));
        }
        ticks.push((time, expected[0].last().unwrap().1.updates.clone()));
    }
    for workers in [1, 2, 4] {
        let plan = Plan {
            workers,
            spread: true,
            round: 3,
            chunks: 2,
            seed: 5,
        };
        let outs = run(plan, &rankings, ticks.clone());
        for ((&(k, route), out), expected) in rankings.iter().zip(&outs).zip(&expected) {
            check(k, out, expected, &format!("{plan:?} k {k} route {route}"));
        }
    }
}

#[test]
fn no_input_means_no_output() {
    let plan = Plan {
        workers: 2,
        spread: true,
        round: 1,
        chunks: 1,
        seed: 0,
    };
    let ticks: Ticks<u64, u64> = vec![
        (0, vec![]),
        (5, vec![((1, 1), 1), ((1, 1), -1)]),
        (9, vec![]),
    ];
    assert!(run(plan, &[(5, 1)], ticks)[0].is_empty());
}

fn changes_strategy() -> impl Strategy<Value = Vec<Vec<Change<u64, u64>>>> {
    let change = (0u64..12, prop::option::weighted(0.75, 0u64..4));
    prop::collection::vec(prop::collection::vec(change, 0..10), 1..25)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn proptest_histories_match_oracle(
        k in 1u64..7,
        workers in prop::sample::select(vec![1usize, 2, 4]),
        spread in any::<bool>(),
        round in 1usize..4,
        chunks in 1usize..4,
        seed in any::<u64>(),
        route in 0u64..8,
        changes in changes_strategy(),
    ) {
        run_and_check(Plan { workers, spread, round, chunks, seed }, k, route, &changes);
    }
}
