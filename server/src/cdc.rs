//! Driving the engine's tables from PostgreSQL CDC (`shopdiff run --postgres URL`).
//!
//! [`CdcDriver`] owns the receiving end of a `connectors::postgres` source and the tables'
//! state. The caller keeps feeding the engine from its event source and lets the driver slip the
//! CDC changes in:
//!
//! * with an [`Ingest`] (live sources): [`CdcDriver::feed`] applies every CDC event received so
//!   far at the live tick (the next tick after the watermark; time 0 before any event, so the
//!   snapshot applies before every event), takes the batch, feeds it, and acknowledges;
//! * with batches made elsewhere (e.g. [`shopdiff_connectors::Replay::run`]'s):
//!   [`CdcDriver::merge`] adds the CDC updates to the batch at the previous batch's frontier
//!   (the watermark's tick when the batch began) before the caller feeds it.
//!
//! Each upstream transaction is applied at one tick. Its LSN is acknowledged upstream (the slot
//! may then drop its WAL) only once every view's `as_of` is at or past that tick
//! ([`CdcDriver::ack_completed`], called by `feed` and worth calling whenever time passes).
//!
//! ```ignore
//! let mut cdc = CdcDriver::start(CdcConfig::new(url))?;
//! cdc.wait_snapshot(Duration::from_secs(60))?;
//! let mut ingest = Ingest::new(time);
//! loop {
//!     // ... hand the event source's records to `ingest` ...
//!     cdc.feed(&engine, &mut ingest)?;
//! }
//! ```

use crate::runtime::Engine;
use crate::store::Stores;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use shopdiff_connectors::dead_letters::DeadLetters;
use shopdiff_connectors::files::FileError;
use shopdiff_connectors::postgres::{
    self, live_tick, AckHandle, CdcConfig, CdcError, CdcEvent, CdcTables,
};
use shopdiff_connectors::{Batch, Ingest, Replay, ReplayStats};
use shopdiff_schemas::Source;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The CDC side of an engine run.
pub struct CdcDriver {
    rx: Receiver<CdcEvent>,
    tables: CdcTables,
    /// Received, not yet applied.
    pending: VecDeque<CdcEvent>,
    /// Transactions and snapshots received so far.
    received: u64,
    /// The frontier of the last batch fed.
    last_frontier: u64,
    /// Source closed its channel (stopped or failed).
    closed: bool,
    /// The largest snapshot or commit LSN received (applied or pending).
    last_received_lsn: u64,
    /// Where rejected table rows go (`--dead-letters`), with their LSN as position.
    dead: DeadLetters,
}

/// The `as_of` every view has reached (`None` before the first): the stores fold all views
/// together, so this is their shared `as_of`.
pub fn completed_as_of(stores: &Stores) -> Option<u64> {
    stores.as_of()
}

impl CdcDriver {
    /// Starts a source (see [`postgres::start`]).
    pub fn start(cfg: CdcConfig) -> Result<CdcDriver, CdcError> {
        let (rx, ack) = postgres::start(cfg)?;
        Ok(CdcDriver::from_parts(rx, ack))
    }

    /// A driver over a source started elsewhere.
    pub fn from_parts(rx: Receiver<CdcEvent>, ack: AckHandle) -> CdcDriver {
        CdcDriver {
            rx,
            tables: CdcTables::new(ack),
            pending: VecDeque::new(),
            received: 0,
            last_frontier: 0,
            closed: false,
            last_received_lsn: 0,
            dead: DeadLetters::default(),
        }
    }

    /// Writes every table row rejected from now on to `dead` (origin `postgres`, position the
    /// LSN of its snapshot or transaction).
    pub fn set_dead_letters(&mut self, dead: DeadLetters) {
        self.tables.keep_dead_letters();
        self.dead = dead;
    }

    fn write_dead_letters(&mut self) {
        if !self.dead.is_open() {
            return;
        }
        let origin = std::path::Path::new("postgres");
        for r in self.tables.take_dead_letters() {
            let res = self
                .dead
                .write(r.table.source(), r.rejection, origin, r.lsn, &r.text);
            if let Err(e) = res.and_then(|()| self.dead.flush()) {
                tracing::error!("dead letters: {e}");
            }
        }
    }

