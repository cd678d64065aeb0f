//! From pgoutput / COPY text values to the JSON rows `schemas::tables::parse_row` validates, so a
//! CDC row goes through exactly the validation of a recorded table file (contract 2 and 5a).
//!
//! Each of the contract's columns is rendered by its DDL type: text as a JSON string, `NUMERIC`
//! and `INTEGER` as the number's text (PostgreSQL prints both as exact decimals), `BOOLEAN`
//! `t`/`f` as `true`/`false`, `TIMESTAMP`/`DATE` as a string (`YYYY-MM-DD HH:MM:SS[.f]` is a
//! contract table time), `JSONB` as is, `TEXT[]` parsed from the array literal. A value that
//! cannot be rendered (`NaN`, a nested array) becomes a JSON string, so `parse_row` rejects it as
//! `bad_type` under the table's source. Columns outside the contract's DDL are ignored.
//!
//! A column of the DDL that an UPDATE leaves out is an unchanged TOASTed value (REPLICA IDENTITY
//! DEFAULT sends `u` for it, and pg_walstream drops it from the row). [`RawChange::resolve`]
//! takes it from the current row: the columns shopdiff keeps come from that row, the other
//! `NOT NULL` columns were validated when the row was first seen and get a placeholder of their
//! type. Without a current row the column stays missing (`missing_field`).

use pg_walstream::{ColumnValue, RowData};
use serde_json::value::RawValue;
use shopdiff_schemas::json::{kind, Kind};
use shopdiff_schemas::money::format_cents;
use shopdiff_schemas::tables::{parse_row, Change, ChangeOp, ColType, Table, TableRow};
use shopdiff_schemas::time::{format_rfc3339, Ms};
use shopdiff_schemas::{Reason, Rejection, Str};

/// One upstream row change, before it is resolved against the current rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChange {
    pub table: Table,
    pub op: RawOp,
}

/// What a [`RawChange`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawOp {
    /// An INSERT or UPDATE: the contract's columns it carried as a JSON object, its key (when
    /// the key column is a non-null string) and the columns left out (unchanged TOAST values).
    Upsert {
        json: String,
        key: Option<Str>,
        unchanged: Vec<&'static str>,
    },
    /// A DELETE (or the old key of an UPDATE that changed the key).
    Delete(Result<Str, Rejection>),
    /// TRUNCATE: every row of the table goes.
    Truncate,
}

impl RawChange {
    /// The primary key this change is about (`None` for a truncate or an unreadable key).
    pub fn key(&self) -> Option<&Str> {
        match &self.op {
            RawOp::Upsert { key, .. } => key.as_ref(),
            RawOp::Delete(Ok(k)) => Some(k),
            _ => None,
        }
    }

    /// Validates the change, filling unchanged TOASTed columns from `current` (the table's
    /// current row with this key). `None` for a truncate, which the caller applies itself.
    pub fn resolve(&self, current: Option<&TableRow>, at: Ms) -> Option<Change> {
        let op = match &self.op {
            RawOp::Truncate => return None,
            RawOp::Delete(k) => k.clone().map(ChangeOp::Delete),
            RawOp::Upsert {
                json, unchanged, ..
            } => {
                let text = match (unchanged.is_empty(), current) {
                    (true, _) | (false, None) => json.clone(),
                    (false, Some(cur)) => fill_unchanged(json, self.table, unchanged, cur),
                };
                parse_row(self.table, &text).map(ChangeOp::Upsert)
            }
        };
        Some(Change {
            table: self.table,
            at,
            op,
        })
    }
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn is_json_number(s: &str) -> bool {
    serde_json::from_str::<&RawValue>(s).is_ok_and(|r| kind(r) == Kind::Number)
}

/// Renders one text value of a column of type `t` as JSON.
pub(crate) fn render(t: ColType, text: &str) -> String {
    match t {
        ColType::Text | ColType::Timestamp => quote(text),
        ColType::Decimal | ColType::Integer => {
            if is_json_number(text) {
                text.to_string()
            } else {
                quote(text)
            }
        }
        ColType::Boolean => match text {
            "t" | "true" => "true".into(),
            "f" | "false" => "false".into(),
            other => quote(other),
        },
        ColType::Jsonb => {
            if serde_json::from_str::<&RawValue>(text).is_ok() {
                text.to_string()
            } else {
                quote(text)
            }
        }
        ColType::TextArray => parse_array(text).unwrap_or_else(|| quote(text)),
    }
}

/// A one-dimensional PostgreSQL array literal (`{a,"b c",NULL}`) as a JSON array; `None` for
/// anything else (nested arrays, dimension decorations).
pub(crate) fn parse_array(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if b.first() != Some(&b'{') || b.last() != Some(&b'}') {
        return None;
    }
    let inner = &text[1..text.len() - 1];
    let mut out = String::from("[");
    if inner.is_empty() {
        out.push(']');
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    let mut first = true;
    loop {
        if !first {
            out.push(',');
        }
        first = false;
        let mut elem = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => elem.push(chars.next()?),
                    '"' => break,
                    c => elem.push(c),
                }
            }
            out.push_str(&quote(&elem));
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '}' || c == '"' {
                    return None;
                }
                elem.push(c);
                chars.next();
            }
            let elem = elem.trim();
            if elem.eq_ignore_ascii_case("NULL") {
                out.push_str("null");
            } else {
                out.push_str(&quote(elem));
            }
        }
        match chars.next() {
            None => break,
            Some(',') => continue,
            Some(_) => return None,
        }
    }
    out.push(']');
    Some(out)
}

