//! Vote and certificate shapes for the BFT protocol (Simplex-style: notarize, nullify,
//! finalize). The consensus crate gives them meaning; here they get a canonical, signed form.

use crate::crypto::{PublicKey, Signature};
use crate::encoding::{check_len, Canonical, DecodeError};
use crate::hash::{Domain, Hash};
use crate::limits::{MAX_CERTIFICATE_BYTES, MAX_VALIDATORS};
use crate::{Epoch, View};
use borsh::{BorshDeserialize, BorshSerialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = true)]
pub enum VoteKind {
    /// "This proposal is valid and I saw it first in this view."
    Notarize = 0,
    /// "Nothing was notarized for me in this view in time; move on."
    Nullify = 1,
    /// "I notarized this block and did not nullify this view."
    Finalize = 2,
}

/// What a validator signs. `block` is `Hash::ZERO` for a nullify.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Vote {
    pub chain_id: u64,
    pub epoch: Epoch,
    pub view: View,
    pub kind: VoteKind,
    pub block: Hash,
}

impl Vote {
    /// The signing payload: the vote's canonical bytes hashed in the vote domain.
    pub fn signing_hash(&self) -> Hash {
        Hash::digest(Domain::Vote, &self.encode())
    }
}

impl Canonical for Vote {
    const KIND: &'static str = "Vote";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = 1 + 8 * 3 + 1 + 32;
}

/// A vote signed by the validator at `signer` in its epoch's validator set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedVote {
    pub vote: Vote,
    pub signer: u16,
    pub signature: Signature,
}

impl SignedVote {
    /// The same rule as a certificate's batch check (ZIP-215, `crypto`), so a vote the
    /// engine takes alone and the same vote inside a certificate get the same verdict.
    pub fn verify(&self, key: &PublicKey) -> Result<(), crate::CryptoError> {
        key.verify_zip215(&self.vote.signing_hash().0, &self.signature)
    }
}

impl Canonical for SignedVote {
    const KIND: &'static str = "SignedVote";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = Vote::MAX_ENCODED_BYTES + 2 + 64;
}

/// A quorum (2f+1) of signatures over one vote. `signers` is strictly increasing, so a
/// certificate has one canonical form and no signer counts twice.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Certificate {
    pub vote: Vote,
    pub signers: Vec<u16>,
    pub signatures: Vec<Signature>,
}

impl Canonical for Certificate {
    const KIND: &'static str = "Certificate";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = MAX_CERTIFICATE_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(Self::KIND, "signers", self.signers.len(), MAX_VALIDATORS)?;
        if self.signers.len() != self.signatures.len() {
            return Err(DecodeError::InvalidField {
                kind: Self::KIND,
                field: "signatures",
                reason: format!(
                    "{} signers but {} signatures",
                    self.signers.len(),
                    self.signatures.len()
                ),
            });
        }
        if self.signers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(DecodeError::InvalidField {
                kind: Self::KIND,
                field: "signers",
                reason: "not strictly increasing".into(),
            });
        }
        Ok(())
    }
}
