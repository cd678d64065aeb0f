//! shopdiff's connectors: sources and sinks. They never touch timely: sources yield batches of
//! `(record, time, diff)` with a resumable position, sinks take view rows.

pub mod generator;
