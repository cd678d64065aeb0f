//! `fraud_alerts` (contract 5 and 5a): four rules, thresholds and windows from [`FraudConfig`].
//!
//! * Inputs: `lines`, `events` (any key), `ips` keyed by `ip_address`.
//! * Output: [`AlertRow`] keyed by `(rule, key)`; a row exists exactly while its condition holds.
//! * Windows are trailing and closed on the right: a line is in a window of length `W` from
//!   `ceil_tick(ts)` to `ceil_tick(ts) + W` (a data-driven temporal filter, correct for late
//!   records). velocity: distinct transactions per user; amount: net cents per user, all
//!   currencies; geo: distinct known countries per user; risky_ip (no window): per transaction,
//!   the greatest risk of the IPs seen in its session's events (a Tor IP with a risk counts as
//!   1.0; IPs without a row or risk are ignored).
//! * Cost of one line: one update of each window aggregate for its user when it enters and when
//!   it leaves; one `(session, transaction)` pair. An event adds one `(ip, session)` pair; an
//!   `ip_reputation` change re-scores the sessions that saw the IP and their transactions.
//! * State: each window's per-user aggregate and the distinct `(ip, session)`, session risks,
//!   `(session, (transaction, user))` and per-transaction risks in [`Keyed::fold_by_key`]
//!   hash maps; the two joins (sessions by IP hash with `ip_reputation`, transactions by
//!   session hash with the session risks) in [`LeftJoin::left_join`] hash maps, their misses
//!   dropped. No arrangements.

use crate::common::{id_hash, AnyLine, Coll, Count};
use crate::config::FraudConfig;
use shopdiff_operators::keyed::{Fold, Keyed, LeftJoin};
use shopdiff_operators::window::WindowAggregates;
use shopdiff_schemas::records::{Event, Line};
use shopdiff_schemas::rows::{AlertRow, Rule};
use shopdiff_schemas::tables::{IpRep, RISK_SCALE};
use shopdiff_schemas::time::{ceil_tick, Ms};
use shopdiff_schemas::Str;

/// Maintains `fraud_alerts`.
pub fn fraud_alerts<'s, L: AnyLine>(
    lines: Coll<'s, L>,
    events: Coll<'s, Event>,
    ips: Coll<'s, (Str, IpRep)>,
    cfg: &FraudConfig,
    tick: u64,
) -> Coll<'s, AlertRow> {
    let start = move |v: &(Str, (Str, Ms))| ceil_tick((v.1).1, tick);
    let alert = |rule: Rule, threshold: i64, strict: bool| {
        move |(user, measure): (Str, i64)| {
            let hit = if strict {
                measure > threshold
            } else {
                measure >= threshold
            };
            hit.then(|| AlertRow {
                rule,
                key: user.clone(),
                user_id: user,
                measure,
                threshold,
            })
        }
    };
    let velocity = lines
        .clone()
        .map(|l: L| {
            let l: &Line = l.borrow();
            (l.user_id.clone(), (l.transaction_id.clone(), l.ts))
        })
        .window_distinct_count(cfg.velocity.window_ms, start, |(tx, _)| tx.clone())
        .flat_map(alert(Rule::Velocity, cfg.velocity.threshold, true));
    let amount = lines
        .clone()
        .map(|l: L| {
            let l: &Line = l.borrow();
            (l.user_id.clone(), (l.ts, l.net()))
        })
        .window_sum(
            cfg.amount.window_ms,
            move |v: &(Str, (Ms, i64))| ceil_tick((v.1).0, tick),
            |v| v.1,
        )
        .flat_map(alert(Rule::Amount, cfg.amount.threshold, true));
    let geo = lines
        .clone()
        .flat_map(|l: L| {
            let l: &Line = l.borrow();
            l.known_country()
                .cloned()
                .map(|c| (l.user_id.clone(), (c, l.ts)))
        })
        .window_distinct_count(cfg.geo.window_ms, start, |(c, _)| c.clone())
        .flat_map(alert(Rule::Geo, cfg.geo.threshold, false));
    let risky = risky_ip(lines, events, ips, cfg.risky_ip_threshold);
    velocity.concat(amount).concat(geo).concat(risky)
}

/// `risky_ip`: transactions whose sessions saw an IP at or above the threshold. IPs and
/// sessions travel as 64-bit hashes (only compared for equality, like the transaction ids of
/// the distinct counts); the transaction id and user stay strings for the row.
fn risky_ip<'s, L: AnyLine>(
    lines: Coll<'s, L>,
    events: Coll<'s, Event>,
    ips: Coll<'s, (Str, IpRep)>,
    threshold: i64,
) -> Coll<'s, AlertRow> {
    let seen = events
        .flat_map(|e| match (e.session_id, e.ip) {
            (Some(s), Some(ip)) => Some(((id_hash(&ip), id_hash(&s)), ())),
            _ => None,
        })
        .fold_by_key("SeenIps", |_k, n: &Count| n.present())
        .map(|((ip, session), ())| (ip, session));
    let scores = ips.flat_map(|(ip, rep)| {
        rep.risk
            .map(|r| (id_hash(&ip), if rep.is_tor { RISK_SCALE } else { r }))
    });
    // inner joins as left joins (one score per IP, one risk per session) whose misses drop
    let session_risk = seen
        .left_join(scores)
        .flat_map(|(session, score)| score.map(|s| (session, s)))
        .fold_by_key("SessionRisk", |_s, m: &Values<i64>| m.max());
    let tx_sessions = lines
        .flat_map(|l: L| {
            let l: &Line = l.borrow();
            l.session_id.as_ref().map(|s| {
                (
                    (id_hash(s), (l.transaction_id.clone(), l.user_id.clone())),
                    (),
                )
            })
        })
        .fold_by_key("TxSessions", |_k, n: &Count| n.present())
        .map(|((s, tx_user), ())| (s, tx_user));
    tx_sessions
        .left_join(session_risk)
        .flat_map(|((tx, user), risk)| risk.map(|r| (tx, (r, user))))
        .fold_by_key("TxRisk", |_tx, m: &Values<(i64, Str)>| {
            let max = m.positive().map(|v| v.0).max()?;
            let user = m.positive().map(|v| &v.1).min()?;
            Some((max, user.clone()))
        })
        .flat_map(move |(tx, (risk, user))| {
            (risk >= threshold).then(|| AlertRow {
                rule: Rule::RiskyIp,
                key: tx,
                user_id: user,
                measure: risk,
                threshold,
            })
        })
}

/// A small multiset of values.
struct Values<V>(Vec<(V, isize)>);

impl<V> Default for Values<V> {
    fn default() -> Self {
        Values(Vec::new())
    }
}

impl<V: Clone + PartialEq + 'static> Fold<V> for Values<V> {
    fn add(&mut self, v: &V, diff: isize) {
        match self.0.iter().position(|(x, _)| x == v) {
            Some(i) => {
                self.0[i].1 += diff;
                if self.0[i].1 == 0 {
                    self.0.swap_remove(i);
                }
            }
            None => self.0.push((v.clone(), diff)),
        }
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V> Values<V> {
    fn positive(&self) -> impl Iterator<Item = &V> {
        self.0.iter().filter(|(_, n)| *n > 0).map(|(v, _)| v)
    }
}

impl Values<i64> {
    fn max(&self) -> Option<i64> {
        self.positive().max().copied()
    }
}
