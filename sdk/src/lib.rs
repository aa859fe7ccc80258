//! keel-sdk: write keel WASM contracts in Rust (`#![no_std]` + `alloc`) with typed storage
//! laid out like Solidity's, method dispatch by Solidity selector, ABI encoding, events,
//! Solidity-compatible errors and typed calls into either environment — and test them with
//! `cargo test` on a native test VM (`testvm`) that runs the same code.
//!
//! The same source builds two ways: for wasm32 (Debian's rustc with
//! libstd-rust-dev-wasm32, see docs/sdk.md and scripts/contracts), where `host` is keel's
//! imported host functions; and natively as a workspace crate, where `host` is the test VM.
#![no_std]
#![cfg_attr(keel_alloc_error_handler, feature(alloc_error_handler))]

#[doc(hidden)]
pub extern crate alloc;
#[cfg(not(target_arch = "wasm32"))]
extern crate std;

pub mod abi;
pub mod entry;
pub mod host;
pub mod keccak;
mod macros;
pub mod revert;
#[cfg(target_arch = "wasm32")]
mod rt;
pub mod storage;
#[cfg(not(target_arch = "wasm32"))]
pub mod testvm;
mod word;

pub use abi::{AbiReturn, AbiType, Bytes};
pub use entry::Contract;
pub use revert::Revert;
pub use word::{Address, B256, U256};

/// What a contract file usually needs: `use keel_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::abi::Bytes;
    pub use crate::host;
    pub use crate::revert::Revert;
    pub use crate::storage::{
        StorageAddress, StorageB256, StorageBool, StorageBytes, StorageMap, StorageString,
        StorageU256, StorageU64, StorageValue, StorageVec,
    };
    pub use crate::word::{Address, B256, U256};
    pub use crate::{contract, interface, sol_error, sol_event, storage};
    pub use alloc::string::String;
    pub use alloc::vec::Vec;
}

#[cfg(test)]
mod tests;
