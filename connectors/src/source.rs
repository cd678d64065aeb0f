//! What every source yields: batches of `(record, time, diff)` updates and a frontier.

use shopdiff_schemas::records::{Event, Line};
use shopdiff_schemas::{Reason, Source, TableRow};

/// A batch of updates. Events are append-only (each update is a `+1`); table rows come and go.
/// After this batch, every update of the same source has a time `>= frontier`.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Accepted, de-duplicated order lines and their effect times.
    pub lines: Vec<(Line, u64)>,
    /// Accepted, de-duplicated behavior events and their effect times.
    pub events: Vec<(Event, u64)>,
    /// `data_quality` counts: `(source, reason, time, count)`.
    pub quality: Vec<(Source, Reason, u64, i64)>,
    /// Table rows in (`+1`) and out (`-1`).
    pub tables: Vec<(TableRow, u64, isize)>,
    /// The frontier after this batch.
    pub frontier: u64,
    /// Identities kept for dedup after this batch (lines, events): bounded by the lateness
    /// horizon's traffic (metrics).
    pub identities: (u64, u64),
}

impl Batch {
    /// Moves every update below this batch's frontier to the batch's `as_of`
    /// (`frontier - tick`), given the previous batch's frontier `prev`; updates at or past
    /// the frontier keep their time. At that `as_of` and every later batch's, views computed
    /// from the moved updates equal those computed from the original ones, since each
    /// record's window bounds come from its own timestamp (see `server::Engine::feed`). A
    /// batch whose frontier does not move past `prev` is left as it is.
    ///
    /// `exact`, an `as_of` that must stay exact although it may fall inside the batch (a
    /// restarted sink's committed one): updates at or before it move to it instead, so the
    /// views' history holds their state at that `as_of` too.
    pub fn compute_at_as_of(&mut self, prev: u64, tick: u64, exact: Option<u64>) {
        if self.frontier <= prev || self.frontier < tick {
            return;
        }
        let (frontier, at) = (self.frontier, self.frontier - tick);
        let split = exact.filter(|&e| e + tick >= prev && e < at);
        let c = |t: &mut u64| {
            if *t < frontier {
                *t = match split {
                    Some(e) if *t <= e => e,
                    _ => (*t).max(at),
                }
            }
        };
        self.lines.iter_mut().for_each(|x| c(&mut x.1));
        self.events.iter_mut().for_each(|x| c(&mut x.1));
        self.quality.iter_mut().for_each(|x| c(&mut x.2));
        self.tables.iter_mut().for_each(|x| c(&mut x.1));
    }

    /// Number of updates.
    pub fn len(&self) -> usize {
        self.lines.len() + self.events.len() + self.quality.len() + self.tables.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
