//! Traffic volume over time: the seed's hourly volumes (behavior 100k-500k events/hour,
//! transactions 10k-50k lines/hour) shaped by local business hours, weekends and holidays.

use shopdiff_schemas::time::{civil_from_days, Ms, DAY_MS, HOUR_MS};

/// Relative activity by local hour on weekdays: low at night, a lunch bump, an evening peak.
const WEEKDAY: [f64; 24] = [
    0.30, 0.18, 0.10, 0.07, 0.06, 0.08, 0.15, 0.28, 0.42, 0.52, 0.58, 0.62, 0.70, 0.66, 0.60, 0.60,
    0.62, 0.68, 0.78, 0.90, 1.00, 0.96, 0.78, 0.50,
];

/// Weekends: later mornings, a broad afternoon, a strong evening.
const WEEKEND: [f64; 24] = [
    0.38, 0.25, 0.14, 0.09, 0.07, 0.07, 0.10, 0.18, 0.32, 0.50, 0.66, 0.76, 0.82, 0.84, 0.84, 0.82,
    0.80, 0.82, 0.88, 0.96, 1.00, 0.94, 0.76, 0.52,
];

/// Where the traffic comes from: (UTC offset in hours in northern summer, in winter, share).
const ZONES: [(i64, i64, f64); 5] = [
    (-4, -5, 0.30),
    (-5, -6, 0.14),
    (-7, -8, 0.18),
    (1, 0, 0.13),
    (2, 1, 0.25),
];

/// Sales and holidays of the calendar (month, day) → multiplier.
fn holiday(y: i64, m: u32, d: u32) -> f64 {
    // Black Friday: the day after the fourth Thursday of November; Cyber Monday 3 days later
    let nov1 = shopdiff_schemas::time::days_from_civil(y, 11, 1);
    let weekday = (nov1 + 3).rem_euclid(7); // 0 = Monday; 1970-01-01 was a Thursday
    let black_friday = 1 + (3 - weekday).rem_euclid(7) as u32 + 22;
    match (m, d) {
        (1, 1) => 0.75,
        (2, 7..=13) => 1.10,
        (7, 4) => 1.15,
        (7, 16..=17) => 1.35,
        (8, 15..=31) | (9, 1..=2) => 1.10,
        (11, d) if d == black_friday => 1.60,
        (11, d) if d == black_friday + 3 => 1.50,
        (12, d) if black_friday > 27 && d == black_friday + 3 - 30 => 1.50,
        (11, d) if d > black_friday => 1.25,
        (12, 1..=22) => 1.25,
        (12, 24) => 0.90,
        (12, 25) => 0.70,
        (12, 26) => 1.30,
        _ => 1.0,
    }
}

/// Behavior events per hour at time `t` (UTC ms), within the seed's 100k-500k range.
pub fn events_per_hour(t: Ms) -> f64 {
    let day = t.div_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(day);
    let summer = (4..=10).contains(&m);
    let mut activity = 0.0;
    for (so, wo, share) in ZONES {
        let local = t + (if summer { so } else { wo }) * HOUR_MS;
        let lday = local.div_euclid(DAY_MS);
        let hour = (local.rem_euclid(DAY_MS) / HOUR_MS) as usize;
        // 1970-01-01 was a Thursday: weekday 0 = Monday
        let weekday = (lday + 3).rem_euclid(7);
        let curve = if weekday >= 5 { &WEEKEND } else { &WEEKDAY };
        let week = match weekday {
            4 => 0.95,
            5 => 1.05,
            6 => 1.0,
            _ => 0.9,
        };
        activity += share * curve[hour] * week;
    }
    let a = (activity * holiday(y, m, d)).clamp(0.0, 1.0);
    100_000.0 + 400_000.0 * a
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopdiff_schemas::time::parse_rfc3339;

    #[test]
    fn within_seed_range_and_shaped() {
        let t0 = parse_rfc3339("2024-07-01T00:00:00Z").unwrap();
        let mut lo = f64::MAX;
        let mut hi = 0.0f64;
        for h in 0..24 * 14 {
            let v = events_per_hour(t0 + h * HOUR_MS);
            lo = lo.min(v);
            hi = hi.max(v);
        }
        assert!(lo >= 100_000.0 && hi <= 500_000.0, "{lo} {hi}");
        assert!(hi / lo > 2.0, "{lo} {hi}");
        // US evening beats the European night-time trough
        let evening = events_per_hour(parse_rfc3339("2024-07-03T00:00:00Z").unwrap());
        let night = events_per_hour(parse_rfc3339("2024-07-03T08:00:00Z").unwrap());
        assert!(evening > night, "{evening} {night}");
        let bf = events_per_hour(parse_rfc3339("2024-11-29T20:00:00Z").unwrap());
        let before = events_per_hour(parse_rfc3339("2024-11-15T20:00:00Z").unwrap());
        assert!(bf > before, "{bf} {before}");
    }
}
