//! `rfm` and `rfm_segments` (contract 5).
//!
//! * Inputs: `lines` (any key).
//! * Output: [`RfmRow`] keyed by `user_id` (`recency_days` is derived when read), and
//!   [`SegmentRow`] keyed by `segment`.
//! * Per user: `last_purchase` (max event time), `frequency` (distinct transactions),
//!   `monetary` (net cents of all currencies), all three folded in one per-user state
//!   ([`Keyed::fold_by_key`]). Scores come from three incremental ntile operators
//!   ([`shopdiff_operators::rank::Ntile`]), one per measure, owned by workers 0, 1 and 3
//!   (modulo the number of workers: with two, the recency ranking, the costliest since every
//!   buyer's last purchase moves to the top, has a worker to itself): a change of one
//!   customer's measure costs O(log n + customers whose score changes), never a re-sort. The
//!   measures and the three scores meet again in one per-user fold (a four-way join by user).
//! * Cost of one new line: one update of its user's state (a multiset of event times, a
//!   transaction set and sums); then at most a few score changes per ranking, each one update
//!   of the joining fold. O(log n).
//! * State: the two per-user folds (hash maps, no arrangements) and the three rankings;
//!   segments sum the rows in a hash map ([`SumByKey::sum_by_key`]).

use crate::common::{id_hash, AnyLine, Coll, MoneySum};
use serde::{Deserialize, Serialize};
use shopdiff_operators::keyed::{Distinct, Fold, Keyed, SumByKey};
use shopdiff_operators::rank::Ntile;
use shopdiff_schemas::money::{Cents, Sum};
use shopdiff_schemas::records::Line;
use shopdiff_schemas::rows::{RfmRow, SegmentRow};
use shopdiff_schemas::time::Ms;
use shopdiff_schemas::Str;
use std::collections::BTreeMap;

/// Maintains `rfm`.
pub fn rfm<'s, L: AnyLine>(lines: Coll<'s, L>) -> Coll<'s, RfmRow> {
    let measures = lines
        .map(|l: L| {
            let l: &Line = l.borrow();
            (
                l.user_id.clone(),
                (l.ts, id_hash(&l.transaction_id), l.net()),
            )
        })
        .fold_by_key("Buyers", |_u, b: &Buyer| b.measures());
    let r = measures
        .clone()
        .map(|(u, (l, _, _))| (RankedUser::new(u), l))
        .ntile(5, 0);
    let f = measures
        .clone()
        .map(|(u, (_, f, _))| (RankedUser::new(u), f))
        .ntile(5, 1);
    let m = measures
        .clone()
        .map(|(u, (_, _, m))| (RankedUser::new(u), m))
        .ntile(5, 3);
    measures
        .map(|(u, (l, f, m))| (u, Part::Measures(l, f, m)))
        .concat(r.map(|(u, s)| (u.id, Part::R(s))))
        .concat(f.map(|(u, s)| (u.id, Part::F(s))))
        .concat(m.map(|(u, s)| (u.id, Part::M(s))))
        .fold_by_key("RfmRows", |u, p: &Parts| p.row(u))
        .map(|(_, row)| row)
}

/// Maintains `rfm_segments` from `rfm`.
pub fn rfm_segments<'s>(rfm: Coll<'s, RfmRow>) -> Coll<'s, SegmentRow> {
    rfm.explode(|r: RfmRow| Some((r.segment(), (1isize, MoneySum(r.monetary)))))
        .sum_by_key("SegmentSums")
        .map(|(segment, (n, m))| SegmentRow {
            segment,
            customers: n as i64,
            monetary: m.0,
        })
}

/// A user id as the rankings order it: by the id's bytes, as the contract's tie-break says,
/// compared first by its leading 8 bytes as one integer (big-endian, zero-padded; derived `Ord`
/// compares `prefix` first). Ids that differ in their first 8 bytes are ordered by the
/// integers alone, which is their byte order (a shorter id that is a prefix of a longer one
/// pads with zeros, so it is not greater); ids with equal prefixes fall back to the bytes. With
/// ties on a measure (every customer with 2 orders) the rankings' trees then compare integers,
/// not strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct RankedUser {
    prefix: u64,
    id: Str,
}

