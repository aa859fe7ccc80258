//! State expiry inside block execution: the sweep that moves entries untouched for
//! `expiry_epochs` epochs into the archive (a bounded number per block, so an epoch boundary
//! is not a latency spike), the sealing of each epoch's archive root, and revival.
//! docs/expiry.md argues the design.

use keel_state::{ArchiveBatch, Entry, Overlay, StateError, StateView, StateViewExt};
use keel_types::archive::{
    leaf_hash, ArchiveAccumulator, ArchivedLeaf, RevivalProof, SealedArchive,
};
use keel_types::{Address, Canonical, Epoch, RevivalError, StateKey, TxError};

/// Entries one block moves to the archive at most. An epoch's backlog beyond
/// `epoch_length × MAX_EXPIRIES_PER_BLOCK` carries into the next epoch; until swept, an
/// eligible entry is live and a touch saves it.
pub const MAX_EXPIRIES_PER_BLOCK: usize = 1_024;
/// Gas a revival costs before its proof bytes.
pub const REVIVAL_BASE_GAS: u64 = 25_000;
/// Gas per byte of revival proof (the calldata price of a nonzero byte).
pub const REVIVAL_GAS_PER_BYTE: u64 = 16;

type Ov<'a> = Overlay<&'a dyn StateView>;

fn accumulator(overlay: &Ov<'_>) -> Result<ArchiveAccumulator, StateError> {
    overlay
        .get(&StateKey::ArchiveAccumulator)?
        .map(|raw| {
            ArchiveAccumulator::decode(&raw)
                .map_err(|e| StateError::Corrupt(format!("archive accumulator: {e}")))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

/// The archive sealed at the end of `epoch`, if that epoch has ended with an archive.
pub fn sealed_archive(
    view: &dyn StateView,
    epoch: Epoch,
) -> Result<Option<SealedArchive>, StateError> {
    view.get(&StateKey::ArchiveRoot(epoch))?
        .map(|raw| {
            SealedArchive::decode(&raw)
                .map_err(|e| StateError::Corrupt(format!("sealed archive {epoch}: {e}")))
        })
        .transpose()
}

/// Who receives a block's fees: its proposer, whose account is read here so that proposing
/// keeps it live; `Address::FEE_BURN` (which never expires) if the proposer's account has
/// expired, so that paying the coinbase cannot fail every transaction of the block.
pub fn fee_recipient(
    overlay: &mut Ov<'_>,
    proposer: Address,
    expiry_epochs: u64,
) -> Result<Address, StateError> {
    if expiry_epochs == 0 {
        return Ok(proposer);
    }
    match overlay.account(&proposer) {
        Ok(_) => Ok(proposer),
        Err(StateError::Expired { .. }) => {
            // Not a transaction's hit: forget it so the first transaction is not blamed.
            overlay.take_expired_hit();
            Ok(Address::FEE_BURN)
        }
        Err(e) => Err(e),
    }
}

/// Seals the previous epoch's archive (first block of an epoch) and expires up to
/// [`MAX_EXPIRIES_PER_BLOCK`] entries last touched before `epoch - expiry_epochs`.
pub fn sweep(
    overlay: &mut Ov<'_>,
    epoch: Epoch,
    expiry_epochs: u64,
) -> Result<ArchiveBatch, StateError> {
    let mut batch = ArchiveBatch::default();
    if expiry_epochs == 0 {
        return Ok(batch);
    }
    let mut acc = accumulator(overlay)?;
    if epoch > 0 && acc.leaf_count > 0 && sealed_archive(overlay, epoch - 1)?.is_none() {
        let sealed = SealedArchive {
            leaf_count: acc.leaf_count,
            root: acc.root(),
        };
        overlay.set(StateKey::ArchiveRoot(epoch - 1), Some(sealed.encode()))?;
    }
    let Some(threshold) = epoch.checked_sub(expiry_epochs) else {
        return Ok(batch);
    };
    let before = acc.leaf_count;
    for key in overlay.expiry_candidates(threshold, MAX_EXPIRIES_PER_BLOCK)? {
        let Some(Entry::Live {
            touched_epoch,
            value,
        }) = overlay.entry(&key)?
        else {
            continue;
        };
        if touched_epoch >= threshold {
            continue;
        }
        let (leaf, nodes) = acc.push(leaf_hash(&key, epoch, &value));
        overlay.set_entry(key.clone(), &Entry::Expired { epoch, leaf });
        batch.leaves.push(ArchivedLeaf {
            index: leaf,
            key,
            epoch,
            value,
        });
        batch.nodes.extend(nodes);
    }
    if acc.leaf_count != before {
        overlay.set(StateKey::ArchiveAccumulator, Some(acc.encode()))?;
    }
    Ok(batch)
}

/// Checks a revival against the state; on success returns the entry to restore.
pub fn check_revival(
    view: &dyn StateView,
    proof_bytes: &[u8],
    expiry_epochs: u64,
) -> Result<Result<RevivalProof, TxError>, StateError> {
    let refuse = |reason| Ok(Err(TxError::InvalidRevival { reason }));
    if expiry_epochs == 0 {
        return refuse(RevivalError::ExpiryOff);
    }
    let proof = match RevivalProof::decode(proof_bytes) {
        Ok(p) => p,
        Err(e) => return refuse(RevivalError::Malformed(e.to_string())),
    };
    let key = proof.key.to_string();
    if !proof.key.expires() {
        return refuse(RevivalError::NotExpired { key });
    }
    match view.entry(&proof.key)? {
        None => return refuse(RevivalError::NotExpired { key }),
        Some(Entry::Live { .. }) => return refuse(RevivalError::AlreadyLive { key }),
        Some(Entry::Expired { epoch, leaf })
            if (epoch, leaf) != (proof.expired_epoch, proof.leaf_index) =>
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
            reason: e.to_string(),
        });
    }
    Ok(Ok(proof))
}

/// The intrinsic gas of a revival carrying `proof_len` bytes.
pub fn revival_gas(proof_len: usize) -> u64 {
    REVIVAL_BASE_GAS.saturating_add(REVIVAL_GAS_PER_BYTE.saturating_mul(proof_len as u64))
}

/// Charges `sender` for a revival and restores the entry. The caller has checked the proof.
pub fn apply_revival(
    overlay: &mut Ov<'_>,
    sender: Address,
    beneficiary: Address,
    fee: keel_types::U256,
    proof: RevivalProof,
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
    overlay.set(proof.key, Some(proof.value))
}
