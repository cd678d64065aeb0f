//! Time: event time in milliseconds since the Unix epoch, ticks, and UTC buckets (contract section 3).
//!
//! Event times are `i64` milliseconds (floored, never through a float). Logical time in the
//! engine is a `u64` tick boundary: a record with event time `e` takes effect at
//! [`ceil_tick`]`(e)`. Buckets (`hour`, `day`, `month`) are UTC calendar buckets of event time.

/// Milliseconds since the Unix epoch (UTC).
pub type Ms = i64;

/// Milliseconds in one hour.
pub const HOUR_MS: Ms = 3_600_000;
/// Milliseconds in one day.
pub const DAY_MS: Ms = 86_400_000;

/// The smallest multiple of `tick` that is `>= e`, clamped at 0 (logical time is unsigned and the
/// initial table rows sit at time 0, before every event).
pub fn ceil_tick(e: Ms, tick: u64) -> u64 {
    if e <= 0 {
        return 0;
    }
    let e = e as u64;
    e.div_ceil(tick) * tick
}

/// The largest multiple of `tick` that is `<= e` (clamped at 0).
pub fn floor_tick(e: Ms, tick: u64) -> u64 {
    if e <= 0 {
        return 0;
    }
    (e as u64 / tick) * tick
}

/// Start of the UTC hour holding `e`.
pub fn hour_start(e: Ms) -> Ms {
    e.div_euclid(HOUR_MS) * HOUR_MS
}

/// Start of the UTC day holding `e`.
pub fn day_start(e: Ms) -> Ms {
    e.div_euclid(DAY_MS) * DAY_MS
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian). Howard Hinnant's algorithm.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date `(year, month, day)` of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A month as a count of months since 1970-01 (so offsets between months are a subtraction).
pub type MonthIndex = i64;

/// The month index of the UTC month holding `e`.
pub fn month_index(e: Ms) -> MonthIndex {
    let (y, m, _) = civil_from_days(e.div_euclid(DAY_MS));
    (y - 1970) * 12 + (m as i64 - 1)
}

/// The first millisecond of a month index.
pub fn month_start(mi: MonthIndex) -> Ms {
    let y = 1970 + mi.div_euclid(12);
    let m = (mi.rem_euclid(12) + 1) as u32;
    days_from_civil(y, m, 1) * DAY_MS
}

/// Start of the UTC month holding `e`.
pub fn month_start_of(e: Ms) -> Ms {
    month_start(month_index(e))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A small cursor over ASCII bytes for the fixed-width timestamp grammars.
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cur<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let s = self.b.get(self.i..self.i + n)?;
        let mut v = 0u32;
        for &c in s {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as u32;
        }
        self.i += n;
        Some(v)
    }
    fn lit(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn done(&self) -> bool {
        self.i == self.b.len()
    }
}

fn date_part(c: &mut Cur) -> Option<(i64, u32, u32)> {
    let y = c.digits(4)? as i64;
    c.lit(b'-')?;
    let m = c.digits(2)?;
    c.lit(b'-')?;
    let d = c.digits(2)?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some((y, m, d))
}

/// `HH:MM:SS[.fraction]` as milliseconds into the day (fraction floored to ms).
fn time_part(c: &mut Cur) -> Option<Ms> {
    let h = c.digits(2)?;
    c.lit(b':')?;
    let mi = c.digits(2)?;
    c.lit(b':')?;
    let s = c.digits(2)?;
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let mut ms = 0u32;
    if c.peek() == Some(b'.') {
        c.i += 1;
        let start = c.i;
        while matches!(c.peek(), Some(b'0'..=b'9')) {
            if c.i - start < 3 {
                ms = ms * 10 + (c.b[c.i] - b'0') as u32;
            }
            c.i += 1;
        }
        let n = c.i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
    }
    Some(((h as Ms * 60 + mi as Ms) * 60 + s as Ms) * 1000 + ms as Ms)
}

