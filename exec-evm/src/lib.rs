//! keel's EVM environment: revm reading keel's one state through the `StateView` trait, the
//! block context taken from keel headers, and the mapping of revm's post-transaction state
//! back into a keel `StateDiff`.
//!
//! Accounts keep one record for both environments. The EVM sees WASM code as
//! `0xEF 0xF0 0x00 ‖ module` (as in Arbitrum Stylus), so `EXTCODESIZE`/`EXTCODEHASH` work on
//! WASM contracts and no EVM code can ever be mistaken for WASM (EIP-3541).

#![forbid(unsafe_code)]

mod code_cache;
mod db;
mod deferred_fee;
mod diff;
mod env;
mod evm;

pub use code_cache::{CodeCache, CODE_CACHE_BYTES, CODE_CACHE_ENTRIES};
pub use db::{evm_code_bytes, BlockHashes, DbError, KeelDb, KeptSpends, NoBlockHashes};
pub use diff::{apply_evm_state, DiffError};
pub use env::{block_env, cfg_env, BlockContext, SPEC};
pub use evm::{context, eth_evm, evm, evm_with_inspector, EvmOutcome, KeelCtx, KeelEvm};
pub use revm;

use keel_types::Address;

/// keel address → revm address (the same 20 bytes).
pub fn to_revm(address: &Address) -> revm::primitives::Address {
    revm::primitives::Address::from(address.0)
}

/// revm address → keel address.
pub fn from_revm(address: &revm::primitives::Address) -> Address {
    Address(address.0 .0)
}

/// keel U256 (ruint) → revm U256 (also ruint; the same type in different crates' names).
pub fn u256_to_revm(value: &keel_types::U256) -> revm::primitives::U256 {
    revm::primitives::U256::from_be_bytes(value.to_be_bytes::<32>())
}

pub fn u256_from_revm(value: &revm::primitives::U256) -> keel_types::U256 {
    keel_types::U256::from_be_bytes(value.to_be_bytes::<32>())
}
