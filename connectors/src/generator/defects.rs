//! Broken records and re-deliveries, made from a valid record's JSON text by small surgery:
//! each bad record gets a fresh identity and exactly one defect, whose reason is the first check
//! of contract 5a that it fails.

use super::engine::Generator;
use super::fmt::{self, push_cents};
use super::rng::Rng;
use super::GenStream;
use shopdiff_schemas::money::parse_cents;
use shopdiff_schemas::Reason;
use std::ops::Range;

/// Byte range of the value of the first `"key":` in `s` (our writers emit no spaces).
pub fn value_range(s: &str, key: &str) -> Option<Range<usize>> {
    let pat = format!("\"{key}\":");
    let start = s.find(&pat)? + pat.len();
    let b = s.as_bytes();
    let mut i = start;
    let mut depth = 0i32;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_str = false;
                if depth == 0 {
                    return Some(start..i + 1);
                }
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth > 0 => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(start..i + 1);
                    }
                }
                b',' | b'}' | b']' if depth == 0 => return Some(start..i),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The raw text of a value.
pub fn value<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    value_range(s, key).map(|r| &s[r])
}

/// `s` with the value of `key` replaced by the raw JSON text `v`.
pub fn set_value(s: &str, key: &str, v: &str) -> Option<String> {
    let r = value_range(s, key)?;
    Some(format!("{}{}{}", &s[..r.start], v, &s[r.end..]))
}

/// `s` without the field `key` (and one adjacent comma).
pub fn remove_field(s: &str, key: &str) -> Option<String> {
    let r = value_range(s, key)?;
    let start = r.start - key.len() - 3;
    let (a, b) = if s.as_bytes().get(r.end) == Some(&b',') {
        (start, r.end + 1)
    } else if start > 0 && s.as_bytes()[start - 1] == b',' {
        (start - 1, r.end)
    } else {
        (start, r.end)
    };
    Some(format!("{}{}", &s[..a], &s[b..]))
}

fn quoted(v: &str) -> String {
    format!("\"{v}\"")
}

fn unquote(v: &str) -> &str {
    v.trim_matches('"')
}

/// Reasons in the order the first bad records of a stream cycle through them.
const TX_REASONS: [Reason; 5] = [
    Reason::MalformedJson,
    Reason::MissingField,
    Reason::BadType,
    Reason::BadTimestamp,
    Reason::BadValue,
];
const EV_REASONS: [Reason; 4] = [
    Reason::MalformedJson,
    Reason::MissingField,
    Reason::BadType,
    Reason::BadTimestamp,
];

/// A bad record made from `orig` (a valid record of `stream`) and its intended reason.
pub(super) fn bad_record(g: &mut Generator, stream: GenStream, orig: &str) -> (String, Reason) {
    let tx = stream == GenStream::Transactions;
    let (id_key, fresh) = if tx {
        g.ids.txn += 1;
        ("transaction_id", fmt::id("T", g.ids.txn, g.w.widths.txn))
    } else {
        g.ids.event += 1;
        ("event_id", fmt::id("E", g.ids.event, g.w.widths.event))
    };
    let base = set_value(orig, id_key, &quoted(&fresh)).unwrap_or_else(|| orig.to_string());
    let made = &mut g.bad_made[tx as usize];
    let reasons: &[Reason] = if tx { &TX_REASONS } else { &EV_REASONS };
    // the first ones cycle through every reason and every variant of it, then at random
    let n = reasons.len() as u64;
    let (reason, v) = if *made < 12 * n {
        (reasons[(*made % n) as usize], *made / n)
    } else {
        (reasons[g.noise.index(reasons.len())], g.noise.u64())
    };
    *made += 1;
    let rng = &mut g.noise;
    let broken = match reason {
        Reason::MalformedJson => Some(malformed(rng, v, &base, &fresh)),
        Reason::MissingField => missing(v, &base, tx),
        Reason::BadType => bad_type(rng, v, &base, tx),
        Reason::BadTimestamp => bad_timestamp(v, &base),
        _ => bad_value(rng, v, &base),
    };
    match broken {
        Some(text) => (text, reason),
        // the record lacks the field the defect needed: cut it short instead
        None => (malformed(rng, 0, &base, &fresh), Reason::MalformedJson),
    }
}

fn malformed(rng: &mut Rng, v: u64, s: &str, id: &str) -> String {
    match v % 6 {
        0..=2 => {
            let mut cut = rng.range(1, s.len() as i64 - 2) as usize;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s[..cut].to_string()
        }
        3 => format!("[{s}]"),
        4 => [quoted(id), "null".into(), "42".into(), "true".into()][rng.index(4)].clone(),
        _ => {
            let key = if value(s, "price").is_some() {
                "price"
            } else {
                "duration_ms"
            };
            set_value(s, key, "NaN").unwrap_or_else(|| s[..s.len() / 2].to_string())
        }
    }
}

fn missing(v: u64, s: &str, tx: bool) -> Option<String> {
    let keys: &[&str] = if tx {
        &[
            "transaction_id",
            "product_id",
            "user_id",
            "timestamp",
            "price",
            "quantity",
            "currency",
        ]
    } else {
        &["event_id", "user_id", "timestamp", "event_type"]
    };
    let key = keys[(v % keys.len() as u64) as usize];
    if (v / keys.len() as u64) % 3 == 1 {
        set_value(s, key, "null")
    } else {
        remove_field(s, key)
    }
}

