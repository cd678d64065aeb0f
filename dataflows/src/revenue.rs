//! `revenue_hourly` and `revenue_daily` (contract 5).
//!
//! * Inputs: `lines` (accepted order lines, any key), `products` keyed by `product_id`.
//! * Output: [`RevenueRow`] keyed by `(dimension, value, bucket, currency)`.
//! * Cost of one new line: 8 dimension keys, each one update of the sums, one of the distinct
//!   `(key, transaction)` set and one of the per-`(product, key)` quantity; O(8 log n).
//!   A product's cost change touches the `(product, key)` groups of that product only.
//! * Arrangements: `(key, transaction)` for distinct orders, `((product, key), quantity)` joined
//!   with `products`, and the per-key sums (one `count` over a vector-valued difference).

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

/// Maintains `revenue_hourly` or `revenue_daily`.
pub fn revenue<'s>(
    lines: Coll<'s, Line>,
    products: Coll<'s, (Str, Product)>,
    g: Granularity,
) -> Coll<'s, RevenueRow> {
    // line measures per key
    let sums = lines.clone().explode(move |l: Line| {
        let mut s = Sums7::zero();
        s.0[LINES] = 1;
        s.0[ITEMS] = l.quantity as isize;
        s.0[GROSS] = l.gross() as isize;
        s.0[DISCOUNT] = l.discount as isize;
        keys(&l, g).map(move |k| (k, s)).collect::<Vec<_>>()
    });
    // distinct transactions per key
    let orders = lines
        .clone()
        .flat_map(move |l: Line| {
            let tx = id_hash(&l.transaction_id);
            keys(&l, g).map(move |k| (k, tx)).collect::<Vec<_>>()
        })
        .distinct()
        .explode(|(k, _tx)| Some((k, Sums7::unit(ORDERS, 1))));
    // quantity and lines per (product, key), priced with the product's current cost
    let per_product = lines
        .explode(move |l: Line| {
            let q = l.quantity as isize;
            let p = l.product_id.clone();
            keys(&l, g)
                .map(move |k| ((p.clone(), k), (q, 1isize)))
                .collect::<Vec<_>>()
        })
        .count()
        .map(|((p, k), qn)| (p, (k, qn)));
    let costs = products.map(|(id, p)| (id, p.cost));
    let cost = per_product
        .join_map(costs, |_p, (k, (q, n)), cost| {
            (k.clone(), (*q as i64 * cost, *n))
        })
        .explode(|(k, (c, n))| {
            let mut s = Sums7::zero();
            s.0[COST] = c as isize;
            s.0[MATCHED] = n;
            Some((k, s))
        });
    sums.concat(orders)
        .concat(cost)
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
