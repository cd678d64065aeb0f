//! `funnel_daily` (contract 5 and 5a).
//!
//! * Inputs: `lines`, `events` (any key).
//! * Output: [`FunnelRow`] keyed by `day`.
//! * Cost of one change: an event or a line updates its `(session, day)` state (counts per
//!   stage and of purchases); when that session-day's flags change (a stage reached, a first
//!   purchase), its day's sums change by one each. O(1).
//! * State: per `(session, day)` its counts ([`Keyed::fold_by_key`]) and per day the sums
//!   ([`SumByKey::sum_by_key`]); hash maps, no arrangements. A session-day's state is
//!   retired once its day is wholly below the lateness horizon
//!   ([`ViewsConfig::retire_days`](crate::config::ViewsConfig::retire_days)): the state then
//!   follows the sessions of the horizon's days, not of the whole run.

use crate::common::{id_hash, AnyLine, Coll, Sums7};
use shopdiff_operators::keyed::{Fold, Keyed, SumByKey};
use shopdiff_schemas::records::{Event, EventKind, Line};
use shopdiff_schemas::rows::FunnelRow;
use shopdiff_schemas::time::{day_start, Ms};

// Stages of a session's day (also the slots of the per-day sums), and the purchase slots.
const ANY: usize = 0;
const PRODUCT_VIEW: usize = 1;
const CART: usize = 2;
const CHECKOUT: usize = 3;
const PURCHASE: usize = 4;
const CART_PURCHASE: usize = 5;
/// What a session-day is told: an event of a stage (`ANY` for other kinds) or a purchase.
const BOUGHT: u8 = 4;

/// One session-day: its events per stage (an event of a stage also counts under `ANY`) and its
/// purchased lines.
#[derive(Default)]
struct SessionDay([isize; 5]);

impl Fold<u8> for SessionDay {
    fn add(&mut self, what: &u8, diff: isize) {
        let what = *what as usize;
        self.0[what] += diff;
        if what != ANY && what != BOUGHT as usize {
            self.0[ANY] += diff;
        }
    }
    fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }
}

impl SessionDay {
    /// The day's slots this session-day counts in, as bits.
    fn flags(&self) -> Option<u8> {
        let has = |i: usize| self.0[i] > 0;
        if !has(ANY) {
            return None;
        }
        let mut f = 1u8 << ANY;
        for stage in [PRODUCT_VIEW, CART, CHECKOUT] {
            if has(stage) {
                f |= 1 << stage;
            }
        }
        if has(BOUGHT as usize) {
            f |= 1 << PURCHASE;
            if has(CART) {
                f |= 1 << CART_PURCHASE;
            }
        }
        Some(f)
    }
}

/// Maintains `funnel_daily`.
pub fn funnel<'s, L: AnyLine>(
    lines: Coll<'s, L>,
    events: Coll<'s, Event>,
    cfg: &crate::config::ViewsConfig,
) -> Coll<'s, FunnelRow> {
    let seen = events.flat_map(|e: Event| {
        let s = e.session_id?;
        let stage = match e.kind {
            EventKind::ProductView => PRODUCT_VIEW,
            EventKind::AddToCart => CART,
            EventKind::CheckoutStart => CHECKOUT,
            _ => ANY,
        };
        Some(((id_hash(&s), day_start(e.ts)), stage as u8))
    });
    let bought = lines.flat_map(|l: L| {
        let l: &Line = l.borrow();
        l.session_id
            .as_ref()
            .map(|s| ((id_hash(s), day_start(l.ts)), BOUGHT))
    });
    seen.concat(bought)
        .fold_by_key_retiring("SessionDays", cfg.retire_days(), |_k, s: &SessionDay| {
            s.flags()
        })
        .explode(|((_s, day), flags): ((u64, Ms), u8)| {
            let mut sums = Sums7::zero();
            for (slot, v) in sums.0.iter_mut().enumerate().take(6) {
                *v = ((flags >> slot) & 1) as isize;
            }
            Some((day, sums))
        })
        .sum_by_key("FunnelSums")
        .map(|(day, s)| FunnelRow {
            day,
            sessions: s.0[ANY] as i64,
            product_view_sessions: s.0[PRODUCT_VIEW] as i64,
            cart_sessions: s.0[CART] as i64,
            checkout_sessions: s.0[CHECKOUT] as i64,
            purchase_sessions: s.0[PURCHASE] as i64,
            cart_purchased: s.0[CART_PURCHASE] as i64,
        })
}
