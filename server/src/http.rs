//! The query server (contract section 6): reads, multi-view queries, subscriptions (SSE),
//! metrics, health and the dashboard, over warp.
//!
//! Every answer comes from the [`Stores`] under their read lock, so it is at one `as_of`;
//! nothing recomputes a view. Routing is a single `GET` filter dispatching on the path, which
//! keeps the handlers plain functions that are easy to test and time.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/views` | every view's columns and key |
//! | `GET /v1/views/<view>` | `{"view","as_of","rows"}`; `key=`, `<column>=`, `order_by=`, `desc=`, `limit=`, `offset=`, `as_of=` |
//! | `GET /v1/query?views=a,b` | `{"as_of","views":{"a":{"rows"}}}` at one shared `as_of` |
//! | `GET /v1/views/<view>/subscribe` | SSE: `snapshot`, then `update` and `progress`; `since=`, `key=`, `<column>=` |
//! | `GET /metrics`, `/health`, `/ready`, `/` | Prometheus text, liveness, readiness, dashboard |

use crate::auth::{Auth, Denied};
use crate::metrics::Metrics;
use crate::store::{AnyView, Delta, Ended, Feed, KeyVal, ReadError, Select, Stores, SubscribeReq};
use futures::Stream;
use shopdiff_schemas::rows::{ColKind, Value, ViewDef};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;
use warp::http::StatusCode;
use warp::sse::Event;
use warp::{Filter, Reply};

/// The dashboard page, embedded in the binary.
pub const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");

/// Everything a request handler needs.
pub struct AppState {
    pub stores: Stores,
    /// The job's parts (source, sink, alerts): one that failed turns `/health` to 503.
    pub health: Arc<crate::health::Health>,
    pub metrics: Arc<Metrics>,
    pub auth: Auth,
    /// Events buffered per subscriber before it is disconnected as too slow.
    pub subscriber_buffer: usize,
    /// Live subscriptions at most (over every view); more are refused with 503.
    pub max_subscribers: usize,
    /// A read (view, query, subscription snapshot, metrics) waits for a reader slot and runs
    /// within this long, or answers 503 with `Retry-After`.
    pub read_timeout: std::time::Duration,
    /// Reads run on the blocking pool, this many at once, so that they never hold the
    /// reactor that serves `/health`, SSE and the other clients.
    pub readers: Arc<tokio::sync::Semaphore>,
    /// Bound to a loopback address: only loopback names in `Host` are served (a page on
    /// another site cannot reach the server through DNS rebinding).
    pub loopback_hosts: bool,
}

impl AppState {
    /// A state with the default limits: 1,024 events per subscriber, 256 subscribers, reads
    /// of at most 10 s, two at once, any `Host`.
    pub fn new(
        stores: Stores,
        metrics: Arc<Metrics>,
        health: Arc<crate::health::Health>,
        auth: Auth,
    ) -> AppState {
        AppState {
            stores,
            health,
            metrics,
            auth,
            subscriber_buffer: 1024,
            max_subscribers: 256,
            read_timeout: std::time::Duration::from_secs(10),
            readers: Arc::new(tokio::sync::Semaphore::new(DEFAULT_READERS)),
            loopback_hosts: false,
        }
    }
}

/// Reads served at once by default (the machine's cores are the engine's first).
pub const DEFAULT_READERS: usize = 2;

/// Whether `host` (a `Host` header: name, optional port) names this machine's loopback.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The longest request target (path and query) served; longer ones get 414.
pub const MAX_URL_BYTES: usize = 8192;
/// The most query parameters a request may carry; more get 400.
pub const MAX_PARAMS: usize = 64;

type Resp = warp::reply::Response;

fn json_resp(status: StatusCode, body: String) -> Resp {
    let mut r = warp::reply::with_status(body, status).into_response();
    r.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: &str) -> Resp {
    json_resp(
        status,
        format!("{{\"error\":{}}}", serde_json::Value::from(msg)),
    )
}

/// Writes a JSON string literal.
fn push_str(o: &mut String, s: &str) {
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

fn column_names(def: &ViewDef) -> Vec<&'static str> {
    def.columns.iter().map(|c| c.name).collect()
}

fn delta_names(def: &ViewDef) -> Vec<&'static str> {
    def.delta_columns()
        .into_iter()
        .map(|i| def.columns[i].name)
        .collect()
}

