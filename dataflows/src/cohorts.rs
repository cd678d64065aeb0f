//! `cohorts` (contract 5 and 5a).
//!
//! * Inputs: `lines` (any key), `customers` keyed by `user_id`.
//! * Output: [`CohortRow`] keyed by `(cohort_month, month_offset)`.
//! * Cost of one change: a line adds at most one `(user, month)` pair (a hash lookup of its
//!   multiplicity), joined with one customer; a customer row change moves that customer's few
//!   `(user, month)` pairs between cohorts and changes two cohort sizes. O(1) hash lookups
//!   plus the customer's active months.
//! * State: hash maps only ([`shopdiff_operators::keyed`]): the multiplicity of each
//!   `(user, event month)`, the active months by user with the user's registration month
//!   ([`LeftJoin::left_join`], used as an inner join), active counts by `(cohort, offset)` and
//!   sizes by cohort ([`SumByKey::sum_by_key`]), and the counts with their cohort's size.

use crate::common::{AnyLine, Coll, Count};
use shopdiff_operators::keyed::{Keyed, LeftJoin, SumByKey};
use shopdiff_schemas::records::Line;
use shopdiff_schemas::rows::CohortRow;
use shopdiff_schemas::tables::Customer;
use shopdiff_schemas::time::{month_index, month_start};
use shopdiff_schemas::Str;

/// Maintains `cohorts`.
pub fn cohorts<'s, L: AnyLine>(
    lines: Coll<'s, L>,
    customers: Coll<'s, (Str, Customer)>,
) -> Coll<'s, CohortRow> {
    let registered = customers.map(|(u, c)| (u, month_index(c.registration_date)));
    let sizes = registered.clone().map(|(_, m)| m).sum_by_key("CohortSizes");
    // distinct (user, event month)
    let active_months = lines
        .map(|l: L| {
            let l: &Line = l.borrow();
            ((l.user_id.clone(), month_index(l.ts)), ())
        })
        .fold_by_key("ActiveMonths", |_k, n: &Count| n.present())
        .map(|((user, month), ())| (user, month));
    let active = active_months
        .left_join("ActiveRegistered", registered)
        .flat_map(|(event, reg)| {
            let reg = reg?;
            (event >= reg).then_some((reg, event - reg))
        })
        .sum_by_key("CohortActive")
        .map(|((cohort, offset), n)| (cohort, (cohort, offset, n)));
    active
        .left_join("CohortWithSize", sizes)
        .flat_map(|((cohort, offset, active), size)| {
            Some(CohortRow {
                cohort_month: month_start(cohort),
                month_offset: offset,
                cohort_size: size? as i64,
                active_customers: active as i64,
            })
        })
}
