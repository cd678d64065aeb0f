//! Recorded-stream replay (contract sections 1 and 3): reads a directory of JSON Lines files and
//! yields [`Batch`]es in the time model of [`crate::ingest`].
//!
//! Each event file is read and validated by its own thread; the replay merges the two streams by
//! the event time of their next record (a rejected record goes first: it has no usable time), so
//! the inputs advance together as they would live, and hands each record to [`Ingest`] in that
//! order. Initial table rows apply at time 0, before every event; recorded changes at
//! `ceil_tick(at)`, in `at` order (file order among equal times). Every `batch_records` records
//! the batch is cut and its frontier published. When both streams are exhausted, `as_of` is
//! `ceil_tick` of the largest event time seen; changes dated after it are not applied.

use crate::dead_letters::DeadLetters;
use crate::files::{self, FileError, LineReader};
use crate::ingest::{Fate, Ingest, Stream, TimeConfig};
use crate::source::Batch;
use crate::tables::TableState;
use crossbeam_channel::{bounded, Receiver};
use shopdiff_schemas::records::{is_blank, parse_behavior, parse_transaction, Event, Line};
use shopdiff_schemas::tables::{parse_change, parse_row, Change, Table};
use shopdiff_schemas::time::{ceil_tick, Ms};
use shopdiff_schemas::{Reason, Rejection, Source};
use std::path::{Path, PathBuf};
use std::thread;

/// How a replay runs.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub time: TimeConfig,
    /// Records (accepted or not) per batch; each batch advances the frontier once.
    pub batch_records: usize,
    /// Where rejected records go, as JSON Lines with their reason and position; none by default.
    pub dead_letters: Option<PathBuf>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            time: TimeConfig::default(),
            batch_records: 20_000,
            dead_letters: None,
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub transactions: u64,
    pub behavior: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub late: u64,
    pub table_rows: u64,
    pub changes_applied: u64,
    pub changes_after_as_of: u64,
    pub as_of: u64,
    /// Problems that did not stop the replay (a truncated zstd file, an unreadable change line).
    pub warnings: Vec<String>,
}

/// One record of an event file after validation, with its line number.
enum Parsed {
    Line(Line, u64),
    Event(Event, u64),
    Rejected {
        rejection: Rejection,
        line_no: u64,
        text: String,
    },
}

impl Parsed {
    /// The merge key: event time, or minus infinity for a rejection.
    fn key(&self) -> Ms {
        match self {
            Parsed::Line(l, _) => l.ts,
            Parsed::Event(e, _) => e.ts,
            Parsed::Rejected { .. } => Ms::MIN,
        }
    }
}

/// A recorded stream, checked and ready to replay.
pub struct Replay {
    dir: PathBuf,
    transactions: PathBuf,
    behavior: PathBuf,
    tables: [(Table, PathBuf); 3],
    changes: Option<PathBuf>,
    opts: ReplayOptions,
}

type Chunk = Vec<Parsed>;
const CHUNK: usize = 1024;

/// A reader thread: it ends with the file's I/O error, if any.
type Reader = thread::JoinHandle<Result<(), FileError>>;

