//! The tip a restore finishes with: the block at the restored height, its receipts and the
//! `BLOCKHASH` window of headers below it, checked against the certified boundary header
//! above it. Fetched before the chunks, while the boundary is the newest its peers serve
//! (those headers reach 256 heights below the tip, so peers prune them before the
//! boundary's state), and kept in the restoring store so a restore resumed after a
//! `kill -9` has it too.

use super::*;

/// Where a restoring store keeps the tip of the height it restores (aux column; pruned with
/// its height should a crash leave it behind).
fn tip_key(height: Height) -> Vec<u8> {
    [keel_pruning::SNAPSHOT_TIP_AUX_PREFIX, &height.to_be_bytes()].concat()
}

/// The tip block at `height`, its receipts and the headers below it.
pub(super) type Tip = (
    keel_types::Block,
    Vec<keel_types::Receipt>,
    Vec<keel_types::Header>,
);

impl Client<'_> {
    /// The tip block at `height` checked against the certified `boundary` header above it,
    /// asked of every peer in turn (those that answered their last request first), in up to
    /// `MAX_ROUNDS` rounds a `RETRY_PAUSE_MS` apart (a refusal may be only a busy serve
    /// slot; one pass used to end the sync). After the first round a peer that let a request time out is asked only when every
    /// peer has. A peer whose tip does not check is dropped. `None`: no peer served it.
    pub(super) fn tip(
        &mut self,
        boundary: &keel_types::Header,
        height: Height,
    ) -> Result<Option<Tip>, SnapshotSyncError> {
        for round in 0..=MAX_ROUNDS {
            if round > 0 {
                self.t.pause(RETRY_PAUSE_MS);
            }
            let mut peers = self.peers_answering_first()?;
            if round > 0 && peers.iter().any(|p| !self.silent.contains(p)) {
                peers.retain(|p| !self.silent.contains(p));
            }
            for peer in peers {
                let request = SnapshotMessage::TipRequest { height };
                let Some(SnapshotMessage::Tip {
                    block,
                    receipts,
                    ancestors,
                }) = self.ask(peer, request)?
                else {
                    continue;
                };
                match check_tip(boundary, &block, &receipts, &ancestors) {
                    Ok(()) => return Ok(Some((*block, receipts, ancestors))),
                    Err(why) => self.drop_peer(peer, &why),
                }
            }
        }
        Ok(None)
    }
}

impl Client<'_> {
    /// The tip of `boundary` (the certified header above the tip) for `restore`: the one
    /// kept in the restoring store (a resumed restore), else fetched from the peers
    /// ([`Client::tip`]) and kept there. `None`: not kept and no peer served it.
    pub(super) fn tip_kept_or_fetched(
        &mut self,
        restore: &SnapshotRestore,
        boundary: &keel_types::Header,
    ) -> Result<Option<Tip>, SnapshotSyncError> {
        if let Some(tip) = kept_tip(restore, boundary)? {
            return Ok(Some(tip));
        }
        let Some(tip) = self.tip(boundary, restore.height())? else {
            return Ok(None);
        };
        keep_tip(restore, &tip)?;
        Ok(Some(tip))
    }
}

/// Keeps `tip` (checked) in `restore`'s store, under its height.
pub(super) fn keep_tip(restore: &SnapshotRestore, tip: &Tip) -> Result<(), SnapshotSyncError> {
    let raw = borsh::to_vec(tip)
        .map_err(|e| keel_state::StateError::Corrupt(format!("encoding a tip: {e}")))
        .map_err(keel_store::SnapshotError::State)?;
    restore
        .store()
        .put_aux(&tip_key(restore.height()), &raw)
        .map_err(keel_store::SnapshotError::State)?;
    Ok(())
}

/// The tip kept in `restore`'s store for its height, if it is there and still checks
/// against `boundary` (one that does not is fetched again).
pub(super) fn kept_tip(
    restore: &SnapshotRestore,
    boundary: &keel_types::Header,
) -> Result<Option<Tip>, SnapshotSyncError> {
    let raw = restore
        .store()
        .get_aux(&tip_key(restore.height()))
        .map_err(keel_store::SnapshotError::State)?;
    Ok(raw
        .and_then(|raw| borsh::from_slice::<Tip>(&raw).ok())
        .filter(|(block, receipts, ancestors)| {
            check_tip(boundary, block, receipts, ancestors).is_ok()
        }))
}

/// Drops the kept tip once the restore is finished (it is in the store as its tip block).
pub(super) fn forget_tip(store: &Store, height: Height) {
    if let Err(e) = store.delete_aux(&tip_key(height)) {
        tracing::warn!(error = %e, "snapshot sync: the kept tip could not be dropped");
    }
}
