//! A live feed: the built-in generator paced by the wall clock, through the same validation,
//! time model and table state as a replay.
//!
//! The generator's items carry a simulated delivery time (`sent`); [`LiveGenerator`] releases
//! an item once `start + (now - wall_start) * speed` has reached it, so the seed's hourly
//! volumes arrive at `speed` times real time, with event times near the wall clock. Every
//! `flush` the feeder cuts a batch (the records since the last cut, the table changes due
//! below the new frontier) for the engine. A quiet moment still advances time: the clock
//! closes the ticks before `now - lateness`, as a live source's watermark would.

use crate::generator::{GenConfig, GenItem, GenStream, Generator};
use crate::ingest::{Fate, Ingest, Stream, TimeConfig};
use crate::tables::TableState;
use crate::Batch;
use shopdiff_schemas::records::{parse_behavior, parse_transaction};
use shopdiff_schemas::tables::{parse_change, parse_row, Change, Table};
use shopdiff_schemas::time::{ceil_tick, Ms};
use std::collections::BTreeMap;

/// Counts of what the feeder took in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedStats {
    pub transactions: u64,
    pub behavior: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub late: u64,
    pub changes_applied: u64,
    pub changes_rejected: u64,
}

/// Validation, time model and table state for records that arrive one by one.
pub struct Feeder {
    ingest: Ingest,
    state: TableState,
    /// Table changes waiting for their tick, in arrival order per tick.
    changes: BTreeMap<(u64, u64), Change>,
    seq: u64,
    pub stats: FeedStats,
    /// Where rejected records go, with their reason (none by default).
    dead: Option<crate::dead_letters::DeadLetters>,
}

impl Feeder {
    pub fn new(time: TimeConfig) -> Feeder {
        Feeder {
            ingest: Ingest::new(time),
            state: TableState::default(),
            changes: BTreeMap::new(),
            seq: 0,
            stats: FeedStats::default(),
            dead: None,
        }
    }

    /// Writes every rejected record to `dead` (the `--dead-letters` file), with its reason and
    /// its position among the records fed.
    pub fn set_dead_letters(&mut self, dead: crate::dead_letters::DeadLetters) {
        self.dead = Some(dead);
    }

    /// Writes what the dead-letter file buffered.
    pub fn flush_dead_letters(&mut self) -> Result<(), crate::files::FileError> {
        match &mut self.dead {
            Some(d) => d.flush(),
            None => Ok(()),
        }
    }

    fn dead_letter(
        &mut self,
        source: shopdiff_schemas::Source,
        rej: shopdiff_schemas::Rejection,
        json: &str,
    ) {
        let n = self.stats.transactions + self.stats.behavior;
        if let Some(d) = &mut self.dead {
            if let Err(e) = d.write(source, rej, std::path::Path::new("generator"), n, json) {
                tracing::error!("dead letters: {e}; no more are written");
                self.dead = None;
            }
        }
    }

    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// An initial table row (effective from time 0).
    pub fn table_row(&mut self, table: Table, json: &str) {
        match parse_row(table, json) {
            Ok(row) => self.state.upsert(row, 0, &mut self.ingest),
            Err(rej) => {
                self.ingest.table_rejected(table.source(), rej.reason, 0);
                self.dead_letter(table.source(), rej, json);
            }
        }
    }

    /// An event record of one stream, as JSON text.
    pub fn record(&mut self, stream: Stream, json: &str) {
        let fate = match stream {
            Stream::Transactions => {
                self.stats.transactions += 1;
                parse_transaction(json).map(|l| self.ingest.line(l))
            }
            Stream::Behavior => {
                self.stats.behavior += 1;
                parse_behavior(json).map(|e| self.ingest.event(e))
            }
        };
        match fate {
            Ok(Fate::Duplicate) => self.stats.duplicates += 1,
            Ok(Fate::Accepted { late: true, .. }) => self.stats.late += 1,
            Ok(Fate::Accepted { .. }) => {}
            Ok(Fate::Rejected(reason)) => {
                self.stats.rejected += 1;
                self.ingest.rejected(stream.source(), reason, None);
                // `future` or `too_late`: the timestamp is what is wrong
                let rej = shopdiff_schemas::Rejection::new(reason, "timestamp");
                self.dead_letter(stream.source(), rej, json);
            }
            Err(rej) => {
                self.stats.rejected += 1;
                self.ingest.rejected(stream.source(), rej.reason, None);
                self.dead_letter(stream.source(), rej, json);
            }
        }
    }

