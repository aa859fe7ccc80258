//! State expiry inside block execution: the sweep that moves entries untouched for
//! `expiry_epochs` epochs into the archive (a bounded number per block, so an epoch boundary
//! is not a latency spike), the sealing of each epoch's archive root, and revival.
//! docs/expiry.md argues the design.

use keel_state::fold::{fold_count, fold_page};
use keel_state::{ArchiveBatch, Entry, Overlay, StateError, StateView, StateViewExt};
use keel_types::archive::{
    leaf_hash, ArchiveAccumulator, ArchivedLeaf, RevivalProof, SealedArchive,
};
use keel_types::fold::{
    Absence, FoldPage, FoldedRevival, FoldedStub, KeyProbes, UnflagProof, MAX_FOLD_KEYS_PER_PAGE,
};
use keel_types::receipt::FoldProofCode;
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

/// Seals the previous epoch's archive (first block of an epoch), folds up to
/// [`MAX_FOLD_KEYS_PER_PAGE`] stubs that expired before `epoch - fold_epochs` into a fold
/// page, and expires up to [`MAX_EXPIRIES_PER_BLOCK`] entries last touched before
/// `epoch - expiry_epochs`.
pub fn sweep(
    overlay: &mut Ov<'_>,
    epoch: Epoch,
    expiry_epochs: u64,
    fold_epochs: u64,
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
    // Stubs this block's unfinalized ancestors wrote expired in their own (recent) epoch, at
    // or after `epoch - 1`, so with `fold_epochs ≥ 1` they are never candidates here.
    if let Some(before) = epoch.checked_sub(fold_epochs).filter(|_| fold_epochs > 0) {
        fold(overlay, before, &mut batch)?;
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

/// Moves up to [`MAX_FOLD_KEYS_PER_PAGE`] stubs that expired before `before` out of the tree
/// into a new fold page (keel_types::fold says why that keeps expiry's promises).
fn fold(overlay: &mut Ov<'_>, before: Epoch, batch: &mut ArchiveBatch) -> Result<(), StateError> {
    let mut stubs = Vec::new();
    for key in overlay.fold_candidates(before, MAX_FOLD_KEYS_PER_PAGE)? {
        if let Some(Entry::Expired { epoch, leaf }) = overlay.entry(&key)? {
            if epoch < before {
                let key_hash = key.key_hash();
                stubs.push((
                    FoldedStub {
                        key_hash,
                        epoch,
                        leaf,
                    },
                    key,
                ));
            }
        }
    }
    if stubs.is_empty() {
        return Ok(());
    }
    stubs.sort_by_key(|(stub, _)| stub.key_hash);
    let page = fold_count(overlay)?;
    let list: Vec<FoldedStub> = stubs.iter().map(|(stub, _)| *stub).collect();
    overlay.set(
        StateKey::FoldPage(page),
        Some(FoldPage::build(page, &list).encode()),
    )?;
    overlay.set(StateKey::FoldCount, Some((page + 1).to_be_bytes().to_vec()))?;
    for (_, key) in stubs {
        overlay.delete_folded(key);
    }
    batch.folds.push((page, list));
    Ok(())
}

/// Checks the fold part of a revival of an entry absent from the tree: the page that folded
/// it holds exactly this version, and every later page that flags the key proves it does not
/// hold the key (so no newer version was folded after it).
fn check_folded(
    view: &dyn StateView,
    proof: &RevivalProof,
    folded: &FoldedRevival,
) -> Result<Result<(), RevivalError>, StateError> {
    let refuse = |page, code: FoldProofCode| Ok(Err(RevivalError::BadFoldProof { page, code }));
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
    check_absences(view, &key_hash, folded.page + 1, &folded.absent).map(|r| r.map(|_| ()))
}

/// Checks that `absent` proves, for every page from `first_page` on whose filter flags the
/// key, in page order, that the page does not hold it — and nothing else. Returns how many
/// pages flag it.
fn check_absences(
    view: &dyn StateView,
    key_hash: &keel_types::Hash,
    first_page: u64,
    absent: &[Absence],
) -> Result<Result<u64, RevivalError>, StateError> {
    let refuse = |page, code: FoldProofCode| Ok(Err(RevivalError::BadFoldProof { page, code }));
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
    Ok(Ok(flagging))
}

/// What an accepted revival or unflag writes back: `value` under `key` (empty: a deletion
/// marker), and whether it came from a fold page (for the revived counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    pub key: StateKey,
    pub value: Vec<u8>,
    pub folded: bool,
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
) -> Result<Result<Restore, TxError>, StateError> {
    let refuse = |reason| Ok(Err(TxError::InvalidRevival { reason }));
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
        Err(reason) => refuse(reason),
        // No page flags it: it already reads as absent, there is nothing to clear.
        Ok(0) => refuse(RevivalError::NotExpired { key }),
        Ok(_) => Ok(Ok(Restore {
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
) -> Result<Result<Restore, TxError>, StateError> {
    let refuse = |reason| Ok(Err(TxError::InvalidRevival { reason }));
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
                if let Err(reason) = check_folded(view, &proof, folded)? {
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
    Ok(Ok(Restore {
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
