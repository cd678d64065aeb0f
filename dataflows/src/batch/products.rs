//! `product_performance` and `inventory` (contract 5 and 5a).
//!
//! * `product_performance`, per `(product_id, UTC day)`: `views` / `add_to_carts` (visible
//!   `product_view` / `add_to_cart` events whose `event_properties.product_id` is that product,
//!   by the event's day), `orders` (distinct `transaction_id`s with a line of the product that
//!   day) and `units` (sum of `quantity`); lines of unknown products count too.
//! * `inventory`, per product in `products` at `as_of`: `inventory_count` and `units_7d`, the
//!   units of its visible lines in the trailing 7-day window (`T - 7 d < ceil_tick(ts) <= T`).

use super::Visible;
use crate::config::INVENTORY_WINDOW_MS;
use shopdiff_schemas::records::EventKind;
use shopdiff_schemas::rows::{InventoryRow, ProductPerfRow};
use shopdiff_schemas::time::{day_start, Ms};
use shopdiff_schemas::Str;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
struct Acc<'a> {
    views: i64,
    add_to_carts: i64,
    transactions: BTreeSet<&'a str>,
    units: i64,
}

/// `product_performance` at `v.as_of`; only rows with some activity.
pub fn batch_product_performance(v: &Visible) -> Vec<ProductPerfRow> {
    let mut groups: BTreeMap<(&Str, Ms), Acc> = BTreeMap::new();
    for e in v.visible_events() {
        let Some(product) = &e.product_id else {
            continue;
        };
        let (views, add_to_carts) = match e.kind {
            EventKind::ProductView => (1, 0),
            EventKind::AddToCart => (0, 1),
            _ => continue,
        };
        let acc = groups.entry((product, day_start(e.ts))).or_default();
        acc.views += views;
        acc.add_to_carts += add_to_carts;
    }
    for l in v.visible_lines() {
        let acc = groups.entry((&l.product_id, day_start(l.ts))).or_default();
        acc.transactions.insert(&l.transaction_id);
        acc.units += l.quantity;
    }
    groups
        .into_iter()
        .map(|((product, day), a)| ProductPerfRow {
            product_id: product.clone(),
            day,
            views: a.views,
            add_to_carts: a.add_to_carts,
            orders: a.transactions.len() as i64,
            units: a.units,
        })
        .filter(|r| r.views != 0 || r.add_to_carts != 0 || r.orders != 0 || r.units != 0)
        .collect()
}

/// `inventory` at `v.as_of`: one row per product in `products`.
pub fn batch_inventory(v: &Visible) -> Vec<InventoryRow> {
    let mut units: BTreeMap<&Str, i64> = BTreeMap::new();
    for l in v.window_lines(INVENTORY_WINDOW_MS) {
        *units.entry(&l.product_id).or_default() += l.quantity;
    }
    v.products
        .values()
        .map(|p| InventoryRow {
            product_id: p.product_id.clone(),
            inventory_count: p.inventory_count,
            units_7d: units.get(&p.product_id).copied().unwrap_or(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{at, event, line, ms, World};
    use super::*;

    fn viewed(id: &str, kind: EventKind, product: Option<&str>, ts: Ms) -> shopdiff_schemas::Event {
        let mut e = event(id, "U1", Some("S1"), kind, ts);
        e.product_id = product.map(Str::from);
        e
    }

    #[test]
    fn performance_per_product_and_day() {
        let mut w = World::default();
        let d1 = ms("2024-02-29T00:00:00Z");
        let d2 = ms("2024-03-01T00:00:00Z");
        w.event(viewed("E1", EventKind::ProductView, Some("P1"), d1 + 5));
        w.event(viewed("E2", EventKind::ProductView, Some("P1"), d1 + 6));
        w.event(viewed("E3", EventKind::AddToCart, Some("P1"), d2 - 1));
        w.event(viewed("E4", EventKind::AddToCart, None, d1 + 7)); // no product: nothing
        w.event(viewed("E5", EventKind::Search, Some("P2"), d1 + 8)); // not counted: no row
        w.event(viewed("E6", EventKind::ProductView, Some("P3"), d2 + 1));
        let mut a = line("T1", "P1", "U1", d1 + 10);
        a.quantity = 2;
        w.line(a);
        w.line(line("T2", "P1", "U1", d2 + 10)); // next day
        let mut b = line("T3", "P9", "U2", d2 + 20); // unknown product counts
        b.quantity = 4;
        w.line(b);
        let rows = batch_product_performance(&w.at(at("2024-03-02T00:00:00Z")));
        let row = |p: &str, day, views, add_to_carts, orders, units| ProductPerfRow {
            product_id: p.into(),
            day,
            views,
            add_to_carts,
            orders,
            units,
        };
        assert_eq!(
            rows,
            vec![
                row("P1", d1, 2, 1, 1, 2),
                row("P1", d2, 0, 0, 1, 1),
                row("P3", d2, 1, 0, 0, 0),
                row("P9", d2, 0, 0, 1, 4),
            ]
        );
        // at the end of day 1 the add-to-cart of 23:59:59.999 has not taken effect
        let rows = batch_product_performance(&w.at(at("2024-02-29T23:59:59Z")));
        assert_eq!(rows, vec![row("P1", d1, 2, 0, 1, 2)]);
    }

    #[test]
    fn inventory_window_and_deleted_products() {
        let mut w = World::default();
        let t = ms("2024-03-08T00:00:00Z");
        w.product("P1", 100, 12);
        w.product("P2", 100, 0);
        let mut a = line("T1", "P1", "U1", t - 7 * 86_400_000); // exactly 7 days: out
        a.quantity = 100;
        w.line(a);
        let mut b = line("T2", "P1", "U1", t - 7 * 86_400_000 + 1); // ticks 1 s later: in
        b.quantity = 5;
        w.line(b);
        let mut c = line("T3", "P1", "U1", t - 1);
        c.quantity = 3;
        w.line(c);
        w.line(line("T4", "P9", "U1", t - 1)); // no products row: no inventory row
                                               // late: event time inside the window, takes effect at t + 1 s
        let mut d = line("T5", "P2", "U1", t - 3_600_000);
        d.quantity = 2;
        w.late_line(d, at("2024-03-08T00:00:01Z"));
        let rows = batch_inventory(&w.at(t as u64));
        let row = |p: &str, inventory_count, units_7d| InventoryRow {
            product_id: p.into(),
            inventory_count,
            units_7d,
        };
        assert_eq!(rows, vec![row("P1", 12, 8), row("P2", 0, 0)]);
        let rows = batch_inventory(&w.at(t as u64 + 1000));
        assert_eq!(rows, vec![row("P1", 12, 3), row("P2", 0, 2)]);
    }
}
