//! Block headers and blocks, the transaction root and the canonical in-block order.

use crate::crypto::PublicKey;
use crate::encoding::{check_len, Canonical, DecodeError};
use crate::hash::{merkle_root, Domain, Hash};
use crate::limits::{MAX_BLOCK_BYTES, MAX_BLOCK_TXS};
use crate::tx::SignedTransaction;
use crate::{Epoch, Height, View};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeMap;

/// A block header. The state root of a block's own execution is committed by the *next*
/// header (`parent_state_root`), so a proposer never has to execute before proposing and a
/// node whose execution diverges sees the mismatch one block later and halts.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Header {
    pub chain_id: u64,
    pub height: Height,
    pub epoch: Epoch,
    /// The consensus view in which this block was proposed.
    pub view: View,
    pub parent_hash: Hash,
    pub proposer: PublicKey,
    /// Milliseconds since the Unix epoch, chosen by the proposer, validated against bounds.
    pub timestamp_ms: u64,
    /// Merkle root of the transaction hashes in block order.
    pub tx_root: Hash,
    /// State root after executing the parent block.
    pub parent_state_root: Hash,
    /// Merkle root of the parent block's receipts.
    pub parent_receipts_root: Hash,
    /// Root of the latest epoch archive (expired entries), `Hash::ZERO` before any expiry.
    pub archive_root: Hash,
}

impl Header {
    /// The block hash.
    pub fn hash(&self) -> Hash {
        Hash::digest(Domain::Header, &self.encode())
    }
}

impl Canonical for Header {
    const KIND: &'static str = "Header";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = 1 + 8 * 5 + 32 * 6;
}

/// A header and its transactions, in canonical order.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Block {
    pub header: Header,
    pub transactions: Vec<SignedTransaction>,
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// Recomputes the transaction root from the body.
    pub fn compute_tx_root(&self) -> Hash {
        tx_root(&self.transactions)
    }
}

impl Canonical for Block {
    const KIND: &'static str = "Block";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = MAX_BLOCK_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(
            Self::KIND,
            "transactions",
            self.transactions.len(),
            MAX_BLOCK_TXS,
        )?;
        for tx in &self.transactions {
            tx.validate()?;
        }
        Ok(())
    }
}

/// Merkle root of the transactions, each leaf the hash of the *whole* canonical encoding.
///
/// Not of the transaction hash: an agent transaction's hash leaves its signature out and an
/// Ethereum transaction's leaves the decoded fields out, so a root over hashes would let a
/// peer swap a signature (or fields) under a real header — the swapped body then fails its
/// signature check and executes to a different root on the node that stored it.
pub fn tx_root(transactions: &[SignedTransaction]) -> Hash {
    let leaves: Vec<Hash> = transactions
        .iter()
        .map(|t| Hash::digest(Domain::TxRootLeaf, &t.encode()))
        .collect();
    merkle_root(&leaves)
}

/// The ordering key of a transaction under a parent: `blake3(parent ‖ tx hash)`.
fn order_key(parent: &Hash, tx_hash: &Hash) -> Hash {
    Hash::digest_parts(Domain::TxOrder, &[&parent.0, &tx_hash.0])
}

/// Puts transactions into the canonical in-block order: slots are sorted by
/// `blake3(parent ‖ tx hash)`, then each sender's slots are refilled with that sender's
/// transactions in nonce order. The proposer picks *which* transactions; this picks their
/// order, so a proposer cannot front-run by ordering. Ties (duplicate hashes) keep a total
/// order through the hash itself.
pub fn canonical_order(
    parent: &Hash,
    transactions: Vec<SignedTransaction>,
) -> Vec<SignedTransaction> {
    let mut keyed: Vec<(Hash, Hash, SignedTransaction)> = transactions
        .into_iter()
        .map(|t| {
            let h = t.hash();
            (order_key(parent, &h), h, t)
        })
        .collect();
    keyed.sort_by_key(|a| (a.0, a.1));
    // Per sender: its transactions in (nonce, hash) order, consumed as its slots come up.
    let mut per_sender: BTreeMap<crate::Address, Vec<(u64, Hash, usize)>> = BTreeMap::new();
    for (index, (_, hash, tx)) in keyed.iter().enumerate() {
        per_sender
            .entry(tx.tx.sender_address())
            .or_default()
            .push((tx.tx.nonce, *hash, index));
    }
    for list in per_sender.values_mut() {
        list.sort();
        list.reverse(); // pop() yields the lowest nonce first
    }
    let senders: Vec<crate::Address> = keyed
        .iter()
        .map(|(_, _, t)| t.tx.sender_address())
        .collect();
    let mut slots: Vec<Option<SignedTransaction>> =
        keyed.into_iter().map(|(_, _, t)| Some(t)).collect();
    let mut out = Vec::with_capacity(slots.len());
    for sender in senders {
        let list = per_sender
            .get_mut(&sender)
            .expect("every sender was indexed");
        let (_, _, index) = list.pop().expect("a sender has as many entries as slots");
        out.push(slots[index].take().expect("each index is taken once"));
    }
    out
}

/// Whether `transactions` are exactly in canonical order under `parent`.
pub fn is_canonical_order(parent: &Hash, transactions: &[SignedTransaction]) -> bool {
    let reordered = canonical_order(parent, transactions.to_vec());
    reordered
        .iter()
        .zip(transactions)
        .all(|(a, b)| a.hash() == b.hash())
}
