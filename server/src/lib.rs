//! shopdiff-server
