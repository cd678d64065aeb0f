//! shopdiff-dataflows: one function per view of the contract (`/work/shared/spec/views.md`),
//! collections in, collections out, no I/O.
//!
//! * [`config`]: the views' configuration (tick, fraud rules), loaded from TOML.
//! * [`batch`]: the naive, non-incremental twin of every view at one `as_of`, the reference the
//!   incremental dataflows are tested against.

pub mod batch;
pub mod cohorts;
pub mod common;
pub mod config;
pub mod data_quality;
pub mod fraud;
pub mod funnel;
pub mod inventory;
pub mod product_performance;
pub mod revenue;
pub mod rfm;
pub mod views;
