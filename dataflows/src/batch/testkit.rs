//! Small builders for the twins' hand-made tests.

use super::Visible;
use shopdiff_schemas::quality::{Reason, Source};
use shopdiff_schemas::records::{Event, EventKind, Line};
use shopdiff_schemas::tables::{Customer, IpRep, Product};
use shopdiff_schemas::time::{ceil_tick, parse_rfc3339, Ms};
use shopdiff_schemas::Str;
use std::collections::BTreeMap;

pub const TICK: u64 = 1000;

/// UTC milliseconds of an RFC 3339 time.
pub fn ms(s: &str) -> Ms {
    parse_rfc3339(s).unwrap_or_else(|| panic!("bad time {s}"))
}

/// The same, as a logical time.
pub fn at(s: &str) -> u64 {
    ms(s) as u64
}

/// A line of 10.00 USD × 1, no discount, every dimension `none`, no session.
pub fn line(tx: &str, product: &str, user: &str, ts: Ms) -> Line {
    Line {
        transaction_id: tx.into(),
        product_id: product.into(),
        user_id: user.into(),
        session_id: None,
        ts,
        price: 1000,
        quantity: 1,
        discount: 0,
        currency: "USD".into(),
        category_id: "none".into(),
        brand: "none".into(),
        country: "none".into(),
        payment_method: "none".into(),
        channel: "none".into(),
        device_type: "none".into(),
    }
}

/// A behavior event.
pub fn event(id: &str, user: &str, session: Option<&str>, kind: EventKind, ts: Ms) -> Event {
    Event {
        event_id: id.into(),
        user_id: user.into(),
        session_id: session.map(Str::from),
        kind,
        product_id: None,
        ip: None,
        ts,
    }
}

/// Everything a test feeds the twins; [`World::at`] views it at one `as_of`.
#[derive(Debug, Default)]
pub struct World {
    pub lines: Vec<(Line, u64)>,
    pub events: Vec<(Event, u64)>,
    pub products: BTreeMap<Str, Product>,
    pub customers: BTreeMap<Str, Customer>,
    pub ips: BTreeMap<Str, IpRep>,
    pub quality: Vec<(Source, Reason, u64, i64)>,
}

impl World {
    /// A line on time: it takes effect at `ceil_tick(ts)`.
    pub fn line(&mut self, l: Line) {
        let t = ceil_tick(l.ts, TICK);
        self.lines.push((l, t));
    }
    /// A line that takes effect at `effect` (a late one when after `ceil_tick(ts)`).
    pub fn late_line(&mut self, l: Line, effect: u64) {
        self.lines.push((l, effect));
    }
    pub fn event(&mut self, e: Event) {
        let t = ceil_tick(e.ts, TICK);
        self.events.push((e, t));
    }
    pub fn late_event(&mut self, e: Event, effect: u64) {
        self.events.push((e, effect));
    }
    pub fn product(&mut self, id: &str, cost: i64, inventory_count: i64) {
        let p = Product {
            product_id: id.into(),
            cost,
            inventory_count,
        };
        self.products.insert(id.into(), p);
    }
    pub fn customer(&mut self, id: &str, registration_date: Ms) {
        let c = Customer {
            user_id: id.into(),
            registration_date,
        };
        self.customers.insert(id.into(), c);
    }
    pub fn ip(&mut self, addr: &str, risk: Option<i64>, is_tor: bool) {
        let r = IpRep {
            ip_address: addr.into(),
            risk,
            is_tor,
        };
        self.ips.insert(addr.into(), r);
    }
    pub fn at(&self, as_of: u64) -> Visible<'_> {
        Visible {
            as_of,
            lines: &self.lines,
            events: &self.events,
            products: &self.products,
            customers: &self.customers,
            ips: &self.ips,
            quality: &self.quality,
            tick_ms: TICK,
        }
    }
}
