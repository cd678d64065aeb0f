//! The tables: initial rows (with a few invalid ones when `bad_rate > 0`) and changes over the
//! simulated period (prices, costs, inventory, product launches and deletes, customer tiers,
//! registration fixes, sign-ups and deletes, IP reputation), each applied to the world's state
//! as it is written so later traffic sees it.

use super::defects::{remove_field, set_value, value};
use super::engine::Generator;
use super::fmt::{self, push_ts, TsStyle};
use super::rng::Rng;
use super::rows::{customer_row, ip_row, key_row, product_row};
use super::world::{ip_addr, RowState, World};
use super::{GenConfig, GenStream, InitialTables, Note, TableLine};
use shopdiff_schemas::time::{Ms, DAY_MS};
use shopdiff_schemas::Reason;

/// When changes happen: one every `every` event records.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    every: u64,
    next_at: u64,
    left: u64,
    /// Every `bad_every`-th change is followed by an invalid one (0: none).
    bad_every: u64,
    made: u64,
    bad_made: u64,
}

impl Plan {
    pub fn new(cfg: &GenConfig) -> Plan {
        let n = if cfg.changes && cfg.records > 0 {
            (cfg.records / 2_000).max(30)
        } else {
            0
        };
        let bad = if cfg.bad_rate > 0.0 && n > 0 {
            ((n as f64 * cfg.bad_rate) as u64).max(6).min(n)
        } else {
            0
        };
        let every = (cfg.records / (n + 1)).max(1);
        Plan {
            every,
            next_at: every,
            left: n,
            bad_every: n.checked_div(bad).unwrap_or(0),
            made: 0,
            bad_made: 0,
        }
    }
}

/// `{"table":..,"op":..,"at":..,"row":..}`.
pub fn change_json(table: &str, op: &str, at: Ms, row: &str) -> String {
    let mut s = String::with_capacity(row.len() + 80);
    s.push_str("{\"table\":\"");
    s.push_str(table);
    s.push_str("\",\"op\":\"");
    s.push_str(op);
    s.push_str("\",\"at\":\"");
    push_ts(&mut s, at, TsStyle::Millis);
    s.push_str("\",\"row\":");
    s.push_str(row);
    s.push('}');
    s
}

/// Makes the changes whose turn has come (by event records produced).
pub(super) fn due(g: &mut Generator) {
    while g.plan.left > 0 && g.produced >= g.plan.next_at {
        g.plan.next_at += g.plan.every;
        g.plan.left -= 1;
        g.plan.made += 1;
        let at = g.clock + g.crng.range(0, 30_000);
        let (json, note) = make_change(g, at);
        g.push_out(at, GenStream::Change, at, json, note);
        if g.plan.bad_every > 0 && g.plan.made.is_multiple_of(g.plan.bad_every) {
            let at = at + g.crng.range(1, 5_000);
            let (json, reason) = bad_change(g, at);
            g.plan.bad_made += 1;
            g.push_out(at, GenStream::Change, at, json, Note::Bad(reason));
        }
    }
}

fn present_product(w: &World, rng: &mut Rng) -> Option<u32> {
    (0..32)
        .map(|_| rng.index(w.products.len()) as u32)
        .find(|&p| w.products[p as usize].row == RowState::Present)
}

fn user_in(w: &World, rng: &mut Rng, state: RowState) -> Option<u32> {
    (0..64)
        .map(|_| rng.index(w.users.len()) as u32)
        .find(|&u| w.users[u as usize].row == state)
}

/// One valid change at `at`, applied to the world.
fn make_change(g: &mut Generator, at: Ms) -> (String, Note) {
    let rng = &mut g.crng;
    let w = &mut g.w;
    let json = match rng.weighted(&[18, 8, 22, 6, 4, 12, 6, 3, 6, 15]) {
        k @ 0..=4 => product_change(w, rng, at, k),
        k @ 5..=8 => customer_change(w, rng, at, k),
        _ => None,
    };
    (json.unwrap_or_else(|| ip_change(w, rng, at)), Note::Valid)
}

