//! Fold pages: how expired stubs leave the active tree for good without weakening expiry's
//! two promises — an expired entry is never read as a zero, and only its latest archived
//! version can be revived, once (docs/expiry.md, "Folding").
//!
//! A stub costs a tree leaf (≈ 400 bytes on disk), so under steady churn stubs would grow
//! disk without bound. Once a stub is old enough, a block folds it with up to
//! [`MAX_FOLD_KEYS_PER_PAGE`] others into one *fold page*, a single state entry holding:
//! - a Bloom filter over the folded key hashes ([`FOLD_FILTER_BITS_PER_KEY`] bits per key):
//!   a key absent from the tree that some page flags may be archived, so reading it is the
//!   typed expiry error, never a zero;
//! - the root of the page's stubs sorted by key hash, each with the epoch and archive leaf
//!   its stub named: a revival proves the version it brings back was the one folded
//!   (membership), and that no later page holds a newer one (two adjacent leaves bracketing
//!   the key in every later page whose filter flags it — CAP-57's non-archival proof, needed
//!   only where a filter says so).
//!
//! The list is the same mountain-range shape as the archive, built at once, so proofs reuse
//! `archive::verify_path`.

use crate::archive::{
    prove, verify_path, ArchiveAccumulator, ArchiveNodes, ArchiveProofError, MAX_ARCHIVE_LEVELS,
};
use crate::encoding::{check_len, Canonical, DecodeError};
use crate::hash::{Domain, Hash};
use crate::Epoch;
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeMap;

/// Stubs one page (and so one block) folds at most; bounds a block's folding work and the
/// size of a page entry.
pub const MAX_FOLD_KEYS_PER_PAGE: usize = 1_024;
/// Filter bits per folded key. With [`FOLD_FILTER_PROBES`] probes a page flags a key it
/// does not hold with probability ≈ 2 × 10⁻⁷ (0.5²²); 4 bytes per key instead of a leaf.
pub const FOLD_FILTER_BITS_PER_KEY: u64 = 32;
/// Bits each key sets and each lookup tests (≈ bits per key × ln 2).
pub const FOLD_FILTER_PROBES: u64 = 22;
/// Smallest filter, so a page of one key is not a one-byte filter that flags everything.
pub const MIN_FOLD_FILTER_BITS: u64 = 256;
/// Largest filter a page can have.
pub const MAX_FOLD_FILTER_BYTES: usize =
    (MAX_FOLD_KEYS_PER_PAGE as u64 * FOLD_FILTER_BITS_PER_KEY / 8) as usize;
/// Later pages a folded revival can carry absence proofs for. A page flags a key it does not
/// hold with probability ≈ 2 × 10⁻⁷, so a key flagged by 16 later pages does not occur.
pub const MAX_ABSENCES_PER_REVIVAL: usize = 16;
/// Longest sibling or peak list of a page path (a page has at most 1,024 leaves).
const MAX_PAGE_PATH: usize = 11;
/// Bound on one encoded [`PageLeafProof`].
const MAX_LEAF_PROOF_BYTES: usize = 8 + 48 + 2 * (4 + 32 * MAX_PAGE_PATH);
/// Bound on an encoded [`FoldedRevival`] (what a revival proof adds for a folded entry).
pub const MAX_FOLDED_REVIVAL_BYTES: usize =
    8 + MAX_LEAF_PROOF_BYTES + 4 + MAX_ABSENCES_PER_REVIVAL * (8 + 2 * (1 + MAX_LEAF_PROOF_BYTES));

/// A stub as a page lists it: the key's position in the tree, the epoch it expired in and its
/// archive leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct FoldedStub {
    pub key_hash: Hash,
    pub epoch: Epoch,
    pub leaf: u64,
}

impl FoldedStub {
    pub fn leaf_hash(&self) -> Hash {
        Hash::digest_parts(
            Domain::FoldLeaf,
            &[
                &self.key_hash.0,
                &self.epoch.to_be_bytes(),
                &self.leaf.to_be_bytes(),
            ],
        )
    }
}

/// One fold page, stored in state under `StateKey::FoldPage(index)`. Never expires.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct FoldPage {
    /// The newest epoch any of its stubs expired in (what an error names).
    pub newest_epoch: Epoch,
    pub key_count: u64,
    /// Root of the stubs sorted by key hash.
    pub keys_root: Hash,
    pub filter: Vec<u8>,
}

