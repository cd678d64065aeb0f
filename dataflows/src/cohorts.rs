//! `cohorts` (contract 5 and 5a).
//!
//! * Inputs: `lines` (any key), `customers` keyed by `user_id`.
//! * Output: [`CohortRow`] keyed by `(cohort_month, month_offset)`.
//! * Cost of one change: a line adds at most one `(user, month)` pair, joined with one
//!   customer; a customer row change moves that customer's few `(user, month)` pairs between
//!   cohorts and changes two cohort sizes. O(log n) plus the customer's active months.
//! * Arrangements: distinct `(user, event month)`, customers' registration months by user,
//!   active counts and sizes by cohort.

use crate::common::Coll;
use shopdiff_schemas::records::Line;
use shopdiff_schemas::rows::CohortRow;
use shopdiff_schemas::tables::Customer;
use shopdiff_schemas::time::{month_index, month_start, MonthIndex};
use shopdiff_schemas::Str;

/// Maintains `cohorts`.
pub fn cohorts<'s>(
    lines: Coll<'s, Line>,
    customers: Coll<'s, (Str, Customer)>,
) -> Coll<'s, CohortRow> {
    let registered = customers.map(|(u, c)| (u, month_index(c.registration_date)));
    let sizes = registered.clone().map(|(_, m)| m).count();
    let active_months = lines.map(|l| (l.user_id, month_index(l.ts))).distinct();
    let active = active_months
        .join_map(registered, |_u, event: &MonthIndex, reg: &MonthIndex| {
            (*reg, *event - *reg)
        })
        .filter(|(_, offset)| *offset >= 0)
        .count()
        .map(|((cohort, offset), n)| (cohort, (offset, n)));
    active.join_map(sizes, |cohort, (offset, active), size| CohortRow {
        cohort_month: month_start(*cohort),
        month_offset: *offset,
        cohort_size: *size as i64,
        active_customers: *active as i64,
    })
}
