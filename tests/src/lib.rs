//! keel-tests: shared fixtures for keel's cross-crate integration tests — deterministic
//! workloads that a test and a child process can both regenerate from a height alone.

#![forbid(unsafe_code)]

pub mod sim;
pub mod workload;
