//! Policies over RPC: `keel_getPolicy` (the effective policy, the budgets left this epoch and
//! when they reset) and the decision trail `keel_simulate` adds to its receipt
//! (docs/policies.md, docs/rpc.md).

use super::json::{bytes, qty256};
use keel_runtime::policy::{
    explain, read_record, read_session_key, read_session_keys, read_session_spend, read_spend, At,
    Decision,
};
use keel_state::StateView;
use keel_types::policy::{AccountPolicy, PolicySpend};
use keel_types::{Address, Receipt, Sender, Transaction, TxStatus, U256};
use serde_json::{json, Value};

/// `keel_getPolicy` of `account` over `view`, for the block at `at`.
pub fn get_policy(
    view: &dyn StateView,
    account: &Address,
    at: At,
) -> Result<Value, keel_state::StateError> {
    let record = read_record(view, account)?;
    // The spending is in the account record, which can expire (policy entries cannot). An
    // expired account sends nothing until it is revived, and a revival restores its record,
    // spending included; until then the policy is shown with the account marked expired.
    let (spend, account_expired) = match &record {
        Some(_) => match read_spend(view, account, at.epoch) {
            Ok(spend) => (spend, false),
            Err(keel_state::StateError::Expired { .. }) => {
                (PolicySpend::default().in_epoch(at.epoch), true)
            }
            Err(e) => return Err(e),
        },
        None => (PolicySpend::default().in_epoch(at.epoch), false),
    };
    let keys = read_session_keys(view, account)?;
    let mut session_keys = Vec::with_capacity(keys.0.len());
    for key in &keys.0 {
        let Some(k) = read_session_key(view, account, key)? else {
            continue;
        };
        let spend = read_session_spend(view, account, &k.key, at.epoch)?;
        session_keys.push(json!({
            "key": bytes(&k.key.0),
            "policy": policy(&k.policy),
            "expires_at": k.expires_at,
            "expired": at.height > k.expires_at,
            "added_by": k.added_by.to_hex(),
            "added_at": k.added_at,
            "spent": spent(&spend),
            "remaining": remaining(&k.policy, &spend),
        }));
    }
    Ok(json!({
        "address": account.to_hex(),
        "controller": record.as_ref().and_then(|r| r.controller).map(|c| c.to_hex()),
        "source": record.as_ref().map(|r| r.source.to_hex()),
        "changed_at": record.as_ref().map(|r| r.changed_at),
        "policy": record.as_ref().map(|r| policy(&r.policy)),
        "epoch": at.epoch,
        "account_expired": account_expired,
        "spent": spent(&spend),
        "remaining": record.as_ref().map(|r| remaining(&r.policy, &spend)),
        "resets_at_epoch": at.epoch.saturating_add(1),
        "session_keys": session_keys,
        "jurisdiction": jurisdiction(view, account, at.height)?,
    }))
}

