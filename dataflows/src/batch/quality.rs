//! `data_quality` (contract 5 and 5a): per `(source, reason)`, `records`: the ingest-level counts
//! that took effect by `as_of`, plus, under `transactions`, `unknown_product` and
//! `unknown_customer`: visible lines whose `product_id` / `user_id` has no row at `as_of`.

use super::Visible;
use shopdiff_schemas::quality::{Reason, Source};
use shopdiff_schemas::rows::QualityRow;
use std::collections::BTreeMap;

/// `data_quality` at `v.as_of`; rows with 0 records do not exist.
pub fn batch_data_quality(v: &Visible) -> Vec<QualityRow> {
    let mut counts: BTreeMap<(Source, Reason), i64> = BTreeMap::new();
    for &(source, reason, effect, n) in v.quality {
        if effect <= v.as_of {
            *counts.entry((source, reason)).or_default() += n;
        }
    }
    for line in v.visible_lines() {
        if !v.products.contains_key(&line.product_id) {
            *counts
                .entry((Source::Transactions, Reason::UnknownProduct))
                .or_default() += 1;
        }
        if !v.customers.contains_key(&line.user_id) {
            *counts
                .entry((Source::Transactions, Reason::UnknownCustomer))
                .or_default() += 1;
        }
    }
    counts
        .into_iter()
        .filter(|&(_, records)| records != 0)
        .map(|((source, reason), records)| QualityRow {
            source,
            reason,
            records,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{at, line, ms, World};
    use super::*;

    #[test]
    fn counts_by_effect_time_and_unknown_rows() {
        let mut w = World::default();
        let t1 = at("2024-03-01T00:00:01Z");
        let t2 = at("2024-03-01T00:00:02Z");
        w.quality = vec![
            (Source::Transactions, Reason::Accepted, t1, 2),
            (Source::Transactions, Reason::Accepted, t2, 1),
            (Source::Transactions, Reason::Late, t2, 1),
            (Source::Behavior, Reason::MalformedJson, t1, 1),
            (Source::Products, Reason::MissingField, 0, 1),
            // a count and its retraction: no row
            (Source::Customers, Reason::BadType, t1, 1),
            (Source::Customers, Reason::BadType, t1, -1),
        ];
        w.product("P1", 100, 1);
        w.customer("U1", ms("2024-01-01T00:00:00Z"));
        w.line(line("T1", "P1", "U1", ms("2024-03-01T00:00:00.500Z")));
        w.line(line("T1", "P2", "U1", ms("2024-03-01T00:00:00.600Z")));
        w.late_line(line("T2", "P2", "U9", ms("2024-02-29T23:59:00Z")), t2);

        let row = |s, r, n| QualityRow {
            source: s,
            reason: r,
            records: n,
        };
        assert_eq!(
            batch_data_quality(&w.at(0)),
            vec![row(Source::Products, Reason::MissingField, 1)]
        );
        assert_eq!(
            batch_data_quality(&w.at(t1)),
            vec![
                row(Source::Transactions, Reason::Accepted, 2),
                row(Source::Transactions, Reason::UnknownProduct, 1),
                row(Source::Behavior, Reason::MalformedJson, 1),
                row(Source::Products, Reason::MissingField, 1),
            ]
        );
        assert_eq!(
            batch_data_quality(&w.at(t2)),
            vec![
                row(Source::Transactions, Reason::Accepted, 3),
                row(Source::Transactions, Reason::Late, 1),
                row(Source::Transactions, Reason::UnknownProduct, 2),
                row(Source::Transactions, Reason::UnknownCustomer, 1),
                row(Source::Behavior, Reason::MalformedJson, 1),
                row(Source::Products, Reason::MissingField, 1),
            ]
        );
    }
}
