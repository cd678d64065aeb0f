//! Every injected fraud pattern meets exactly its `fraud_alerts` rule, checked by brute force
//! over the generated lines: windowed alerts raise at `first`, hold through `last` and appear
//! nowhere else; the risky transactions are exactly the manifest's.

mod generator_support;

use generator_support::{all_items, noisy, replay};
use shopdiff_connectors::generator::{Anomaly, GenItem, GenStream, Generator, Rule};
use shopdiff_schemas::records::Line;
use shopdiff_schemas::tables::{parse_change, parse_row, ChangeOp, TableRow, RISK_SCALE};
use shopdiff_schemas::time::{ceil_tick, Ms, HOUR_MS};
use shopdiff_schemas::Table;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// An `ip_reputation` row as the rule sees it: `(risk_score in millionths, is_tor)`.
type IpRisk = (Option<i64>, bool);

/// The IP table over time: initial rows, then valid recorded changes at `ceil_tick(at)`.
struct IpTable {
    initial: HashMap<String, IpRisk>,
    changes: Vec<(Ms, String, Option<IpRisk>)>,
}

impl IpTable {
    fn risky_at(&self, ip: &str, t: Ms) -> bool {
        let mut row = self.initial.get(ip).copied();
        for (at, key, r) in &self.changes {
            if *at <= t && key == ip {
                row = *r;
            }
        }
        matches!(row, Some((Some(risk), tor)) if risk >= 8 * RISK_SCALE / 10 || tor)
    }
}

fn ip_table(g: &Generator, items: &[GenItem]) -> IpTable {
    let mut initial = HashMap::new();
    for l in g.tables().get(Table::IpReputation) {
        if let Ok(TableRow::Ip(ip)) = parse_row(Table::IpReputation, &l.json) {
            initial.insert(ip.ip_address.to_string(), (ip.risk, ip.is_tor));
        }
    }
    let mut changes = Vec::new();
    for it in items.iter().filter(|i| i.stream == GenStream::Change) {
        let c = parse_change(&it.json).expect("change");
        let at = ceil_tick(c.at, 1000) as Ms;
        match c.op {
            Ok(ChangeOp::Upsert(TableRow::Ip(ip))) => {
                changes.push((at, ip.ip_address.to_string(), Some((ip.risk, ip.is_tor))))
            }
            Ok(ChangeOp::Delete(k)) if c.table == Table::IpReputation => {
                changes.push((at, k.to_string(), None))
            }
            _ => {}
        }
    }
    IpTable { initial, changes }
}

const TICK: u64 = 1000;

fn tick(ts: Ms) -> Ms {
    ceil_tick(ts, TICK) as Ms
}

/// Whether a windowed rule holds for one user's lines at `as_of = t`.
fn holds(rule: Rule, lines: &[&Line], t: Ms) -> bool {
    let w = if rule == Rule::Velocity {
        600_000
    } else {
        HOUR_MS
    };
    let inside = lines
        .iter()
        .filter(|l| t - w < tick(l.ts) && tick(l.ts) <= t);
    match rule {
        Rule::Velocity => {
            inside
                .map(|l| &l.transaction_id)
                .collect::<HashSet<_>>()
                .len()
                > 5
        }
        Rule::Amount => inside.map(|l| l.net()).sum::<i64>() > 500_000,
        Rule::Geo => {
            inside
                .filter_map(|l| l.known_country())
                .collect::<HashSet<_>>()
                .len()
                >= 2
        }
        Rule::RiskyIp => unreachable!(),
    }
}

