//! keel's four test contracts written with keel-sdk, each the twin of a Solidity contract
//! (contracts/evm) and a C one (contracts/wasm) with the same ABI, storage layout, logs and
//! revert data. Natively they run on the SDK's test VM (`cargo test -p keel-examples`);
//! `scripts/contracts` builds each module to contracts/build/<name>_rs.wasm, which the
//! differential harness deploys on keel's runtime.
#![no_std]

pub mod amm;
pub mod registry;
pub mod router;
pub mod token;

#[cfg(test)]
mod tests;
