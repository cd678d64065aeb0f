//! Shared helpers for the benchmark binaries.

/// The process's peak resident set size in MB (`VmHWM` from `/proc/self/status`), 0 if unknown.
pub use shopdiff_server::metrics::peak_rss_mb;
