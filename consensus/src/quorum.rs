//! Validator sets, quorum sizes, and certificate verification (signatures batch-verified).

use keel_types::crypto::verify_batch;
use keel_types::{Certificate, Epoch, Hash, PublicKey, Vote, VoteKind};

/// Largest f with n ≥ 3f + 1, and the quorum 2f + 1... generalised to n − f so that any two
/// quorums intersect in at least f + 1 validators (one honest) for every n, not only 3f + 1.
pub fn quorum_size(n: usize) -> usize {
    let f = n.saturating_sub(1) / 3;
    n - f
}

/// The leader of `view` among `n` validators: round robin by index.
pub fn leader_of(view: keel_types::View, n: usize) -> u16 {
    (view % (n as u64).max(1)) as u16
}

/// The validators of one epoch, in index order (a vote's `signer` indexes this list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSet {
    pub epoch: Epoch,
    pub keys: Vec<PublicKey>,
}

impl ValidatorSet {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn quorum(&self) -> usize {
        quorum_size(self.keys.len())
    }

    pub fn key(&self, index: u16) -> Option<&PublicKey> {
        self.keys.get(usize::from(index))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("certificate is for epoch {got}, this set is epoch {expected}")]
    WrongEpoch { expected: Epoch, got: Epoch },
    #[error("certificate is for chain {got}, expected {expected}")]
    WrongChain { expected: u64, got: u64 },
    #[error("certificate has {got} signers, quorum is {quorum}")]
    NoQuorum { got: usize, quorum: usize },
    #[error("signer index {0} is not in the validator set")]
    UnknownSigner(u16),
    #[error("certificate is not canonical: {0}")]
    Malformed(String),
    #[error("certificate signatures do not verify")]
    BadSignatures,
    #[error("nullification names block {0}; a nullify vote names no block")]
    NullifyNamesBlock(Hash),
}

/// Checks a certificate against `set`: right chain and epoch, a nullification naming no
/// block, strictly increasing known signers, a quorum of them, and every signature (one
/// batch verification).
pub fn verify_certificate(
    chain_id: u64,
    set: &ValidatorSet,
    cert: &Certificate,
) -> Result<(), CertificateError> {
    let vote: &Vote = &cert.vote;
    if vote.chain_id != chain_id {
        return Err(CertificateError::WrongChain {
            expected: chain_id,
            got: vote.chain_id,
        });
    }
    if vote.epoch != set.epoch {
        return Err(CertificateError::WrongEpoch {
            expected: set.epoch,
            got: vote.epoch,
        });
    }
    if vote.kind == VoteKind::Nullify && vote.block != Hash::ZERO {
        return Err(CertificateError::NullifyNamesBlock(vote.block));
    }
    use keel_types::Canonical;
    cert.validate()
        .map_err(|e| CertificateError::Malformed(e.to_string()))?;
    if cert.signers.len() < set.quorum() {
        return Err(CertificateError::NoQuorum {
            got: cert.signers.len(),
            quorum: set.quorum(),
        });
    }
    let message = vote.signing_hash();
    let mut items = Vec::with_capacity(cert.signers.len());
    for (signer, signature) in cert.signers.iter().zip(&cert.signatures) {
        let key = set
            .key(*signer)
            .ok_or(CertificateError::UnknownSigner(*signer))?;
        items.push((&message.0[..], *key, *signature));
    }
    verify_batch(&items).map_err(|_| CertificateError::BadSignatures)
}
