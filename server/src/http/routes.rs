//! Routing: one `GET` filter, the request checks, reader slots and plain HTTP serving.

use super::params::{param, token, Params};
use super::read::{
    busy, denied, health, list_views, not_ready, part_down, query_views, read_view, status,
};
use super::sse::subscribe;
use super::{
    error, is_loopback_host, json_resp, AppState, Resp, DASHBOARD_HTML, MAX_PARAMS, MAX_URL_BYTES,
};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use warp::http::StatusCode;
use warp::{Filter, Reply};

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