/// The contract's columns of `row` as a JSON object, and the DDL columns absent from it.
pub(crate) fn row_json(table: Table, row: &RowData) -> (String, Option<Str>, Vec<&'static str>) {
    let mut out = String::from("{");
    let mut absent = Vec::new();
    let mut key = None;
    let mut first = true;
    for (name, t, _) in table.columns() {
        let Some(v) = row.get(name) else {
            absent.push(*name);
            continue;
        };
        let rendered = match v {
            ColumnValue::Null => "null".to_string(),
            ColumnValue::Text(_) | ColumnValue::Binary(_) => match v.as_str() {
                Some(s) => {
                    if *name == table.key_column() {
                        key = Some(Str::from(s));
                    }
                    render(*t, s)
                }
                // not UTF-8: a wrong type for every column kind
                None => "{}".to_string(),
            },
        };
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&quote(name));
        out.push(':');
        out.push_str(&rendered);
    }
    out.push('}');
    (out, key, absent)
}

/// The key of a DELETE's old tuple (or an UPDATE's old key).
pub(crate) fn row_key(table: Table, row: &RowData) -> Result<Str, Rejection> {
    let col = table.key_column();
    match row.get(col) {
        None | Some(ColumnValue::Null) => Err(Rejection::new(Reason::MissingField, col)),
        Some(v) => v
            .as_str()
            .map(Str::from)
            .ok_or(Rejection::new(Reason::BadType, col)),
    }
}

/// An INSERT or UPDATE's new tuple as a [`RawChange`]. For an INSERT nothing is unchanged: an
/// absent column is simply missing.
pub(crate) fn upsert(table: Table, row: &RowData, is_update: bool) -> RawChange {
    let (json, key, absent) = row_json(table, row);
    // Only a NOT NULL column or one shopdiff keeps matters; a nullable column the upstream
    // table lacks is simply null.
    let unchanged = if is_update {
        absent
            .into_iter()
            .filter(|c| {
                table
                    .columns()
                    .iter()
                    .any(|(n, _, not_null)| n == c && *not_null)
                    || kept_columns(table).contains(c)
            })
            .collect()
    } else {
        Vec::new()
    };
    RawChange {
        table,
        op: RawOp::Upsert {
            json,
            key,
            unchanged,
        },
    }
}

/// The columns a view uses, besides the key.
pub(crate) fn kept_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::Products => &["cost", "inventory_count"],
        Table::Customers => &["registration_date"],
        Table::IpReputation => &["risk_score", "is_tor"],
    }
}

/// The JSON value of a kept column of `cur`, or a placeholder of the column's type.
fn value_from(cur: &TableRow, col: &str, t: ColType) -> String {
    match (cur, col) {
        (TableRow::Product(p), "cost") => format_cents(p.cost),
        (TableRow::Product(p), "inventory_count") => p.inventory_count.to_string(),
        (TableRow::Customer(c), "registration_date") => quote(&format_rfc3339(c.registration_date)),
        (TableRow::Ip(i), "risk_score") => match i.risk {
            Some(r) => {
                let sign = if r < 0 { "-" } else { "" };
                let a = r.unsigned_abs();
                format!("{sign}{}.{:06}", a / 1_000_000, a % 1_000_000)
            }
            None => "null".into(),
        },
        (TableRow::Ip(i), "is_tor") => i.is_tor.to_string(),
        _ => match t {
            ColType::Text => "\"\"".into(),
            ColType::Decimal | ColType::Integer => "0".into(),
            ColType::Boolean => "false".into(),
            ColType::TextArray => "[]".into(),
            ColType::Jsonb => "null".into(),
            ColType::Timestamp => "\"1970-01-01\"".into(),
        },
    }
}