impl RankedUser {
    fn new(id: Str) -> RankedUser {
        let mut lead = [0u8; 8];
        let n = id.len().min(8);
        lead[..n].copy_from_slice(&id.as_bytes()[..n]);
        RankedUser {
            prefix: u64::from_be_bytes(lead),
            id,
        }
    }
}

/// One customer's purchases: event times (a multiset, for the max), transactions with their
/// line counts (for the distinct count), lines and net cents.
#[derive(Default)]
struct Buyer {
    times: BTreeMap<Ms, isize>,
    txs: Distinct<u64>,
    lines: isize,
    net: Sum,
}

impl Buyer {
    /// `(last_purchase, frequency, monetary)` while the customer has lines.
    fn measures(&self) -> Option<(Ms, i64, Sum)> {
        let last = self
            .times
            .iter()
            .rev()
            .find(|(_, n)| **n > 0)
            .map(|(t, _)| *t)?;
        (self.lines > 0).then_some((last, self.txs.count() as i64, self.net))
    }
}

impl Fold<(Ms, u64, Cents)> for Buyer {
    fn add(&mut self, (ts, tx, net): &(Ms, u64, Cents), diff: isize) {
        let n = self.times.entry(*ts).or_insert(0);
        *n += diff;
        if *n == 0 {
            self.times.remove(ts);
        }
        self.txs.add(tx, diff);
        self.lines += diff;
        self.net += *net as Sum * diff as Sum;
    }
    fn is_empty(&self) -> bool {
        self.lines == 0 && self.net == 0 && self.times.is_empty() && self.txs.is_empty()
    }
}

/// What meets by user to make a row: the measures and the three scores.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Part {
    Measures(Ms, i64, Sum),
    R(u64),
    F(u64),
    M(u64),
}

/// The parts present for a user, with their multiplicities.
#[derive(Default)]
struct Parts(Vec<(Part, isize)>);

impl Fold<Part> for Parts {
    fn add(&mut self, p: &Part, diff: isize) {
        match self.0.iter().position(|(x, _)| x == p) {
            Some(i) => {
                self.0[i].1 += diff;
                if self.0[i].1 == 0 {
                    self.0.swap_remove(i);
                }
            }
            None => self.0.push((p.clone(), diff)),
        }
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Parts {
    /// The row, when each of the four parts is there exactly once (the join of the four).
    fn row(&self, user: &Str) -> Option<RfmRow> {
        if self.0.len() != 4 || self.0.iter().any(|(_, n)| *n != 1) {
            return None;
        }
        let (mut measures, mut r, mut f, mut m) = (None, None, None, None);
        for (p, _) in &self.0 {
            match p {
                Part::Measures(l, fr, mo) => measures = Some((*l, *fr, *mo)),
                Part::R(x) => r = Some(*x as u8),
                Part::F(x) => f = Some(*x as u8),
                Part::M(x) => m = Some(*x as u8),
            }
        }
        let (last, frequency, monetary) = measures?;
        Some(RfmRow {
            user_id: user.clone(),
            last_purchase: last,
            frequency,
            monetary,
            r_score: r?,
            f_score: f?,
            m_score: m?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::RankedUser;
    use proptest::prelude::*;

    proptest! {
        /// Ranked users order exactly as their ids' bytes, equal prefixes, prefixes of one
        /// another and zero bytes included.
        #[test]
        fn ranked_users_order_as_their_ids(
            a in "[U0\\x00\\x01é]{0,12}",
            b in "[U0\\x00\\x01é]{0,12}",
        ) {
            let (x, y) = (RankedUser::new(a.as_str().into()), RankedUser::new(b.as_str().into()));
            prop_assert_eq!(x.cmp(&y), a.as_bytes().cmp(b.as_bytes()));
            prop_assert_eq!(x == y, a == b);
        }
    }
}
