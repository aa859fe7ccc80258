//! Revival and unflag: the checks a `Revive` or `Unflag` transaction's proof must pass
//! against the state (archive membership under a sealed root, fold-page membership and
//! absences), its intrinsic gas, and the write that restores the entry. docs/expiry.md
//! argues why only the latest archived value of a key can come back.

use crate::expiry::sealed_archive;
use crate::Ov;
use keel_state::fold::{fold_count, fold_page};
use keel_state::{Entry, StateError, StateView, StateViewExt};
use keel_types::archive::RevivalProof;
use keel_types::fold::{Absence, FoldedRevival, FoldedStub, KeyProbes, UnflagProof};
use keel_types::receipt::FoldProofCode;
use keel_types::{Address, Canonical, RevivalError, StateKey, TxError};

/// Gas a revival costs before its proof bytes.
pub const REVIVAL_BASE_GAS: u64 = 25_000;
/// Gas per byte of revival proof (the calldata price of a nonzero byte).
pub const REVIVAL_GAS_PER_BYTE: u64 = 16;

/// Checks the fold part of a revival of an entry absent from the tree: the page that folded
/// it holds exactly this version, and every later page that flags the key proves it does not
/// hold the key (so no newer version was folded after it).
fn check_folded(
    view: &dyn StateView,
    proof: &RevivalProof,
    folded: &FoldedRevival,
) -> Result<Option<RevivalError>, StateError> {
    let refuse = |page, code: FoldProofCode| Ok(Some(RevivalError::BadFoldProof { page, code }));
    let key_hash = proof.key.key_hash();
    let Some(page) = fold_page(view, folded.page)? else {
        return refuse(folded.page, FoldProofCode::NoSuchPage);
    };
    let version = FoldedStub {
        key_hash,
        epoch: proof.expired_epoch,
        leaf: proof.leaf_index,
    };
    if folded.member.stub != version {
        return refuse(folded.page, FoldProofCode::WrongVersion);
    }
    if let Err(e) = page.verify_leaf(&folded.member) {
        return refuse(folded.page, (&e).into());
    }
    Ok(
        match check_absences(view, &key_hash, folded.page + 1, &folded.absent)? {
            Absences::Proven { .. } => None,
            Absences::Refused(reason) => Some(reason),
        },
    )
}

/// What an absence check concluded.
enum Absences {
    /// Every flagging page proved it does not hold the key; this many flag it.
    Proven {
        flagging: u64,
    },
    Refused(RevivalError),
}

/// Checks that `absent` proves, for every page from `first_page` on whose filter flags the
/// key, in page order, that the page does not hold it — and nothing else. Returns how many
/// pages flag it.
fn check_absences(
    view: &dyn StateView,
    key_hash: &keel_types::Hash,
    first_page: u64,
    absent: &[Absence],
) -> Result<Absences, StateError> {
    let refuse = |page, code: FoldProofCode| {
        Ok(Absences::Refused(RevivalError::BadFoldProof { page, code }))
    };
    let probes = KeyProbes::new(key_hash);
    let mut absences = absent.iter();
    let mut flagging = 0;
    for later in first_page..fold_count(view)? {
        let page = fold_page(view, later)?
            .ok_or_else(|| StateError::Corrupt(format!("fold page {later} is missing")))?;
        if !page.flags_probes(later, &probes) {
            continue;
        }
        flagging += 1;
        let Some(absence) = absences.next().filter(|a| a.page == later) else {
            return refuse(later, FoldProofCode::MissingAbsence);
        };
        if let Err(e) = page.verify_absent(key_hash, absence) {
            return refuse(later, (&e).into());
        }
    }
    if let Some(extra) = absences.next() {
        return refuse(extra.page, FoldProofCode::ExtraAbsence);
    }
    Ok(Absences::Proven { flagging })
}

/// What an accepted revival or unflag writes back: `value` under `key` (empty: a deletion
/// marker), and whether it came from a fold page (for the revived counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    pub key: StateKey,
    pub value: Vec<u8>,
    pub folded: bool,
}

/// What a revival or unflag check concluded about its proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofCheck {
    /// The proof holds: restore this.
    Accepted(Restore),
    /// The proof is refused; the sender pays its intrinsic gas and uses its nonce.
    Refused(TxError),
}

/// The proof a revival or unflag carries, or why it is refused before looking at state.
fn decode_proof<P: Canonical>(bytes: &[u8], expiry_epochs: u64) -> Result<P, RevivalError> {
    if expiry_epochs == 0 {
        return Err(RevivalError::ExpiryOff);
    }
    P::decode(bytes).map_err(|e| RevivalError::Malformed { code: (&e).into() })
}

