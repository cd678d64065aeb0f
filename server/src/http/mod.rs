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

mod params;
mod read;
mod render;
mod routes;
mod sse;
mod tls;

pub use render::{push_row, push_value};
pub use routes::{routes, serve};
pub use tls::{serve_tls, tls_acceptor, TlsFiles};

use crate::auth::Auth;
use crate::metrics::Metrics;
use crate::store::Stores;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::Reply;

/// The dashboard page, embedded in the binary.
pub const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");

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
    /// A subscriber that takes no event for this long while events wait for it is dropped.
    pub subscriber_timeout: std::time::Duration,
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
    /// of at most 10 s, two at once, any `Host`, subscribers dropped after 30 s unread.
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
            subscriber_timeout: std::time::Duration::from_secs(30),
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
