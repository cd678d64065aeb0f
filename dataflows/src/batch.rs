//! The naive twin of every view: a plain, non-incremental computation of each view of the
//! contract (`/work/shared/spec/views.md`, sections 3 to 5a) at one `as_of`, used by tests as the
//! reference the incremental dataflows must match at every time of random histories.
//!
//! Clarity over speed, but no quadratic work: every twin is a few passes over the visible records
//! with `BTreeMap`s, `O(N log N)` for `N` records.
//!
//! Every twin sees a [`Visible`]: the accepted, de-duplicated records with their effect (logical)
//! time, the tables' state at `as_of` and the ingest-level `data_quality` counts. A record is
//! visible when its effect time is `<= as_of`; its event time `ts` still decides its buckets and
//! its window membership (a late record's effect time is later than `ceil_tick(ts)`).
//!
//! Each twin returns its rows sorted by primary key, which is also the order of the row type's
//! `Ord` (its key fields come first; enums such as `Dimension`, `Rule`, `Source`, `Reason` and
//! `Segment` order by declaration).

use shopdiff_schemas::quality::{Reason, Source};
use shopdiff_schemas::records::{Event, Line};
use shopdiff_schemas::rows::{
    AlertRow, CohortRow, FunnelRow, InventoryRow, ProductPerfRow, QualityRow, RevenueRow, RfmRow,
    SegmentRow,
};
use shopdiff_schemas::tables::{Customer, IpRep, Product};
use shopdiff_schemas::time::{ceil_tick, day_start, hour_start, Ms};
use shopdiff_schemas::Str;
use std::collections::BTreeMap;

use crate::config::FraudConfig;

mod cohorts;
mod fraud;
mod funnel;
mod products;
mod quality;
mod revenue;
mod rfm;
#[cfg(test)]
mod testkit;

pub use cohorts::batch_cohorts;
pub use fraud::batch_fraud;
pub use funnel::batch_funnel;
pub use products::{batch_inventory, batch_product_performance};
pub use quality::batch_data_quality;
pub use revenue::{batch_revenue, dimension_value};
pub use rfm::{batch_rfm, batch_rfm_segments, ntile5};

/// What is visible at one `as_of`: the input of every twin.
#[derive(Debug, Clone, Copy)]
pub struct Visible<'a> {
    /// The answer's time, a tick boundary (ms).
    pub as_of: u64,
    /// Accepted, de-duplicated lines with their effect (logical) time.
    pub lines: &'a [(Line, u64)],
    /// Accepted, de-duplicated events with their effect time.
    pub events: &'a [(Event, u64)],
    /// `products` at `as_of`, by `product_id`.
    pub products: &'a BTreeMap<Str, Product>,
    /// `customers` at `as_of`, by `user_id`.
    pub customers: &'a BTreeMap<Str, Customer>,
    /// `ip_reputation` at `as_of`, by `ip_address`.
    pub ips: &'a BTreeMap<Str, IpRep>,
    /// Ingest-level counts `(source, reason, effect time, count)`: accepted, rejections,
    /// duplicate, late.
    pub quality: &'a [(Source, Reason, u64, i64)],
    /// The tick in ms (`ceil_tick`'s unit).
    pub tick_ms: u64,
}

impl<'a> Visible<'a> {
    /// The lines whose effect time is `<= as_of`.
    pub fn visible_lines(&self) -> impl Iterator<Item = &'a Line> + 'a {
        let as_of = self.as_of;
        self.lines
            .iter()
            .filter(move |(_, t)| *t <= as_of)
            .map(|(l, _)| l)
    }

    /// The events whose effect time is `<= as_of`.
    pub fn visible_events(&self) -> impl Iterator<Item = &'a Event> + 'a {
        let as_of = self.as_of;
        self.events
            .iter()
            .filter(move |(_, t)| *t <= as_of)
            .map(|(e, _)| e)
    }

    /// Whether a line with event time `ts` belongs to the trailing window of length `window_ms`
    /// closed on the right at `as_of = T`: `T - W < ceil_tick(ts) <= T` (contract 5
    /// `fraud_alerts`). Visibility (effect time `<= T`) is checked separately.
    pub fn in_window(&self, ts: Ms, window_ms: u64) -> bool {
        let t = ceil_tick(ts, self.tick_ms);
        t <= self.as_of && t.saturating_add(window_ms) > self.as_of
    }

