//! Fraud patterns, one per `fraud_alerts` rule, each written straight into the delivery queue
//! (never late, duplicated or broken) and listed in the anomaly manifest.
//!
//! The windowed patterns (velocity, amount, geo) take a user with no order in the hour before
//! and reserve them for the hour after, so the alert a pattern raises is exactly the manifest's.

use super::data::CITIES;
use super::engine::Generator;
use super::fmt::{self, push_ts, TsStyle};
use super::session::{Act, Attr, Ctx, Disc, LineSpec, Order, NO_PRODUCT, WINDOW_MARGIN};
use super::world::{ip_addr, RowState};
use super::{Anomaly, GenStream, Note, Rule};
use shopdiff_schemas::time::{Ms, HOUR_MS};

/// More records than any pattern writes: a pattern starts only when this much room is left.
const MAX_PATTERN_RECORDS: u64 = 64;
/// The contract's amount threshold, in cents.
const AMOUNT: i64 = 500_000;

/// Turns the current arrival into the next fraud pattern; `false` when none could be made.
pub(super) fn start_pattern(g: &mut Generator) -> bool {
    if g.room() < MAX_PATTERN_RECORDS {
        return false;
    }
    // every record of a pattern lies after the clock: lead-ins start at most 40 s before t0
    let t0 = g.clock + g.frng.range(45_000, 75_000);
    // rules take turns; patterns stay within the normal traffic: none starts that would
    // outlast it (the expected end follows from the records left)
    let end = g.clock + g.expected_ms(g.room());
    let Some(rule) = (0..4)
        .map(|i| Rule::ALL[((g.pattern_turn + i) % 4) as usize])
        .find(|&r| t0 + [10, 40, 52, 26][r as usize] * 60_000 <= end)
    else {
        return false;
    };
    let variant_turn = g.rule_made[rule as usize];
    let quiet_since = t0 - HOUR_MS - WINDOW_MARGIN;
    let Some(user) = (0..256).map(|_| g.w.pick_user(&mut g.frng)).find(|&u| {
        let u = &g.w.users[u as usize];
        u.busy_until <= g.clock && u.last_order() < quiet_since
    }) else {
        return false;
    };
    let made = match rule {
        Rule::Velocity => velocity(g, user, t0),
        Rule::Amount => amount(g, user, t0, variant_turn % 2 == 1),
        Rule::Geo => geo(g, user, t0),
        Rule::RiskyIp => risky_ip(g, user, t0, variant_turn % 5),
    };
    if let Some(last) = made {
        let reserve = if rule == Rule::RiskyIp {
            60_000
        } else {
            HOUR_MS + WINDOW_MARGIN
        };
        g.w.users[user as usize].busy_until = last + reserve;
        g.pattern_turn = rule as u64 + 1;
        g.rule_made[rule as usize] += 1;
    }
    made.is_some()
}

fn home_ctx(g: &mut Generator, user: u32) -> Ctx {
    g.ids.session += 1;
    let u = &g.w.users[user as usize];
    Ctx {
        user,
        session: Some(g.ids.session),
        city: u.city,
        ip: g.w.ips[u.ip as usize].addr,
        device: u.device,
        attr: Attr::default(),
    }
}

fn event(g: &mut Generator, ctx: &Ctx, t: Ms, act: Act, product: u32) {
    let sub = if product == NO_PRODUCT {
        0
    } else {
        g.w.products[product as usize].sub
    };
    let json = g.event_json(ctx, t, TsStyle::Millis, act, product, sub, 15_000);
    let key = t + g.frng.range(0, 200);
    g.push_out(key, GenStream::Behavior, t, json, Note::Valid);
}

/// Writes an order of the given lines at `t`; returns its transaction number.
fn order(g: &mut Generator, ctx: &Ctx, t: Ms, currency: u8, lines: &[LineSpec]) -> u64 {
    g.ids.txn += 1;
    let (payment, provider) = g.payment(ctx.user);
    let o = Order {
        txn: g.ids.txn,
        currency,
        payment,
        provider,
    };
    let mut ts = String::with_capacity(24);
    push_ts(&mut ts, t, TsStyle::Millis);
    let key = t + g.frng.range(0, 200);
    for l in lines {
        let json = g.line_json(ctx, &o, l, &ts);
        g.push_out(key, GenStream::Transactions, t, json, Note::Valid);
    }
    let net = lines.iter().map(LineSpec::net).sum();
    g.w.users[ctx.user as usize].push_order(t, net);
    o.txn
}

/// Browses to a product and starts a checkout before an order at `t`.
fn lead_in(g: &mut Generator, ctx: &Ctx, t: Ms, product: u32) {
    let (a, b, c) = (
        g.frng.range(9_000, 20_000),
        g.frng.range(5_000, 8_000),
        g.frng.range(1_000, 4_000),
    );
    event(g, ctx, t - a, Act::ProductView, product);
    event(g, ctx, t - b, Act::AddToCart, product);
    event(g, ctx, t - c, Act::Checkout, NO_PRODUCT);
}

