//! `rfm` and `rfm_segments` (contract 5): per user with at least one visible line,
//! `last_purchase` (greatest event time), `frequency` (distinct `transaction_id`s), `monetary`
//! (net cents, all currencies added) and the three scores: all customers ordered by
//! `(metric, user_id)` ascending (`user_id` by UTF-8 bytes), the one at 0-based rank `r` of `n`
//! scores `floor(5 r / n) + 1`, in exact integers.

use super::Visible;
use shopdiff_schemas::money::Sum;
use shopdiff_schemas::rows::{RfmRow, Segment, SegmentRow};
use shopdiff_schemas::time::Ms;
use shopdiff_schemas::Str;
use std::collections::{BTreeMap, BTreeSet};

/// The score of 0-based rank `r` among `n`: `floor(5 r / n) + 1`, in 1..=5.
pub fn ntile5(r: usize, n: usize) -> u8 {
    debug_assert!(r < n);
    (5 * r as u128 / n as u128 + 1) as u8
}

/// Scores of every user by one metric: sort `(metric, user_id)` ascending, score by rank.
fn scores<M: Ord + Copy>(metrics: &[(M, &Str)]) -> BTreeMap<Str, u8> {
    let mut sorted: Vec<(M, &Str)> = metrics.to_vec();
    sorted.sort();
    let n = sorted.len();
    sorted
        .into_iter()
        .enumerate()
        .map(|(r, (_, user))| (user.clone(), ntile5(r, n)))
        .collect()
}

struct Acc<'a> {
    last_purchase: Ms,
    transactions: BTreeSet<&'a str>,
    monetary: Sum,
}

/// `rfm` at `v.as_of`, sorted by `user_id`.
pub fn batch_rfm(v: &Visible) -> Vec<RfmRow> {
    let mut users: BTreeMap<&Str, Acc> = BTreeMap::new();
    for line in v.visible_lines() {
        let acc = users.entry(&line.user_id).or_insert(Acc {
            last_purchase: line.ts,
            transactions: BTreeSet::new(),
            monetary: 0,
        });
        acc.last_purchase = acc.last_purchase.max(line.ts);
        acc.transactions.insert(&line.transaction_id);
        acc.monetary += line.net() as Sum;
    }
    let recency: Vec<(Ms, &Str)> = users.iter().map(|(u, a)| (a.last_purchase, *u)).collect();
    let frequency: Vec<(usize, &Str)> = users
        .iter()
        .map(|(u, a)| (a.transactions.len(), *u))
        .collect();
    let monetary: Vec<(Sum, &Str)> = users.iter().map(|(u, a)| (a.monetary, *u)).collect();
    let (r, f, m) = (scores(&recency), scores(&frequency), scores(&monetary));
    users
        .iter()
        .map(|(user, a)| RfmRow {
            user_id: (*user).clone(),
            last_purchase: a.last_purchase,
            frequency: a.transactions.len() as i64,
            monetary: a.monetary,
            r_score: r[*user],
            f_score: f[*user],
            m_score: m[*user],
        })
        .collect()
}

