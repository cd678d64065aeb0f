//! `rfm` and `rfm_segments` (contract 5).
//!
//! * Inputs: `lines` (any key).
//! * Output: [`RfmRow`] keyed by `user_id` (`recency_days` is derived when read), and
//!   [`SegmentRow`] keyed by `segment`.
//! * Per user: `last_purchase` (max event time), `frequency` (distinct transactions),
//!   `monetary` (net cents of all currencies). Scores come from three incremental ntile
//!   operators ([`shopdiff_operators::rank::Ntile`]), one per measure, each owned by its own
//!   worker: a change of one customer's measure costs O(log n + customers whose score changes),
//!   never a re-sort.
//! * Cost of one new line: one update of the user's max, distinct set and sums; then at most a
//!   few score changes per ranking, each joined back by user. O(log n).
//! * Arrangements: per-user event times (max), distinct `(user, transaction)`, per-user sums, the
//!   three score collections and their joins by user; segments sum the rows.

use crate::common::{id_hash, Coll};
use shopdiff_operators::rank::Ntile;
use shopdiff_schemas::money::Cents;
use shopdiff_schemas::records::Line;
use shopdiff_schemas::rows::{RfmRow, SegmentRow};
use shopdiff_schemas::time::Ms;
use shopdiff_schemas::Str;

/// Maintains `rfm`.
pub fn rfm<'s>(lines: Coll<'s, Line>) -> Coll<'s, RfmRow> {
    let last = lines.clone().map(|l| (l.user_id, l.ts)).reduce(
        |_u, vals: &[(&Ms, isize)], out: &mut Vec<(Ms, isize)>| {
            if let Some((t, _)) = vals.last() {
                out.push((**t, 1));
            }
        },
    );
    let frequency = lines
        .clone()
        .map(|l| (l.user_id, id_hash(&l.transaction_id)))
        .distinct()
        .map(|(u, _)| u)
        .count()
        .map(|(u, f)| (u, f as i64));
    // (lines, net) summed per user: a user exists while it has lines, even when its net is 0
    let monetary = lines
        .explode(|l: Line| Some((l.user_id.clone(), (1isize, l.net() as isize))))
        .count()
        .map(|(u, (_, m))| (u, m as Cents));
    let r = last.clone().ntile(5, 0);
    let f = frequency.clone().ntile(5, 1);
    let m = monetary.clone().ntile(5, 2);
    let base = last
        .join(frequency)
        .join(monetary)
        .map(|(u, ((l, f), m))| (u, (l, f, m)));
    let scores = r
        .join(f)
        .join(m)
        .map(|(u, ((r, f), m))| (u, (r as u8, f as u8, m as u8)));
    base.join_map(scores, |u: &Str, (last, f, m), (rs, fs, ms)| RfmRow {
        user_id: u.clone(),
        last_purchase: *last,
        frequency: *f,
        monetary: *m,
        r_score: *rs,
        f_score: *fs,
        m_score: *ms,
    })
}

/// Maintains `rfm_segments` from `rfm`.
pub fn rfm_segments<'s>(rfm: Coll<'s, RfmRow>) -> Coll<'s, SegmentRow> {
    rfm.explode(|r: RfmRow| Some((r.segment(), (1isize, r.monetary as isize))))
        .count()
        .map(|(segment, (n, m))| SegmentRow {
            segment,
            customers: n as i64,
            monetary: m as Cents,
        })
}
