//! shopdiff-dataflows
