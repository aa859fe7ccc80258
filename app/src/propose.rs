//! Proposal building: the header a leader signs over its selected transactions, then the
//! candidate executed so that transactions that cannot be charged are left out (validators
//! would refuse the block otherwise; charge.rs).

use crate::chain::{Chain, ChainError, ParentInfo};
use crate::charge::chargeable_block;
use keel_types::block::{canonical_order, tx_root};
use keel_types::{Block, Epoch, Hash, Header, Height, PublicKey, SignedTransaction, View};

/// What consensus asked this node to propose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalSlot {
    pub chain_id: u64,
    pub view: View,
    pub height: Height,
    pub epoch: Epoch,
    pub proposer: PublicKey,
}

/// Builds the block for `slot` on `parent` from `selected` (in any order): canonical order,
/// a timestamp after the parent's (and not before `now_ms`), the roots this node computed,
/// and only transactions that can be charged. Returns the block and the hashes left out.
pub fn build(
    chain: &mut Chain,
    slot: &ProposalSlot,
    parent: &ParentInfo,
    selected: Vec<SignedTransaction>,
    now_ms: u64,
) -> Result<(Block, Vec<Hash>), ChainError> {
    let transactions = canonical_order(&parent.hash, selected);
    let header = Header {
        chain_id: slot.chain_id,
        height: slot.height,
        epoch: slot.epoch,
        view: slot.view,
        parent_hash: parent.hash,
        proposer: slot.proposer,
        timestamp_ms: now_ms.max(parent.timestamp_ms + 1),
        tx_root: tx_root(&transactions),
        parent_state_root: parent.state_root,
        parent_receipts_root: parent.receipts_root,
        archive_root: parent.archive_root,
    };
    chargeable_block(chain, &header, transactions)
}
