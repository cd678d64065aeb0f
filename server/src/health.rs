//! The state of each part of a running job (its source, sink, alert producer), so that a part
//! that stops is seen at once: `/health` answers 503 naming it, `/ready` is false,
//! `GET /v1/status` and `/metrics` say which part is in which state, and `run` exits with an
//! error unless told to keep serving (`--on-failure serve`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where one part is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartState {
    Starting,
    Running,
    /// A transient error: the part retries (attempt `attempt`).
    Retrying {
        error: String,
        attempt: u32,
    },
    /// Finished its work normally (a replay that reached the end of its files).
    Done,
    /// Stopped for good with this error.
    Failed {
        error: String,
    },
}

impl PartState {
    pub fn label(&self) -> &'static str {
        match self {
            PartState::Starting => "starting",
            PartState::Running => "running",
            PartState::Retrying { .. } => "retrying",
            PartState::Done => "done",
            PartState::Failed { .. } => "failed",
        }
    }

    /// Whether the part still does (or did) its job: not failed.
    pub fn up(&self) -> bool {
        !matches!(self, PartState::Failed { .. })
    }
}

/// What `--on-failure` does when a part fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop and exit with a non-zero code, so that a supervisor restarts the job.
    #[default]
    Exit,
    /// Keep serving the last `as_of` with `/health` 503 (for inspection).
    Serve,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: &'static str,
    state: PartState,
    since: Instant,
}

/// Every part's state, by name (`source`, `sink`, `alerts`).
#[derive(Debug, Default)]
pub struct Health {
    parts: Mutex<BTreeMap<&'static str, Entry>>,
}

/// A part as `/v1/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartStatus {
    pub part: &'static str,
    /// What the part is: `replay`, `kafka`, `generator`, `postgres`, `parquet`, ...
    pub kind: &'static str,
    pub state: PartState,
    pub for_s: u64,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Registers `part` (of kind `kind`) as starting.
    pub fn register(&self, part: &'static str, kind: &'static str) {
        self.lock().insert(
            part,
            Entry {
                kind,
                state: PartState::Starting,
                since: Instant::now(),
            },
        );
    }

    /// Moves `part` to `state` (a failed part stays failed).
    pub fn set(&self, part: &'static str, state: PartState) {
        let mut g = self.lock();
        let e = g.entry(part).or_insert_with(|| Entry {
            kind: "",
            state: PartState::Starting,
            since: Instant::now(),
        });
        if matches!(e.state, PartState::Failed { .. }) || e.state == state {
            return;
        }
        if let PartState::Failed { error } = &state {
            tracing::error!("{part} ({}) failed: {error}", e.kind);
        }
        e.state = state;
        e.since = Instant::now();
    }

    /// The first failed part and its error.
    pub fn failed(&self) -> Option<(&'static str, String)> {
        self.lock().iter().find_map(|(p, e)| match &e.state {
            PartState::Failed { error } => Some((*p, error.clone())),
            _ => None,
        })
    }

    pub fn parts(&self) -> Vec<PartStatus> {
        self.lock()
            .iter()
            .map(|(p, e)| PartStatus {
                part: p,
                kind: e.kind,
                state: e.state.clone(),
                for_s: e.since.elapsed().as_secs(),
            })
            .collect()
    }

    /// Waits up to `timeout` for a part to fail.
    pub fn wait_failed(&self, timeout: Duration) -> Option<(&'static str, String)> {
        let t0 = Instant::now();
        loop {
            if let Some(f) = self.failed() {
                return Some(f);
            }
            if t0.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Entry>> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks `part` failed when dropped before [`PartGuard::finish`]: a thread that panics or
/// returns early still says so.
pub struct PartGuard {
    health: Arc<Health>,
    part: &'static str,
    finished: bool,
}

impl PartGuard {
    pub fn new(health: Arc<Health>, part: &'static str) -> PartGuard {
        health.set(part, PartState::Running);
        PartGuard {
            health,
            part,
            finished: false,
        }
    }

    /// The part's work ended with `result` (`Ok`: done; `Err`: failed).
    pub fn finish<T>(mut self, result: Result<T, String>) -> Result<T, String> {
        self.finished = true;
        match &result {
            Ok(_) => self.health.set(self.part, PartState::Done),
            Err(e) => self
                .health
                .set(self.part, PartState::Failed { error: e.clone() }),
        }
        result
    }
}

impl Drop for PartGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.health.set(
                self.part,
                PartState::Failed {
                    error: "its thread panicked".into(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_part_stays_failed_and_is_named() {
        let h = Health::new();
        h.register("source", "replay");
        h.register("sink", "parquet");
        assert_eq!(h.failed(), None);
        let g = PartGuard::new(h.clone(), "sink");
        let r: Result<(), String> = g.finish(Err("disk full".into()));
        assert!(r.is_err());
        h.set("sink", PartState::Running);
        assert_eq!(h.failed(), Some(("sink", "disk full".to_string())));
        let parts = h.parts();
        assert_eq!(parts[0].part, "sink");
        assert_eq!(parts[0].state.label(), "failed");
        assert_eq!(parts[1].state, PartState::Starting);
    }

    #[test]
    fn a_thread_that_panics_marks_its_part_failed() {
        let h = Health::new();
        h.register("source", "generator");
        let h2 = h.clone();
        let _ = std::thread::spawn(move || {
            let _g = PartGuard::new(h2, "source");
            panic!("boom");
        })
        .join();
        let (part, why) = h.failed().expect("failed");
        assert_eq!(part, "source");
        assert!(why.contains("panicked"), "{why}");
    }
}
