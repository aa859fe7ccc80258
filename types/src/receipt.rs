//! Receipts and logs: the outcome of one transaction, identical in shape for both
//! environments.

use crate::address::Address;
use crate::encoding::{check_len, Canonical, DecodeError};
use crate::hash::{merkle_root, Domain, Hash};
use crate::limits::{
    MAX_ERROR_MESSAGE_BYTES, MAX_LOGS_PER_TX, MAX_LOG_DATA_BYTES, MAX_LOG_TOPICS, MAX_OUTPUT_BYTES,
    MAX_RECEIPT_BYTES, MAX_TOTAL_LOG_DATA_BYTES,
};
use crate::U256;
use borsh::{BorshDeserialize, BorshSerialize};

/// An event: up to four 32-byte topics and data, as in the EVM.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Log {
    pub address: Address,
    pub topics: Vec<[u8; 32]>,
    pub data: Vec<u8>,
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
pub enum TxStatus {
    /// Executed; its effects are in the state.
    Success = 0,
    /// Executed and reverted: only the fee and the nonce bump remain.
    Revert = 1,
    /// Not executed (invalid for this state): no fee, no nonce bump.
    Rejected = 2,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Success => "success",
            TxStatus::Revert => "revert",
            TxStatus::Rejected => "rejected",
        }
    }
}

/// The typed reason a transaction was rejected or failed.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
pub enum TxError {
    #[error("wrong chain id: expected {expected}, got {got}")]
    WrongChainId { expected: u64, got: u64 },
    #[error("bad signature")]
    BadSignature,
    #[error("bad nonce: account nonce is {expected}, transaction has {got}")]
    BadNonce { expected: u64, got: u64 },
    #[error("insufficient balance: need {needed}, have {available}")]
    InsufficientBalance { needed: U256, available: U256 },
    #[error("gas limit {gas_limit} is below the intrinsic cost {intrinsic}")]
    IntrinsicGasTooLow { gas_limit: u64, intrinsic: u64 },
    #[error("gas limit {gas_limit} exceeds the block gas limit {block_gas_limit}")]
    GasLimitTooHigh {
        gas_limit: u64,
        block_gas_limit: u64,
    },
    #[error("gas price {gas_price} is below the minimum {min_gas_price}")]
    GasPriceTooLow {
        gas_price: u128,
        min_gas_price: u128,
    },
    #[error("out of gas")]
    OutOfGas,
    #[error("execution reverted")]
    Reverted,
    #[error("no contract at {address}")]
    NoContract { address: Address },
    #[error("invalid code: {reason}")]
    InvalidCode { reason: String },
    #[error("call depth limit exceeded")]
    CallDepthExceeded,
    #[error("state entry {key} expired in epoch {expired_epoch}; revive it with `keel query proof` then `keel tx revive`")]
    Expired { key: String, expired_epoch: u64 },
    #[error("invalid revival: {reason}")]
    InvalidRevival { reason: RevivalError },
    #[error("execution failed: {reason}")]
    Execution { reason: String },
}

/// Why a revival was refused. Each names what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
pub enum RevivalError {
    #[error("the revival proof does not decode: {0}")]
    Malformed(String),
    #[error("state expiry is off on this chain (genesis expiry_epochs = 0)")]
    ExpiryOff,
    #[error("{key} is live; there is nothing to revive (a second revival, or a newer value)")]
    AlreadyLive { key: String },
    #[error("{key} is not expired (it does not exist, or was deleted)")]
    NotExpired { key: String },
    #[error("stale version: {key} last expired in epoch {latest_epoch} (archive leaf {latest_leaf}); the proof is for epoch {proof_epoch} leaf {proof_leaf}. Fetch a fresh proof")]
    StaleVersion {
        key: String,
        latest_epoch: u64,
        latest_leaf: u64,
        proof_epoch: u64,
        proof_leaf: u64,
    },
    #[error(
        "no archive is sealed for epoch {sealed_epoch} yet (archives seal when their epoch ends)"
    )]
    UnsealedEpoch { sealed_epoch: u64 },
    #[error(
        "the proof does not hold against the archive sealed in epoch {sealed_epoch}: {reason}"
    )]
    BadProof { sealed_epoch: u64, reason: String },
    /// The entry's stub was folded out of the tree and the fold proof does not show that this
    /// is the latest folded version (a stale version, or a forged page proof).
    #[error("the fold proof against fold page {page} does not hold: {reason}. Fetch a fresh proof with `keel query proof`")]
    BadFoldProof { page: u64, reason: String },
    /// An unflag of a key that is archived (its stub is in the tree, or a page holds it).
    #[error("{key} is archived, not a filter false positive: revive it (`keel query proof`, then `keel tx revive`)")]
    Archived { key: String },
}

