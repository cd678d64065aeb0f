//! The dead-letter file (`--dead-letters FILE`): one JSON object per rejected record, with its
//! source, reason code, field, where it came from (file, the live generator, or PostgreSQL)
//! and position, and the record's text, for a replay, a live run and CDC alike.
//!
//! Sources of one run that name the same file share one writer (the first to open it creates
//! it), so that their lines never interleave mid-line.

use crate::files::FileError;
use shopdiff_schemas::{Rejection, Source};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

struct Writer {
    path: PathBuf,
    w: std::io::BufWriter<std::fs::File>,
}

type Shared = Arc<Mutex<Writer>>;

/// The files open for dead letters in this process, by path.
static OPEN: Mutex<Vec<(PathBuf, Weak<Mutex<Writer>>)>> = Mutex::new(Vec::new());

/// The optional dead-letter file: one JSON object per rejected record. Clones write to the
/// same file.
#[derive(Clone, Default)]
pub struct DeadLetters {
    out: Option<Shared>,
}

impl DeadLetters {
    /// Opens `path` (creating or truncating it), or joins the writer of this process that has
    /// it open already; `None` writes nothing.
    pub fn open(path: Option<&Path>) -> Result<Self, FileError> {
        let Some(p) = path else {
            return Ok(DeadLetters { out: None });
        };
        let key = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(_, w)| w.strong_count() > 0);
        if let Some(shared) = open
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(DeadLetters { out: Some(shared) });
        }
        let f = std::fs::File::create(p).map_err(|source| FileError::Io {
            path: p.to_path_buf(),
            source,
        })?;
        let shared = Arc::new(Mutex::new(Writer {
            path: p.to_path_buf(),
            w: std::io::BufWriter::new(f),
        }));
        open.push((key, Arc::downgrade(&shared)));
        Ok(DeadLetters { out: Some(shared) })
    }

    /// Whether records are written anywhere.
    pub fn is_open(&self) -> bool {
        self.out.is_some()
    }

    pub fn write(
        &mut self,
        source: Source,
        rej: Rejection,
        file: &Path,
        line: u64,
        text: &str,
    ) -> Result<(), FileError> {
        let Some(shared) = &self.out else {
            return Ok(());
        };
        let obj = serde_json::json!({
            "source": source.as_str(),
            "reason": rej.reason.as_str(),
            "field": rej.field,
            "file": file.display().to_string(),
            "line": line,
            "record": text,
        });
        let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
        let Writer { path, w } = &mut *g;
        writeln!(w, "{obj}").map_err(|source| FileError::Io {
            path: path.clone(),
            source,
        })
    }

    pub fn flush(&mut self) -> Result<(), FileError> {
        match &self.out {
            Some(shared) => {
                let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
                let Writer { path, w } = &mut *g;
                w.flush().map_err(|source| FileError::Io {
                    path: path.clone(),
                    source,
                })
            }
            None => Ok(()),
        }
    }
}
