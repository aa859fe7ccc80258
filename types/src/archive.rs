//! The expiry archive: an append-only Merkle mountain range (MMR) of expired entries, and
//! the revival proof that brings one back.
//!
//! Why an MMR: a validator must commit to every expired entry (so a revival can be checked
//! against consensus data), but must not keep them (that is the point of expiry). An MMR
//! needs only its peaks — at most 64 hashes, one state entry — to append and to compute its
//! root; archive nodes keep the inner nodes and serve inclusion proofs. Each expired entry's
//! stub in the active tree names its leaf index, which is what makes only the latest archived
//! version revivable (docs/expiry.md).
//!
//! Shape: the leaves `0..n` split into perfect binary trees, one per set bit of `n`, largest
//! first; tree `t` covers an aligned range, so an inner node is addressed by `(level, index)`
//! with `index = first_leaf >> level` and never changes once written. The root binds the leaf
//! count and the peaks, folded right to left.

use crate::encoding::{check_len, Canonical, DecodeError};
use crate::hash::{Domain, Hash};
use crate::limits::MAX_STATE_VALUE_BYTES;
use crate::state_key::StateKey;
use crate::Epoch;
use borsh::{BorshDeserialize, BorshSerialize};

/// Deepest tree an archive of `u64` leaves can hold.
pub const MAX_ARCHIVE_LEVELS: usize = 64;

/// The hash of an archived entry: its key, the epoch it expired in and its last value.
pub fn leaf_hash(key: &StateKey, epoch: Epoch, value: &[u8]) -> Hash {
    Hash::digest_parts(
        Domain::ArchiveLeaf,
        &[&key.to_bytes(), &epoch.to_be_bytes(), value],
    )
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::digest_parts(Domain::ArchiveNode, &[&[0], &left.0, &right.0])
}

/// The root of an archive: its leaf count and peaks (largest tree first).
pub fn bag_peaks(leaf_count: u64, peaks: &[Hash]) -> Hash {
    if leaf_count == 0 {
        return Hash::ZERO;
    }
    let mut acc: Option<Hash> = None;
    for peak in peaks.iter().rev() {
        acc = Some(match acc {
            None => *peak,
            Some(right) => node_hash(peak, &right),
        });
    }
    let bagged = acc.unwrap_or(Hash::ZERO);
    Hash::digest_parts(
        Domain::ArchiveNode,
        &[&[1], &leaf_count.to_be_bytes(), &bagged.0],
    )
}

/// The perfect trees of an archive of `leaf_count` leaves: (level, first leaf), largest first.
pub fn trees(leaf_count: u64) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut first = 0u64;
    for level in (0..64u32).rev() {
        if leaf_count & (1u64 << level) != 0 {
            out.push((level, first));
            first += 1u64 << level;
        }
    }
    out
}

/// A node of the archive written by an append: (level, index, hash). Level 0 are leaves.
pub type ArchiveNode = (u32, u64, Hash);

/// The accumulator validators keep in state under `StateKey::ArchiveAccumulator`.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ArchiveAccumulator {
    pub leaf_count: u64,
    /// One per set bit of `leaf_count`, largest tree first.
    pub peaks: Vec<Hash>,
}

impl ArchiveAccumulator {
    pub fn root(&self) -> Hash {
        bag_peaks(self.leaf_count, &self.peaks)
    }

    /// Appends a leaf; returns its index and every node it completed (the leaf included),
    /// which archive nodes store to serve proofs later.
    pub fn push(&mut self, leaf: Hash) -> (u64, Vec<ArchiveNode>) {
        let index = self.leaf_count;
        let mut nodes = vec![(0u32, index, leaf)];
        let mut node = leaf;
        let mut level = 0u32;
        // Each trailing one bit of the old count is a same-size tree to merge with.
        while index & (1u64 << level) != 0 {
            let left = self
                .peaks
                .pop()
                .expect("a set bit of leaf_count always has its peak");
            node = node_hash(&left, &node);
            level += 1;
            nodes.push((level, index >> level, node));
        }
        self.peaks.push(node);
        self.leaf_count += 1;
        (index, nodes)
    }
}

impl Canonical for ArchiveAccumulator {
    const KIND: &'static str = "ArchiveAccumulator";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = 1 + 8 + 4 + 32 * MAX_ARCHIVE_LEVELS;