impl RevivalError {
    fn text_len(&self) -> usize {
        match self {
            RevivalError::Malformed(s) => s.len(),
            RevivalError::AlreadyLive { key }
            | RevivalError::NotExpired { key }
            | RevivalError::StaleVersion { key, .. }
            | RevivalError::Archived { key } => key.len(),
            RevivalError::BadProof { reason, .. } | RevivalError::BadFoldProof { reason, .. } => {
                reason.len()
            }
            RevivalError::ExpiryOff | RevivalError::UnsealedEpoch { .. } => 0,
        }
    }
}

/// The outcome of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Receipt {
    pub tx_hash: Hash,
    pub status: TxStatus,
    pub gas_used: u64,
    pub output: Vec<u8>,
    pub logs: Vec<Log>,
    pub contract_address: Option<Address>,
    pub error: Option<TxError>,
}

impl Receipt {
    pub fn hash(&self) -> Hash {
        Hash::digest(Domain::Receipt, &self.encode())
    }
}

fn error_text_len(error: &TxError) -> usize {
    match error {
        TxError::InvalidCode { reason } | TxError::Execution { reason } => reason.len(),
        TxError::InvalidRevival { reason } => reason.text_len(),
        TxError::Expired { key, .. } => key.len(),
        _ => 0,
    }
}

impl Canonical for Receipt {
    const KIND: &'static str = "Receipt";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = MAX_RECEIPT_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(Self::KIND, "output", self.output.len(), MAX_OUTPUT_BYTES)?;
        check_len(Self::KIND, "logs", self.logs.len(), MAX_LOGS_PER_TX)?;
        let mut total = 0usize;
        for log in &self.logs {
            check_len(Self::KIND, "log.topics", log.topics.len(), MAX_LOG_TOPICS)?;
            check_len(Self::KIND, "log.data", log.data.len(), MAX_LOG_DATA_BYTES)?;
            total += log.data.len();
        }
        check_len(
            Self::KIND,
            "total log data",
            total,
            MAX_TOTAL_LOG_DATA_BYTES,
        )?;
        if let Some(error) = &self.error {
            check_len(
                Self::KIND,
                "error",
                error_text_len(error),
                MAX_ERROR_MESSAGE_BYTES,
            )?;
        }
        Ok(())
    }
}

/// Merkle root of a block's receipts in transaction order.
pub fn receipts_root(receipts: &[Receipt]) -> Hash {
    let leaves: Vec<Hash> = receipts.iter().map(Receipt::hash).collect();
    merkle_root(&leaves)
}

/// A block's receipts, stored and served together.
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct BlockReceipts(pub Vec<Receipt>);

impl Canonical for BlockReceipts {
    const KIND: &'static str = "BlockReceipts";
    const VERSION: u8 = 1;
    // A block's receipts are bounded by its gas; this caps what one read can allocate.
    const MAX_ENCODED_BYTES: usize = 256 * 1024 * 1024;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(
            Self::KIND,
            "receipts",
            self.0.len(),
            crate::limits::MAX_BLOCK_TXS,
        )?;
        self.0.iter().try_for_each(Canonical::validate)
    }
}
