//! `NtileState` (the ranking without timely) against the brute-force oracle, tick by tick.

#[allow(dead_code)]
#[path = "rank_oracle.rs"]
mod oracle;

use oracle::{random_ticks, Change, Replay, Tick};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use shopdiff_operators::rank::{bucket_of_rank, NtileState, RankError, StepStats};

/// Applies one tick to the state and checks it against the oracle's tick.
fn check_tick<K, M>(state: &mut NtileState<K, M>, tick: &Tick<K, M>, label: &str) -> StepStats
where
    K: Ord + Clone + std::fmt::Debug,
    M: Ord + Clone + std::fmt::Debug,
{
    let k = state.buckets() as usize;
    let mut updates: Vec<((M, K), isize)> = tick
        .updates
        .iter()
        .map(|((key, m), r)| ((m.clone(), key.clone()), *r))
        .collect();
    let mut out = Vec::new();
    let stats = state
        .apply(&mut updates, &mut out)
        .expect("valid set updates");
    assert_eq!(out, tick.expected, "{label}: output changes");
    assert!(
        out.iter().all(|(_, r)| *r == 1 || *r == -1),
        "{label}: diffs are +-1"
    );
    assert_eq!(stats.emitted, out.len(), "{label}: emitted count");
    let touched = stats.inserted + stats.removed;
    assert!(
        stats.walk_steps <= (k - 1) * (2 * touched + 1),
        "{label}: {} walk steps for {touched} updates",
        stats.walk_steps
    );
    if tick.changed_keys == 1 {
        let mut keys: Vec<&K> = out.iter().map(|((key, _), _)| key).collect();
        keys.dedup();
        assert!(
            keys.len() <= k,
            "{label}: one key change moved {} keys",
            keys.len()
        );
    }
    assert_eq!(state.len(), tick.buckets.len(), "{label}: size");
    stats
}

/// Runs ticks through a fresh state, also checking `bucket` for every key now and then.
fn run_ticks(k: u64, ticks: &[Vec<Change<u64, u64>>], label: &str) {
    let mut replay = Replay::new(k);
    let mut state = NtileState::new(k);
    for (i, changes) in ticks.iter().enumerate() {
        let tick = replay.tick(changes);
        check_tick(&mut state, &tick, &format!("{label} tick {i}"));
        if i % 7 == 0 {
            for (key, bucket) in &tick.buckets {
                let metric = *replay.get(key).unwrap();
                assert_eq!(
                    state.bucket(&(metric, *key)),
                    Some(*bucket),
                    "{label} key {key}"
                );
            }
        }
    }
}

#[test]
fn bucket_of_rank_is_exact() {
    assert_eq!(bucket_of_rank(0, 1, 5), 1);
    assert_eq!(
        (0..2).map(|r| bucket_of_rank(r, 2, 5)).collect::<Vec<_>>(),
        [1, 3]
    );
    assert_eq!(
        (0..10)
            .map(|r| bucket_of_rank(r, 10, 5))
            .collect::<Vec<_>>(),
        [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    );
    assert_eq!(bucket_of_rank(u64::MAX - 1, u64::MAX, u64::MAX), u64::MAX);
    assert_eq!(bucket_of_rank(u64::MAX - 1, u64::MAX, 5), 5);
    assert_eq!(bucket_of_rank(u64::MAX / 5 - 1, u64::MAX, 5), 1);
    assert_eq!(bucket_of_rank(3, 7, 1), 1);
}

#[test]
fn seeded_random_histories_match_oracle() {
    for seed in 0..40u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let k = 1 + seed % 9;
        let domain = [2, 3, 5, 1000][(seed % 4) as usize];
        let ticks = random_ticks(&mut rng, &[30, 60, 0, 5, 0, 40], 25, 80, domain);
        run_ticks(k, &ticks, &format!("seed {seed} k {k} domain {domain}"));
    }
}

#[test]
fn single_key_changes_emit_at_most_k_keys() {
    let k = 5;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut replay = Replay::new(k);
    let mut state = NtileState::new(k);
    let load: Vec<Change<u64, u64>> = (0..500)
        .map(|key| (key, Some(rand::Rng::random_range(&mut rng, 0..1_000))))
        .collect();
    check_tick(&mut state, &replay.tick(&load), "load");
    let mut total_emitted = 0;
    for i in 0..2_000u64 {
        let key = rand::Rng::random_range(&mut rng, 0..600);
        let change = match i % 5 {
            0 => (key, None),
            _ => (key, Some(rand::Rng::random_range(&mut rng, 0..1_000))),
        };
        let tick = replay.tick(&[change]);
        total_emitted += check_tick(&mut state, &tick, &format!("change {i}")).emitted;
    }
    // A change moves at most k keys (2k rows); on average far fewer.
    assert!(total_emitted <= 2_000 * 2 * k as usize);
}

#[test]
fn string_keys_break_ties_by_byte_order() {
    let mut replay = Replay::<String, u8>::new(5);
    let mut state = NtileState::new(5);
    let names = ["U10", "U9", "u1", "U1", "Ü", "U", ""];
    let load: Vec<Change<String, u8>> = names.iter().map(|n| (n.to_string(), Some(1))).collect();
    check_tick(&mut state, &replay.tick(&load), "load");
    let tick = replay.tick(&[("U9".to_string(), Some(0)), ("".to_string(), None)]);
    check_tick(&mut state, &tick, "move");
    let tick = replay.tick(&[("U10".to_string(), Some(1)), ("V".to_string(), Some(1))]);
    check_tick(&mut state, &tick, "insert");
}

#[test]
fn invalid_updates_are_rejected_without_change() {
    let mut state = NtileState::<u64, u64>::new(3);
    let mut out = Vec::new();
    state
        .apply(&mut vec![((5, 1), 1), ((6, 2), 1)], &mut out)
        .unwrap();
    let before = out.clone();
    out.clear();
    let err = state
        .apply(&mut vec![((5, 1), 1), ((9, 9), 1)], &mut out)
        .unwrap_err();
    assert!(matches!(err, RankError::Duplicate { .. }), "{err}");
    let err = state.apply(&mut vec![((7, 1), -1)], &mut out).unwrap_err();
    assert!(matches!(err, RankError::Missing { .. }), "{err}");
    let err = state
        .apply(&mut vec![((8, 3), 1), ((8, 3), 1)], &mut out)
        .unwrap_err();
    assert_eq!(
        err,
        RankError::Multiplicity {
            entry: "(8, 3)".into(),
            diff: 2
        }
    );
    assert!(err
        .to_string()
        .starts_with("ranking input is not a set: (8, 3) has diff 2"));
    assert!(out.is_empty());
    assert_eq!(state.len(), 2);
    // Retracting everything emits exactly the retraction of what was inserted.
    state
        .apply(
            &mut vec![((5, 1), -1), ((6, 2), -1), ((9, 9), 1), ((9, 9), -1)],
            &mut out,
        )
        .unwrap();
    assert_eq!(
        out,
        before.iter().map(|(row, r)| (*row, -r)).collect::<Vec<_>>()
    );
    assert!(state.is_empty());
}

fn ticks_strategy() -> impl Strategy<Value = Vec<Vec<Change<u64, u64>>>> {
    let change = (0u64..12, prop::option::weighted(0.75, 0u64..4));
    prop::collection::vec(prop::collection::vec(change, 0..10), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn proptest_histories_match_oracle(k in 1u64..8, ticks in ticks_strategy()) {
        run_ticks(k, &ticks, &format!("k {k}"));
    }
}
