//! keel-tests: keel's cross-crate test harnesses — the consensus simulator (`sim`), the
//! full-stack simulator of consensus, application and store (`stack`), and deterministic
//! workloads that a test and a child process can both regenerate from a height alone.

#![forbid(unsafe_code)]

pub mod sim;
pub mod stack;
pub mod workload;
