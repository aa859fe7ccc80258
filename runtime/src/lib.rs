//! keel's runtime: the block executor that validates each transaction, runs it in the EVM
//! or WASM over one journaled state (with calls across environments in both directions),
//! charges fees and produces receipts and the block's state diff.

pub mod bridge;
pub mod executor;
pub mod jurisdiction;
pub mod parallel;
pub mod policy;
pub mod policy_cache;
pub mod precheck;
pub mod registry_read;
mod schedule;
pub mod signatures;
pub mod trace;
pub mod validators;

pub use bridge::{deploy_input, WASM_DEPLOYER};
pub use executor::{BlockOutput, CallRequest, Runtime, RuntimeConfig, RuntimeError};
pub use keel_exec_evm::{BlockContext, BlockHashes};
pub use parallel::{ParallelStats, MAX_EXEC_THREADS};
pub use trace::{CallFrame, CallKind, FrameError, Trace};