/// A price (0), cost (1) or inventory (2) change, a product launch (3) or a delete (4).
fn product_change(w: &mut World, rng: &mut Rng, at: Ms, kind: usize) -> Option<String> {
    if kind == 3 {
        let absent = w
            .extras
            .iter()
            .copied()
            .find(|&p| w.products[p as usize].row == RowState::Absent);
        let p = absent.unwrap_or_else(|| w.add_product(rng));
        let pr = &mut w.products[p as usize];
        pr.row = RowState::Present;
        pr.updated = Some(at);
        return Some(change_json("products", "upsert", at, &product_row(w, p)));
    }
    let p = present_product(w, rng)?;
    let pr = &mut w.products[p as usize];
    match kind {
        0 => pr.price = (pr.price * rng.range(85, 115) / 100).max(100) / 100 * 100 - 1,
        1 => pr.cost = pr.cost * rng.range(90, 110) / 100,
        2 if rng.chance(0.5) => pr.inventory += rng.range(50, 500),
        2 => pr.inventory = rng.range(0, 20),
        _ => {
            pr.row = RowState::Deleted;
            let id = fmt::id("P", p as u64, w.widths.product);
            return Some(change_json(
                "products",
                "delete",
                at,
                &key_row("product_id", &id),
            ));
        }
    }
    pr.cost = pr.cost.min(pr.price * 9 / 10);
    pr.updated = Some(at);
    Some(change_json("products", "upsert", at, &product_row(w, p)))
}

/// A tier change (5), a registration moved to another month (6), a delete (7) or a sign-up of
/// a user without a row (8).
fn customer_change(w: &mut World, rng: &mut Rng, at: Ms, kind: usize) -> Option<String> {
    let state = if kind == 8 {
        RowState::Absent
    } else {
        RowState::Present
    };
    let u = user_in(w, rng, state)?;
    let user = &mut w.users[u as usize];
    match kind {
        5 => user.tier = (user.tier + 1 + rng.below(2) as u8) % 4,
        6 => {
            let shift = rng.range(32, 45) * DAY_MS;
            user.registered += if rng.chance(0.5) { shift } else { -shift };
        }
        7 => {
            user.row = RowState::Deleted;
            let id = w.user_id(u);
            return Some(change_json(
                "customers",
                "delete",
                at,
                &key_row("user_id", &id),
            ));
        }
        _ => {
            user.row = RowState::Present;
            user.registered = at - rng.range(0, 3_600_000);
        }
    }
    Some(change_json("customers", "upsert", at, &customer_row(w, u)))
}

/// A normal user's home IP gets a new (low) risk assessment.
fn ip_change(w: &mut World, rng: &mut Rng, at: Ms) -> String {
    let u = rng.index(w.users.len());
    let ix = w.users[u].ip;
    let ip = &mut w.ips[ix as usize];
    ip.row = RowState::Present;
    ip.risk = Some(rng.range(0, 650) as u16);
    ip.tor = false;
    change_json("ip_reputation", "upsert", at, &ip_row(w, ix))
}

/// A row of `table` broken by one defect, and the reason it must be rejected with.
fn break_row(rng: &mut Rng, table: &str, row: &str, turn: u64) -> Option<(String, Reason)> {
    let r = match (table, turn % 3) {
        ("products", 0) => (remove_field(row, "cost")?, Reason::MissingField),
        ("products", 1) => (
            set_value(row, "price", &format!("\"{}\"", value(row, "price")?))?,
            Reason::BadType,
        ),
        ("products", _) => match rng.below(2) {
            0 => (set_value(row, "inventory_count", "12.5")?, Reason::BadType),
            _ => (
                set_value(row, "created_at", "\"2024-02-30 10:00:00\"")?,
                Reason::BadTimestamp,
            ),
        },
        ("customers", 0) => (set_value(row, "email", "null")?, Reason::MissingField),
        ("customers", 1) => (set_value(row, "email", "42")?, Reason::BadType),
        ("customers", _) => (
            set_value(row, "registration_date", "\"2024-13-01T00:00:00Z\"")?,
            Reason::BadTimestamp,
        ),
        (_, 0) => (
            set_value(
                row,
                "risk_score",
                &format!("\"{}\"", value(row, "risk_score")?),
            )?,
            Reason::BadType,
        ),
        (_, 1) => (set_value(row, "is_tor", "\"false\"")?, Reason::BadType),
        _ => (remove_field(row, "ip_address")?, Reason::MissingField),
    };
    Some(r)
}

