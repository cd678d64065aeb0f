//! The rows of every view (contract section 5) and their columns (contract section 6).
//!
//! Each view's row is a plain struct that the dataflow maintains; derived columns (`recency_days`,
//! ratios, `margin`, `low_stock`) are computed by [`Row::values`] when a row is read, so they are
//! never maintained state. A [`ViewDef`] names a view, its columns and its primary key (always
//! the first `key_len` columns).

use crate::money::{ratio_scaled, Sum};
use crate::quality::{Reason, Source};
use crate::tables::RISK_SCALE;
use crate::time::{Ms, DAY_MS};
use crate::Str;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::hash::Hash;

/// The type of a column, as the contract shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    String,
    Integer,
    /// `DECIMAL(38,2)`, a string with two decimals in JSON.
    Money,
    /// A UTC millisecond timestamp, an RFC 3339 string in JSON.
    Time,
    /// A ratio rounded to this many decimals; a number or null.
    Ratio(u32),
    /// A plain number (fraud `measure` and `threshold`).
    Number,
    Boolean,
}

/// A column of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColKind,
    pub nullable: bool,
    /// Derived from the reader's `as_of` (`rfm.recency_days`): shown in reads, never in deltas
    /// (subscriptions, sinks), where it would change every row at every `as_of`.
    pub as_of_dependent: bool,
}

const fn col(name: &'static str, kind: ColKind) -> Column {
    Column {
        name,
        kind,
        nullable: false,
        as_of_dependent: false,
    }
}
const fn nullable(name: &'static str, kind: ColKind) -> Column {
    Column {
        name,
        kind,
        nullable: true,
        as_of_dependent: false,
    }
}
const fn at_read(name: &'static str, kind: ColKind) -> Column {
    Column {
        name,
        kind,
        nullable: false,
        as_of_dependent: true,
    }
}

/// A view: its name, columns and primary key (the first `key_len` columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewDef {
    pub name: &'static str,
    pub columns: &'static [Column],
    pub key_len: usize,
}

impl ViewDef {
    pub fn key_columns(&self) -> &'static [Column] {
        &self.columns[..self.key_len]
    }
    /// The indexes of the columns that appear in deltas (every column but the `as_of`-dependent).
    pub fn delta_columns(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| !self.columns[i].as_of_dependent)
            .collect()
    }
    pub fn column(&self, name: &str) -> Option<(usize, &'static Column)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }
}

/// One value of a row, typed as its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Str(Str),
    Int(i64),
    /// Cents; sums need more than 64 bits (contract 4).
    Money(Sum),
    Time(Ms),
    /// A ratio as an integer scaled by `10^places`.
    Ratio(i64, u32),
    Number(f64),
    Bool(bool),
}

impl Value {
    /// The value as an `f64` where it is numeric (ratios and numbers).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(v) => Some(*v as f64),
            Value::Money(c) => Some(*c as f64 / 100.0),
            Value::Ratio(v, p) => Some(*v as f64 / 10f64.powi(*p as i32)),
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// A row of a view.
pub trait Row: Clone + Ord + Hash + Debug + Send + Sync + 'static {
    /// Every column's value, in the view's column order; `as_of` feeds columns derived at read
    /// time (`rfm.recency_days`).
    fn values(&self, as_of: Ms) -> Vec<Value>;

    /// The first `n` columns' values (the primary key when `n` is the view's `key_len`): by
    /// default from [`Row::values`]; rows of the views that change many rows at a time
    /// override it, so a store's key builds no other column.
    fn key_values(&self, n: usize) -> Vec<Value> {
        let mut v = self.values(0);
        v.truncate(n);
        v
    }
}

fn ratio(num: i64, den: i64, places: u32) -> Value {
    match ratio_scaled(num as i128, den as i128, places) {
        Some(v) => Value::Ratio(v as i64, places),
        None => Value::Null,
    }
}

fn s(v: &str) -> Value {
    Value::Str(Str::from(v))
}

