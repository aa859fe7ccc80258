//! Account policies at execution and admission: the checks a transaction of an account with
//! a policy must pass before it runs, what it used afterwards, and the policy transactions
//! themselves (docs/policies.md). Execution is authoritative; the mempool runs the same
//! [`evaluate`] over the latest state so an agent hears "denied" before it waits for a block.

use crate::policy_cache::IndexedRecord;
pub use crate::policy_cache::PolicyCache;
use keel_state::{Overlay, StateError, StateView, StateViewExt};
use keel_types::policy::{
    policy_changed_topic, AccountPolicy, PolicyChange, PolicyDenial, PolicyRecord, PolicyRule,
    PolicyScope, PolicySpend, SessionKey, SessionKeys, SessionScope, MAX_SESSION_KEYS,
    POLICY_ADDRESS,
};
use keel_types::{
    AccountRecord, Address, Canonical, Epoch, Height, Log, PublicKey, Sender, StateKey,
    Transaction, TxBody, U256,
};
use std::sync::Arc;

/// Where a transaction is checked: the height and epoch of the block it runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub height: Height,
    pub epoch: Epoch,
}

/// One rule as a check saw it: the decision trail `keel_simulate` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCheck {
    pub rule: PolicyRule,
    pub scope: PolicyScope,
    pub passed: bool,
    /// The limit and what it would be at with this transaction (zero for yes/no rules).
    pub limit: U256,
    pub used: U256,
}

/// What checking a transaction against its sender's policy concluded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// The policy in force (`None`: the account has none, so nothing is limited).
    pub record: Option<Arc<IndexedRecord>>,
    /// What the account used this epoch before the transaction (queued ones included at
    /// admission).
    pub spend: PolicySpend,
    /// The session key that signed it, and what that key used this epoch before it.
    pub session: Option<(PublicKey, PolicySpend)>,
    /// That key's scope, for contracts to read (`txSessionScope`, `tx_session_scope`).
    pub session_scope: Option<SessionScope>,
    /// The plugins to run before it if nothing denied it: the account's, then the session
    /// key's, each once (transfers, calls and deploys only).
    pub plugins: Vec<Address>,
    /// Every rule checked, in order, up to the first denial.
    pub trail: Vec<RuleCheck>,
    pub denial: Option<PolicyDenial>,
}

pub fn read_record(
    view: &dyn StateView,
    account: &Address,
) -> Result<Option<PolicyRecord>, StateError> {
    view.get(&StateKey::Policy(*account))?
        .map(|raw| PolicyRecord::decode_stored(&raw).map_err(StateError::decode("policy")))
        .transpose()
}

/// What `account` used in `epoch` (zero from an older epoch's spending), as its account
/// record holds it (`AccountRecord::policy_spend`).
pub fn read_spend(
    view: &dyn StateView,
    account: &Address,
    epoch: Epoch,
) -> Result<PolicySpend, StateError> {
    let stored = view.account(account)?.and_then(|r| r.policy_spend);
    Ok(stored.unwrap_or_default().in_epoch(epoch))
}

/// What the sender's transactions waiting in the mempool would use before this one: counted
/// at admission on top of the stored spending (zero in a block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Queued {
    /// Every queued transaction of the account.
    pub account: PolicySpend,
    /// The queued ones signed by the same session key.
    pub session: PolicySpend,
}

fn plus(stored: PolicySpend, queued: PolicySpend, epoch: Epoch) -> PolicySpend {
    PolicySpend {
        epoch,
        value: stored.value.saturating_add(queued.value),
        fees: stored.fees.saturating_add(queued.fees),
        txs: stored.txs.saturating_add(queued.txs),
    }
}

pub fn read_session_keys(
    view: &dyn StateView,
    account: &Address,
) -> Result<SessionKeys, StateError> {
    Ok(view
        .get(&StateKey::SessionKeys(*account))?
        .map(|raw| SessionKeys::decode(&raw).map_err(StateError::decode("session keys")))
        .transpose()?
        .unwrap_or_default())
}