/// Reads and validates one event file on its own thread. A record more than `max_future_ms`
/// ahead of the wall clock is rejected here as `future` (with its text, for the dead letters),
/// so that it neither moves the watermark nor holds its stream's place in the merge.
fn spawn_reader(
    path: PathBuf,
    stream: Stream,
    max_future_ms: u64,
) -> Result<(Receiver<Chunk>, Reader), FileError> {
    let (tx, rx) = bounded::<Chunk>(16);
    let thread_path = path.clone();
    let handle = thread::Builder::new()
        .name(format!("read-{}", stream.source()))
        .spawn(move || -> Result<(), FileError> {
            let mut r = LineReader::open(&path)?;
            let mut chunk = Vec::with_capacity(CHUNK);
            let future_after =
                || crate::ingest::wall_clock_ms().saturating_add(max_future_ms as Ms);
            let mut limit = future_after();
            while let Some((line_no, bytes)) = r.next_line()? {
                let parsed = match std::str::from_utf8(bytes) {
                    Ok(text) if is_blank(text) => continue,
                    Ok(text) => {
                        let res = match stream {
                            Stream::Transactions => {
                                parse_transaction(text).map(|l| Parsed::Line(l, line_no))
                            }
                            Stream::Behavior => {
                                parse_behavior(text).map(|e| Parsed::Event(e, line_no))
                            }
                        };
                        // the clock is read again only when a record looks future
                        let res = res.and_then(|p| {
                            if p.key() > limit {
                                limit = future_after();
                            }
                            if p.key() > limit {
                                Err(Rejection::new(Reason::Future, "timestamp"))
                            } else {
                                Ok(p)
                            }
                        });
                        res.unwrap_or_else(|rejection| Parsed::Rejected {
                            rejection,
                            line_no,
                            text: text.to_string(),
                        })
                    }
                    Err(_) => Parsed::Rejected {
                        rejection: Rejection::new(Reason::MalformedJson, ""),
                        line_no,
                        text: String::from_utf8_lossy(bytes).into_owned(),
                    },
                };
                chunk.push(parsed);
                if chunk.len() == CHUNK
                    && tx
                        .send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                        .is_err()
                {
                    return Ok(());
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
            Ok(())
        })
        .map_err(|source| FileError::Io {
            path: thread_path,
            source,
        })?;
    Ok((rx, handle))
}

/// One merged input: its current chunk and the channel of the next ones.
struct Head {
    stream: Stream,
    rx: Receiver<Chunk>,
    chunk: std::vec::IntoIter<Parsed>,
    next: Option<Parsed>,
    path: PathBuf,
}

impl Head {
    fn advance(&mut self) {
        self.next = self.chunk.next();
        while self.next.is_none() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c.into_iter();
                    self.next = self.chunk.next();
                }
                Err(_) => return,
            }
        }
    }
}

