//! The read handlers: views, multi-view queries, status, health and their errors.

use super::params::{param, parse_select, parse_u64, Params};
use super::render::{column_names, kind_name, push_row, push_str};
use super::{error, json_resp, AppState, Resp};
use crate::auth::Denied;
use crate::store::{AnyView, ReadError, Select, Stores};
use shopdiff_schemas::rows::{Value, ViewDef};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;
use warp::http::StatusCode;

pub(super) fn denied(d: Denied) -> Resp {
    match d {
        Denied::Missing => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (Authorization: Bearer <token>, or access_token=)",
            );
            r.headers_mut().insert(
                "www-authenticate",
                warp::http::HeaderValue::from_static("Bearer"),
            );
            r
        }
        Denied::Unknown => error(StatusCode::UNAUTHORIZED, "unknown token"),
        Denied::Scope(s) => error(
            StatusCode::FORBIDDEN,
            &format!("this token's scopes do not include {s}"),
        ),
    }
}

// the error is the HTTP answer itself, built once per failed request: no point boxing it
#[allow(clippy::result_large_err)]
pub(super) fn view_or_404<'a>(
    stores: &'a Stores,
    name: &str,
) -> Result<&'a Arc<dyn AnyView>, Resp> {
    stores.get(name).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            &format!(
                "no view named {name} (views: {})",
                stores
                    .iter()
                    .map(|v| v.def().name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// Why there is no `as_of` yet, for a 503.
pub(super) fn not_ready(stores: &Stores) -> String {
    match stores.note() {
        Some(n) => format!("no as_of is complete yet ({n}); retry shortly (see /ready)"),
        None => "no as_of is complete yet; retry shortly (see /ready)".into(),
    }
}

/// `/health` and `/ready` once a part of the job failed: 503 naming the part, so that a
/// supervisor sees a stopped source or sink at once rather than a frozen `as_of`.
pub(super) fn part_down(part: &str, why: &str) -> Resp {
    json_resp(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "{{\"status\":\"down\",\"ready\":false,\"part\":{},\"error\":{}}}",
            serde_json::Value::from(part),
            serde_json::Value::from(format!(
                "the {part} failed: {why}; the as_of no longer moves (see /v1/status)"
            ))
        ),
    )
}

/// `GET /v1/status`: every part's state, the engine's and the current `as_of`.
pub(super) fn status(state: &AppState) -> Resp {
    let parts: Vec<serde_json::Value> = state
        .health
        .parts()
        .into_iter()
        .map(|p| {
            let mut o = serde_json::json!({
                "part": p.part,
                "kind": p.kind,
                "state": p.state.label(),
                "for_s": p.for_s,
            });
            match &p.state {
                crate::health::PartState::Failed { error } => o["error"] = error.clone().into(),
                crate::health::PartState::Retrying { error, attempt } => {
                    o["error"] = error.clone().into();
                    o["attempt"] = (*attempt).into();
                }
                _ => {}
            }
            o
        })
        .collect();
    let body = serde_json::json!({
        "as_of": state.stores.as_of(),
        "engine": match state.stores.failure() {
            None => serde_json::json!({"state": "running"}),
            Some(why) => serde_json::json!({"state": "failed", "error": why}),
        },
        "parts": parts,
    });
    json_resp(StatusCode::OK, body.to_string())
}

/// `/health` (and every data route once the engine has failed): 200 while the engine runs,
/// 503 with the reason once it stopped (a process of the cluster died).
pub(super) fn health(stores: &Stores) -> Resp {
    match stores.failure() {
        None => json_resp(StatusCode::OK, "{\"status\":\"ok\"}".into()),
        Some(why) => json_resp(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{{\"status\":\"down\",\"error\":{}}}",
                serde_json::Value::from(format!(
                    "the engine stopped: {why}; no numbers are served until it is restarted (scripts/cluster.sh start)"
                ))
            ),
        ),
    }
}

/// Resolves `as_of=` against the current one.
#[allow(clippy::result_large_err)]
fn resolve_as_of(stores: &Stores, q: &Params, current: Option<u64>) -> Result<u64, Resp> {
    let Some(current) = current else {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, &not_ready(stores)));
    };
    match parse_u64(q, "as_of") {
        Err(e) => Err(error(StatusCode::BAD_REQUEST, &e)),
        Ok(None) => Ok(current),
        Ok(Some(t)) if t > current => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("as_of={t} is not complete yet (current as_of {current})"),
        )),
        // between two batches only the published as_ofs are exact: the answer says which
        Ok(Some(t)) => Ok(stores.snap_as_of(t)),
    }
}

fn gone(view: &str, as_of: u64) -> Resp {
    error(
        StatusCode::GONE,
        &format!("as_of={as_of} of view {view} is older than the history this server holds (see --history-ms)"),
    )
}