/// Session key `key` of `account` and its scope, if the account holds it.
pub fn read_session_key(
    view: &dyn StateView,
    account: &Address,
    key: &PublicKey,
) -> Result<Option<SessionKey>, StateError> {
    view.get(&StateKey::SessionKey(*account, *key))?
        .map(|raw| SessionKey::decode(&raw).map_err(StateError::decode("session key")))
        .transpose()
}

/// What session key `key` of `account` used in `epoch`.
pub fn read_session_spend(
    view: &dyn StateView,
    account: &Address,
    key: &PublicKey,
    epoch: Epoch,
) -> Result<PolicySpend, StateError> {
    let stored = view
        .get(&StateKey::SessionSpend(*account, *key))?
        .map(|raw| PolicySpend::decode(&raw).map_err(StateError::decode("session spending")))
        .transpose()?;
    Ok(stored.unwrap_or_default().in_epoch(epoch))
}

/// Checks `t` at `at`: a session key's standing first (known, unexpired, not changing
/// policies), then the account's policy, then the session key's own scope — each in the
/// fixed order of [`rules`] — with `queued` on top of the stored spending. Stops at the first
/// denial. An `Err` is a state read.
pub fn evaluate(
    view: &dyn StateView,
    t: &Transaction,
    at: At,
    queued: Queued,
) -> Result<Decision, StateError> {
    let sender = t.sender_address();
    let record = read_record(view, &sender)?.map(|r| Arc::new(IndexedRecord::new(r)));
    decide(view, record, (t, sender), at, queued, false, None)
}

/// [`evaluate`] with the sender's policy record decoded through `cache` (execution: the
/// same decision, without decoding an unchanged record again); `keep`: remember what it
/// decodes (not for speculative runs; [`PolicyCache::read_keeping`]). `sender` is the
/// sender's account record as `view` holds it, which execution has read already (its
/// spending is the account's), and `address` its address (`t.sender_address()`, which
/// hashes a key: computed once per transaction).
pub fn evaluate_cached(
    view: &dyn StateView,
    (cache, keep): (&PolicyCache, bool),
    (t, address): (&Transaction, Address),
    (at, sender): (At, Option<&AccountRecord>),
    queued: Queued,
) -> Result<Decision, StateError> {
    let record = cache.read_keeping(view, &address, keep)?;
    let stored = Some(sender.and_then(|r| r.policy_spend));
    decide(view, record, (t, address), at, queued, false, stored)
}

/// [`evaluate`] given the sender's policy record as `view` holds it (`None`: it has none),
/// read by the caller already (admission reads it first to skip everything else for the
/// senders without one).
pub fn evaluate_with(
    view: &dyn StateView,
    record: Option<Arc<IndexedRecord>>,
    t: &Transaction,
    at: At,
    queued: Queued,
) -> Result<Decision, StateError> {
    decide(
        view,
        record,
        (t, t.sender_address()),
        at,
        queued,
        false,
        None,
    )
}

/// [`evaluate`] with the decision trail filled in: every rule checked, in order (what
/// `keel_simulate` shows). Execution and admission do without it (it cost every policed
/// transaction a few allocations).
pub fn explain(
    view: &dyn StateView,
    t: &Transaction,
    at: At,
    queued: Queued,
) -> Result<Decision, StateError> {
    let sender = t.sender_address();
    let record = read_record(view, &sender)?.map(|r| Arc::new(IndexedRecord::new(r)));
    decide(view, record, (t, sender), at, queued, true, None)
}

