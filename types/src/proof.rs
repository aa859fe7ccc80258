//! State proofs: membership and non-membership of a key against a state root, verified with
//! a plain function and no database.

use crate::encoding::{check_len, Canonical, DecodeError};
use crate::hash::{Hash, JmtHasher};
use crate::limits::{MAX_PROOF_BYTES, MAX_STATE_VALUE_BYTES};
use crate::state_key::{StateKey, MAX_STATE_KEY_BYTES};
use crate::Height;
use borsh::{BorshDeserialize, BorshSerialize};

/// The Jellyfish Merkle proof type over keel's hasher.
pub type MerkleProof = jmt::proof::SparseMerkleProof<JmtHasher>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("proof does not match root {root}: {reason}")]
    Mismatch { root: Hash, reason: String },
}

/// A key, its value at `height` (`None` proves absence) and the Merkle path to the root.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct StateProof {
    pub height: Height,
    pub key: StateKey,
    pub value: Option<Vec<u8>>,
    pub proof: MerkleProof,
}

impl StateProof {
    /// Verifies this proof against `root`.
    pub fn verify(&self, root: Hash) -> Result<(), ProofError> {
        verify_state_proof(root, &self.key, self.value.as_deref(), &self.proof)
    }
}

impl Canonical for StateProof {
    const KIND: &'static str = "StateProof";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = MAX_PROOF_BYTES + MAX_STATE_VALUE_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        if let Some(value) = &self.value {
            check_len(Self::KIND, "value", value.len(), MAX_STATE_VALUE_BYTES)?;
        }
        Ok(())
    }
}

/// Checks that `key` maps to `value` (or, for `None`, to nothing) in the tree with `root`.
pub fn verify_state_proof(
    root: Hash,
    key: &StateKey,
    value: Option<&[u8]>,
    proof: &MerkleProof,
) -> Result<(), ProofError> {
    proof
        .verify(jmt::RootHash(root.0), jmt::KeyHash(key.key_hash().0), value)
        .map_err(|e| ProofError::Mismatch {
            root,
            reason: e.to_string(),
        })
}

/// A Jellyfish range proof over keel's hasher: the right siblings of the path to a chunk's
/// last key, which with the keys before it recompute the root.
pub type RangeProof = jmt::proof::SparseMerkleRangeProof<JmtHasher>;

/// Bytes of one snapshot chunk at most (entries and proof; a response fits one p2p frame).
pub const MAX_SNAPSHOT_CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// Bytes a server fills a chunk to at least, whatever it is asked (smaller requests would
/// cost a proof and a round trip per few entries).
pub const MIN_SNAPSHOT_CHUNK_BYTES: usize = 16 * 1024;
/// Entries of one snapshot chunk at most.
pub const MAX_SNAPSHOT_CHUNK_ENTRIES: usize = 65_536;
/// Room a chunk at the size cap keeps for its proof (at most 256 siblings of a 65-byte
/// node) and framing.
pub const SNAPSHOT_PROOF_RESERVE_BYTES: usize = 32 * 1024;

/// Bytes an entry counts toward a chunk's fill: its key, its value and a 16-byte allowance
/// for their framing. A server fills to it and a client checks the fill with it.
pub fn snapshot_entry_bytes(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + 16
}

/// The fill a server owes a chunk request for `max_bytes`: at least
/// [`MIN_SNAPSHOT_CHUNK_BYTES`], and room for the proof under [`MAX_SNAPSHOT_CHUNK_BYTES`].
pub fn snapshot_chunk_budget(max_bytes: usize) -> usize {
    max_bytes.clamp(
        MIN_SNAPSHOT_CHUNK_BYTES,
        MAX_SNAPSHOT_CHUNK_BYTES - SNAPSHOT_PROOF_RESERVE_BYTES,
    )
}

/// Whether a chunk of `entries` entries filling `fill_bytes` (by [`snapshot_entry_bytes`])
/// was filled as far as a request for `max_bytes` lets, given the size of the entry that
/// follows it: the first of a verified chunk asked right after its last key (the proofs
/// make that the true successor; a chunk asked from an earlier key, after a restore
/// rewound, says nothing).
/// A server takes entries in key order until the next would pass the budget or the entry
/// cap is reached, so an honest chunk always passes; one that stopped earlier is a server
/// starving the restore of entries (each chunk costs a round trip and a proof).
pub fn snapshot_chunk_filled(
    max_bytes: usize,
    entries: usize,
    fill_bytes: usize,
    next_entry_bytes: usize,
) -> bool {
    entries >= MAX_SNAPSHOT_CHUNK_ENTRIES
        || fill_bytes.saturating_add(next_entry_bytes) > snapshot_chunk_budget(max_bytes)
}

/// A run of one height's state in key-hash order — every stored entry (live values and
/// stubs, exactly the tree's leaf bytes) with its canonical key — and the range proof that,
/// with every chunk before it, recomputes the height's root (snapshot sync,
/// docs/validators.md).
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct SnapshotChunk {
    pub height: Height,
    /// The key hash the request named (the chunk holds keys after it), echoed: requests
    /// carry no id, and a late answer to an earlier request of the same peer (a prefetch
    /// discarded after its timeout) must not be taken for this one's, fail its proof and
    /// get an honest peer dropped.
    pub after: Option<crate::Hash>,
    /// (canonical `StateKey` bytes, stored entry bytes), ascending by key hash.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The server says nothing follows its last key (a hint to stop asking: the restore
    /// decides from the proof).
    pub last: bool,
    pub proof: RangeProof,
}

// jmt's proof compares by its siblings (a manual `PartialEq`) but derives `Eq` only for an
// `Eq` hasher; the comparison is total all the same.
impl Eq for SnapshotChunk {}

impl Canonical for SnapshotChunk {
    const KIND: &'static str = "SnapshotChunk";
    // 2: `after` is echoed.
    const VERSION: u8 = 2;
    const MAX_ENCODED_BYTES: usize = MAX_SNAPSHOT_CHUNK_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(
            Self::KIND,
            "entries",
            self.entries.len(),
            MAX_SNAPSHOT_CHUNK_ENTRIES,
        )?;
        for (key, value) in &self.entries {
            check_len(Self::KIND, "key", key.len(), MAX_STATE_KEY_BYTES)?;
            check_len(Self::KIND, "value", value.len(), MAX_STATE_VALUE_BYTES)?;
        }
        Ok(())
    }
}