/// Checks an unflag: `key` is absent from the tree, and every fold page whose filter flags
/// it proves it does not hold it — a false positive. A key that some page holds is archived
/// and cannot be unflagged (that would put a marker over its archived value); it is revived.
pub fn check_unflag(
    view: &dyn StateView,
    proof_bytes: &[u8],
    expiry_epochs: u64,
) -> Result<ProofCheck, StateError> {
    let refuse = |reason| Ok(ProofCheck::Refused(TxError::InvalidRevival { reason }));
    let proof: UnflagProof = match decode_proof(proof_bytes, expiry_epochs) {
        Ok(p) => p,
        Err(reason) => return refuse(reason),
    };
    let key = proof.key.clone();
    match view.entry(&proof.key)? {
        Some(Entry::Live { .. }) => return refuse(RevivalError::AlreadyLive { key }),
        Some(Entry::Expired { .. }) => return refuse(RevivalError::Archived { key }),
        None if !proof.key.expires() => return refuse(RevivalError::NotExpired { key }),
        None => {}
    }
    match check_absences(view, &proof.key.key_hash(), 0, &proof.absent)? {
        Absences::Refused(reason) => refuse(reason),
        // No page flags it: it already reads as absent, there is nothing to clear.
        Absences::Proven { flagging: 0 } => refuse(RevivalError::NotExpired { key }),
        Absences::Proven { .. } => Ok(ProofCheck::Accepted(Restore {
            key: proof.key,
            value: Vec::new(),
            folded: false,
        })),
    }
}

/// Checks a revival against the state; on success returns the entry to restore.
pub fn check_revival(
    view: &dyn StateView,
    proof_bytes: &[u8],
    expiry_epochs: u64,
) -> Result<ProofCheck, StateError> {
    let refuse = |reason| Ok(ProofCheck::Refused(TxError::InvalidRevival { reason }));
    let proof: RevivalProof = match decode_proof(proof_bytes, expiry_epochs) {
        Ok(p) => p,
        Err(reason) => return refuse(reason),
    };
    let key = proof.key.clone();
    if !proof.key.expires() {
        return refuse(RevivalError::NotExpired { key });
    }
    match view.entry(&proof.key)? {
        None => match &proof.folded {
            None => return refuse(RevivalError::NotExpired { key }),
            Some(folded) => {
                if let Some(reason) = check_folded(view, &proof, folded)? {
                    return refuse(reason);
                }
            }
        },
        // Live includes a deletion marker: a deleted key is newer than any archived value.
        Some(Entry::Live { .. }) => return refuse(RevivalError::AlreadyLive { key }),
        // A stub in the tree is the latest version; a folded version is older than it.
        Some(Entry::Expired { epoch, leaf })
            if (epoch, leaf) != (proof.expired_epoch, proof.leaf_index)
                || proof.folded.is_some() =>
        {
            return refuse(RevivalError::StaleVersion {
                key,
                latest_epoch: epoch,
                latest_leaf: leaf,
                proof_epoch: proof.expired_epoch,
                proof_leaf: proof.leaf_index,
            })
        }
        Some(Entry::Expired { .. }) => {}
    }
    let Some(sealed) = sealed_archive(view, proof.sealed_epoch)? else {
        return refuse(RevivalError::UnsealedEpoch {
            sealed_epoch: proof.sealed_epoch,
        });
    };
    if let Err(e) = proof.verify(&sealed) {
        return refuse(RevivalError::BadProof {
            sealed_epoch: proof.sealed_epoch,
            code: (&e).into(),
        });
    }
    Ok(ProofCheck::Accepted(Restore {
        folded: proof.folded.is_some(),
        key: proof.key,
        value: proof.value,
    }))
}

/// The intrinsic gas of a revival carrying `proof_len` bytes.
pub fn revival_gas(proof_len: usize) -> u64 {
    REVIVAL_BASE_GAS.saturating_add(REVIVAL_GAS_PER_BYTE.saturating_mul(proof_len as u64))
}

/// Charges `sender` for a revival (or unflag) and restores the entry. The caller has checked
/// the proof.
pub fn apply_revival(
    overlay: &mut Ov<'_>,
    sender: Address,
    beneficiary: Address,
    fee: keel_types::U256,
    restore: Restore,
) -> Result<(), StateError> {
    let mut account = overlay.account(&sender)?.unwrap_or_default();
    account.nonce += 1;
    account.balance -= fee;
    overlay.put_account(sender, &account)?;
    if !fee.is_zero() {
        // `beneficiary` is live or the fee burn (see `fee_recipient`), so this cannot fail on
        // an expired account.
        let mut paid = overlay.account(&beneficiary)?.unwrap_or_default();
        paid.balance = paid.balance.saturating_add(fee);
        overlay.put_account(beneficiary, &paid)?;
    }
    if restore.folded {
        overlay.count_folded_revival();
    }
    overlay.set(restore.key, Some(restore.value))
}