pub(super) fn list_views(stores: &Stores) -> Resp {
    let mut o = String::from("{\"views\":[");
    for (i, v) in stores.iter().enumerate() {
        let d = v.def();
        if i > 0 {
            o.push(',');
        }
        o.push_str("{\"name\":");
        push_str(&mut o, d.name);
        o.push_str(",\"key\":[");
        for (j, c) in d.key_columns().iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            push_str(&mut o, c.name);
        }
        o.push_str("],\"columns\":[");
        for (j, c) in d.columns.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            o.push_str("{\"name\":");
            push_str(&mut o, c.name);
            o.push_str(",\"type\":");
            push_str(&mut o, &kind_name(c.kind));
            let _ = write!(
                o,
                ",\"nullable\":{},\"in_deltas\":{}}}",
                c.nullable, !c.as_of_dependent
            );
        }
        o.push_str("]}");
    }
    o.push_str("]}");
    json_resp(StatusCode::OK, o)
}

pub(super) fn read_view(state: &AppState, name: &str, q: &Params, deadline: Instant) -> Resp {
    let view = match view_or_404(&state.stores, name) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let def = view.def();
    let mut sel = match parse_select(&def, q, false) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    sel.deadline = Some(deadline);
    let guard = state.stores.read();
    let current = guard.as_of();
    let as_of = match resolve_as_of(&state.stores, q, current) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let ans = match view.select_within(&sel, as_of, current.unwrap_or(as_of)) {
        Ok(a) => a,
        Err(e) => return read_failed(state, name, as_of, e),
    };
    drop(guard);
    let cols = column_names(&def);
    let mut o = String::with_capacity(64 + ans.rows.len() * 128);
    o.push_str("{\"view\":");
    push_str(&mut o, name);
    let _ = write!(o, ",\"as_of\":{as_of},\"total\":{}", ans.total);
    // keyset paging: more rows follow this page in key order
    let more = sel.offset.saturating_add(ans.rows.len()) < ans.total;
    if let (true, None, Some(_), Some(last)) = (more, sel.order_by, sel.limit, ans.rows.last()) {
        o.push_str(",\"next\":");
        push_str(&mut o, &key_text(&def, last));
    }
    o.push_str(",\"rows\":[");
    for (i, r) in ans.rows.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        push_row(&mut o, &cols, r);
    }
    o.push_str("]}");
    json_resp(StatusCode::OK, o)
}

/// A row's key as `key=` and `after=` take it: the key columns' values, comma-separated.
fn key_text(def: &ViewDef, row: &[Value]) -> String {
    row[..def.key_len]
        .iter()
        .map(crate::store::filter_text)
        .collect::<Vec<_>>()
        .join(",")
}

/// 503 with `Retry-After`: the server is too busy for this read now.
pub(super) fn busy(msg: &str) -> Resp {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, msg);
    r.headers_mut()
        .insert("retry-after", warp::http::HeaderValue::from_static("1"));
    r
}

fn read_failed(state: &AppState, view: &str, as_of: u64, e: ReadError) -> Resp {
    match e {
        ReadError::Gone => gone(view, as_of),
        ReadError::Deadline => {
            state.metrics.read_deadline();
            busy(&format!(
                "the read of {view} ran past its {} ms deadline; narrow it (key=, filters, limit=) or retry",
                state.read_timeout.as_millis()
            ))
        }
    }
}

pub(super) fn query_views(
    state: &AppState,
    q: &Params,
    tok: Option<&str>,
    deadline: Instant,
) -> Resp {
    let Some(list) = param(q, "views") else {
        return error(StatusCode::BAD_REQUEST, "views=<a>,<b>,... is required");
    };
    let names: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
    if names.is_empty() {
        return error(StatusCode::BAD_REQUEST, "views= names no view");
    }
    let mut views = Vec::new();
    for n in &names {
        match view_or_404(&state.stores, n) {
            Ok(v) => views.push(v),
            Err(r) => return r,
        }
        if let Err(d) = state.auth.check(tok, n) {
            return denied(d);
        }
    }
    for (k, _) in q {
        if !matches!(k.as_str(), "views" | "as_of" | "access_token" | "limit") {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unknown parameter `{k}` for /v1/query (views, as_of, limit)"),
            );
        }
    }
    let limit = match parse_u64(q, "limit") {
        Ok(l) => l.map(|v| v as usize),
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let guard = state.stores.read();
    let current = guard.as_of();
    let as_of = match resolve_as_of(&state.stores, q, current) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut answers = Vec::new();
    for v in &views {
        let sel = Select {
            limit,
            deadline: Some(deadline),
            ..Select::default()
        };
        match v.select_within(&sel, as_of, current.unwrap_or(as_of)) {
            Ok(a) => answers.push((v.def(), a)),
            Err(e) => return read_failed(state, v.def().name, as_of, e),
        }
    }
    drop(guard);
    let mut o = String::new();
    let _ = write!(o, "{{\"as_of\":{as_of},\"views\":{{");
    for (i, (def, a)) in answers.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        push_str(&mut o, def.name);
        let _ = write!(o, ":{{\"total\":{},\"rows\":[", a.total);
        let cols = column_names(def);
        for (j, r) in a.rows.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            push_row(&mut o, &cols, r);
        }
        o.push_str("]}");
    }
    o.push_str("}}");
    json_resp(StatusCode::OK, o)
}
