//! State expiry inside block execution: the sweep that moves entries untouched for
//! `expiry_epochs` epochs into the archive (a bounded number per block, so an epoch boundary
//! is not a latency spike), the sealing of each epoch's archive root, and folding old stubs
//! out of the tree into fold pages. docs/expiry.md argues the design.

use crate::Ov;
use keel_state::fold::fold_count;
use keel_state::{ArchiveBatch, Entry, StateError, StateView, StateViewExt};
use keel_types::archive::{leaf_hash, ArchiveAccumulator, ArchivedLeaf, SealedArchive};
use keel_types::fold::{FoldPage, FoldedStub, MAX_FOLD_KEYS_PER_PAGE};
use keel_types::{Address, Canonical, Epoch, StateKey};

/// Entries one block moves to the archive at most. An epoch's backlog beyond
/// `epoch_length × MAX_EXPIRIES_PER_BLOCK` carries into the next epoch; until swept, an
/// eligible entry is live and a touch saves it.
pub const MAX_EXPIRIES_PER_BLOCK: usize = 1_024;
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
