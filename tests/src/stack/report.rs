//! What a run did, read back from every validator's store: blocks, receipts and roots
//! compared height by height, commit streams, votes, the epoch chain.

use super::node::{self, Validator};
use super::workload::Workload;
use super::{StackReport, StackScenario, CHAIN_ID, GAS_PRICE};
use keel_types::TxStatus;

/// Reads every validator's store back and compares them height by height: each against
/// the highest validator for every height it holds, so a validator that stopped or lags
/// hides nothing above it; and what each told its host it committed against its store.
pub(super) fn report(
    s: &StackScenario,
    validators: &[Validator],
    agents: &Workload,
) -> anyhow::Result<StackReport> {
    let height = |v: &Validator| v.store.latest().map_or(0, |l| l.height);
    let mut r = StackReport {
        heights: validators.iter().map(height).collect(),
        halted: validators
            .iter()
            .filter_map(|v| {
                v.halted
                    .as_ref()
                    .map(|h| format!("validator {}: {h}", v.index))
            })
            .collect(),
        sent_after_votelog_failure: validators.iter().map(|v| v.sent_after_failure).collect(),
        last_signed: validators
            .iter()
            .map(|v| node::latest_vote(v.signed_votes()))
            .collect(),
        violations: validators
            .iter()
            .flat_map(|v| v.violations.clone())
            .collect(),
        chains: validators
            .iter()
            .map(|v| {
                v.committed
                    .iter()
                    .map(|c| (c.info.height, c.info.block_hash, c.info.state_root))
                    .collect()
            })
            .collect(),
        ..StackReport::default()
    };
    let mut nullified = std::collections::BTreeSet::new();
    for v in validators.iter().filter(|v| s.silent != Some(v.index)) {
        for &(epoch, view, kind) in v.signed_votes().keys() {
            let leader = usize::from(keel_consensus::leader_of(view, s.n));
            if kind == 1 && s.silent != Some(leader) {
                nullified.insert((epoch, view));
            }
        }
    }
    r.nullified_live_views = nullified.len() as u64;
    let Some(top) = validators
        .iter()
        .filter(|v| s.silent != Some(v.index))
        .max_by_key(|v| (height(v), std::cmp::Reverse(v.index)))
    else {
        return Ok(r);
    };
    let view = top.store.latest_view();
    r.set = keel_runtime::validators::read_epoch_set(&view, height(top) / s.epoch_length)?;
    for key in keel_runtime::validators::read_registry(&view)?.0 {
        if keel_runtime::validators::read_record(&view, &key)?
            .is_some_and(|rec| rec.status == keel_types::validator::ValidatorStatus::Jailed)
        {
            r.jailed.push(key);
        }
    }
    // A validator restored by snapshot holds nothing below the height it restored.
    let holds = |v: &Validator, h: u64| {
        s.silent != Some(v.index) && height(v) >= h && v.restored_at.is_none_or(|at| at <= h)
    };
    for h in 0..=height(top) {
        let Some(reference) = validators
            .iter()
            .filter(|v| holds(v, h))
            .max_by_key(|v| (height(v), std::cmp::Reverse(v.index)))
        else {
            continue;
        };
        let block = reference.store.block(h)?.map(|b| b.hash());
        let receipts = reference.store.receipts(h)?;
        let root = reference.store.state_root(h)?;
        for v in validators
            .iter()
            .filter(|v| v.index != reference.index && holds(v, h))
        {
            if v.store.block(h)?.map(|b| b.hash()) != block {
                r.mismatches.push(format!(
                    "height {h}: validator {} has another block",
                    v.index
                ));
            }
            if v.store.receipts(h)? != receipts {
                r.mismatches.push(format!(
                    "height {h}: validator {} has other receipts",
                    v.index
                ));
            }
            // A validator that halted on its own divergence committed its wrong state at
            // its last height (that is what it then found): its halt reason says so.
            let own_fault = v.halted.is_some() && h == height(v);
            if !own_fault && v.store.state_root(h)? != root {
                r.mismatches.push(format!(
                    "height {h}: validator {} has another root",
                    v.index
                ));
            }
        }
        // The stores a wipe or a snapshot restore replaced: what those validators committed
        // before (each from the height it was itself restored at, if it was).
        for (index, old) in validators
            .iter()
            .flat_map(|v| v.retired.iter().map(move |old| (v.index, old)))
            .filter(|(_, old)| {
                old.store.latest().is_some_and(|l| l.height >= h)
                    && old.restored_at.is_none_or(|at| at <= h)
            })
        {
            let old = &old.store;
            if old.block(h)?.map(|b| b.hash()) != block
                || old.receipts(h)? != receipts
                || old.state_root(h)? != root
            {
                r.mismatches.push(format!(
                    "height {h}: validator {index} had another block, receipts or root in the store it lost"
                ));
            }
        }
        // Verify-once (issue 22): every validator skips signatures it verified at
        // admission, and the Byzantine proposer re-signs payloads they hold with forged
        // signatures; nothing it forged may ever run. Checked here without any cache.
        if let (Some(b), Some(rs)) = (reference.store.block(h)?, receipts.as_ref()) {
            for (tx, receipt) in b.transactions.iter().zip(rs) {
                if receipt.status != TxStatus::Rejected && tx.verify_signature(GAS_PRICE).is_err() {
                    r.violations.push(format!(
                        "height {h}: transaction {} ran with a signature the rule refuses",
                        receipt.tx_hash
                    ));
                }
            }
        }
        for receipt in receipts.iter().flatten() {
            if receipt.status == TxStatus::Success {
                if let Some(kind) = agents.sent.get(&receipt.tx_hash) {
                    *r.succeeded.entry(*kind).or_default() += 1;
                    if h * 3 > height(top) * 2 {
                        r.late_successes += 1;
                    }
                }
            }
        }
    }
    // The commit stream each host saw (what the node publishes to RPC subscribers): one
    // commit per height, in order from 1 (or from the height a snapshot restored), each
    // what the store holds.
    // Also each store a wipe or restore replaced, with the stream it had then.
    for v in validators {
        let streams = v
            .retired
            .iter()
            .map(|old| (&old.store, &old.committed, old.restored_at))
            .chain(std::iter::once((&v.store, &v.committed, v.restored_at)));
        for (store, committed, restored_at) in streams {
            for (k, c) in committed.iter().enumerate() {
                let expected = restored_at.unwrap_or(0) + k as u64 + 1;
                if c.info.height != expected
                    || store.block(expected)?.map(|b| b.hash()) != Some(c.info.block_hash)
                    || store.state_root(expected)? != c.info.state_root
                {
                    r.violations.push(format!(
                        "validator {}: commit #{k} reported height {} {} that the store does not hold",
                        v.index, c.info.height, c.info.block_hash
                    ));
                    break;
                }
            }
        }
    }
    // No honest validator may sign a notarize or finalize vote for a block the Byzantine
    // validator made invalid: its validity check would have let the lie through.
    if let Some(adversary) = validators.iter().find_map(|v| v.adversary.as_ref()) {
        r.lies = adversary.told.clone();
        for v in validators.iter().filter(|v| v.adversary.is_none()) {
            for ((epoch, view, kind), block) in v.signed_votes() {
                if *kind != 1 && adversary.invalid_blocks.contains(block) {
                    r.violations.push(format!(
                        "validator {} voted (kind {kind}) for the invalid block {block} in epoch {epoch} view {view}",
                        v.index
                    ));
                }
            }
        }
    }
    r.compared = validators
        .iter()
        .filter(|v| s.silent != Some(v.index) && v.halted.is_none())
        .map(height)
        .min()
        .unwrap_or(0);
    let counts = top.store.expiry_counts()?;
    r.expired_entries = counts.expired;
    r.fold_pages = keel_state::fold::fold_count(&top.store.latest_view())?;
    Ok(r)
}

