//! Table rows as JSON objects keyed by column name (all DDL columns), rendered from the world's
//! state. Per-entity details that never change (names, emails, SKUs) come from a random stream
//! derived from the entity's index, so re-rendering a row after a change keeps them.

use super::data::{self, CATEGORIES, CITIES, TAGS, TIERS};
use super::fmt::{self, push_cents, push_id, push_json_str, push_risk, push_ts, TsStyle};
use super::rng::{mix64, Rng};
use super::world::{push_ip, World, STREAM_CUSTOMER, STREAM_IP, STREAM_PRODUCT};
use shopdiff_schemas::time::{Ms, DAY_MS};

fn entity_rng(w: &World, stream: u64, i: u64) -> Rng {
    Rng::new(
        w.seed ^ mix64(i.wrapping_mul(0x2545_F491_4F6C_DD1D)),
        stream,
    )
}

fn null(out: &mut String, k: &str) {
    fmt::key(out, k);
    out.push_str("null,");
}

fn kv_json(out: &mut String, k: &str, v: &str) {
    fmt::key(out, k);
    push_json_str(out, v);
    out.push(',');
}

fn kv_i64(out: &mut String, k: &str, v: i64) {
    fmt::key(out, k);
    fmt::push_i64(out, v);
    out.push(',');
}

fn kv_cents(out: &mut String, k: &str, v: i64) {
    fmt::key(out, k);
    push_cents(out, v);
    out.push(',');
}

fn kv_bool(out: &mut String, k: &str, v: bool) {
    fmt::key(out, k);
    out.push_str(if v { "true," } else { "false," });
}

/// A table time in one of the forms the contract accepts; `style` is a draw of `0..10`.
fn kv_ts(out: &mut String, k: &str, ms: Ms, style: u64) {
    fmt::key(out, k);
    out.push('"');
    match style {
        0 => fmt::push_sql_ts(out, ms / 1000 * 1000),
        1 => push_ts(out, ms / 1000 * 1000, TsStyle::Seconds),
        _ => push_ts(out, ms, TsStyle::Millis),
    }
    out.push_str("\",");
}

fn close(out: &mut String) {
    if out.ends_with(',') {
        out.pop();
    }
    out.push('}');
}

/// The `customers` row of user `u` in its current state (registration date, tier).
pub fn customer_row(w: &World, u: u32) -> String {
    let mut r = entity_rng(w, STREAM_CUSTOMER, u as u64);
    let mut s = String::with_capacity(640);
    s.push('{');
    fmt::key(&mut s, "user_id");
    s.push('"');
    push_id(&mut s, "U", u as u64, w.widths.user);
    s.push_str("\",");
    push_person(&mut s, w, u, &mut r);
    push_account(&mut s, w, u, &mut r);
    push_contact(&mut s, w, u, &mut r);
    close(&mut s);
    s
}

/// `email` to `gender`.
fn push_person(s: &mut String, w: &World, u: u32, r: &mut Rng) {
    let country = data::country(CITIES[w.users[u as usize].city as usize].country);
    let first = *r.pick(data::FIRST_NAMES);
    let last = *r.pick(data::LAST_NAMES);
    let local: String = last.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    let domain = r.pick(data::EMAIL_DOMAINS);
    let email = format!(
        "{}.{}{u}@{domain}",
        first.to_ascii_lowercase(),
        local.to_ascii_lowercase()
    );
    kv_json(s, "email", &email);
    if r.chance(0.02) {
        null(s, "first_name");
    } else {
        kv_json(s, "first_name", first);
    }
    kv_json(s, "last_name", last);
    if r.chance(0.15) {
        null(s, "phone");
    } else {
        let phone = format!("{}{}", country.phone, r.range(2_000_000_000, 9_999_999_999));
        kv_json(s, "phone", &phone);
    }
    if r.chance(0.2) {
        null(s, "date_of_birth");
    } else {
        fmt::key(s, "date_of_birth");
        s.push('"');
        fmt::push_date(s, -r.range(-36 * 365, 20 * 365) * DAY_MS);
        s.push_str("\",");
    }
    match r.weighted(&[47, 45, 2, 6]) {
        0 => kv_json(s, "gender", "female"),
        1 => kv_json(s, "gender", "male"),
        2 => kv_json(s, "gender", "other"),
        _ => null(s, "gender"),
    }
}