    /// The visible lines inside the trailing window of length `window_ms`.
    pub fn window_lines(&self, window_ms: u64) -> impl Iterator<Item = &'a Line> + 'a {
        let v = *self;
        self.visible_lines()
            .filter(move |l| v.in_window(l.ts, window_ms))
    }
}

/// The bucket of a revenue view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Granularity {
    /// `revenue_hourly`: the UTC hour's start.
    Hourly,
    /// `revenue_daily`: the UTC day's start.
    Daily,
}

impl Granularity {
    /// The start of the bucket holding event time `ts`.
    pub fn bucket(self, ts: Ms) -> Ms {
        match self {
            Granularity::Hourly => hour_start(ts),
            Granularity::Daily => day_start(ts),
        }
    }
}

/// Every view's rows at one `as_of`, each sorted by primary key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllViews {
    pub rfm: Vec<RfmRow>,
    pub rfm_segments: Vec<SegmentRow>,
    pub cohorts: Vec<CohortRow>,
    pub revenue_hourly: Vec<RevenueRow>,
    pub revenue_daily: Vec<RevenueRow>,
    pub fraud_alerts: Vec<AlertRow>,
    pub product_performance: Vec<ProductPerfRow>,
    pub inventory: Vec<InventoryRow>,
    pub funnel_daily: Vec<FunnelRow>,
    pub data_quality: Vec<QualityRow>,
}

/// Every view at `v.as_of`.
pub fn batch_all(v: &Visible, fraud: &FraudConfig) -> AllViews {
    AllViews {
        rfm: batch_rfm(v),
        rfm_segments: batch_rfm_segments(v),
        cohorts: batch_cohorts(v),
        revenue_hourly: batch_revenue(v, Granularity::Hourly),
        revenue_daily: batch_revenue(v, Granularity::Daily),
        fraud_alerts: batch_fraud(v, fraud),
        product_performance: batch_product_performance(v),
        inventory: batch_inventory(v),
        funnel_daily: batch_funnel(v),
        data_quality: batch_data_quality(v),
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{at, line, ms, World};
    use super::*;

    #[test]
    fn all_views_at_one_as_of() {
        let mut w = World::default();
        w.product("P1", 250, 3);
        let t = ms("2024-03-01T10:30:00Z");
        for k in 0..6 {
            w.line(line(&format!("T{k}"), "P1", "U1", t + k));
        }
        let mut cfg = FraudConfig::default();
        cfg.velocity.threshold = 4;
        let v = w.at(at("2024-03-01T10:31:00Z"));
        let all = batch_all(&v, &cfg);
        assert_eq!(all.revenue_hourly, batch_revenue(&v, Granularity::Hourly));
        assert_eq!(all.revenue_daily, batch_revenue(&v, Granularity::Daily));
        assert_eq!(all.revenue_hourly[0].bucket, ms("2024-03-01T10:00:00Z"));
        assert_eq!(all.revenue_daily[0].bucket, ms("2024-03-01T00:00:00Z"));
        assert_eq!(all.fraud_alerts.len(), 1);
        assert_eq!(all.fraud_alerts[0].measure, 6);
        assert_eq!(all.rfm, batch_rfm(&v));
        assert_eq!(all.rfm_segments.len(), 1);
        assert_eq!(all.inventory[0].units_7d, 6);
        assert_eq!(all.product_performance[0].units, 6);
        assert!(all.cohorts.is_empty() && all.funnel_daily.is_empty());
        assert_eq!(all.data_quality[0].records, 6); // unknown_customer
        assert_eq!(
            batch_all(&w.at(0), &cfg),
            AllViews {
                inventory: all
                    .inventory
                    .iter()
                    .map(|r| InventoryRow {
                        units_7d: 0,
                        ..r.clone()
                    })
                    .collect(),
                ..AllViews::default()
            }
        );
    }

    #[test]
    fn window_membership_uses_the_tick() {
        let w = World::default();
        let v = w.at(10_000);
        // W = 5 s at T = 10 s holds ceil_tick in (5 s, 10 s]
        assert!(!v.in_window(5_000, 5_000));
        assert!(!v.in_window(4_001, 5_000));
        assert!(v.in_window(5_001, 5_000));
        assert!(v.in_window(10_000, 5_000));
        assert!(!v.in_window(10_001, 5_000));
        // a window longer than all of time since the epoch
        assert!(v.in_window(1, u64::MAX));
        assert!(v.in_window(-5, 20_000));
    }
}