/// An invalid change (not applied): a broken upsert of an existing row.
fn bad_change(g: &mut Generator, at: Ms) -> (String, Reason) {
    let rng = &mut g.crng;
    let w = &g.w;
    let turn = g.plan.bad_made;
    let (table, row) = match turn % 3 {
        0 => (
            "products",
            present_product(w, rng).map(|p| product_row(w, p)),
        ),
        1 => (
            "customers",
            user_in(w, rng, RowState::Present).map(|u| customer_row(w, u)),
        ),
        _ => {
            // an invalid change that would make a normal IP risky if it were applied
            let ix = w.users[rng.index(w.users.len())].ip;
            (
                "ip_reputation",
                set_value(&ip_row(w, ix), "risk_score", "0.990"),
            )
        }
    };
    let row = row.unwrap_or_else(|| ip_row(w, w.users[0].ip));
    let table = if row.starts_with("{\"ip_address\"") {
        "ip_reputation"
    } else {
        table
    };
    let (broken, reason) = break_row(rng, table, &row, turn / 3).unwrap_or_else(|| {
        (
            set_value(&row, "is_tor", "1").unwrap_or_default(),
            Reason::BadType,
        )
    });
    (change_json(table, "upsert", at, &broken), reason)
}

/// A row for an invalid initial row of table `k` with its own identity: a product or user
/// without a row, or an address nobody uses.
fn own_identity_row(w: &mut World, rng: &mut Rng, k: usize, turn: u64) -> Option<String> {
    match k {
        0 => {
            let extra = w.extras.get(turn as usize % w.extras.len().max(1));
            extra.map(|&p| product_row(w, p))
        }
        1 => user_in(w, rng, RowState::Absent).map(|u| customer_row(w, u)),
        _ => {
            let addr = ip_addr(198, 51, 100, 1 + turn as u8);
            let ix = w.push_ip(addr, false, Some(rng.range(0, 900) as u16), false, false);
            Some(ip_row(w, ix))
        }
    }
}

/// The initial rows, with invalid ones (own identities) mixed in when `bad_rate > 0`.
pub(super) fn initial_tables(w: &mut World, cfg: &GenConfig, rng: &mut Rng) -> InitialTables {
    let valid = |json| TableLine {
        json,
        note: Note::Valid,
    };
    let mut t = InitialTables {
        products: (0..w.products.len() as u32)
            .filter(|&p| w.products[p as usize].row == RowState::Present)
            .map(|p| valid(product_row(w, p)))
            .collect(),
        customers: (0..w.users.len() as u32)
            .filter(|&u| w.users[u as usize].row == RowState::Present)
            .map(|u| valid(customer_row(w, u)))
            .collect(),
        ip_reputation: (0..w.ips.len() as u32)
            .filter(|&i| w.ips[i as usize].row == RowState::Present)
            .map(|i| valid(ip_row(w, i)))
            .collect(),
    };
    if cfg.bad_rate <= 0.0 {
        return t;
    }
    for (k, table) in ["products", "customers", "ip_reputation"]
        .into_iter()
        .enumerate()
    {
        let n = match k {
            0 => t.products.len(),
            1 => t.customers.len(),
            _ => t.ip_reputation.len(),
        };
        for turn in 0..((n as f64 * cfg.bad_rate * 0.5) as u64).clamp(3, 50) {
            let row = own_identity_row(w, rng, k, turn);
            let Some((json, reason)) = row.and_then(|r| break_row(rng, table, &r, turn)) else {
                continue;
            };
            let lines = match k {
                0 => &mut t.products,
                1 => &mut t.customers,
                _ => &mut t.ip_reputation,
            };
            let at = rng.index(lines.len() + 1);
            lines.insert(
                at,
                TableLine {
                    json,
                    note: Note::Bad(reason),
                },
            );
        }
    }
    t
}
