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
//! * The three windowed rules share one stage: a line enters as up to three tagged records
//!   (transaction, net, country), each valid for its own rule's window, through one temporal
//!   filter and one exchange into one per-user state that keeps the three measures; its row is
//!   the user's alerts, so a line that leaves every measure below its threshold sends nothing
//!   further.
//! * Cost of one line: one update of its user's state per tagged record when it enters and
//!   when it leaves its window; one lookup of its session in the second join. An event costs
//!   one lookup of its IP in the first join (and one update of its session's risks when the
//!   IP scores at or above the threshold); an `ip_reputation` change re-scores the sessions
//!   that saw the IP and their transactions.
//! * State: the per-user windows and the risky sessions' and transactions' risks in
//!   [`Keyed::fold_by_key`] hash maps; the records waiting to leave their windows in the
//!   temporal filter; the two joins (sessions by IP hash with the scores at or above the
//!   threshold, `(transaction, user)` by session hash with the session risks) in
//!   [`LeftJoin::left_join`] hash maps, each pair once with its multiplicity, their misses
//!   dropped. Only risky sessions have a risk, so the per-session state is one entry per
//!   session that saw an IP or holds a transaction. No arrangements.

use crate::common::{id_hash, AnyLine, Coll};
use crate::config::FraudConfig;
use serde::{Deserialize, Serialize};
use shopdiff_operators::keyed::{Distinct, Fold, Keyed, LeftJoin};
use shopdiff_operators::window::TemporalFilter;
use shopdiff_schemas::money::Cents;
use shopdiff_schemas::records::{Event, Line};
use shopdiff_schemas::rows::{AlertRow, Rule};
use shopdiff_schemas::tables::{IpRep, RISK_SCALE};
use shopdiff_schemas::time::ceil_tick;
use shopdiff_schemas::Str;

/// Maintains `fraud_alerts`.
pub fn fraud_alerts<'s, L: AnyLine>(
    lines: Coll<'s, L>,
    events: Coll<'s, Event>,
    ips: Coll<'s, (Str, IpRep)>,
    cfg: &FraudConfig,
    tick: u64,
) -> Coll<'s, AlertRow> {
    let windowed = windowed_alerts(lines.clone(), cfg, tick);
    let risky = risky_ip(lines, events, ips, cfg.risky_ip_threshold);
    windowed.concat(risky)
}

/// What a line puts in its user's windows: its transaction (a 64-bit hash, only compared for
/// equality) in the `velocity` window, its net cents in the `amount` window, its country (when
/// known) in the `geo` window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Windowed {
    Tx(u64),
    Net(Cents),
    Country(Str),
}

