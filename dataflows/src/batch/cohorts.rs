//! `cohorts` (contract 5 and 5a): a customer's cohort is the UTC month of its
//! `customers.registration_date` at `as_of`. Per `(cohort_month, month_offset)`: `cohort_size`
//! (customers rows of that month) and `active_customers` (distinct customers of the cohort with a
//! visible line whose event month is `cohort_month + month_offset`, `month_offset >= 0`). Lines
//! of users without a customers row, or dated before the registration month, are left out; a
//! line in the registration month counts at offset 0 even before the registration instant.

use super::Visible;
use shopdiff_schemas::rows::CohortRow;
use shopdiff_schemas::time::{month_index, month_start, MonthIndex};
use shopdiff_schemas::Str;
use std::collections::{BTreeMap, BTreeSet};

/// `cohorts` at `v.as_of`; only rows with active customers.
pub fn batch_cohorts(v: &Visible) -> Vec<CohortRow> {
    let mut size: BTreeMap<MonthIndex, i64> = BTreeMap::new();
    for c in v.customers.values() {
        *size.entry(month_index(c.registration_date)).or_default() += 1;
    }
    let mut active: BTreeMap<(MonthIndex, i64), BTreeSet<&Str>> = BTreeMap::new();
    for line in v.visible_lines() {
        let Some(c) = v.customers.get(&line.user_id) else {
            continue;
        };
        let cohort = month_index(c.registration_date);
        let offset = month_index(line.ts) - cohort;
        if offset >= 0 {
            active
                .entry((cohort, offset))
                .or_default()
                .insert(&line.user_id);
        }
    }
    active
        .into_iter()
        .map(|((cohort, offset), users)| CohortRow {
            cohort_month: month_start(cohort),
            month_offset: offset,
            cohort_size: size[&cohort],
            active_customers: users.len() as i64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{at, line, ms, World};
    use super::*;

    #[test]
    fn offsets_and_left_out_lines() {
        let mut w = World::default();
        let feb = ms("2024-02-01T00:00:00Z");
        let jan = ms("2024-01-01T00:00:00Z");
        w.customer("A", ms("2024-02-15T12:00:00Z"));
        w.customer("B", ms("2024-02-29T23:59:59.999Z"));
        w.customer("C", ms("2024-01-31T23:00:00+00:00"));
        w.customer("D", ms("2024-03-10T00:00:00Z")); // registered after the lines below
                                                     // A: in its registration month but before the instant (offset 0), and in March twice
        w.line(line("T1", "P1", "A", ms("2024-02-01T00:00:00Z")));
        w.line(line("T2", "P1", "A", ms("2024-03-01T00:00:00Z")));
        w.line(line("T3", "P2", "A", ms("2024-03-05T00:00:00Z")));
        // B: the day before its registration month (left out), then in March (offset 1)
        w.line(line("T4", "P1", "B", ms("2024-01-31T23:59:59.999Z")));
        w.line(line("T5", "P1", "B", ms("2024-03-01T10:00:00Z")));
        // C: February is offset 1, March offset 2
        w.line(line("T6", "P1", "C", ms("2024-02-10T00:00:00Z")));
        w.line(line("T7", "P1", "C", ms("2024-03-02T00:00:00Z")));
        // D: in its registration month, 8 days before the instant: offset 0
        w.line(line("T8", "P1", "D", ms("2024-03-02T00:00:00Z")));
        // no customers row: left out
        w.line(line("T9", "P1", "Z", ms("2024-03-02T00:00:00Z")));
        let rows = batch_cohorts(&w.at(at("2024-04-01T00:00:00Z")));
        let row = |m, o, s, a| CohortRow {
            cohort_month: m,
            month_offset: o,
            cohort_size: s,
            active_customers: a,
        };
        let mar = ms("2024-03-01T00:00:00Z");
        assert_eq!(
            rows,
            vec![
                row(jan, 1, 1, 1),
                row(jan, 2, 1, 1),
                row(feb, 0, 2, 1),
                row(feb, 1, 2, 2),
                row(mar, 0, 1, 1),
            ]
        );
        // before March's lines take effect: February only; no row for an empty offset
        let rows = batch_cohorts(&w.at(at("2024-02-29T00:00:00Z")));
        assert_eq!(rows, vec![row(jan, 1, 1, 1), row(feb, 0, 2, 1)]);
    }

    #[test]
    fn a_customer_moved_to_another_cohort() {
        let mut w = World::default();
        w.customer("A", ms("2024-02-15T00:00:00Z"));
        w.line(line("T1", "P1", "A", ms("2024-02-20T00:00:00Z")));
        let as_of = at("2024-03-01T00:00:00Z");
        let feb = ms("2024-02-01T00:00:00Z");
        assert_eq!(batch_cohorts(&w.at(as_of))[0].cohort_month, feb);
        // the table's state at as_of decides: registration moved to March leaves it out
        w.customer("A", ms("2024-03-01T00:00:00Z"));
        assert!(batch_cohorts(&w.at(as_of)).is_empty());
        // and moved to January puts it at offset 1
        w.customer("A", ms("2024-01-31T00:00:00Z"));
        let rows = batch_cohorts(&w.at(as_of));
        assert_eq!(
            (rows.len(), rows[0].month_offset, rows[0].cohort_size),
            (1, 1, 1)
        );
    }
}
