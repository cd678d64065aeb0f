//! The continuous Parquet sink (issue 8, contract section 6 `--sink`): view changes are buffered
//! and committed as Parquet files to a local directory or an S3 prefix, exactly once across
//! restarts.
//!
//! # Layout
//!
//! ```text
//! <root>/<view>/date=<YYYY-MM-DD>/changes-<from_as_of>-<to_as_of>.parquet
//! <root>/<view>/snapshots/as_of=<t>.parquet
//! <root>/_manifest/MANIFEST-<20-digit sequence>.json
//! ```
//!
//! A change file holds one view's changes of one UTC day of `as_of`: the view's delta columns
//! (every column but the `as_of`-dependent ones such as `rfm.recency_days`, typed as in the
//! snapshots of [`crate::parquet`]: money `DECIMAL(38,2)`, times UTC millisecond timestamps),
//! then `as_of` (UTC millisecond timestamp) and `diff` (`int64`, +1 inserted, -1 retracted),
//! sorted by `(as_of, key, diff)`; `from_as_of` and `to_as_of` are the first and last `as_of` of its
//! rows. A view's contents at any committed `as_of = T` are the rows of its live change files
//! with `as_of <= T`, folded by `diff` (summed per row, zero sums dropped). A snapshot holds all
//! columns of a view at one `as_of` (in the metadata under `shopdiff.as_of`).
//!
//! # Manifests
//!
//! Each commit is one JSON object, created with `PutMode::Create` (if-not-exists), so that of
//! two writers only one can commit a given sequence:
//!
//! ```json
//! {
//!   "format": "shopdiff.sink.manifest/1",
//!   "sequence": 7,
//!   "kind": "changes",                 // or "snapshot", "compaction"
//!   "committed_as_of": 1710115200000,  // every change with as_of <= this is committed
//!   "from_as_of": 1710115141000,       // a change commit covers (previous committed_as_of,
//!   "to_as_of": 1710115200000,         //   to_as_of]; from_as_of is its first pushed as_of
//!   "added": [{"path": "rfm/date=2024-03-11/changes-1710115141000-1710115200000.parquet",
//!              "view": "rfm", "kind": "changes", "from_as_of": 1710115141000,
//!              "to_as_of": 1710115200000, "rows": 412, "bytes": 18233}],
//!   "removed": []                      // paths of live files a compaction replaced
//! }
//! ```
//!
//! Sequences start at 0 and have no gaps. A reader applies the manifests in sequence order:
//! `added` files become live, `removed` ones stop being live. Files that no committed manifest
//! makes live are garbage; [`ParquetSink::open`] deletes them (only names of the layout above,
//! under known views). A change commit whose buffer held no change still writes a manifest
//! (with no files), so that the resume point advances with time.
//!
//! # Exactly once
//!
//! Data files are written before the manifest that makes them live, and every object is
//! created, never overwritten. A crash before the manifest leaves only garbage; a crash after it
//! leaves a commit. On open, the sink replays the manifests and reports
//! [`committed_as_of`](ParquetSink::committed_as_of): the caller replays its input from there,
//! and pushes with `as_of <= committed_as_of` are ignored, so every change is in exactly one
//! live file. A request whose outcome is unknown (a timeout after the server stored the object)
//! is resolved by reading the object back: the same contents count as written, and a manifest
//! in doubt is looked up before the next commit. Another writer's manifest at the same sequence
//! is a [`SinkError::Conflict`]. Compaction replaces files by a manifest that adds the merged
//! file and removes its inputs, in one commit; the inputs are deleted afterwards.
//!
//! A failed commit keeps the buffer: the next push (or [`flush`](ParquetSink::flush)) tries
//! again.
//!
//! # Limits
//!
//! * One writer per target: the create-only manifests stop a second writer from committing, but
//!   the garbage collection of [`open`](ParquetSink::open) would delete the data files of a
//!   commit another writer has in flight.
//! * Opening reads every manifest (one per commit: 1 440 a day at the default interval); there
//!   is no checkpoint manifest yet to start from.
//! * Compaction deletes its inputs right after its manifest commits; a reader still following
//!   an older list of files can find them gone and must re-read the manifests.

mod config;
mod error;
pub mod files;
pub mod manifest;
mod store;

pub use config::{RetryPolicy, S3Options, SinkConfig};
pub use error::SinkError;
pub use manifest::{CommitKind, FileEntry, FileKind, Manifest};

