//! Policy plugins (docs/policies.md): run read-only before the transaction they judge, in
//! execution (authoritative, charged) and at admission (so a sender hears a denial before
//! its transaction waits for a block).

use super::*;
use keel_types::policy::{PolicyDenial, PolicyRule, PolicyScope};

/// The denial of `plugin` that answered `code` (`None`: it reverted, trapped, ran out of gas
/// or answered less than a word), or `None` if it allowed (answered zero).
fn verdict(plugin: Address, code: Option<U256>) -> Option<PolicyDenial> {
    let (rule, used) = match code {
        Some(code) if code.is_zero() => return None,
        Some(code) => (PolicyRule::PluginDenied, code),
        None => (PolicyRule::PluginFailed, U256::ZERO),
    };
    Some(PolicyDenial {
        rule,
        scope: PolicyScope::Plugin,
        limit: U256::ZERO,
        used,
        resets_at_epoch: None,
        source: plugin,
    })
}

/// What admission's plugin check ([`Runtime::plugin_denial`]) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginCheck {
    /// No plugin denies it: every plugin allowed it, none applies, or it cannot be judged
    /// here (admission's own checks say why).
    Passed,
    /// A plugin denies it, as its block would.
    Denied(PolicyDenial),
    /// Its plugins could use more gas than the caller's budget has left: not run.
    OverBudget,
}

impl Runtime {
    /// Whether [`Runtime::plugin_denial`] could say anything but `Passed` about `t` at
    /// `state`: its sender signs with a session key or has a policy, or some address
    /// declares jurisdiction rules (a target's rules can attach plugins). Admission asks
    /// first, so that a transaction none of this applies to costs no more than the pool's
    /// own checks (`mempool::admit_latest_vetted`).
    pub fn plugins_may_run(
        &self,
        state: &dyn StateView,
        t: &keel_types::Transaction,
    ) -> Result<bool, RuntimeError> {
        Ok(self.plugin_scope(state, t)?.is_some())
    }

