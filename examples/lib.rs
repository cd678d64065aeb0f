//! Shared helpers for the numbered examples.