// ------------------------------------------------------------------------------------------ rfm

/// An RFM segment (contract 5 `rfm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Segment {
    Champions,
    Loyal,
    New,
    AtRisk,
    Hibernating,
    Potential,
}

impl Segment {
    /// The first segment that matches the scores.
    pub fn of(r: u8, f: u8, m: u8) -> Segment {
        if r >= 4 && f >= 4 && m >= 4 {
            Segment::Champions
        } else if f >= 4 {
            Segment::Loyal
        } else if r >= 4 && f <= 2 {
            Segment::New
        } else if r <= 2 && f >= 3 {
            Segment::AtRisk
        } else if r <= 2 && f <= 2 {
            Segment::Hibernating
        } else {
            Segment::Potential
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Champions => "champions",
            Segment::Loyal => "loyal",
            Segment::New => "new",
            Segment::AtRisk => "at_risk",
            Segment::Hibernating => "hibernating",
            Segment::Potential => "potential",
        }
    }
}

pub const RFM: ViewDef = ViewDef {
    name: "rfm",
    columns: &[
        col("user_id", ColKind::String),
        col("last_purchase", ColKind::Time),
        at_read("recency_days", ColKind::Integer),
        col("frequency", ColKind::Integer),
        col("monetary", ColKind::Money),
        col("r_score", ColKind::Integer),
        col("f_score", ColKind::Integer),
        col("m_score", ColKind::Integer),
        col("segment", ColKind::String),
    ],
    key_len: 1,
};

/// A row of `rfm`; `recency_days` is derived when read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RfmRow {
    pub user_id: Str,
    pub last_purchase: Ms,
    pub frequency: i64,
    pub monetary: Sum,
    pub r_score: u8,
    pub f_score: u8,
    pub m_score: u8,
}

impl RfmRow {
    pub fn segment(&self) -> Segment {
        Segment::of(self.r_score, self.f_score, self.m_score)
    }
}

impl Row for RfmRow {
    fn values(&self, as_of: Ms) -> Vec<Value> {
        vec![
            Value::Str(self.user_id.clone()),
            Value::Time(self.last_purchase),
            Value::Int((as_of - self.last_purchase).div_euclid(DAY_MS)),
            Value::Int(self.frequency),
            Value::Money(self.monetary),
            Value::Int(self.r_score as i64),
            Value::Int(self.f_score as i64),
            Value::Int(self.m_score as i64),
            s(self.segment().as_str()),
        ]
    }

    fn key_values(&self, n: usize) -> Vec<Value> {
        let mut v = vec![Value::Str(self.user_id.clone())];
        v.truncate(n);
        v
    }
}

pub const RFM_SEGMENTS: ViewDef = ViewDef {
    name: "rfm_segments",
    columns: &[
        col("segment", ColKind::String),
        col("customers", ColKind::Integer),
        col("monetary", ColKind::Money),
    ],
    key_len: 1,
};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SegmentRow {
    pub segment: Segment,
    pub customers: i64,
    pub monetary: Sum,
}

impl Row for SegmentRow {
    fn values(&self, _: Ms) -> Vec<Value> {
        vec![
            s(self.segment.as_str()),
            Value::Int(self.customers),
            Value::Money(self.monetary),
        ]
    }
}

// -------------------------------------------------------------------------------------- cohorts

pub const COHORTS: ViewDef = ViewDef {
    name: "cohorts",
    columns: &[
        col("cohort_month", ColKind::Time),
        col("month_offset", ColKind::Integer),
        col("cohort_size", ColKind::Integer),
        col("active_customers", ColKind::Integer),
        nullable("retention", ColKind::Ratio(4)),
    ],
    key_len: 2,
};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CohortRow {
    /// First millisecond of the registration month.
    pub cohort_month: Ms,
    pub month_offset: i64,
    pub cohort_size: i64,
    pub active_customers: i64,
}

