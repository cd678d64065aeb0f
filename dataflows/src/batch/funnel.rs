//! `funnel_daily` (contract 5 and 5a), per UTC day of event time:
//!
//! * `sessions`: distinct `session_id`s with any visible behavior event that day (events without
//!   a `session_id` are ignored; unknown event types count toward `sessions` only);
//! * `product_view_sessions`, `cart_sessions`, `checkout_sessions`: those with a
//!   `product_view`, `add_to_cart`, `checkout_start` event that day;
//! * `purchase_sessions`: that day's sessions with a visible transaction line of the same
//!   `session_id` the same day; `cart_purchased`: the cart sessions of the day among them.

use super::Visible;
use shopdiff_schemas::records::EventKind;
use shopdiff_schemas::rows::FunnelRow;
use shopdiff_schemas::time::{day_start, Ms};
use shopdiff_schemas::Str;
use std::collections::{BTreeMap, BTreeSet};

/// What one session did on one day.
#[derive(Default, Clone, Copy)]
struct Steps {
    product_view: bool,
    cart: bool,
    checkout: bool,
}

/// `funnel_daily` at `v.as_of`; only days with sessions.
pub fn batch_funnel(v: &Visible) -> Vec<FunnelRow> {
    let mut days: BTreeMap<Ms, BTreeMap<&Str, Steps>> = BTreeMap::new();
    for e in v.visible_events() {
        let Some(session) = &e.session_id else {
            continue;
        };
        let steps = days
            .entry(day_start(e.ts))
            .or_default()
            .entry(session)
            .or_default();
        match e.kind {
            EventKind::ProductView => steps.product_view = true,
            EventKind::AddToCart => steps.cart = true,
            EventKind::CheckoutStart => steps.checkout = true,
            _ => {}
        }
    }
    let purchased: BTreeSet<(Ms, &Str)> = v
        .visible_lines()
        .filter_map(|l| l.session_id.as_ref().map(|s| (day_start(l.ts), s)))
        .collect();
    days.into_iter()
        .map(|(day, sessions)| {
            let mut row = FunnelRow {
                day,
                sessions: sessions.len() as i64,
                product_view_sessions: 0,
                cart_sessions: 0,
                checkout_sessions: 0,
                purchase_sessions: 0,
                cart_purchased: 0,
            };
            for (session, s) in sessions {
                let bought = purchased.contains(&(day, session));
                row.product_view_sessions += s.product_view as i64;
                row.cart_sessions += s.cart as i64;
                row.checkout_sessions += s.checkout as i64;
                row.purchase_sessions += bought as i64;
                row.cart_purchased += (s.cart && bought) as i64;
            }
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{at, event, line, ms, World};
    use super::*;

    #[test]
    fn sessions_steps_and_purchases_by_day() {
        let mut w = World::default();
        let d1 = ms("2024-02-29T00:00:00Z");
        let d2 = ms("2024-03-01T00:00:00Z");
        let ev = |id: &str, s: Option<&str>, kind, ts| event(id, "U1", s, kind, ts);
        // S1: views, carts and buys on day 1
        w.event(ev("E1", Some("S1"), EventKind::ProductView, d1 + 1000));
        w.event(ev("E2", Some("S1"), EventKind::AddToCart, d1 + 2000));
        w.event(ev("E3", Some("S1"), EventKind::CheckoutStart, d1 + 3000));
        // S2: carts on day 1 late in the evening, buys after midnight (day 2), where it has
        // an event too (so it counts on both days)
        w.event(ev("E4", Some("S2"), EventKind::AddToCart, d2 - 60_000));
        w.event(ev("E5", Some("S2"), EventKind::CheckoutStart, d2 + 60_000));
        // S3: an unknown event type only; S4: searches on day 2 and buys that day
        w.event(ev("E6", Some("S3"), EventKind::Other, d1 + 5000));
        w.event(ev("E7", Some("S4"), EventKind::Search, d2 + 5000));
        // no session: ignored
        w.event(ev("E8", None, EventKind::AddToCart, d1 + 6000));
        // S5: a late page view of day 1 that takes effect on day 2 at noon
        w.late_event(
            ev("E9", Some("S5"), EventKind::PageView, d1 + 9000),
            at("2024-03-01T12:00:00Z"),
        );
        let buy = |tx: &str, s: &str, ts| {
            let mut l = line(tx, "P1", "U1", ts);
            l.session_id = Some(s.into());
            l
        };
        w.line(buy("T1", "S1", d1 + 4000));
        w.line(buy("T2", "S2", d2 + 120_000));
        w.line(buy("T3", "S4", d2 + 6000));
        w.line(buy("T4", "S9", d2 + 7000)); // a session without events that day
        let row = |day, sessions, pv, cart, checkout, purchase, cart_purchased| FunnelRow {
            day,
            sessions,
            product_view_sessions: pv,
            cart_sessions: cart,
            checkout_sessions: checkout,
            purchase_sessions: purchase,
            cart_purchased,
        };
        assert_eq!(
            batch_funnel(&w.at(at("2024-03-02T00:00:00Z"))),
            vec![row(d1, 4, 1, 2, 1, 1, 1), row(d2, 2, 0, 0, 1, 2, 0),]
        );
        // before S2's purchase on day 2 takes effect
        assert_eq!(
            batch_funnel(&w.at(at("2024-03-01T00:01:00Z"))),
            vec![row(d1, 3, 1, 2, 1, 1, 1), row(d2, 2, 0, 0, 1, 1, 0)]
        );
        assert!(batch_funnel(&w.at(at("2024-02-29T00:00:00Z"))).is_empty());
    }
}