/// The filter size of a page of `key_count` keys, in bits (a whole number of bytes).
pub fn filter_bits(key_count: u64) -> u64 {
    (key_count.saturating_mul(FOLD_FILTER_BITS_PER_KEY))
        .max(MIN_FOLD_FILTER_BITS)
        .div_ceil(8)
        * 8
}

/// A key's filter probes, hashed once and reused for every page: 22 words from one keyed
/// blake3 output stream of the key hash. (A read of an absent key probes every page, so the
/// hash is paid once per read, not once per page. Double hashing, h1 + i·h2, was measured
/// here to flag outsiders ~100× too often on small pages — its probes form an arithmetic
/// progression, so keys sharing a step overlap — and is not used.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyProbes([u64; FOLD_FILTER_PROBES as usize]);

impl KeyProbes {
    pub fn new(key_hash: &Hash) -> KeyProbes {
        let mut stream = blake3::Hasher::new_keyed(Domain::FoldProbe.key());
        stream.update(&key_hash.0);
        let mut bytes = [0u8; 8 * FOLD_FILTER_PROBES as usize];
        stream.finalize_xof().fill(&mut bytes);
        let mut words = [0u64; FOLD_FILTER_PROBES as usize];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            *word = u64::from_be_bytes(chunk.try_into().expect("8-byte chunks"));
        }
        KeyProbes(words)
    }

    /// The bits the key sets in page `page` of `bits` bits: each word mixed with the page
    /// index through a bijective 64-bit finalizer, so a key that collides in one page is
    /// independent in the next. `bits ≤ 2¹⁵`, so the modulo bias is below 2⁻⁴⁸.
    fn positions(&self, page: u64, bits: u64) -> impl Iterator<Item = u64> + '_ {
        let salt = page.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0
            .iter()
            .enumerate()
            .map(move |(i, w)| fmix64(w ^ salt.rotate_left(i as u32)) % bits)
    }
}

/// MurmurHash3's 64-bit finalizer: a bijection that spreads every input bit.
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

struct Mem(BTreeMap<(u32, u64), Hash>);

impl ArchiveNodes for Mem {
    type Error = std::convert::Infallible;
    fn node(&self, level: u32, index: u64) -> Result<Option<Hash>, Self::Error> {
        Ok(self.0.get(&(level, index)).copied())
    }
}

fn build_tree(stubs: &[FoldedStub]) -> (ArchiveAccumulator, Mem) {
    let mut acc = ArchiveAccumulator::default();
    let mut mem = Mem(BTreeMap::new());
    for stub in stubs {
        let (_, nodes) = acc.push(stub.leaf_hash());
        mem.0.extend(nodes.into_iter().map(|(l, i, h)| ((l, i), h)));
    }
    (acc, mem)
}

