//! The time model of contract section 3, independent of any source: de-duplication, the
//! watermark, late records and the logical (effect) time of every record.
//!
//! A source hands [`Ingest`] its records in arrival order, already validated; [`Ingest`] decides
//! for each one whether it is a duplicate, whether it is late, and at which tick it takes effect,
//! and collects the `data_quality` counts. The result is a [`Batch`] of `(record, time)` updates
//! and a frontier: every later update has a time `>=` that frontier.
//!
//! * A record with event time `e` takes effect at `ceil_tick(e)`.
//! * The watermark is the smallest, over the live inputs, of the largest event time seen minus
//!   the allowed lateness. An input that has seen nothing yet holds it at minus infinity; an
//!   exhausted input no longer holds it back.
//! * A record older than the watermark when it arrives is `late`: it takes effect at the next
//!   tick after the watermark (`floor_tick(W) + tick`), and its timestamp still decides buckets.
//! * Inputs: by default the two streams (a replay); a source with more inputs (Kafka: one per
//!   topic partition) uses [`Ingest::with_inputs`] and the `*_from` methods. An input can be
//!   closed (exhausted or idle) and reopened; the watermark never goes back, so a record that
//!   arrives on a reopened input older than the watermark is late.
//! * A record more than `max_future` ahead of its source's reference clock (the wall clock, or
//!   the simulated clock a live source gives with [`Ingest::clock`]) is rejected as `future`
//!   before it can touch the watermark; one older than `watermark - horizon` is rejected as
//!   `too_late`. Both are checked before dedup, so a rejected delivery claims no identity.
//! * Identities are kept as 128-bit hashes (a collision between two of 10^9 identities has a
//!   probability below 10^-20); only accepted records claim an identity. Each remembers the
//!   UTC day of its first delivery's event time, and the days wholly below the horizon are
//!   retired: no delivery that old can be accepted any more, so the set stays the size of the
//!   horizon's traffic on a run of any length.
//! * Rejections and duplicates are counted at the tick where the record arrives:
//!   `max(frontier, ceil_tick(e))` when the record has a readable timestamp, else the frontier.

use crate::source::Batch;
use hashbrown::HashMap;
use shopdiff_schemas::records::{Event, Line};
use shopdiff_schemas::time::{ceil_tick, floor_tick, Ms};
use shopdiff_schemas::{Reason, Source};
use xxhash_rust::xxh3::Xxh3;

/// The time model's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeConfig {
    /// Tick length in milliseconds (default 1000).
    pub tick_ms: u64,
    /// Allowed lateness in milliseconds (default 5000).
    pub lateness_ms: u64,
    /// How far ahead of the reference clock an event time may be (default 1 hour): beyond it
    /// the record is `future`.
    pub max_future_ms: u64,
    /// The lateness horizon (default 7 days): a record older than `watermark - horizon` is
    /// `too_late`, and state below it is retired.
    pub horizon_ms: u64,
}

/// The default `max_future`: one hour.
pub const DEFAULT_MAX_FUTURE_MS: u64 = 3_600_000;
/// The default lateness horizon: seven days.
pub const DEFAULT_HORIZON_MS: u64 = 7 * 86_400_000;

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            tick_ms: 1000,
            lateness_ms: 5000,
            max_future_ms: DEFAULT_MAX_FUTURE_MS,
            horizon_ms: DEFAULT_HORIZON_MS,
        }
    }
}

/// Milliseconds since the Unix epoch on the wall clock.
pub fn wall_clock_ms() -> Ms {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Ms)
}

const DAY_MS: Ms = 86_400_000;

/// Accepted identities with the UTC day of their first delivery's event time.
///
/// A key is the identity's 128-bit hash as four `u32`s (an entry of 20 bytes: a `u128` key
/// would be aligned to 32).
#[derive(Default)]
struct Seen {
    map: HashMap<[u32; 4], u32>,
    /// Days below this one are retired.
    retired_below: i64,
}