/// A product whose local price is at most `max` cents (the cheapest of a few tries).
fn cheap_product(g: &mut Generator, currency: u8, max: i64) -> Option<(u32, i64)> {
    let n = g.w.products.len();
    (0..48)
        .map(|_| {
            let p = g.frng.index(n) as u32;
            (p, g.w.local_price(p, currency))
        })
        .min_by_key(|&(p, price)| (price > max, if price > max { price } else { -(p as i64) }))
        .filter(|&(_, price)| price <= max && price > 0)
}

fn manifest(
    g: &mut Generator,
    rule: Rule,
    user: u32,
    key: String,
    first: Ms,
    last: Ms,
    variant: &'static str,
) {
    let user_id = g.w.user_id(user);
    g.anomalies.push(Anomaly {
        rule,
        key,
        user_id,
        first,
        last,
        variant,
        session_id: None,
        ip: None,
    });
}

/// Six to nine small orders within nine minutes.
fn velocity(g: &mut Generator, user: u32, t0: Ms) -> Option<Ms> {
    let currency = g.w.users[user as usize].currency;
    let (product, price) = cheap_product(g, currency, 30_000)?;
    let n = g.frng.range(6, 9) as usize;
    let ctx = home_ctx(g, user);
    event(g, &ctx, t0, Act::Landing, NO_PRODUCT);
    let mut t = t0 + 25_000;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        lead_in(g, &ctx, t, product);
        order(
            g,
            &ctx,
            t,
            currency,
            &[LineSpec {
                product,
                price,
                qty: 1,
                disc: Disc::Zero,
            }],
        );
        times.push(t);
        t += g.frng.range(25_000, 60_000);
    }
    let key = g.w.user_id(user);
    manifest(
        g,
        Rule::Velocity,
        user,
        key,
        times[5],
        times[n - 1],
        "burst",
    );
    Some(times[n - 1])
}

/// Expensive lines (over 5000.00 in an hour), in one currency or only over two.
fn amount(g: &mut Generator, user: u32, t0: Ms, two_currencies: bool) -> Option<Ms> {
    let home = g.w.users[user as usize].currency;
    let other = (0..g.w.currencies.len() as u8).find(|&c| c != home);
    let (currencies, targets) = match other {
        Some(o) if two_currencies => {
            let a = g.frng.range(300_000, 450_000);
            let b = AMOUNT - a + g.frng.range(1_000, 40_000);
            (vec![home, o], vec![a, b])
        }
        _ => {
            let k = g.frng.range(1, 3) as usize;
            let total = AMOUNT + g.frng.range(10_000, 800_000);
            (vec![home; k], vec![total / k as i64 + 1; k])
        }
    };
    let two = currencies.len() == 2 && currencies[0] != currencies[1];
    let mut orders: Vec<(u8, Vec<LineSpec>)> = Vec::new();
    for (&c, &target) in currencies.iter().zip(&targets) {
        // in two currencies, neither order alone may reach the threshold
        let cap = if two { AMOUNT - 1 } else { i64::MAX };
        orders.push((c, expensive_lines(g, c, target, cap)?));
    }
    let total: i64 = orders.iter().flat_map(|o| &o.1).map(LineSpec::net).sum();
    if total <= AMOUNT {
        return None;
    }
    let (mut t, mut last, mut cum, mut first) = (t0, t0, 0, None);
    for (c, lines) in &orders {
        let ctx = home_ctx(g, user);
        event(g, &ctx, t - 30_000, Act::Landing, NO_PRODUCT);
        lead_in(g, &ctx, t, lines[0].product);
        order(g, &ctx, t, *c, lines);
        cum += lines.iter().map(LineSpec::net).sum::<i64>();
        if cum > AMOUNT && first.is_none() {
            first = Some(t);
        }
        last = t;
        t += g.frng.range(3 * 60_000, 12 * 60_000);
    }
    let key = g.w.user_id(user);
    let variant = if two { "two_currencies" } else { "spike" };
    manifest(g, Rule::Amount, user, key, first?, last, variant);
    Some(last)
}

/// Up to three lines of expensive products (quantities up to 5) worth at least `target` cents,
/// or at most `cap` (by lowering quantities); `None` when the catalog cannot make it.
fn expensive_lines(g: &mut Generator, c: u8, target: i64, cap: i64) -> Option<Vec<LineSpec>> {
    let n = g.w.products.len();
    let mut lines: Vec<LineSpec> = Vec::new();
    let mut sum = 0;
    while sum < target && lines.len() < 3 {
        let (product, price) = (0..32)
            .map(|_| {
                let p = g.frng.index(n) as u32;
                (p, g.w.local_price(p, c))
            })
            .filter(|x| !lines.iter().any(|l| l.product == x.0))
            .max_by_key(|x| x.1)?;
        let qty = ((target - sum + price - 1) / price.max(1)).clamp(1, 5);
        sum += price * qty;
        lines.push(LineSpec {
            product,
            price,
            qty,
            disc: Disc::Zero,
        });
    }
    while sum > cap {
        let l = lines.last_mut()?;
        if l.qty == 1 {
            return None;
        }
        l.qty -= 1;
        sum -= l.price;
    }
    Some(lines)
}

