//! Every transaction in a block pays: the block-validity rule that makes refused
//! transactions cost something (docs/execution.md, "Refusals").
//!
//! The runtime refuses (`TxStatus::Rejected`: no fee, no nonce) only a transaction its sender
//! cannot be charged for — a bad signature, another chain, a bad nonce, a balance short of
//! the fee, gas out of bounds, an expired sender. Such a transaction in a block would cost its
//! sender nothing and could be replayed in every later block, so a block that holds one is
//! invalid: a validator executes a proposal before voting and refuses it if any receipt is a
//! refusal, and a proposer executes its candidate and leaves those transactions out. A
//! duplicate (the same transaction twice, or one already finalized) is refused the same way:
//! its nonce is used.

use super::chain::{Chain, ChainError};
use keel_types::block::{canonical_order, tx_root};
use keel_types::{Block, Hash, Header, SignedTransaction, TxError, TxStatus};
use std::collections::BTreeSet;

/// Rounds of "execute the candidate, leave out what was refused" a proposer tries before it
/// proposes an empty block. Leaving out a refused transaction cannot make another one
/// refused in practice (a refusal changes no balance or nonce), so one round is the rule and
/// the bound only guarantees that building a proposal ends. Checks whose verdict another
/// transaction of the block can change — plugins, a target's jurisdiction rules — are
/// charged, not refusals, for this reason; a controller's freeze is the exception that
/// remains (docs/policies.md).
pub const MAX_PROPOSAL_FILTER_ROUNDS: usize = 4;

/// What executing a block says about its transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charged {
    /// Every transaction was charged (an empty block included).
    All,
    /// The first transaction its sender cannot be charged for: the block is invalid.
    Refused {
        index: usize,
        tx_hash: Hash,
        error: Option<TxError>,
    },
    /// The block's chain is not known here (yet), or the block cannot be kept.
    Unknown,
}

/// Executes `block` over its parent (kept as `chain`'s execution ahead of finality, so a
/// block voted for is not executed again) and says whether every transaction was charged.
pub fn check_charged(chain: &mut Chain, block: &Block) -> Result<Charged, ChainError> {
    let hash = block.hash();
    if !chain.remember(block) || !chain.execute(&hash)? {
        return Ok(Charged::Unknown);
    }
    let Some(receipts) = chain.executed_receipts(&hash) else {
        return Ok(Charged::Unknown);
    };
    Ok(receipts
        .iter()
        .enumerate()
        .find(|(_, r)| r.status == TxStatus::Rejected)
        .map_or(Charged::All, |(index, r)| Charged::Refused {
            index,
            tx_hash: r.tx_hash,
            error: r.error.clone(),
        }))
}

/// The block a proposer proposes with `header` from `transactions` (in canonical order): the
/// candidate is executed and the transactions that cannot be charged are left out, until
/// every transaction is charged (or, after [`MAX_PROPOSAL_FILTER_ROUNDS`], the empty block,
/// which is always valid, so a proposer never stalls on its own pool). Returns the block and
/// the hashes left out (for the mempool to forget).
pub fn chargeable_block(
    chain: &mut Chain,
    header: &Header,
    mut transactions: Vec<SignedTransaction>,
) -> Result<(Block, Vec<Hash>), ChainError> {
    let with = |transactions: Vec<SignedTransaction>| Block {
        header: Header {
            tx_root: tx_root(&transactions),
            ..header.clone()
        },
        transactions,
    };
    let mut dropped = Vec::new();
    for _ in 0..MAX_PROPOSAL_FILTER_ROUNDS {
        let block = with(transactions);
        match check_charged(chain, &block)? {
            Charged::All => return Ok((block, dropped)),
            Charged::Unknown => break,
            Charged::Refused { .. } => {}
        }
        let refused: BTreeSet<Hash> = chain
            .executed_receipts(&block.hash())
            .unwrap_or_default()
            .iter()
            .filter(|r| r.status == TxStatus::Rejected)
            .map(|r| r.tx_hash)
            .collect();
        dropped.extend(refused.iter().copied());
        let kept = block
            .transactions
            .into_iter()
            .filter(|t| !refused.contains(&t.hash()))
            .collect();
        transactions = canonical_order(&header.parent_hash, kept);
    }
    Ok((with(Vec::new()), dropped))
}
