//! 32-byte blake3 hashes with one domain per object kind.
//!
//! Every hash is blake3 in keyed mode, `blake3::keyed_hash(K_d, bytes)`, where the key
//! `K_d = blake3::derive_key(context_d, b"")` is derived once from a context string unique to
//! what is hashed. So a transaction hash can never collide with a header hash or a tree node,
//! even if an attacker finds bytes that parse as both, and no hash pays for re-deriving its
//! key (the Merkle tree hashes ~15 times per internal node, so that cost was measurable).

use borsh::{BorshDeserialize, BorshSerialize};

/// What is being hashed. Each variant has its own blake3 key-derivation context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// The signing payload and identity of a transaction.
    Transaction,
    /// A block header; the block hash.
    Header,
    /// A leaf of the transaction root.
    TxRootLeaf,
    /// An inner node of the transaction and receipt roots.
    MerkleNode,
    /// A receipt, as a leaf of the receipts root.
    Receipt,
    /// A state key, giving its position in the authenticated tree.
    StateKey,
    /// Nodes and values inside the Jellyfish Merkle tree.
    Jmt,
    /// An ed25519 public key, giving an account address.
    Address,
    /// Contract code, giving its code hash.
    Code,
    /// A consensus vote's signing payload.
    Vote,
    /// Consensus proposal signing payload.
    Proposal,
    /// Canonical in-block ordering key.
    TxOrder,
    /// A leaf of the expiry archive (an expired entry: key, epoch, value).
    ArchiveLeaf,
    /// An inner node or the bagged root of the expiry archive.
    ArchiveNode,
    /// A folded stub, as a leaf of its fold page's sorted key list.
    FoldLeaf,
    /// The Bloom filter probes of a key in a fold page.
    FoldProbe,
    /// A validator's proof of possession of its consensus key (`validator`).
    ValidatorPossession,
}

impl Domain {
    /// The blake3 context string. Changing one is a hard fork: never edit, only add.
    pub const fn context(self) -> &'static str {
        match self {
            Domain::Transaction => "keel 2026-11 transaction v1",
            Domain::Header => "keel 2026-11 header v1",
            Domain::TxRootLeaf => "keel 2026-12 tx-root leaf v2",
            Domain::MerkleNode => "keel 2026-11 merkle node v1",
            Domain::Receipt => "keel 2026-11 receipt v1",
            Domain::StateKey => "keel 2026-11 state key v1",
            Domain::Jmt => "keel 2026-11 jmt v1",
            Domain::Address => "keel 2026-11 address v1",
            Domain::Code => "keel 2026-11 code v1",
            Domain::Vote => "keel 2026-11 vote v1",
            Domain::Proposal => "keel 2026-11 proposal v1",
            Domain::TxOrder => "keel 2026-11 tx order v1",
            Domain::ArchiveLeaf => "keel 2026-11 archive leaf v1",
            Domain::ArchiveNode => "keel 2026-11 archive node v1",
            Domain::FoldLeaf => "keel 2026-11 fold leaf v1",
            Domain::FoldProbe => "keel 2026-11 fold probe v1",
            Domain::ValidatorPossession => "keel 2026-12 validator possession v1",
        }
    }

    /// Every domain, in declaration order.
    pub const ALL: [Domain; 17] = [
        Domain::Transaction,
        Domain::Header,
        Domain::TxRootLeaf,
        Domain::MerkleNode,
        Domain::Receipt,
        Domain::StateKey,
        Domain::Jmt,
        Domain::Address,
        Domain::Code,
        Domain::Vote,
        Domain::Proposal,
        Domain::TxOrder,
        Domain::ArchiveLeaf,
        Domain::ArchiveNode,
        Domain::FoldLeaf,
        Domain::FoldProbe,
        Domain::ValidatorPossession,
    ];

    /// The 32-byte blake3 key of this domain, derived from its context once per process.
    pub fn key(self) -> &'static [u8; 32] {
        static KEYS: std::sync::LazyLock<[[u8; 32]; 17]> =
            std::sync::LazyLock::new(|| Domain::ALL.map(|d| blake3::derive_key(d.context(), b"")));
        // ALL lists the variants in declaration order, so the discriminant is the index
        // (checked by the `domain_keys_are_indexed_by_discriminant` test).
        &KEYS[self as usize]
    }

    /// A fresh keyed hasher for this domain.
    pub fn hasher(self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(self.key())
    }
}

/// A 32-byte blake3 digest.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash, used where a value is absent (e.g. the parent of genesis).
    pub const ZERO: Hash = Hash([0; 32]);

    /// Hashes `bytes` in `domain`.
    pub fn digest(domain: Domain, bytes: &[u8]) -> Hash {
        Hash(blake3::keyed_hash(domain.key(), bytes).into())
    }

    /// Hashes the concatenation of `parts` in `domain` without allocating.
    pub fn digest_parts(domain: Domain, parts: &[&[u8]]) -> Hash {
        let mut hasher = domain.hasher();
        for part in parts {
            hasher.update(part);
        }
        Hash(hasher.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

crate::hex_bytes::hex_bytes!(Hash, 32);

/// Binary Merkle root over `leaves` (already domain-hashed), with inner nodes hashed in
/// [`Domain::MerkleNode`]. An odd node is promoted unchanged to the next level, so no leaf is
/// ever duplicated (the CVE-2012-2459 ambiguity of Bitcoin's tree cannot arise). The root of
/// no leaves is [`Hash::ZERO`].
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [left, right] => {
                    next.push(Hash::digest_parts(Domain::MerkleNode, &[&left.0, &right.0]))
                }
                [single] => next.push(*single),
                _ => unreachable!("chunks(2) yields one or two items"),
            }
        }
        level = next;
    }
    level[0]
}

/// blake3 adapter for the Jellyfish Merkle tree, keyed with [`Domain::Jmt`].
#[derive(Debug, Clone)]
pub struct JmtHasher(blake3::Hasher);

impl jmt::SimpleHasher for JmtHasher {
    fn new() -> Self {
        JmtHasher(Domain::Jmt.hasher())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finalize(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_keys_are_indexed_by_discriminant() {
        for (i, d) in Domain::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i);
            assert_eq!(d.key(), &blake3::derive_key(d.context(), b""));
        }
    }
}
