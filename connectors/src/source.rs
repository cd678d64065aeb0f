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
    /// Number of updates.
    pub fn len(&self) -> usize {
        self.lines.len() + self.events.len() + self.quality.len() + self.tables.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
