//! JSON text of values, rows and column kinds, as the contract shows them.

use shopdiff_schemas::rows::{ColKind, Value, ViewDef};
use std::fmt::Write as _;

/// Writes a JSON string literal.
pub(super) fn push_str(o: &mut String, s: &str) {
    o.push_str(&serde_json::Value::from(s).to_string());
}

/// Writes a value as the contract's JSON shows it.
pub fn push_value(o: &mut String, v: &Value) {
    match v {
        Value::Null => o.push_str("null"),
        Value::Str(s) => push_str(o, s),
        Value::Int(i) => {
            let _ = write!(o, "{i}");
        }
        Value::Money(c) => {
            o.push('"');
            o.push_str(&shopdiff_schemas::money::format_cents(*c));
            o.push('"');
        }
        Value::Time(t) => {
            o.push('"');
            o.push_str(&shopdiff_schemas::time::format_rfc3339(*t));
            o.push('"');
        }
        Value::Ratio(v, p) => {
            // exact decimal text of the scaled integer: a JSON number
            let scale = 10i64.pow(*p);
            let (sign, a) = if *v < 0 { ("-", -v) } else { ("", *v) };
            if *p == 0 {
                let _ = write!(o, "{sign}{a}");
            } else {
                let _ = write!(o, "{sign}{}.{:0w$}", a / scale, a % scale, w = *p as usize);
            }
        }
        Value::Number(n) if n.is_finite() => {
            let _ = write!(o, "{n}");
        }
        Value::Number(_) => o.push_str("null"),
        Value::Bool(b) => {
            let _ = write!(o, "{b}");
        }
    }
}

/// Writes a row as an object of the given columns.
pub fn push_row(o: &mut String, cols: &[&str], values: &[Value]) {
    o.push('{');
    for (i, (c, v)) in cols.iter().zip(values).enumerate() {
        if i > 0 {
            o.push(',');
        }
        push_str(o, c);
        o.push(':');
        push_value(o, v);
    }
    o.push('}');
}

pub(super) fn column_names(def: &ViewDef) -> Vec<&'static str> {
    def.columns.iter().map(|c| c.name).collect()
}

pub(super) fn delta_names(def: &ViewDef) -> Vec<&'static str> {
    def.delta_columns()
        .into_iter()
        .map(|i| def.columns[i].name)
        .collect()
}

pub(super) fn kind_name(k: ColKind) -> String {
    match k {
        ColKind::String => "string".into(),
        ColKind::Integer => "integer".into(),
        ColKind::Money => "decimal(38,2)".into(),
        ColKind::Time => "timestamp".into(),
        ColKind::Ratio(p) => format!("ratio({p})"),
        ColKind::Number => "number".into(),
        ColKind::Boolean => "boolean".into(),
    }
}
