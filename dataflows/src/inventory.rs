//! `inventory` (contract 5 and 5a).
//!
//! * Inputs: `lines` (any key), `products` keyed by `product_id`.
//! * Output: [`InventoryRow`] keyed by `product_id`, one per product row.
//! * `units_7d`: quantity of the product's lines in the trailing 7-day window (closed on the
//!   right, as `fraud_alerts`), via the temporal filter.
//! * Cost of one change: a line updates its product's window sum when it enters and when it
//!   leaves; a product row change re-joins that product only. O(log n).
//! * State: the windowed sums by product (a hash map in the window operator), and the
//!   products with them ([`LeftJoin::left_join`]: a window sum's change re-emits its one
//!   product row). No arrangements.

use crate::common::{AnyLine, Coll};
use crate::config::INVENTORY_WINDOW_MS;
use shopdiff_operators::keyed::LeftJoin;
use shopdiff_operators::window::WindowAggregates;
use shopdiff_schemas::records::Line;
use shopdiff_schemas::rows::InventoryRow;
use shopdiff_schemas::tables::Product;
use shopdiff_schemas::time::{ceil_tick, Ms};
use shopdiff_schemas::Str;

/// Maintains `inventory`.
pub fn inventory<'s, L: AnyLine>(
    lines: Coll<'s, L>,
    products: Coll<'s, (Str, Product)>,
    tick: u64,
) -> Coll<'s, InventoryRow> {
    let units = lines
        .map(|l: L| {
            let l: &Line = l.borrow();
            (l.product_id.clone(), (l.quantity, l.ts))
        })
        .window_sum(
            INVENTORY_WINDOW_MS,
            move |v: &(Str, (i64, Ms))| ceil_tick((v.1).1, tick),
            |v| v.0,
        );
    // every product row once, with its window sum (0 while it has none)
    products
        .map(|(id, p)| (id.clone(), (id, p.inventory_count)))
        .left_join("InventoryUnits", units)
        .map(|((product_id, inventory_count), units)| InventoryRow {
            product_id,
            inventory_count,
            units_7d: units.unwrap_or(0),
        })
}
