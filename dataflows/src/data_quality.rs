//! `data_quality` (contract 5 and 5a).
//!
//! * Inputs: `quality` (ingest-level counts as `(source, reason)` records, one per counted
//!   record), `lines`, `products` and `customers` keyed by their primary key.
//! * Output: [`QualityRow`] keyed by `(source, reason)`.
//! * Cost of one change: one count update; a line adds one to its product's and its user's line
//!   count; a table row in or out moves that product's or user's lines between matched and
//!   unknown, O(log n).
//! * Arrangements: lines counted per product and per user, each joined with its table's keys.

use crate::common::Coll;
use shopdiff_schemas::records::Line;
use shopdiff_schemas::rows::QualityRow;
use shopdiff_schemas::tables::{Customer, Product};
use shopdiff_schemas::{Reason, Source, Str};

/// Maintains `data_quality`.
pub fn data_quality<'s>(
    quality: Coll<'s, (Source, Reason)>,
    lines: Coll<'s, Line>,
    products: Coll<'s, (Str, Product)>,
    customers: Coll<'s, (Str, Customer)>,
) -> Coll<'s, QualityRow> {
    let unknown_products = unknown(
        lines.clone().map(|l| l.product_id),
        products.map(|(k, _)| k),
        Reason::UnknownProduct,
    );
    let unknown_customers = unknown(
        lines.map(|l| l.user_id),
        customers.map(|(k, _)| k),
        Reason::UnknownCustomer,
    );
    quality
        .concat(unknown_products)
        .concat(unknown_customers)
        .count()
        .map(|((source, reason), records)| QualityRow {
            source,
            reason,
            records: records as i64,
        })
}

/// One `(transactions, reason)` record per line whose key has no table row.
fn unknown<'s>(
    keys: Coll<'s, Str>,
    table: Coll<'s, Str>,
    reason: Reason,
) -> Coll<'s, (Source, Reason)> {
    let per_key = keys.count();
    let matched = per_key.clone().semijoin(table);
    per_key
        .concat(matched.negate())
        .explode(move |(_k, n)| Some(((Source::Transactions, reason), n)))
}