use crate::parquet::check_row;
use bytes::Bytes;
use files::ViewChanges;
use manifest::{manifest_path, parse_manifest_path, State, FORMAT, MANIFEST_DIR};
use shopdiff_schemas::rows::{view_def, Column, Value, ViewDef, ALL_VIEWS};
use std::collections::BTreeMap;
use std::sync::Arc;
use store::Store;

/// One view's changes at one `as_of`: rows with every column of the view, in its column order
/// (as `Row::values` gives them), and their multiplicities. The sink drops the `as_of`-dependent
/// columns.
#[derive(Debug, Clone)]
pub struct ViewDelta {
    pub view: ViewDef,
    pub diffs: Vec<(Vec<Value>, i64)>,
}

/// The changes pushed since the last commit.
#[derive(Debug, Clone, Default)]
struct Buffer {
    views: BTreeMap<&'static str, ViewChanges>,
    /// The first and last `as_of` pushed since the last commit.
    first: Option<u64>,
    last: Option<u64>,
}

impl Buffer {
    fn drain_through(&mut self, t: u64) {
        for v in self.views.values_mut() {
            v.drain_through(t);
        }
        self.views.retain(|_, v| !v.as_ofs.is_empty());
        if self.last.is_some_and(|l| l <= t) {
            self.first = None;
            self.last = None;
        } else if self.first.is_some_and(|f| f <= t) {
            self.first = Some(t + 1);
        }
    }
    fn len(&self) -> usize {
        self.views.values().map(|v| v.as_ofs.len()).sum()
    }
}

/// A continuous Parquet sink (see the module docs). Call it from one task: every method takes
/// `&mut self`.
#[derive(Debug)]
pub struct ParquetSink {
    cfg: SinkConfig,
    store: Store,
    state: State,
    /// Shared with the blocking encoding task while a commit encodes it; never lost on error.
    buffer: Arc<Buffer>,
    /// The `as_of` from which `commit_every_ms` is counted.
    commit_base: Option<u64>,
    /// A manifest whose write failed in an unknown way: it may exist.
    in_doubt: Option<(Manifest, Bytes)>,
    fail_before_manifest: bool,
    /// After a failed commit: no new attempt before this instant (the backoff doubles, from 1 s
    /// to 60 s), so an outage does not re-encode the growing buffer at every push.
    retry_at: Option<std::time::Instant>,
    backoff: std::time::Duration,
    last_error: String,
}

impl ParquetSink {
    /// Opens the sink: reads the manifests, finds the resume point and deletes garbage (data
    /// files of the layout that no committed manifest makes live).
    pub async fn open(cfg: SinkConfig) -> Result<ParquetSink, SinkError> {
        if let Some(views) = &cfg.views {
            if let Some(bad) = views.iter().find(|v| view_def(v).is_none()) {
                return Err(SinkError::Config {
                    target: cfg.target.clone(),
                    reason: format!(
                        "unknown view {bad:?}; views are {}",
                        ALL_VIEWS.map(|v| v.name).join(", ")
                    ),
                });
            }
        }
        let store = Store::open(&cfg)?;
        let mut sink = ParquetSink {
            cfg,
            store,
            state: State::default(),
            buffer: Arc::new(Buffer::default()),
            commit_base: None,
            in_doubt: None,
            fail_before_manifest: false,
            retry_at: None,
            backoff: std::time::Duration::ZERO,
            last_error: String::new(),
        };
        sink.read_manifests().await?;
        sink.commit_base = sink.state.committed_as_of;
        sink.collect_garbage().await?;
        Ok(sink)
    }