/// The decision, with `record` the sender's policy record in `view`, and `stored` the
/// spending its account record holds if the caller read it already (`None`: read here);
/// `sender` is `t.sender_address()`.
fn decide(
    view: &dyn StateView,
    record: Option<Arc<IndexedRecord>>,
    (t, sender): (&Transaction, Address),
    at: At,
    queued: Queued,
    explain: bool,
    stored: Option<Option<PolicySpend>>,
) -> Result<Decision, StateError> {
    let mut checks = Checks {
        explain,
        trail: Vec::new(),
        denial: None,
        scope: PolicyScope::SessionKey,
        source: sender,
        resets: at.epoch.saturating_add(1),
    };
    let mut decision = Decision::default();
    let session = match t.sender {
        Sender::Session { account, key } => {
            // A key counts only while whoever added it still may: the account, or its
            // current controller (a released controller's keys die with its control; found
            // by review).
            let controller = record.as_ref().and_then(|r| r.controller);
            let entry = read_session_key(view, &account, &key)?
                .filter(|k| k.added_by == account || Some(k.added_by) == controller);
            if !checks.check(
                PolicyRule::SessionKeyUnknown,
                entry.is_some(),
                flag(entry.is_some()),
            ) {
                return Ok(checks.into(decision));
            }
            let entry = entry.ok_or(StateError::Corrupt("checked above".into()))?;
            checks.source = entry.added_by;
            let live = at.height <= entry.expires_at;
            let numbers = (U256::from(entry.expires_at), U256::from(at.height));
            // A session key acts within the account's scope; it never changes a policy or
            // a validator (found by review: a key scoped to one contract could register,
            // rotate or retire the account's validator).
            let own =
                t.body.as_policy_change().is_none() && !matches!(t.body, TxBody::Validator(_));
            if !checks.check(PolicyRule::SessionKeyExpired, live, numbers)
                || !checks.check(PolicyRule::SessionKeyScope, own, flag(own))
            {
                return Ok(checks.into(decision));
            }
            Some(entry)
        }
        _ => None,
    };
    if let Some(record) = record {
        let spent = match stored {
            Some(stored) => stored.unwrap_or_default().in_epoch(at.epoch),
            None => match read_spend(view, &sender, at.epoch) {
                Ok(spent) => spent,
                // An expired sender is refused where it sends (admission, execution); an
                // explanation (`keel_simulate`) still shows its rules. Its record was last
                // written epochs ago, so nothing it used counts in this one.
                Err(StateError::Expired { .. }) => PolicySpend::default().in_epoch(at.epoch),
                Err(e) => return Err(e),
            },
        };
        let used = plus(spent, queued.account, at.epoch);
        checks.scope = PolicyScope::Account;
        // Whom to ask: the controller if there is one (every limit then is its, or tighter
        // than its), else the account itself.
        checks.source = record.controller.unwrap_or(record.source);
        rules(
            view,
            t,
            at,
            (&record.policy, Some(&record)),
            used,
            &mut checks,
        )?;
        decision.plugins.extend(&record.policy.plugins);
        decision.record = Some(record);
        decision.spend = used;
        if checks.denial.is_some() {
            return Ok(checks.into(decision));
        }
    }
    if let Some(entry) = session {
        let stored = read_session_spend(view, &sender, &entry.key, at.epoch)?;
        let used = plus(stored, queued.session, at.epoch);
        checks.scope = PolicyScope::SessionKey;
        checks.source = entry.added_by;
        rules(view, t, at, (&entry.policy, None), used, &mut checks)?;
        decision.plugins.extend(&entry.policy.plugins);
        decision.session = Some((entry.key, used));
        decision.session_scope = Some(SessionScope::of(&entry, at.epoch, used));
    }
    // The target's jurisdiction rules, last: they are the target's, not the sender's, and
    // every frame checks them again as it runs (this is the top frame's check, so that a
    // denial is a refusal heard at admission).
    if checks.denial.is_none() && t.body.as_policy_change().is_none() {
        let target = match &t.body {
            TxBody::Transfer { to, .. } | TxBody::Call { to, .. } => Some(to),
            _ => None,
        };
        // One read of the counter for both: nothing more while no address declares.
        let ruled = target.is_some() && crate::jurisdiction::any_rules(view)?;
        if let Some(to) = target.filter(|_| ruled) {
            let load = &mut crate::jurisdiction::view_slots(view);
            let verdict =
                crate::jurisdiction::judge_frame(load, (to, &sender), t.body.value(), at.height)?;
            if let Some(verdict) = verdict {
                checks.scope = PolicyScope::Contract;
                checks.source = *to;
                checks.check(verdict.rule(), false, verdict.numbers());
                return Ok(checks.into(decision));
            }
            // The plugins the target attaches to what it receives run after the sender's.
            decision
                .plugins
                .extend(crate::jurisdiction::read_plugins(load, to)?);
        }
    }
    // Plugins check what a transaction sends or calls; changes, revivals and unflags have
    // nothing for them to judge. Each runs once even if both scopes attach it.
    let sends = matches!(
        t.body,
        TxBody::Transfer { .. } | TxBody::Call { .. } | TxBody::Deploy { .. }
    ) && t.body.as_policy_change().is_none();
    if !sends {
        decision.plugins.clear();
    }
    let mut seen = std::collections::BTreeSet::new();
    decision.plugins.retain(|p| seen.insert(*p));
    Ok(checks.into(decision))
}