impl Seen {
    /// Claims `id` for a record of event time `ts`; `false` when it was claimed before.
    fn claim(&mut self, id: u128, ts: Ms) -> bool {
        let key = [
            id as u32,
            (id >> 32) as u32,
            (id >> 64) as u32,
            (id >> 96) as u32,
        ];
        let day = ts.div_euclid(DAY_MS).clamp(0, u32::MAX as i64) as u32;
        match self.map.entry(key) {
            hashbrown::hash_map::Entry::Occupied(_) => false,
            hashbrown::hash_map::Entry::Vacant(v) => {
                v.insert(day);
                true
            }
        }
    }

    /// Forgets the identities first seen on a day below `day`.
    fn retire_below(&mut self, day: i64) {
        if day > self.retired_below {
            self.retired_below = day;
            let below = day.clamp(0, u32::MAX as i64) as u32;
            self.map.retain(|_, d| *d >= below);
        }
    }
}

/// One of the two event streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Transactions,
    Behavior,
}

impl Stream {
    pub fn source(self) -> Source {
        match self {
            Stream::Transactions => Source::Transactions,
            Stream::Behavior => Source::Behavior,
        }
    }
    /// The input index of this stream in an [`Ingest::new`] (two inputs).
    pub fn idx(self) -> usize {
        self as usize
    }
}

/// What happened to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Accepted, taking effect at this time.
    Accepted { time: u64, late: bool },
    /// A second delivery of an accepted identity.
    Duplicate,
    /// Rejected by the time model (`future` or `too_late`); the caller counts it with
    /// [`Ingest::rejected`], like any other rejection.
    Rejected(Reason),
}

/// The sequential part of ingestion: dedup, watermark and effect times.
pub struct Ingest {
    cfg: TimeConfig,
    seen_lines: Seen,
    seen_events: Seen,
    /// The reference clock set by a live source ([`Ingest::clock`]); the wall clock otherwise.
    reference: Option<Ms>,
    /// A lower bound of `reference clock + max_future`: a record at or below it is not
    /// `future`, one above it makes the clock be read again.
    future_limit: Ms,
    max_seen: Vec<Option<Ms>>,
    live: Vec<bool>,
    /// The watermark never goes below this (set when a closed input is reopened).
    floor: Option<Ms>,
    /// The updates collected since the last [`Ingest::take_batch`].
    batch: Batch,
    /// Where each `(source, reason, time)` count of the current batch is in `batch.quality`:
    /// counts of one tick are summed here rather than sent to the dataflow one by one (a tick
    /// holds about a hundred records of a replay).
    quality_at: HashMap<(Source, Reason, u64), usize>,
}

fn identity(parts: &[&str]) -> u128 {
    let mut h = Xxh3::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.digest128()
}

impl Ingest {
    /// Two inputs: the transactions and behavior streams ([`Stream::idx`]).
    pub fn new(cfg: TimeConfig) -> Self {
        Self::with_inputs(cfg, 2)
    }

