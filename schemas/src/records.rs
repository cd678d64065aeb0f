//! The event streams: the seed's transaction and behavior records, validated (contract 1, 2, 5a).
//!
//! [`parse_transaction`] and [`parse_behavior`] turn one JSON line into an accepted record or a
//! [`Rejection`] whose reason is the first failing check, in the contract's order:
//! `malformed_json`, `missing_field`, `bad_type`, `bad_timestamp`, `bad_value`.

use crate::json::{self, as_int, as_str, kind, present, Kind};
use crate::money::{is_negative, parse_cents, Cents, NumError, MAX_QUANTITY, MAX_RECORD_CENTS};
use crate::quality::{Reason, Rejection};
use crate::time::{parse_rfc3339, Ms};
use crate::Str;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// An accepted order line. Its identity is `(transaction_id, product_id)`. Dimension values are
/// the line's own, `none` when missing, null or not a string.
///
/// Its `Hash` covers the identity and the event time only (equal lines hash alike, as `Eq`
/// needs): lines are hashed where they are exchanged and kept in hash maps, and hashing all
/// twelve strings cost more than the lookups.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Line {
    pub transaction_id: Str,
    pub product_id: Str,
    pub user_id: Str,
    /// `None` when absent, null or not a string.
    pub session_id: Option<Str>,
    /// Event time, UTC milliseconds.
    pub ts: Ms,
    pub price: Cents,
    pub quantity: i64,
    pub discount: Cents,
    pub currency: Str,
    pub category_id: Str,
    pub brand: Str,
    pub country: Str,
    pub payment_method: Str,
    pub channel: Str,
    pub device_type: Str,
}

impl std::hash::Hash for Line {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.transaction_id.hash(state);
        self.product_id.hash(state);
        self.ts.hash(state);
    }
}

impl Line {
    /// `price * quantity` in cents.
    pub fn gross(&self) -> Cents {
        self.price * self.quantity
    }
    /// Net line revenue: `price * quantity - discount_applied`.
    pub fn net(&self) -> Cents {
        self.gross() - self.discount
    }
    /// `user_location.country` unless missing (`none`), for the `geo` rule.
    pub fn known_country(&self) -> Option<&Str> {
        (self.country != NONE).then_some(&self.country)
    }
}

/// The value of a missing dimension.
pub const NONE: &str = "none";

/// A behavior event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventKind {
    PageView,
    ProductView,
    Search,
    AddToCart,
    RemoveFromCart,
    CheckoutStart,
    /// Any other `event_type`: accepted, counted only where a view says so.
    Other,
}

impl EventKind {
    pub fn parse(s: &str) -> EventKind {
        match s {
            "page_view" => EventKind::PageView,
            "product_view" => EventKind::ProductView,
            "search" => EventKind::Search,
            "add_to_cart" => EventKind::AddToCart,
            "remove_from_cart" => EventKind::RemoveFromCart,
            "checkout_start" => EventKind::CheckoutStart,
            _ => EventKind::Other,
        }
    }
}

/// An accepted behavior event. Its identity is `event_id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Event {
    pub event_id: Str,
    pub user_id: Str,
    pub session_id: Option<Str>,
    pub kind: EventKind,
    /// `event_properties.product_id` when it is a string.
    pub product_id: Option<Str>,
    /// `user_location.ip_address` when it is a string.
    pub ip: Option<Str>,
    pub ts: Ms,
}

const TX_FIELDS: [&str; 15] = [
    "transaction_id",
    "product_id",
    "user_id",
    "timestamp",
    "price",
    "quantity",
    "currency",
    "discount_applied",
    "session_id",
    "category_id",
    "brand",
    "payment_method",
    "user_location",
    "device_info",
    "marketing_attribution",
];

fn reject(reason: Reason, field: &'static str) -> Rejection {
    Rejection::new(reason, field)
}

/// A required string field: `Ok(None)` when missing (checked first by the caller).
fn req_str<'a>(
    v: Option<&'a RawValue>,
    name: &'static str,
) -> Result<std::borrow::Cow<'a, str>, Rejection> {
    let raw = v.ok_or(reject(Reason::MissingField, name))?;
    as_str(raw).ok_or(reject(Reason::BadType, name))
}

/// An optional string value: anything but a string counts as absent.
fn opt_str(v: Option<&RawValue>) -> Option<Str> {
    v.and_then(as_str).map(|s| Str::from(s.as_ref()))
}

/// A dimension: the string, or `none`.
fn dim(v: Option<&RawValue>) -> Str {
    opt_str(v).unwrap_or_else(|| Str::const_new(NONE))
}

/// One field of a nested object given as a raw value (ignored unless it is an object).
fn nested<'a, const N: usize>(
    v: Option<&'a RawValue>,
    names: &[&str; N],
) -> [Option<&'a RawValue>; N] {
    match v {
        Some(raw) if kind(raw) == Kind::Object => {
            json::fields(raw.get(), names).unwrap_or([None; N])
        }
        _ => [None; N],
    }
}

