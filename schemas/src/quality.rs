//! Data-quality sources and reasons (contract sections 2, 5 `data_quality` and 5a).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a record came from: an event stream or a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Source {
    Transactions,
    Behavior,
    Products,
    Customers,
    IpReputation,
}

impl Source {
    /// Every source, in name order.
    pub const ALL: [Source; 5] = [
        Source::Behavior,
        Source::Customers,
        Source::IpReputation,
        Source::Products,
        Source::Transactions,
    ];

    /// The name used in `data_quality.source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Transactions => "transactions",
            Source::Behavior => "behavior",
            Source::Products => "products",
            Source::Customers => "customers",
            Source::IpReputation => "ip_reputation",
        }
    }

    /// The source of a name, if it is one.
    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `data_quality.reason`: a rejection, a duplicate, a late record, an accepted record, or an
/// accepted line that does not match a table row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reason {
    Accepted,
    MalformedJson,
    MissingField,
    BadType,
    BadTimestamp,
    BadValue,
    Duplicate,
    Late,
    /// More than `max_future` ahead of the source's reference clock (contract 3).
    Future,
    /// Older than the lateness horizon when it arrived (contract 3).
    TooLate,
    UnknownProduct,
    UnknownCustomer,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 12] = [
        Reason::Accepted,
        Reason::MalformedJson,
        Reason::MissingField,
        Reason::BadType,
        Reason::BadTimestamp,
        Reason::BadValue,
        Reason::Duplicate,
        Reason::Late,
        Reason::Future,
        Reason::TooLate,
        Reason::UnknownProduct,
        Reason::UnknownCustomer,
    ];

    /// The name used in `data_quality.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "accepted",
            Reason::MalformedJson => "malformed_json",
            Reason::MissingField => "missing_field",
            Reason::BadType => "bad_type",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::BadValue => "bad_value",
            Reason::Duplicate => "duplicate",
            Reason::Late => "late",
            Reason::Future => "future",
            Reason::TooLate => "too_late",
            Reason::UnknownProduct => "unknown_product",
            Reason::UnknownCustomer => "unknown_customer",
        }
    }

    /// The reason of a name, if it is one.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record was rejected: the reason and the field that failed (empty for the whole record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub field: &'static str,
}

impl Rejection {
    pub fn new(reason: Reason, field: &'static str) -> Self {
        Rejection { reason, field }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{} ({})", self.reason, self.field)
        }
    }
}