impl Replay {
    /// Checks that `dir` holds a recorded stream (contract section 1).
    pub fn open(dir: &Path, opts: ReplayOptions) -> Result<Replay, FileError> {
        Ok(Replay {
            dir: dir.to_path_buf(),
            transactions: files::require(dir, "transactions")?,
            behavior: files::require(dir, "behavior")?,
            tables: [
                (Table::Products, files::require(dir, "products")?),
                (Table::Customers, files::require(dir, "customers")?),
                (Table::IpReputation, files::require(dir, "ip_reputation")?),
            ],
            changes: files::find(dir, "changes")?,
            opts,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replays the stream, calling `emit` with each batch in order. `emit` returns `false` to
    /// stop early. The last batch's frontier is `as_of + tick`.
    pub fn run(self, mut emit: impl FnMut(Batch) -> bool) -> Result<ReplayStats, FileError> {
        let tick = self.opts.time.tick_ms;
        let mut ingest = Ingest::new(self.opts.time);
        let mut state = TableState::default();
        let mut stats = ReplayStats::default();
        let mut dead = DeadLetters::open(self.opts.dead_letters.as_deref())?;
        for (table, path) in &self.tables {
            stats.table_rows += load_table(*table, path, &mut state, &mut ingest, &mut dead)?;
        }
        let mut changes = match &self.changes {
            Some(p) => load_changes(p, tick, &mut stats)?,
            None => Vec::new(),
        }
        .into_iter()
        .peekable();
        let future = self.opts.time.max_future_ms;
        let (rx_t, h_t) = spawn_reader(self.transactions.clone(), Stream::Transactions, future)?;
        let (rx_b, h_b) = spawn_reader(self.behavior.clone(), Stream::Behavior, future)?;
        let mut heads = [
            Head {
                stream: Stream::Transactions,
                rx: rx_t,
                chunk: Vec::new().into_iter(),
                next: None,
                path: self.transactions.clone(),
            },
            Head {
                stream: Stream::Behavior,
                rx: rx_b,
                chunk: Vec::new().into_iter(),
                next: None,
                path: self.behavior.clone(),
            },
        ];
        for h in heads.iter_mut() {
            h.advance();
            if h.next.is_none() {
                ingest.close(h.stream);
            }
        }
        let mut since_cut = 0usize;
        let mut stopped = false;
        loop {
            let pick = match (&heads[0].next, &heads[1].next) {
                (None, None) => break,
                (Some(_), None) => 0,
                (None, Some(_)) => 1,
                (Some(a), Some(b)) => usize::from(b.key() < a.key()),
            };
            let head = &mut heads[pick];
            let Some(rec) = head.next.take() else { break };
            let source = head.stream.source();
            match rec {
                // a record below the horizon is dead-lettered as it was parsed (its text is
                // not kept past validation)
                Parsed::Line(l, line_no) => match ingest.screen(l.ts) {
                    Some(reason) => {
                        stats.rejected += 1;
                        ingest.rejected(source, reason, None);
                        let text = serde_json::to_string(&l).unwrap_or_default();
                        let rej = Rejection::new(reason, "timestamp");
                        dead.write(source, rej, &head.path, line_no, &text)?;
                    }
                    None => {
                        let fate = ingest.line(l);
                        tally(&mut stats, &mut ingest, source, fate)
                    }
                },
                Parsed::Event(e, line_no) => match ingest.screen(e.ts) {
                    Some(reason) => {
                        stats.rejected += 1;
                        ingest.rejected(source, reason, None);
                        let text = serde_json::to_string(&e).unwrap_or_default();
                        let rej = Rejection::new(reason, "timestamp");
                        dead.write(source, rej, &head.path, line_no, &text)?;
                    }
                    None => {
                        let fate = ingest.event(e);
                        tally(&mut stats, &mut ingest, source, fate)
                    }
                },
                Parsed::Rejected {
                    rejection,
                    line_no,
                    text,
                } => {
                    stats.rejected += 1;
                    ingest.rejected(source, rejection.reason, None);
                    dead.write(source, rejection, &head.path, line_no, &text)?;
                }
            }
            match head.stream {
                Stream::Transactions => stats.transactions += 1,
                Stream::Behavior => stats.behavior += 1,
            }
            head.advance();
            if head.next.is_none() {
                ingest.close(head.stream);
            }
            since_cut += 1;
            if since_cut >= self.opts.batch_records {
                since_cut = 0;
                if !emit(cut(&mut ingest, &mut changes, &mut state, &mut stats, None)) {
                    stopped = true;
                    break;
                }
            }
        }
        drop(heads);
        for (h, path) in [(h_t, &self.transactions), (h_b, &self.behavior)] {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e @ FileError::Truncated { .. })) => stats.warnings.push(e.to_string()),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(FileError::Io {
                        path: path.clone(),
                        source: std::io::Error::other("reader thread panicked"),
                    })
                }
            }
        }
        if !stopped {
            let as_of = ingest.final_as_of();
            stats.as_of = as_of;
            let last = cut(
                &mut ingest,
                &mut changes,
                &mut state,
                &mut stats,
                Some(as_of + tick),
            );
            stats.changes_after_as_of = changes.count() as u64;
            emit(last);
        }
        dead.flush()?;
        Ok(stats)
    }
}

fn tally(stats: &mut ReplayStats, ingest: &mut Ingest, source: Source, fate: Fate) {
    match fate {
        // screened just before, so not expected here; counted all the same
        Fate::Rejected(reason) => {
            stats.rejected += 1;
            ingest.rejected(source, reason, None);
        }
        Fate::Duplicate => stats.duplicates += 1,
        Fate::Accepted { late: true, .. } => stats.late += 1,
        Fate::Accepted { .. } => {}
    }
}

/// Applies the changes due before the new frontier and takes the batch.
fn cut(
    ingest: &mut Ingest,
    changes: &mut std::iter::Peekable<std::vec::IntoIter<(u64, Change)>>,
    state: &mut TableState,
    stats: &mut ReplayStats,
    final_frontier: Option<u64>,
) -> Batch {
    let frontier = final_frontier.unwrap_or_else(|| ingest.frontier());
    while let Some((t, _)) = changes.peek() {
        if *t >= frontier {
            break;
        }
        let Some((t, c)) = changes.next() else { break };
        state.apply(c, t, ingest);
        stats.changes_applied += 1;
    }
    let mut b = ingest.take_batch();
    if let Some(f) = final_frontier {
        b.frontier = f;
    }
    b
}