/// Validates one transaction line (contract 2 and 5a).
pub fn parse_transaction(text: &str) -> Result<Line, Rejection> {
    let f = json::fields(text, &TX_FIELDS).ok_or(reject(Reason::MalformedJson, ""))?;
    let f: [Option<&RawValue>; 15] = f.map(present);
    // 1. required fields present and not null
    for (i, name) in TX_FIELDS.iter().enumerate().take(7) {
        if f[i].is_none() {
            return Err(reject(Reason::MissingField, name));
        }
    }
    // 2. types
    let transaction_id = req_str(f[0], "transaction_id")?;
    let product_id = req_str(f[1], "product_id")?;
    let user_id = req_str(f[2], "user_id")?;
    let timestamp = req_str(f[3], "timestamp")?;
    let price_raw = f[4]
        .filter(|r| kind(r) == Kind::Number)
        .ok_or(reject(Reason::BadType, "price"))?;
    let quantity = match f[5].map(as_int) {
        Some(Ok(q)) => Some(q),
        Some(Err(true)) => None, // an integer out of range: a value problem
        _ => return Err(reject(Reason::BadType, "quantity")),
    };
    let currency = req_str(f[6], "currency")?;
    let discount_raw = match f[7] {
        Some(r) if kind(r) != Kind::Number => {
            return Err(reject(Reason::BadType, "discount_applied"))
        }
        other => other,
    };
    // 3. timestamp
    let ts = parse_rfc3339(&timestamp).ok_or(reject(Reason::BadTimestamp, "timestamp"))?;
    // 4. values: signs on the exact decimal (`-0.004` is below zero though it rounds to 0),
    // then the bounds (contract 2), so no accepted line's money can overflow
    let price = parse_cents(price_raw.get()).map_err(|e| num_err(e, "price"))?;
    if is_negative(price_raw.get()) || price > MAX_RECORD_CENTS {
        return Err(reject(Reason::BadValue, "price"));
    }
    let quantity = quantity.ok_or(reject(Reason::BadValue, "quantity"))?;
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(reject(Reason::BadValue, "quantity"));
    }
    // at most 10^12 * 10^6 = 10^18 cents: an i64
    let gross = price * quantity;
    let discount = match discount_raw {
        Some(r) => {
            let d = parse_cents(r.get()).map_err(|e| num_err(e, "discount_applied"))?;
            if is_negative(r.get()) || d > MAX_RECORD_CENTS {
                return Err(reject(Reason::BadValue, "discount_applied"));
            }
            d
        }
        None => 0,
    };
    if discount > gross {
        return Err(reject(Reason::BadValue, "discount_applied"));
    }
    if currency.len() != 3 || !currency.bytes().all(|c| c.is_ascii_uppercase()) {
        return Err(reject(Reason::BadValue, "currency"));
    }
    let [country] = nested(f[12], &["country"]);
    let [device_type] = nested(f[13], &["type"]);
    let [channel] = nested(f[14], &["channel"]);
    Ok(Line {
        transaction_id: Str::from(transaction_id.as_ref()),
        product_id: Str::from(product_id.as_ref()),
        user_id: Str::from(user_id.as_ref()),
        session_id: opt_str(f[8]),
        ts,
        price,
        quantity,
        discount,
        currency: Str::from(currency.as_ref()),
        category_id: dim(f[9]),
        brand: dim(f[10]),
        country: dim(country),
        payment_method: dim(f[11]),
        channel: dim(channel),
        device_type: dim(device_type),
    })
}

fn num_err(e: NumError, field: &'static str) -> Rejection {
    match e {
        NumError::NotANumber => reject(Reason::BadType, field),
        NumError::OutOfRange => reject(Reason::BadValue, field),
    }
}

const EV_FIELDS: [&str; 7] = [
    "event_id",
    "user_id",
    "timestamp",
    "event_type",
    "session_id",
    "event_properties",
    "user_location",
];

/// Validates one behavior event (contract 2 and 5a).
pub fn parse_behavior(text: &str) -> Result<Event, Rejection> {
    let f = json::fields(text, &EV_FIELDS).ok_or(reject(Reason::MalformedJson, ""))?;
    let f: [Option<&RawValue>; 7] = f.map(present);
    for (i, name) in EV_FIELDS.iter().enumerate().take(4) {
        if f[i].is_none() {
            return Err(reject(Reason::MissingField, name));
        }
    }
    let event_id = req_str(f[0], "event_id")?;
    let user_id = req_str(f[1], "user_id")?;
    let timestamp = req_str(f[2], "timestamp")?;
    let event_type = req_str(f[3], "event_type")?;
    let ts = parse_rfc3339(&timestamp).ok_or(reject(Reason::BadTimestamp, "timestamp"))?;
    let [product_id] = nested(f[5], &["product_id"]);
    let [ip] = nested(f[6], &["ip_address"]);
    Ok(Event {
        event_id: Str::from(event_id.as_ref()),
        user_id: Str::from(user_id.as_ref()),
        session_id: opt_str(f[4]),
        kind: EventKind::parse(&event_type),
        product_id: opt_str(product_id),
        ip: opt_str(ip),
        ts,
    })
}

/// Whether a line of text is a record at all: blank lines are not (contract 5a).
pub fn is_blank(line: &str) -> bool {
    line.bytes().all(|c| c.is_ascii_whitespace())
}
