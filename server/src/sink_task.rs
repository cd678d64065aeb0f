//! `shopdiff run --sink DIR_OR_S3_URL`: the stores' change feed into the continuous Parquet sink.
//!
//! A listener on [`Stores`] receives every advance (its `as_of` and each view's consolidated
//! changes) in order; a thread with its own tokio runtime pushes them to
//! [`ParquetSink`](shopdiff_connectors::sink::ParquetSink), takes the periodic snapshots from
//! the stores' history at exactly the advance's `as_of`, and compacts now and then.
//!
//! Exactly once across restarts: a restarted run recomputes the views from its sources, and the
//! sink ignores every `as_of` at or before its last committed one, `C`. The first advance after
//! `C` generally covers changes on both sides of `C`, so its delta is not pushed as is: it is
//! recomputed as `rows(A) - rows(C)` from the stores (whose history holds `C` as long as the
//! advance is within `--history-ms` of it; otherwise the sink stops with an error saying so,
//! rather than write a wrong delta).

use crate::store::{Advance, Select, Stores};
use shopdiff_connectors::sink::{ParquetSink, SinkConfig, ViewDelta};
use shopdiff_schemas::rows::{Value, ViewDef};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Advances buffered between the publisher and the sink (the publisher waits when full).
const QUEUE: usize = 64;

/// Puts a placeholder of the column's type where a view's `as_of`-dependent columns go (the
/// sink checks every column's type, then leaves these out of the files).
fn full_width(def: &ViewDef, delta: &[Value]) -> Vec<Value> {
    let mut it = delta.iter();
    def.columns
        .iter()
        .map(|c| {
            if c.as_of_dependent {
                placeholder(c.kind)
            } else {
                it.next().cloned().unwrap_or(Value::Null)
            }
        })
        .collect()
}

fn placeholder(kind: shopdiff_schemas::rows::ColKind) -> Value {
    use shopdiff_schemas::rows::ColKind;
    match kind {
        ColKind::String => Value::Str("".into()),
        ColKind::Integer => Value::Int(0),
        ColKind::Money => Value::Money(0),
        ColKind::Time => Value::Time(0),
        ColKind::Ratio(p) => Value::Ratio(0, p),
        ColKind::Number => Value::Number(0.0),
        ColKind::Boolean => Value::Bool(false),
    }
}

/// Drops the `as_of`-dependent columns of a full row.
fn delta_width(def: &ViewDef, full: Vec<Value>) -> Vec<Value> {
    full.into_iter()
        .zip(def.columns)
        .filter(|(_, c)| !c.as_of_dependent)
        .map(|(v, _)| v)
        .collect()
}

fn key(v: &[Value]) -> String {
    format!("{v:?}")
}

/// `rows(a) - rows(c)` of one view, as delta-width rows with diffs.
fn difference(
    stores: &Stores,
    def: &ViewDef,
    c: u64,
    a: u64,
) -> Result<Vec<(Vec<Value>, i64)>, String> {
    let g = stores.read();
    let current = g.as_of().ok_or("no as_of yet")?;
    let v = g
        .get(def.name)
        .ok_or_else(|| format!("no view {}", def.name))?;
    let at = |t: u64| {
        v.select(&Select::default(), t, current).ok_or_else(|| {
            format!(
                "view {}: as_of {t} is no longer in the history (raise --history-ms so a restarted sink can resume exactly)",
                def.name
            )
        })
    };
    let (old, new) = (at(c)?, at(a)?);
    let mut m: HashMap<String, (Vec<Value>, i64)> = HashMap::new();
    for (rows, d) in [(new.rows, 1i64), (old.rows, -1)] {
        for r in rows {
            let r = delta_width(def, r);
            m.entry(key(&r)).or_insert_with(|| (r, 0)).1 += d;
        }
    }
    Ok(m.into_values().filter(|(_, d)| *d != 0).collect())
}