    /// The sender's policy record (if any) when plugins may run for `t` at `state`
    /// ([`Runtime::plugins_may_run`]), `None` when none can.
    #[allow(clippy::type_complexity)]
    fn plugin_scope(
        &self,
        state: &dyn StateView,
        t: &keel_types::Transaction,
    ) -> Result<Option<Option<std::sync::Arc<crate::policy_cache::IndexedRecord>>>, RuntimeError>
    {
        let session = matches!(t.sender, keel_types::Sender::Session { .. });
        let record = self
            .policies
            .read_keeping(state, &t.sender_address(), false)?;
        if !session && record.is_none() && !crate::jurisdiction::any_rules(state)? {
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// What `tx`'s policy plugins say about it at `state`, the state the next block (`block`)
    /// builds on: admission (RPC and gossip) asks, so a sender hears a plugin's denial
    /// before its transaction waits for a block, and a proposer does not fill blocks with
    /// transactions that will only be charged for their plugins. Each plugin runs as
    /// execution runs it: read-only, within `plugin_gas` and what the gas limit leaves after
    /// the intrinsic gas, in the same order. `Passed` if every plugin allows it, or none
    /// applies: the sender has no policy and no session key and no address declares
    /// jurisdiction rules (two cached reads, for almost every transaction), or it cannot be
    /// judged yet (an expired entry, too little gas), which admission's own checks say. A
    /// denial by the sender's (or the target's) rules is `Denied` too. The block decides:
    /// state can change before it, and this does not count the sender's queued
    /// transactions ahead of it.
    ///
    /// `budget_gas` bounds the plugin gas a caller spends over many transactions (a gossip
    /// batch): a transaction whose plugins could use more than is left is not run
    /// ([`PluginCheck::OverBudget`]), and the most its plugins may use is taken from it.
    pub fn plugin_denial(
        &self,
        state: &dyn StateView,
        hashes: &dyn BlockHashes,
        block: &BlockContext,
        tx: &SignedTransaction,
        budget_gas: &mut u64,
    ) -> Result<PluginCheck, RuntimeError> {
        let t = &tx.tx;
        let Some(record) = self.plugin_scope(state, t)? else {
            return Ok(PluginCheck::Passed);
        };
        let at = crate::policy::At {
            height: block.height,
            epoch: block.epoch,
        };
        let decision = match crate::policy::evaluate_with(state, record, t, at, Default::default())
        {
            Ok(decision) => decision,
            Err(keel_state::StateError::Expired { .. }) => return Ok(PluginCheck::Passed),
            Err(e) => return Err(e.into()),
        };
        // The sender's own rules deny it: said here, so admission's refusal stands even if
        // its pool check, a moment later, sees a new epoch's budgets (found by review: the
        // plugins then never ran).
        if let Some(denial) = &decision.denial {
            return Ok(PluginCheck::Denied(denial.clone()));
        }
        if decision.plugins.is_empty() {
            return Ok(PluginCheck::Passed);
        }
        let Ok(intrinsic) = crate::precheck::check_intrinsic_gas(t, self.config.chain_id) else {
            return Ok(PluginCheck::Passed);
        };
        // The most these plugins may use, as execution caps them (the room left by a gas
        // limit past the largest a transaction may have is no more than that largest).
        let room = t.gas_limit.min(MAX_TX_GAS).saturating_sub(intrinsic);
        let most = (decision.plugins.len() as u64)
            .saturating_mul(self.config.plugin_gas)
            .min(room);
        if most > *budget_gas {
            return Ok(PluginCheck::OverBudget);
        }
        // The budget is charged the most they may use, not what they used: a module's load
        // or compile is not metered in gas, so a cheap check would otherwise buy many runs
        // (found by review). Run speculatively, as `simulate` is: what they compile is not
        // kept.
        *budget_gas -= most;
        let denial =
            self.as_speculative()
                .admission_plugins(state, hashes, block, t, (&decision, room))?;
        Ok(denial.map_or(PluginCheck::Passed, PluginCheck::Denied))
    }

    /// [`Self::plugin_denial`]'s run of `decision`'s plugins within `room`: the denial.
    fn admission_plugins(
        &self,
        state: &dyn StateView,
        hashes: &dyn BlockHashes,
        block: &BlockContext,
        t: &keel_types::Transaction,
        (decision, room): (&crate::policy::Decision, u64),
    ) -> Result<Option<PolicyDenial>, RuntimeError> {
        let mut overlay = self.overlay(state, block.epoch);
        let block = &self.paying_context(&mut overlay, block)?;
        let mut reserved = 0u64;
        for plugin in &decision.plugins {
            let cap = self.config.plugin_gas.min(room - reserved);
            let (code, gas) =
                self.run_plugin(&mut overlay, hashes, block, t, (*plugin, decision, cap))?;
            reserved += gas.min(cap);
            if let Some(denial) = verdict(*plugin, code) {
                return Ok(Some(denial));
            }
        }
        Ok(None)
    }

    /// A transaction whose policies attach plugins. The plugins run only once the sender
    /// can pay for the whole transaction (nonce and balance as the EVM checks them), each
    /// within what its gas limit leaves after the intrinsic gas (at most the genesis
    /// `plugin_gas`, by default `PLUGIN_GAS`), and
    /// from then on the transaction is charged whatever happens — a plugin's denial or
    /// failure included, with its nonce used. Plugin work is never free: were a denial a
    /// refusal, a proposer would execute any amount of it for transactions that then cost
    /// nothing, and a verdict that depends on order could keep its block filter from
    /// settling (found by review). What the plugins used is paid before the transaction runs
    /// and comes out of its gas limit.
    pub(super) fn execute_with_plugins(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        hashes: &dyn BlockHashes,
        block: &BlockContext,
        tx: &SignedTransaction,
        (tx_hash, decision): (Hash, &crate::policy::Decision),
        mode: TxMode<'_>,
    ) -> Result<Receipt, RuntimeError> {
        let t = &tx.tx;
        let intrinsic = match self.payable(overlay, t, tx_hash)? {
            Ok(intrinsic) => intrinsic,
            Err(refused) => return Ok(refused),
        };
        let room = t.gas_limit.saturating_sub(intrinsic);
        let mut reserved = 0u64;
        for plugin in &decision.plugins {
            let cap = self.config.plugin_gas.min(room - reserved);
            let (code, gas) =
                self.run_plugin(overlay, hashes, block, t, (*plugin, decision, cap))?;
            reserved += gas.min(cap);
            let Some(denial) = verdict(*plugin, code) else {
                continue;
            };
            let error = TxError::PolicyDenied { denial };
            return self.charge_failed(overlay, block, t, tx_hash, (reserved, error));
        }
        let checkpoint = overlay.checkpoint();
        if let Some(refused) = self.prepay(overlay, block, t, tx_hash, reserved)? {
            return Ok(refused);
        }
        let mode = TxMode {
            reserved_gas: reserved,
            ..mode
        };
        let mut receipt = self.execute_allowed(overlay, hashes, block, tx, tx_hash, mode)?;
        if receipt.status == TxStatus::Rejected {
            // Refused anyway, by a check of the EVM's own (the nonce and balance were
            // checked above): only the plugins' gas is charged, with the nonce used.
            overlay.revert_to(checkpoint);
            let error = receipt.error.unwrap_or(TxError::Execution {
                code: ExecError::InvalidTransaction,
            });
            return self.charge_failed(overlay, block, t, tx_hash, (reserved, error));
        }
        receipt.gas_used += reserved;
        Ok(receipt)
    }

    /// Runs `plugin`'s check of `t` read-only: a call from the account with the context
    /// (`policy::plugin_input`) and at most `gas_limit`, on a scratch overlay that is dropped, so a
    /// plugin can read any state and call any contract but change nothing. Returns the code it
    /// returned (`None` if it reverted, trapped, ran out of gas, read an expired entry or
    /// returned less than a word) and the gas it used.
    fn run_plugin(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        hashes: &dyn BlockHashes,
        block: &BlockContext,
        t: &keel_types::Transaction,
        (plugin, decision, gas_limit): (Address, &crate::policy::Decision, u64),
    ) -> Result<(Option<U256>, u64), RuntimeError> {
        let env = match &t.body {
            TxBody::Deploy { env, .. } => Some(*env),
            TxBody::Transfer { to, .. } | TxBody::Call { to, .. } => match overlay.account(to) {
                Ok(account) => account.and_then(|a| a.code).map(|c| c.env),
                Err(keel_state::StateError::Expired { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            _ => None,
        };
        let tags = crate::jurisdiction::live_codes(
            &mut crate::jurisdiction::view_slots(&*overlay),
            &t.sender_address(),
            block.height,
        )?;
        let input = crate::policy::plugin_input(t, env, block.epoch, decision.spend, &tags);
        let tx_env = TxEnv {
            caller: to_revm(&t.sender_address()),
            gas_limit,
            gas_price: 0,
            kind: TxKind::Call(to_revm(&plugin)),
            data: Bytes::from(input),
            chain_id: Some(self.config.chain_id),
            ..Default::default()
        };
        // The plugin's frames see the transaction's session key as the transaction's own
        // frames do (a guard the plugin consults must not take a key's transaction for the
        // account's; found by review).
        let mode = TxMode {
            session_key: match t.sender {
                keel_types::Sender::Session { key, .. } => Some(key.0),
                _ => None,
            },
            // And its scope, as the transaction's frames do (found by review: plugins saw a
            // key with an all-zero scope, the answer for the account's own key).
            session_scope: decision.session_scope,
            ..TxMode::default()
        };
        let outcome = {
            let base: &dyn StateView = &*overlay;
            let mut scratch = self.overlay(base, block.epoch);
            self.transact(&mut scratch, hashes, block, tx_env, (true, mode))?
        };
        // Its reads of expired entries are not the transaction's.
        overlay.take_expired_hit();
        Ok(match outcome {
            Transacted::Ran(result, _) => {
                let gas = result.tx_gas_used().min(gas_limit);
                match result {
                    ExecutionResult::Success { output, .. } if output.data().len() >= 32 => {
                        (Some(U256::from_be_slice(&output.data()[..32])), gas)
                    }
                    _ => (None, gas),
                }
            }
            Transacted::Expired(_) | Transacted::Invalid(_) => (None, gas_limit),
        })
    }
}