    /// Restarts the source within this process (after it failed, or to pick up new settings),
    /// keeping the tables' state and what was received but not yet applied: the old source is
    /// stopped, the slot is reused after the last LSN received, and no change is lost or
    /// repeated. (A new process has no state to resume: it starts with a snapshot.)
    pub fn restart(&mut self, mut cfg: CdcConfig) -> Result<(), CdcError> {
        // stop the old source and keep everything it delivered
        self.tables.ack_handle().stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.closed && Instant::now() < deadline {
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(ev) => self.take(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
        self.pending
            .retain(|ev| matches!(ev, CdcEvent::Txn { .. } | CdcEvent::Snapshot { .. }));
        cfg.resume_after = Some(self.last_received_lsn.max(self.tables.last_lsn()));
        let (rx, ack) = postgres::start(cfg)?;
        self.rx = rx;
        self.tables.reattach(ack);
        self.closed = false;
        Ok(())
    }

    fn take(&mut self, ev: CdcEvent) {
        match &ev {
            CdcEvent::Txn { commit_lsn: l, .. } | CdcEvent::Snapshot { lsn: l, .. } => {
                self.received += 1;
                self.last_received_lsn = self.last_received_lsn.max(*l);
            }
            _ => {}
        }
        self.pending.push_back(ev);
    }

    /// Moves what the source has delivered so far into the pending queue (no blocking).
    fn drain(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            self.take(ev);
        }
    }

    /// Blocks until `n` snapshots and transactions have been received in total, or `timeout`
    /// passes (`false`), or the source fails (its error).
    pub fn wait_received(&mut self, n: u64, timeout: Duration) -> Result<bool, CdcError> {
        let deadline = Instant::now() + timeout;
        while self.received < n {
            if let Some(CdcEvent::Failed(e)) = self.pending.back() {
                return Err(e.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(ev) => self.take(ev),
                Err(RecvTimeoutError::Timeout) if Instant::now() >= deadline => return Ok(false),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = true;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Blocks until the initial snapshot has been received.
    pub fn wait_snapshot(&mut self, timeout: Duration) -> Result<bool, CdcError> {
        self.wait_received(1, timeout)
    }

    /// Applies everything pending at `tick` into `ingest`.
    fn apply_pending(&mut self, tick: u64, ingest: &mut Ingest) -> Result<usize, CdcError> {
        let mut n = 0;
        while let Some(ev) = self.pending.pop_front() {
            n += usize::from(matches!(
                ev,
                CdcEvent::Txn { .. } | CdcEvent::Snapshot { .. }
            ));
            self.tables.apply(ev, tick, ingest)?;
        }
        self.write_dead_letters();
        Ok(n)
    }

    /// Applies the CDC events received so far at the live tick of `ingest`, takes its batch,
    /// feeds it to `engine` and acknowledges what is complete. Returns the batch's frontier.
    pub fn feed(&mut self, engine: &Engine, ingest: &mut Ingest) -> Result<u64, CdcError> {
        self.feed_with(engine, ingest, None)
    }

    /// Like [`CdcDriver::feed`], with the batch's frontier forced to `frontier` (e.g.
    /// `as_of + tick` once every event input is exhausted, so the last tick completes).
    pub fn feed_until(
        &mut self,
        engine: &Engine,
        ingest: &mut Ingest,
        frontier: u64,
    ) -> Result<u64, CdcError> {
        self.feed_with(engine, ingest, Some(frontier))
    }

    fn feed_with(
        &mut self,
        engine: &Engine,
        ingest: &mut Ingest,
        frontier: Option<u64>,
    ) -> Result<u64, CdcError> {
        self.drain();
        let tick = live_tick(ingest).max(self.last_frontier);
        self.apply_pending(tick, ingest)?;
        let mut b = ingest.take_batch();
        if let Some(f) = frontier {
            b.frontier = b.frontier.max(f);
        }
        b.frontier = b.frontier.max(self.last_frontier);
        self.last_frontier = b.frontier;
        let f = b.frontier;
        engine.feed(b);
        self.ack_completed(engine.stores());
        Ok(f)
    }

    /// Adds the CDC events received so far to a batch made by another source, at the frontier
    /// of the batch fed before it (the watermark's tick when this batch began; 0 for the first
    /// batch, so an initial snapshot applies before every event); remembers the batch's
    /// frontier. Returns how many snapshots and transactions went in.
    pub fn merge(&mut self, batch: &mut Batch) -> Result<usize, CdcError> {
        self.drain();
        let tick = self.last_frontier;
        let mut n = 0;
        while let Some(ev) = self.pending.pop_front() {
            n += usize::from(matches!(
                ev,
                CdcEvent::Txn { .. } | CdcEvent::Snapshot { .. }
            ));
            self.tables.apply_to_batch(ev, tick, batch)?;
        }
        self.write_dead_letters();
        batch.frontier = batch.frontier.max(self.last_frontier);
        self.last_frontier = batch.frontier;
        Ok(n)
    }

    /// Acknowledges every applied LSN whose tick every view has completed.
    pub fn ack_completed(&mut self, stores: &Stores) {
        if let Some(as_of) = completed_as_of(stores) {
            self.tables.completed(as_of);
        }
    }

    /// Waits until the engine's views reach `as_of` (or `timeout`), acknowledging on the way.
    pub fn wait_as_of(&mut self, stores: &Stores, as_of: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.ack_completed(stores);
            if completed_as_of(stores).is_some_and(|a| a >= as_of) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The tables' state, the last applied LSN and the statistics.
    pub fn tables(&self) -> &CdcTables {
        &self.tables
    }

    /// CDC events received and not applied yet.
    pub fn pending(&mut self) -> usize {
        self.drain();
        self.pending.len()
    }

    /// The frontier of the last batch fed or merged.
    pub fn last_frontier(&self) -> u64 {
        self.last_frontier
    }

    /// Snapshots and transactions received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The largest snapshot or commit LSN received (applied or not yet).
    pub fn last_received_lsn(&self) -> u64 {
        self.last_received_lsn
    }

    /// Stops the source (a final status update goes out first).
    pub fn stop(&self) {
        self.tables.ack_handle().stop();
    }
}

/// Why [`replay_with_cdc`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum CdcReplayError {
    #[error(transparent)]
    Cdc(#[from] CdcError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("no initial snapshot from PostgreSQL within {0} s")]
    NoSnapshot(u64),
}

/// Replays a recorded stream's events with the tables from CDC instead of its own table files
/// and changes (`shopdiff run --replay DIR --postgres URL`): waits for the initial snapshot (up
/// to `snapshot_timeout`) and feeds it at time 0, then feeds the replay's batches, each with the
/// CDC changes received so far ([`CdcDriver::merge`]) and without the stream's own table rows
/// and table rejections. `before_batch` runs before each batch is merged, with the batch's
/// frontier (a test uses it to commit upstream changes). Returns the replay's statistics; the
/// caller finishes the engine (or keeps it running and goes on calling
/// [`CdcDriver::merge`] / [`CdcDriver::ack_completed`]).
pub fn replay_with_cdc(
    replay: Replay,
    engine: &Engine,
    cdc: &mut CdcDriver,
    snapshot_timeout: Duration,
    mut before_batch: impl FnMut(u64, &mut CdcDriver) -> Result<(), CdcError>,
) -> Result<ReplayStats, CdcReplayError> {
    if !cdc.wait_snapshot(snapshot_timeout)? {
        return Err(CdcReplayError::NoSnapshot(snapshot_timeout.as_secs()));
    }
    let mut first = Batch::default();
    cdc.merge(&mut first)?;
    engine.feed(first);
    let mut failure: Option<CdcError> = None;
    let stats = replay.run(|mut b| {
        b.tables.clear();
        b.quality.retain(|q| {
            !matches!(
                q.0,
                Source::Products | Source::Customers | Source::IpReputation
            )
        });
        let res = before_batch(b.frontier, cdc).and_then(|_| cdc.merge(&mut b));
        if let Err(e) = res {
            failure = Some(e);
            return false;
        }
        let fed = engine.feed(b);
        cdc.ack_completed(engine.stores());
        fed
    })?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(stats),
    }
}

impl Drop for CdcDriver {
    fn drop(&mut self) {
        self.stop();
    }
}
