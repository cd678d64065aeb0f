//! `fraud_alerts` (contract 5 and 5a). Windows are trailing and closed on the right: at
//! `as_of = T` a window of length `W` holds the visible lines with `T - W < ceil_tick(ts) <= T`.
//!
//! * `velocity` (key `user_id`): distinct `transaction_id`s with a line in the window
//!   `> threshold`;
//! * `amount` (key `user_id`): net cents of the window's lines, all currencies added,
//!   `> threshold`;
//! * `geo` (key `user_id`): distinct non-missing countries of the window's lines `>= threshold`
//!   (only users with at least one such country are considered, so the measure is `>= 1`);
//! * `risky_ip` (key `transaction_id`, no window): the greatest risk, in millionths, of the IPs
//!   seen in the visible behavior events of the sessions of the transaction's visible lines
//!   (also events after the purchase). IPs without a row or with a null `risk_score` are
//!   ignored; an `is_tor` IP with a score counts as 1.0 (`RISK_SCALE`), whatever its score.
//!   Alert when `>= threshold`. The row's `user_id` is the lines' (the smallest when the
//!   transaction's visible lines disagree).

use super::Visible;
use crate::config::FraudConfig;
use shopdiff_schemas::money::Sum;
use shopdiff_schemas::rows::{AlertRow, Rule};
use shopdiff_schemas::tables::RISK_SCALE;
use shopdiff_schemas::Str;
use std::collections::{BTreeMap, BTreeSet};

fn alert(rule: Rule, key: &Str, user_id: &Str, measure: i64, threshold: i64) -> AlertRow {
    AlertRow {
        rule,
        key: key.clone(),
        user_id: user_id.clone(),
        measure,
        threshold,
    }
}

/// `fraud_alerts` at `v.as_of`, sorted by `(rule, key)`.
pub fn batch_fraud(v: &Visible, cfg: &FraudConfig) -> Vec<AlertRow> {
    let mut alerts = Vec::new();
    velocity(v, cfg, &mut alerts);
    amount(v, cfg, &mut alerts);
    geo(v, cfg, &mut alerts);
    risky_ip(v, cfg, &mut alerts);
    alerts.sort();
    alerts
}

fn velocity(v: &Visible, cfg: &FraudConfig, out: &mut Vec<AlertRow>) {
    let rule = cfg.velocity;
    let mut txs: BTreeMap<&Str, BTreeSet<&Str>> = BTreeMap::new();
    for l in v.window_lines(rule.window_ms) {
        txs.entry(&l.user_id).or_default().insert(&l.transaction_id);
    }
    for (user, set) in txs {
        let measure = set.len() as i64;
        if measure > rule.threshold {
            out.push(alert(Rule::Velocity, user, user, measure, rule.threshold));
        }
    }
}

fn amount(v: &Visible, cfg: &FraudConfig, out: &mut Vec<AlertRow>) {
    let rule = cfg.amount;
    let mut net: BTreeMap<&Str, Sum> = BTreeMap::new();
    for l in v.window_lines(rule.window_ms) {
        *net.entry(&l.user_id).or_default() += l.net() as Sum;
    }
    for (user, measure) in net {
        // the measure is shown as a number: saturated where an hour's sum passes an i64
        let measure = measure.clamp(i64::MIN as Sum, i64::MAX as Sum) as i64;
        if measure > rule.threshold {
            out.push(alert(Rule::Amount, user, user, measure, rule.threshold));
        }
    }
}

fn geo(v: &Visible, cfg: &FraudConfig, out: &mut Vec<AlertRow>) {
    let rule = cfg.geo;
    let mut countries: BTreeMap<&Str, BTreeSet<&Str>> = BTreeMap::new();
    for l in v.window_lines(rule.window_ms) {
        if let Some(c) = l.known_country() {
            countries.entry(&l.user_id).or_default().insert(c);
        }
    }
    for (user, set) in countries {
        let measure = set.len() as i64;
        if measure >= rule.threshold {
            out.push(alert(Rule::Geo, user, user, measure, rule.threshold));
        }
    }
}

fn risky_ip(v: &Visible, cfg: &FraudConfig, out: &mut Vec<AlertRow>) {
    let threshold = cfg.risky_ip_threshold;
    // the greatest risk of each session's rated IPs
    let mut session_risk: BTreeMap<&Str, i64> = BTreeMap::new();
    for e in v.visible_events() {
        let (Some(session), Some(ip)) = (&e.session_id, &e.ip) else {
            continue;
        };
        let Some(rep) = v.ips.get(ip) else {
            continue;
        };
        let Some(risk) = rep.risk else {
            continue;
        };
        let risk = if rep.is_tor { RISK_SCALE } else { risk };
        let best = session_risk.entry(session).or_insert(risk);
        *best = (*best).max(risk);
    }
    // per transaction: the smallest user_id of its lines, the greatest risk of their sessions
    let mut txs: BTreeMap<&Str, (&Str, Option<i64>)> = BTreeMap::new();
    for l in v.visible_lines() {
        let risk = l
            .session_id
            .as_ref()
            .and_then(|s| session_risk.get(s).copied());
        let entry = txs.entry(&l.transaction_id).or_insert((&l.user_id, None));
        entry.0 = entry.0.min(&l.user_id);
        entry.1 = entry.1.max(risk);
    }
    for (tx, (user, risk)) in txs {
        if let Some(measure) = risk.filter(|&r| r >= threshold) {
            out.push(alert(Rule::RiskyIp, tx, user, measure, threshold));
        }
    }
}

#[cfg(test)]
#[path = "fraud_tests.rs"]
mod tests;