/// An order at home, then one from a far-away country within the hour.
fn geo(g: &mut Generator, user: u32, t0: Ms) -> Option<Ms> {
    let currency = g.w.users[user as usize].currency;
    let (product, price) = cheap_product(g, currency, 30_000)?;
    let home = home_ctx(g, user);
    event(g, &home, t0 - 20_000, Act::Landing, NO_PRODUCT);
    lead_in(g, &home, t0, product);
    let line = [LineSpec {
        product,
        price,
        qty: 1,
        disc: Disc::Zero,
    }];
    order(g, &home, t0, currency, &line);
    let far: Vec<u16> = (0..CITIES.len() as u16)
        .filter(|&c| CITIES[c as usize].weight == 0)
        .collect();
    let city = far[g.frng.index(far.len())];
    let mut away = home_ctx(g, user);
    away.city = city;
    away.device = g.frng.index(super::data::DEVICES.len()) as u8;
    away.ip = ip_addr(
        41,
        58 + g.frng.below(60) as u8,
        g.frng.below(256) as u8,
        1 + g.frng.below(250) as u8,
    );
    let t1 = t0 + g.frng.range(10 * 60_000, 50 * 60_000);
    event(g, &away, t1 - 40_000, Act::Landing, NO_PRODUCT);
    lead_in(g, &away, t1, product);
    order(g, &away, t1, currency, &line);
    let key = g.w.user_id(user);
    manifest(g, Rule::Geo, user, key, t1, t1, "two_countries");
    Some(t1)
}

/// A session whose behavior events carry a risky IP: Tor, a high score, exactly 0.800, an IP
/// made risky by a later table change, or a risky IP seen only after the purchase.
fn risky_ip(g: &mut Generator, user: u32, t0: Ms, variant: u64) -> Option<Ms> {
    let currency = g.w.users[user as usize].currency;
    let (product, price) = cheap_product(g, currency, 30_000)?;
    let mut ctx = home_ctx(g, user);
    let (name, risky_ix) = choose_risky_ip(g, variant);
    let risky_addr = g.w.ips[risky_ix as usize].addr;
    if name != "after_purchase" {
        ctx.ip = risky_addr;
    }
    event(g, &ctx, t0, Act::Landing, NO_PRODUCT);
    let tp = t0 + g.frng.range(60_000, 240_000);
    lead_in(g, &ctx, tp, product);
    let line = [LineSpec {
        product,
        price,
        qty: 1,
        disc: Disc::Zero,
    }];
    let txn = order(g, &ctx, tp, currency, &line);
    let when = match name {
        "after_purchase" => {
            let t = tp + g.frng.range(5_000, 60_000);
            ctx.ip = risky_addr;
            event(g, &ctx, t, Act::Confirm, NO_PRODUCT);
            t
        }
        "change" => {
            let at = tp + g.frng.range(60_000, 20 * 60_000);
            let ip = &mut g.w.ips[risky_ix as usize];
            ip.risk = Some(900);
            ip.row = RowState::Present;
            let row = super::rows::ip_row(&g.w, risky_ix);
            let json = super::changes::change_json("ip_reputation", "upsert", at, &row);
            g.push_out(at, GenStream::Change, at, json, Note::Valid);
            at
        }
        _ => tp,
    };
    let mut ip = String::new();
    super::world::push_ip(&mut ip, risky_addr);
    g.anomalies.push(Anomaly {
        rule: Rule::RiskyIp,
        key: fmt::id("T", txn, g.w.widths.txn),
        user_id: g.w.user_id(user),
        first: when,
        last: when,
        variant: name,
        session_id: Some(fmt::id("S", ctx.session.unwrap_or(0), g.w.widths.session)),
        ip: Some(ip),
    });
    Some(when)
}

/// The variant's name and IP: variants 0-4 are Tor, a high score, exactly 0.800, an IP a later
/// change makes risky (while unused ones last), and a Tor IP seen only after the purchase.
fn choose_risky_ip(g: &mut Generator, variant: u64) -> (&'static str, u32) {
    let pool = &g.w.pools;
    let turning = pool
        .turning
        .iter()
        .copied()
        .find(|&i| !g.w.ips[i as usize].risky());
    match (variant, turning) {
        (3, Some(i)) => ("change", i),
        _ => {
            let kind = [0, 1, 2, 1, 0][variant as usize % 5];
            let k = g.frng.index(pool.risky.len() / 3);
            let name = match (variant, kind) {
                (4, _) => "after_purchase",
                (_, 0) => "tor",
                (_, 1) => "score",
                _ => "exact_threshold",
            };
            (name, pool.risky[3 * k + kind])
        }
    }
}
