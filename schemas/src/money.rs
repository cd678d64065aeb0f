//! Money and exact decimals (contract section 4).
//!
//! Every JSON number is read as the exact decimal of its text, never through a binary float,
//! and rounded half away from zero to a fixed number of places. One record's money is `i64`
//! cents; sums are `i128` ([`Sum`]), so no sum of accepted input can wrap (contract 4).

/// Money of one record in integer cents.
pub type Cents = i64;

/// A sum of money in cents. With the input bounds below, one line's gross is at most 10^18
/// cents, so an `i128` holds the sum of more than 10^20 such lines exactly; Parquet shows it as
/// `DECIMAL(38,2)`.
pub type Sum = i128;

/// The largest magnitude of a table's money value (`products.cost`) we read, in cents.
pub const MAX_CENTS: i128 = 10_000_000_000_000_000;

/// The largest `price` or `discount_applied` of a transaction line, in cents (contract 2:
/// above it the record is `bad_value`).
pub const MAX_RECORD_CENTS: Cents = 1_000_000_000_000;

/// The largest `quantity` of a transaction line (contract 2).
pub const MAX_QUANTITY: i64 = 1_000_000;

/// The largest magnitude a money sum can show: `DECIMAL(38,2)` holds 36 integer digits.
pub const MAX_SUM: Sum = 10i128.pow(38) - 1;

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
            // saturates far beyond any exponent that could matter (the shift below saturates too)
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
    // exponents of any size (`1e99999999999999999999`) saturate instead of wrapping
    let shift = exp.saturating_sub(frac_len).saturating_add(places as i64);
    let (keep, round_digit) = if shift >= 0 {
        (digits.len(), None)
    } else {
        let drop = shift.unsigned_abs();
        if drop > digits.len() as u64 {
            return Ok(0);
        }
        let drop = drop as usize;
        let keep = digits.len() - drop;
        (keep, Some(digits[keep]))
    };
    let mut v: i128 = 0;
    for &d in &digits[..keep] {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(d as i128))
            .ok_or(NumError::OutOfRange)?;
        if v > MAX_SUM {
            return Err(NumError::OutOfRange);
        }
    }
    if shift > 0 {
        // the value is nonzero here: more than 40 digits of shift exceed the bound anyway
        if shift > 40 {
            return Err(NumError::OutOfRange);
        }
        for _ in 0..shift {
            v = v.checked_mul(10).ok_or(NumError::OutOfRange)?;
            if v > MAX_SUM {
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

/// Whether a JSON number's text is below zero exactly (before any rounding): `-0.004` is,
/// `-0` and `-0.00e5` are not. Text that is not a number is not negative.
pub fn is_negative(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('-') else {
        return false;
    };
    rest.bytes()
        .take_while(|c| *c != b'e' && *c != b'E')
        .any(|c| (b'1'..=b'9').contains(&c))
}

/// Parses a JSON number's text as a sum of money in cents (half away from zero), bounded by
/// `DECIMAL(38,2)` (query filters on money columns).
pub fn parse_sum(text: &str) -> Result<Sum, NumError> {
    let v = scaled(text, 2)?;
    if v.abs() > MAX_SUM {
        return Err(NumError::OutOfRange);
    }
    Ok(v)
}

/// Formats cents as a decimal with two places: `-1234` → `"-12.34"`.
pub fn format_cents(c: impl Into<Sum>) -> String {
    let c: Sum = c.into();
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
    fn exponents_of_any_size_never_wrap() {
        assert_eq!(
            parse_cents("1e99999999999999999999"),
            Err(NumError::OutOfRange)
        );
        assert_eq!(
            parse_cents("-1e99999999999999999999"),
            Err(NumError::OutOfRange)
        );
        assert_eq!(parse_cents("1e-99999999999999999999"), Ok(0));
        assert_eq!(parse_cents("0e99999999999999999999"), Ok(0));
        assert_eq!(
            parse_cents("0.000000000000000000001e99999999999999999999"),
            Err(NumError::OutOfRange)
        );
        assert_eq!(scaled("1e36", 2), Err(NumError::OutOfRange));
        assert_eq!(
            parse_sum("99999999999999999999999999999999999999e-2"),
            Ok(MAX_SUM)
        );
        assert_eq!(parse_sum("1e36"), Err(NumError::OutOfRange));
        assert_eq!(
            parse_cents(&format!("1{}", "0".repeat(5000))),
            Err(NumError::OutOfRange)
        );
    }

    #[test]
    fn signs_are_read_on_the_exact_decimal() {
        for t in ["-0.004", "-1", "-0.0000001", "-1e-30", "-0.1E1", "-00.01"] {
            assert!(is_negative(t), "{t}");
        }
        for t in [
            "0",
            "-0",
            "-0.0",
            "-0e5",
            "-0.000E-3",
            "0.004",
            "1e-5",
            "-",
            "x",
        ] {
            assert!(!is_negative(t), "{t}");
        }
    }

    #[test]
    fn sums_format_beyond_64_bits() {
        assert_eq!(format_cents(MAX_SUM), format!("{}.99", "9".repeat(36)));
        assert_eq!(format_cents(-MAX_SUM), format!("-{}.99", "9".repeat(36)));
        assert_eq!(format_cents(i64::MIN), "-92233720368547758.08");
        assert_eq!(format_cents(10i128.pow(20)), "1000000000000000000.00");
    }

    /// The value of a JSON number's text as an exact big rational `n / 10^k`, rounded half
    /// away from zero to cents with big integers: an independent reference for [`scaled`].
    fn reference_cents(neg: bool, int: &str, frac: &str, exp: i64) -> num_bigint::BigInt {
        use num_bigint::BigInt;
        let digits: BigInt = format!("{int}{frac}").parse().unwrap();
        // value = digits * 10^(exp - len(frac)); cents = value * 100
        let e = exp - frac.len() as i64 + 2;
        let ten = BigInt::from(10);
        let cents = if e >= 0 {
            digits * ten.pow(e as u32)
        } else {
            let d = ten.pow((-e) as u32);
            let q = &digits / &d;
            let r = &digits % &d;
            if r * 2 >= d {
                q + 1
            } else {
                q
            }
        };
        if neg {
            -cents
        } else {
            cents
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn parser_agrees_with_an_exact_decimal_reference(
            neg in proptest::bool::ANY,
            int in "(0|[1-9][0-9]{0,24})",
            frac in proptest::option::of("[0-9]{1,20}"),
            exp in proptest::option::of((proptest::bool::ANY, -45i64..45)),
            upper in proptest::bool::ANY,
        ) {
            let mut text = String::new();
            if neg { text.push('-'); }
            text.push_str(&int);
            if let Some(f) = &frac { text.push('.'); text.push_str(f); }
            let mut e = 0;
            if let Some((plus, x)) = exp {
                text.push(if upper { 'E' } else { 'e' });
                if plus && x >= 0 { text.push('+'); }
                text.push_str(&x.to_string());
                e = x;
            }
            let want = reference_cents(neg, &int, frac.as_deref().unwrap_or(""), e);
            let bound = num_bigint::BigInt::from(MAX_SUM);
            let got = scaled(&text, 2);
            if want.magnitude() > bound.magnitude() {
                proptest::prop_assert_eq!(got, Err(NumError::OutOfRange), "{}", text);
            } else {
                proptest::prop_assert_eq!(
                    got.map(num_bigint::BigInt::from),
                    Ok(want.clone()),
                    "{}", text
                );
                let exact_negative = neg && format!("{int}{}", frac.as_deref().unwrap_or(""))
                    .bytes().any(|c| c != b'0');
                proptest::prop_assert_eq!(is_negative(&text), exact_negative, "{}", text);
                let cents = parse_cents(&text);
                if want.magnitude() > num_bigint::BigInt::from(MAX_CENTS).magnitude() {
                    proptest::prop_assert_eq!(cents, Err(NumError::OutOfRange));
                } else {
                    proptest::prop_assert_eq!(cents.map(num_bigint::BigInt::from), Ok(want));
                }
            }
        }

        #[test]
        fn parser_never_panics_on_any_text(text in "[-+0-9eE.]{0,40}|\\PC{0,40}") {
            let _ = scaled(&text, 2);
            let _ = scaled(&text, 6);
            let _ = parse_cents(&text);
            let _ = parse_sum(&text);
            let _ = is_negative(&text);
        }
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