fn bad_type(rng: &mut Rng, v: u64, s: &str, tx: bool) -> Option<String> {
    if !tx {
        return match v % 5 {
            0 => set_value(s, "event_id", &rng.range(1, 99_999).to_string()),
            1 => set_value(s, "user_id", &rng.range(1, 99_999).to_string()),
            2 => set_value(s, "event_type", "3"),
            3 => set_value(s, "event_type", "[\"page_view\"]"),
            _ => set_value(s, "timestamp", "1719792000123"),
        };
    }
    let qty = value(s, "quantity")?.to_string();
    match v % 9 {
        0 => set_value(s, "quantity", &quoted(&qty)),
        1 => set_value(s, "quantity", &format!("{qty}.0")),
        2 => set_value(s, "price", &quoted(value(s, "price")?)),
        3 => set_value(s, "user_id", &rng.range(1, 99_999).to_string()),
        4 => set_value(s, "transaction_id", &rng.range(1, 99_999).to_string()),
        5 => set_value(s, "product_id", &rng.range(1, 999).to_string()),
        6 => set_value(s, "currency", "840"),
        7 => set_value(s, "timestamp", "1719792000123"),
        _ => match value(s, "discount_applied") {
            Some(d) if d != "null" => set_value(s, "discount_applied", &quoted(d)),
            _ => set_value(s, "quantity", &quoted(&qty)),
        },
    }
}

fn bad_timestamp(v: u64, s: &str) -> Option<String> {
    let ts = unquote(value(s, "timestamp")?).to_string();
    let fixed = match v % 3 {
        0 => ts.replacen('T', " ", 1),
        1 => {
            let cut = ts
                .rfind(['Z', '+', '-'])
                .filter(|&i| i > 10)
                .unwrap_or(ts.len());
            ts[..cut].to_string()
        }
        _ => {
            format!(
                "{}{}",
                &ts[..4],
                ["-02-30", "-04-31", "-13-01", "-06-31"][(v / 3 % 4) as usize]
            ) + &ts[10..]
        }
    };
    set_value(s, "timestamp", &quoted(&fixed))
}

fn bad_value(rng: &mut Rng, v: u64, s: &str) -> Option<String> {
    let price = value(s, "price")?;
    let qty: i64 = value(s, "quantity")?.parse().ok()?;
    match v % 7 {
        0 => set_value(s, "price", &format!("-{price}")),
        1 => set_value(s, "quantity", "0"),
        2 => set_value(s, "quantity", "-1"),
        3 => {
            let gross = parse_cents(price).ok()? * qty;
            let mut d = String::new();
            push_cents(&mut d, gross + rng.range(1, 5_000));
            set_value(s, "discount_applied", &d)
                .or_else(|| set_value(s, "quantity", &format!("{qty},\"discount_applied\":{d}")))
        }
        4 => set_value(s, "discount_applied", "-0.5")
            .or_else(|| set_value(s, "quantity", &format!("{qty},\"discount_applied\":-1.25"))),
        5 => {
            let c = unquote(value(s, "currency")?).to_ascii_lowercase();
            set_value(s, "currency", &quoted(&c))
        }
        _ => set_value(
            s,
            "currency",
            &quoted(["US", "EURO", "U$D", "Usd"][(v / 7 % 4) as usize]),
        ),
    }
}

/// A re-delivery of `orig`: identical, or with changed fields that keep it valid.
pub(super) fn duplicate(g: &mut Generator, stream: GenStream, orig: &str) -> (String, bool) {
    let rng = &mut g.noise;
    if rng.chance(0.7) {
        return (orig.to_string(), false);
    }
    let changed = if stream == GenStream::Transactions {
        let qty: Option<i64> = value(orig, "quantity").and_then(|q| q.parse().ok());
        match (rng.below(3), qty) {
            (0, _) => value(orig, "price")
                .and_then(|p| parse_cents(p).ok())
                .and_then(|c| {
                    let mut t = String::new();
                    push_cents(&mut t, c + 100);
                    set_value(orig, "price", &t)
                }),
            (1, _) => set_value(orig, "discount_applied", "0"),
            (_, Some(q)) => set_value(orig, "quantity", &(q + 1).to_string()),
            _ => None,
        }
    } else {
        let et = value(orig, "event_type").map(unquote);
        let other = if et == Some("page_view") {
            "product_view"
        } else {
            "page_view"
        };
        set_value(orig, "event_type", &quoted(other))
    };
    match changed {
        Some(c) if c != orig => (c, true),
        _ => (orig.to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surgery() {
        let s = r#"{"a":"x","b":{"c":[1,{"d":2}],"e":"}"},"f":3}"#;
        assert_eq!(value(s, "a"), Some("\"x\""));
        assert_eq!(value(s, "b"), Some(r#"{"c":[1,{"d":2}],"e":"}"}"#));
        assert_eq!(value(s, "f"), Some("3"));
        assert_eq!(
            set_value(s, "f", "4").unwrap(),
            r#"{"a":"x","b":{"c":[1,{"d":2}],"e":"}"},"f":4}"#
        );
        assert_eq!(
            remove_field(s, "a").unwrap(),
            r#"{"b":{"c":[1,{"d":2}],"e":"}"},"f":3}"#
        );
        assert_eq!(
            remove_field(s, "f").unwrap(),
            r#"{"a":"x","b":{"c":[1,{"d":2}],"e":"}"}}"#
        );
        assert_eq!(value(s, "zz"), None);
    }
}
