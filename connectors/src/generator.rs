//! The built-in workload generator (being written).
