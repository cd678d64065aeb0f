//! Configuration of the continuous Parquet sink: where it writes (a local directory or an S3
//! prefix), which views, how often it commits and snapshots, and how hard it retries.

use std::fmt;

/// What a [`ParquetSink`](super::ParquetSink) writes, where and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// A local directory (`out/sink` or `file:///abs/out/sink`) or an S3 prefix
    /// (`s3://bucket/prefix`). A local directory is created when missing; a bucket must exist.
    pub target: String,
    /// The views written, by name; `None` writes every view.
    pub views: Option<Vec<String>>,
    /// The interval of `as_of` (milliseconds) between two commits of buffered changes.
    pub commit_every_ms: u64,
    /// The interval of `as_of` (milliseconds) between two full snapshots; 0 never snapshots.
    pub snapshot_every_ms: u64,
    /// [`compact`](super::ParquetSink::compact) merges the change files of a `(view, day)` once
    /// there are at least this many (never fewer than 2).
    pub compact_min_files: usize,
    /// How to reach S3 (used only for `s3://` targets).
    pub s3: S3Options,
    /// How often a failed object-store request is tried before it is reported.
    pub retry: RetryPolicy,
    /// Changes buffered at most while commits fail; past it the sink fails for good
    /// ([`SinkError::Overflow`](super::SinkError::Overflow)) rather than grow without bound.
    pub max_buffered: usize,
}

impl SinkConfig {
    /// The defaults for `target`: all views, a commit per minute of `as_of`, a snapshot per
    /// hour, compaction from 8 files, S3 settings from the environment.
    pub fn new(target: impl Into<String>) -> SinkConfig {
        SinkConfig {
            target: target.into(),
            views: None,
            commit_every_ms: 60_000,
            snapshot_every_ms: 3_600_000,
            compact_min_files: 8,
            s3: S3Options::default(),
            retry: RetryPolicy::default(),
            max_buffered: 5_000_000,
        }
    }
}

impl Default for SinkConfig {
    fn default() -> SinkConfig {
        SinkConfig::new("")
    }
}

/// How to reach an S3-compatible store. Every field left unset is taken from the environment
/// when the sink opens: `AWS_ENDPOINT_URL`, `AWS_REGION` (or `AWS_DEFAULT_REGION`, else
/// `us-east-1`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP` (`true` or `1`).
/// Requests are path-style (`endpoint/bucket/key`), which local servers need; an `http://`
/// endpoint implies `allow_http`.
#[derive(Clone, Default, PartialEq)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: bool,
}

impl fmt::Debug for S3Options {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Options {
    /// These options with every unset field taken from the process environment.
    pub fn with_env(self) -> S3Options {
        self.with_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// These options with every unset field taken from `get` (an environment).
    pub fn with_lookup(self, get: impl Fn(&str) -> Option<String>) -> S3Options {
        let endpoint = self.endpoint.or_else(|| get("AWS_ENDPOINT_URL"));
        let allow_http = self.allow_http
            || get("AWS_ALLOW_HTTP").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
            || endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"));
        S3Options {
            endpoint,
            region: self
                .region
                .or_else(|| get("AWS_REGION"))
                .or_else(|| get("AWS_DEFAULT_REGION")),
            access_key_id: self.access_key_id.or_else(|| get("AWS_ACCESS_KEY_ID")),
            secret_access_key: self
                .secret_access_key
                .or_else(|| get("AWS_SECRET_ACCESS_KEY")),
            allow_http,
        }
    }
}

/// Retries of object-store requests that failed for a reason that may pass (a connection
/// refused or reset, a timeout, a server error). Only remote stores retry; a local directory
/// reports its first error. The S3 client itself also retries each request twice within the
/// attempt, so a server that is down is reported after `attempts` rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The pause after the first failed attempt; it doubles after each further one.
    pub first_backoff_ms: u64,
    /// The longest pause.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            first_backoff_ms: 200,
            max_backoff_ms: 5_000,
        }
    }
}