    /// A table change (`changes.jsonl` form), applied at `ceil_tick(at)` once time gets there
    /// (or at the next open tick when it is already past).
    pub fn change(&mut self, json: &str) {
        match parse_change(json) {
            Ok(c) => {
                let tick = self.ingest.config().tick_ms;
                let t = ceil_tick(c.at, tick).max(self.ingest.frontier());
                self.seq += 1;
                self.changes.insert((t, self.seq), c);
            }
            Err(_) => self.stats.changes_rejected += 1,
        }
    }

    /// Lets the clock close ticks: no future record may be earlier than `now - lateness`.
    pub fn clock(&mut self, now: Ms) {
        self.ingest.clock(now);
    }

    /// Sets the reference clock of the `future` rule (see [`Ingest::set_reference`]).
    pub fn set_reference(&mut self, now: Ms) {
        self.ingest.set_reference(now);
    }

    /// Applies the table changes due below the frontier and takes the batch.
    pub fn cut(&mut self) -> Batch {
        let frontier = self.ingest.frontier();
        while let Some(entry) = self.changes.first_entry() {
            let (t, _) = *entry.key();
            if t >= frontier {
                break;
            }
            let c = entry.remove();
            self.state.apply(c, t, &mut self.ingest);
            self.stats.changes_applied += 1;
        }
        self.ingest.take_batch()
    }
}

/// The generator paced by the wall clock.
pub struct LiveGenerator {
    gen: Generator,
    /// Feed the generator's table rows and changes (false: the tables come from elsewhere).
    tables: bool,
    next: Option<GenItem>,
    sim_start: Ms,
    speed: f64,
    /// Simulated time fed at once, before the pacing starts (history for a demo).
    backfill: Ms,
}

impl LiveGenerator {
    /// A generator whose first session starts at `cfg.start`; feeds `feeder` its tables (and
    /// later their changes) when `tables` is set.
    pub fn new(
        cfg: &GenConfig,
        speed: f64,
        tables: bool,
        feeder: &mut Feeder,
    ) -> Result<LiveGenerator, String> {
        let mut gen = Generator::new(cfg.clone()).map_err(|e| e.to_string())?;
        if tables {
            for table in [Table::Products, Table::Customers, Table::IpReputation] {
                for line in gen.tables().get(table) {
                    feeder.table_row(table, &line.json);
                }
            }
        }
        let next = gen.next();
        Ok(LiveGenerator {
            gen,
            tables,
            next,
            sim_start: cfg.start,
            speed: speed.max(1e-6),
            backfill: 0,
        })
    }

    /// Makes the first `ms` of simulated time due at once: a generator started `ms` before
    /// the wall clock feeds that history as fast as the engine takes it, then goes on paced.
    pub fn backfill(&mut self, ms: u64) {
        self.backfill = ms.min(i64::MAX as u64) as Ms;
    }

    /// The simulated time at `elapsed_ms` of wall time since the start.
    pub fn sim_time(&self, elapsed_ms: u64) -> Ms {
        self.sim_start + self.backfill + (elapsed_ms as f64 * self.speed) as Ms
    }

    /// Feeds every item due by `elapsed_ms` of wall time (at most `max` of them); returns how
    /// many, or `None` when the generator is exhausted.
    pub fn feed_due(&mut self, elapsed_ms: u64, max: usize, feeder: &mut Feeder) -> Option<usize> {
        let now = self.sim_time(elapsed_ms);
        // the simulated clock, not the wall clock, decides what is `future`
        feeder.set_reference(now);
        let mut n = 0;
        // how far the feed got: `now` unless `max` items stopped it short (a backfill)
        let mut reached = now;
        while n < max {
            let Some(item) = self.next.take() else {
                return if n == 0 { None } else { Some(n) };
            };
            if item.sent > now {
                self.next = Some(item);
                break;
            }
            reached = item.sent;
            match item.stream {
                GenStream::Transactions => feeder.record(Stream::Transactions, &item.json),
                GenStream::Behavior => feeder.record(Stream::Behavior, &item.json),
                GenStream::Change if self.tables => feeder.change(&item.json),
                GenStream::Change => {}
            }
            n += 1;
            self.next = self.gen.next();
        }
        if n < max || self.next.as_ref().is_none_or(|i| i.sent > now) {
            reached = now;
        }
        // the clock moves only as far as what was fed: items still due must not be late
        feeder.clock(reached);
        Some(n)
    }
}