impl Row for CohortRow {
    fn values(&self, _: Ms) -> Vec<Value> {
        vec![
            Value::Time(self.cohort_month),
            Value::Int(self.month_offset),
            Value::Int(self.cohort_size),
            Value::Int(self.active_customers),
            ratio(self.active_customers, self.cohort_size, 4),
        ]
    }
}

// -------------------------------------------------------------------------------------- revenue

/// A dimension of the revenue views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Dimension {
    Total,
    Category,
    Brand,
    Country,
    PaymentMethod,
    Channel,
    DeviceType,
    Product,
}

impl Dimension {
    pub const ALL: [Dimension; 8] = [
        Dimension::Total,
        Dimension::Category,
        Dimension::Brand,
        Dimension::Country,
        Dimension::PaymentMethod,
        Dimension::Channel,
        Dimension::DeviceType,
        Dimension::Product,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Total => "total",
            Dimension::Category => "category",
            Dimension::Brand => "brand",
            Dimension::Country => "country",
            Dimension::PaymentMethod => "payment_method",
            Dimension::Channel => "channel",
            Dimension::DeviceType => "device_type",
            Dimension::Product => "product",
        }
    }
}

const REVENUE_COLUMNS: &[Column] = &[
    col("dimension", ColKind::String),
    col("value", ColKind::String),
    col("bucket", ColKind::Time),
    col("currency", ColKind::String),
    col("orders", ColKind::Integer),
    col("items", ColKind::Integer),
    col("gross", ColKind::Money),
    col("discount", ColKind::Money),
    col("net", ColKind::Money),
    col("cost", ColKind::Money),
    col("margin", ColKind::Money),
    col("unmatched_lines", ColKind::Integer),
];

pub const REVENUE_HOURLY: ViewDef = ViewDef {
    name: "revenue_hourly",
    columns: REVENUE_COLUMNS,
    key_len: 4,
};
pub const REVENUE_DAILY: ViewDef = ViewDef {
    name: "revenue_daily",
    columns: REVENUE_COLUMNS,
    key_len: 4,
};

/// A row of `revenue_hourly` or `revenue_daily`; `margin` is derived when read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RevenueRow {
    pub dimension: Dimension,
    pub value: Str,
    pub bucket: Ms,
    pub currency: Str,
    pub orders: i64,
    pub items: i64,
    pub gross: Sum,
    pub discount: Sum,
    pub net: Sum,
    pub cost: Sum,
    pub unmatched_lines: i64,
}

impl Row for RevenueRow {
    fn values(&self, _: Ms) -> Vec<Value> {
        vec![
            s(self.dimension.as_str()),
            Value::Str(self.value.clone()),
            Value::Time(self.bucket),
            Value::Str(self.currency.clone()),
            Value::Int(self.orders),
            Value::Int(self.items),
            Value::Money(self.gross),
            Value::Money(self.discount),
            Value::Money(self.net),
            Value::Money(self.cost),
            Value::Money(self.net - self.cost),
            Value::Int(self.unmatched_lines),
        ]
    }

    fn key_values(&self, n: usize) -> Vec<Value> {
        let mut v = vec![
            s(self.dimension.as_str()),
            Value::Str(self.value.clone()),
            Value::Time(self.bucket),
            Value::Str(self.currency.clone()),
        ];
        v.truncate(n);
        v
    }
}

// --------------------------------------------------------------------------------------- fraud

/// A fraud rule (contract 5 `fraud_alerts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Rule {
    Amount,
    Geo,
    RiskyIp,
    Velocity,
}

impl Rule {
    pub const ALL: [Rule; 4] = [Rule::Amount, Rule::Geo, Rule::RiskyIp, Rule::Velocity];
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Velocity => "velocity",
            Rule::Amount => "amount",
            Rule::Geo => "geo",
            Rule::RiskyIp => "risky_ip",
        }
    }
    pub fn parse(s: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.as_str() == s)
    }
    /// The unit of the rule's integer measure: risk scores are millionths, the rest whole numbers
    /// (counts, or cents for `amount`).
    pub fn scale(self) -> i64 {
        match self {
            Rule::RiskyIp => RISK_SCALE,
            _ => 1,
        }
    }
}

