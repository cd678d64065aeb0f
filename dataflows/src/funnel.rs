//! `funnel_daily` (contract 5 and 5a).
//!
//! * Inputs: `lines`, `events` (any key).
//! * Output: [`FunnelRow`] keyed by `day`.
//! * Cost of one change: an event adds at most two `(session, day, stage)` flags; a line at most
//!   one `(session, day)` purchase; each flag change is one update of its day's sums. O(log n).
//! * Arrangements: distinct `((session, day), stage)`, distinct purchased `(session, day)`, the
//!   semijoins of the two, and the per-day sums.

use crate::common::{id_hash, Coll, Sums7};
use shopdiff_schemas::records::{Event, EventKind, Line};
use shopdiff_schemas::rows::FunnelRow;
use shopdiff_schemas::time::{day_start, Ms};

// Stages of a session's day, and the slots of the per-day sums.
const ANY: u8 = 0;
const PRODUCT_VIEW: u8 = 1;
const CART: u8 = 2;
const CHECKOUT: u8 = 3;
const PURCHASE: usize = 4;
const CART_PURCHASE: usize = 5;

/// Maintains `funnel_daily`.
pub fn funnel<'s>(lines: Coll<'s, Line>, events: Coll<'s, Event>) -> Coll<'s, FunnelRow> {
    let flags = events
        .flat_map(|e: Event| {
            let Some(s) = e.session_id else {
                return Vec::new();
            };
            let day = day_start(e.ts);
            let stage = match e.kind {
                EventKind::ProductView => Some(PRODUCT_VIEW),
                EventKind::AddToCart => Some(CART),
                EventKind::CheckoutStart => Some(CHECKOUT),
                _ => None,
            };
            let s = id_hash(&s);
            let mut v = vec![((s, day), ANY)];
            v.extend(stage.map(|st| ((s, day), st)));
            v
        })
        .distinct();
    let purchased = lines
        .flat_map(|l: Line| l.session_id.map(|s| (id_hash(&s), day_start(l.ts))))
        .distinct();
    let bought = flags
        .clone()
        .filter(|(_, st)| *st == ANY || *st == CART)
        .semijoin(purchased)
        .explode(|((_s, day), st): ((u64, Ms), u8)| {
            Some((
                day,
                Sums7::unit(if st == ANY { PURCHASE } else { CART_PURCHASE }, 1),
            ))
        });
    let stages =
        flags.explode(|((_s, day), st): ((u64, Ms), u8)| Some((day, Sums7::unit(st as usize, 1))));
    stages.concat(bought).count().map(|(day, s)| FunnelRow {
        day,
        sessions: s.0[ANY as usize] as i64,
        product_view_sessions: s.0[PRODUCT_VIEW as usize] as i64,
        cart_sessions: s.0[CART as usize] as i64,
        checkout_sessions: s.0[CHECKOUT as usize] as i64,
        purchase_sessions: s.0[PURCHASE] as i64,
        cart_purchased: s.0[CART_PURCHASE] as i64,
    })
}