fn kind_name(k: ColKind) -> String {
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

/// Query parameters in order (a parameter may repeat).
type Params = Vec<(String, String)>;

fn param<'a>(q: &'a Params, name: &str) -> Option<&'a str> {
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

fn parse_u64(q: &Params, name: &str) -> Result<Option<u64>, String> {
    match param(q, name) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{name}={v}: not a non-negative integer")),
    }
}

/// Parses a read's selection; `deltas` maps filters onto delta columns (subscriptions).
fn parse_select(def: &ViewDef, q: &Params, deltas: bool) -> Result<Select, String> {
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

fn token<'a>(q: &'a Params, header: &'a Option<String>) -> Option<&'a str> {
    if let Some(h) = header {
        if let Some(t) = h.strip_prefix("Bearer ") {
            return Some(t.trim());
        }
    }
    param(q, "access_token")
}

fn denied(d: Denied) -> Resp {
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
fn view_or_404<'a>(stores: &'a Stores, name: &str) -> Result<&'a Arc<dyn AnyView>, Resp> {
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
fn not_ready(stores: &Stores) -> String {
    match stores.note() {
        Some(n) => format!("no as_of is complete yet ({n}); retry shortly (see /ready)"),
        None => "no as_of is complete yet; retry shortly (see /ready)".into(),
    }
}

/// `/health` and `/ready` once a part of the job failed: 503 naming the part, so that a
/// supervisor sees a stopped source or sink at once rather than a frozen `as_of`.
fn part_down(part: &str, why: &str) -> Resp {
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
fn status(state: &AppState) -> Resp {
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
fn health(stores: &Stores) -> Resp {
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

fn list_views(stores: &Stores) -> Resp {
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

fn read_view(state: &AppState, name: &str, q: &Params, deadline: Instant) -> Resp {
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
fn busy(msg: &str) -> Resp {
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

fn query_views(state: &AppState, q: &Params, tok: Option<&str>, deadline: Instant) -> Resp {
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

/// A subscription's per-subscriber filter on delta rows.
#[derive(Clone)]
struct DeltaFilter {
    key: Option<Vec<KeyVal>>,
    key_len: usize,
    filters: Vec<(usize, String)>,
}

impl DeltaFilter {
    fn keep(&self, row: &[Value]) -> bool {
        let key_ok = self.key.as_ref().is_none_or(|k| {
            row[..self.key_len]
                .iter()
                .map(KeyVal::of)
                .eq(k.iter().cloned())
        });
        key_ok
            && self.filters.iter().all(|(i, want)| {
                let v = &row[*i];
                crate::store::filter_text(v) == *want
                    || matches!((v.as_f64(), want.parse::<f64>()), (Some(a), Ok(b)) if a == b)
            })
    }
}

fn update_event(names: &[&str], d: &Delta, f: &DeltaFilter) -> Event {
    let mut o = String::new();
    let _ = write!(o, "{{\"as_of\":{},\"diffs\":[", d.as_of);
    let mut first = true;
    for (row, diff) in d.diffs.iter() {
        if !f.keep(row) {
            continue;
        }
        let one = if *diff > 0 { 1 } else { -1 };
        for _ in 0..diff.unsigned_abs() {
            if !first {
                o.push(',');
            }
            first = false;
            o.push_str("{\"row\":");
            push_row(&mut o, names, row);
            let _ = write!(o, ",\"diff\":{one}}}");
        }
    }
    o.push_str("]}");
    if first {
        return progress_event(d.as_of);
    }
    Event::default()
        .event("update")
        .id(d.as_of.to_string())
        .data(o)
}

fn progress_event(as_of: u64) -> Event {
    Event::default()
        .event("progress")
        .id(as_of.to_string())
        .data(format!("{{\"as_of\":{as_of}}}"))
}

struct SubState {
    rx: tokio::sync::mpsc::Receiver<Feed>,
    ended: Arc<std::sync::Mutex<Option<Ended>>>,
    first: std::vec::IntoIter<Event>,
    names: Vec<&'static str>,
    filter: DeltaFilter,
    metrics: Arc<Metrics>,
    done: bool,
}

fn sse_stream(s: SubState) -> impl Stream<Item = Result<Event, Infallible>> + Send + Sync {
    futures::stream::unfold(s, |mut s| async move {
        if let Some(e) = s.first.next() {
            return Some((Ok(e), s));
        }
        if s.done {
            return None;
        }
        match s.rx.recv().await {
            // a large delta is encoded off the reactor, which serves `/health` and the other
            // streams meanwhile
            Some(Feed::Update(d)) if d.diffs.len() > 256 => {
                let (names, filter) = (s.names.clone(), s.filter.clone());
                match tokio::task::spawn_blocking(move || update_event(&names, &d, &filter)).await {
                    Ok(e) => Some((Ok(e), s)),
                    Err(e) => {
                        s.done = true;
                        let data = format!(
                            "{{\"reason\":{}}}",
                            serde_json::Value::from(format!("encoding an update failed: {e}"))
                        );
                        Some((Ok(Event::default().event("error").data(data)), s))
                    }
                }
            }
            Some(Feed::Update(d)) => {
                let e = update_event(&s.names, &d, &s.filter);
                Some((Ok(e), s))
            }
            Some(Feed::Progress(t)) => Some((Ok(progress_event(t)), s)),
            None => {
                s.done = true;
                let why = s.ended.lock().map(|g| g.clone()).unwrap_or(None);
                let reason = match why {
                    Some(Ended::Behind(n)) => {
                        s.metrics.sse_dropped();
                        format!("subscriber fell behind: {n} events were buffered and unread; resubscribe (with since=<last as_of> while it is held)")
                    }
                    Some(Ended::Failed(why)) => {
                        format!("{why}; resubscribe once it is back (with since=<last as_of>)")
                    }
                    Some(Ended::Shutdown) | None => "the server is shutting down".into(),
                };
                let data = format!("{{\"reason\":{}}}", serde_json::Value::from(reason));
                Some((Ok(Event::default().event("error").data(data)), s))
            }
        }
    })
}

fn subscribe(state: &AppState, name: &str, q: &Params, last_event_id: Option<String>) -> Resp {
    let view = match view_or_404(&state.stores, name) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let def = view.def();
    let sel = match parse_select(&def, q, true) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    if sel.order_by.is_some() || sel.limit.is_some() || sel.offset > 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "order_by, limit and offset do not apply to subscriptions",
        );
    }
    let since = match parse_u64(q, "since") {
        Ok(s) => s.or_else(|| last_event_id.and_then(|v| v.parse().ok())),
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let guard = state.stores.read();
    let Some(current) = guard.as_of() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, &not_ready(&state.stores));
    };
    if let Some(s) = since.filter(|s| *s > current) {
        // a client resuming after a restart can be ahead of the rebuilt views for a while
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("since={s} is after the current as_of {current} (the views are still catching up, e.g. after a restart); retry shortly with the same since"),
        );
    }
    let live: usize = state.stores.iter().map(|v| v.subscribers()).sum();
    if live >= state.max_subscribers {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "{live} subscriptions are open, the most this server takes (--max-subscribers {}); retry later",
                state.max_subscribers
            ),
        );
        r.headers_mut()
            .insert("retry-after", warp::http::HeaderValue::from_static("5"));
        return r;
    }
    let req = SubscribeReq {
        since,
        capacity: state.subscriber_buffer,
    };
    let Some(sub) = view.subscribe(req, current) else {
        return error(
            StatusCode::GONE,
            &format!(
                "since={} is older than the history held for view {name}; subscribe again without since",
                since.unwrap_or(0)
            ),
        );
    };
    drop(guard);
    let filter = DeltaFilter {
        key: sel.key.clone(),
        key_len: def.key_len,
        filters: sel.filters.clone(),
    };
    let names = delta_names(&def);
    let mut first = Vec::new();
    if let Some((as_of, rows)) = sub.snapshot {
        // the snapshot is a read at as_of: all columns, the read filters apply
        let read_sel = match parse_select(&def, q, false) {
            Ok(s) => s,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e),
        };
        let all = column_names(&def);
        let mut o = String::new();
        o.push_str("{\"view\":");
        push_str(&mut o, name);
        let _ = write!(o, ",\"as_of\":{as_of},\"rows\":[");
        let mut n = 0;
        for r in &rows {
            let key_ok = read_sel.key.as_ref().is_none_or(|k| {
                r[..def.key_len]
                    .iter()
                    .map(KeyVal::of)
                    .eq(k.iter().cloned())
            });
            let f_ok = read_sel.filters.iter().all(|(i, want)| {
                crate::store::filter_text(&r[*i]) == *want
                    || matches!((r[*i].as_f64(), want.parse::<f64>()), (Some(a), Ok(b)) if a == b)
            });
            if key_ok && f_ok {
                if n > 0 {
                    o.push(',');
                }
                n += 1;
                push_row(&mut o, &all, r);
            }
        }
        o.push_str("]}");
        first.push(
            Event::default()
                .event("snapshot")
                .id(as_of.to_string())
                .data(o),
        );
    }
    for d in &sub.backlog {
        first.push(update_event(&names, d, &filter));
    }
    if since.is_some() && sub.backlog.is_empty() {
        first.push(progress_event(current));
    }
    let st = SubState {
        rx: sub.rx,
        ended: sub.ended,
        first: first.into_iter(),
        names,
        filter,
        metrics: state.metrics.clone(),
        done: false,
    };
    warp::sse::reply(warp::sse::keep_alive().stream(sse_stream(st))).into_response()
}

fn text(status: StatusCode, ctype: &'static str, body: String) -> Resp {
    let mut r = warp::reply::with_status(body, status).into_response();
    r.headers_mut()
        .insert("content-type", warp::http::HeaderValue::from_static(ctype));
    r
}

/// Routes a `GET`; returns the response and the route label for metrics.
fn dispatch(
    state: &AppState,
    path: &str,
    q: &Params,
    auth_header: Option<String>,
    last_event_id: Option<String>,
    deadline: Instant,
) -> (&'static str, Resp) {
    let tok = token(q, &auth_header);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        [""] | ["index.html"] => (
            "dashboard",
            text(
                StatusCode::OK,
                "text/html; charset=utf-8",
                DASHBOARD_HTML.into(),
            ),
        ),
        ["health"] | ["ready"]
            if state.stores.failure().is_none() && state.health.failed().is_some() =>
        {
            let (part, why) = state.health.failed().unwrap_or_default();
            let route = if segs[0] == "health" {
                "health"
            } else {
                "ready"
            };
            (route, part_down(part, &why))
        }
        ["health"] => ("health", health(&state.stores)),
        ["ready"] if state.stores.failure().is_some() => ("ready", health(&state.stores)),
        ["v1", "status"] => match state.auth.check_any(tok) {
            Err(d) => ("status", denied(d)),
            Ok(()) => ("status", status(state)),
        },
        ["v1", "views", _] | ["v1", "views", _, "subscribe"] | ["v1", "query"]
            if state.stores.failure().is_some() =>
        {
            ("down", health(&state.stores))
        }
        ["ready"] => match state.stores.as_of() {
            Some(a) => (
                "ready",
                json_resp(StatusCode::OK, format!("{{\"ready\":true,\"as_of\":{a}}}")),
            ),
            None => (
                "ready",
                json_resp(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{{\"ready\":false,\"reason\":{}}}",
                        serde_json::Value::from(not_ready(&state.stores))
                    ),
                ),
            ),
        },
        ["metrics"] => match state.auth.check(tok, "metrics") {
            Err(d) => ("metrics", denied(d)),
            Ok(()) => (
                "metrics",
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    state.metrics.render(&state.stores, &state.health),
                ),
            ),
        },
        ["v1", "views"] => match state.auth.check_any(tok) {
            Err(d) => ("views", denied(d)),
            Ok(()) => ("views", list_views(&state.stores)),
        },
        ["v1", "views", name] => {
            if let Err(d) = state.auth.check(tok, name) {
                return ("view", denied(d));
            }
            ("view", read_view(state, name, q, deadline))
        }
        ["v1", "views", name, "subscribe"] => {
            if let Err(d) = state.auth.check(tok, name) {
                return ("subscribe", denied(d));
            }
            ("subscribe", subscribe(state, name, q, last_event_id))
        }
        ["v1", "query"] => match state.auth.check_any(tok) {
            Err(d) => ("query", denied(d)),
            Ok(()) => ("query", query_views(state, q, tok, deadline)),
        },
        _ => (
            "other",
            error(StatusCode::NOT_FOUND, &format!("no route {path}")),
        ),
    }
}

