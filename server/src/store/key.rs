//! Primary keys: their values, and the byte encoding the stores' maps compare them by.

use shopdiff_schemas::rows::{ColKind, Row, Value, ViewDef};
use shopdiff_schemas::Str;

/// A money value as a key's integer. No view keys on money; were one to, sums beyond an
/// `i64` (10^16 units) would share the extreme key.
fn money_key(c: shopdiff_schemas::money::Sum) -> i64 {
    c.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// One value of a primary key, ordered as the column's type orders.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyVal {
    Null,
    Bool(bool),
    Int(i64),
    Str(Str),
}

impl KeyVal {
    pub fn of(v: &Value) -> KeyVal {
        match v {
            Value::Null => KeyVal::Null,
            Value::Bool(b) => KeyVal::Bool(*b),
            Value::Int(i) | Value::Time(i) => KeyVal::Int(*i),
            Value::Money(c) => KeyVal::Int(money_key(*c)),
            Value::Ratio(i, _) => KeyVal::Int(*i),
            Value::Number(n) => KeyVal::Int(n.to_bits() as i64),
            Value::Str(s) => KeyVal::Str(s.clone()),
        }
    }

    /// Parses a key value given as text in a query, as the column's JSON shows it.
    pub fn parse(kind: ColKind, text: &str) -> Result<KeyVal, String> {
        match kind {
            ColKind::String => Ok(KeyVal::Str(Str::from(text))),
            ColKind::Integer => text
                .parse::<i64>()
                .map(KeyVal::Int)
                .map_err(|_| format!("`{text}` is not an integer")),
            ColKind::Money => shopdiff_schemas::money::parse_sum(text)
                .map(|c| KeyVal::Int(money_key(c)))
                .map_err(|e| format!("`{text}` is not an amount: {e:?}")),
            ColKind::Time => shopdiff_schemas::time::parse_rfc3339(text)
                .map(KeyVal::Int)
                .ok_or_else(|| format!("`{text}` is not an RFC 3339 time")),
            ColKind::Boolean => match text {
                "true" => Ok(KeyVal::Bool(true)),
                "false" => Ok(KeyVal::Bool(false)),
                _ => Err(format!("`{text}` is not true or false")),
            },
            ColKind::Ratio(_) | ColKind::Number => {
                Err("ratio and number columns are not keys".into())
            }
        }
    }
}

/// A primary key.
pub type Key = Vec<KeyVal>;

/// A primary key encoded so that its bytes compare as the key does (the order of [`KeyVal`],
/// column by column): the stores' maps compare keys with one `memcmp` instead of walking
/// enums of strings. Each value is a tag byte (null < bool < integer < string), then a bool as
/// one byte, an integer as its big-endian bits with the sign flipped, a string as its bytes
/// with `0x00` escaped as `00 FF` and ended by `00 00` (so a prefix sorts first).
pub(super) type EncKey = Box<[u8]>;

fn enc_null(out: &mut Vec<u8>) {
    out.push(0);
}
fn enc_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(&[1, b as u8]);
}
fn enc_int(out: &mut Vec<u8>, i: i64) {
    out.push(2);
    out.extend_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes());
}
fn enc_str(out: &mut Vec<u8>, s: &str) {
    out.push(3);
    for &b in s.as_bytes() {
        if b == 0 {
            out.extend_from_slice(&[0, 0xFF]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

pub(super) fn enc_keyvals(k: &[KeyVal]) -> EncKey {
    let mut out = Vec::with_capacity(16 * k.len());
    for v in k {
        match v {
            KeyVal::Null => enc_null(&mut out),
            KeyVal::Bool(b) => enc_bool(&mut out, *b),
            KeyVal::Int(i) => enc_int(&mut out, *i),
            KeyVal::Str(s) => enc_str(&mut out, s),
        }
    }
    out.into_boxed_slice()
}

/// Writes the row's primary key, encoded (see [`EncKey`]), to `out` (cleared first): the same
/// bytes as [`enc_keyvals`] of its [`KeyVal`]s.
pub(super) fn key_of<R: Row>(def: &ViewDef, r: &R, out: &mut Vec<u8>) {
    out.clear();
    for v in &r.key_values(def.key_len) {
        match v {
            Value::Null => enc_null(out),
            Value::Bool(b) => enc_bool(out, *b),
            Value::Int(i) | Value::Time(i) | Value::Ratio(i, _) => enc_int(out, *i),
            Value::Money(c) => enc_int(out, money_key(*c)),
            Value::Number(n) => enc_int(out, n.to_bits() as i64),
            Value::Str(s) => enc_str(out, s),
        }
    }
}
