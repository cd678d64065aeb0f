//! A product's cost change on a replayed base: how long until every view shows it.
//!
//! Run with: cargo run --release -p shopdiff-benches --bin product_change -- DIR [-w N]
//!           [--changes N] [--gap-ms G]
//!
//! Replays the recorded stream `DIR` (all views, as the `replay` bench's `--updates`), then
//! changes the cost of one product per batch, `--changes` times (default 100), each at the
//! next tick and `--gap-ms` apart (default 20): the products with the most order lines that
//! `changes.jsonl` never touches (so the row retracted is exactly the current one), one cent
//! more each time. Reports the median and p99 time from handing the change to the engine
//! until every view is readable at its `as_of`, and the order lines of the products changed
//! (what a change re-priced line by line before revenue kept classes instead of lines).

use anyhow::Context;
use shopdiff_benches::{flag, peak_rss_mb};
use shopdiff_connectors::files::LineReader;
use shopdiff_connectors::Batch;
use shopdiff_schemas::records::parse_transaction;
use shopdiff_schemas::tables::{parse_change, parse_row, ChangeOp, Table, TableRow};
use shopdiff_schemas::Str;
use shopdiff_server::store::HistoryConfig;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .filter(|a| !a.starts_with('-'))
            .context("usage: product_change DIR [-w N] [--changes N] [--gap-ms G]")?,
    );
    let workers = flag(&args, "-w")?.unwrap_or(2);
    let n: usize = flag(&args, "--changes")?.unwrap_or(100);
    let gap_ms: u64 = flag(&args, "--gap-ms")?.unwrap_or(20);
    let (rows, lines_of) = products_to_change(&dir, n)?;
    anyhow::ensure!(!rows.is_empty(), "{}: no product to change", dir.display());

    let tick = 1000u64;
    let (engine, stats) =
        shopdiff_benches::replayed_base(&dir, workers, HistoryConfig::none(), tick)?;
    let wait_for = |f: u64| shopdiff_benches::wait_for_frontier(&engine, f, tick);

    let mut current = rows;
    let mut t = engine.fed_frontier().max(stats.as_of + tick);
    let (mut ms, mut lines) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for k in 0..n {
        let i = k % current.len();
        let old = current[i].clone();
        let mut new = old.clone();
        new.cost += 1;
        lines.push(lines_of.get(&new.product_id).copied().unwrap_or(0));
        let mut b = Batch::default();
        b.tables.push((TableRow::Product(old), t, -1));
        b.tables.push((TableRow::Product(new.clone()), t, 1));
        b.frontier = t + tick;
        current[i] = new;
        std::thread::sleep(Duration::from_millis(gap_ms));
        let s = Instant::now();
        anyhow::ensure!(engine.feed(b), "engine stopped");
        wait_for(t + tick)?;
        ms.push(s.elapsed().as_secs_f64() * 1e3);
        t += tick;
    }
    ms.sort_by(f64::total_cmp);
    lines.sort_unstable();
    let pct = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!(
        "product cost changes on a base of {} records, workers={workers}: {n} changes, each reflected in every view: median {:.1} ms, p99 {:.1} ms; order lines of the products changed: median {}, max {}; peak_rss_mb={:.0}",
        stats.transactions + stats.behavior,
        pct(&ms, 0.5),
        pct(&ms, 0.99),
        lines[lines.len() / 2],
        lines[lines.len() - 1],
        peak_rss_mb()
    );
    Ok(())
}

/// Up to `n` initial product rows that `changes.jsonl` never touches, those with the most
/// order lines first, and the order lines of every product.
fn products_to_change(
    dir: &Path,
    n: usize,
) -> anyhow::Result<(Vec<shopdiff_schemas::tables::Product>, HashMap<Str, usize>)> {
    let mut changed: HashSet<Str> = HashSet::new();
    if let Some(path) = existing(dir, "changes.jsonl") {
        let mut r = LineReader::open(&path)?;
        while let Some((_, bytes)) = r.next_line()? {
            let Ok(c) = parse_change(&String::from_utf8_lossy(bytes)) else {
                continue;
            };
            if c.table == Table::Products {
                match c.op {
                    Ok(ChangeOp::Upsert(row)) => changed.insert(row.key().clone()),
                    Ok(ChangeOp::Delete(key)) => changed.insert(key),
                    Err(_) => false,
                };
            }
        }
    }
    let mut lines_of: HashMap<Str, usize> = HashMap::new();
    let path = existing(dir, "transactions.jsonl").context("no transactions.jsonl")?;
    let mut r = LineReader::open(&path)?;
    while let Some((_, bytes)) = r.next_line()? {
        if let Ok(l) = parse_transaction(&String::from_utf8_lossy(bytes)) {
            *lines_of.entry(l.product_id).or_default() += 1;
        }
    }
    let mut rows = Vec::new();
    let path = existing(dir, "products.jsonl").context("no products.jsonl")?;
    let mut r = LineReader::open(&path)?;
    while let Some((_, bytes)) = r.next_line()? {
        if let Ok(TableRow::Product(p)) =
            parse_row(Table::Products, &String::from_utf8_lossy(bytes))
        {
            if !changed.contains(&p.product_id) {
                rows.push(p);
            }
        }
    }
    rows.sort_by_key(|p| std::cmp::Reverse(lines_of.get(&p.product_id).copied().unwrap_or(0)));
    rows.truncate(n);
    Ok((rows, lines_of))
}

/// `dir/name`, or `dir/name.zst`, whichever exists.
fn existing(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.zst"))]
        .into_iter()
        .find(|p| p.exists())
}
