//! The EVM's block and configuration environment, derived from keel's header fields.

use keel_types::limits::MAX_TX_GAS;
use revm::context::{BlockEnv, CfgEnv};
use revm::context_interface::block::BlobExcessGasAndPrice;
use revm::primitives::hardfork::SpecId;
use revm::primitives::{B256, U256};

/// The Ethereum rules keel runs: Osaka (Fusaka), the spec live on mainnet.
pub const SPEC: SpecId = SpecId::OSAKA;

/// What a block tells its transactions about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockContext {
    pub chain_id: u64,
    pub height: u64,
    pub epoch: u64,
    pub timestamp_ms: u64,
    /// Receives the fees (the EVM's `COINBASE`).
    pub beneficiary: keel_types::Address,
    pub parent_hash: keel_types::Hash,
    pub gas_limit: u64,
}

/// `BlockEnv` for a keel block. `TIMESTAMP` is in seconds as in Ethereum (the block time
/// keeps milliseconds; WASM's `block_timestamp` returns those). `PREVRANDAO` is the parent
/// hash: deterministic and *not* a randomness source. The base fee is zero: the whole
/// transaction fee goes to the proposer.
pub fn block_env(block: &BlockContext) -> BlockEnv {
    BlockEnv {
        number: U256::from(block.height),
        beneficiary: crate::to_revm(&block.beneficiary),
        timestamp: U256::from(block.timestamp_ms / 1000),
        gas_limit: block.gas_limit,
        basefee: 0,
        difficulty: U256::ZERO,
        prevrandao: Some(B256::from(block.parent_hash.0)),
        blob_excess_gas_and_price: Some(BlobExcessGasAndPrice::new(0, 1)),
        ..Default::default()
    }
}

/// `CfgEnv` for keel's chain id under [`SPEC`], with keel's per-transaction gas cap
/// ([`MAX_TX_GAS`], below Osaka's EIP-7825 cap).
pub fn cfg_env(chain_id: u64) -> CfgEnv {
    let mut cfg = CfgEnv::new_with_spec(SPEC);
    cfg.chain_id = chain_id;
    cfg.tx_gas_limit_cap = Some(MAX_TX_GAS);
    cfg
}