/// The running sink: its thread and stop flag.
pub struct SinkTask {
    committed: Option<u64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl SinkTask {
    /// Opens the sink (an error here names the target) and starts following `stores`.
    pub fn start(
        cfg: SinkConfig,
        stores: Stores,
        health: Arc<crate::health::Health>,
    ) -> Result<SinkTask, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("sink runtime: {e}"))?;
        let target = cfg.target.clone();
        let sink = rt
            .block_on(ParquetSink::open(cfg))
            .map_err(|e| format!("sink {target}: {e}"))?;
        let committed = sink.committed_as_of();
        let rx = stores.listen(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                let part = crate::health::PartGuard::new(health.clone(), "sink");
                part.finish(rt.block_on(follow(sink, rx, stores, flag, &health)))
            })
            .map_err(|e| format!("cannot start the sink thread: {e}"))?;
        Ok(SinkTask {
            committed,
            stop,
            handle: Some(handle),
        })
    }

    /// The `as_of` the sink had committed when it opened (it resumes after it).
    pub fn committed_as_of(&self) -> Option<u64> {
        self.committed
    }

    /// Writes what is buffered and stops.
    pub fn stop(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the sink thread panicked".into()),
            None => Ok(()),
        }
    }
}

impl Drop for SinkTask {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

async fn push_advance(
    sink: &mut ParquetSink,
    stores: &Stores,
    adv: &Advance,
    resume_from: &mut Option<u64>,
) -> Result<(), String> {
    let committed = sink.committed_as_of();
    if committed.is_some_and(|c| adv.as_of <= c) {
        return Ok(());
    }
    let deltas: Vec<ViewDelta> = match resume_from.take() {
        // the first advance after a restart's committed as_of: rows(as_of) - rows(committed)
        Some(c) => {
            let mut out = Vec::new();
            for (def, _) in &adv.views {
                let diffs = difference(stores, def, c, adv.as_of)?
                    .into_iter()
                    .map(|(r, d)| (full_width(def, &r), d))
                    .collect();
                out.push(ViewDelta { view: *def, diffs });
            }
            out
        }
        None => adv
            .views
            .iter()
            .map(|(def, diffs)| ViewDelta {
                view: *def,
                diffs: diffs
                    .iter()
                    .map(|(r, d)| (full_width(def, r), *d as i64))
                    .collect(),
            })
            .collect(),
    };
    sink.push(adv.as_of, deltas)
        .await
        .map_err(|e| e.to_string())?;
    if sink.snapshot_due(adv.as_of) {
        for (def, _) in &adv.views {
            let rows = {
                let g = stores.read();
                let current = g.as_of().unwrap_or(adv.as_of);
                g.get(def.name)
                    .and_then(|v| v.select(&Select::default(), adv.as_of, current))
                    .map(|a| a.rows)
            };
            if let Some(rows) = rows {
                sink.snapshot(adv.as_of, *def, rows)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

async fn follow(
    mut sink: ParquetSink,
    rx: crossbeam_channel::Receiver<Arc<Advance>>,
    stores: Stores,
    stop: Arc<AtomicBool>,
    health: &crate::health::Health,
) -> Result<(), String> {
    let mut resume_from = sink.committed_as_of();
    let mut failures = 0u32;
    let mut since_compaction = 0usize;
    loop {
        let adv = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(a) => a,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        // a failed write stays buffered in the sink and is retried with the next push
        match push_advance(&mut sink, &stores, &adv, &mut resume_from).await {
            Err(e) if e.contains("history") || e.contains("fails for good") => return Err(e),
            Err(e) => {
                failures += 1;
                tracing::error!("sink: {e} (kept buffered; retried with the next as_of)");
                health.set(
                    "sink",
                    crate::health::PartState::Retrying {
                        error: e,
                        attempt: failures,
                    },
                );
            }
            Ok(()) if failures > 0 && !sink.backing_off() => {
                failures = 0;
                health.set("sink", crate::health::PartState::Running);
            }
            Ok(()) => {}
        }
        since_compaction += 1;
        if since_compaction >= 10_000 {
            since_compaction = 0;
            if let Err(e) = sink.compact().await {
                tracing::warn!("sink compaction: {e}");
            }
        }
    }
    sink.flush().await.map_err(|e| format!("sink flush: {e}"))
}
