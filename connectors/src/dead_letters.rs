//! The dead-letter file (`--dead-letters FILE`): one JSON object per rejected record, with its
//! source, reason code, field, where it came from (file, or the live generator) and position,
//! and the record's text, for a replay and a live run alike.

use crate::files::FileError;
use shopdiff_schemas::{Rejection, Source};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The optional dead-letter file: one JSON object per rejected record.
pub struct DeadLetters {
    out: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
}

impl DeadLetters {
    pub fn open(path: Option<&Path>) -> Result<Self, FileError> {
        let out = match path {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|source| FileError::Io {
                    path: p.to_path_buf(),
                    source,
                })?;
                Some((p.to_path_buf(), std::io::BufWriter::new(f)))
            }
            None => None,
        };
        Ok(DeadLetters { out })
    }

    pub fn write(
        &mut self,
        source: Source,
        rej: Rejection,
        file: &Path,
        line: u64,
        text: &str,
    ) -> Result<(), FileError> {
        let Some((path, w)) = &mut self.out else {
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
        writeln!(w, "{obj}").map_err(|source| FileError::Io {
            path: path.clone(),
            source,
        })
    }

    pub fn flush(&mut self) -> Result<(), FileError> {
        match &mut self.out {
            Some((path, w)) => w.flush().map_err(|source| FileError::Io {
                path: path.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}
