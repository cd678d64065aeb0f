//! The built-in workload generator: the seed's `ECommerceDataGenerator`, made real.
//!
//! A deterministic simulation of a shop: a user base spread over regions, countries and time
//! zones; a catalog with brands, categories, prices above cost and inventory; sessions that
//! browse, search, fill and empty carts, start checkouts and buy or abandon; volumes that follow
//! the seed's hourly ranges with business hours, weekends and holidays. On top of the clean
//! traffic it injects what the engine must cope with: fraud patterns for every `fraud_alerts`
//! rule (listed in an anomaly manifest), malformed and invalid records for every rejection
//! reason, duplicates, out-of-order and late deliveries, and table changes over time.
//!
//! Two ways to use it:
//! * [`Generator`] yields [`GenItem`]s in delivery order (a live driver paces them by `sent`);
//!   [`Generator::tables`] gives the initial table rows and [`Generator::anomalies`] the
//!   manifest so far.
//! * [`write_recorded_stream`] writes a recorded stream directory (contract section 1) plus
//!   `anomalies.jsonl`, from the same iterator.
//!
//! The same [`GenConfig`] always produces the same bytes.

mod changes;
mod data;
mod defects;
mod deliver;
mod engine;
mod fmt;
mod fraud;
mod ips;
mod places;
mod records;
mod rng;
mod rows;
mod season;
mod session;
mod steps;
mod world;
mod write;

pub use engine::Generator;
pub use write::{write_recorded_stream, WriteOptions};

use serde::{Deserialize, Serialize};
use shopdiff_schemas::time::Ms;
use shopdiff_schemas::{Reason, Table};
use std::path::PathBuf;
use std::time::Duration;

/// What to generate. Plain data: every field has a default, so a config file may set only some.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenConfig {
    /// Seed of every random choice: the same config always yields the same bytes.
    pub seed: u64,
    /// Size of the user base (ids `U000000` upwards).
    pub users: usize,
    /// Products with an initial `products` row (ids `P00000` upwards); a few more products
    /// without a row (marketplace items, later launches) are added on top.
    pub products: usize,
    /// Event time of the first session (RFC 3339 in config files).
    #[serde(with = "rfc3339_ms")]
    pub start: Ms,
    /// Total event records to write, transactions plus behavior, bad records and duplicates
    /// included. The simulated duration follows from it and from the volume.
    pub records: u64,
    /// Multiplier on the seed's hourly volumes (1.0: 100k-500k behavior events and 10k-50k
    /// transaction lines per hour). Smaller values stretch the same records over more time.
    pub volume: f64,
    /// Fraction of sessions turned into a fraud pattern (velocity, amount, geo, risky IP).
    pub anomaly_rate: f64,
    /// Fraction of event records that are malformed or invalid (each with exactly one defect).
    /// When positive, a few invalid table rows and changes are written too.
    pub bad_rate: f64,
    /// Fraction of event records that are re-deliveries of an earlier record.
    pub duplicate_rate: f64,
    /// Fraction of event records delivered more than 5 s behind their stream's newest record.
    pub late_rate: f64,
    /// Emit table changes (prices, inventory, products, customers, IP reputation) over time.
    pub changes: bool,
    /// Currencies in use; users pay in their region's currency when it is listed, else in the
    /// first one.
    pub currencies: Vec<String>,
}

/// 2024-07-01T00:00:00Z.
pub const DEFAULT_START: Ms = 1_719_792_000_000;

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 42,
            users: 10_000,
            products: 1_000,
            start: DEFAULT_START,
            records: 1_000_000,
            volume: 1.0,
            anomaly_rate: 0.001,
            bad_rate: 0.0,
            duplicate_rate: 0.0,
            late_rate: 0.0,
            changes: true,
            currencies: ["USD", "EUR", "GBP", "CAD"].map(String::from).to_vec(),
        }
    }
}

/// Event records per customer and day of a mid-size shop's month (100,000 customers, 30 days:
/// about 4.7 million records), the default of [`GenConfig::for_days`].
pub const RECORDS_PER_CUSTOMER_DAY: f64 = 1.57;

