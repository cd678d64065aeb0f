//! Subscriptions: a snapshot, then updates and progress as server-sent events.

use super::params::{parse_select, parse_u64, Params};
use super::read::{not_ready, view_or_404};
use super::render::{column_names, delta_names, push_row, push_str};
use super::{error, AppState, Resp};
use crate::metrics::Metrics;
use crate::store::{Delta, Ended, Feed, KeyVal, SubscribeReq};
use futures::Stream;
use shopdiff_schemas::rows::Value;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::sse::Event;
use warp::Reply;

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
    /// Set whenever the client takes an event: the publisher drops a client that stopped.
    pulled: Arc<std::sync::atomic::AtomicU64>,
    ended: Arc<std::sync::Mutex<Option<Ended>>>,
    first: std::vec::IntoIter<Event>,
    names: Vec<&'static str>,
    filter: DeltaFilter,
    metrics: Arc<Metrics>,
    done: bool,
}

fn sse_stream(s: SubState) -> impl Stream<Item = Result<Event, Infallible>> + Send + Sync {
    futures::stream::unfold(s, |mut s| async move {
        // the connection asks for the next event: the client took the last one
        let took = || crate::store::now_ms();
        s.pulled.store(took(), std::sync::atomic::Ordering::Relaxed);
        if let Some(e) = s.first.next() {
            return Some((Ok(e), s));
        }
        if s.done {
            return None;
        }
        let next = s.rx.recv().await;
        s.pulled.store(took(), std::sync::atomic::Ordering::Relaxed);
        match next {
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
                    Some(Ended::Stuck(ms)) => {
                        s.metrics.sse_dropped();
                        format!("subscriber read nothing for {} s while events waited; resubscribe (with since=<last as_of> while it is held)", ms / 1000)
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

pub(super) fn subscribe(
    state: &AppState,
    name: &str,
    q: &Params,
    last_event_id: Option<String>,
) -> Resp {
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
        stuck_after: Some(state.subscriber_timeout),
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
        pulled: sub.pulled,
        ended: sub.ended,
        first: first.into_iter(),
        names,
        filter,
        metrics: state.metrics.clone(),
        done: false,
    };
    warp::sse::reply(warp::sse::keep_alive().stream(sse_stream(st))).into_response()
}
