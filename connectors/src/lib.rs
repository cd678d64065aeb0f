//! shopdiff's connectors: sources and sinks. They never touch timely: sources yield batches of
//! `(record, time, diff)` with a resumable position, sinks take view rows.

pub mod dead_letters;
pub mod files;
pub mod generator;
pub mod ingest;
pub mod kafka;
pub mod live;
pub mod parquet;
pub mod postgres;
pub mod replay;
pub mod sink;
pub mod source;
pub mod tables;

pub use ingest::{Ingest, Stream, TimeConfig};
pub use replay::{RecordedTables, Replay, ReplayOptions, ReplayStats};
pub use sink::{ParquetSink, SinkConfig, SinkError as ParquetSinkError, ViewDelta};
pub use source::Batch;