/// Every running validator recorded one epoch change per epoch it ended, and they verify
/// from the genesis set (what a node without history trusts, docs/validators.md).
pub(super) fn check_epoch_proofs(
    s: &StackScenario,
    validators: &[Validator],
    genesis_set: keel_types::validator::EpochSet,
    r: &mut StackReport,
) -> anyhow::Result<()> {
    use keel_app::epoch_proof;
    let height = |v: &Validator| v.store.latest().map_or(0, |l| l.height);
    let mut top: Option<(u64, Vec<epoch_proof::EpochChange>)> = None;
    for v in validators.iter().filter(|v| s.silent != Some(v.index)) {
        let ended = height(v) / s.epoch_length;
        let changes = epoch_proof::changes(&v.store, 0, usize::MAX)?;
        if (changes.len() as u64) < ended.min(epoch_proof::MAX_EPOCH_CHANGES_PER_RESPONSE as u64) {
            r.violations.push(format!(
                "validator {}: {} epoch changes recorded for {ended} ended epochs",
                v.index,
                changes.len()
            ));
        }
        if !changes.is_empty() {
            if let Err(e) = epoch_proof::verify_from_set(
                CHAIN_ID,
                s.epoch_length,
                genesis_set.clone(),
                &changes,
            ) {
                r.violations
                    .push(format!("validator {}: epoch changes: {e}", v.index));
            }
        }
        if top.as_ref().is_none_or(|(h, _)| height(v) > *h) {
            top = Some((height(v), changes));
        }
    }
    r.genesis_set = Some(genesis_set);
    r.epoch_changes = top.map(|(_, c)| c).unwrap_or_default();
    Ok(())
}
