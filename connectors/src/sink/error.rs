//! The errors of the continuous Parquet sink. Each names the sink's target, and, where one is
//! involved, the full location of the object (`s3://bucket/prefix/...` or a local path).

use crate::parquet::SinkError as EncodeError;

/// Why the sink could not open, buffer, commit, snapshot or compact.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration cannot work (bad target, unknown view, unusable S3 options).
    #[error("sink {target}: {reason}")]
    Config { target: String, reason: String },
    /// An object-store request failed (after retries where the failure looked transient).
    #[error("sink {target}: cannot {op} {location} (after {attempts} attempt(s)): {source}{hint}")]
    Store {
        target: String,
        op: &'static str,
        location: String,
        attempts: u32,
        /// A likely cause in words (missing bucket, server down), or empty.
        hint: String,
        #[source]
        source: Box<object_store::Error>,
    },
    /// Another writer created this object with other contents (most often the manifest of the
    /// sequence this sink was about to commit): two sinks write the same target. The sink keeps
    /// its buffer but cannot commit; reopen it to continue after the other writer's commits.
    #[error("sink {target}: {location} already exists with other contents (another writer on this target?); reopen the sink")]
    Conflict { target: String, location: String },
    /// A committed manifest cannot be read or does not follow the previous one.
    #[error("sink {target}: manifest {location}: {reason}")]
    Manifest {
        target: String,
        location: String,
        reason: String,
    },
    /// A pushed row or snapshot does not fit its view's columns, or a file cannot be encoded or
    /// decoded as Parquet.
    #[error("sink {target}: {location}: {source}")]
    Data {
        target: String,
        location: String,
        #[source]
        source: Box<EncodeError>,
    },
    /// `push` was called with an `as_of` that is not after the previous push.
    #[error("sink {target}: as_of {as_of} pushed after as_of {last}; pushes must increase")]
    Order {
        target: String,
        as_of: u64,
        last: u64,
    },
    /// Commits failed for so long that the buffer reached its bound: the sink stops for good
    /// (a restart resumes after the last committed `as_of`).
    #[error("sink {target}: commits have failed while {buffered} changes were buffered (at most {max}, --sink-max-buffered); the sink fails for good, a restart resumes after the last committed as_of; last error: {last}")]
    Overflow {
        target: String,
        buffered: usize,
        max: usize,
        last: String,
    },
    /// A blocking encoding task did not finish (it panicked or was cancelled).
    #[error("sink {target}: encoding task failed: {reason}")]
    Task { target: String, reason: String },
    /// A failure injected by a test between the data files and the manifest.
    #[doc(hidden)]
    #[error("sink {target}: injected failure before committing {location}")]
    Injected { target: String, location: String },
}
