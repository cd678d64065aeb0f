//! Query parameters: selections, keys, numbers and the bearer token.

use super::render::column_names;
use crate::store::{KeyVal, Select};
use shopdiff_schemas::rows::ViewDef;

/// Query parameters in order (a parameter may repeat).
pub(super) type Params = Vec<(String, String)>;

pub(super) fn param<'a>(q: &'a Params, name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Parameters that are not column filters.
const RESERVED: &[&str] = &[
    "key",
    "order_by",
    "desc",
    "limit",
    "offset",
    "after",
    "as_of",
    "since",
    "access_token",
    "views",
];

fn parse_key(def: &ViewDef, text: &str) -> Result<Vec<KeyVal>, String> {
    let cols = def.key_columns();
    let parts: Vec<&str> = if cols.len() == 1 {
        vec![text]
    } else {
        text.split(',').collect()
    };
    if parts.len() != cols.len() {
        return Err(format!(
            "key= needs {} comma-separated values ({}) for view {}",
            cols.len(),
            cols.iter().map(|c| c.name).collect::<Vec<_>>().join(", "),
            def.name
        ));
    }
    cols.iter()
        .zip(parts)
        .map(|(c, p)| KeyVal::parse(c.kind, p).map_err(|e| format!("key column {}: {e}", c.name)))
        .collect()
}

pub(super) fn parse_u64(q: &Params, name: &str) -> Result<Option<u64>, String> {
    match param(q, name) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{name}={v}: not a non-negative integer")),
    }
}

/// Parses a read's selection; `deltas` maps filters onto delta columns (subscriptions).
pub(super) fn parse_select(def: &ViewDef, q: &Params, deltas: bool) -> Result<Select, String> {
    let mut sel = Select::default();
    if let Some(k) = param(q, "key") {
        sel.key = Some(parse_key(def, k)?);
    }
    let delta_cols = def.delta_columns();
    for (k, v) in q {
        if RESERVED.contains(&k.as_str()) {
            continue;
        }
        let Some((i, c)) = def.column(k) else {
            return Err(format!(
                "unknown parameter or column `{k}` for view {} (columns: {})",
                def.name,
                column_names(def).join(", ")
            ));
        };
        if deltas {
            if c.as_of_dependent {
                return Err(format!(
                    "column {k} is derived at read time and not in deltas; it cannot filter a subscription"
                ));
            }
            let j = delta_cols.iter().position(|x| *x == i).unwrap_or(i);
            sel.filters.push((j, v.clone()));
        } else {
            sel.filters.push((i, v.clone()));
        }
    }
    if let Some(o) = param(q, "order_by") {
        match def.column(o) {
            Some((i, _)) => sel.order_by = Some(i),
            None => {
                return Err(format!(
                    "order_by={o}: no such column in view {} (columns: {})",
                    def.name,
                    column_names(def).join(", ")
                ))
            }
        }
    }
    sel.desc = match param(q, "desc") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(v) => return Err(format!("desc={v}: use true or false")),
    };
    sel.limit = parse_u64(q, "limit")?.map(|v| v as usize);
    sel.offset = parse_u64(q, "offset")?.unwrap_or(0) as usize;
    if let Some(a) = param(q, "after") {
        if sel.order_by.is_some() {
            return Err("after= pages in key order; it cannot be combined with order_by".into());
        }
        sel.after = Some(parse_key(def, a)?);
    }
    Ok(sel)
}

pub(super) fn token<'a>(q: &'a Params, header: &'a Option<String>) -> Option<&'a str> {
    if let Some(h) = header {
        if let Some(t) = h.strip_prefix("Bearer ") {
            return Some(t.trim());
        }
    }
    param(q, "access_token")
}
