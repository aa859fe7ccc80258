//! keel's WASM environment: deploy-time validation, singlepass compilation with gas metering
//! and call-depth instrumentation, a compiled-module cache, and the host API a frame runs with.
//!
//! This crate knows nothing of revm or RocksDB: a frame reaches the world only through the
//! [`Host`] trait, which the runtime implements over the one journaled state.

pub mod cache;
pub mod exec;
pub mod host_api;
pub mod limits;
mod lru;
pub mod meter;
pub mod standalone;
pub mod validate;

pub use cache::{compile_artifact, CacheError, LoadedModule, ModuleCache, MAX_DISK_CACHE_BYTES};
pub use exec::{
    execute, keccak256, CallRequest, CallResult, Exit, FrameContext, Host, HostError, Outcome,
    StoreCost, TrapKind,
};
pub use meter::keel_middlewares;
pub use standalone::{ExportCall, IntValue, StandaloneError, StandaloneInstance};
pub use validate::{validate, ModuleFacts, ValidationError};

pub use keel_types::state_key::WASM_CODE_PREFIX;

/// Whether account code (as the EVM stores it) is a WASM module, and the module if so.
pub fn wasm_module_of(code: &[u8]) -> Option<&[u8]> {
    code.strip_prefix(&WASM_CODE_PREFIX[..])
}