/// `json` (an object) with the `unchanged` columns added from `cur`.
fn fill_unchanged(json: &str, table: Table, unchanged: &[&'static str], cur: &TableRow) -> String {
    let mut out = json.trim_end_matches('}').to_string();
    let mut empty = out.trim_end() == "{";
    for col in unchanged {
        let Some((_, t, _)) = table.columns().iter().find(|(n, _, _)| n == col) else {
            continue;
        };
        if !empty {
            out.push(',');
        }
        empty = false;
        out.push_str(&quote(col));
        out.push(':');
        out.push_str(&value_from(cur, col, *t));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopdiff_schemas::tables::{Customer, IpRep, Product};

    fn row(pairs: &[(&str, Option<&str>)]) -> RowData {
        RowData::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (*k, v.map_or(ColumnValue::Null, ColumnValue::text)))
                .collect(),
        )
    }

    #[test]
    fn arrays() {
        assert_eq!(parse_array("{}").as_deref(), Some("[]"));
        assert_eq!(
            parse_array(r#"{gift,"a b","q\"x",NULL}"#).as_deref(),
            Some(r#"["gift","a b","q\"x",null]"#)
        );
        assert_eq!(parse_array("{{a},{b}}"), None);
        assert_eq!(parse_array("x"), None);
    }

    #[test]
    fn values_by_type() {
        assert_eq!(render(ColType::Decimal, "24.390"), "24.390");
        assert_eq!(render(ColType::Decimal, "NaN"), "\"NaN\"");
        assert_eq!(render(ColType::Boolean, "t"), "true");
        assert_eq!(
            render(ColType::Timestamp, "2024-07-01 01:02:03.5"),
            "\"2024-07-01 01:02:03.5\""
        );
        assert_eq!(render(ColType::Jsonb, r#"{"a": 1}"#), r#"{"a": 1}"#);
    }

    #[test]
    fn a_full_products_row_validates_like_a_file_row() {
        let r = row(&[
            ("product_id", Some("P1")),
            ("name", Some("n")),
            ("category_id", Some("C")),
            ("category_name", Some("c")),
            ("brand", Some("b")),
            ("price", Some("10.00")),
            ("cost", Some("6.295")),
            ("inventory_count", Some("12")),
            ("tags", Some("{gift}")),
            ("created_at", Some("2023-09-16 01:32:43.124")),
            ("extra_upstream_column", Some("whatever")),
        ]);
        let c = upsert(Table::Products, &r, false);
        let ch = c.resolve(None, 0).expect("a change");
        assert_eq!(
            ch.op,
            Ok(ChangeOp::Upsert(TableRow::Product(Product {
                product_id: "P1".into(),
                cost: 630,
                inventory_count: 12,
            })))
        );
        // a wrong value is a rejection naming the column, never a panic
        let bad = row(&[("product_id", Some("P1")), ("name", None)]);
        let ch = upsert(Table::Products, &bad, false).resolve(None, 0);
        assert_eq!(
            ch.map(|c| c.op),
            Some(Err(Rejection::new(Reason::MissingField, "name")))
        );
    }

    #[test]
    fn unchanged_toast_columns_come_from_the_current_row() {
        // an UPDATE of a customer that left registration_date and email out
        let r = row(&[("user_id", Some("U1")), ("first_name", Some("x"))]);
        let c = upsert(Table::Customers, &r, true);
        let RawOp::Upsert { unchanged, .. } = &c.op else {
            panic!("an upsert")
        };
        assert_eq!(unchanged, &vec!["email", "registration_date"]);
        let cur = TableRow::Customer(Customer {
            user_id: "U1".into(),
            registration_date: 1_700_000_000_123,
        });
        let ch = c.resolve(Some(&cur), 0).expect("a change");
        assert_eq!(ch.op, Ok(ChangeOp::Upsert(cur)));
        // without a current row the column is missing
        assert_eq!(
            c.resolve(None, 0).map(|c| c.op),
            Some(Err(Rejection::new(Reason::MissingField, "email")))
        );
        let ip = TableRow::Ip(IpRep {
            ip_address: "1.2.3.4".into(),
            risk: Some(850_000),
            is_tor: true,
        });
        let r = row(&[
            ("ip_address", Some("1.2.3.4")),
            ("country_risk", Some("high")),
        ]);
        let ch = upsert(Table::IpReputation, &r, true).resolve(Some(&ip), 0);
        assert_eq!(ch.map(|c| c.op), Some(Ok(ChangeOp::Upsert(ip))));
    }
}
