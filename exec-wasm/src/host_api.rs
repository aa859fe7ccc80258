//! The host API a WASM contract may import: names, signatures and gas prices.
//! docs/wasm-host-api.md is the author-facing description of the same table.

use wasmparser::ValType::{self, I32, I64};

/// Module name of every import.
pub const HOST_MODULE: &str = "keel";
/// Export called for every message: `call(input_len: i32) -> i32` (0 = return, else revert).
pub const ENTRY_POINT: &str = "call";
/// Optional constructor run once at deploy with the constructor arguments as input.
pub const CONSTRUCTOR: &str = "deploy";
/// The module's linear memory, through which all host I/O goes.
pub const MEMORY_EXPORT: &str = "memory";

/// `(name, params, results)` of every host function.
pub const HOST_FUNCTIONS: &[(&str, &[ValType], &[ValType])] = &[
    ("read_input", &[I32], &[]),
    ("return_data", &[I32, I32], &[]),
    ("revert", &[I32, I32], &[]),
    ("storage_load", &[I32, I32], &[]),
    ("storage_store", &[I32, I32], &[]),
    ("caller", &[I32], &[]),
    ("address", &[I32], &[]),
    ("call_value", &[I32], &[]),
    ("balance", &[I32, I32], &[]),
    ("block_height", &[], &[I64]),
    ("block_epoch", &[], &[I64]),
    ("block_timestamp", &[], &[I64]),
    ("emit_log", &[I32, I32, I32, I32], &[]),
    ("call", &[I32, I32, I32, I32, I64], &[I32]),
    ("static_call", &[I32, I32, I32, I64], &[I32]),
    ("return_data_size", &[], &[I32]),
    ("return_data_copy", &[I32, I32, I32], &[]),
    ("gas_left", &[], &[I64]),
    ("blake3", &[I32, I32, I32], &[]),
    ("keccak256", &[I32, I32, I32], &[]),
    ("tx_session_key", &[I32], &[I32]),
    ("tx_session_scope", &[I32], &[I32]),
    ("caller_tags", &[I32], &[I32]),
];

/// The signature of a host function, or `None` if no such import exists.
pub fn import_signature(name: &str) -> Option<(&'static [ValType], &'static [ValType])> {
    HOST_FUNCTIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, p, r)| (*p, *r))
}

/// Gas prices of host functions (in EVM gas; storage, balance and calls are priced by the
/// caller's EVM rules, EIP-2929/2200, and returned by the [`crate::Host`]).
pub mod gas {
    /// Every host call, for the boundary crossing (saving and restoring the frame's
    /// registers, the host's bookkeeping): calibrated with the operator table so that a loop
    /// of host calls costs the same wall time per gas as the EVM (BENCHMARKS.md).
    pub const HOST_CALL_BASE: u64 = 50;
    /// Copying bytes in or out of linear memory, per 32-byte word (as EVM CALLDATACOPY).
    pub const COPY_PER_WORD: u64 = 3;
    /// Logs: as EVM LOGn.
    pub const LOG_BASE: u64 = 375;
    pub const LOG_PER_TOPIC: u64 = 375;
    pub const LOG_PER_BYTE: u64 = 8;
    /// keccak256: as EVM SHA3.
    pub const KECCAK_BASE: u64 = 30;
    pub const KECCAK_PER_WORD: u64 = 6;
    /// blake3: cheaper per word than keccak, as it is faster natively.
    pub const BLAKE3_BASE: u64 = 20;
    pub const BLAKE3_PER_WORD: u64 = 2;
    /// Instantiating a module (fresh memory, data segments), per call frame.
    pub const INSTANTIATE_BASE: u64 = 500;
    /// Per page of initial memory zeroed at instantiation.
    pub const INSTANTIATE_PER_PAGE: u64 = 200;
    /// Deploying a module: base (as CREATE) and per byte (as the EVM code deposit).
    pub const DEPLOY_BASE: u64 = 32_000;
    pub const DEPLOY_PER_BYTE: u64 = 200;

    /// Gas for copying `len` bytes.
    pub fn copy(len: u64) -> u64 {
        COPY_PER_WORD * len.div_ceil(32)
    }

    // A receipt bounds its logs by what `MAX_TX_GAS` buys at the EVM's log prices
    // (keel_types::limits). A cheaper WASM log would let one transaction emit logs whose
    // receipt no longer decodes, and a block holding it would halt every node.
    use keel_types::limits::{MAX_LOGS_PER_TX, MAX_TOTAL_LOG_DATA_BYTES, MAX_TX_GAS};
    const _: () = assert!(MAX_TX_GAS / (HOST_CALL_BASE + LOG_BASE) <= MAX_LOGS_PER_TX as u64);
    const _: () = assert!(MAX_TX_GAS / LOG_PER_BYTE <= MAX_TOTAL_LOG_DATA_BYTES as u64);
}
