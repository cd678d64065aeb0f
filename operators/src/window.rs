//! Trailing sliding windows over ticks, correct under retractions.
//!
//! # Semantics
//!
//! Time is `u64` logical time in ms; ticks are multiples of a tick length (default 1000). A
//! record `d` has a window start `lo(d)` (for shopdiff `ceil_tick(timestamp)`), and a window of
//! width `W` holds it during the logical times `[lo(d), lo(d) + W)`: in effect from its start
//! tick, gone `W` later. At a tick `T` the window therefore holds the records present at `T`
//! with `T - W < lo(d) <= T`, the contract's "trailing and closed on the right" window.
//!
//! The record's own update may take effect at any logical time `t`: later than `lo(d)` (a late
//! record; it enters at `t`), earlier (it enters at `lo(d)`), or at or after `lo(d) + W` (it has
//! already expired and produces nothing). A later `-1` retracts it, and a multiplicity of 2
//! counts twice. In general [`TemporalFilter`] rewrites each update `(d, t, r)` into
//! `(d, max(t, lo), r)` and `(d, max(t, hi), -r)`, which keeps `d` exactly while it is present in
//! the input *and* `lo <= time < hi`.
//!
//! # Why not a delayed negation
//!
//! The textbook window `c.concat(c.delay(|t| t + W).negate())` schedules the removal of each
//! *update* `W` after the update's own time. That is right for inserts only. A record inserted
//! at 0 and retracted at 4, with `W = 10`, yields `+1@0, -1@4, -1@10, +1@14`: the retraction
//! is itself "expired" at 14, so between 10 and 14 the window holds the record `-1` times and
//! a count goes negative. It is also wrong for late records, whose removal must be `W` after
//! their start, not after their arrival. Here the removal time comes from the data (`lo + W`),
//! so the insert contributes `+1@0, -1@10` and the retraction `-1@4, +1@10`: the two
//! `@10` updates cancel and the record leaves the window at 4 for good.
//!
//! # Cost
//!
//! Per input update, [`TemporalFilter`] emits at most two updates and parks the future one(s)
//! in a time-ordered map: `O(log P)` where `P` is the number of distinct waiting times (at
//! most `W / tick` plus future starts), and memory for one waiting update per record in the
//! window. Parked updates leave when the input frontier reaches their time, consolidated
//! (an insert and its retraction inside the window cancel there), under the single
//! capability the operator holds for the earliest waiting time. They are parked here, rather
//! than sent downstream at once, because an arrangement's batcher re-merges every update it
//! holds for a future time at each frontier advance. The aggregates of [`WindowAggregates`]
//! keep their per-key state in [`crate::keyed`]'s hash maps: one lookup per change (plus
//! `O(log values)` for the maximum), no arrangement and no history.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use differential_dataflow::input::Input;
//! use shopdiff_operators::window::WindowAggregates;
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&seen);
//! timely::execute(timely::Config::thread(), move |worker| {
//!     let sink = Arc::clone(&sink);
//!     // (user, start tick in ms), counted over a 10 s window.
//!     let mut input = worker.dataflow::<u64, _, _>(|scope| {
//!         let (input, lines) = scope.new_collection::<(char, u64), isize>();
//!         lines
//!             .window_count(10_000, |&(_, start)| start)
//!             .inspect(move |update| sink.lock().unwrap().push(*update));
//!         input
//!     });
//!     input.insert(('a', 0));
//!     input.advance_to(4_000);
//!     input.remove(('a', 0)); // retracted at 4 s, before it would expire at 10 s
//!     input.insert(('b', 1_000)); // late: starts at 1 s, arrives at 4 s, leaves at 11 s
//!     input.close();
//! })
//! .unwrap();
//! let mut seen = seen.lock().unwrap().clone();
//! seen.sort_by_key(|&(_, t, _)| t);
//! assert_eq!(
//!     seen,
//!     vec![
//!         (('a', 1), 0, 1),
//!         (('a', 1), 4_000, -1),
//!         (('b', 1), 4_000, 1),
//!         (('b', 1), 11_000, -1),
//!     ]
//! );
//! ```

mod aggregates;
mod temporal;

pub use aggregates::WindowAggregates;
pub use temporal::{SlidingWindow, TemporalFilter};