    /// `n` inputs (at least one), each holding the watermark back while live.
    pub fn with_inputs(cfg: TimeConfig, n: usize) -> Self {
        let n = n.max(1);
        Ingest {
            cfg,
            seen_lines: Seen::default(),
            seen_events: Seen::default(),
            reference: None,
            future_limit: Ms::MIN,
            max_seen: vec![None; n],
            live: vec![true; n],
            floor: None,
            batch: Batch::default(),
            quality_at: HashMap::new(),
        }
    }

    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.live.len()
    }

    /// Whether an input still holds the watermark back.
    pub fn is_live(&self, input: usize) -> bool {
        self.live.get(input).copied().unwrap_or(false)
    }

    pub fn config(&self) -> TimeConfig {
        self.cfg
    }

    /// The watermark; `None` while a live input has seen nothing (minus infinity) and when no
    /// input has seen anything.
    pub fn watermark(&self) -> Option<Ms> {
        match (self.raw_watermark(), self.floor) {
            (Some(w), Some(f)) => Some(w.max(f)),
            (w, f) => w.or(f),
        }
    }

    fn raw_watermark(&self) -> Option<Ms> {
        let mut w: Option<Ms> = None;
        let mut any_live = false;
        for (live, max) in self.live.iter().zip(&self.max_seen) {
            if !live {
                continue;
            }
            any_live = true;
            let m = (*max)? - self.cfg.lateness_ms as Ms;
            w = Some(w.map_or(m, |w| w.min(m)));
        }
        if any_live {
            w
        } else {
            // every input is exhausted: everything seen is complete
            self.max_seen
                .iter()
                .flatten()
                .max()
                .map(|m| m + self.cfg.tick_ms as Ms)
        }
    }

    /// The smallest time any future update can take: `ceil_tick(watermark)`. Every tick below it
    /// is complete; `as_of = frontier - tick`.
    pub fn frontier(&self) -> u64 {
        match self.watermark() {
            Some(w) => ceil_tick(w, self.cfg.tick_ms),
            None => 0,
        }
    }

    /// The `as_of` every view can be read at once all inputs are exhausted: `ceil_tick` of the
    /// largest event time seen (0 when nothing was seen).
    pub fn final_as_of(&self) -> u64 {
        self.max_seen
            .iter()
            .flatten()
            .max()
            .map_or(0, |m| ceil_tick(*m, self.cfg.tick_ms))
    }

    /// A heartbeat from a live source's clock: no record of any live input will be accepted
    /// on time before `now - lateness` any more, so the watermark may pass it even while an
    /// input is quiet.
    ///
    /// It is also the reference clock of the `future` rule from then on (the live generator's
    /// simulated clock).
    pub fn clock(&mut self, now: Ms) {
        self.set_reference(now);
        for i in 0..2 {
            if self.live[i] {
                let m = &mut self.max_seen[i];
                *m = Some(m.map_or(now, |m| m.max(now)));
            }
        }
    }

    /// Marks an input exhausted: it no longer holds the watermark back.
    pub fn close(&mut self, s: Stream) {
        self.close_input(s.idx());
    }

    /// Marks an input exhausted or idle: it no longer holds the watermark back.
    pub fn close_input(&mut self, input: usize) {
        if let Some(l) = self.live.get_mut(input) {
            *l = false;
        }
    }

    /// An idle input has records again: it holds the watermark back from now on, but the
    /// watermark does not go back (its older records are late).
    pub fn reopen_input(&mut self, input: usize) {
        if self.is_live(input) || input >= self.live.len() {
            return;
        }
        self.floor = self.watermark();
        self.live[input] = true;
    }

    /// Raises the watermark to at least `w`; it never goes back. A source whose inputs are all
    /// idle follows the other processes of a cluster this way, so that it does not hold their
    /// `as_of` back; its records older than `w` that arrive later are late.
    pub fn raise_watermark(&mut self, w: Ms) {
        self.floor = Some(self.floor.map_or(w, |f| f.max(w)));
    }

    /// Sets the reference clock of the `future` rule (a live source's simulated clock) without
    /// touching the watermark; it never goes back.
    pub fn set_reference(&mut self, now: Ms) {
        self.reference = Some(self.reference.map_or(now, |r| r.max(now)));
        self.future_limit = self
            .reference_now()
            .saturating_add(self.cfg.max_future_ms as Ms);
    }

    fn reference_now(&self) -> Ms {
        self.reference.unwrap_or_else(wall_clock_ms)
    }

    /// The time model's rejections: `future` (beyond the reference clock by more than
    /// `max_future`) and `too_late` (below `watermark - horizon`). [`Ingest::line_from`] and
    /// [`Ingest::event_from`] apply it themselves; a source that still holds the record's text
    /// for its dead letters asks first.
    pub fn screen(&mut self, ts: Ms) -> Option<Reason> {
        if ts > self.future_limit {
            self.future_limit = self
                .reference_now()
                .saturating_add(self.cfg.max_future_ms as Ms);
            if ts > self.future_limit {
                return Some(Reason::Future);
            }
        }
        match self.watermark() {
            Some(w) if ts < w.saturating_sub(self.cfg.horizon_ms as Ms) => Some(Reason::TooLate),
            _ => None,
        }
    }

    /// Number of identities kept for dedup (lines, events).
    pub fn identities(&self) -> (usize, usize) {
        (self.seen_lines.map.len(), self.seen_events.map.len())
    }

    /// Retires the identities of the days wholly below the horizon.
    fn retire(&mut self) {
        if let Some(w) = self.watermark() {
            let day = w
                .saturating_sub(self.cfg.horizon_ms as Ms)
                .div_euclid(DAY_MS);
            self.seen_lines.retire_below(day);
            self.seen_events.retire_below(day);
        }
    }

    fn effect(&mut self, input: usize, ts: Ms) -> (u64, bool) {
        let tick = self.cfg.tick_ms;
        let (time, late) = match self.watermark() {
            Some(w) if ts < w => (floor_tick(w, tick) + tick, true),
            _ => (ceil_tick(ts, tick), false),
        };
        let m = &mut self.max_seen[input.min(self.live.len() - 1)];
        *m = Some(m.map_or(ts, |m| m.max(ts)));
        (time, late)
    }

    /// The tick at which a rejection or duplicate is counted.
    pub fn arrival_time(&self, ts: Option<Ms>) -> u64 {
        let f = self.frontier();
        ts.map_or(f, |ts| f.max(ceil_tick(ts, self.cfg.tick_ms)))
    }

    fn count(&mut self, source: Source, reason: Reason, time: u64) {
        let quality = &mut self.batch.quality;
        let at = *self
            .quality_at
            .entry((source, reason, time))
            .or_insert_with(|| {
                quality.push((source, reason, time, 0));
                quality.len() - 1
            });
        quality[at].3 += 1;
    }

    /// An accepted transaction line, in arrival order.
    pub fn line(&mut self, line: Line) -> Fate {
        self.line_from(Stream::Transactions.idx(), line)
    }

    /// An accepted transaction line arriving on `input`, in arrival order.
    pub fn line_from(&mut self, input: usize, line: Line) -> Fate {
        if let Some(reason) = self.screen(line.ts) {
            return Fate::Rejected(reason);
        }
        if !self
            .seen_lines
            .claim(identity(&[&line.transaction_id, &line.product_id]), line.ts)
        {
            let t = self.arrival_time(Some(line.ts));
            self.count(Source::Transactions, Reason::Duplicate, t);
            return Fate::Duplicate;
        }
        let (time, late) = self.effect(input, line.ts);
        self.count(Source::Transactions, Reason::Accepted, time);
        if late {
            self.count(Source::Transactions, Reason::Late, time);
        }
        self.batch.lines.push((line, time));
        Fate::Accepted { time, late }
    }

    /// An accepted behavior event, in arrival order.
    pub fn event(&mut self, event: Event) -> Fate {
        self.event_from(Stream::Behavior.idx(), event)
    }

    /// An accepted behavior event arriving on `input`, in arrival order.
    pub fn event_from(&mut self, input: usize, event: Event) -> Fate {
        if let Some(reason) = self.screen(event.ts) {
            return Fate::Rejected(reason);
        }
        if !self
            .seen_events
            .claim(identity(&[&event.event_id]), event.ts)
        {
            let t = self.arrival_time(Some(event.ts));
            self.count(Source::Behavior, Reason::Duplicate, t);
            return Fate::Duplicate;
        }
        let (time, late) = self.effect(input, event.ts);
        self.count(Source::Behavior, Reason::Accepted, time);
        if late {
            self.count(Source::Behavior, Reason::Late, time);
        }
        self.batch.events.push((event, time));
        Fate::Accepted { time, late }
    }

    /// A rejected record of any source, counted at its arrival tick.
    pub fn rejected(&mut self, source: Source, reason: Reason, ts: Option<Ms>) -> u64 {
        let t = self.arrival_time(ts);
        self.count(source, reason, t);
        t
    }

    /// A table update (a row in or out) at a given time; `time` must be `>=` the frontier of the
    /// last batch taken.
    pub fn table(&mut self, row: shopdiff_schemas::TableRow, time: u64, diff: isize) {
        self.batch.tables.push((row, time, diff));
    }

    /// A table rejection at a given time.
    pub fn table_rejected(&mut self, source: Source, reason: Reason, time: u64) {
        self.count(source, reason, time);
    }

    /// Number of updates collected since the last batch.
    pub fn pending(&self) -> usize {
        self.batch.len()
    }

    /// Takes the updates collected so far, with the current frontier.
    pub fn take_batch(&mut self) -> Batch {
        // the next batch is sized like this one: its vectors do not grow by doubling (each
        // step a copy into fresh memory, megabytes for a batch of 50,000 records)
        let next = Batch {
            lines: Vec::with_capacity(self.batch.lines.len()),
            events: Vec::with_capacity(self.batch.events.len()),
            ..Batch::default()
        };
        let mut b = std::mem::replace(&mut self.batch, next);
        self.quality_at.clear();
        self.retire();
        b.frontier = self.frontier();
        let (lines, events) = self.identities();
        b.identities = (lines as u64, events as u64);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopdiff_schemas::records::{parse_behavior, EventKind};
    use shopdiff_schemas::Str;

    fn ev(id: &str, ts: Ms) -> Event {
        Event {
            event_id: Str::from(id),
            user_id: "u".into(),
            session_id: None,
            kind: EventKind::PageView,
            product_id: None,
            ip: None,
            ts,
        }
    }

    fn line(tx: &str, p: &str, ts: Ms) -> Line {
        let text = format!(
            r#"{{"transaction_id":"{tx}","product_id":"{p}","user_id":"u","timestamp":"1970-01-01T00:00:00Z","price":1,"quantity":1,"currency":"USD"}}"#
        );
        let mut l = shopdiff_schemas::parse_transaction(&text).unwrap();
        l.ts = ts;
        l
    }

    #[test]
    fn watermark_lateness_and_effect_times() {
        let mut i = Ingest::new(TimeConfig::default());
        // nothing is late while one input has seen nothing
        assert_eq!(
            i.event(ev("e1", 100_000)),
            Fate::Accepted {
                time: 100_000,
                late: false
            }
        );
        assert_eq!(
            i.event(ev("e2", 10_000)),
            Fate::Accepted {
                time: 10_000,
                late: false
            }
        );
        assert_eq!(i.watermark(), None);
        assert_eq!(
            i.line(line("t1", "p", 50_500)),
            Fate::Accepted {
                time: 51_000,
                late: false
            }
        );
        // W = min(100_000, 50_500) - 5_000 = 45_500
        assert_eq!(i.watermark(), Some(45_500));
        assert_eq!(i.frontier(), 46_000);
        assert_eq!(
            i.line(line("t2", "p", 45_500)),
            Fate::Accepted {
                time: 46_000,
                late: false
            }
        );
        assert_eq!(
            i.line(line("t3", "p", 45_499)),
            Fate::Accepted {
                time: 46_000,
                late: true
            }
        );
        // duplicates change nothing, not even the watermark
        assert_eq!(i.line(line("t1", "p", 99_999_000)), Fate::Duplicate);
        assert_eq!(i.watermark(), Some(45_500));
        // an exhausted input releases the watermark
        i.close(Stream::Transactions);
        assert_eq!(i.watermark(), Some(95_000));
        i.close(Stream::Behavior);
        assert_eq!(i.final_as_of(), 100_000);
        assert_eq!(i.frontier(), 101_000);
        let b = i.take_batch();
        assert_eq!(b.lines.len(), 3);
        assert_eq!(b.events.len(), 2);
        let count = |r: Reason| {
            b.quality
                .iter()
                .filter(|q| q.1 == r)
                .map(|q| q.3)
                .sum::<i64>()
        };
        assert_eq!(count(Reason::Accepted), 5);
        assert_eq!(count(Reason::Late), 1);
        assert_eq!(count(Reason::Duplicate), 1);
    }

    #[test]
    fn partitions_idle_and_reopened() {
        let mut i = Ingest::with_inputs(TimeConfig::default(), 3);
        i.event_from(0, ev("a", 100_000));
        i.event_from(1, ev("b", 50_000));
        // input 2 has seen nothing: minus infinity
        assert_eq!(i.watermark(), None);
        i.close_input(2);
        assert_eq!(i.watermark(), Some(45_000));
        i.close_input(1);
        assert_eq!(i.watermark(), Some(95_000));
        // input 1 comes back with an old record: the watermark stays, the record is late
        i.reopen_input(1);
        assert_eq!(i.watermark(), Some(95_000));
        assert_eq!(
            i.event_from(1, ev("c", 60_000)),
            Fate::Accepted {
                time: 96_000,
                late: true
            }
        );
        assert_eq!(i.frontier(), 95_000);
        i.event_from(1, ev("d", 120_000));
        assert_eq!(i.watermark(), Some(95_000));
        i.event_from(0, ev("e", 110_000));
        assert_eq!(i.watermark(), Some(105_000));
    }

    #[test]
    fn a_raised_watermark_never_goes_back_and_makes_older_records_late() {
        let mut i = Ingest::with_inputs(TimeConfig::default(), 2);
        i.event_from(0, ev("a", 20_000));
        i.close_input(0);
        i.close_input(1);
        assert_eq!(i.frontier(), 21_000);
        // the rest of the cluster is at 40_000: follow it
        i.raise_watermark(40_000);
        assert_eq!(i.watermark(), Some(40_000));
        assert_eq!(i.frontier(), 40_000);
        i.raise_watermark(30_000);
        assert_eq!(i.frontier(), 40_000);
        i.reopen_input(0);
        assert_eq!(
            i.event_from(0, ev("b", 39_500)),
            Fate::Accepted {
                time: 41_000,
                late: true
            }
        );
        assert_eq!(
            i.event_from(0, ev("c", 50_000)),
            Fate::Accepted {
                time: 50_000,
                late: false
            }
        );
        assert_eq!(i.watermark(), Some(45_000));
    }

    #[test]
    fn watermark_on_a_tick_boundary() {
        let mut i = Ingest::new(TimeConfig::default());
        i.close(Stream::Transactions);
        let e = parse_behavior(
            r#"{"event_id":"a","user_id":"u","timestamp":"1970-01-01T00:00:15Z","event_type":"x"}"#,
        )
        .unwrap();
        i.event(e);
        // W = 10_000 exactly: a record at W is on time, one just before is late at the next tick
        assert_eq!(i.frontier(), 10_000);
        assert_eq!(
            i.event(ev("b", 10_000)),
            Fate::Accepted {
                time: 10_000,
                late: false
            }
        );
        assert_eq!(
            i.event(ev("c", 9_999)),
            Fate::Accepted {
                time: 11_000,
                late: true
            }
        );
    }

    #[test]
    fn future_records_are_rejected_and_never_move_the_watermark() {
        let mut i = Ingest::new(TimeConfig::default());
        // the wall clock: 2024 is the past, 9999 is the future
        assert_eq!(
            i.event(ev("poison", 253_402_300_799_000)),
            Fate::Rejected(Reason::Future)
        );
        assert_eq!(
            i.line(line("poison", "p", 253_402_300_799_000)),
            Fate::Rejected(Reason::Future)
        );
        assert_eq!(i.watermark(), None);
        let t = 1_709_166_803_000; // 2024-02-29
        assert!(matches!(
            i.event(ev("a", t)),
            Fate::Accepted { late: false, .. }
        ));
        assert!(matches!(
            i.line(line("t", "p", t)),
            Fate::Accepted { late: false, .. }
        ));
        assert_eq!(i.watermark(), Some(t - 5_000));
        // a rejected delivery claims no identity
        assert_eq!(i.identities(), (1, 1));
        // a live source's simulated clock is the reference from its first heartbeat on
        let mut live = Ingest::new(TimeConfig::default());
        live.clock(t);
        let limit = t + DEFAULT_MAX_FUTURE_MS as Ms;
        assert!(matches!(
            live.event(ev("edge", limit)),
            Fate::Accepted { .. }
        ));
        assert_eq!(
            live.event(ev("beyond", limit + 1)),
            Fate::Rejected(Reason::Future)
        );
        // a burst of them on one input holds nothing back nor moves anything
        for k in 0..100 {
            assert_eq!(
                live.line(line(&format!("b{k}"), "p", limit + 1 + k)),
                Fate::Rejected(Reason::Future)
            );
        }
        assert_eq!(live.watermark(), Some(t - 5_000));
        live.clock(t + 10_000);
        assert!(matches!(
            live.event(ev("beyond", limit + 1)),
            Fate::Accepted { .. }
        ));
    }

    #[test]
    fn records_below_the_horizon_are_too_late_and_old_identities_are_retired() {
        let cfg = TimeConfig {
            horizon_ms: 2 * DAY_MS as u64,
            ..TimeConfig::default()
        };
        let mut i = Ingest::new(cfg);
        i.close(Stream::Transactions);
        let day = |d: i64| 1_700_006_400_000 + d * DAY_MS; // a UTC midnight (2023-11-15)
        assert!(matches!(
            i.event(ev("d0", day(0) + 1_000)),
            Fate::Accepted { .. }
        ));
        assert!(matches!(
            i.event(ev("d1", day(1) + 1_000)),
            Fate::Accepted { .. }
        ));
        let _ = i.take_batch();
        assert_eq!(i.identities().1, 2);
        // W = day(3) + 5 s: the horizon is day(1) + 5 s
        assert!(matches!(
            i.event(ev("d3", day(3) + 10_000)),
            Fate::Accepted { .. }
        ));
        assert_eq!(i.watermark(), Some(day(3) + 5_000));
        assert_eq!(
            i.event(ev("old", day(1) + 4_999)),
            Fate::Rejected(Reason::TooLate)
        );
        assert_eq!(
            i.event(ev("edge", day(1) + 5_000)),
            Fate::Accepted {
                time: day(3) as u64 + 6_000,
                late: true
            }
        );
        // a second delivery older than the horizon is too_late, not a duplicate
        assert_eq!(
            i.event(ev("d0", day(0) + 1_000)),
            Fate::Rejected(Reason::TooLate)
        );
        // within the horizon it is still a duplicate
        assert_eq!(i.event(ev("d1", day(1) + 9_000)), Fate::Duplicate);
        // the batch cut retires day 0 (wholly below the horizon), keeps day 1 and later
        let b = i.take_batch();
        assert_eq!(b.events.len(), 2);
        assert_eq!(i.identities().1, 3);
        // counts of the rejections: two too_late, one duplicate
        let mut i2 = Ingest::new(cfg);
        i2.close(Stream::Transactions);
        for d in 0..30 {
            for k in 0..10 {
                i2.event(ev(&format!("{d}-{k}"), day(d) + k * 60_000));
            }
            let _ = i2.take_batch();
            // about horizon + 2 days of identities, whatever the length of the run
            assert!(i2.identities().1 <= 40, "day {d}: {}", i2.identities().1);
        }
    }
}
