//! The tables: `products`, `customers` (the seed's DDL) and `ip_reputation` (contract 1).
//!
//! A row is validated against its DDL (contract 2 and 5a): a `NOT NULL` column missing or null is
//! `missing_field`, a value of the wrong JSON type `bad_type`, an unparsable `TIMESTAMP`/`DATE`
//! `bad_timestamp`. Only the columns a view uses are kept: no customer PII is ever stored.

use crate::json::{self, as_bool, as_int, as_str, kind, Kind};
use crate::money::{parse_cents, scaled, Cents};
use crate::quality::{Reason, Rejection, Source};
use crate::time::{parse_rfc3339, parse_table_time, Ms};
use crate::Str;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A table of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    Products,
    Customers,
    IpReputation,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Products, Table::Customers, Table::IpReputation];

    pub fn name(self) -> &'static str {
        self.source().as_str()
    }
    pub fn source(self) -> Source {
        match self {
            Table::Products => Source::Products,
            Table::Customers => Source::Customers,
            Table::IpReputation => Source::IpReputation,
        }
    }
    pub fn parse(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }
    /// The DDL: every column with its type and whether it is `NOT NULL`; the first is the key.
    pub fn columns(self) -> &'static [(&'static str, ColType, bool)] {
        match self {
            Table::Products => PRODUCTS,
            Table::Customers => CUSTOMERS,
            Table::IpReputation => IP_REPUTATION,
        }
    }
    /// The primary-key column.
    pub fn key_column(self) -> &'static str {
        self.columns()[0].0
    }
}

/// A column type of the DDL, as JSON sees it (contract 5a).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    Decimal,
    Integer,
    Boolean,
    TextArray,
    Jsonb,
    Timestamp,
}

use ColType::*;

const PRODUCTS: &[(&str, ColType, bool)] = &[
    ("product_id", Text, true),
    ("name", Text, true),
    ("description", Text, false),
    ("category_id", Text, true),
    ("category_name", Text, true),
    ("subcategory", Text, false),
    ("brand", Text, true),
    ("price", Decimal, true),
    ("cost", Decimal, true),
    ("inventory_count", Integer, true),
    ("weight_kg", Decimal, false),
    ("dimensions_cm", Text, false),
    ("sku", Text, false),
    ("status", Text, false),
    ("created_at", Timestamp, false),
    ("updated_at", Timestamp, false),
    ("tags", TextArray, false),
    ("supplier_id", Text, false),
    ("rating_avg", Decimal, false),
    ("review_count", Integer, false),
];

const CUSTOMERS: &[(&str, ColType, bool)] = &[
    ("user_id", Text, true),
    ("email", Text, true),
    ("first_name", Text, false),
    ("last_name", Text, false),
    ("phone", Text, false),
    ("date_of_birth", Timestamp, false),
    ("gender", Text, false),
    ("registration_date", Timestamp, true),
    ("last_login", Timestamp, false),
    ("account_status", Text, false),
    ("customer_tier", Text, false),
    ("lifetime_value", Decimal, false),
    ("total_orders", Integer, false),
    ("preferred_language", Text, false),
    ("marketing_consent", Boolean, false),
    ("address", Jsonb, false),
    ("preferences", Jsonb, false),
];

const IP_REPUTATION: &[(&str, ColType, bool)] = &[
    ("ip_address", Text, true),
    ("risk_score", Decimal, false),
    ("country_risk", Text, false),
    ("is_vpn", Boolean, false),
    ("is_tor", Boolean, false),
    ("device_fingerprint", Text, false),
    ("previous_fraud_incidents", Integer, false),
];

/// A `products` row, as the views use it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Product {
    pub product_id: Str,
    pub cost: Cents,
    pub inventory_count: i64,
}

/// A `customers` row, as the views use it (no PII).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Customer {
    pub user_id: Str,
    pub registration_date: Ms,
}

/// Risk scores are kept exactly as millionths (`0.8` is `800_000`).
pub const RISK_SCALE: i64 = 1_000_000;

/// An `ip_reputation` row, as the views use it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IpRep {
    pub ip_address: Str,
    /// `risk_score` in millionths; `None` when null.
    pub risk: Option<i64>,
    pub is_tor: bool,
}

/// A validated row of one of the tables.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TableRow {
    Product(Product),
    Customer(Customer),
    Ip(IpRep),
}

impl TableRow {
    pub fn table(&self) -> Table {
        match self {
            TableRow::Product(_) => Table::Products,
            TableRow::Customer(_) => Table::Customers,
            TableRow::Ip(_) => Table::IpReputation,
        }
    }
    /// The primary key.
    pub fn key(&self) -> &Str {
        match self {
            TableRow::Product(p) => &p.product_id,
            TableRow::Customer(c) => &c.user_id,
            TableRow::Ip(i) => &i.ip_address,
        }
    }
}

fn check_type(raw: &RawValue, t: ColType) -> Result<(), Reason> {
    let k = kind(raw);
    let ok = match t {
        Text => k == Kind::String,
        Decimal => k == Kind::Number,
        Integer => as_int(raw).is_ok(),
        Boolean => k == Kind::Bool,
        Jsonb => true,
        Timestamp => k == Kind::String,
        TextArray => {
            k == Kind::Array
                && serde_json::from_str::<Vec<&RawValue>>(raw.get())
                    .map(|v| v.iter().all(|e| kind(e) == Kind::String))
                    .unwrap_or(false)
        }
    };
    if !ok {
        return Err(Reason::BadType);
    }
    if t == Timestamp && parse_table_time(&as_str(raw).unwrap_or_default()).is_none() {
        return Err(Reason::BadTimestamp);
    }
    Ok(())
}