/// Parses an RFC 3339 timestamp with a mandatory offset (`Z`, `z` or `±HH:MM`) and an optional
/// fraction into UTC milliseconds (floored). A missing offset, a space separator or an impossible
/// date or time is an error (contract 5a).
pub fn parse_rfc3339(s: &str) -> Option<Ms> {
    let mut c = Cur {
        b: s.as_bytes(),
        i: 0,
    };
    let (y, m, d) = date_part(&mut c)?;
    match c.peek()? {
        b'T' | b't' => c.i += 1,
        _ => return None,
    }
    let tod = time_part(&mut c)?;
    let offset_ms = match c.peek()? {
        b'Z' | b'z' => {
            c.i += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            c.i += 1;
            let oh = c.digits(2)?;
            c.lit(b':')?;
            let om = c.digits(2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = (oh as Ms * 60 + om as Ms) * 60_000;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    if !c.done() {
        return None;
    }
    Some(days_from_civil(y, m, d) * DAY_MS + tod - offset_ms)
}

/// Parses a table `TIMESTAMP`/`DATE` value: RFC 3339, `YYYY-MM-DD HH:MM:SS[.f]` (UTC) or
/// `YYYY-MM-DD` (contract 5a).
pub fn parse_table_time(s: &str) -> Option<Ms> {
    if let Some(ms) = parse_rfc3339(s) {
        return Some(ms);
    }
    let mut c = Cur {
        b: s.as_bytes(),
        i: 0,
    };
    let (y, m, d) = date_part(&mut c)?;
    let day = days_from_civil(y, m, d) * DAY_MS;
    if c.done() {
        return Some(day);
    }
    c.lit(b' ')?;
    let tod = time_part(&mut c)?;
    c.done().then_some(day + tod)
}

/// Formats UTC milliseconds as RFC 3339 with milliseconds and `Z`, e.g. `2024-02-29T00:25:18.035Z`.
pub fn format_rfc3339(ms: Ms) -> String {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    let (h, rem) = (rem / HOUR_MS, rem % HOUR_MS);
    let (mi, rem) = (rem / 60_000, rem % 60_000);
    let (s, milli) = (rem / 1000, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_forms() {
        let z = parse_rfc3339("2024-07-16T14:30:45.123Z").unwrap();
        assert_eq!(format_rfc3339(z), "2024-07-16T14:30:45.123Z");
        assert_eq!(parse_rfc3339("2024-07-16T16:30:45.123+02:00"), Some(z));
        assert_eq!(parse_rfc3339("2024-07-16T09:30:45.123-05:00"), Some(z));
        assert_eq!(parse_rfc3339("2024-07-16t14:30:45.123z"), Some(z));
        // fractions of any length, floored to the millisecond
        assert_eq!(parse_rfc3339("2024-07-16T14:30:45.1239999Z"), Some(z));
        assert_eq!(parse_rfc3339("2024-07-16T14:30:45.1Z"), Some(z - 23));
        assert_eq!(parse_rfc3339("2024-07-16T14:30:45Z"), Some(z - 123));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
    }

    #[test]
    fn rfc3339_rejections() {
        for bad in [
            "2024-07-16T14:30:45",      // no offset
            "2024-07-16 14:30:45Z",     // space separator
            "2023-02-29T00:00:00Z",     // impossible date
            "2024-13-01T00:00:00Z",     // month 13
            "2024-04-31T00:00:00Z",     // April 31
            "2024-07-16T24:00:00Z",     // hour 24
            "2024-07-16T14:30:60Z",     // leap second
            "2024-07-16T14:30:45.Z",    // empty fraction
            "2024-07-16T14:30:45+0200", // offset without colon
            "2024-07-16T14:30:45Z ",    // trailing space
            "2024-7-16T14:30:45Z",      // short month
            "",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn table_times() {
        assert_eq!(parse_table_time("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(
            parse_table_time("2024-02-29 01:00:00"),
            Some(1_709_164_800_000 + HOUR_MS)
        );
        assert_eq!(
            parse_table_time("2024-02-29 01:00:00.5"),
            Some(1_709_164_800_000 + HOUR_MS + 500)
        );
        assert_eq!(
            parse_table_time("2024-02-29T01:00:00Z"),
            Some(1_709_164_800_000 + HOUR_MS)
        );
        assert_eq!(parse_table_time("2024-02-30"), None);
        assert_eq!(parse_table_time("2024-02-29T01:00:00"), None);
    }

    #[test]
    fn ticks_and_buckets() {
        assert_eq!(ceil_tick(1000, 1000), 1000);
        assert_eq!(ceil_tick(1001, 1000), 2000);
        assert_eq!(ceil_tick(-5, 1000), 0);
        assert_eq!(floor_tick(1999, 1000), 1000);
        let t = parse_rfc3339("2024-03-01T05:06:07.008Z").unwrap();
        assert_eq!(format_rfc3339(hour_start(t)), "2024-03-01T05:00:00.000Z");
        assert_eq!(format_rfc3339(day_start(t)), "2024-03-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(month_start_of(t)),
            "2024-03-01T00:00:00.000Z"
        );
        let feb = parse_rfc3339("2024-02-29T23:59:59.999Z").unwrap();
        assert_eq!(month_index(t) - month_index(feb), 1);
        assert_eq!(
            format_rfc3339(month_start(month_index(feb) - 14)),
            "2022-12-01T00:00:00.000Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }
}