impl FoldPage {
    /// Page `index` over `stubs`, which must be sorted by key hash without repeats (the
    /// caller builds them so; a violation is a bug, not input).
    pub fn build(index: u64, stubs: &[FoldedStub]) -> FoldPage {
        assert!(!stubs.is_empty() && stubs.len() <= MAX_FOLD_KEYS_PER_PAGE);
        assert!(stubs.windows(2).all(|w| w[0].key_hash < w[1].key_hash));
        let (acc, _) = build_tree(stubs);
        let bits = filter_bits(stubs.len() as u64);
        let mut filter = vec![0u8; (bits / 8) as usize];
        for stub in stubs {
            for bit in KeyProbes::new(&stub.key_hash).positions(index, bits) {
                filter[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        FoldPage {
            newest_epoch: stubs.iter().map(|s| s.epoch).max().unwrap_or(0),
            key_count: stubs.len() as u64,
            keys_root: acc.root(),
            filter,
        }
    }

    /// Whether page `index` may hold `key_hash` (false positives ≈ 2 × 10⁻⁷).
    pub fn flags(&self, index: u64, key_hash: &Hash) -> bool {
        self.flags_probes(index, &KeyProbes::new(key_hash))
    }

    /// As `flags`, with the key's probes computed once for many pages.
    pub fn flags_probes(&self, index: u64, probes: &KeyProbes) -> bool {
        let bits = self.filter.len() as u64 * 8;
        bits > 0
            && probes
                .positions(index, bits)
                .all(|bit| self.filter[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }

    /// Checks that `proof` shows its stub at its position in this page.
    pub fn verify_leaf(&self, proof: &PageLeafProof) -> Result<(), FoldProofError> {
        verify_path(
            proof.stub.leaf_hash(),
            proof.position,
            self.key_count,
            (&proof.siblings, &proof.other_peaks),
            &self.keys_root,
        )
        .map_err(|source| FoldProofError::Path {
            position: proof.position,
            source,
        })
    }

    /// Checks that `absence` shows this page does not hold `key_hash`: two adjacent leaves
    /// around it, or the first leaf above it, or the last leaf below it.
    pub fn verify_absent(&self, key_hash: &Hash, absence: &Absence) -> Result<(), FoldProofError> {
        let bracket = |ok: bool, why: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(FoldProofError::NotBracketing(why))
            }
        };
        if let Some(below) = &absence.below {
            self.verify_leaf(below)?;
            bracket(
                below.stub.key_hash < *key_hash,
                "the lower leaf is not below the key",
            )?;
        }
        if let Some(above) = &absence.above {
            self.verify_leaf(above)?;
            bracket(
                above.stub.key_hash > *key_hash,
                "the upper leaf is not above the key",
            )?;
        }
        match (&absence.below, &absence.above) {
            (Some(b), Some(a)) => bracket(
                b.position.checked_add(1) == Some(a.position),
                "the leaves are not adjacent",
            ),
            (None, Some(a)) => bracket(a.position == 0, "the upper leaf is not the first"),
            (Some(b), None) => bracket(
                b.position.checked_add(1) == Some(self.key_count),
                "the lower leaf is not the last",
            ),
            (None, None) => bracket(false, "no leaves"),
        }
    }
}

impl Canonical for FoldPage {
    const KIND: &'static str = "FoldPage";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = 1 + 8 + 8 + 32 + 4 + MAX_FOLD_FILTER_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(
            Self::KIND,
            "keys",
            self.key_count as usize,
            MAX_FOLD_KEYS_PER_PAGE,
        )?;
        if self.key_count == 0 || self.filter.len() as u64 * 8 != filter_bits(self.key_count) {
            return Err(DecodeError::Malformed {
                kind: Self::KIND,
                reason: "filter size does not match the key count".into(),
            });
        }
        Ok(())
    }
}

/// A stub at `position` of a page, with its path to the page's root.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PageLeafProof {
    pub position: u64,
    pub stub: FoldedStub,
    pub siblings: Vec<Hash>,
    pub other_peaks: Vec<Hash>,
}

impl PageLeafProof {
    /// The proof of leaf `position` of a page over `stubs` (sorted, as `FoldPage::build`).
    pub fn build(stubs: &[FoldedStub], position: usize) -> Option<PageLeafProof> {
        let stub = *stubs.get(position)?;
        let (acc, mem) = build_tree(stubs);
        let (siblings, other_peaks) = match prove(&mem, acc.leaf_count, position as u64) {
            Ok(path) => path?,
            Err(never) => match never {},
        };
        Some(PageLeafProof {
            position: position as u64,
            stub,
            siblings,
            other_peaks,
        })
    }

    fn validate(&self) -> Result<(), DecodeError> {
        const KIND: &str = "PageLeafProof";
        check_len(KIND, "siblings", self.siblings.len(), MAX_PAGE_PATH)?;
        check_len(KIND, "other_peaks", self.other_peaks.len(), MAX_PAGE_PATH)
    }
}

/// That page `page` does not hold a key: the leaves just below and just above it.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Absence {
    pub page: u64,
    pub below: Option<PageLeafProof>,
    pub above: Option<PageLeafProof>,
}

impl Absence {
    /// The absence proof of `key_hash` in a page over `stubs`; `None` if the page holds it.
    pub fn build(page: u64, stubs: &[FoldedStub], key_hash: &Hash) -> Option<Absence> {
        let at = match stubs.binary_search_by(|s| s.key_hash.cmp(key_hash)) {
            Ok(_) => return None,
            Err(at) => at,
        };
        Some(Absence {
            page,
            below: at
                .checked_sub(1)
                .and_then(|b| PageLeafProof::build(stubs, b)),
            above: PageLeafProof::build(stubs, at),
        })
    }
}

/// What a revival of a folded entry adds to the archive proof: the page that folded this
/// version, and the absence of the key from every later page whose filter flags it, in page
/// order.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct FoldedRevival {
    pub page: u64,
    pub member: PageLeafProof,
    pub absent: Vec<Absence>,
}

