//! The validator registry over RPC: `keel_getValidatorSet` (an epoch's weighted set and every
//! registered validator's stake and status) and `keel_getEpochProof` (the chain of epoch
//! changes a node without history verifies; docs/validators.md, docs/rpc.md).

use super::json::qty256;
use keel_runtime::validators::{read_epoch_set, read_record, read_registry};
use keel_state::{StateError, StateView};
use keel_types::validator::{power_of_stake, EpochSet};
use serde_json::{json, Value};

fn set_json(set: &EpochSet) -> Value {
    let total = set.total_power();
    json!({
        "epoch": set.epoch,
        "total_power": total.to_string(),
        // More than 2/3 of the power certifies: the least power that does.
        "quorum_power": (total * 2 / 3 + 1).to_string(),
        "members": set.members.iter().enumerate().map(|(i, m)| json!({
            "index": i,
            "public_key": m.key.to_hex(),
            "power": m.power.to_string(),
            "operator": m.operator.to_hex(),
            "p2p": m.p2p,
        })).collect::<Vec<_>>(),
    })
}

/// The set of `epoch` (`None` if state no longer or not yet holds it), the next epoch's if
/// announced, and the registry, over `view` (the latest state).
pub fn get_validator_set(view: &dyn StateView, epoch: u64) -> Result<Value, StateError> {
    let set = read_epoch_set(view, epoch)?;
    let next = match epoch.checked_add(1) {
        Some(next) => read_epoch_set(view, next)?,
        None => None,
    };
    let mut registry = Vec::new();
    for key in read_registry(view)?.0 {
        let Some(r) = read_record(view, &key)? else {
            continue;
        };
        registry.push(json!({
            "public_key": key.to_hex(),
            "operator": r.operator.to_hex(),
            "p2p": r.p2p,
            "stake": qty256(&r.stake),
            "stake_power": power_of_stake(r.stake).to_string(),
            "status": r.status.name(),
            "changed_epoch": r.changed_epoch,
            "next_key": r.next_key.map(|k| k.to_hex()),
            "unbonding": r.unbonding.iter().map(|u| json!({
                "release_epoch": u.release_epoch,
                "amount": qty256(&u.amount),
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({
        "epoch": epoch,
        "set": set.as_ref().map(set_json),
        "next": next.as_ref().map(set_json),
        "registry": registry,
    }))
}

/// The epoch changes from `from`: a summary of each and its canonical bytes (what
/// `keel_app::epoch_proof::verify_from_set` / `verify_from_checkpoint` take).
pub fn epoch_proof_json(from: u64, changes: &[keel_app::epoch_proof::EpochChange]) -> Value {
    use keel_types::Canonical;
    let items: Vec<Value> = changes
        .iter()
        .map(|c| {
            json!({
                "epoch": c.epoch,
                "height": c.last.height,
                "hash": c.last.hash().to_string(),
                "state_root": c.last.parent_state_root.to_string(),
                "suffix_headers": c.suffix.len(),
                "signers": c.certificate.signers.len(),
                "encoded": format!("0x{}", hex::encode(c.encode())),
            })
        })
        .collect();
    json!({
        "from_epoch": from,
        "more": items.len() == keel_app::epoch_proof::MAX_EPOCH_CHANGES_PER_RESPONSE,
        "changes": items,
    })
}
