//! Shared helpers for the numbered examples.

use std::path::PathBuf;

/// The committed example stream, `examples/data/`.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}
