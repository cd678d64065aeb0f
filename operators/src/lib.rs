//! Generic incremental operators on differential dataflow, with no e-commerce names:
//!
//! * [`rank`]: an incremental global rank / ntile (`(key, metric)` changes in, `(key, bucket)`
//!   changes out), costing `O(log n + changed rows)` per change.
//! * [`keyed`]: per-key folds and sums kept in a hash map for a totally ordered time (changes
//!   in, one row per key out), cheaper than `reduce` / `count` when every key changes at its own
//!   ticks.
//! * [`window`]: trailing sliding windows over ticks, correct under retractions.
//! * [`state_size`]: each operator's entries and table bytes, for metrics.

pub mod keyed;
pub mod rank;
pub mod state_size;
pub mod window;