struct Checks {
    /// Keep the trail (only `explain` does).
    explain: bool,
    trail: Vec<RuleCheck>,
    denial: Option<PolicyDenial>,
    /// Whose rules are being checked, and who set them.
    scope: PolicyScope,
    source: Address,
    resets: Epoch,
}

impl Checks {
    fn into(self, decision: Decision) -> Decision {
        Decision {
            trail: self.trail,
            denial: self.denial,
            ..decision
        }
    }

    /// Records one rule; `false` once a rule denied (the caller stops there).
    fn check(&mut self, rule: PolicyRule, passed: bool, (limit, used): (U256, U256)) -> bool {
        let scope = self.scope;
        if self.explain || !passed {
            self.trail.push(RuleCheck {
                rule,
                scope,
                passed,
                limit,
                used,
            });
        }
        if !passed {
            let per_epoch = matches!(
                rule,
                PolicyRule::ValuePerEpoch | PolicyRule::FeePerEpoch | PolicyRule::TxsPerEpoch
            );
            self.denial = Some(PolicyDenial {
                rule,
                scope,
                limit,
                used,
                resets_at_epoch: per_epoch.then_some(self.resets),
                source: self.source,
            });
        }
        passed
    }

    /// A cap: `used_with` (this transaction included) must not exceed `limit`.
    fn cap(&mut self, rule: PolicyRule, limit: Option<U256>, used_with: U256) -> bool {
        match limit {
            None => true,
            Some(limit) => self.check(rule, used_with <= limit, (limit, used_with)),
        }
    }
}

fn flag(passed: bool) -> (U256, U256) {
    (U256::ZERO, U256::from(u8::from(!passed)))
}

