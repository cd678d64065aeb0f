//! `revenue_hourly` and `revenue_daily` (contract 5).
//!
//! * Inputs: `lines` (accepted order lines, any key), `products` keyed by `product_id`.
//! * Output: [`RevenueRow`] keyed by `(dimension, value, bucket, currency)`.
//! * Cost of one new line: one lookup of its product's cost (shared by both granularities), then
//!   8 dimension keys, each one update of the sums (cost included) and one of the distinct
//!   `(key, transaction)` set; O(8 log n). A product's cost change, insert or delete re-prices
//!   that product's lines (O(lines of the product)).
//! * Arrangements: the lines by product joined with `products` (shared), `(key, transaction)`
//!   for distinct orders, and the per-key sums (one `count` over a vector-valued difference).

use crate::common::{id_hash, Coll, Sums7};
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

fn keys(l: &Line, g: Granularity) -> impl Iterator<Item = RevKey> + '_ {
    let bucket = g.bucket(l.ts);
    dimensions(l)
        .into_iter()
        .map(move |(d, v)| (d, v, bucket, l.currency.clone()))
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
/// `None` (an unmatched line) otherwise. One arrangement of the lines by product, shared by both
/// granularities; a product's cost change re-prices that product's lines.
pub fn priced_lines<'s>(
    lines: Coll<'s, Line>,
    products: Coll<'s, (Str, Product)>,
) -> Coll<'s, (Line, Option<i64>)> {
    let costs = products.map(|(id, p)| (id, p.cost));
    let matched = lines
        .clone()
        .map(|l| (l.product_id.clone(), l))
        .join_map(costs, |_p, l, cost| (l.clone(), Some(*cost)));
    // products are keyed by id, so a line matches at most one row
    let unmatched = lines
        .concat(matched.clone().map(|(l, _)| l).negate())
        .map(|l| (l, None));
    matched.concat(unmatched)
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
pub fn revenue_priced<'s>(
    lines: Coll<'s, Line>,
    priced: Coll<'s, (Line, Option<i64>)>,
    g: Granularity,
) -> Coll<'s, RevenueRow> {
    // line measures per key, cost included while the product exists
    let sums = priced.explode(move |(l, cost): (Line, Option<i64>)| {
        let mut s = Sums7::zero();
        s.0[LINES] = 1;
        s.0[ITEMS] = l.quantity as isize;
        s.0[GROSS] = l.gross() as isize;
        s.0[DISCOUNT] = l.discount as isize;
        if let Some(c) = cost {
            s.0[COST] = (l.quantity * c) as isize;
            s.0[MATCHED] = 1;
        }
        keys(&l, g).map(move |k| (k, s)).collect::<Vec<_>>()
    });
    // distinct transactions per key
    let orders = lines
        .flat_map(move |l: Line| {
            let tx = id_hash(&l.transaction_id);
            keys(&l, g).map(move |k| (k, tx)).collect::<Vec<_>>()
        })
        .distinct()
        .explode(|(k, _tx)| Some((k, Sums7::unit(ORDERS, 1))));
    sums.concat(orders)
        .count()
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
