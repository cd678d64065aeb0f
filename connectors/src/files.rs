//! Reading a recorded stream's files: plain or zstd JSON Lines, line by line, with positions.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Why a recorded stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: no such directory")]
    NoDir { path: PathBuf },
    #[error("{path}: missing (expected {name}.jsonl or {name}.jsonl.zst)")]
    Missing { path: PathBuf, name: &'static str },
    #[error("{path}: both {name}.jsonl and {name}.jsonl.zst exist; keep one")]
    Ambiguous { path: PathBuf, name: &'static str },
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: truncated or corrupt zstd stream after line {line} ({bytes} bytes decompressed): {source}")]
    Truncated {
        path: PathBuf,
        line: u64,
        bytes: u64,
        source: io::Error,
    },
}

/// Finds `<dir>/<name>.jsonl` or `<dir>/<name>.jsonl.zst`. `Ok(None)` when neither exists.
pub fn find(dir: &Path, name: &'static str) -> Result<Option<PathBuf>, FileError> {
    if !dir.is_dir() {
        return Err(FileError::NoDir {
            path: dir.to_path_buf(),
        });
    }
    let plain = dir.join(format!("{name}.jsonl"));
    let zst = dir.join(format!("{name}.jsonl.zst"));
    match (plain.exists(), zst.exists()) {
        (true, true) => Err(FileError::Ambiguous {
            path: dir.to_path_buf(),
            name,
        }),
        (true, false) => Ok(Some(plain)),
        (false, true) => Ok(Some(zst)),
        (false, false) => Ok(None),
    }
}

/// As [`find`], but the file must exist.
pub fn require(dir: &Path, name: &'static str) -> Result<PathBuf, FileError> {
    find(dir, name)?.ok_or_else(|| FileError::Missing {
        path: dir.join(format!("{name}.jsonl")),
        name,
    })
}

/// Reads JSON Lines from a plain or `.zst` file, one line at a time, into a reused buffer.
pub struct LineReader {
    path: PathBuf,
    inner: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    line: u64,
    bytes: u64,
    zstd: bool,
}

impl LineReader {
    pub fn open(path: &Path) -> Result<Self, FileError> {
        let io_err = |source| FileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let zstd = path.extension().is_some_and(|e| e == "zst");
        let inner: Box<dyn BufRead + Send> = if zstd {
            let dec = zstd::stream::read::Decoder::new(file).map_err(io_err)?;
            Box::new(BufReader::with_capacity(1 << 20, dec))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, file))
        };
        Ok(LineReader {
            path: path.to_path_buf(),
            inner,
            buf: Vec::with_capacity(4096),
            line: 0,
            bytes: 0,
            zstd,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The 1-based number of the line last returned.
    pub fn line_no(&self) -> u64 {
        self.line
    }

    /// The next line (without its newline) as bytes, with its 1-based number; `Ok(None)` at the end.
    pub fn next_line(&mut self) -> Result<Option<(u64, &[u8])>, FileError> {
        self.buf.clear();
        match self.inner.read_until(b'\n', &mut self.buf) {
            Ok(0) => Ok(None),
            Ok(n) => {
                self.line += 1;
                self.bytes += n as u64;
                let mut end = self.buf.len();
                while end > 0 && (self.buf[end - 1] == b'\n' || self.buf[end - 1] == b'\r') {
                    end -= 1;
                }
                Ok(Some((self.line, &self.buf[..end])))
            }
            Err(source) if self.zstd => Err(FileError::Truncated {
                path: self.path.clone(),
                line: self.line,
                bytes: self.bytes,
                source,
            }),
            Err(source) => Err(FileError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }
}