/// `registration_date` to `marketing_consent`.
fn push_account(s: &mut String, w: &World, u: u32, r: &mut Rng) {
    let user = &w.users[u as usize];
    kv_ts(s, "registration_date", user.registered, r.below(10));
    // drawn whether used or not, so a changed row keeps every other detail
    let (no_login, login, style) = (r.chance(0.1), r.range(0, 365 * DAY_MS), r.below(10));
    if user.registered > w.start || no_login {
        null(s, "last_login");
    } else {
        let login = user.registered + login % (w.start - user.registered).max(1);
        kv_ts(s, "last_login", login, style);
    }
    let status = ["active", "inactive", "suspended", "closed"][r.weighted(&[94, 3, 2, 1])];
    kv_json(s, "account_status", status);
    kv_json(s, "customer_tier", TIERS[user.tier as usize % TIERS.len()]);
    if r.chance(0.1) {
        null(s, "lifetime_value");
    } else {
        kv_cents(s, "lifetime_value", r.range(0, 2_500_000));
    }
    if r.chance(0.05) {
        null(s, "total_orders");
    } else {
        kv_i64(s, "total_orders", r.range(0, 120));
    }
    let country = data::country(CITIES[user.city as usize].country);
    let lang = if r.chance(0.9) {
        country.language
    } else {
        "en"
    };
    kv_json(s, "preferred_language", lang);
    kv_bool(s, "marketing_consent", r.chance(0.55));
}

/// `address` and `preferences` (JSONB).
fn push_contact(s: &mut String, w: &World, u: u32, r: &mut Rng) {
    let user = &w.users[u as usize];
    let city = &CITIES[user.city as usize];
    if r.chance(0.03) {
        null(s, "address");
    } else {
        let street = format!("{} {}", r.range(1, 999), r.pick(data::STREETS));
        fmt::key(s, "address");
        s.push_str("{\"street\":");
        push_json_str(s, &street);
        s.push_str(&format!(
            ",\"city\":\"{}\",\"state\":\"{}\",\"zip_code\":\"{}\",\"country\":\"{}\"}},",
            city.city, city.state, city.zip, city.country
        ));
    }
    if r.chance(0.05) {
        null(s, "preferences");
    } else {
        let (a, b) = (user.fav[0] as usize, user.fav[1] as usize);
        s.push_str(&format!(
            "\"preferences\":{{\"newsletter\":{},\"categories\":[\"{}\",\"{}\"]}},",
            r.chance(0.4),
            CATEGORIES[a].id,
            CATEGORIES[b].id
        ));
    }
}

/// The `products` row of product `p` in its current state (price, cost, inventory).
pub fn product_row(w: &World, p: u32) -> String {
    let prod = &w.products[p as usize];
    let mut r = entity_rng(w, STREAM_PRODUCT, p as u64);
    let cat = &CATEGORIES[prod.cat as usize];
    let sub = &cat.subs[w.subs[prod.sub as usize].1 as usize];
    let pid = fmt::id("P", p as u64, w.widths.product);
    let mut s = String::with_capacity(640);
    s.push('{');
    kv_json(&mut s, "product_id", &pid);
    kv_json(&mut s, "name", &prod.name);
    if r.chance(0.1) {
        null(&mut s, "description");
    } else {
        let brand = cat.brands[prod.brand as usize];
        let d = format!("{} by {brand}. {} for everyday use.", sub.name, prod.name);
        kv_json(&mut s, "description", &d);
    }
    kv_json(&mut s, "category_id", cat.id);
    kv_json(&mut s, "category_name", cat.name);
    if prod.has_sub {
        kv_json(&mut s, "subcategory", sub.name);
    } else {
        null(&mut s, "subcategory");
    }
    kv_json(&mut s, "brand", cat.brands[prod.brand as usize]);
    kv_cents(&mut s, "price", prod.price);
    kv_cents(&mut s, "cost", prod.cost);
    kv_i64(&mut s, "inventory_count", prod.inventory);
    push_product_details(&mut s, w, p, &pid, &mut r);
    close(&mut s);
    s
}

