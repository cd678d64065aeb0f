//! Generic incremental operators on differential dataflow, with no e-commerce names:
//!
//! * [`rank`]: an incremental global rank / ntile (`(key, metric)` changes in, `(key, bucket)`
//!   changes out), costing `O(log n + changed rows)` per change.
//! * [`window`]: trailing sliding windows over ticks, correct under retractions.

pub mod rank;
pub mod window;
