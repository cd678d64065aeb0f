//! Hand-made cases of `batch_fraud`, worked out from the contract.

use super::super::testkit::{at, event, line, ms, World};
use super::*;
use shopdiff_schemas::records::EventKind;

const T: &str = "2024-03-01T12:00:00Z";

fn alerts(w: &World, as_of: u64) -> Vec<(Rule, String, String, i64)> {
    batch_fraud(&w.at(as_of), &FraudConfig::default())
        .into_iter()
        .map(|a| {
            assert_eq!(a.threshold, FraudConfig::default().threshold(a.rule));
            (a.rule, a.key.to_string(), a.user_id.to_string(), a.measure)
        })
        .collect()
}

fn own(rule: Rule, key: &str, user: &str, measure: i64) -> (Rule, String, String, i64) {
    (rule, key.into(), user.into(), measure)
}

#[test]
fn velocity_window_edges() {
    let t = ms(T);
    let w10 = 600_000;
    let mut w = World::default();
    // exactly W before as_of: ceil_tick = T - W, outside
    w.line(line("T0", "P1", "U1", t - w10));
    // 999 ms further back still ticks to T - W: outside
    w.line(line("T1", "P1", "U1", t - w10 - 999));
    // 1 ms after T - W ticks to T - W + 1 s: inside
    w.line(line("T2", "P1", "U1", t - w10 + 1));
    for k in 3..=6 {
        w.line(line(&format!("T{k}"), "P1", "U1", t - 60_000 * k));
    }
    // a second line of a transaction already counted
    w.line(line("T3", "P2", "U1", t - 1));
    // after as_of: not visible
    w.line(line("T7", "P1", "U1", t + 1));
    // T2..T6: 5 transactions, not > 5
    assert_eq!(alerts(&w, at(T)), vec![]);
    // at T - 1 s the window holds ceil_tick in (T - W - 1 s, T - 1 s]: T0 and T1 (both tick to
    // T - W) are inside; T3's second line (ticks to T) is not visible, T3 counts by its first
    assert_eq!(
        alerts(&w, at(T) - 1000),
        vec![own(Rule::Velocity, "U1", "U1", 7)]
    );
    // at T + 1 s, T2 (ticks to T - W + 1 s) has left and T7 came: T3..T7, 5 again
    assert_eq!(alerts(&w, at(T) + 1000), vec![]);
    // one more transaction 999 ms after that boundary ticks to T - W + 1 s as well
    w.line(line("T8", "P1", "U1", t - w10 + 999));
    assert_eq!(alerts(&w, at(T)), vec![own(Rule::Velocity, "U1", "U1", 6)]);
    assert_eq!(alerts(&w, at(T) + 1000), vec![]);
}

#[test]
fn late_line_inside_and_outside_a_window() {
    let t = ms(T);
    let mut w = World::default();
    let mut big = line("T1", "P1", "U1", t - 30 * 60_000); // 30 min before T
    big.price = 600_000; // 6000.00
                         // late: takes effect at T although its event time is 30 minutes earlier
    w.late_line(big, at(T));
    // not visible before it takes effect, although its ts is in the window
    assert_eq!(alerts(&w, at(T) - 1000), vec![]);
    assert_eq!(
        alerts(&w, at(T)),
        vec![own(Rule::Amount, "U1", "U1", 600_000)]
    );
    // its ts, not its effect time, decides the window: gone 30 min later
    assert_eq!(
        alerts(&w, at(T) + 30 * 60_000 - 1000),
        vec![own(Rule::Amount, "U1", "U1", 600_000)]
    );
    assert_eq!(alerts(&w, at(T) + 30 * 60_000), vec![]);
    // a late line whose ts left the window before it took effect never counts
    let mut w = World::default();
    let mut old = line("T2", "P1", "U2", t - 61 * 60_000);
    old.price = 600_000;
    w.late_line(old, at(T));
    assert_eq!(alerts(&w, at(T)), vec![]);
}

#[test]
fn amount_adds_currencies_and_is_strict() {
    let t = ms(T);
    let mut w = World::default();
    let mut a = line("T1", "P1", "U1", t - 1000);
    a.price = 300_000;
    let mut b = line("T2", "P1", "U1", t - 2000);
    b.price = 200_500;
    b.discount = 500;
    b.currency = "EUR".into();
    w.line(a);
    w.line(b);
    // exactly 500000 cents: no alert
    assert_eq!(alerts(&w, at(T)), vec![]);
    w.line(line("T3", "P1", "U1", t - 3000));
    assert_eq!(
        alerts(&w, at(T)),
        vec![own(Rule::Amount, "U1", "U1", 501_000)]
    );
}

#[test]
fn geo_counts_known_countries() {
    let t = ms(T);
    let mut w = World::default();
    let located = |tx: &str, user: &str, ts, country: &str| {
        let mut l = line(tx, "P1", user, ts);
        l.country = country.into();
        l
    };
    // U1: FR 75 min ago (outside), DE now, and a line without country
    w.line(located("T1", "U1", t - 75 * 60_000, "FR"));
    w.line(located("T2", "U1", t - 1000, "DE"));
    w.line(located("T3", "U1", t - 2000, "none"));
    // U2: FR and DE within 45 minutes, twice FR
    w.line(located("T4", "U2", t - 45 * 60_000, "FR"));
    w.line(located("T5", "U2", t - 44 * 60_000, "FR"));
    w.line(located("T6", "U2", t - 1000, "DE"));
    assert_eq!(alerts(&w, at(T)), vec![own(Rule::Geo, "U2", "U2", 2)]);
    // 16 minutes earlier U1's FR line (75 min before T) is inside, with a DE line 17 minutes
    // before T, and U2 had only FR
    let earlier = at(T) - 16 * 60_000;
    w.line(located("T7", "U1", t - 17 * 60_000, "DE"));
    assert_eq!(alerts(&w, earlier), vec![own(Rule::Geo, "U1", "U1", 2)]);
}

