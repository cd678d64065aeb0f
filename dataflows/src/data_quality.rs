//! `data_quality` (contract 5 and 5a).
//!
//! * Inputs: `quality` (ingest-level counts as `(source, reason)` records, one per counted
//!   record), `lines`, `products` and `customers` keyed by their primary key.
//! * Output: [`QualityRow`] keyed by `(source, reason)`.
//! * Cost of one change: one hash-map update of its `(source, reason)` sum; a line adds one to
//!   its product's and its user's line count; a table row in or out moves that product's or
//!   user's lines between matched and unknown. O(1) each.
//! * State: per product and per user, its lines and table rows ([`Keyed::fold_by_key`]), and
//!   the per-`(source, reason)` sums ([`SumByKey::sum_by_key`]); hash maps, no arrangements.

use crate::common::{AnyLine, Coll};
use shopdiff_operators::keyed::{Fold, Keyed, SumByKey};
use shopdiff_schemas::rows::QualityRow;
use shopdiff_schemas::tables::{Customer, Product};
use shopdiff_schemas::{Reason, Source, Str};

/// Maintains `data_quality`.
pub fn data_quality<'s, L: AnyLine>(
    quality: Coll<'s, (Source, Reason)>,
    lines: Coll<'s, L>,
    products: Coll<'s, (Str, Product)>,
    customers: Coll<'s, (Str, Customer)>,
) -> Coll<'s, QualityRow> {
    let unknown_products = unknown(
        lines.clone().map(|l: L| l.borrow().product_id.clone()),
        products.map(|(k, _)| k),
        Reason::UnknownProduct,
    );
    let unknown_customers = unknown(
        lines.map(|l: L| l.borrow().user_id.clone()),
        customers.map(|(k, _)| k),
        Reason::UnknownCustomer,
    );
    quality
        .concat(unknown_products)
        .concat(unknown_customers)
        .sum_by_key("QualityCounts")
        .map(|((source, reason), records)| QualityRow {
            source,
            reason,
            records: records as i64,
        })
}

/// A key's lines and table rows.
#[derive(Default)]
struct Matches {
    lines: isize,
    rows: isize,
}

impl Fold<bool> for Matches {
    fn add(&mut self, is_row: &bool, diff: isize) {
        if *is_row {
            self.rows += diff;
        } else {
            self.lines += diff;
        }
    }
    fn is_empty(&self) -> bool {
        self.lines == 0 && self.rows == 0
    }
}

/// One `(transactions, reason)` record per line whose key has no table row.
fn unknown<'s>(
    keys: Coll<'s, Str>,
    table: Coll<'s, Str>,
    reason: Reason,
) -> Coll<'s, (Source, Reason)> {
    keys.map(|k| (k, false))
        .concat(table.map(|k| (k, true)))
        .fold_by_key("Unmatched", |_k, m: &Matches| {
            (m.rows <= 0 && m.lines != 0).then_some(m.lines)
        })
        .explode(move |(_k, n)| Some(((Source::Transactions, reason), n)))
}