/// `weight_kg` to `review_count`: fixed per product, except `updated_at` after a change.
fn push_product_details(s: &mut String, w: &World, p: u32, pid: &str, r: &mut Rng) {
    let prod = &w.products[p as usize];
    if r.chance(0.08) {
        null(s, "weight_kg");
    } else {
        kv_cents(s, "weight_kg", r.range(5, 4000));
    }
    let dims = format!("{}x{}x{}", r.range(2, 120), r.range(2, 90), r.range(1, 60));
    kv_json(s, "dimensions_cm", &dims);
    let cat = &CATEGORIES[prod.cat as usize];
    let sku = format!("SKU-{}-{pid}-{:04}", cat.id, r.below(10_000));
    kv_json(s, "sku", &sku);
    let status = ["active", "draft", "discontinued"][r.weighted(&[92, 4, 4])];
    kv_json(s, "status", status);
    let created = w.start - r.range(30 * DAY_MS, 900 * DAY_MS);
    kv_ts(s, "created_at", created, r.below(10));
    // drawn whether used or not, so a changed row keeps every other detail
    let (never, before) = (r.chance(0.3), created + r.range(0, w.start - created));
    let style = r.below(10);
    match prod.updated {
        Some(t) => kv_ts(s, "updated_at", t, style),
        None if never => null(s, "updated_at"),
        None => kv_ts(s, "updated_at", before, style),
    }
    fmt::key(s, "tags");
    s.push('[');
    for i in 0..r.below(4) {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        s.push_str(TAGS[r.index(TAGS.len())]);
        s.push('"');
    }
    s.push_str("],");
    kv_json(s, "supplier_id", &fmt::id("SUP", r.below(80), 3));
    if r.chance(0.15) {
        null(s, "rating_avg");
        null(s, "review_count");
    } else {
        kv_cents(s, "rating_avg", r.range(100, 500));
        kv_i64(s, "review_count", r.range(0, 9000));
    }
}

/// The `ip_reputation` row of IP index `i` in its current state.
pub fn ip_row(w: &World, i: u32) -> String {
    let ip = &w.ips[i as usize];
    let mut r = entity_rng(w, STREAM_IP, ip.addr as u64);
    let mut s = String::with_capacity(220);
    s.push_str("{\"ip_address\":\"");
    push_ip(&mut s, ip.addr);
    s.push_str("\",");
    fmt::key(&mut s, "risk_score");
    match ip.risk {
        Some(x) => push_risk(&mut s, x),
        None => s.push_str("null"),
    }
    s.push(',');
    let level = match ip.risk {
        Some(x) if x >= 700 => "high",
        Some(x) if x >= 300 => "medium",
        _ => "low",
    };
    kv_json(&mut s, "country_risk", level);
    kv_bool(&mut s, "is_vpn", ip.vpn);
    kv_bool(&mut s, "is_tor", ip.tor);
    if r.chance(0.2) {
        null(&mut s, "device_fingerprint");
    } else {
        kv_json(
            &mut s,
            "device_fingerprint",
            &format!("fp{:08x}", r.u64() as u32),
        );
    }
    let incidents = match ip.risk {
        Some(x) if x >= 800 => r.range(1, 9),
        _ if r.chance(0.05) => 1,
        _ => 0,
    };
    kv_i64(&mut s, "previous_fraud_incidents", incidents);
    close(&mut s);
    s
}

/// A key-only row for a delete.
pub fn key_row(column: &str, key: &str) -> String {
    format!("{{\"{column}\":\"{key}\"}}")
}