/// Every route of the server.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Resp,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let with_state = warp::any().map(move || state.clone());
    warp::get()
        .and(with_state)
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("last-event-id"))
        .and(warp::header::optional::<String>("host"))
        .then(
            |state: Arc<AppState>,
             path: warp::path::FullPath,
             raw: String,
             auth: Option<String>,
             last: Option<String>,
             host: Option<String>| async move {
                let start = Instant::now();
                let req = Request {
                    path: path.as_str().to_string(),
                    raw,
                    auth,
                    last,
                    host,
                };
                let (route, resp) = handle(state.clone(), req, start).await;
                state
                    .metrics
                    .request(route, resp.status().as_u16(), start.elapsed());
                resp
            },
        )
}

/// What a handler reads of a request.
struct Request {
    path: String,
    raw: String,
    auth: Option<String>,
    last: Option<String>,
    host: Option<String>,
}

/// Routes that answer from counters, never from a view's rows: served on the reactor.
fn is_cheap(path: &str) -> bool {
    matches!(
        path.trim_matches('/'),
        "" | "index.html" | "health" | "ready" | "v1/status" | "v1/views"
    )
}

/// The metrics label of a route that reads rows.
fn read_route(path: &str) -> &'static str {
    let p = path.trim_matches('/');
    if p == "metrics" {
        "metrics"
    } else if p == "v1/query" {
        "query"
    } else if p.ends_with("/subscribe") {
        "subscribe"
    } else if p.starts_with("v1/views/") {
        "view"
    } else {
        "other"
    }
}