    /// Replays every manifest into `self.state`.
    async fn read_manifests(&mut self) -> Result<(), SinkError> {
        let mut sequences: Vec<(u64, String)> = self
            .store
            .list(MANIFEST_DIR)
            .await?
            .into_iter()
            .filter_map(|rel| parse_manifest_path(&rel).map(|s| (s, rel)))
            .collect();
        sequences.sort();
        for (_, rel) in sequences {
            let bytes = self
                .store
                .get(&rel)
                .await?
                .ok_or_else(|| self.manifest_err(&rel, "listed but missing".into()))?;
            let m: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| self.manifest_err(&rel, format!("not a manifest: {e}")))?;
            if manifest_path(m.sequence) != rel {
                return Err(self.manifest_err(&rel, format!("holds sequence {}", m.sequence)));
            }
            self.state
                .apply(&m)
                .map_err(|reason| self.manifest_err(&rel, reason))?;
        }
        Ok(())
    }

    fn manifest_err(&self, rel: &str, reason: String) -> SinkError {
        SinkError::Manifest {
            target: self.store.target().to_string(),
            location: self.store.location(rel),
            reason,
        }
    }

    /// Deletes data files that no committed manifest makes live.
    async fn collect_garbage(&mut self) -> Result<(), SinkError> {
        let mut deleted = 0;
        for def in ALL_VIEWS {
            for rel in self.store.list(def.name).await? {
                if files::is_data_path(def.name, &rel) && !self.state.live.contains_key(&rel) {
                    self.store.delete(&rel).await?;
                    deleted += 1;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(target: "shopdiff::sink", "{}: deleted {deleted} uncommitted data file(s)", self.store.target());
        }
        Ok(())
    }

    /// The last committed `as_of`: every change up to it is committed, so the caller resumes
    /// its input after it. `None` before the first commit.
    pub fn committed_as_of(&self) -> Option<u64> {
        self.state.committed_as_of
    }

    /// The live data files, by path below the target (for readers and tests).
    pub fn live_files(&self) -> impl Iterator<Item = &FileEntry> {
        self.state.live.values()
    }

    /// The number of changes buffered and not yet committed.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    fn selected(&self, view: &str) -> bool {
        self.cfg
            .views
            .as_ref()
            .is_none_or(|vs| vs.iter().any(|v| v == view))
    }

    /// Buffers the changes at `as_of` (of the configured views) and commits once
    /// `commit_every_ms` of `as_of` has passed since the last commit. `as_of` must increase from
    /// push to push; pushes with `as_of <= committed_as_of` are ignored (the replay after a
    /// restart). Rows that do not fit their view are an error and nothing of the push is
    /// buffered. A failed commit is an error too, but the push stays buffered and the next push
    /// or [`flush`](Self::flush) commits it.
    pub async fn push(&mut self, as_of: u64, deltas: Vec<ViewDelta>) -> Result<(), SinkError> {
        if self.state.committed_as_of.is_some_and(|c| as_of <= c) {
            return Ok(());
        }
        if let Some(last) = self.buffer.last.filter(|&l| as_of <= l) {
            return Err(SinkError::Order {
                target: self.store.target().to_string(),
                as_of,
                last,
            });
        }
        if i64::try_from(as_of).is_err() {
            return Err(SinkError::Config {
                target: self.store.target().to_string(),
                reason: format!("as_of {as_of} is beyond the range of a millisecond timestamp"),
            });
        }
        for d in &deltas {
            if !self.selected(d.view.name) {
                continue;
            }
            let columns: Vec<&Column> = d.view.columns.iter().collect();
            for (i, (row, _)) in d.diffs.iter().enumerate() {
                check_row(d.view.name, i, &columns, row).map_err(|source| SinkError::Data {
                    target: self.store.target().to_string(),
                    location: format!("push at as_of {as_of}, view {}", d.view.name),
                    source: Box::new(source),
                })?;
            }
        }
        let mut selected = deltas;
        selected.retain(|d| self.selected(d.view.name));
        let buffer = Arc::make_mut(&mut self.buffer);
        for d in selected {
            let delta = d.view.delta_columns();
            let changes = buffer
                .views
                .entry(d.view.name)
                .or_insert_with(|| ViewChanges::new(d.view));
            for (row, diff) in d.diffs {
                if diff == 0 {
                    continue;
                }
                let row = if delta.len() == row.len() {
                    row
                } else {
                    delta.iter().map(|&c| row[c].clone()).collect()
                };
                changes.rows.push(row);
                changes.as_ofs.push(as_of);
                changes.diffs.push(diff);
            }
        }
        buffer.first.get_or_insert(as_of);
        buffer.last = Some(as_of);
        let base = *self.commit_base.get_or_insert(as_of);
        if as_of - base < self.cfg.commit_every_ms {
            return Ok(());
        }
        if self.retry_at.is_some_and(|t| std::time::Instant::now() < t) {
            // backing off after a failure: the push stays buffered, up to the bound
            return self.check_bound();
        }
        match self.commit().await {
            Ok(()) => {
                self.retry_at = None;
                self.backoff = std::time::Duration::ZERO;
                Ok(())
            }
            Err(e) => {
                self.backoff = (self.backoff * 2).clamp(
                    std::time::Duration::from_secs(1),
                    std::time::Duration::from_secs(60),
                );
                self.retry_at = Some(std::time::Instant::now() + self.backoff);
                self.last_error = e.to_string();
                self.check_bound()?;
                Err(e)
            }
        }
    }

    /// Whether the last commit failed and the next waits for its backoff.
    pub fn backing_off(&self) -> bool {
        self.retry_at.is_some()
    }

    fn check_bound(&self) -> Result<(), SinkError> {
        if self.buffer.len() > self.cfg.max_buffered {
            return Err(SinkError::Overflow {
                target: self.store.target().to_string(),
                buffered: self.buffer.len(),
                max: self.cfg.max_buffered,
                last: self.last_error.clone(),
            });
        }
        Ok(())
    }

    /// Commits whatever is buffered (on shutdown).
    pub async fn flush(&mut self) -> Result<(), SinkError> {
        self.commit().await
    }

    /// Whether a full snapshot is due at `as_of`: snapshots are enabled and none was committed
    /// in the last `snapshot_every_ms` of `as_of` (the first one is due at once).
    pub fn snapshot_due(&self, as_of: u64) -> bool {
        self.cfg.snapshot_every_ms > 0
            && self
                .state
                .last_snapshot_as_of
                .is_none_or(|l| as_of >= l.saturating_add(self.cfg.snapshot_every_ms))
    }

    /// Writes and commits a full snapshot of `view` at `as_of`: `rows` with every column in the
    /// view's order, written sorted by key to `<view>/snapshots/as_of=<as_of>.parquet`. A view
    /// that is not configured is skipped; a snapshot already committed (a replay) is kept.
    pub async fn snapshot(
        &mut self,
        as_of: u64,
        view: ViewDef,
        rows: Vec<Vec<Value>>,
    ) -> Result<(), SinkError> {
        if !self.selected(view.name) {
            return Ok(());
        }
        self.resolve_in_doubt().await?;
        if self
            .state
            .live
            .contains_key(&files::snapshot_path(view.name, as_of))
        {
            return Ok(());
        }
        let (entry, bytes) = self
            .blocking(move || files::snapshot_file(&view, as_of, &rows))
            .await?;
        self.store.put_create(&entry.path, bytes).await?;
        let m = self.manifest(CommitKind::Snapshot, None, None, vec![entry], Vec::new());
        self.commit_manifest(m).await
    }

    /// Merges the live change files of every `(view, day)` that has at least
    /// `compact_min_files` (and at least 2) into one, committed by one manifest that adds the
    /// merged files and removes their inputs; the inputs are then deleted. The folded contents
    /// at every `as_of` stay the same.
    pub async fn compact(&mut self) -> Result<(), SinkError> {
        self.resolve_in_doubt().await?;
        let min = self.cfg.compact_min_files.max(2);
        let mut groups: BTreeMap<(String, String), Vec<FileEntry>> = BTreeMap::new();
        for f in self.state.live.values() {
            if f.kind == FileKind::Changes {
                groups
                    .entry((f.view.clone(), files::day_of(f.from_as_of)))
                    .or_default()
                    .push(f.clone());
            }
        }
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for ((view, _), entries) in groups {
            if entries.len() < min {
                continue;
            }
            let Some(def) = view_def(&view) else {
                continue;
            };
            let mut inputs = Vec::with_capacity(entries.len());
            for e in entries {
                let bytes =
                    self.store.get(&e.path).await?.ok_or_else(|| {
                        self.manifest_err(&e.path, "a live file is missing".into())
                    })?;
                inputs.push((e, bytes));
            }
            let paths: Vec<String> = inputs.iter().map(|(e, _)| e.path.clone()).collect();
            let (entry, bytes) = self
                .blocking(move || files::merge_changes(&def, inputs))
                .await?;
            if let Err(e) = self.store.put_create(&entry.path, bytes).await {
                self.delete_quietly(added.iter().map(|f: &FileEntry| f.path.clone()))
                    .await;
                return Err(e);
            }
            added.push(entry);
            removed.extend(paths);
        }
        if added.is_empty() {
            return Ok(());
        }
        let m = self.manifest(CommitKind::Compaction, None, None, added, removed.clone());
        self.commit_manifest(m).await?;
        self.delete_quietly(removed.into_iter()).await;
        Ok(())
    }

    /// Test hook: the next commit writes its data files and then fails as a crash would,
    /// without writing its manifest.
    #[doc(hidden)]
    pub fn fail_before_next_manifest(&mut self) {
        self.fail_before_manifest = true;
    }

    /// Commits the buffer: writes its change files, then the manifest.
    async fn commit(&mut self) -> Result<(), SinkError> {
        self.resolve_in_doubt().await?;
        let Some(to) = self.buffer.last else {
            return Ok(());
        };
        let from = self.buffer.first;
        let buffer = Arc::clone(&self.buffer);
        let written = self
            .blocking(move || {
                let mut all = Vec::new();
                for changes in buffer.views.values() {
                    all.extend(files::change_files(changes)?);
                }
                Ok(all)
            })
            .await?;
        let mut added = Vec::with_capacity(written.len());
        for (entry, bytes) in written {
            if let Err(e) = self.store.put_create(&entry.path, bytes).await {
                self.delete_quietly(added.iter().map(|f: &FileEntry| f.path.clone()))
                    .await;
                return Err(e);
            }
            added.push(entry);
        }
        let m = self.manifest(CommitKind::Changes, from, Some(to), added, Vec::new());
        self.commit_manifest(m).await
    }

    /// The next manifest.
    fn manifest(
        &self,
        kind: CommitKind,
        from_as_of: Option<u64>,
        to_as_of: Option<u64>,
        added: Vec<FileEntry>,
        removed: Vec<String>,
    ) -> Manifest {
        Manifest {
            format: FORMAT.to_string(),
            sequence: self.state.next_sequence,
            kind,
            committed_as_of: to_as_of.max(self.state.committed_as_of),
            from_as_of,
            to_as_of,
            added,
            removed,
        }
    }

    /// Writes `m` (create-only) and, once written, applies it.
    async fn commit_manifest(&mut self, m: Manifest) -> Result<(), SinkError> {
        let rel = manifest_path(m.sequence);
        if std::mem::take(&mut self.fail_before_manifest) {
            return Err(SinkError::Injected {
                target: self.store.target().to_string(),
                location: self.store.location(&rel),
            });
        }
        let bytes = Bytes::from(
            serde_json::to_vec_pretty(&m)
                .map_err(|e| self.manifest_err(&rel, format!("cannot encode: {e}")))?,
        );
        // in doubt from here until the store answers (also if this future is dropped)
        self.in_doubt = Some((m.clone(), bytes.clone()));
        match self.store.put_create(&rel, bytes).await {
            Ok(()) => {
                self.in_doubt = None;
                self.applied(&m)
            }
            Err(e @ SinkError::Conflict { .. }) => {
                self.in_doubt = None;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Takes a committed manifest into the state and drops what it committed from the buffer.
    fn applied(&mut self, m: &Manifest) -> Result<(), SinkError> {
        self.state
            .apply(m)
            .map_err(|reason| self.manifest_err(&manifest_path(m.sequence), reason))?;
        if let Some(c) = self.state.committed_as_of {
            if m.kind == CommitKind::Changes {
                Arc::make_mut(&mut self.buffer).drain_through(c);
                self.commit_base = Some(c);
            }
        }
        Ok(())
    }

    /// Settles a manifest whose write had an unknown outcome: if it exists with our contents,
    /// it is committed; if it does not exist, it is forgotten (its data files are garbage or
    /// written again identically); other contents are another writer's commit.
    async fn resolve_in_doubt(&mut self) -> Result<(), SinkError> {
        let Some((m, bytes)) = self.in_doubt.take() else {
            return Ok(());
        };
        let rel = manifest_path(m.sequence);
        match self.store.get(&rel).await {
            Ok(None) => Ok(()),
            Ok(Some(found)) if found == bytes => self.applied(&m),
            Ok(Some(_)) => Err(SinkError::Conflict {
                target: self.store.target().to_string(),
                location: self.store.location(&rel),
            }),
            Err(e) => {
                self.in_doubt = Some((m, bytes));
                Err(e)
            }
        }
    }

    /// Deletes files, logging failures (what remains is garbage collected on the next open).
    async fn delete_quietly(&self, paths: impl Iterator<Item = String>) {
        for rel in paths {
            if let Err(e) = self.store.delete(&rel).await {
                tracing::warn!(target: "shopdiff::sink", "{e}");
            }
        }
    }

    /// Runs CPU-bound encoding on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, files::FileError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let target = self.store.target().to_string();
        match tokio::task::spawn_blocking(f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err((rel, source))) => Err(SinkError::Data {
                location: self.store.location(&rel),
                target,
                source: Box::new(source),
            }),
            Err(e) => Err(SinkError::Task {
                target,
                reason: e.to_string(),
            }),
        }
    }
}
