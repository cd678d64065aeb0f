//! The publisher's fold of one view's updates into its store, alone: `rfm`'s rows, a store of
//! `--rows` customers, then `--folds` folds of `--changes` changed rows each (a row's `-old` and
//! `+new` side by side, as the views emit them), as an update of 1,000 order lines brings.
//!
//! Run with: cargo run --release -p shopdiff-benches --bin fold -- [--rows N] [--changes C]
//!           [--folds F] [--no-history] [--cold]
//!
//! Prints the median and p99 time per fold and per update (one row's `-old` or `+new`).

use shopdiff_benches::flag_or;
use shopdiff_schemas::rows::{RfmRow, RFM};
use shopdiff_schemas::Str;
use shopdiff_server::store::{AnyView, HistoryConfig, ViewStore};
use std::time::Instant;

fn row(user: u64, purchases: i64) -> RfmRow {
    RfmRow {
        user_id: Str::from(format!("u{user:07}")),
        last_purchase: 1_700_000_000_000 + purchases * 1000,
        frequency: purchases,
        monetary: purchases as i128 * 2599,
        r_score: (user % 5 + 1) as u8,
        f_score: (purchases % 5 + 1) as u8,
        m_score: ((user / 7) % 5 + 1) as u8,
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rows = flag_or(&args, "--rows", 200_000u64)?;
    let changes = flag_or(&args, "--changes", 2_800usize)?;
    let folds = flag_or(&args, "--folds", 200usize)?;
    let history = if args.iter().any(|a| a == "--no-history") {
        HistoryConfig::none()
    } else {
        HistoryConfig::default()
    };
    shopdiff_server::tune_allocator();
    let cold = args.iter().any(|a| a == "--cold");
    let mut thrash = vec![0u64; if cold { 8 << 20 } else { 0 }];
    let tick = 1000u64;
    let store = ViewStore::with_history(RFM, tick, history);
    let mut purchases = vec![1i64; rows as usize];
    let base: Vec<(RfmRow, u64, isize)> = (0..rows).map(|u| (row(u, 1), 0, 1)).collect();
    store.push(&base);
    store.fold_to(tick, false);
    // a deterministic spread of users (a multiplicative hash), so the lookups miss the caches
    // as the real views' do
    let mut next = 0u64;
    let mut ms = Vec::with_capacity(folds);
    for k in 0..folds {
        let t = (k as u64 + 1) * tick;
        let mut ups = Vec::with_capacity(changes * 2);
        for _ in 0..changes {
            next = next.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let u = (next >> 11) % rows;
            let p = &mut purchases[u as usize];
            ups.push((row(u, *p), t, -1));
            *p += 1;
            ups.push((row(u, *p), t, 1));
        }
        store.push(&ups);
        if cold {
            // what the workers do to the caches between two folds
            for (i, x) in thrash.iter_mut().enumerate().step_by(8) {
                *x = x.wrapping_add(i as u64);
            }
        }
        let s = Instant::now();
        store.fold_to(t + tick, false);
        ms.push(s.elapsed().as_secs_f64() * 1e3);
        store.prepare();
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    println!(
        "fold of {changes} changed rows ({} updates) into a store of {rows} rfm rows: median {:.3} ms, p99 {:.3} ms; {:.0} ns per update (median)",
        changes * 2,
        pct(0.5),
        pct(0.99),
        pct(0.5) * 1e6 / (changes * 2) as f64
    );
    Ok(())
}