impl GenConfig {
    /// The volume that spreads `records` event records over `days` simulated days from
    /// `start`, following the seed's hourly profile (business hours, weekends, holidays).
    pub fn volume_for_days(start: Ms, days: f64, records: u64) -> f64 {
        let hours = (days * 24.0).ceil().max(1.0) as i64;
        let hour = shopdiff_schemas::time::HOUR_MS;
        // behavior events at volume 1, plus about one transaction line per ten of them
        let at_one: f64 = (0..hours)
            .map(|h| season::events_per_hour(start + h * hour))
            .sum::<f64>()
            * 1.1
            * (days * 24.0 / hours as f64);
        (records as f64 / at_one).clamp(1e-6, 1000.0)
    }

    /// This config stretched over `days` simulated days: `records` (default
    /// [`RECORDS_PER_CUSTOMER_DAY`] per customer and day) at the volume that fills them.
    pub fn for_days(mut self, days: f64, records: Option<u64>) -> GenConfig {
        let records = records
            .unwrap_or((self.users as f64 * RECORDS_PER_CUSTOMER_DAY * days) as u64)
            .max(1);
        self.records = records;
        self.volume = GenConfig::volume_for_days(self.start, days, records);
        self
    }

    /// Checks the ranges of every field.
    pub fn validate(&self) -> Result<(), GenError> {
        let bad = |m: String| Err(GenError::Config(m));
        if self.users == 0 || self.products == 0 {
            return bad("users and products must be at least 1".into());
        }
        if self.users > 100_000_000 || self.products > 10_000_000 {
            return bad("users must be at most 100000000 and products at most 10000000".into());
        }
        for (name, v) in [
            ("anomaly_rate", self.anomaly_rate),
            ("bad_rate", self.bad_rate),
            ("duplicate_rate", self.duplicate_rate),
            ("late_rate", self.late_rate),
        ] {
            if !(0.0..=0.5).contains(&v) {
                return bad(format!("{name} = {v} is outside 0..=0.5"));
            }
        }
        if !(self.volume > 1e-6 && self.volume <= 1000.0) {
            return bad(format!("volume = {} is outside (0, 1000]", self.volume));
        }
        if self.currencies.is_empty() {
            return bad("currencies is empty (hint: [\"USD\"])".into());
        }
        for c in &self.currencies {
            if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return bad(format!("currency {c:?} is not three upper-case letters"));
            }
        }
        Ok(())
    }
}

/// Which output an item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GenStream {
    /// A line of `transactions.jsonl`.
    Transactions,
    /// A line of `behavior.jsonl`.
    Behavior,
    /// A line of `changes.jsonl`.
    Change,
}

impl GenStream {
    /// The file name in a recorded stream (without `.zst`).
    pub fn file_name(self) -> &'static str {
        match self {
            GenStream::Transactions => "transactions.jsonl",
            GenStream::Behavior => "behavior.jsonl",
            GenStream::Change => "changes.jsonl",
        }
    }
}

/// What the generator meant a line to be (for tests, metrics and demos; engines must not use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Note {
    /// A valid record delivered at most 2.5 s behind its stream's newest record.
    Valid,
    /// A valid record delivered more than 5 s behind its stream's newest record.
    Late,
    /// A valid re-delivery of an earlier record's identity, identical or with changed fields.
    Duplicate { changed: bool },
    /// A record (or table row or change) with one defect, rejected with this reason.
    Bad(Reason),
}

/// One line of output, in delivery order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenItem {
    pub stream: GenStream,
    /// Event time of the record (for a bad record, of the record it was made from), or the
    /// change's `at`.
    pub ts: Ms,
    /// Simulated delivery time: non-decreasing over the items; pace a live feed by it.
    pub sent: Ms,
    /// The JSON line, without the newline.
    pub json: String,
    pub note: Note,
}

/// A table line (initial row) with what it was meant to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLine {
    pub json: String,
    pub note: Note,
}

