//! `inventory` (contract 5 and 5a).
//!
//! * Inputs: `lines` (any key), `products` keyed by `product_id`.
//! * Output: [`InventoryRow`] keyed by `product_id`, one per product row.
//! * `units_7d`: quantity of the product's lines in the trailing 7-day window (closed on the
//!   right, as `fraud_alerts`), via the temporal filter.
//! * Cost of one change: a line updates its product's window sum when it enters and when it
//!   leaves; a product row change re-joins that product only. O(log n).
//! * State: the windowed sums by product (a hash map in the window operator), and the
//!   arrangements of the join of `products` with them.

use crate::common::Coll;
use crate::config::INVENTORY_WINDOW_MS;
use shopdiff_operators::window::WindowAggregates;
use shopdiff_schemas::records::Line;
use shopdiff_schemas::rows::InventoryRow;
use shopdiff_schemas::tables::Product;
use shopdiff_schemas::time::{ceil_tick, Ms};
use shopdiff_schemas::Str;

/// Maintains `inventory`.
pub fn inventory<'s>(
    lines: Coll<'s, Line>,
    products: Coll<'s, (Str, Product)>,
    tick: u64,
) -> Coll<'s, InventoryRow> {
    let units = lines
        .map(|l| (l.product_id, (l.quantity, l.ts)))
        .window_sum(
            INVENTORY_WINDOW_MS,
            move |v: &(Str, (i64, Ms))| ceil_tick((v.1).1, tick),
            |v| v.0,
        );
    let stock = products.map(|(id, p)| (id, p.inventory_count));
    let sold = stock
        .clone()
        .join_map(units.clone(), |id, inv, u| InventoryRow {
            product_id: id.clone(),
            inventory_count: *inv,
            units_7d: *u,
        });
    let unsold = stock
        .antijoin(units.map(|(id, _)| id))
        .map(|(id, inv)| InventoryRow {
            product_id: id,
            inventory_count: inv,
            units_7d: 0,
        });
    sold.concat(unsold)
}