/// Validates a full row of `table` given as a JSON object (initial rows, upserts, CDC).
pub fn parse_row(table: Table, text: &str) -> Result<TableRow, Rejection> {
    let cols = table.columns();
    let names: Vec<&str> = cols.iter().map(|c| c.0).collect();
    let vals = fields_dyn(text, &names).ok_or(Rejection::new(Reason::MalformedJson, ""))?;
    let vals: Vec<Option<&RawValue>> = vals.into_iter().map(json::present).collect();
    for (i, (name, _, not_null)) in cols.iter().enumerate() {
        if *not_null && vals[i].is_none() {
            return Err(Rejection::new(Reason::MissingField, name));
        }
    }
    // bad_type over every column before bad_timestamp over any
    for (i, (name, t, _)) in cols.iter().enumerate() {
        if let Some(raw) = vals[i] {
            if check_type(raw, *t) == Err(Reason::BadType) {
                return Err(Rejection::new(Reason::BadType, name));
            }
        }
    }
    for (i, (name, t, _)) in cols.iter().enumerate() {
        if let Some(raw) = vals[i] {
            if *t == Timestamp && check_type(raw, *t).is_err() {
                return Err(Rejection::new(Reason::BadTimestamp, name));
            }
        }
    }
    let get = |name: &str| vals[names.iter().position(|n| *n == name).unwrap_or(0)];
    let text_of = |name: &str| Str::from(get(name).and_then(as_str).unwrap_or_default().as_ref());
    let row = match table {
        Table::Products => TableRow::Product(Product {
            product_id: text_of("product_id"),
            cost: get("cost")
                .map(|r| parse_cents(r.get()))
                .transpose()
                .map_err(|_| Rejection::new(Reason::BadValue, "cost"))?
                .unwrap_or(0),
            inventory_count: get("inventory_count")
                .and_then(|r| as_int(r).ok())
                .unwrap_or(0),
        }),
        Table::Customers => TableRow::Customer(Customer {
            user_id: text_of("user_id"),
            registration_date: get("registration_date")
                .and_then(as_str)
                .and_then(|s| parse_table_time(&s))
                .ok_or(Rejection::new(Reason::BadTimestamp, "registration_date"))?,
        }),
        Table::IpReputation => TableRow::Ip(IpRep {
            ip_address: text_of("ip_address"),
            risk: get("risk_score")
                .map(|r| {
                    scaled(r.get(), 6).map(|v| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
                })
                .transpose()
                .map_err(|_| Rejection::new(Reason::BadValue, "risk_score"))?,
            is_tor: get("is_tor").and_then(as_bool).unwrap_or(false),
        }),
    };
    Ok(row)
}

/// Validates a delete: only the primary key is needed.
pub fn parse_key(table: Table, text: &str) -> Result<Str, Rejection> {
    let key = table.key_column();
    let [v] = json::fields(text, &[key]).ok_or(Rejection::new(Reason::MalformedJson, ""))?;
    let raw = json::present(v).ok_or(Rejection::new(Reason::MissingField, key))?;
    as_str(raw)
        .map(|s| Str::from(s.as_ref()))
        .ok_or(Rejection::new(Reason::BadType, key))
}

fn fields_dyn<'a>(text: &'a str, names: &[&str]) -> Option<Vec<Option<&'a RawValue>>> {
    // the widest table has 20 columns
    let mut padded = [""; 20];
    padded[..names.len()].copy_from_slice(names);
    let all = json::fields(text, &padded)?;
    Some(all[..names.len()].to_vec())
}

/// What a recorded change does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOp {
    Upsert(TableRow),
    Delete(Str),
}

/// A recorded table change (`changes.jsonl`): the table, when it applies, and what it does, or
/// the table (when known) and why the change was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub table: Table,
    pub at: Ms,
    pub op: Result<ChangeOp, Rejection>,
}

/// Why a line of `changes.jsonl` could not be read as a change at all (no table to count it under).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("not a JSON object with \"table\", \"op\", \"at\" and \"row\"")]
    Malformed,
    #[error("unknown table {0:?} (expected products, customers or ip_reputation)")]
    UnknownTable(String),
    #[error("\"at\" is missing or not an RFC 3339 time")]
    BadAt,
    #[error("unknown op {0:?} (expected upsert or delete)")]
    UnknownOp(String),
}

/// Reads one line of `changes.jsonl`. A change whose `row` is invalid is returned with its
/// rejection (it is counted under the table's name and not applied).
pub fn parse_change(text: &str) -> Result<Change, ChangeError> {
    let [table, op, at, row] =
        json::fields(text, &["table", "op", "at", "row"]).ok_or(ChangeError::Malformed)?;
    let table_name = table.and_then(as_str).ok_or(ChangeError::Malformed)?;
    let table = Table::parse(&table_name)
        .ok_or_else(|| ChangeError::UnknownTable(table_name.to_string()))?;
    let at = at
        .and_then(as_str)
        .and_then(|s| parse_rfc3339(&s))
        .ok_or(ChangeError::BadAt)?;
    let op_name = op.and_then(as_str).ok_or(ChangeError::Malformed)?;
    let row_text = json::present(row).map(|r| r.get()).unwrap_or("{}");
    let op = match op_name.as_ref() {
        "upsert" => parse_row(table, row_text).map(ChangeOp::Upsert),
        "delete" => parse_key(table, row_text).map(ChangeOp::Delete),
        other => return Err(ChangeError::UnknownOp(other.to_string())),
    };
    Ok(Change { table, at, op })
}