/// `policy`'s rules for `t`; `index`, if given, is the record `policy` belongs to (its
/// targets found through the record's index).
fn rules(
    view: &dyn StateView,
    t: &Transaction,
    at: At,
    (policy, index): (&AccountPolicy, Option<&IndexedRecord>),
    used: PolicySpend,
    checks: &mut Checks,
) -> Result<(), StateError> {
    debug_assert!(index.is_none_or(|r| std::ptr::eq(&r.policy, policy)));
    let h = U256::from(at.height);
    let ok = (!policy.frozen || checks.check(PolicyRule::Frozen, false, flag(false)))
        && policy.valid_from.is_none_or(|from| {
            checks.check(
                PolicyRule::ValidFrom,
                at.height >= from,
                (U256::from(from), h),
            )
        })
        && policy.valid_until.is_none_or(|until| {
            checks.check(
                PolicyRule::ValidUntil,
                at.height <= until,
                (U256::from(until), h),
            )
        })
        && checks.cap(
            PolicyRule::TxsPerEpoch,
            policy.max_txs_per_epoch.map(U256::from),
            U256::from(used.txs.saturating_add(1)),
        )
        && checks.cap(
            PolicyRule::FeePerEpoch,
            policy.max_fee_per_epoch,
            used.fees.saturating_add(t.max_fee()),
        );
    if !ok {
        return Ok(());
    }
    // A policy change sends nothing and calls nothing (in either form).
    if t.body.as_policy_change().is_some() {
        return Ok(());
    }
    let (to, data, env) = match &t.body {
        TxBody::Transfer { to, .. } => (*to, &[][..], None),
        TxBody::Call { to, data, .. } => (*to, data.as_slice(), None),
        TxBody::Deploy { env, .. } => {
            let allowed = policy.targets.is_none();
            if !checks.check(PolicyRule::Deploy, allowed, flag(allowed)) {
                return Ok(());
            }
            (Address::ZERO, &[][..], Some(*env))
        }
        // A validator transaction's target is the registry and its value the stake it
        // locks: an allow-list must name the registry and value caps bound the stake.
        TxBody::Validator(_) => (keel_types::validator::REGISTRY_ADDRESS, &[][..], None),
        // Revivals, unflags and policy changes send nothing and call nothing.
        TxBody::Revive { .. }
        | TxBody::Unflag { .. }
        | TxBody::SetPolicy { .. }
        | TxBody::SetController { .. }
        | TxBody::AddSessionKey { .. }
        | TxBody::RevokeSessionKey { .. } => return Ok(()),
    };
    let is_deploy = env.is_some();
    let target = match index {
        Some(record) => record.target(&to),
        None => policy
            .targets
            .as_ref()
            .map(|ts| ts.iter().find(|r| r.to == to)),
    };
    if let (Some(found), false) = (target, is_deploy) {
        let Some(rule) = found else {
            checks.check(PolicyRule::Target, false, flag(false));
            return Ok(());
        };
        checks.check(PolicyRule::Target, true, flag(true));
        if let Some(selectors) = &rule.selectors {
            let allowed = data.len() >= 4 && selectors.iter().any(|s| s[..] == data[..4]);
            if !checks.check(PolicyRule::Selector, allowed, flag(allowed)) {
                return Ok(());
            }
        }
    }
    if let Some(envs) = &policy.envs {
        // The target's environment: none for an account without code (a plain transfer).
        // An expired target is left to execution, which charges the transaction for it.
        let env = match env {
            Some(env) => Some(env),
            None => match view.account(&to) {
                Ok(account) => account.and_then(|a| a.code).map(|c| c.env),
                Err(StateError::Expired { .. }) => None,
                Err(e) => return Err(e),
            },
        };
        if let Some(env) = env {
            let allowed = envs.contains(&env);
            if !checks.check(PolicyRule::Environment, allowed, flag(allowed)) {
                return Ok(());
            }
        }
    }
    let value = t.body.value();
    let _ = checks.cap(PolicyRule::ValuePerTx, policy.max_value_per_tx, value)
        && checks.cap(
            PolicyRule::ValuePerEpoch,
            policy.max_value_per_epoch,
            used.value.saturating_add(value),
        );
    Ok(())
}

/// Counts a charged transaction against the budgets `decision` checked it with: `value` it
/// sent (zero unless it succeeded) and `fee` it paid — the account's (unless the transaction
/// deleted the account's own policy) and the session key's. `sender` is
/// `t.sender_address()`.
pub fn record_outcome(
    overlay: &mut Overlay<&dyn StateView>,
    (t, sender): (&Transaction, Address),
    decision: &Decision,
    (value, fee): (U256, U256),
) -> Result<(), StateError> {
    let add = |spend: PolicySpend| PolicySpend {
        epoch: spend.epoch,
        value: spend.value.saturating_add(value),
        fees: spend.fees.saturating_add(fee),
        txs: spend.txs.saturating_add(1),
    };
    let still = t.body.as_policy_change().is_none() || read_record(&*overlay, &sender)?.is_some();
    if decision.record.is_some() && still {
        // The transaction wrote the sender's record already (its nonce), so this amends
        // one of its own writes, in place: no entry more.
        let spend = Some(add(decision.spend));
        let amend = |entry: &mut Vec<u8>, at: usize| {
            AccountRecord::set_spend_in(entry, at, spend).map_err(StateError::decode("account"))
        };
        // The transaction is over (its caller forgets the undo history after this too).
        if !overlay.amend_written(&StateKey::Account(sender), amend)? {
            let mut account = overlay.account(&sender)?.unwrap_or_default();
            account.policy_spend = spend;
            overlay.put_account(sender, &account)?;
        }
    }
    if let Some((key, spend)) = decision.session {
        overlay.set(
            StateKey::SessionSpend(sender, key),
            Some(add(spend).encode()),
        )?;
    }
    Ok(())
}