#[test]
fn anomalies_meet_exactly_their_rules() {
    let cfg = noisy(120_000);
    let (g, items) = all_items(&cfg);
    let manifest: Vec<Anomaly> = g.anomalies().to_vec();
    for rule in Rule::ALL {
        let n = manifest.iter().filter(|a| a.rule == rule).count();
        assert!(n >= 2, "{n} {} patterns", rule.as_str());
    }
    let r = replay(&items);
    let mut by_user: HashMap<&str, Vec<&Line>> = HashMap::new();
    for l in &r.lines {
        by_user.entry(l.user_id.as_str()).or_default().push(l);
    }
    // each windowed pattern raises its alert exactly at `first` and holds through `last`
    let windowed: Vec<&Anomaly> = manifest
        .iter()
        .filter(|a| a.rule != Rule::RiskyIp)
        .collect();
    for a in &windowed {
        let lines = &by_user[a.user_id.as_str()];
        assert_eq!(a.key, a.user_id);
        assert!(holds(a.rule, lines, tick(a.first)), "{}", a.to_json());
        assert!(
            !holds(a.rule, lines, tick(a.first) - TICK as Ms),
            "raised before first: {}",
            a.to_json()
        );
        assert!(holds(a.rule, lines, tick(a.last)), "{}", a.to_json());
    }
    // no alert anywhere else: every user, every rule, at every tick where a line arrives
    let mut alerts = 0;
    for (user, lines) in &by_user {
        for rule in [Rule::Velocity, Rule::Amount, Rule::Geo] {
            for l in lines {
                let t = tick(l.ts);
                if holds(rule, lines, t) {
                    alerts += 1;
                    let covered = windowed.iter().any(|a| {
                        a.rule == rule
                            && a.user_id == *user
                            && tick(a.first) <= t
                            && t <= tick(a.last)
                    });
                    assert!(
                        covered,
                        "unexpected {} alert for {user} at {t}",
                        rule.as_str()
                    );
                }
            }
        }
    }
    assert!(alerts >= windowed.len());
    // risky_ip: the transactions that end up risky are exactly the manifest's, raised at `first`
    let ips = ip_table(&g, &items);
    let mut session_events: HashMap<&str, Vec<(&str, Ms)>> = HashMap::new();
    for e in &r.events {
        if let (Some(s), Some(ip)) = (&e.session_id, &e.ip) {
            session_events
                .entry(s.as_str())
                .or_default()
                .push((ip.as_str(), tick(e.ts)));
        }
    }
    let mut candidates: BTreeSet<Ms> = ips.changes.iter().map(|c| c.0).collect();
    candidates.insert(Ms::MAX / 2);
    let risky_at = |l: &Line, t: Ms| {
        tick(l.ts) <= t
            && l.session_id
                .as_ref()
                .and_then(|s| session_events.get(s.as_str()))
                .is_some_and(|evs| evs.iter().any(|&(ip, et)| et <= t && ips.risky_at(ip, t)))
    };
    let mut risky: BTreeMap<String, Ms> = BTreeMap::new();
    for l in &r.lines {
        let evs = l
            .session_id
            .as_ref()
            .and_then(|s| session_events.get(s.as_str()));
        let mut times: Vec<Ms> = evs
            .map(|e| e.iter().map(|x| x.1).collect())
            .unwrap_or_default();
        times.push(tick(l.ts));
        times.extend(candidates.iter().copied());
        times.sort();
        if let Some(&t) = times.iter().find(|&&t| risky_at(l, t)) {
            let first = risky.entry(l.transaction_id.to_string()).or_insert(t);
            *first = (*first).min(t);
        }
    }
    let expected: BTreeMap<String, Ms> = manifest
        .iter()
        .filter(|a| a.rule == Rule::RiskyIp)
        .map(|a| (a.key.clone(), tick(a.first)))
        .collect();
    assert_eq!(risky, expected);
    let variants: BTreeSet<&str> = manifest.iter().map(|a| a.variant).collect();
    for v in [
        "burst",
        "spike",
        "two_currencies",
        "two_countries",
        "tor",
        "score",
        "exact_threshold",
        "change",
        "after_purchase",
    ] {
        assert!(variants.contains(v), "no {v} pattern in {variants:?}");
    }
}
