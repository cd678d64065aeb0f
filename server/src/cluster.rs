//! A multi-process cluster: where a process sits in it, how view changes reach every
//! process, and how a process notices that another one died.
//!
//! Timely runs the cluster (its own TCP exchange between processes, `-n/-p/-h` under the
//! names `--processes/--process/--hostfile`). Every process builds the same dataflow and holds
//! a shard of every arrangement. Process 0 reads the sources (the contract's de-duplication
//! and lateness are defined on one arrival order, so one sequencer orders them) and its
//! workers insert the records, which the views' operators exchange by key over every worker
//! of every process; the other processes close their inputs so they never hold the frontier
//! back. Every view's output changes go to the first worker of *every* process
//! ([`to_every_process`]), so each process's stores hold every view whole and answer any
//! read or subscription alone, at the cluster's one `as_of`.

use crate::store::Stores;
use shopdiff_dataflows::common::Coll;

/// A process of a multi-process cluster: its index and every process's `host:port` (timely's
/// hostfile, the same file on every process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This process's index, from 0.
    pub process: usize,
    /// The `host:port` each process listens on for the others, by index.
    pub addresses: Vec<String>,
}

impl ClusterConfig {
    /// Reads a hostfile (one `host:port` per line by process index; blank lines and `#`
    /// comments are skipped) for process `process` of `processes` (`None`: as many as lines).
    pub fn from_hostfile(
        path: &std::path::Path,
        process: usize,
        processes: Option<usize>,
    ) -> Result<ClusterConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the hostfile: {e}", path.display()))?;
        let mut addresses = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let l = line.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            if !l.contains(':') {
                return Err(format!(
                    "{}:{}: `{l}` is not host:port",
                    path.display(),
                    i + 1
                ));
            }
            addresses.push(l.to_string());
        }
        let n = processes.unwrap_or(addresses.len());
        if addresses.len() < n {
            return Err(format!(
                "{}: {} address(es) for {n} processes",
                path.display(),
                addresses.len()
            ));
        }
        addresses.truncate(n);
        Self::new(process, addresses)
    }

    /// `processes` processes on this machine, listening on consecutive ports from `base_port`.
    pub fn local(
        process: usize,
        processes: usize,
        base_port: u16,
    ) -> Result<ClusterConfig, String> {
        let addresses = (0..processes)
            .map(|i| format!("127.0.0.1:{}", base_port as usize + i))
            .collect();
        Self::new(process, addresses)
    }

    fn new(process: usize, addresses: Vec<String>) -> Result<ClusterConfig, String> {
        if addresses.is_empty() {
            return Err("a cluster needs at least one process".into());
        }
        if process >= addresses.len() {
            return Err(format!(
                "process index {process} is not below the number of processes {}",
                addresses.len()
            ));
        }
        Ok(ClusterConfig { process, addresses })
    }

    /// The number of processes.
    pub fn processes(&self) -> usize {
        self.addresses.len()
    }
}

/// Where this process's workers sit in the cluster.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub process: usize,
    pub processes: usize,
    pub threads: usize,
}

/// Sends every change of `c` to the first worker of every process (nothing to do in a single
/// process, where every worker writes to the process's stores itself).
pub(crate) fn to_every_process<'s, D: differential_dataflow::ExchangeData>(
    c: Coll<'s, D>,
    layout: Layout,
) -> Coll<'s, D> {
    use differential_dataflow::AsCollection;
    use timely::dataflow::operators::vec::Map;
    use timely::dataflow::operators::Exchange;
    if layout.processes <= 1 {
        return c;
    }
    let (processes, threads) = (layout.processes, layout.threads as u64);
    c.inner
        .flat_map(move |(d, t, r): (D, u64, isize)| {
            (0..processes).map(move |p| ((p as u64, d.clone()), t, r))
        })
        .exchange(move |((p, _), _, _)| *p * threads)
        .map(|((_, d), t, r)| (d, t, r))
        .as_collection()
}

/// The first panic message of this process, kept by the hook [`install_panic_hook`] installs:
/// when a process of the cluster dies, the others' communication threads panic first with
/// the cause ("timely communication error: ..."), then their workers.
static FIRST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            let thread = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_string();
            if let Ok(mut first) = FIRST_PANIC.lock() {
                first.get_or_insert(format!("{msg} (thread {thread})"));
            }
            previous(info);
        }));
    });
}

/// Marks the stores failed when a worker thread unwinds (a lost peer process, a bug).
pub(crate) struct FailOnPanic {
    pub stores: Stores,
    pub cluster: bool,
}

impl Drop for FailOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let first = FIRST_PANIC
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .unwrap_or_else(|| "a worker panicked".into());
            let why = if self.cluster && first.contains("timely communication error") {
                format!("a process of the cluster stopped or became unreachable ({first})")
            } else {
                format!("a worker stopped: {first}")
            };
            self.stores.fail(&why);
        }
    }
}

/// Starts the workers of a cluster process like `timely::execute`, counting the bytes this
/// process sends to the others (message headers included) into `sent` (timely's own
/// communication log: its send threads report every message they write).
pub(crate) fn execute_counting<F>(
    config: timely::Config,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    func: F,
) -> Result<timely::communication::WorkerGuards<()>, String>
where
    F: Fn(&mut timely::worker::Worker) + Send + Sync + 'static,
{
    use std::sync::atomic::Ordering;
    use timely::communication::logging::CommunicationEvent;
    let log_fn = std::sync::Arc::new(
        move |setup: timely::communication::logging::CommunicationSetup| {
            if !setup.sender {
                return None;
            }
            let sent = sent.clone();
            Some(timely::logging_core::Logger::new(
                std::time::Instant::now(),
                std::time::Duration::ZERO,
                move |_, events: &mut Option<Vec<(std::time::Duration, CommunicationEvent)>>| {
                    for (_, e) in events.iter().flatten() {
                        if let CommunicationEvent::Message(m) = e {
                            if m.is_send {
                                sent.fetch_add(m.header.required_bytes() as u64, Ordering::Relaxed);
                            }
                        }
                    }
                },
            ))
        },
    );
    let hooks = timely::communication::Hooks {
        log_fn,
        ..Default::default()
    };
    let (builders, others) = config.communication.try_build_with(hooks)?;
    timely::execute::execute_from(builders, others, config.worker, func)
}
