//! `revenue_hourly` and `revenue_daily` (contract 5).
//!
//! * Inputs: `lines` (accepted order lines, any key), `products` keyed by `product_id`.
//! * Output: [`RevenueRow`] keyed by `(dimension, value, bucket, currency)`.
//! * Cost of one new line: one lookup of its product's cost (shared by both granularities), then
//!   8 dimension keys, each one hash-map update of the key's sums (cost included) and of its
//!   transaction set (distinct orders); O(8). A product's cost change, insert or delete
//!   re-prices that product's lines (O(lines of the product)).
//! * State: the lines by product joined with `products` ([`LeftJoin::left_join`], shared by
//!   both granularities), no arrangements. The per-key sums and
//!   transaction sets are kept by [`Keyed::fold_by_key`] (a hash map per worker, no history),
//!   not by `distinct` + `count`, which replayed each key's history at each of its ticks.

use crate::common::{id_hash, Coll, Sums7};
use differential_dataflow::difference::{IsZero, Multiply, Semigroup};
use shopdiff_operators::keyed::{Distinct, Fold, Keyed, LeftJoin};
use shopdiff_schemas::records::Line;
use shopdiff_schemas::rows::{Dimension, RevenueRow};
use shopdiff_schemas::tables::Product;
use shopdiff_schemas::time::Ms;

pub use crate::batch::Granularity;
use shopdiff_schemas::Str;

/// The key of a revenue row.
pub type RevKey = (Dimension, Str, Ms, Str);

/// The eight `(dimension, value)` pairs of a line.
pub fn dimensions(l: &Line) -> [(Dimension, Str); 8] {
    [
        (Dimension::Total, Str::const_new("all")),
        (Dimension::Category, l.category_id.clone()),
        (Dimension::Brand, l.brand.clone()),
        (Dimension::Country, l.country.clone()),
        (Dimension::PaymentMethod, l.payment_method.clone()),
        (Dimension::Channel, l.channel.clone()),
        (Dimension::DeviceType, l.device_type.clone()),
        (Dimension::Product, l.product_id.clone()),
    ]
}

// Positions in the summed vector.
const LINES: usize = 0;
const ORDERS: usize = 1;
const ITEMS: usize = 2;
const GROSS: usize = 3;
const DISCOUNT: usize = 4;
const COST: usize = 5;
const MATCHED: usize = 6;

/// Every line with its product's current cost: `Some(cost)` while a products row exists,
/// `None` (an unmatched line) otherwise, each line exactly once ([`LeftJoin::left_join`]: the
/// lines by product in a hash map, shared by both granularities); a product's cost change
/// re-prices that product's lines.
pub fn priced_lines<'s>(
    lines: Coll<'s, Line>,
    products: Coll<'s, (Str, Product)>,
) -> Coll<'s, (Line, Option<i64>)> {
    // products are keyed by id, so a line matches at most one row
    lines
        .map(|l| (l.product_id.clone(), l))
        .left_join(products.map(|(id, p)| (id, p.cost)))
}

/// Maintains `revenue_hourly` or `revenue_daily`.
pub fn revenue<'s>(
    lines: Coll<'s, Line>,
    products: Coll<'s, (Str, Product)>,
    g: Granularity,
) -> Coll<'s, RevenueRow> {
    let priced = priced_lines(lines.clone(), products);
    revenue_priced(lines, priced, g)
}

/// [`revenue`] from lines already priced by [`priced_lines`] (shared by both granularities).
/// `_lines` is kept for the callers' convenience: the priced lines hold every line once.
pub fn revenue_priced<'s>(
    _lines: Coll<'s, Line>,
    priced: Coll<'s, (Line, Option<i64>)>,
    g: Granularity,
) -> Coll<'s, RevenueRow> {
    priced
        .flat_map(move |(l, cost): (Line, Option<i64>)| {
            let mut s = Sums7::zero();
            s.0[LINES] = 1;
            s.0[ITEMS] = l.quantity as isize;
            s.0[GROSS] = l.gross() as isize;
            s.0[DISCOUNT] = l.discount as isize;
            if let Some(c) = cost {
                s.0[COST] = (l.quantity * c) as isize;
                s.0[MATCHED] = 1;
            }
            let tx = id_hash(&l.transaction_id);
            let bucket = g.bucket(l.ts);
            // an array, not a vector: no allocation per line
            dimensions(&l).map(|(d, v)| ((d, v, bucket, l.currency.clone()), (tx, s)))
        })
        .fold_by_key("Revenue", |_k, s: &KeySums| {
            let mut v = s.sums;
            v.0[ORDERS] = s.txs.count() as isize;
            (!v.is_zero()).then_some(v)
        })
        .map(|((dimension, value, bucket, currency), s)| RevenueRow {
            dimension,
            value,
            bucket,
            currency,
            orders: s.0[ORDERS] as i64,
            items: s.0[ITEMS] as i64,
            gross: s.0[GROSS] as i64,
            discount: s.0[DISCOUNT] as i64,
            net: (s.0[GROSS] - s.0[DISCOUNT]) as i64,
            cost: s.0[COST] as i64,
            unmatched_lines: (s.0[LINES] - s.0[MATCHED]) as i64,
        })
}

/// One revenue key's state: its lines' measures summed, and its transactions with their line
/// counts (`orders` = how many have a positive count: the distinct count).
#[derive(Default)]
struct KeySums {
    sums: Sums7,
    txs: Distinct<u64>,
}

impl Fold<(u64, Sums7)> for KeySums {
    fn add(&mut self, (tx, m): &(u64, Sums7), diff: isize) {
        self.sums.plus_equals(&m.multiply(&diff));
        self.txs.add(tx, diff);
    }
    fn is_empty(&self) -> bool {
        self.txs.is_empty() && self.sums.is_zero()
    }
}
