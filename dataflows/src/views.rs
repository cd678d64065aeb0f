//! Every view of the contract built over one set of input collections.

use crate::cohorts::cohorts;
use crate::common::Coll;
use crate::config::ViewsConfig;
use crate::data_quality::data_quality;
use crate::fraud::fraud_alerts;
use crate::funnel::funnel;
use crate::inventory::inventory;
use crate::product_performance::product_performance;
use crate::revenue::{priced_lines, revenue_views};
use crate::rfm::{rfm, rfm_segments};
use shopdiff_schemas::records::{Event, Line};
use shopdiff_schemas::rows::*;
use shopdiff_schemas::tables::{Customer, IpRep, Product};
use shopdiff_schemas::{Reason, Source, Str};

/// The input collections: events, tables keyed by primary key, and ingest-level quality counts.
#[derive(Clone)]
pub struct InputColls<'s> {
    pub lines: Coll<'s, Line>,
    pub events: Coll<'s, Event>,
    pub quality: Coll<'s, (Source, Reason)>,
    pub products: Coll<'s, (Str, Product)>,
    pub customers: Coll<'s, (Str, Customer)>,
    pub ips: Coll<'s, (Str, IpRep)>,
}

/// Every view's output collection.
pub struct ViewColls<'s> {
    pub rfm: Coll<'s, RfmRow>,
    pub rfm_segments: Coll<'s, SegmentRow>,
    pub cohorts: Coll<'s, CohortRow>,
    pub revenue_hourly: Coll<'s, RevenueRow>,
    pub revenue_daily: Coll<'s, RevenueRow>,
    pub fraud_alerts: Coll<'s, AlertRow>,
    pub product_performance: Coll<'s, ProductPerfRow>,
    pub inventory: Coll<'s, InventoryRow>,
    pub funnel_daily: Coll<'s, FunnelRow>,
    pub data_quality: Coll<'s, QualityRow>,
}

/// Builds every view.
pub fn all_views<'s>(i: InputColls<'s>, cfg: &ViewsConfig) -> ViewColls<'s> {
    // one `Arc` per line; its dozen consumers clone the pointer (see `AnyLine`)
    let lines = i.lines.map(std::sync::Arc::new);
    let rfm_rows = rfm(lines.clone());
    let (revenue_hourly, revenue_daily) = revenue_views(
        priced_lines(lines.clone(), i.products.clone()),
        cfg.retire_days(),
    );
    ViewColls {
        rfm_segments: rfm_segments(rfm_rows.clone()),
        rfm: rfm_rows,
        cohorts: cohorts(lines.clone(), i.customers.clone()),
        revenue_hourly,
        revenue_daily,
        fraud_alerts: fraud_alerts(
            lines.clone(),
            i.events.clone(),
            i.ips,
            &cfg.fraud,
            cfg.tick_ms,
        ),
        product_performance: product_performance(lines.clone(), i.events.clone(), cfg),
        inventory: inventory(lines.clone(), i.products.clone(), cfg.tick_ms),
        funnel_daily: funnel(lines.clone(), i.events, cfg),
        data_quality: data_quality(i.quality, lines, i.products, i.customers),
    }
}