async fn handle(state: Arc<AppState>, req: Request, start: Instant) -> (&'static str, Resp) {
    if let Some(h) = req.host.as_deref().filter(|_| state.loopback_hosts) {
        if !is_loopback_host(h) {
            return (
                "other",
                error(
                    StatusCode::FORBIDDEN,
                    &format!("Host {h} is not a loopback name and this server is bound to loopback; use localhost or 127.0.0.1"),
                ),
            );
        }
    }
    let size = req.path.len() + req.raw.len();
    if size > MAX_URL_BYTES {
        return (
            "other",
            error(
                StatusCode::URI_TOO_LONG,
                &format!("the request target is {size} bytes; at most {MAX_URL_BYTES}"),
            ),
        );
    }
    let q = match serde_urlencoded::from_str::<Params>(&req.raw) {
        Ok(q) if q.len() > MAX_PARAMS => {
            return (
                "other",
                error(
                    StatusCode::BAD_REQUEST,
                    &format!("{} query parameters; at most {MAX_PARAMS}", q.len()),
                ),
            )
        }
        Ok(q) => q,
        Err(e) => {
            return (
                "other",
                error(StatusCode::BAD_REQUEST, &format!("bad query string: {e}")),
            )
        }
    };
    let deadline = start + state.read_timeout;
    if is_cheap(&req.path) {
        return dispatch(&state, &req.path, &q, req.auth, req.last, deadline);
    }
    // a read waits for a reader slot until its deadline, then runs off the reactor; a key
    // lookup at the current `as_of` is one hash lookup and does not queue behind scans
    let route = read_route(&req.path);
    let lookup = route == "view" && param(&q, "key").is_some() && param(&q, "as_of").is_none();
    let permit = if lookup {
        None
    } else {
        let wait = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(wait, state.readers.clone().acquire_owned()).await {
            Ok(Ok(p)) => Some(p),
            _ => {
                state.metrics.read_deadline();
                return (
                    route,
                    busy(&format!(
                        "every reader is busy and this read waited {} ms; retry",
                        state.read_timeout.as_millis()
                    )),
                );
            }
        }
    };
    let st = state.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _slot = permit;
        dispatch(&st, &req.path, &q, req.auth, req.last, deadline)
    });
    match task.await {
        Ok(answer) => answer,
        Err(e) => (
            route,
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the read failed: {e}"),
            ),
        ),
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let r = routes(state).recover(|_rej: warp::Rejection| async move {
        Ok::<_, Infallible>(error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served"))
    });
    warp::serve(r)
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// Certificate and key files for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Loads a TLS server configuration, naming the file that is wrong.
pub fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("{}: cannot read certificates: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: bad certificate: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in the file",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: cannot read a private key: {e}", files.key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} and {}: certificate and key do not fit: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves HTTPS until `shutdown` resolves: TLS by rustls, HTTP/1.1 and 2 by hyper, routes by
/// warp (warp 0.4 has no TLS of its own).
pub async fn serve_tls(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let r = routes(state).recover(|_rej: warp::Rejection| async move {
        Ok::<_, Infallible>(error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served"))
    });
    let svc = warp::service(r);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
        };
        let (acceptor, svc) = (acceptor.clone(), svc.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    return;
                }
            };
            let io = hyper_util::rt::TokioIo::new(tls);
            let hyper_svc = hyper_util::service::TowerToHyperService::new(svc);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(io, hyper_svc)
                    .await;
        });
    }
}