fn load_table(
    table: Table,
    path: &Path,
    state: &mut TableState,
    ingest: &mut Ingest,
    dead: &mut DeadLetters,
) -> Result<u64, FileError> {
    let mut r = LineReader::open(path)?;
    let mut n = 0;
    while let Some((line_no, bytes)) = r.next_line()? {
        let text = String::from_utf8_lossy(bytes).into_owned();
        if is_blank(&text) {
            continue;
        }
        n += 1;
        match std::str::from_utf8(bytes)
            .map_err(|_| Rejection::new(Reason::MalformedJson, ""))
            .and_then(|t| parse_row(table, t))
        {
            Ok(row) => state.upsert(row, 0, ingest),
            Err(rej) => {
                ingest.table_rejected(table.source(), rej.reason, 0);
                dead.write(table.source(), rej, path, line_no, &text)?;
            }
        }
    }
    Ok(n)
}

fn load_changes(
    path: &Path,
    tick: u64,
    stats: &mut ReplayStats,
) -> Result<Vec<(u64, Change)>, FileError> {
    let mut r = LineReader::open(path)?;
    let mut out = Vec::new();
    while let Some((line_no, bytes)) = r.next_line()? {
        let text = String::from_utf8_lossy(bytes);
        if is_blank(&text) {
            continue;
        }
        match parse_change(&text) {
            Ok(c) => out.push((ceil_tick(c.at, tick), c)),
            Err(e) => stats.warnings.push(format!(
                "{}:{line_no}: change not applied: {e}",
                path.display()
            )),
        }
    }
    out.sort_by_key(|(t, _)| *t); // stable: file order among equal times
    Ok(out)
}

/// The tables of a recorded stream for a source that brings its events from elsewhere (Kafka):
/// the initial rows apply at time 0, before every event, and the recorded changes at
/// `ceil_tick(at)` once a batch's frontier passes them, exactly as in a replay.
pub struct RecordedTables {
    state: TableState,
    changes: std::iter::Peekable<std::vec::IntoIter<(u64, Change)>>,
    stats: ReplayStats,
}

impl RecordedTables {
    /// Reads `products`, `customers`, `ip_reputation` (required) and `changes` (optional) from
    /// `dir` and puts the initial rows into `ingest` at time 0.
    pub fn open(dir: &Path, ingest: &mut Ingest) -> Result<RecordedTables, FileError> {
        let tick = ingest.config().tick_ms;
        let mut state = TableState::default();
        let mut stats = ReplayStats::default();
        let mut dead = DeadLetters::open(None)?;
        for table in [Table::Products, Table::Customers, Table::IpReputation] {
            let path = files::require(dir, table.name())?;
            stats.table_rows += load_table(table, &path, &mut state, ingest, &mut dead)?;
        }
        let changes = match files::find(dir, "changes")? {
            Some(p) => load_changes(&p, tick, &mut stats)?,
            None => Vec::new(),
        };
        Ok(RecordedTables {
            state,
            changes: changes.into_iter().peekable(),
            stats,
        })
    }

    /// Applies the changes dated before `frontier` (call before taking a batch with it).
    pub fn apply_due(&mut self, frontier: u64, ingest: &mut Ingest) {
        while let Some((t, _)) = self.changes.peek() {
            if *t >= frontier {
                break;
            }
            let Some((t, c)) = self.changes.next() else {
                break;
            };
            self.state.apply(c, t, ingest);
            self.stats.changes_applied += 1;
        }
    }

    /// Initial rows read, changes applied so far, and warnings (unreadable change lines).
    pub fn stats(&self) -> &ReplayStats {
        &self.stats
    }

    /// Changes not applied yet.
    pub fn pending_changes(&self) -> usize {
        self.changes.len()
    }
}
