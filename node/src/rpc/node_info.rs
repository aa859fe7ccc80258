//! What the status page shows beside the chain itself: `keel_getValidators` (each
//! validator's key, p2p address, link, last vote and proposals as this node saw them) and
//! the expiry figures and sync state in `keel_status`.

use super::{node_err, state_err, RpcContext};
use crate::driver::now_ms;
use crate::shared::Status;
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::{json, Value};

/// A validator counts as up when it has a p2p link to this node or was heard voting within
/// this many milliseconds (a node is always up to itself).
pub const UP_IF_HEARD_WITHIN_MS: u64 = 5_000;
/// How many views behind the highest view heard a node must be to report itself catching
/// up: a validator is normally within a view or two of its peers.
pub const CATCHING_UP_VIEWS: u64 = 3;

impl RpcContext {
    /// Every validator in this node's peer table (the genesis ones, then the registered
    /// ones as it learned them), with its power in the set voting now (genesis's until
    /// state holds one) and what this node saw it do; the quorum is more than 2/3 of that
    /// set's power.
    pub(super) fn validators(&self) -> Value {
        let status = self.shared.status();
        let activity = self.shared.validator_activity();
        let now = now_ms();
        let view = self.store.latest_view();
        let set = keel_runtime::validators::read_epoch_set(&view, status.epoch)
            .ok()
            .flatten()
            .filter(|s| !s.members.is_empty())
            .unwrap_or_else(|| self.genesis_set.clone());
        let members: std::collections::BTreeMap<_, _> =
            set.members.iter().map(|m| (m.key, m)).collect();
        let validators: Vec<Value> = activity
            .keys()
            .iter()
            .zip(activity.seen())
            .enumerate()
            .map(|(i, (key, seen))| {
                let index = u16::try_from(i).unwrap_or(u16::MAX);
                let me = *key == self.my_key;
                let member = members.get(key).copied();
                // A member's address from the set; anyone else's from its registry record
                // (a validator that left) or genesis.
                let p2p = member
                    .map(|m| m.p2p.clone())
                    .or_else(|| {
                        keel_runtime::validators::read_record(&view, key)
                            .ok()
                            .flatten()
                            .map(|r| r.p2p)
                    })
                    .or_else(|| {
                        let genesis = self.genesis_set.members.iter();
                        genesis
                            .clone()
                            .find(|m| m.key == *key)
                            .map(|m| m.p2p.clone())
                    })
                    .unwrap_or_default();
                let age_ms = seen.last_vote_ms.map(|at| now.saturating_sub(at));
                let linked = status.connected.contains(&index);
                let up = me || linked || age_ms.is_some_and(|ms| ms <= UP_IF_HEARD_WITHIN_MS);
                json!({
                    "index": index,
                    "public_key": key.to_hex(),
                    "p2p": p2p,
                    "in_set": member.is_some(),
                    "power": member.map_or(0, |m| m.power).to_string(),
                    "self": me,
                    "connected": linked,
                    "up": up,
                    "last_vote_view": seen.last_vote_view,
                    "last_vote_age_ms": age_ms,
                    "proposed": seen.proposed,
                    "missed_proposals": seen.missed,
                })
            })
            .collect();
        let total = set.total_power();
        json!({
            "epoch": status.epoch,
            "view": status.view,
            "members": set.members.len(),
            "total_power": total.to_string(),
            // More than 2/3 of the power certifies: the least power that does.
            "quorum_power": (total * 2 / 3 + 1).to_string(),
            "validators": validators,
        })
    }

    /// Expiry and pruning figures for `keel_status`.
    pub(super) fn expiry_figures(&self) -> Result<Value, ErrorObjectOwned> {
        let counts = self.store.expiry_counts().map_err(node_err)?;
        let fold_pages =
            keel_state::fold::fold_count(&self.store.latest_view()).map_err(state_err)?;
        Ok(json!({
            "active_entries": counts.active,
            "stubs": counts.expired,
            "revived": counts.revived,
            "fold_pages": fold_pages,
            "expiry_epochs": self.expiry_epochs,
        }))
    }

    /// `keel_status`'s `sync`; see [`sync_state`].
    pub(super) fn sync_state(&self) -> Value {
        sync_state(&self.shared.status())
    }
}

/// `{"catching_up", "view", "sync_target", "honest_view_heard", "snapshot"}` for
/// `keel_status`: catching up while a snapshot restore runs, while a certified finalization
/// above the tip cannot be connected yet, or while validators holding at least 1/3 of the
/// power vote more than [`CATCHING_UP_VIEWS`] views ahead. None of these can faulty
/// validators holding less than 1/3 of the power fake.
/// `snapshot` is the restore's progress (null on a node that never restored one).
pub fn sync_state(status: &Status) -> Value {
    let behind = status.honest_view_heard > status.view.saturating_add(CATCHING_UP_VIEWS);
    let restoring = status.snapshot.as_ref().is_some_and(|p| p.phase != "done");
    json!({
        "catching_up": restoring || status.sync_target.is_some() || behind,
        "view": status.view,
        "sync_target": status.sync_target,
        "honest_view_heard": status.honest_view_heard,
        "snapshot": status.snapshot,
    })
}
