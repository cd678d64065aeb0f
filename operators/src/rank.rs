//! Incremental global rank / ntile (being written).
