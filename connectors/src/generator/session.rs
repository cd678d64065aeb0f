//! Normal shopping sessions as small state machines: land, browse (page views, searches,
//! product views), fill and empty a cart, start a checkout, then buy or abandon. Each step
//! writes one behavior event (or the lines of one order) and schedules the next step.

use super::data::{self, Dst, CHANNELS, CITIES, DEVICES, PAYMENTS};
use super::engine::Generator;
use super::fmt::{push_ts, TsStyle};
use super::world::region;
use super::GenStream;
use shopdiff_schemas::time::{civil_from_days, Ms, DAY_MS};

pub const NO_PRODUCT: u32 = u32::MAX;
/// Normal users stay well below the fraud thresholds: at most 3 orders in 10 minutes (see
/// `steps`), at most this much net money (cents, all currencies) in one hour.
pub const MAX_NET_HOUR: i64 = 300_000;
/// Windows are checked with a margin over the contract's 10 minutes and 1 hour.
pub const WINDOW_MARGIN: Ms = 5_000;

/// A session's next action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Landing,
    Category,
    Search,
    ProductView,
    Other,
    AddToCart,
    Remove,
    Checkout,
    Purchase,
    Confirm,
}

impl Act {
    pub fn event_type(self) -> &'static str {
        match self {
            Act::Landing | Act::Category | Act::Confirm => "page_view",
            Act::Search => "search",
            Act::ProductView => "product_view",
            Act::Other => "wishlist_add",
            Act::AddToCart => "add_to_cart",
            Act::Remove => "remove_from_cart",
            Act::Checkout | Act::Purchase => "checkout_start",
        }
    }
}

/// Marketing attribution of a session: `form` 0 full, 1 absent, 2 null, 3 all fields null.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attr {
    pub form: u8,
    pub channel: u8,
    pub campaign: u8,
    pub referrer: u8,
}

/// Who, where and how: what the records of a session share.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub user: u32,
    /// `None`: events without a session id.
    pub session: Option<u64>,
    pub city: u16,
    pub ip: u32,
    pub device: u8,
    pub attr: Attr,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub ctx: Ctx,
    pub sub: u16,
    pub next: Act,
    pub browse_left: u8,
    pub last: u32,
    pub cart: [(u32, u8); 4],
    pub cart_len: u8,
    pub txn: u64,
    pub steps: u8,
}

/// How `discount_applied` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disc {
    Zero,
    ZeroFloat,
    Absent,
    Null,
    /// Thousandths of the currency unit.
    Mills(i64),
}

impl Disc {
    /// Cents, rounded half away from zero as the contract reads it.
    pub fn cents(self) -> i64 {
        match self {
            Disc::Mills(m) => (m + 5).div_euclid(10),
            _ => 0,
        }
    }
}

/// One order line to write.
#[derive(Debug, Clone, Copy)]
pub struct LineSpec {
    pub product: u32,
    pub price: i64,
    pub qty: i64,
    pub disc: Disc,
}

impl LineSpec {
    pub fn net(&self) -> i64 {
        self.price * self.qty - self.disc.cents()
    }
}

/// The order-level fields of a transaction.
#[derive(Debug, Clone, Copy)]
pub struct Order {
    pub txn: u64,
    pub currency: u8,
    pub payment: u8,
    pub provider: u8,
}

/// A discount for a line of `gross` cents: mostly none, some percentages (a share with three
/// decimals ending in 5), some coupons, rarely the whole line.
pub fn discount(rng: &mut super::rng::Rng, gross: i64) -> Disc {
    match rng.below(1000) {
        0..=699 => Disc::Zero,
        700..=729 => Disc::ZeroFloat,
        730..=739 => Disc::Absent,
        740..=749 => Disc::Null,
        750..=929 => {
            let pct = rng.range(1, 6) * 5;
            let m = gross * 10 * pct / 100;
            if rng.chance(0.4) && m >= 10 {
                Disc::Mills(m / 10 * 10 - 5)
            } else {
                Disc::Mills(m / 10 * 10)
            }
        }
        930..=996 => {
            let c = rng.range(1, 3) * 500;
            if c * 2 <= gross {
                Disc::Mills(c * 10)
            } else {
                Disc::Zero
            }
        }
        _ => Disc::Mills(gross * 10),
    }
}

/// The UTC offset in minutes of a place at a time.
pub fn local_offset(city: u16, t: Ms) -> i32 {
    let c = &CITIES[city as usize];
    let (_, m, _) = civil_from_days(t.div_euclid(DAY_MS));
    c.tz + if c.dst == Dst::North && (4..=10).contains(&m) {
        60
    } else {
        0
    }
}