#[test]
fn risky_ip_rules() {
    let t = ms(T);
    let mut w = World::default();
    w.ip("1.1.1.1", Some(300_000), true); // Tor with a score: 1.0
    w.ip("2.2.2.2", None, true); // Tor with a null score: ignored
    w.ip("3.3.3.3", Some(800_000), false); // exactly 0.8
    w.ip("4.4.4.4", Some(799_999), false);
    w.ip("5.5.5.5", Some(900_000), false);
    let ev = |id: &str, session: &str, ip: &str, ts| {
        let mut e = event(id, "Ux", Some(session), EventKind::PageView, ts);
        e.ip = Some(ip.into());
        e
    };
    w.event(ev("E1", "S1", "1.1.1.1", t - 5000));
    w.event(ev("E2", "S2", "2.2.2.2", t - 5000));
    w.event(ev("E3", "S3", "3.3.3.3", t - 5000));
    w.event(ev("E4", "S4", "4.4.4.4", t - 5000));
    w.event(ev("E5", "S4", "9.9.9.9", t - 5000)); // no row: ignored
                                                  // S5's risky IP is seen only after the purchase, and takes effect at T + 1 s
    w.event(ev("E6", "S5", "5.5.5.5", t + 500));
    let with_session = |tx: &str, user: &str, s: Option<&str>| {
        let mut l = line(tx, "P1", user, t - 60_000);
        l.session_id = s.map(Str::from);
        l
    };
    w.line(with_session("T1", "U1", Some("S1")));
    w.line(with_session("T2", "U2", Some("S2")));
    w.line(with_session("T3", "U3", Some("S3")));
    w.line(with_session("T4", "U4", Some("S4")));
    w.line(with_session("T5", "U5", Some("S5")));
    w.line(with_session("T6", "U6", None));
    // a transaction whose lines disagree on user and session: smallest user, greatest risk
    w.line(with_session("T7", "U9", Some("S4")));
    let mut other = with_session("T7", "U7", Some("S3"));
    other.product_id = "P2".into();
    w.line(other);
    assert_eq!(
        alerts(&w, at(T)),
        vec![
            own(Rule::RiskyIp, "T1", "U1", 1_000_000),
            own(Rule::RiskyIp, "T3", "U3", 800_000),
            own(Rule::RiskyIp, "T7", "U7", 800_000),
        ]
    );
    // no window: a day later the alerts still hold, and S5's later event now counts
    let later = alerts(&w, at(T) + 86_400_000);
    assert_eq!(later.len(), 4);
    assert_eq!(later[2], own(Rule::RiskyIp, "T5", "U5", 900_000));
    // the table at as_of decides: S4's IP becomes risky
    w.ip("4.4.4.4", Some(850_000), false);
    let now = alerts(&w, at(T));
    assert_eq!(now.len(), 4);
    assert_eq!(now[2], own(Rule::RiskyIp, "T4", "U4", 850_000));
    assert_eq!(now[3], own(Rule::RiskyIp, "T7", "U7", 850_000));
}

#[test]
fn configured_thresholds_and_windows() {
    let t = ms(T);
    let mut w = World::default();
    for k in 0..3 {
        w.line(line(&format!("T{k}"), "P1", "U1", t - 120_000 * k));
    }
    let mut cfg = FraudConfig::default();
    cfg.velocity.threshold = 1;
    cfg.velocity.window_ms = 240_000; // holds T0 and T1; T2 at exactly T - 4 min is out
    cfg.risky_ip_threshold = 0;
    let rows = batch_fraud(&w.at(at(T)), &cfg);
    assert_eq!(
        rows,
        vec![AlertRow {
            rule: Rule::Velocity,
            key: "U1".into(),
            user_id: "U1".into(),
            measure: 2,
            threshold: 1,
        }]
    );
}

#[test]
fn tor_counts_as_one_among_the_session_ips() {
    // NUMERIC(4,3) allows scores above 1: a Tor IP counts as exactly 1.0 and the greatest
    // effective risk of the session wins
    let t = ms(T);
    let mut w = World::default();
    w.ip("1.1.1.1", Some(1_500_000), true);
    w.ip("2.2.2.2", Some(200_000), true);
    w.ip("3.3.3.3", Some(1_200_000), false);
    for (id, session, ip) in [
        ("E1", "S1", "1.1.1.1"),
        ("E2", "S2", "2.2.2.2"),
        ("E3", "S2", "3.3.3.3"),
    ] {
        let mut e = event(id, "Ux", Some(session), EventKind::PageView, t - 5000);
        e.ip = Some(ip.into());
        w.event(e);
    }
    for (tx, session) in [("T1", "S1"), ("T2", "S2")] {
        let mut l = line(tx, "P1", "U1", t - 4000);
        l.session_id = Some(session.into());
        w.line(l);
    }
    assert_eq!(
        alerts(&w, at(T)),
        vec![
            own(Rule::RiskyIp, "T1", "U1", 1_000_000),
            own(Rule::RiskyIp, "T2", "U1", 1_200_000),
        ]
    );
}