pub const FRAUD_ALERTS: ViewDef = ViewDef {
    name: "fraud_alerts",
    columns: &[
        col("rule", ColKind::String),
        col("key", ColKind::String),
        col("user_id", ColKind::String),
        col("measure", ColKind::Number),
        col("threshold", ColKind::Number),
    ],
    key_len: 2,
};

/// An active alert; `measure` and `threshold` are integers in the rule's [`Rule::scale`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertRow {
    pub rule: Rule,
    pub key: Str,
    pub user_id: Str,
    pub measure: i64,
    pub threshold: i64,
}

impl Row for AlertRow {
    fn values(&self, _: Ms) -> Vec<Value> {
        let sc = self.rule.scale() as f64;
        vec![
            s(self.rule.as_str()),
            Value::Str(self.key.clone()),
            Value::Str(self.user_id.clone()),
            Value::Number(self.measure as f64 / sc),
            Value::Number(self.threshold as f64 / sc),
        ]
    }
}

// -------------------------------------------------------------------------- product performance

pub const PRODUCT_PERFORMANCE: ViewDef = ViewDef {
    name: "product_performance",
    columns: &[
        col("product_id", ColKind::String),
        col("day", ColKind::Time),
        col("views", ColKind::Integer),
        col("add_to_carts", ColKind::Integer),
        col("orders", ColKind::Integer),
        col("units", ColKind::Integer),
        nullable("conversion", ColKind::Ratio(4)),
    ],
    key_len: 2,
};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductPerfRow {
    pub product_id: Str,
    pub day: Ms,
    pub views: i64,
    pub add_to_carts: i64,
    pub orders: i64,
    pub units: i64,
}

impl Row for ProductPerfRow {
    fn values(&self, _: Ms) -> Vec<Value> {
        vec![
            Value::Str(self.product_id.clone()),
            Value::Time(self.day),
            Value::Int(self.views),
            Value::Int(self.add_to_carts),
            Value::Int(self.orders),
            Value::Int(self.units),
            ratio(self.orders, self.views, 4),
        ]
    }

    fn key_values(&self, n: usize) -> Vec<Value> {
        let mut v = vec![Value::Str(self.product_id.clone()), Value::Time(self.day)];
        v.truncate(n);
        v
    }
}

// ------------------------------------------------------------------------------------ inventory

pub const INVENTORY: ViewDef = ViewDef {
    name: "inventory",
    columns: &[
        col("product_id", ColKind::String),
        col("inventory_count", ColKind::Integer),
        col("units_7d", ColKind::Integer),
        nullable("days_of_cover", ColKind::Ratio(2)),
        col("low_stock", ColKind::Boolean),
    ],
    key_len: 1,
};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InventoryRow {
    pub product_id: Str,
    pub inventory_count: i64,
    pub units_7d: i64,
}

impl Row for InventoryRow {
    fn values(&self, _: Ms) -> Vec<Value> {
        vec![
            Value::Str(self.product_id.clone()),
            Value::Int(self.inventory_count),
            Value::Int(self.units_7d),
            // inventory / (units / 7) = 7 * inventory / units
            ratio(7 * self.inventory_count, self.units_7d, 2),
            Value::Bool(self.units_7d != 0 && self.inventory_count < self.units_7d),
        ]
    }

    fn key_values(&self, n: usize) -> Vec<Value> {
        let mut v = vec![Value::Str(self.product_id.clone())];
        v.truncate(n);
        v
    }
}

// --------------------------------------------------------------------------------------- funnel

pub const FUNNEL_DAILY: ViewDef = ViewDef {
    name: "funnel_daily",
    columns: &[
        col("day", ColKind::Time),
        col("sessions", ColKind::Integer),
        col("product_view_sessions", ColKind::Integer),
        col("cart_sessions", ColKind::Integer),
        col("checkout_sessions", ColKind::Integer),
        col("purchase_sessions", ColKind::Integer),
        nullable("cart_abandonment", ColKind::Ratio(4)),
    ],
    key_len: 1,
};

