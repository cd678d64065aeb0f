//! Trailing sliding windows (being written).
