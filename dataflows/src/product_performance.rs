//! `product_performance` (contract 5 and 5a).
//!
//! * Inputs: `lines`, `events` (any key).
//! * Output: [`ProductPerfRow`] keyed by `(product_id, day)`.
//! * Cost of one change: one hash-map update of its `(product, day)` state (view and cart
//!   counts, units, and the transaction set for the distinct orders). O(1).
//! * State: one [`Keyed::fold_by_key`] state per `(product, day)` (a hash map per worker, no
//!   arrangements), retired once the day is wholly below the lateness horizon
//!   ([`ViewsConfig::retire_days`](crate::config::ViewsConfig::retire_days)).

use crate::common::{id_hash, AnyLine, Coll};
use serde::{Deserialize, Serialize};
use shopdiff_operators::keyed::{Distinct, Fold, Keyed};
use shopdiff_schemas::records::{Event, EventKind, Line};
use shopdiff_schemas::rows::ProductPerfRow;
use shopdiff_schemas::time::day_start;

/// What a `(product, day)` is told: a view, an add-to-cart, or a line `(transaction, units)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Activity {
    View,
    Cart,
    Line(u64, i64),
}

/// One `(product, day)`: counts, units and its transactions with their line counts.
#[derive(Default)]
struct Perf {
    views: isize,
    carts: isize,
    units: i64,
    lines: isize,
    txs: Distinct<u64>,
}

impl Fold<Activity> for Perf {
    fn add(&mut self, a: &Activity, diff: isize) {
        match a {
            Activity::View => self.views += diff,
            Activity::Cart => self.carts += diff,
            Activity::Line(tx, units) => {
                self.units += units * diff as i64;
                self.lines += diff;
                self.txs.add(tx, diff);
            }
        }
    }
    fn is_empty(&self) -> bool {
        self.views == 0
            && self.carts == 0
            && self.units == 0
            && self.lines == 0
            && self.txs.is_empty()
    }
}

/// Maintains `product_performance`.
pub fn product_performance<'s, L: AnyLine>(
    lines: Coll<'s, L>,
    events: Coll<'s, Event>,
    cfg: &crate::config::ViewsConfig,
) -> Coll<'s, ProductPerfRow> {
    let from_events = events.flat_map(|e: Event| {
        let a = match e.kind {
            EventKind::ProductView => Some(Activity::View),
            EventKind::AddToCart => Some(Activity::Cart),
            _ => None,
        };
        match (a, e.product_id) {
            (Some(a), Some(p)) => Some(((p, day_start(e.ts)), a)),
            _ => None,
        }
    });
    let from_lines = lines.map(|l: L| {
        let l: &Line = l.borrow();
        (
            (l.product_id.clone(), day_start(l.ts)),
            Activity::Line(id_hash(&l.transaction_id), l.quantity),
        )
    });
    from_events
        .concat(from_lines)
        .fold_by_key_retiring("ProductPerf", cfg.retire_days(), |_k, p: &Perf| {
            let row = (p.views, p.carts, p.txs.count(), p.units);
            (row != (0, 0, 0, 0)).then_some(row)
        })
        .map(
            |((product_id, day), (views, carts, orders, units))| ProductPerfRow {
                product_id,
                day,
                views: views as i64,
                add_to_carts: carts as i64,
                orders: orders as i64,
                units,
            },
        )
}
