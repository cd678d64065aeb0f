//! Run with: cargo run --release -p shopdiff-examples --example 03_revenue_changes
//!
//! Builds only the `revenue_hourly` dataflow on one worker, replays the committed stream into it
//! and prints every change of the `total` rows as it happens: `-1` the old row, `+1` the new one,
//! at the tick (as_of) where it takes effect.

use differential_dataflow::input::Input;
use shopdiff_connectors::{Replay, ReplayOptions};
use shopdiff_dataflows::revenue::{revenue, Granularity};
use shopdiff_schemas::records::Line;
use shopdiff_schemas::rows::Dimension;
use shopdiff_schemas::tables::{Product, TableRow};
use shopdiff_schemas::time::format_rfc3339;
use shopdiff_schemas::Str;

fn main() -> anyhow::Result<()> {
    let mut batches = Vec::new();
    Replay::open(&shopdiff_examples::data_dir(), ReplayOptions::default())?.run(|b| {
        batches.push(b);
        true
    })?;
    timely::execute(timely::Config::thread(), move |worker| {
        let (mut lines, mut products) = worker.dataflow::<u64, _, _>(|scope| {
            let (lines_in, lines) = scope.new_collection::<Line, isize>();
            let (products_in, products) = scope.new_collection::<(Str, Product), isize>();
            revenue(lines, products, Granularity::Hourly)
                .filter(|r| r.dimension == Dimension::Total)
                .inspect(|(row, t, diff)| {
                    println!(
                        "as_of {} {:+} {} {} orders={} net={}",
                        format_rfc3339(*t as i64),
                        diff,
                        format_rfc3339(row.bucket),
                        row.currency,
                        row.orders,
                        shopdiff_schemas::money::format_cents(row.net)
                    )
                });
            (lines_in, products_in)
        });
        for b in batches.clone() {
            for (l, t) in b.lines {
                lines.update_at(l, t, 1);
            }
            for (row, t, d) in b.tables {
                if let TableRow::Product(p) = row {
                    products.update_at((p.product_id.clone(), p), t, d);
                }
            }
            lines.advance_to(b.frontier);
            products.advance_to(b.frontier);
        }
    })
    .map_err(anyhow::Error::msg)?;
    Ok(())
}