    fn validate(&self) -> Result<(), DecodeError> {
        if self.peaks.len() != self.leaf_count.count_ones() as usize {
            return Err(DecodeError::Malformed {
                kind: Self::KIND,
                reason: "peak count does not match the leaf count".into(),
            });
        }
        Ok(())
    }
}

/// An epoch's archive, sealed at the epoch's end: what revival proofs are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SealedArchive {
    pub leaf_count: u64,
    pub root: Hash,
}

impl Canonical for SealedArchive {
    const KIND: &'static str = "SealedArchive";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = 1 + 8 + 32;
}

/// Everything a revival transaction carries: the entry, where it sits in the archive, and the
/// inclusion proof against the archive sealed at the end of `sealed_epoch`.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RevivalProof {
    pub key: StateKey,
    /// The last live value of the entry.
    pub value: Vec<u8>,
    /// The epoch it expired in (its stub says the same, or the proof is for an old version).
    pub expired_epoch: Epoch,
    pub leaf_index: u64,
    /// The epoch whose sealed archive root the proof is against.
    pub sealed_epoch: Epoch,
    /// Siblings from the leaf up to its tree's peak, lowest first.
    pub siblings: Vec<Hash>,
    /// The peaks of every other tree of the sealed archive, largest first.
    pub other_peaks: Vec<Hash>,
    /// For an entry whose stub was folded out of the tree: where it was folded and that no
    /// later fold holds a newer version (`fold`). `None` while the stub is in the tree.
    pub folded: Option<crate::fold::FoldedRevival>,
}

impl Canonical for RevivalProof {
    const KIND: &'static str = "RevivalProof";
    const VERSION: u8 = 2;
    const MAX_ENCODED_BYTES: usize = 1
        + crate::state_key::MAX_STATE_KEY_BYTES
        + 4
        + MAX_STATE_VALUE_BYTES
        + 8 * 3
        + 8
        + 32 * MAX_ARCHIVE_LEVELS * 2
        + 1
        + crate::fold::MAX_FOLDED_REVIVAL_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(Self::KIND, "value", self.value.len(), MAX_STATE_VALUE_BYTES)?;
        if let Some(folded) = &self.folded {
            folded.validate()?;
        }
        check_len(
            Self::KIND,
            "siblings",
            self.siblings.len(),
            MAX_ARCHIVE_LEVELS,
        )?;
        check_len(
            Self::KIND,
            "other_peaks",
            self.other_peaks.len(),
            MAX_ARCHIVE_LEVELS,
        )
    }
}

/// An expired entry as archive nodes store it: the preimage of leaf `index`.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ArchivedLeaf {
    pub index: u64,
    pub key: StateKey,
    pub epoch: Epoch,
    pub value: Vec<u8>,
}

/// Why an archive inclusion proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveProofError {
    #[error("leaf {leaf_index} is outside an archive of {leaf_count} leaves")]
    OutOfRange { leaf_index: u64, leaf_count: u64 },
    #[error("the proof has {got} {what}, the archive shape needs {expected}")]
    Shape {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("the proof does not reproduce the archive root")]
    RootMismatch,
}

impl RevivalProof {
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.key, self.expired_epoch, &self.value)
    }

    /// Checks the inclusion of this entry at `leaf_index` in `sealed`.
    pub fn verify(&self, sealed: &SealedArchive) -> Result<(), ArchiveProofError> {
        verify_path(
            self.leaf_hash(),
            self.leaf_index,
            sealed.leaf_count,
            (&self.siblings, &self.other_peaks),
            &sealed.root,
        )
    }
}

/// Checks that `leaf` sits at `index` of the mountain range of `count` leaves whose root is
/// `root`, given its siblings (lowest first) and the other peaks (largest first). Shared by
/// the expiry archive and fold pages (which are the same shape built at once).
pub fn verify_path(
    leaf: Hash,
    index: u64,
    count: u64,
    (siblings, other_peaks): (&[Hash], &[Hash]),
    root: &Hash,
) -> Result<(), ArchiveProofError> {
    if index >= count {
        return Err(ArchiveProofError::OutOfRange {
            leaf_index: index,
            leaf_count: count,
        });
    }
    let trees = trees(count);
    let (position, &(level, _)) = trees
        .iter()
        .enumerate()
        .find(|(_, (level, first))| index >= *first && index < first + (1u64 << level))
        .expect("an index below the count lies in one tree");
    let shape = |what, expected: usize, got: usize| {
        if expected == got {
            Ok(())
        } else {
            Err(ArchiveProofError::Shape {
                what,
                expected,
                got,
            })
        }
    };
    shape("siblings", level as usize, siblings.len())?;
    shape("other peaks", trees.len() - 1, other_peaks.len())?;
    let mut node = leaf;
    for (l, sibling) in siblings.iter().enumerate() {
        node = if (index >> l) & 1 == 1 {
            node_hash(sibling, &node)
        } else {
            node_hash(&node, sibling)
        };
    }
    let mut peaks = other_peaks.to_vec();
    peaks.insert(position, node);
    if bag_peaks(count, &peaks) == *root {
        Ok(())
    } else {
        Err(ArchiveProofError::RootMismatch)
    }
}