/// The account's jurisdiction tags (live or not, by whom, until when) and the rules it
/// declares about its callers (docs/policies.md).
fn jurisdiction(
    view: &dyn StateView,
    account: &Address,
    height: keel_types::Height,
) -> Result<Value, keel_state::StateError> {
    let mut load = keel_runtime::jurisdiction::view_slots(view);
    let tags = keel_runtime::jurisdiction::read_tags(&mut load, account)?;
    let rules = keel_runtime::jurisdiction::read_rules(&mut load, account)?;
    let plugins = keel_runtime::jurisdiction::read_plugins(&mut load, account)?;
    let codes = |codes: &[keel_types::jurisdiction::Code]| {
        codes
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    Ok(json!({
        "tags": tags.iter().map(|t| json!({
            "code": t.code.as_str(),
            "expires_at": t.expires_at,
            "live": t.live_at(height),
            "attester": t.attester.to_hex(),
        })).collect::<Vec<_>>(),
        "plugins": plugins.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
        "rules": (!rules.is_empty()).then(|| json!({
            "deny": codes(&rules.deny),
            "allow_only": codes(&rules.allow_only),
            "untagged_max_value": rules.untagged_max_value.as_ref().map(qty256),
        })),
    }))
}

/// A policy as JSON: every limit, `null` where there is none.
pub fn policy(p: &AccountPolicy) -> Value {
    json!({
        "envs": p.envs.as_ref().map(|e| e.iter().map(|e| e.as_str()).collect::<Vec<_>>()),
        "targets": p.targets.as_ref().map(|targets| targets.iter().map(|t| json!({
            "to": t.to.to_hex(),
            "selectors": t.selectors.as_ref().map(|s| s.iter().map(|s| bytes(s)).collect::<Vec<_>>()),
        })).collect::<Vec<_>>()),
        "max_value_per_tx": p.max_value_per_tx.as_ref().map(qty256),
        "max_value_per_epoch": p.max_value_per_epoch.as_ref().map(qty256),
        "max_fee_per_epoch": p.max_fee_per_epoch.as_ref().map(qty256),
        "max_txs_per_epoch": p.max_txs_per_epoch,
        "valid_from": p.valid_from,
        "valid_until": p.valid_until,
        "frozen": p.frozen,
        "plugins": p.plugins.iter().map(|a| a.to_hex()).collect::<Vec<_>>(),
    })
}

fn spent(s: &PolicySpend) -> Value {
    json!({"value": qty256(&s.value), "fees": qty256(&s.fees), "txs": s.txs})
}

/// What is left of each per-epoch budget (`null`: unlimited).
fn remaining(p: &AccountPolicy, s: &PolicySpend) -> Value {
    let left = |cap: &Option<U256>, used: U256| cap.map(|c| qty256(&c.saturating_sub(used)));
    json!({
        "value": left(&p.max_value_per_epoch, s.value),
        "fees": left(&p.max_fee_per_epoch, s.fees),
        "txs": p.max_txs_per_epoch.map(|c| c.saturating_sub(s.txs)),
    })
}

/// The decision trail of `t` at `at` over `view` (the state `keel_simulate` ran it on) and
/// the budgets left after `receipt`: `{checked, allowed, denial?, trail, remaining}`.
pub fn trail(
    view: &dyn StateView,
    t: &Transaction,
    at: At,
    receipt: &Receipt,
) -> Result<Value, keel_state::StateError> {
    let Decision {
        record,
        spend,
        trail,
        denial,
        session,
        plugins,
        // What contracts read of the key (`txSessionScope`); `keel_getPolicy` lists it.
        session_scope: _,
    } = explain(view, t, at, Default::default())?;
    // A target's jurisdiction rules can deny a sender without a policy.
    if record.is_none() && session.is_none() && denial.is_none() {
        return Ok(json!({"checked": false, "allowed": true, "trail": [], "remaining": null}));
    }
    let charged = receipt.status != TxStatus::Rejected;
    let after = |spend: PolicySpend| PolicySpend {
        epoch: spend.epoch,
        value: match receipt.status {
            TxStatus::Success => spend.value.saturating_add(t.body.value()),
            _ => spend.value,
        },
        fees: spend.fees.saturating_add(if charged {
            U256::from(receipt.gas_used) * U256::from(t.gas_price)
        } else {
            U256::ZERO
        }),
        txs: spend.txs.saturating_add(u64::from(charged)),
    };
    // What is left after it: of the account's budgets, and of the session key's.
    let account_left = record.map(|r| remaining(&r.policy, &after(spend)));
    let session_left = match (&t.sender, session) {
        (Sender::Session { account, key }, Some((_, used))) => {
            read_session_key(view, account, key)?.map(|k| remaining(&k.policy, &after(used)))
        }
        _ => None,
    };
    let mut out = json!({
        "checked": true,
        "allowed": denial.is_none(),
        "trail": trail.iter().map(|c| json!({
            "rule": c.rule.as_str(),
            "scope": c.scope.as_str(),
            "result": if c.passed { "pass" } else { "deny" },
            "limit": qty256(&c.limit),
            "used": qty256(&c.used),
        })).collect::<Vec<_>>(),
        "remaining": account_left,
        "session_remaining": session_left,
        "resets_at_epoch": at.epoch.saturating_add(1),
        // Run after these rules, in the receipt's execution (a plugin's denial is its error).
        "plugins": plugins.iter().map(|a| a.to_hex()).collect::<Vec<_>>(),
    });
    if let Some(denial) = &denial {
        let mut fields = json!({});
        super::json::denial_fields(denial, &mut fields);
        out["denial"] = fields;
    }
    Ok(out)
}
