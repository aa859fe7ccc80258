//! Block validity: what a validator checks before it votes for a proposal. Everything but
//! the timestamp's upper bound is a function of the block and this node's chain; the
//! timestamp bound reads the time the caller passes in (proposal timestamps bound liveness,
//! never safety).

use crate::chain::{Chain, ChainError, ParentInfo};
use crate::charge::{check_charged, Charged};
use keel_types::block::is_canonical_order;
use keel_types::{Block, Epoch, Height};

/// A proposal's timestamp may be at most this far ahead of this node's clock.
pub const MAX_FUTURE_DRIFT_MS: u64 = 5_000;

/// The chain parameters a block is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRules {
    pub chain_id: u64,
    pub block_gas_limit: u64,
}

/// Where consensus stands when the block is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochBounds {
    pub epoch: Epoch,
    /// The last height of the epoch that carries transactions (later ones are its suffix).
    pub last_height: Height,
}

/// What a check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid(String),
    /// The parent's chain is not known (or not executable) yet: check again later.
    Deferred,
}

/// Checks `block` as a proposal: header fields, body commitment, gas, canonical order, the
/// parent it extends and the roots it commits, then executes it (kept for the commit) and
/// requires every transaction to be charged (charge.rs says why).
pub fn check(
    chain: &mut Chain,
    rules: &BlockRules,
    epoch: EpochBounds,
    now_ms: u64,
    block: &Block,
) -> Result<Verdict, ChainError> {
    let h = &block.header;
    let invalid = |reason: String| Ok(Verdict::Invalid(reason));
    if h.chain_id != rules.chain_id {
        return invalid(format!("chain id {}", h.chain_id));
    }
    if h.epoch != epoch.epoch {
        return invalid(format!("epoch {} in epoch {}", h.epoch, epoch.epoch));
    }
    if block.compute_tx_root() != h.tx_root {
        return invalid("tx root does not match the body".into());
    }
    if h.height > epoch.last_height && !block.transactions.is_empty() {
        return invalid("suffix block past the epoch's end carries transactions".into());
    }
    let gas: u64 = block
        .transactions
        .iter()
        .fold(0u64, |a, t| a.saturating_add(t.tx.gas_limit));
    if gas > rules.block_gas_limit {
        return invalid(format!("gas limits sum to {gas}, above the block limit"));
    }
    if !is_canonical_order(&h.parent_hash, &block.transactions) {
        return invalid("transactions are not in canonical order".into());
    }
    let Some(parent): Option<ParentInfo> = chain.parent_info(&h.parent_hash)? else {
        return Ok(Verdict::Deferred);
    };
    if h.height != parent.height + 1 {
        return invalid(format!("height {} on parent {}", h.height, parent.height));
    }
    if h.timestamp_ms <= parent.timestamp_ms
        || h.timestamp_ms > now_ms.saturating_add(MAX_FUTURE_DRIFT_MS)
    {
        return invalid(format!("timestamp {} out of bounds", h.timestamp_ms));
    }
    if h.archive_root != parent.archive_root {
        return invalid(format!(
            "archive root {} differs from this node's {}",
            h.archive_root, parent.archive_root
        ));
    }
    if h.parent_state_root != parent.state_root || h.parent_receipts_root != parent.receipts_root {
        // The proposer or this node diverged; refuse the vote. If the network finalizes it
        // anyway, the commit sequence halts this node.
        tracing::error!(
            height = h.height,
            theirs = %h.parent_state_root,
            ours = %parent.state_root,
            "proposal commits a parent state root this node did not compute"
        );
        return invalid("parent state root differs from this node's".into());
    }
    // Last, as it executes the block (kept for the commit): every transaction must be
    // charged, or it would be free and replayable (see charge.rs).
    match check_charged(chain, block)? {
        Charged::All => Ok(Verdict::Valid),
        Charged::Refused {
            index,
            tx_hash,
            error,
        } => invalid(format!(
            "transaction {index} ({tx_hash}) cannot be charged: {}",
            error.map_or_else(|| "refused".to_string(), |e| e.to_string())
        )),
        Charged::Unknown => Ok(Verdict::Deferred),
    }
}

/// Why this node cannot commit a block the network finalized: it must halt instead.
#[derive(Debug, thiserror::Error)]
pub enum FinalityError {
    #[error(
        "finalized block {height} commits parent state root {theirs} but this node computed {ours}"
    )]
    RootMismatch {
        height: Height,
        theirs: keel_types::Hash,
        ours: keel_types::Hash,
    },
    #[error("finalized block {height} does not extend this node's finalized chain")]
    NotExtending { height: Height },
    #[error("finalizing block {height}: {source}")]
    Chain {
        height: Height,
        #[source]
        source: ChainError,
    },
}

/// Whether a finalized `block` extends this node's chain with the roots this node computed
/// for its parent. `Err`: the node must halt rather than commit on top of it.
pub fn check_finalized(chain: &mut Chain, block: &Block) -> Result<(), FinalityError> {
    let height = block.header.height;
    match chain.parent_info(&block.header.parent_hash) {
        Ok(Some(parent))
            if parent.state_root == block.header.parent_state_root
                && parent.receipts_root == block.header.parent_receipts_root
                && parent.archive_root == block.header.archive_root =>
        {
            Ok(())
        }
        Ok(Some(parent)) => Err(FinalityError::RootMismatch {
            height,
            theirs: block.header.parent_state_root,
            ours: parent.state_root,
        }),
        Ok(None) => Err(FinalityError::NotExtending { height }),
        Err(source) => Err(FinalityError::Chain { height, source }),
    }
}
