//! State proofs: membership and non-membership of a key against a state root, verified with
//! a plain function and no database.

use crate::encoding::{check_len, Canonical, DecodeError};
use crate::hash::{Hash, JmtHasher};
use crate::limits::{MAX_PROOF_BYTES, MAX_STATE_VALUE_BYTES};
use crate::state_key::StateKey;
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
