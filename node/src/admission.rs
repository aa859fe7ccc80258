//! What admission (RPC and gossip) asks beyond the pool's own checks: the verdict of a
//! transaction's policy plugins at the latest state (`Runtime::plugin_denial`), so a sender
//! hears a plugin's denial before its transaction waits for a block, and a transaction a
//! plugin denies does not reach a block from this node's pool whichever way it came.

use crate::driver::now_ms;
use crate::mempool::AdmitError;
use keel_runtime::executor::PluginCheck;
use keel_runtime::{BlockHashes, Runtime};
use keel_state::StateView;
use keel_store::Store;
use keel_types::{Hash, Header, PublicKey, SignedTransaction};

/// The stable reason of a refusal: RPC's error data (docs/rpc.md) and the `reason` label of
/// the refusal counters.
pub(crate) fn reason(e: &AdmitError) -> &'static str {
    match e {
        AdmitError::Full { .. } => "mempool_full",
        AdmitError::TooLarge { .. } => "too_large",
        AdmitError::Decode(_) => "malformed",
        AdmitError::WrongChainId { .. } => "wrong_chain_id",
        AdmitError::BadSignature => "bad_signature",
        AdmitError::GasLimitTooHigh { .. } => "gas_limit_too_high",
        AdmitError::GasPriceTooLow { .. } => "gas_price_too_low",
        AdmitError::IntrinsicGasTooLow { .. } => "intrinsic_gas_too_low",
        AdmitError::Refused(_) => "refused",
        AdmitError::NonceTooLow { .. } => "nonce_too_low",
        AdmitError::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
        AdmitError::InsufficientBalance { .. } => "insufficient_balance",
        AdmitError::AlreadyKnown => "already_known",
        AdmitError::ReplacementUnderpriced { .. } => "replacement_underpriced",
        AdmitError::SenderFull { .. } => "sender_full",
        AdmitError::State(_) => "state",
        AdmitError::PolicyDenied(_) => "policy_denied",
        AdmitError::ReplacementBySessionKey => "replacement_by_session_key",
        AdmitError::PluginBudget => "plugin_budget",
    }
}

/// BLOCKHASH for read-only runs: finalized blocks from the store.
pub(crate) struct StoreHashes<'a>(pub &'a Store);

impl BlockHashes for StoreHashes<'_> {
    fn block_hash(&self, height: u64) -> Option<Hash> {
        self.0.block(height).ok().flatten().map(|b| b.hash())
    }
}

/// The chain constants a header for the next block needs.
#[derive(Debug, Clone, Copy)]
pub struct NextBlock {
    pub chain_id: u64,
    pub genesis_hash: Hash,
    pub epoch_length: u64,
}

impl NextBlock {
    /// A header for the block after the store's latest, as read-only runs (calls,
    /// simulations, plugin checks) see it: no proposer, this node's clock.
    pub fn header(&self, store: &Store) -> Header {
        let latest = store.latest();
        let height = latest.map_or(0, |l| l.height) + 1;
        Header {
            chain_id: self.chain_id,
            height,
            epoch: (height - 1) / self.epoch_length,
            view: 0,
            parent_hash: latest.map_or(self.genesis_hash, |l| l.block_hash),
            proposer: PublicKey([0; 32]),
            timestamp_ms: now_ms(),
            tx_root: Hash::ZERO,
            parent_state_root: latest.map_or(Hash::ZERO, |l| l.state_root),
            parent_receipts_root: Hash::ZERO,
            archive_root: Hash::ZERO,
        }
    }
}

/// Most plugin gas one gossiped batch may make this node spend at admission (ten plugin
/// checks at the default `plugin_gas`). Past it, the batch's other transactions whose
/// plugins would run are refused (`plugin_budget`), not taken unjudged: a peer could
/// otherwise spend the budget on its own denied transactions first and slip in one a plugin
/// denies (found by review). The relaying peer keeps them, and proposes them itself.
pub const MAX_GOSSIP_PLUGIN_GAS: u64 = 10 * keel_types::policy::PLUGIN_GAS;

/// Whether `tx`'s policy plugins could run at `view` (`Runtime::plugins_may_run`): only
/// then is the veto asked, after the pool's precheck. A state error says yes, so that the
/// veto reports it.
pub(crate) fn may_run_plugins(
    runtime: &Runtime,
    view: &dyn StateView,
    tx: &SignedTransaction,
) -> bool {
    runtime.plugins_may_run(view, &tx.tx).unwrap_or(true)
}

/// The refusal of `tx` by its policy plugins at `view`, the store's latest state (`header`:
/// the next block's), if one denies it, spending at most `budget_gas` of plugin gas
/// (`Runtime::plugin_denial`). A state error refuses it too (the pool would fail on the
/// same state). Called only for transactions whose signature verified and that pass the
/// pool's cheap checks (`mempool::admit_latest_vetted`): nobody makes this node run plugins
/// for a transaction nobody signed, or one its sender could not pay for.
pub(crate) fn plugin_veto(
    (view, store): (&dyn StateView, &Store),
    runtime: &Runtime,
    header: &Header,
    tx: &SignedTransaction,
    budget_gas: &mut u64,
) -> Option<AdmitError> {
    let context = runtime.context(header);
    match runtime.plugin_denial(view, &StoreHashes(store), &context, tx, budget_gas) {
        Ok(PluginCheck::Passed) => None,
        Ok(PluginCheck::Denied(denial)) => Some(AdmitError::PolicyDenied(denial)),
        Ok(PluginCheck::OverBudget) => Some(AdmitError::PluginBudget),
        Err(e) => Some(AdmitError::State(e.to_string())),
    }
}