/// Applies `change` (a `SetPolicy` or `SetController` body) sent by `sender` at `height`: who
/// may change what, then the new record and the log that tells the account why its
/// permissions changed.
pub fn apply_change(
    overlay: &mut Overlay<&dyn StateView>,
    (sender, change): (Address, &TxBody),
    height: Height,
) -> Result<Result<Log, PolicyDenial>, StateError> {
    let account = match change {
        TxBody::SetPolicy { account, .. }
        | TxBody::SetController { account, .. }
        | TxBody::AddSessionKey { account, .. }
        | TxBody::RevokeSessionKey { account, .. } => *account,
        // Only `TxBody::as_policy_change` bodies come here.
        _ => return Err(StateError::Corrupt("not a policy change".into())),
    };
    let current = read_record(&*overlay, &account)?;
    let record = current.clone().unwrap_or_default();
    let by_controller = record.controller == Some(sender);
    let by_account = sender == account;
    let deny = |rule| PolicyDenial {
        rule,
        scope: PolicyScope::Account,
        limit: U256::ZERO,
        used: U256::ZERO,
        resets_at_epoch: None,
        source: record.controller.unwrap_or(account),
    };
    if !by_controller && !by_account {
        return Ok(Err(deny(PolicyRule::NotController)));
    }
    let (next, reason) = match change {
        TxBody::SetPolicy { policy, .. } => {
            if !by_controller && !policy.within(&record.policy) {
                return Ok(Err(deny(PolicyRule::Loosening)));
            }
            let reason = if by_controller {
                PolicyChange::SetByController
            } else {
                PolicyChange::TightenedByAccount
            };
            let next = PolicyRecord {
                policy: policy.clone(),
                source: sender,
                changed_at: height,
                ..record.clone()
            };
            (next, reason)
        }
        TxBody::SetController { controller, .. } => {
            let reason = match (by_controller, controller) {
                (true, None) => PolicyChange::ControllerReleased,
                (true, Some(_)) => PolicyChange::ControllerChanged,
                // Naming a controller lets it loosen: the account may do so only while
                // nothing limits it, or it could escape its own limits through a controller
                // it holds the key of.
                (false, _) if record.controller.is_none() && record.policy.is_unlimited() => {
                    PolicyChange::ControllerNamed
                }
                (false, _) => return Ok(Err(deny(PolicyRule::Loosening))),
            };
            let next = PolicyRecord {
                controller: *controller,
                changed_at: height,
                ..record.clone()
            };
            (next, reason)
        }
        TxBody::AddSessionKey {
            key,
            policy,
            expires_at,
            ..
        } => {
            let mut keys = read_session_keys(&*overlay, &account)?;
            let entry = SessionKey {
                key: *key,
                policy: policy.clone(),
                expires_at: *expires_at,
                added_by: sender,
                added_at: height,
            };
            let held = keys.0.len();
            if !keys.0.contains(key) {
                if held >= MAX_SESSION_KEYS {
                    let mut denial = deny(PolicyRule::TooManySessionKeys);
                    denial.limit = U256::from(MAX_SESSION_KEYS);
                    denial.used = U256::from(held);
                    return Ok(Err(denial));
                }
                keys.0.push(*key);
                overlay.set(StateKey::SessionKeys(account), Some(keys.encode()))?;
            }
            overlay.set(StateKey::SessionKey(account, *key), Some(entry.encode()))?;
            return Ok(Ok(change_log(
                account,
                sender,
                PolicyChange::SessionKeyAdded,
            )));
        }
        TxBody::RevokeSessionKey { key, .. } => {
            let mut keys = read_session_keys(&*overlay, &account)?;
            let before = keys.0.len();
            keys.0.retain(|k| k != key);
            if keys.0.len() == before {
                return Ok(Err(deny(PolicyRule::SessionKeyUnknown)));
            }
            let value = (!keys.0.is_empty()).then(|| keys.encode());
            overlay.set(StateKey::SessionKeys(account), value)?;
            overlay.set(StateKey::SessionKey(account, *key), None)?;
            overlay.set(StateKey::SessionSpend(account, *key), None)?;
            return Ok(Ok(change_log(
                account,
                sender,
                PolicyChange::SessionKeyRevoked,
            )));
        }
        _ => return Err(StateError::Corrupt("not a policy change".into())),
    };
    // A record that limits nothing and names no controller is the same as none: deleted,
    // with its spending (policy entries never expire, so nothing is left behind).
    if next.controller.is_some() || !next.policy.is_unlimited() {
        overlay.set(StateKey::Policy(account), Some(next.encode()))?;
    } else {
        overlay.set(StateKey::Policy(account), None)?;
        forget_spend(overlay, &account)?;
    }
    Ok(Ok(change_log(account, sender, reason)))
}

