//! `revenue_hourly` and `revenue_daily` (contract 5): per `(dimension, value, bucket, currency)`,
//! `orders` (distinct `transaction_id`), `items`, `gross`, `discount`, `net`, `cost` (lines whose
//! product has a row at `as_of`) and `unmatched_lines` (lines whose product has none).

use super::{Granularity, Visible};
use shopdiff_schemas::money::Sum;
use shopdiff_schemas::records::Line;
use shopdiff_schemas::rows::{Dimension, RevenueRow};
use shopdiff_schemas::time::Ms;
use shopdiff_schemas::Str;
use std::collections::{BTreeMap, BTreeSet};

/// The value of a line in a dimension (the line's own, `none` when it was missing).
pub fn dimension_value(line: &Line, d: Dimension) -> &Str {
    static ALL: Str = Str::const_new("all");
    match d {
        Dimension::Total => &ALL,
        Dimension::Category => &line.category_id,
        Dimension::Brand => &line.brand,
        Dimension::Country => &line.country,
        Dimension::PaymentMethod => &line.payment_method,
        Dimension::Channel => &line.channel,
        Dimension::DeviceType => &line.device_type,
        Dimension::Product => &line.product_id,
    }
}

#[derive(Default)]
struct Acc<'a> {
    transactions: BTreeSet<&'a str>,
    items: i64,
    gross: Sum,
    discount: Sum,
    net: Sum,
    cost: Sum,
    unmatched_lines: i64,
}

/// The revenue view of one granularity at `v.as_of`.
pub fn batch_revenue(v: &Visible, granularity: Granularity) -> Vec<RevenueRow> {
    let mut groups: BTreeMap<(Dimension, &Str, Ms, &Str), Acc> = BTreeMap::new();
    for line in v.visible_lines() {
        let bucket = granularity.bucket(line.ts);
        let product = v.products.get(&line.product_id);
        for d in Dimension::ALL {
            let key = (d, dimension_value(line, d), bucket, &line.currency);
            let acc = groups.entry(key).or_default();
            acc.transactions.insert(&line.transaction_id);
            acc.items += line.quantity;
            acc.gross += line.gross() as Sum;
            acc.discount += line.discount as Sum;
            acc.net += line.net() as Sum;
            match product {
                Some(p) => acc.cost += line.quantity as Sum * p.cost as Sum,
                None => acc.unmatched_lines += 1,
            }
        }
    }
    groups
        .into_iter()
        .map(|((dimension, value, bucket, currency), a)| RevenueRow {
            dimension,
            value: value.clone(),
            bucket,
            currency: currency.clone(),
            orders: a.transactions.len() as i64,
            items: a.items,
            gross: a.gross,
            discount: a.discount,
            net: a.net,
            cost: a.cost,
            unmatched_lines: a.unmatched_lines,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{at, line, ms, World};
    use super::*;

    fn row<'a>(rows: &'a [RevenueRow], d: Dimension, value: &str, cur: &str) -> &'a RevenueRow {
        let found: Vec<_> = rows
            .iter()
            .filter(|r| r.dimension == d && r.value == value && r.currency == cur)
            .collect();
        assert_eq!(found.len(), 1, "{d:?} {value} {cur}: {rows:#?}");
        found[0]
    }

    #[test]
    fn unknown_and_deleted_products() {
        let mut w = World::default();
        // P1 exists (cost 4.00); P2 was deleted before as_of (no row); P3 never existed
        w.product("P1", 400, 10);
        let t0 = ms("2024-03-01T10:15:00.250Z");
        let mut a = line("T1", "P1", "U1", t0);
        a.quantity = 3; // gross 30.00
        a.discount = 150;
        a.brand = "acme".into();
        w.line(a);
        let mut b = line("T1", "P2", "U1", t0 + 1000);
        b.price = 2500; // gross 25.00
        b.brand = "acme".into();
        w.line(b);
        w.line(line("T2", "P3", "U2", t0 + 2000));
        // another currency and another hour, same day
        let mut e = line("T3", "P1", "U2", ms("2024-03-01T11:00:00Z"));
        e.currency = "EUR".into();
        w.line(e);
        let rows = batch_revenue(&w.at(at("2024-03-01T12:00:00Z")), Granularity::Daily);
        let total = row(&rows, Dimension::Total, "all", "USD");
        assert_eq!(total.bucket, ms("2024-03-01T00:00:00Z"));
        assert_eq!(
            (
                total.orders,
                total.items,
                total.gross,
                total.discount,
                total.net
            ),
            (2, 5, 3000 + 2500 + 1000, 150, 3000 + 2500 + 1000 - 150)
        );
        assert_eq!((total.cost, total.unmatched_lines), (3 * 400, 2));
        let acme = row(&rows, Dimension::Brand, "acme", "USD");
        assert_eq!((acme.orders, acme.items, acme.unmatched_lines), (1, 4, 1));
        let none = row(&rows, Dimension::Brand, "none", "USD");
        assert_eq!((none.orders, none.gross, none.cost), (1, 1000, 0));
        let p2 = row(&rows, Dimension::Product, "P2", "USD");
        assert_eq!((p2.gross, p2.cost, p2.unmatched_lines), (2500, 0, 1));
        let eur = row(&rows, Dimension::Total, "all", "EUR");
        assert_eq!(
            (eur.orders, eur.net, eur.cost, eur.unmatched_lines),
            (1, 1000, 400, 0)
        );
        // 8 dimensions × (USD: 1 value, except brand 2 and product 3; EUR: 1 value)
        assert_eq!(rows.len(), 8 + 1 + 2 + 8);
        assert!(rows.windows(2).all(|p| p[0] < p[1]));

        // hourly: the EUR line has its own hour; the USD ones share 10:00
        let hourly = batch_revenue(&w.at(at("2024-03-01T12:00:00Z")), Granularity::Hourly);
        let usd = row(&hourly, Dimension::Total, "all", "USD");
        assert_eq!(usd.bucket, ms("2024-03-01T10:00:00Z"));
        let eur = row(&hourly, Dimension::Total, "all", "EUR");
        assert_eq!(eur.bucket, ms("2024-03-01T11:00:00Z"));

        // the second USD line (10:15:01.250) takes effect at 10:15:02: not visible at 10:15:01
        let early = batch_revenue(&w.at(at("2024-03-01T10:15:01Z")), Granularity::Daily);
        let total = row(&early, Dimension::Total, "all", "USD");
        assert_eq!((total.items, total.unmatched_lines), (3, 0));
        assert!(batch_revenue(&w.at(at("2024-03-01T10:15:00Z")), Granularity::Daily).is_empty());
    }

    #[test]
    fn late_line_keeps_its_bucket() {
        let mut w = World::default();
        // event time in the 09:00 hour, takes effect (late) at 10:00:05
        w.late_line(
            line("T1", "P1", "U1", ms("2024-03-01T09:59:59.500Z")),
            at("2024-03-01T10:00:05Z"),
        );
        assert!(batch_revenue(&w.at(at("2024-03-01T10:00:04Z")), Granularity::Hourly).is_empty());
        let rows = batch_revenue(&w.at(at("2024-03-01T10:00:05Z")), Granularity::Hourly);
        assert_eq!(rows.len(), 8);
        assert!(rows.iter().all(|r| r.bucket == ms("2024-03-01T09:00:00Z")));
        assert!(rows.iter().all(|r| r.unmatched_lines == 1 && r.cost == 0));
    }
}
