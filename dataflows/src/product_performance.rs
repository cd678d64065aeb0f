//! `product_performance` (contract 5 and 5a).
//!
//! * Inputs: `lines`, `events` (any key).
//! * Output: [`ProductPerfRow`] keyed by `(product_id, day)`.
//! * Cost of one change: one update of the `(product, day)` sums, plus one of the distinct
//!   `(product, day, transaction)` set for a line. O(log n).
//! * Arrangements: distinct `((product, day), transaction)`, and the per-`(product, day)` sums.

use crate::common::{id_hash, Coll, Sums7};
use shopdiff_schemas::records::{Event, EventKind, Line};
use shopdiff_schemas::rows::ProductPerfRow;
use shopdiff_schemas::time::{day_start, Ms};
use shopdiff_schemas::Str;

const VIEWS: usize = 0;
const CARTS: usize = 1;
const ORDERS: usize = 2;
const UNITS: usize = 3;

/// Maintains `product_performance`.
pub fn product_performance<'s>(
    lines: Coll<'s, Line>,
    events: Coll<'s, Event>,
) -> Coll<'s, ProductPerfRow> {
    let from_events = events.explode(|e: Event| {
        let slot = match e.kind {
            EventKind::ProductView => Some(VIEWS),
            EventKind::AddToCart => Some(CARTS),
            _ => None,
        };
        match (slot, e.product_id) {
            (Some(slot), Some(p)) => Some(((p, day_start(e.ts)), Sums7::unit(slot, 1))),
            _ => None,
        }
    });
    let units = lines.clone().explode(|l: Line| {
        Some((
            (l.product_id, day_start(l.ts)),
            Sums7::unit(UNITS, l.quantity as isize),
        ))
    });
    let orders = lines
        .map(|l| ((l.product_id, day_start(l.ts)), id_hash(&l.transaction_id)))
        .distinct()
        .explode(|(k, _tx): ((Str, Ms), u64)| Some((k, Sums7::unit(ORDERS, 1))));
    from_events
        .concat(units)
        .concat(orders)
        .count()
        .map(|((product_id, day), s)| ProductPerfRow {
            product_id,
            day,
            views: s.0[VIEWS] as i64,
            add_to_carts: s.0[CARTS] as i64,
            orders: s.0[ORDERS] as i64,
            units: s.0[UNITS] as i64,
        })
}
