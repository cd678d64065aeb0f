//! shopdiff's schemas: the seed's records and tables, their validation, money, time and the rows
//! of every view. This crate depends on nothing of ours; every other crate builds on it.
//!
//! * [`records`]: transaction lines and behavior events, parsed and validated (contract 1, 2, 5a).
//! * [`tables`]: `products`, `customers`, `ip_reputation` rows and recorded changes.
//! * [`quality`]: `data_quality` sources and reasons.
//! * [`money`]: exact decimals, cents, ratios (contract 4).
//! * [`time`]: milliseconds, ticks, UTC buckets, RFC 3339 (contract 3).
//! * [`rows`]: the rows and columns of every view (contract 5 and 6).

pub mod json;
pub mod money;
pub mod quality;
pub mod records;
pub mod rows;
pub mod tables;
pub mod time;

/// A short string stored inline when it fits (ids, dimension values): cheap to clone and compare.
pub type Str = compact_str::CompactString;

pub use quality::{Reason, Rejection, Source};
pub use records::{parse_behavior, parse_transaction, Event, EventKind, Line};
pub use tables::{Customer, IpRep, Product, Table, TableRow};
