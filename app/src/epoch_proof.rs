//! Epoch-change proofs: what a node that has none of the history trusts. Each record proves
//! that epoch e ended at one block and which set runs epoch e + 1, checked only against the
//! set the previous record committed to — so a chain of them from genesis (or from a trusted
//! checkpoint) reaches the current set and a certified state root without executing a block.
//!
//! Why the proof is sound: the set of epoch e + 1 is written by epoch e's second-to-last
//! block (runtime `fixes_next_set`), so it is in the state root that the last block's header
//! commits to (`parent_state_root`); the last block is finalized by epoch e's quorum, either
//! directly or through the epoch's empty suffix blocks (docs/consensus.md). A membership proof
//! of `StateKey::EpochValidators(e + 1)` against that root therefore names a set that more
//! than 2/3 of epoch e's power certified.

use borsh::{BorshDeserialize, BorshSerialize};
use keel_consensus::{verify_certificate, CertificateError, ValidatorSet, MAX_SYNC_HEADERS};
use keel_state::{Entry, StateError};
use keel_store::Store;
use keel_types::validator::EpochSet;
use keel_types::{
    Canonical, Certificate, DecodeError, Hash, Header, Height, StateKey, StateProof, VoteKind,
};

/// Epoch changes in one `keel_getEpochProof` answer (a client asks again from the next).
pub const MAX_EPOCH_CHANGES_PER_RESPONSE: usize = 64;
const CHANGE_PREFIX: &[u8] = b"epoch_change/";

/// The end of epoch `epoch` and the set of `epoch + 1`.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct EpochChange {
    pub epoch: u64,
    /// The epoch's last block's header (height (epoch + 1) · epoch_length).
    pub last: Header,
    /// Empty suffix headers above `last` when it has no certificate of its own.
    pub suffix: Vec<Header>,
    /// Epoch `epoch`'s finalization of the top of `last ‖ suffix`.
    pub certificate: Certificate,
    /// `StateKey::EpochValidators(epoch + 1)` against `last.parent_state_root`.
    pub next_set: StateProof,
}

impl Canonical for EpochChange {
    const KIND: &'static str = "EpochChange";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = 1
        + 8
        + (MAX_SYNC_HEADERS + 1) * Header::MAX_ENCODED_BYTES
        + 4
        + Certificate::MAX_ENCODED_BYTES
        + StateProof::MAX_ENCODED_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        keel_types::encoding::check_len(Self::KIND, "suffix", self.suffix.len(), MAX_SYNC_HEADERS)?;
        self.certificate.validate()?;
        self.next_set.validate()
    }
}

/// What a verified chain of epoch changes establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trusted {
    /// The set of `set.epoch`, the epoch after the last verified change.
    pub set: EpochSet,
    /// The last verified epoch's last block: height and hash.
    pub boundary: (Height, Hash),
    /// The state root after `boundary.0 - 1`, which the boundary block's header commits
    /// to: the state a snapshot restores, and holds `set`.
    pub state_root: Hash,
}

/// Why a chain of epoch changes is refused. The peer that sent it is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochProofError {
    #[error("epoch change for epoch {got}, expected epoch {expected}")]
    WrongEpoch { expected: u64, got: u64 },
    #[error("epoch {epoch}'s last block is at height {got}, expected {expected}")]
    WrongHeight {
        epoch: u64,
        expected: Height,
        got: Height,
    },
    #[error("epoch {epoch}: headers do not form one chain of this epoch at index {index}")]
    BrokenChain { epoch: u64, index: usize },
    #[error("epoch {epoch}: the certificate is not a finalization of the top header")]
    WrongCertificate { epoch: u64 },
    #[error("epoch {epoch}: certificate: {source}")]
    Certificate {
        epoch: u64,
        source: CertificateError,
    },
    #[error("epoch {epoch}: next set proof: {reason}")]
    SetProof { epoch: u64, reason: String },
    #[error("checkpoint {height}:{hash} is not the last block of a served epoch change")]
    CheckpointNotOnChain { height: Height, hash: Hash },
    #[error("no epoch changes to verify")]
    Empty,
    #[error("an epoch change that does not decode: {0}")]
    Malformed(String),
}

/// Verifies `changes` against the set of `first.epoch` (genesis' for epoch 0), in order.
pub fn verify_from_set(
    chain_id: u64,
    epoch_length: u64,
    first: EpochSet,
    changes: &[EpochChange],
) -> Result<Trusted, EpochProofError> {
    let mut set = first;
    let mut trusted = None;
    for change in changes {
        let verified = verify_one(chain_id, epoch_length, &set, change)?;
        set = verified.set.clone();
        trusted = Some(verified);
    }
    trusted.ok_or(EpochProofError::Empty)
}

/// Verifies `changes` from a trusted checkpoint: the first change's last block must be the
/// checkpoint (its certificate is not checked — the checkpoint is what is trusted), the rest
/// chain on from the set it commits to.
pub fn verify_from_checkpoint(
    chain_id: u64,
    epoch_length: u64,
    checkpoint: (Height, Hash),
    changes: &[EpochChange],
) -> Result<Trusted, EpochProofError> {
    let (height, hash) = checkpoint;
    let first = changes.first().ok_or(EpochProofError::Empty)?;
    if first.last.height != height || first.last.hash() != hash || first.last.chain_id != chain_id {
        return Err(EpochProofError::CheckpointNotOnChain { height, hash });
    }
    check_last_height(epoch_length, first)?;
    let set = proven_set(first)?;
    let trusted = Trusted {
        set,
        boundary: checkpoint,
        state_root: first.last.parent_state_root,
    };
    if changes.len() == 1 {
        return Ok(trusted);
    }
    verify_from_set(chain_id, epoch_length, trusted.set, &changes[1..])
}