/// `rfm_segments` at `v.as_of`: customers and summed monetary per segment that has customers.
pub fn batch_rfm_segments(v: &Visible) -> Vec<SegmentRow> {
    let mut segments: BTreeMap<Segment, (i64, Sum)> = BTreeMap::new();
    for row in batch_rfm(v) {
        let s = segments.entry(row.segment()).or_default();
        s.0 += 1;
        s.1 += row.monetary;
    }
    segments
        .into_iter()
        .map(|(segment, (customers, monetary))| SegmentRow {
            segment,
            customers,
            monetary,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{at, line, ms, World};
    use super::*;

    #[test]
    fn ntile_by_hand() {
        let all = |n: usize| (0..n).map(|r| ntile5(r, n)).collect::<Vec<_>>();
        assert_eq!(all(1), [1]);
        assert_eq!(all(2), [1, 3]);
        assert_eq!(all(3), [1, 2, 4]);
        assert_eq!(all(5), [1, 2, 3, 4, 5]);
        assert_eq!(all(7), [1, 1, 2, 3, 3, 4, 5]);
        assert_eq!(all(10), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    }

    /// (user_id, r, f, m) of every row.
    fn scores_of(rows: &[RfmRow]) -> Vec<(&str, u8, u8, u8)> {
        rows.iter()
            .map(|r| (r.user_id.as_str(), r.r_score, r.f_score, r.m_score))
            .collect()
    }

    #[test]
    fn one_customer() {
        let mut w = World::default();
        let t = ms("2024-03-01T10:00:00Z");
        w.line(line("T1", "P1", "U1", t));
        let mut b = line("T1", "P2", "U1", t + 1500);
        b.currency = "EUR".into();
        b.discount = 300;
        w.line(b);
        let rows = batch_rfm(&w.at(at("2024-03-01T10:00:02Z")));
        assert_eq!(
            rows,
            vec![RfmRow {
                user_id: "U1".into(),
                last_purchase: t + 1500,
                frequency: 1,
                monetary: 1000 + 700, // USD and EUR added for ranking
                r_score: 1,
                f_score: 1,
                m_score: 1,
            }]
        );
        assert_eq!(rows[0].segment(), Segment::Hibernating);
        // at 10:00:01 the second line is not visible yet
        let rows = batch_rfm(&w.at(at("2024-03-01T10:00:01Z")));
        assert_eq!((rows[0].last_purchase, rows[0].monetary), (t, 1000));
    }

    #[test]
    fn ties_broken_by_user_id_bytes() {
        let mut w = World::default();
        let t = ms("2024-03-01T10:00:00Z");
        // "B" < "a" < "ä" in UTF-8 bytes; all three tie on every metric
        for u in ["a", "ä", "B"] {
            w.line(line(&format!("T{u}"), "P1", u, t));
        }
        let rows = batch_rfm(&w.at(at("2024-03-01T11:00:00Z")));
        assert_eq!(
            scores_of(&rows),
            [("B", 1, 1, 1), ("a", 2, 2, 2), ("ä", 4, 4, 4)]
        );
        // n = 2: U2 is more recent, both tie on frequency and money
        let mut w = World::default();
        w.line(line("T1", "P1", "U2", t + 5));
        w.line(line("T2", "P1", "U1", t));
        let rows = batch_rfm(&w.at(at("2024-03-01T11:00:00Z")));
        assert_eq!(scores_of(&rows), [("U1", 1, 1, 1), ("U2", 3, 3, 3)]);
    }

    #[test]
    fn seven_customers_and_segments() {
        let mut w = World::default();
        let t = ms("2024-03-01T00:00:00Z");
        // user i (1..=7): last purchase at t + i min, i transactions except U1 with 3,
        // money: U7 spends least
        for i in 1..=7 {
            let u = format!("U{i}");
            let n = if i == 1 { 3 } else { i };
            for k in 0..n {
                let mut l = line(&format!("T{i}-{k}"), "P1", &u, t + (i * 60_000) as i64);
                l.price = if i == 7 { 1 } else { 10_000 };
                w.line(l);
            }
        }
        let rows = batch_rfm(&w.at(at("2024-03-02T00:00:00Z")));
        // recency ascending U1..U7 → 1,1,2,3,3,4,5
        // frequency: U2=2, U1=3, U3=3, U4=4, U5=5, U6=6, U7=7 → ranks U2 0, U1 1, U3 2, ...
        // money: U7=7c first, then U2=20000, U1=30000, U3=30000, U4.. → U7 0, U2 1, U1 2, U3 3,
        //        U4 4, U5 5, U6 6
        assert_eq!(
            scores_of(&rows),
            [
                ("U1", 1, 1, 2),
                ("U2", 1, 1, 1),
                ("U3", 2, 2, 3),
                ("U4", 3, 3, 3),
                ("U5", 3, 3, 4),
                ("U6", 4, 4, 5),
                ("U7", 5, 5, 1),
            ]
        );
        let seg: Vec<_> = rows.iter().map(|r| r.segment()).collect();
        use Segment::*;
        assert_eq!(
            seg,
            [
                Hibernating,
                Hibernating,
                Hibernating,
                Potential,
                Potential,
                Champions,
                Loyal
            ]
        );
        let segments = batch_rfm_segments(&w.at(at("2024-03-02T00:00:00Z")));
        assert_eq!(
            segments,
            vec![
                SegmentRow {
                    segment: Champions,
                    customers: 1,
                    monetary: 60_000
                },
                SegmentRow {
                    segment: Loyal,
                    customers: 1,
                    monetary: 7
                },
                SegmentRow {
                    segment: Hibernating,
                    customers: 3,
                    monetary: 30_000 + 20_000 + 30_000
                },
                SegmentRow {
                    segment: Potential,
                    customers: 2,
                    monetary: 40_000 + 50_000
                },
            ]
        );
        assert!(batch_rfm_segments(&w.at(0)).is_empty());
    }
}