/// The initial rows of the three tables, as JSON lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitialTables {
    pub products: Vec<TableLine>,
    pub customers: Vec<TableLine>,
    pub ip_reputation: Vec<TableLine>,
}

impl InitialTables {
    pub fn get(&self, table: Table) -> &[TableLine] {
        match table {
            Table::Products => &self.products,
            Table::Customers => &self.customers,
            Table::IpReputation => &self.ip_reputation,
        }
    }
}

/// A `fraud_alerts` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rule {
    Velocity,
    Amount,
    Geo,
    RiskyIp,
}

impl Rule {
    pub const ALL: [Rule; 4] = [Rule::Velocity, Rule::Amount, Rule::Geo, Rule::RiskyIp];
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Velocity => "velocity",
            Rule::Amount => "amount",
            Rule::Geo => "geo",
            Rule::RiskyIp => "risky_ip",
        }
    }
}

/// One injected fraud pattern (a line of `anomalies.jsonl`).
///
/// `first` is the event time at which the rule's condition first holds (evaluated over the
/// records with event time up to it; the alert appears at the tick holding it); `last` is the
/// event time of the pattern's last record. Windowed rules hold from `first` through `last`
/// and clear once the window has passed their records; the pattern's user has no other order in
/// the hour before and after the pattern. A `risky_ip` alert never clears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub rule: Rule,
    /// `user_id` for velocity, amount and geo; `transaction_id` for risky_ip.
    pub key: String,
    pub user_id: String,
    pub first: Ms,
    pub last: Ms,
    /// How the pattern was made (`burst`, `spike`, `two_currencies`, `tor`, `change`, ...).
    pub variant: &'static str,
    /// The session and IP address of a risky_ip pattern.
    pub session_id: Option<String>,
    pub ip: Option<String>,
}

impl Anomaly {
    /// The manifest line.
    pub fn to_json(&self) -> String {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let mut out = format!(
            "{{\"rule\":\"{}\",\"key\":{},\"user_id\":{},\"first\":\"{}\",\"last\":\"{}\",\"variant\":\"{}\"",
            self.rule.as_str(),
            q(&self.key),
            q(&self.user_id),
            fmt::ts(self.first),
            fmt::ts(self.last),
            self.variant
        );
        if let (Some(s), Some(ip)) = (&self.session_id, &self.ip) {
            out.push_str(&format!(",\"session_id\":{},\"ip\":{}", q(s), q(ip)));
        }
        out.push('}');
        out
    }
}

/// What a generation produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GenStats {
    /// Lines of `transactions.jsonl`.
    pub transactions: u64,
    /// Lines of `behavior.jsonl`.
    pub behavior: u64,
    pub products: u64,
    pub customers: u64,
    pub ip_reputation: u64,
    pub changes: u64,
    pub anomalies: u64,
    /// Event records and table lines with a defect.
    pub bad: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Event time of the first and last valid event record (`Ms::MAX` and `Ms::MIN` when there
    /// is none).
    pub first_event: Ms,
    pub last_event: Ms,
    /// Bytes written (uncompressed) to all files.
    pub bytes: u64,
    pub elapsed: Duration,
}

impl GenStats {
    /// Event records (transactions plus behavior) per second of wall time.
    pub fn records_per_sec(&self) -> f64 {
        (self.transactions + self.behavior) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("invalid generator config: {0}")]
    Config(String),
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source} (hint: check free space and permissions)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `Ms` as RFC 3339 in config files (an integer of milliseconds is accepted too).
mod rfc3339_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use shopdiff_schemas::time::{parse_rfc3339, Ms};

    pub fn serialize<S: Serializer>(ms: &Ms, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::fmt::ts(*ms))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Int(i64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ms, D::Error> {
        match Either::deserialize(d)? {
            Either::Int(ms) => Ok(ms),
            Either::Text(s) => parse_rfc3339(&s).ok_or_else(|| {
                serde::de::Error::custom(format!("start {s:?} is not an RFC 3339 time"))
            }),
        }
    }
}
