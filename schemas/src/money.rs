//! Money and exact decimals (contract section 4).
//!
//! Every JSON number is read as the exact decimal of its text, never through a binary float,
//! and rounded half away from zero to a fixed number of places. Money is `i64` cents.

/// Money in integer cents.
pub type Cents = i64;

/// The largest magnitude of a money amount we accept, in cents (a `DECIMAL(18,2)` holds 10^16).
pub const MAX_CENTS: i128 = 10_000_000_000_000_000;

/// Why a numeric text could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumError {
    /// Not a JSON number.
    NotANumber,
    /// A number too large for the engine's exact integers.
    OutOfRange,
}

/// Parses a JSON number's text into an integer scaled by `10^places`, rounded half away from zero.
/// `scaled("1.005", 2) == Ok(101)`, `scaled("-2.5e-1", 1) == Ok(-3)`.
pub fn scaled(text: &str, places: u32) -> Result<i128, NumError> {
    let b = text.as_bytes();
    let mut i = 0;
    let neg = b.first() == Some(&b'-');
    if neg {
        i += 1;
    }
    // significant digits of integer and fraction parts, as one digit string
    let mut digits: Vec<u8> = Vec::with_capacity(24);
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        digits.push(b[i] - b'0');
        i += 1;
    }
    if i == int_start {
        return Err(NumError::NotANumber);
    }
    let mut frac_len: i64 = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            digits.push(b[i] - b'0');
            i += 1;
        }
        if i == fs {
            return Err(NumError::NotANumber);
        }
        frac_len = (i - fs) as i64;
    }
    let mut exp: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let eneg = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let es = i;
        while i < b.len() && b[i].is_ascii_digit() {
            exp = exp.saturating_mul(10).saturating_add((b[i] - b'0') as i64);
            i += 1;
        }
        if i == es {
            return Err(NumError::NotANumber);
        }
        if eneg {
            exp = -exp;
        }
    }
    if i != b.len() {
        return Err(NumError::NotANumber);
    }
    // value = digits * 10^(exp - frac_len); scaled = digits * 10^(exp - frac_len + places)
    let first_nz = digits.iter().position(|&d| d != 0);
    let Some(first_nz) = first_nz else {
        return Ok(0);
    };
    let digits = &digits[first_nz..];
    let shift = exp - frac_len + places as i64;
    let (keep, round_digit) = if shift >= 0 {
        (digits.len(), None)
    } else {
        let drop = (-shift) as usize;
        if drop > digits.len() {
            return Ok(0);
        }
        let keep = digits.len() - drop;
        (keep, Some(digits[keep]))
    };
    let mut v: i128 = 0;
    for &d in &digits[..keep] {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(d as i128))
            .ok_or(NumError::OutOfRange)?;
        if v > MAX_CENTS * 1_000_000 {
            return Err(NumError::OutOfRange);
        }
    }
    if shift > 0 {
        for _ in 0..shift {
            v = v.checked_mul(10).ok_or(NumError::OutOfRange)?;
            if v > MAX_CENTS * 1_000_000 {
                return Err(NumError::OutOfRange);
            }
        }
    }
    if matches!(round_digit, Some(d) if d >= 5) {
        v += 1;
    }
    Ok(if neg { -v } else { v })
}

/// Parses a JSON number's text as money in cents (half away from zero), bounded by [`MAX_CENTS`].
pub fn parse_cents(text: &str) -> Result<Cents, NumError> {
    let v = scaled(text, 2)?;
    if v.abs() > MAX_CENTS {
        return Err(NumError::OutOfRange);
    }
    Ok(v as Cents)
}

/// Formats cents as a decimal with two places: `-1234` → `"-12.34"`.
pub fn format_cents(c: Cents) -> String {
    let sign = if c < 0 { "-" } else { "" };
    let a = c.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// `num / den` rounded half away from zero to `places` decimals, as an integer scaled by
/// `10^places`; `None` when `den == 0`.
pub fn ratio_scaled(num: i128, den: i128, places: u32) -> Option<i128> {
    if den == 0 {
        return None;
    }
    let scale = 10i128.pow(places);
    let n = num * scale;
    let (n, d) = if den < 0 { (-n, -den) } else { (n, den) };
    let q = n / d;
    let r = n % d;
    // half away from zero: compare 2|r| with d
    Some(if 2 * r.abs() >= d { q + n.signum() } else { q })
}

/// A ratio rounded half away from zero to `places` decimals, as the nearest `f64` (for output).
pub fn ratio(num: i128, den: i128, places: u32) -> Option<f64> {
    ratio_scaled(num, den, places).map(|v| v as f64 / 10f64.powi(places as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_half_away_from_zero() {
        assert_eq!(parse_cents("1.005"), Ok(101));
        assert_eq!(parse_cents("-1.005"), Ok(-101));
        assert_eq!(parse_cents("1.004999"), Ok(100));
        assert_eq!(parse_cents("2.675"), Ok(268)); // 2.675 is 2.67499.. as a float
        assert_eq!(parse_cents("0.125"), Ok(13));
        assert_eq!(parse_cents("0.135"), Ok(14));
        assert_eq!(parse_cents("103.49"), Ok(10349));
        assert_eq!(parse_cents("0"), Ok(0));
        assert_eq!(parse_cents("-0.0"), Ok(0));
        assert_eq!(parse_cents("5"), Ok(500));
        assert_eq!(parse_cents("0.004"), Ok(0));
        assert_eq!(parse_cents("0.005"), Ok(1));
    }

    #[test]
    fn exponents_and_errors() {
        assert_eq!(parse_cents("1e2"), Ok(10000));
        assert_eq!(parse_cents("1.5E-3"), Ok(0));
        assert_eq!(parse_cents("5E-3"), Ok(1));
        assert_eq!(parse_cents("12.345e+1"), Ok(12345));
        assert_eq!(parse_cents("1e400"), Err(NumError::OutOfRange));
        assert_eq!(parse_cents("1e-400"), Ok(0));
        assert_eq!(parse_cents("\"1\""), Err(NumError::NotANumber));
        assert_eq!(parse_cents("1."), Err(NumError::NotANumber));
        assert_eq!(parse_cents(""), Err(NumError::NotANumber));
        assert_eq!(scaled("0.7995", 3), Ok(800));
    }

    #[test]
    fn formatting_and_ratios() {
        assert_eq!(format_cents(0), "0.00");
        assert_eq!(format_cents(-5), "-0.05");
        assert_eq!(format_cents(123456), "1234.56");
        assert_eq!(ratio_scaled(4, 9, 4), Some(4444));
        assert_eq!(ratio_scaled(5, 9, 4), Some(5556));
        assert_eq!(ratio_scaled(1, 8, 2), Some(13)); // 0.125 -> 0.13
        assert_eq!(ratio_scaled(-1, 8, 2), Some(-13));
        assert_eq!(ratio_scaled(1, 0, 2), None);
        assert_eq!(ratio(2, 3, 4), Some(0.6667));
    }
}
