//! Manifests: the commit log of a sink (format in the [`sink`](super) module docs). Each commit
//! is one create-only JSON object `_manifest/MANIFEST-<20-digit sequence>.json`; replaying them
//! in sequence order gives the live files, the resume point and the last snapshot.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The directory of the manifests, below the sink's root.
pub const MANIFEST_DIR: &str = "_manifest";
/// The value of every manifest's `format` field.
pub const FORMAT: &str = "shopdiff.sink.manifest/1";

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitKind {
    /// Buffered changes up to `to_as_of` (possibly none: time advanced without changes).
    Changes,
    /// One full snapshot of a view.
    Snapshot,
    /// Change files merged: `added` replaces `removed` with the same rows.
    Compaction,
}

/// What a data file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// `(delta columns..., as_of, diff)` rows of one view and one UTC day of `as_of`.
    Changes,
    /// Every column of every row of one view at one `as_of`.
    Snapshot,
}

/// A data file added by a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The path below the sink's root, `/`-separated.
    pub path: String,
    pub view: String,
    pub kind: FileKind,
    /// The smallest and greatest `as_of` of the file's rows (a snapshot's `as_of` for both).
    pub from_as_of: u64,
    pub to_as_of: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// One commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// 0, 1, 2, ... without gaps; the object's name carries it too.
    pub sequence: u64,
    pub kind: CommitKind,
    /// After this commit, every change with `as_of <= committed_as_of` is in the live files
    /// (none before the first change commit). Snapshots and compactions carry it over.
    pub committed_as_of: Option<u64>,
    /// A change commit covers the `as_of`s in `(previous committed_as_of, to_as_of]`;
    /// `from_as_of` is the first `as_of` pushed in it. Both are `null` for other commits.
    pub from_as_of: Option<u64>,
    pub to_as_of: Option<u64>,
    /// Data files that become live.
    pub added: Vec<FileEntry>,
    /// Paths of live files that stop being live (compaction).
    pub removed: Vec<String>,
}

/// The object name of a sequence's manifest, below the root.
pub fn manifest_path(sequence: u64) -> String {
    format!("{MANIFEST_DIR}/MANIFEST-{sequence:020}.json")
}

/// The sequence of a manifest path (relative to the root), if it is one.
pub fn parse_manifest_path(rel: &str) -> Option<u64> {
    let name = rel.strip_prefix(MANIFEST_DIR)?.strip_prefix('/')?;
    let digits = name.strip_prefix("MANIFEST-")?.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What the manifests committed so far say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The sequence of the next manifest.
    pub next_sequence: u64,
    pub committed_as_of: Option<u64>,
    /// The greatest `as_of` of a committed snapshot.
    pub last_snapshot_as_of: Option<u64>,
    /// Live data files by path.
    pub live: BTreeMap<String, FileEntry>,
}

impl State {
    /// Applies the next manifest; an error says why it does not follow.
    pub fn apply(&mut self, m: &Manifest) -> Result<(), String> {
        if m.format != FORMAT {
            return Err(format!("format {:?}, expected {FORMAT:?}", m.format));
        }
        if m.sequence != self.next_sequence {
            return Err(format!(
                "sequence {} follows sequence {} (a manifest is missing)",
                m.sequence,
                self.next_sequence as i128 - 1
            ));
        }
        if let (Some(new), Some(old)) = (m.committed_as_of, self.committed_as_of) {
            if new < old {
                return Err(format!("committed_as_of {new} goes back from {old}"));
            }
        }
        for path in &m.removed {
            if self.live.remove(path).is_none() {
                return Err(format!("removes {path}, which is not live"));
            }
        }
        for f in &m.added {
            if self.live.insert(f.path.clone(), f.clone()).is_some() {
                return Err(format!("adds {}, which is already live", f.path));
            }
            if f.kind == FileKind::Snapshot {
                self.last_snapshot_as_of = self.last_snapshot_as_of.max(Some(f.to_as_of));
            }
        }
        self.committed_as_of = self.committed_as_of.max(m.committed_as_of);
        self.next_sequence += 1;
        Ok(())
    }
}
