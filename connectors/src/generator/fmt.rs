//! Hand-written JSON output helpers: zero-padded ids, money, risk scores and RFC 3339 times,
//! appended to a reused `String` without intermediate allocations.

use shopdiff_schemas::time::{civil_from_days, Ms, DAY_MS};

/// How a record's `timestamp` is written (all denote the same instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsStyle {
    /// `2024-07-01T10:00:05.123Z`
    Millis,
    /// `2024-07-01T10:00:05Z` (the instant is a whole second)
    Seconds,
    /// `2024-07-01T06:00:05.123-04:00`, local time with the given offset in minutes
    Offset(i32),
}

/// Appends an unsigned integer.
pub fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Appends a signed integer.
pub fn push_i64(out: &mut String, v: i64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Appends `prefix` and `n` zero-padded to `width` digits (e.g. `U000123`).
pub fn push_id(out: &mut String, prefix: &str, n: u64, width: usize) {
    out.push_str(prefix);
    let mut b = itoa::Buffer::new();
    let digits = b.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// `prefix` + zero-padded `n` as a new string.
pub fn id(prefix: &str, n: u64, width: usize) -> String {
    let mut s = String::with_capacity(prefix.len() + width);
    push_id(&mut s, prefix, n, width);
    s
}

/// Appends cents the way a float-printing producer writes money: `53.0`, `53.5`, `103.49`,
/// `-0.5`.
pub fn push_cents(out: &mut String, cents: i64) {
    if cents < 0 {
        out.push('-');
    }
    let a = cents.unsigned_abs();
    push_u64(out, a / 100);
    out.push('.');
    let f = a % 100;
    if f.is_multiple_of(10) {
        out.push((b'0' + (f / 10) as u8) as char);
    } else {
        out.push((b'0' + (f / 10) as u8) as char);
        out.push((b'0' + (f % 10) as u8) as char);
    }
}

/// Appends an amount given in thousandths with up to three decimals (trailing zeros trimmed,
/// at least one decimal): `12345` → `12.345`, `12340` → `12.34`, `0` → `0.0`.
pub fn push_mills(out: &mut String, mills: i64) {
    if mills < 0 {
        out.push('-');
    }
    let a = mills.unsigned_abs();
    push_u64(out, a / 1000);
    out.push('.');
    let f = a % 1000;
    let d = [(f / 100) as u8, (f / 10 % 10) as u8, (f % 10) as u8];
    let keep = if d[2] != 0 {
        3
    } else if d[1] != 0 {
        2
    } else {
        1
    };
    for &x in &d[..keep] {
        out.push((b'0' + x) as char);
    }
}

/// Appends a risk score given in thousandths with exactly three decimals (`0.800`).
pub fn push_risk(out: &mut String, thousandths: u16) {
    let t = thousandths as u32;
    out.push((b'0' + (t / 1000) as u8) as char);
    out.push('.');
    out.push((b'0' + (t / 100 % 10) as u8) as char);
    out.push((b'0' + (t / 10 % 10) as u8) as char);
    out.push((b'0' + (t % 10) as u8) as char);
}

fn push2(out: &mut String, v: u32) {
    out.push((b'0' + (v / 10) as u8) as char);
    out.push((b'0' + (v % 10) as u8) as char);
}

thread_local! {
    /// The last day formatted (most timestamps fall on the same day as the one before).
    static LAST_DAY: std::cell::Cell<(i64, [u8; 10])> = const { std::cell::Cell::new((i64::MIN, [0; 10])) };
}

/// Appends `YYYY-MM-DD`.
pub fn push_date(out: &mut String, ms: Ms) {
    let day = ms.div_euclid(DAY_MS);
    let (cached, text) = LAST_DAY.with(|c| c.get());
    let text = if cached == day {
        text
    } else {
        let (y, m, d) = civil_from_days(day);
        let mut s = String::with_capacity(10);
        push2(&mut s, (y / 100) as u32);
        push2(&mut s, (y % 100) as u32);
        s.push('-');
        push2(&mut s, m);
        s.push('-');
        push2(&mut s, d);
        let mut b = [0u8; 10];
        b.copy_from_slice(&s.as_bytes()[..10]);
        LAST_DAY.with(|c| c.set((day, b)));
        b
    };
    out.push_str(std::str::from_utf8(&text).unwrap_or("0000-00-00"));
}

/// Appends the date and time of `ms` (UTC) with separator `sep`, to the second: `YYYY-MM-DDTHH:MM:SS`.
fn push_datetime(out: &mut String, ms: Ms, sep: char) {
    push_date(out, ms);
    out.push(sep);
    let rem = ms.rem_euclid(DAY_MS) as u32;
    push2(out, rem / 3_600_000);
    out.push(':');
    push2(out, rem / 60_000 % 60);
    out.push(':');
    push2(out, rem / 1000 % 60);
}

fn push_millis(out: &mut String, ms: Ms) {
    let f = ms.rem_euclid(1000) as u32;
    out.push('.');
    out.push((b'0' + (f / 100) as u8) as char);
    push2(out, f % 100);
}

/// Appends an RFC 3339 time in the given style.
pub fn push_ts(out: &mut String, ms: Ms, style: TsStyle) {
    match style {
        TsStyle::Millis => {
            push_datetime(out, ms, 'T');
            push_millis(out, ms);
            out.push('Z');
        }
        TsStyle::Seconds => {
            push_datetime(out, ms, 'T');
            out.push('Z');
        }
        TsStyle::Offset(min) => {
            let local = ms + min as i64 * 60_000;
            push_datetime(out, local, 'T');
            push_millis(out, local);
            out.push(if min < 0 { '-' } else { '+' });
            let a = min.unsigned_abs();
            push2(out, a / 60);
            out.push(':');
            push2(out, a % 60);
        }
    }
}

/// RFC 3339 UTC with milliseconds, as a string.
pub fn ts(ms: Ms) -> String {
    let mut s = String::with_capacity(24);
    push_ts(&mut s, ms, TsStyle::Millis);
    s
}

/// A table `TIMESTAMP` in the `YYYY-MM-DD HH:MM:SS` (UTC) form the contract also accepts.
pub fn push_sql_ts(out: &mut String, ms: Ms) {
    push_datetime(out, ms, ' ');
}

/// Appends `"key":` (the key must need no escaping).
pub fn key(out: &mut String, k: &str) {
    out.push('"');
    out.push_str(k);
    out.push_str("\":");
}

/// Appends `"key":"value",` for values that need no escaping.
pub fn kv_str(out: &mut String, k: &str, v: &str) {
    key(out, k);
    out.push('"');
    out.push_str(v);
    out.push_str("\",");
}

/// Appends a JSON string, escaping what JSON requires (for table text that may hold anything).
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                push2(out, c as u32 / 16);
                let lo = c as u32 % 16;
                out.push(char::from_digit(lo, 16).unwrap_or('0'));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopdiff_schemas::time::parse_rfc3339;

    #[test]
    fn numbers_and_ids() {
        let mut s = String::new();
        push_id(&mut s, "U", 123, 6);
        s.push(' ');
        push_cents(&mut s, 5300);
        s.push(' ');
        push_cents(&mut s, 10349);
        s.push(' ');
        push_cents(&mut s, -50);
        s.push(' ');
        push_cents(&mut s, 7);
        s.push(' ');
        push_mills(&mut s, 12345);
        s.push(' ');
        push_mills(&mut s, 12340);
        s.push(' ');
        push_mills(&mut s, 0);
        s.push(' ');
        push_risk(&mut s, 800);
        assert_eq!(s, "U000123 53.0 103.49 -0.5 0.07 12.345 12.34 0.0 0.800");
    }

    #[test]
    fn timestamps_round_trip() {
        for ms in [0, 1_719_792_000_123, 1_709_164_799_999, 1_719_792_005_000] {
            for style in [TsStyle::Millis, TsStyle::Offset(-240), TsStyle::Offset(330)] {
                let mut s = String::new();
                push_ts(&mut s, ms, style);
                assert_eq!(parse_rfc3339(&s), Some(ms), "{s}");
            }
            let mut s = String::new();
            push_ts(&mut s, ms / 1000 * 1000, TsStyle::Seconds);
            assert_eq!(parse_rfc3339(&s), Some(ms / 1000 * 1000), "{s}");
        }
        assert_eq!(ts(1_719_792_000_123), "2024-07-01T00:00:00.123Z");
        let mut s = String::new();
        push_ts(&mut s, 1_719_792_000_123, TsStyle::Offset(-240));
        assert_eq!(s, "2024-06-30T20:00:00.123-04:00");
    }
}