/// The three windowed rules over one window stage and one per-user state: a line enters as up
/// to three tagged records, each valid from its start tick for its own rule's window
/// ([`TemporalFilter`], whose validity may differ per record), and one fold per user keeps the
/// three measures together. The fold's row is the user's alerts, not the measures, so a line
/// that moves a measure below its threshold sends nothing further.
fn windowed_alerts<'s, L: AnyLine>(
    lines: Coll<'s, L>,
    cfg: &FraudConfig,
    tick: u64,
) -> Coll<'s, AlertRow> {
    let (velocity, amount, geo) = (cfg.velocity, cfg.amount, cfg.geo);
    let width = move |w: &Windowed| match w {
        Windowed::Tx(_) => velocity.window_ms,
        Windowed::Net(_) => amount.window_ms,
        Windowed::Country(_) => geo.window_ms,
    };
    lines
        .flat_map(move |l: L| {
            let l: &Line = l.borrow();
            let start = ceil_tick(l.ts, tick);
            let user = &l.user_id;
            [
                Some(Windowed::Tx(id_hash(&l.transaction_id))),
                Some(Windowed::Net(l.net())),
                l.known_country().cloned().map(Windowed::Country),
            ]
            .into_iter()
            .flatten()
            .map(move |w| (user.clone(), (w, start)))
            .collect::<smallvec::SmallVec<[_; 3]>>()
        })
        .temporal_filter(move |(_, (w, start))| (*start, start.saturating_add(width(w))))
        .fold_by_key("UserWindows", move |_user, s: &UserWindows| {
            let hit = |measure: i64, threshold: i64, strict: bool| {
                let hit = if strict {
                    measure > threshold
                } else {
                    measure >= threshold
                };
                hit.then_some(measure)
            };
            let alerts = [
                hit(s.txs.count() as i64, velocity.threshold, true),
                // a user with no line in the window has no amount (even if retractions of
                // lines never inserted left a sum)
                (s.amount_lines > 0)
                    // shown as a number: saturated where an hour's sum passes an i64
                    .then(|| {
                        hit(
                            s.net.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
                            amount.threshold,
                            true,
                        )
                    })
                    .flatten(),
                hit(s.countries.count() as i64, geo.threshold, false),
            ];
            alerts.iter().any(Option::is_some).then_some(alerts)
        })
        .flat_map(move |(user, alerts): (Str, [Option<i64>; 3])| {
            let rules = [
                (Rule::Velocity, velocity.threshold),
                (Rule::Amount, amount.threshold),
                (Rule::Geo, geo.threshold),
            ];
            rules
                .into_iter()
                .zip(alerts)
                .filter_map(|((rule, threshold), measure)| {
                    Some(AlertRow {
                        rule,
                        key: user.clone(),
                        user_id: user.clone(),
                        measure: measure?,
                        threshold,
                    })
                })
                .collect::<smallvec::SmallVec<[_; 1]>>()
        })
}

/// One user's windows: distinct transactions (`velocity`), lines and net cents (`amount`),
/// distinct known countries (`geo`), each over the records its own window holds now.
#[derive(Default)]
struct UserWindows {
    txs: Distinct<u64>,
    amount_lines: isize,
    /// A line's net is up to 10^18 cents: an hour of them needs more than an `i64`.
    net: i128,
    countries: Distinct<Str>,
}

impl Fold<(Windowed, u64)> for UserWindows {
    fn add(&mut self, (w, _start): &(Windowed, u64), diff: isize) {
        match w {
            Windowed::Tx(tx) => self.txs.add(tx, diff),
            Windowed::Net(net) => {
                self.amount_lines += diff;
                self.net += *net as i128 * diff as i128;
            }
            Windowed::Country(c) => self.countries.add(c, diff),
        }
    }
    fn is_empty(&self) -> bool {
        self.txs.is_empty() && self.amount_lines == 0 && self.net == 0 && self.countries.is_empty()
    }
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
    // (ip, session) once per event: the joins keep each pair once with its multiplicity, so
    // no distinct step (and no table of pairs) is needed before them
    let seen = events.flat_map(|e| match (e.session_id, e.ip) {
        (Some(s), Some(ip)) => Some((id_hash(&ip), id_hash(&s))),
        _ => None,
    });
    // only scores at or above the threshold can raise an alert, and the alert's measure, the
    // session's highest score, is then one of them: the sessions of harmless IPs (nearly
    // all) are never held
    let scores = ips.flat_map(move |(ip, rep)| {
        rep.risk
            .map(|r| (id_hash(&ip), if rep.is_tor { RISK_SCALE } else { r }))
            .filter(|&(_, r)| r >= threshold)
    });
    // inner joins as left joins (one score per IP, one risk per session) whose misses drop
    let session_risk = seen
        .left_join("SessionIpScores", scores)
        .flat_map(|(session, score)| score.map(|s| (session, s)))
        .fold_by_key("SessionRisk", |_s, m: &Values<i64>| m.max());
    // (session, (transaction, user)) once per line
    let tx_sessions = lines.flat_map(|l: L| {
        let l: &Line = l.borrow();
        l.session_id
            .as_ref()
            .map(|s| (id_hash(s), (l.transaction_id.clone(), l.user_id.clone())))
    });
    tx_sessions
        .left_join("TxSessionRisk", session_risk)
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