impl FoldedRevival {
    pub fn validate(&self) -> Result<(), DecodeError> {
        check_len(
            "FoldedRevival",
            "absent",
            self.absent.len(),
            MAX_ABSENCES_PER_REVIVAL,
        )?;
        self.member.validate()?;
        validate_absences(&self.absent)
    }
}

/// What an unflag transaction carries: for a key absent from the tree that fold pages flag
/// although it never expired (a filter false positive), the absence of the key from every
/// page that flags it, in page order. Accepted, it writes a deletion marker, after which the
/// key reads as absent.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct UnflagProof {
    pub key: crate::StateKey,
    pub absent: Vec<Absence>,
}

impl Canonical for UnflagProof {
    const KIND: &'static str = "UnflagProof";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = 1
        + crate::state_key::MAX_STATE_KEY_BYTES
        + 4
        + MAX_ABSENCES_PER_REVIVAL * (8 + 2 * (1 + MAX_LEAF_PROOF_BYTES));

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(
            Self::KIND,
            "absent",
            self.absent.len(),
            MAX_ABSENCES_PER_REVIVAL,
        )?;
        validate_absences(&self.absent)
    }
}

fn validate_absences(absent: &[Absence]) -> Result<(), DecodeError> {
    for a in absent {
        for leaf in a.below.iter().chain(&a.above) {
            leaf.validate()?;
        }
    }
    Ok(())
}

/// Why a fold proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldProofError {
    #[error("page leaf {position}: {source}")]
    Path {
        position: u64,
        source: ArchiveProofError,
    },
    #[error("not an absence proof: {0}")]
    NotBracketing(&'static str),
}

const _: () = assert!(MAX_PAGE_PATH <= MAX_ARCHIVE_LEVELS);
const _: () = assert!(MAX_FOLDED_REVIVAL_BYTES <= 32 * 1024);

#[cfg(test)]
mod tests {
    use super::*;

    fn stubs(n: u64, salt: u8) -> Vec<FoldedStub> {
        let mut out: Vec<FoldedStub> = (0..n)
            .map(|i| FoldedStub {
                key_hash: Hash::digest_parts(Domain::Code, &[&[salt], &i.to_be_bytes()]),
                epoch: i % 3,
                leaf: i,
            })
            .collect();
        out.sort_by_key(|s| s.key_hash);
        out
    }

    #[test]
    fn every_member_proves_and_every_outsider_has_an_absence_proof() {
        for n in [1u64, 2, 3, 7, 64, 100] {
            let list = stubs(n, 1);
            let page = FoldPage::build(5, &list);
            assert_eq!(FoldPage::decode(&page.encode()).expect("round trip"), page);
            for (i, stub) in list.iter().enumerate() {
                assert!(page.flags(5, &stub.key_hash), "no false negatives");
                let proof = PageLeafProof::build(&list, i).expect("in range");
                assert_eq!(page.verify_leaf(&proof), Ok(()));
                let mut forged = proof.clone();
                forged.stub.leaf += 1;
                assert!(page.verify_leaf(&forged).is_err(), "another version fails");
                assert!(Absence::build(5, &list, &stub.key_hash).is_none());
            }
            for outsider in stubs(50, 2) {
                let absence = Absence::build(5, &list, &outsider.key_hash).expect("absent");
                assert_eq!(page.verify_absent(&outsider.key_hash, &absence), Ok(()));
            }
            // An absence claim for a member cannot be made from real leaves.
            if n >= 3 {
                let member = list[1].key_hash;
                let fake = Absence {
                    page: 5,
                    below: PageLeafProof::build(&list, 0),
                    above: PageLeafProof::build(&list, 2),
                };
                assert!(page.verify_absent(&member, &fake).is_err());
            }
        }
    }

    #[test]
    fn false_positives_are_rare_on_small_and_full_pages() {
        let outsiders = stubs(200_000, 4);
        for n in [1u64, 5, 128, 1_024] {
            let page = FoldPage::build(0, &stubs(n, 3));
            let flagged = outsiders
                .iter()
                .filter(|s| page.flags(0, &s.key_hash))
                .count();
            // Expected ≤ 0.05 at ≈ 2 × 10⁻⁷; probes in arithmetic progression (double
            // hashing) flagged ≈ 170 of these on the 5-key page.
            assert!(
                flagged <= 2,
                "{flagged} false positives in 200,000 ({n} keys)"
            );
            assert!(
                page.encode().len() as u64 <= (n * 4).max(32) + 64,
                "4 bytes per key"
            );
        }
    }
}