impl Generator {
    /// A timestamp style for a record at `t`, and the record's event time (a whole second for
    /// the seconds-only style).
    pub(super) fn ts_style(&mut self, city: u16, t: Ms) -> (TsStyle, Ms) {
        match self.rng.below(1000) {
            0..=24 => (TsStyle::Offset(local_offset(city, t)), t),
            25..=44 => (TsStyle::Seconds, (t + 999).div_euclid(1000) * 1000),
            _ => (TsStyle::Millis, t),
        }
    }

    pub(super) fn attribution(&mut self) -> Attr {
        let cw: Vec<u32> = CHANNELS.iter().map(|c| c.weight).collect();
        let channel = self.rng.weighted(&cw) as u8;
        let form = match self.rng.below(100) {
            0..=77 => 0,
            78..=92 => 1,
            93..=96 => 2,
            _ => 3,
        };
        Attr {
            form,
            channel,
            campaign: self.rng.below(data::CAMPAIGNS.len() as u64 + 3) as u8,
            referrer: self.rng.below(4) as u8,
        }
    }

    /// Writes and produces the lines of one order at `t`.
    pub(super) fn emit_order(
        &mut self,
        ctx: &Ctx,
        order: &Order,
        lines: &[LineSpec],
        t: Ms,
        noisy: bool,
    ) -> Ms {
        let (style, t) = self.ts_style(ctx.city, t);
        let mut ts = String::with_capacity(32);
        push_ts(&mut ts, t, style);
        let jsons: Vec<String> = lines
            .iter()
            .map(|l| self.line_json(ctx, order, l, &ts))
            .collect();
        self.produce(GenStream::Transactions, t, jsons, noisy);
        t
    }

    /// A payment method (the user's usual one mostly) and provider for an order.
    pub(super) fn payment(&mut self, user: u32) -> (u8, u8) {
        let u = &self.w.users[user as usize];
        let method = if self.rng.chance(0.8) {
            u.payment as usize
        } else {
            let r = region(CITIES[u.city as usize].country);
            let w: Vec<u32> = PAYMENTS.iter().map(|p| p.weights[r]).collect();
            self.rng.weighted(&w)
        };
        (
            method as u8,
            self.rng.below(PAYMENTS[method].providers.len() as u64) as u8,
        )
    }

    /// Starts a normal session for a free user, if one can be found.
    pub(super) fn start_session(&mut self) {
        let t = self.clock;
        let Some(user) = (0..24)
            .map(|_| self.w.pick_user(&mut self.rng))
            .find(|&u| self.w.users[u as usize].busy_until <= t)
        else {
            return;
        };
        self.w.users[user as usize].busy_until = Ms::MAX;
        let u = &self.w.users[user as usize];
        let (city, home_ip, fav_device) = (u.city, self.w.ips[u.ip as usize].addr, u.device);
        let device = if self.rng.chance(0.85) {
            fav_device
        } else {
            let w: Vec<u32> = DEVICES.iter().map(|d| d.weight).collect();
            self.rng.weighted(&w) as u8
        };
        let mobile = DEVICES[device as usize].kind == "mobile";
        let ip = if mobile && self.rng.chance(0.3) || self.rng.chance(0.002) {
            let pool = &self.w.pools.carrier;
            self.w.ips[pool[self.rng.index(pool.len())] as usize].addr
        } else {
            home_ip
        };
        self.ids.session += 1;
        let id = self.ids.session;
        let attr = self.attribution();
        let ctx = Ctx {
            user,
            session: (!self.rng.chance(0.003)).then_some(id),
            city,
            ip,
            device,
            attr,
        };
        let sub = self.w.pick_sub(&mut self.rng, user) as u16;
        let s = Session {
            ctx,
            sub,
            next: if self.rng.chance(0.55) {
                Act::Landing
            } else {
                Act::Category
            },
            browse_left: self.rng.weighted(&[10, 22, 24, 18, 11, 7, 5, 3]) as u8,
            last: NO_PRODUCT,
            cart: [(NO_PRODUCT, 0); 4],
            cart_len: 0,
            txn: 0,
            steps: 0,
        };
        self.add_session(s, t);
    }
}

/// Net cents in the currency as a plain number, for the per-user hourly cap.
pub fn order_net(lines: &[LineSpec]) -> i64 {
    lines.iter().map(LineSpec::net).sum()
}