/// A row of `funnel_daily`; `cart_purchased` (cart sessions that purchased) feeds
/// `cart_abandonment` and is not a column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FunnelRow {
    pub day: Ms,
    pub sessions: i64,
    pub product_view_sessions: i64,
    pub cart_sessions: i64,
    pub checkout_sessions: i64,
    pub purchase_sessions: i64,
    pub cart_purchased: i64,
}

impl Row for FunnelRow {
    fn values(&self, _: Ms) -> Vec<Value> {
        vec![
            Value::Time(self.day),
            Value::Int(self.sessions),
            Value::Int(self.product_view_sessions),
            Value::Int(self.cart_sessions),
            Value::Int(self.checkout_sessions),
            Value::Int(self.purchase_sessions),
            // 1 - purchased / cart = (cart - purchased) / cart
            ratio(
                self.cart_sessions - self.cart_purchased,
                self.cart_sessions,
                4,
            ),
        ]
    }
}

// --------------------------------------------------------------------------------- data quality

pub const DATA_QUALITY: ViewDef = ViewDef {
    name: "data_quality",
    columns: &[
        col("source", ColKind::String),
        col("reason", ColKind::String),
        col("records", ColKind::Integer),
    ],
    key_len: 2,
};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QualityRow {
    pub source: Source,
    pub reason: Reason,
    pub records: i64,
}

impl Row for QualityRow {
    fn values(&self, _: Ms) -> Vec<Value> {
        vec![
            s(self.source.as_str()),
            s(self.reason.as_str()),
            Value::Int(self.records),
        ]
    }
}

/// Every view of the contract, in the order they are listed there.
pub const ALL_VIEWS: [ViewDef; 10] = [
    RFM,
    RFM_SEGMENTS,
    COHORTS,
    REVENUE_HOURLY,
    REVENUE_DAILY,
    FRAUD_ALERTS,
    PRODUCT_PERFORMANCE,
    INVENTORY,
    FUNNEL_DAILY,
    DATA_QUALITY,
];

/// The view of a name.
pub fn view_def(name: &str) -> Option<ViewDef> {
    ALL_VIEWS.into_iter().find(|v| v.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overridden `key_values` are the first columns of `values`, for every key length.
    fn same_key<R: Row>(r: &R, key_len: usize) {
        for n in 0..=key_len {
            assert_eq!(r.key_values(n), r.values(0)[..n].to_vec(), "{r:?}, n = {n}");
        }
    }

    #[test]
    fn key_values_are_the_first_columns() {
        let rfm = RfmRow {
            user_id: "U-1".into(),
            last_purchase: 86_400_000,
            frequency: 3,
            monetary: 12_345,
            r_score: 5,
            f_score: 4,
            m_score: 3,
        };
        same_key(&rfm, RFM.key_len);
        let rev = RevenueRow {
            dimension: Dimension::Brand,
            value: "a brand name longer than twenty-four bytes".into(),
            bucket: 3_600_000,
            currency: "EUR".into(),
            orders: 2,
            items: 5,
            gross: 1_000,
            discount: 100,
            net: 900,
            cost: 400,
            unmatched_lines: 1,
        };
        same_key(&rev, REVENUE_HOURLY.key_len);
        same_key(&rev, REVENUE_DAILY.key_len);
        let perf = ProductPerfRow {
            product_id: "P-7".into(),
            day: 86_400_000,
            views: 10,
            add_to_carts: 3,
            orders: 1,
            units: 2,
        };
        same_key(&perf, PRODUCT_PERFORMANCE.key_len);
        let inv = InventoryRow {
            product_id: "P-7".into(),
            inventory_count: 4,
            units_7d: 9,
        };
        same_key(&inv, INVENTORY.key_len);
    }
}