fn check_last_height(epoch_length: u64, change: &EpochChange) -> Result<(), EpochProofError> {
    let expected = change
        .epoch
        .checked_add(1)
        .and_then(|e| e.checked_mul(epoch_length))
        .unwrap_or(Height::MAX);
    if change.last.height != expected || change.last.epoch != change.epoch {
        return Err(EpochProofError::WrongHeight {
            epoch: change.epoch,
            expected,
            got: change.last.height,
        });
    }
    Ok(())
}

fn verify_one(
    chain_id: u64,
    epoch_length: u64,
    set: &EpochSet,
    change: &EpochChange,
) -> Result<Trusted, EpochProofError> {
    let epoch = set.epoch;
    if change.epoch != epoch {
        return Err(EpochProofError::WrongEpoch {
            expected: epoch,
            got: change.epoch,
        });
    }
    check_last_height(epoch_length, change)?;
    // last ‖ suffix: one chain of this epoch (the rule sync responses follow).
    let mut previous: Option<&Header> = None;
    for (index, header) in std::iter::once(&change.last)
        .chain(&change.suffix)
        .enumerate()
    {
        let linked = previous.is_none_or(|p| {
            header.parent_hash == p.hash()
                && p.height.checked_add(1) == Some(header.height)
                && header.view > p.view
        });
        if header.chain_id != chain_id || header.epoch != epoch || !linked {
            return Err(EpochProofError::BrokenChain { epoch, index });
        }
        previous = Some(header);
    }
    let top = change.suffix.last().unwrap_or(&change.last);
    let vote = &change.certificate.vote;
    if vote.kind != VoteKind::Finalize || vote.block != top.hash() || vote.view != top.view {
        return Err(EpochProofError::WrongCertificate { epoch });
    }
    let validators = ValidatorSet::weighted(epoch, set.keys(), set.powers());
    verify_certificate(chain_id, &validators, &change.certificate)
        .map_err(|source| EpochProofError::Certificate { epoch, source })?;
    Ok(Trusted {
        set: proven_set(change)?,
        boundary: (change.last.height, change.last.hash()),
        state_root: change.last.parent_state_root,
    })
}

/// The next set, if `change.next_set` proves it against the last header's parent root.
fn proven_set(change: &EpochChange) -> Result<EpochSet, EpochProofError> {
    let epoch = change.epoch;
    let bad = |reason: String| EpochProofError::SetProof { epoch, reason };
    let next = epoch
        .checked_add(1)
        .ok_or_else(|| bad("epoch overflow".into()))?;
    let proof = &change.next_set;
    if proof.key != StateKey::EpochValidators(next) {
        return Err(bad(format!("proves {:?}", proof.key)));
    }
    proof
        .verify(change.last.parent_state_root)
        .map_err(|e| bad(e.to_string()))?;
    let raw = proof.value.as_deref().ok_or_else(|| bad("absent".into()))?;
    let value = match Entry::decode(raw).map_err(|e| bad(e.to_string()))? {
        Entry::Live { value, .. } => value,
        Entry::Expired { .. } => return Err(bad("expired".into())),
    };
    let set = EpochSet::decode(&value).map_err(|e| bad(e.to_string()))?;
    if set.epoch != next || set.members.is_empty() {
        return Err(bad(format!(
            "a set for epoch {} of {} members",
            set.epoch,
            set.members.len()
        )));
    }
    Ok(set)
}

fn change_key(epoch: u64) -> Vec<u8> {
    let mut k = CHANGE_PREFIX.to_vec();
    k.extend(epoch.to_be_bytes());
    k
}

/// Builds and records epoch `epoch`'s change once its last block is committed: `suffix` is
/// the engine's suffix proof, else the last block's own certificate is in the store. Needs
/// the state of the block before the last (the pruner keeps more than one height).
pub fn record(
    store: &Store,
    epoch: u64,
    epoch_length: u64,
    suffix: Option<(Vec<Header>, Certificate)>,
) -> Result<EpochChange, StateError> {
    let height = epoch
        .checked_add(1)
        .and_then(|e| e.checked_mul(epoch_length))
        .ok_or_else(|| StateError::Corrupt("epoch height overflow".into()))?;
    let last = store
        .block(height)?
        .ok_or_else(|| StateError::Corrupt(format!("no block at height {height}")))?
        .header;
    let (suffix, certificate) = match suffix {
        Some(found) => found,
        None => (
            Vec::new(),
            crate::sync::certificate_of(store, height)?.ok_or_else(|| {
                StateError::Corrupt(format!("no certificate for epoch {epoch}'s last block"))
            })?,
        ),
    };
    let next_set = store.prove(&StateKey::EpochValidators(epoch + 1), height - 1)?;
    let change = EpochChange {
        epoch,
        last,
        suffix,
        certificate,
        next_set,
    };
    put(store, &change)?;
    Ok(change)
}

/// Keeps a verified change, to serve it (a node restored from a snapshot keeps the chain it
/// verified, so it serves the epochs it never executed).
pub fn put(store: &Store, change: &EpochChange) -> Result<(), StateError> {
    store.put_aux(&change_key(change.epoch), &change.encode())
}

/// The recorded changes from `from_epoch` on, consecutive, at most `max`.
pub fn changes(store: &Store, from_epoch: u64, max: usize) -> Result<Vec<EpochChange>, StateError> {
    let mut out = Vec::new();
    let mut epoch = from_epoch;
    while out.len() < max.min(MAX_EPOCH_CHANGES_PER_RESPONSE) {
        let Some(raw) = store.get_aux(&change_key(epoch))? else {
            break;
        };
        out.push(EpochChange::decode(&raw).map_err(|e| StateError::Corrupt(e.to_string()))?);
        epoch += 1;
    }
    Ok(out)
}