/// Looks up stored archive nodes by (level, index) to build a proof.
pub trait ArchiveNodes {
    type Error;
    fn node(&self, level: u32, index: u64) -> Result<Option<Hash>, Self::Error>;
}

/// A leaf's siblings (lowest first) and the other peaks (largest first).
pub type ArchivePath = (Vec<Hash>, Vec<Hash>);

/// The siblings and other peaks proving leaf `index` in the archive of `leaf_count` leaves;
/// `None` if a needed node is not stored here (this node does not keep the archive).
pub fn prove<N: ArchiveNodes>(
    nodes: &N,
    leaf_count: u64,
    index: u64,
) -> Result<Option<ArchivePath>, N::Error> {
    if index >= leaf_count {
        return Ok(None);
    }
    let mut siblings = Vec::new();
    let mut other_peaks = Vec::new();
    for (level, first) in trees(leaf_count) {
        if index >= first && index < first + (1u64 << level) {
            for l in 0..level {
                match nodes.node(l, (index >> l) ^ 1)? {
                    Some(h) => siblings.push(h),
                    None => return Ok(None),
                }
            }
        } else {
            match nodes.node(level, first >> level)? {
                Some(h) => other_peaks.push(h),
                None => return Ok(None),
            }
        }
    }
    Ok(Some((siblings, other_peaks)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Address;
    use std::collections::BTreeMap;

    struct Mem(BTreeMap<(u32, u64), Hash>);
    impl ArchiveNodes for Mem {
        type Error = ();
        fn node(&self, level: u32, index: u64) -> Result<Option<Hash>, ()> {
            Ok(self.0.get(&(level, index)).copied())
        }
    }

    fn key(i: u64) -> StateKey {
        StateKey::Storage(
            Address([7; 20]),
            Hash::digest(Domain::Code, &i.to_be_bytes()).0,
        )
    }

    #[test]
    fn every_leaf_proves_against_every_later_sealed_root_and_tampering_fails() {
        let mut acc = ArchiveAccumulator::default();
        let mut mem = Mem(BTreeMap::new());
        let mut sealed = Vec::new();
        for i in 0..37u64 {
            let (index, nodes) = acc.push(leaf_hash(&key(i), i / 5, &i.to_be_bytes()));
            assert_eq!(index, i);
            mem.0.extend(nodes.into_iter().map(|(l, x, h)| ((l, x), h)));
            assert_eq!(acc.peaks.len(), acc.leaf_count.count_ones() as usize);
            sealed.push(SealedArchive {
                leaf_count: acc.leaf_count,
                root: acc.root(),
            });
        }
        for seal in &sealed {
            for i in 0..seal.leaf_count {
                let (siblings, other_peaks) = prove(&mem, seal.leaf_count, i)
                    .expect("read")
                    .expect("stored");
                let mut proof = RevivalProof {
                    key: key(i),
                    value: i.to_be_bytes().to_vec(),
                    expired_epoch: i / 5,
                    leaf_index: i,
                    sealed_epoch: 0,
                    siblings,
                    other_peaks,
                    folded: None,
                };
                assert_eq!(proof.verify(seal), Ok(()));
                proof.value[7] ^= 1;
                assert_eq!(proof.verify(seal), Err(ArchiveProofError::RootMismatch));
                proof.value[7] ^= 1;
                proof.expired_epoch += 1;
                assert!(proof.verify(seal).is_err());
                proof.expired_epoch -= 1;
                proof.leaf_index = seal.leaf_count;
                assert!(matches!(
                    proof.verify(seal),
                    Err(ArchiveProofError::OutOfRange { .. })
                ));
            }
        }
        // A root is bound to its count: the same peaks under another count differ.
        assert_ne!(bag_peaks(3, &acc.peaks), acc.root());
    }
}