/// Clears what `account` used (its policy is deleted: a new one starts from nothing). An
/// expired record keeps its spending, which only a policy set again in the same epoch could
/// see, as a stricter budget: the account must be revived before it can send.
fn forget_spend(
    overlay: &mut Overlay<&dyn StateView>,
    account: &Address,
) -> Result<(), StateError> {
    let record = match overlay.account(account) {
        Ok(record) => record,
        Err(StateError::Expired { .. }) => {
            // Not this transaction's read to pay for.
            overlay.take_expired_hit();
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if let Some(mut record) = record.filter(|r| r.policy_spend.is_some()) {
        record.policy_spend = None;
        overlay.put_account(*account, &record)?;
    }
    Ok(())
}

/// The log of a policy change: topics (`PolicyChanged`, the account, who changed it), data
/// the reason word.
fn change_log(account: Address, sender: Address, reason: PolicyChange) -> Log {
    let word = |address: &Address| {
        let mut out = [0u8; 32];
        out[12..].copy_from_slice(&address.0);
        out
    };
    let mut data = [0u8; 32];
    data[31] = reason as u8;
    Log {
        address: POLICY_ADDRESS,
        topics: vec![policy_changed_topic(), word(&account), word(&sender)],
        data: data.to_vec(),
    }
}

/// The ABI-encoded context a plugin's `check` receives for `t` (docs/policies.md): sender
/// (the signing key's address), account, session key, target, selector, value, environment
/// of the target (`env`: 0 EVM, 1 WASM, 2 none), epoch, the account's spending this epoch,
/// and the codes of the account's live jurisdiction tags (`tags`, ascending).
pub fn plugin_input(
    t: &Transaction,
    env: Option<keel_types::Env>,
    epoch: Epoch,
    spend: PolicySpend,
    tags: &[keel_types::jurisdiction::Code],
) -> Vec<u8> {
    let address = |a: &Address| {
        let mut w = [0u8; 32];
        w[12..].copy_from_slice(&a.0);
        w
    };
    let u = |v: U256| v.to_be_bytes::<32>();
    let (signer, session) = match t.sender {
        Sender::Session { key, .. } => (Address::from_public_key(&key), key.0),
        Sender::Agent(key) => (Address::from_public_key(&key), [0; 32]),
        Sender::Ethereum(a) => (a, [0; 32]),
    };
    let (target, selector) = match &t.body {
        TxBody::Transfer { to, .. } => (*to, [0u8; 32]),
        TxBody::Call { to, data, .. } => {
            let mut s = [0u8; 32];
            let n = data.len().min(4);
            s[..n].copy_from_slice(&data[..n]);
            (*to, s)
        }
        _ => (Address::ZERO, [0u8; 32]),
    };
    let env = match env {
        Some(keel_types::Env::Evm) => 0u64,
        Some(keel_types::Env::Wasm) => 1,
        None => 2,
    };
    let mut out = keel_types::policy::plugin_check_selector().to_vec();
    for word in [
        address(&signer),
        address(&t.sender_address()),
        session,
        address(&target),
        selector,
        u(t.body.value()),
        u(U256::from(env)),
        u(U256::from(epoch)),
        u(spend.value),
        u(spend.fees),
        u(U256::from(spend.txs)),
        // The head's last word: where the tags array starts, after the 12 head words.
        u(U256::from(12u64 * 32)),
        u(U256::from(tags.len())),
    ] {
        out.extend_from_slice(&word);
    }
    for code in tags {
        // A `bytes2` is left-aligned in its word.
        let mut w = [0u8; 32];
        w[..2].copy_from_slice(&code.0);
        out.extend_from_slice(&w);
    }
    out
}
