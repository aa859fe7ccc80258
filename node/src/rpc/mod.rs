//! JSON-RPC 2.0 over HTTP and WebSocket (jsonrpsee): the native `keel_*` methods of
//! INTERFACES.md. Bound to loopback by default, with request size, batch and connection
//! limits from config.toml. Every bad input is a JSON-RPC error with a message saying what
//! was wrong; nothing a client sends can panic the node.

pub mod eth;
pub mod json;
mod node_info;
mod policy;
mod syncing;
mod validators;

pub use node_info::{sync_state as node_sync_state, CATCHING_UP_VIEWS, UP_IF_HEARD_WITHIN_MS};
pub use syncing::{syncing_module, SyncingContext, FULL_METHODS, SYNCING};

pub(crate) use crate::admission::StoreHashes;
use crate::mempool::{AdmitError, Mempool};
use crate::metrics as m;
use crate::shared::Shared;
use jsonrpsee::server::{
    BatchRequestConfig, RpcModule, Server, ServerConfig, ServerHandle, SubscriptionMessage,
};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use keel_runtime::{CallRequest, Runtime};
use keel_state::StateViewExt;
use keel_store::Store;
use keel_types::{Address, Canonical, Hash, Header, SignedTransaction, StateKey};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Invalid parameters (JSON-RPC standard code).
pub const INVALID_PARAMS: i32 = -32602;
/// The transaction was not admitted; `data.reason` names why.
pub const TX_REJECTED: i32 = -32003;
/// The mempool is full; retry later or pay more.
pub const MEMPOOL_FULL: i32 = -32005;
/// The node cannot answer (state read failed, or it halted).
pub const NODE_ERROR: i32 = -32000;
/// A feature that is not enabled on this chain or this node (an archive proof from a node
/// that does not keep the archive, an epoch argument while expiry is off).
pub const NOT_ENABLED: i32 = -32004;
/// The entry expired; `data` has `key`, `expired_epoch` and `leaf_index`, and the message
/// says how to revive it.
pub const EXPIRED: i32 = -32006;
/// Largest response (a full block's receipts fit).
pub const MAX_RESPONSE_BYTES: u32 = 64 * 1024 * 1024;
/// Live subscriptions (`keel_subscribe`, `eth_subscribe`) one WebSocket connection may hold;
/// each is a task that reads every finalized block.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: u32 = 32;
/// Default and largest gas for `keel_call`.
pub const CALL_GAS_DEFAULT: u64 = 10_000_000;

/// What RPC handlers read and where admitted transactions go for gossip.
#[derive(Debug)]
pub struct RpcContext {
    pub store: Arc<Store>,
    pub mempool: Arc<Mutex<Mempool>>,
    pub runtime: Runtime,
    pub shared: Arc<Shared>,
    /// Admitted transactions and their encoded length, for the gossip task.
    pub gossip: mpsc::Sender<(SignedTransaction, usize)>,
    /// The p2p network, asked whether peers take this node's gossip (`None` in harnesses
    /// without one, which admit as a relaying node would).
    pub net: Option<keel_p2p::Network>,
    pub chain_id: u64,
    pub genesis_hash: Hash,
    /// Genesis's validator set (what votes until state holds an epoch's set), and this
    /// node's key.
    pub genesis_set: keel_types::validator::EpochSet,
    pub my_key: keel_types::PublicKey,
    pub expiry_epochs: u64,
    pub min_gas_price: u128,
    pub epoch_length: u64,
}

#[derive(Debug, Clone)]
pub struct RpcLimits {
    pub max_request_bytes: u32,
    pub max_batch: u32,
    pub max_connections: u32,
}

fn err(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

fn bad_params(message: impl Into<String>) -> ErrorObjectOwned {
    err(INVALID_PARAMS, message)
}

fn node_err(e: impl std::fmt::Display) -> ErrorObjectOwned {
    err(NODE_ERROR, e.to_string())
}

/// A state read's error: the typed `EXPIRED` for an expired entry, else a node error.
pub(crate) fn state_err(e: keel_state::StateError) -> ErrorObjectOwned {
    match &e {
        keel_state::StateError::Expired { key, epoch, leaf } => ErrorObjectOwned::owned(
            EXPIRED,
            e.to_string(),
            Some(json!({
                "key": key.to_string(),
                "expired_epoch": epoch,
                "leaf_index": leaf,
                // Its stub was folded into a fold page: the proof carries a fold part.
                "folded": leaf.is_none(),
            })),
        ),
        _ => node_err(e),
    }
}

fn parse_address(text: &str) -> Result<Address, ErrorObjectOwned> {
    Address::from_hex(text)
        .map_err(|_| bad_params(format!("{text:?} is not a 20-byte hex address")))
}

fn parse_hash(text: &str) -> Result<Hash, ErrorObjectOwned> {
    Hash::from_hex(text).map_err(|_| bad_params(format!("{text:?} is not a 32-byte hex hash")))
}

fn parse_bytes(text: &str) -> Result<Vec<u8>, ErrorObjectOwned> {
    hex::decode(text.strip_prefix("0x").unwrap_or(text))
        .map_err(|e| bad_params(format!("not hex: {e}")))
}

fn parse_slot(text: &str) -> Result<[u8; 32], ErrorObjectOwned> {
    let raw = parse_bytes(text)?;
    if raw.len() > 32 {
        return Err(bad_params("a slot is at most 32 bytes"));
    }
    let mut slot = [0u8; 32];
    slot[32 - raw.len()..].copy_from_slice(&raw);
    Ok(slot)
}

fn admit_error(e: &AdmitError) -> ErrorObjectOwned {
    let reason = crate::admission::reason(e);
    let code = match e {
        AdmitError::Full { .. } => MEMPOOL_FULL,
        AdmitError::Decode(_) => INVALID_PARAMS,
        AdmitError::State(_) => NODE_ERROR,
        _ => TX_REJECTED,
    };
    metrics::counter!(m::MEMPOOL_REJECTED, "reason" => reason).increment(1);
    let mut data = json!({ "reason": reason });
    if let AdmitError::PolicyDenied(denial) = e {
        crate::rpc::json::denial_fields(denial, &mut data);
    }
    ErrorObjectOwned::owned(code, e.to_string(), Some(data))
}

/// The refusal of a node whose key is not registered: its peers hold it as a guest and drop
/// what it gossips, so a transaction admitted here would wait in its pool and never reach a
/// block. Said at once, with the reason, instead (the agent submits to a validator).
fn not_relayed() -> ErrorObjectOwned {
    let reason = "not_relayed";
    metrics::counter!(m::MEMPOOL_REJECTED, "reason" => reason).increment(1);
    ErrorObjectOwned::owned(
        TX_REJECTED,
        "this node's key is not registered, so its peers do not take transactions from it; \
         submit to a validator's RPC",
        Some(json!({ "reason": reason })),
    )
}

impl RpcContext {
    fn latest_height(&self) -> u64 {
        self.store.latest().map_or(0, |l| l.height)
    }

    /// A header for "the next block" that read-only execution runs in.
    fn next_header(&self) -> Header {
        crate::admission::NextBlock {
            chain_id: self.chain_id,
            genesis_hash: self.genesis_hash,
            epoch_length: self.epoch_length,
        }
        .header(&self.store)
    }

    fn status(&self) -> Result<Value, ErrorObjectOwned> {
        let latest = self.store.latest();
        let status = self.shared.status();
        let height = latest.map_or(0, |l| l.height);
        let sync = self.sync_state();
        // The set the next block is voted by (genesis's until state holds one: an empty
        // store, or a snapshot restore in progress).
        let set = keel_runtime::validators::read_epoch_set(
            &self.store.latest_view(),
            self.next_header().epoch,
        )
        .ok()
        .flatten();
        Ok(json!({
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis_hash.to_hex(),
            "height": height,
            "finalized_height": height,
            // Heights below it are pruned (0 on an archive node).
            "oldest_retained": self.store.oldest_retained().unwrap_or(0),
            "epoch": status.epoch,
            "view": status.view,
            "state_root": latest.map(|l| l.state_root.to_hex()),
            "block_hash": latest.map(|l| l.block_hash.to_hex()),
            "validators": set.as_ref().map_or(self.genesis_set.members.len(), |s| s.members.len()),
            "voting_power": set.map(|s| s.total_power().to_string()),
            "peers": status.peers,
            "mempool_size": self.mempool.lock().expect("mempool lock").len(),
            "min_gas_price": self.min_gas_price.to_string(),
            "halted": status.halted,
            "expiry": self.expiry_figures()?,
            "syncing": sync["catching_up"],
            "sync": sync,
        }))
    }

    fn send_transaction(&self, raw: &str) -> Result<Value, ErrorObjectOwned> {
        let bytes = parse_bytes(raw)?;
        if bytes.len() > keel_types::limits::MAX_TX_BYTES {
            return Err(admit_error(&AdmitError::TooLarge {
                len: bytes.len(),
                max: keel_types::limits::MAX_TX_BYTES,
            }));
        }
        let tx = SignedTransaction::decode(&bytes)
            .map_err(|e| admit_error(&AdmitError::Decode(e.to_string())))?;
        let hash = self.admit_one(tx, bytes.len())?;
        Ok(json!({ "tx_hash": hash.to_hex() }))
    }

    /// Admits one decoded transaction to the pool and hands it to gossip.
    fn admit_one(
        &self,
        tx: SignedTransaction,
        encoded_len: usize,
    ) -> Result<Hash, ErrorObjectOwned> {
        if self.net.as_ref().is_some_and(|n| !n.relays_transactions()) {
            return Err(not_relayed());
        }
        // Kept for gossip (no second decode).
        let copy = tx.clone();
        // The committed view is read under the pool lock: read before it, a block committed
        // in between would let a just-included transaction in again (loom model
        // `stale_view_leaves_a_used_nonce_in_the_pool`).
        // A policy plugin's denial is heard here, before the transaction waits for a block.
        let header = self.next_header();
        let view = self.store.latest_view();
        // One transaction: its plugins' own bound (`plugin_gas` each) is the budget.
        let mut budget = u64::MAX;
        let (result, pool_len) = crate::mempool::admit_latest_vetted(
            &*self.mempool,
            || self.store.latest_view(),
            vec![tx],
            (
                |tx: &SignedTransaction| {
                    crate::admission::may_run_plugins(&self.runtime, &view, tx)
                },
                |tx: &SignedTransaction| {
                    let at = (&view as &dyn keel_state::StateView, &*self.store);
                    crate::admission::plugin_veto(at, &self.runtime, &header, tx, &mut budget)
                },
            ),
        );
        metrics::gauge!(m::MEMPOOL_SIZE).set(pool_len as f64);
        match result.into_iter().next() {
            Some(Ok(hash)) => {
                // Best effort: peers also get it when it is proposed.
                let _ = self.gossip.try_send((copy, encoded_len));
                self.shared.publish_pending([hash]);
                Ok(hash)
            }
            Some(Err(e)) => Err(admit_error(&e)),
            None => Err(node_err("no admission result")),
        }
    }

    fn receipt(&self, hash: &str) -> Result<Value, ErrorObjectOwned> {
        let hash = parse_hash(hash)?;
        let Some((height, index)) = self.store.tx_location(&hash).map_err(node_err)? else {
            return Ok(Value::Null);
        };
        let receipts = self
            .store
            .receipts(height)
            .map_err(node_err)?
            .unwrap_or_default();
        Ok(receipts
            .get(index as usize)
            .map_or(Value::Null, |r| json::receipt(r, Some(height))))
    }

    fn block(&self, which: &Value) -> Result<Value, ErrorObjectOwned> {
        let height = match which {
            Value::String(s) if s == "latest" => self.latest_height(),
            Value::String(s) => match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            }
            .map_err(|_| bad_params(format!("{s:?}: use a height or \"latest\"")))?,
            Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| bad_params("height must be a non-negative integer"))?,
            _ => return Err(bad_params("use a height or \"latest\"")),
        };
        let Some(block) = self.store.block(height).map_err(node_err)? else {
            return Ok(Value::Null);
        };
        let root = self.store.state_root(height).map_err(node_err)?;
        Ok(json::block(&block, root))
    }

    fn account(&self, address: &str) -> Result<Value, ErrorObjectOwned> {
        let address = parse_address(address)?;
        let account = self
            .store
            .latest_view()
            .account(&address)
            .map_err(state_err)?
            .unwrap_or_default();
        let pending = self
            .mempool
            .lock()
            .expect("mempool lock")
            .pending_nonce(&address, account.nonce);
        Ok(json!({
            "nonce": account.nonce,
            "pending_nonce": pending,
            "balance": json::qty256(&account.balance),
            "code_hash": account.code.map(|c| c.code_hash.to_hex()),
            "env": account.code.map(|c| c.env.as_str()),
        }))
    }

    fn storage(&self, address: &str, slot: &str) -> Result<Value, ErrorObjectOwned> {
        let address = parse_address(address)?;
        let slot = parse_slot(slot)?;
        let value = self
            .store
            .latest_view()
            .storage(&address, &slot)
            .map_err(state_err)?;
        Ok(json!({ "value": json::bytes(&value) }))
    }

    fn call(&self, request: &Value) -> Result<Value, ErrorObjectOwned> {
        let field = |name: &str| request.get(name).and_then(Value::as_str);
        let to = parse_address(field("to").ok_or_else(|| bad_params("missing \"to\""))?)?;
        let from = field("from")
            .map(parse_address)
            .transpose()?
            .unwrap_or_default();
        let data = field("data")
            .map(parse_bytes)
            .transpose()?
            .unwrap_or_default();
        let gas = match request.get("gas") {
            None | Some(Value::Null) => CALL_GAS_DEFAULT,
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| bad_params("gas: integer"))?,
            Some(Value::String(s)) => u64::from_str_radix(s.trim_start_matches("0x"), 16)
                .map_err(|_| bad_params("gas: hex quantity"))?,
            Some(_) => return Err(bad_params("gas: integer or hex quantity")),
        };
        let header = self.next_header();
        let context = self.runtime.context(&header);
        let view = self.store.latest_view();
        let receipt = self
            .runtime
            .call(
                &view,
                &StoreHashes(&self.store),
                &context,
                CallRequest {
                    from,
                    to: Some(to),
                    data,
                    value: keel_types::U256::ZERO,
                    gas_limit: gas.min(CALL_GAS_DEFAULT),
                },
            )
            .map_err(node_err)?;
        let mut out = json::receipt(&receipt, None);
        let obj = out.as_object_mut().expect("receipt is an object");
        obj.remove("tx_hash");
        obj.remove("block");
        obj.remove("contract_address");
        Ok(out)
    }

    fn simulate(&self, raw: &str) -> Result<Value, ErrorObjectOwned> {
        let bytes = parse_bytes(raw)?;
        let tx = SignedTransaction::decode(&bytes)
            .map_err(|e| bad_params(format!("transaction does not decode: {e}")))?;
        let header = self.next_header();
        let context = self.runtime.context(&header);
        let view = self.store.latest_view();
        let receipt = self
            .runtime
            .simulate(&view, &StoreHashes(&self.store), &context, &tx)
            .map_err(node_err)?;
        let at = keel_runtime::policy::At {
            height: header.height,
            epoch: header.epoch,
        };
        let mut out = json::receipt(&receipt, None);
        out["policy"] = policy::trail(&view, &tx.tx, at, &receipt).map_err(state_err)?;
        Ok(out)
    }

    /// `keel_getValidatorSet`: `epoch` or the next block's.
    fn validator_set(&self, epoch: Option<u64>) -> Result<Value, ErrorObjectOwned> {
        let epoch = epoch.unwrap_or_else(|| self.next_header().epoch);
        validators::get_validator_set(&self.store.latest_view(), epoch).map_err(state_err)
    }

    /// `keel_getEpochProof`: the recorded epoch changes from `from_epoch` (default 0).
    fn epoch_proof(&self, from_epoch: Option<u64>) -> Result<Value, ErrorObjectOwned> {
        let from = from_epoch.unwrap_or(0);
        let max = keel_app::epoch_proof::MAX_EPOCH_CHANGES_PER_RESPONSE;
        let changes = keel_app::epoch_proof::changes(&self.store, from, max).map_err(state_err)?;
        Ok(validators::epoch_proof_json(from, &changes))
    }

    fn policy(&self, address: &str) -> Result<Value, ErrorObjectOwned> {
        let address = parse_address(address)?;
        let header = self.next_header();
        let at = keel_runtime::policy::At {
            height: header.height,
            epoch: header.epoch,
        };
        policy::get_policy(&self.store.latest_view(), &address, at).map_err(state_err)
    }

    fn proof(&self, params: Params<'_>) -> Result<Value, ErrorObjectOwned> {
        let mut seq = params.sequence();
        let address: String = seq
            .next()
            .map_err(|e| bad_params(e.message().to_string()))?;
        let slot: Option<String> = seq
            .optional_next()
            .map_err(|e| bad_params(e.message().to_string()))?;
        let epoch: Option<u64> = seq
            .optional_next()
            .map_err(|e| bad_params(e.message().to_string()))?;
        let address = parse_address(&address)?;
        let key = match slot {
            Some(s) => StateKey::Storage(address, parse_slot(&s)?),
            None => StateKey::Account(address),
        };
        let height = self.latest_height();
        let entry = self.store.entry(&key, height).map_err(node_err)?;
        let folded = entry.is_none()
            && matches!(
                keel_state::StateView::get(&self.store.latest_view(), &key),
                Err(keel_state::StateError::Expired { leaf: None, .. })
            );
        if folded || matches!(entry, Some(keel_state::Entry::Expired { .. })) {
            return self.revival_proof(key, epoch);
        }
        if epoch.is_some() {
            return Err(err(
                INVALID_PARAMS,
                format!(
                    "{key} is not expired: omit the epoch for a proof against the latest state"
                ),
            ));
        }
        let proof = self.store.prove(&key, height).map_err(node_err)?;
        let root = self.store.state_root(height).map_err(node_err)?;
        let encoded = borsh::to_vec(&proof).map_err(node_err)?;
        let value = match &entry {
            Some(keel_state::Entry::Live { value, .. }) => Some(json::bytes(value)),
            _ => None,
        };
        Ok(json!({
            "height": height,
            "state_root": root.to_hex(),
            "key": json::bytes(&key.to_bytes()),
            "expired": false,
            "value": value,
            "entry": proof.value.as_deref().map(json::bytes),
            "proof": json::bytes(&encoded),
        }))
    }

    /// The revival proof of an expired entry against the archive sealed at the end of
    /// `sealed_epoch` (default: the newest sealed archive that holds its leaf).
    fn revival_proof(
        &self,
        key: StateKey,
        sealed_epoch: Option<u64>,
    ) -> Result<Value, ErrorObjectOwned> {
        let view = self.store.latest_view();
        // The epoch of the newest block: archives up to the one before it are sealed.
        let current = self
            .store
            .block(self.latest_height())
            .map_err(node_err)?
            .map_or(0, |b| b.header.epoch);
        let sealed_epoch = match sealed_epoch {
            Some(e) => e,
            None => current.checked_sub(1).ok_or_else(|| {
                err(
                    NOT_ENABLED,
                    "no archive is sealed yet: wait for the epoch to end",
                )
            })?,
        };
        use keel_store::{ProofError, ProofUnavailable};
        let proof = match self.store.revival_proof(&key, sealed_epoch) {
            Ok(p) => p,
            Err(ProofError::State(e)) => return Err(node_err(e)),
            // Absent, flagged, and no page holds it: a filter false positive, cleared by an
            // unflag (which `keel tx revive` sends for this JSON).
            Err(ProofError::Unavailable(ProofUnavailable::NotExpired(_))) => {
                return match self.store.unflag_proof(&key) {
                    Ok(unflag) => Ok(json!({
                        "key": json::bytes(&key.to_bytes()),
                        "expired": true,
                        "unflag": true,
                        "flagged_pages": unflag.absent.iter().map(|a| a.page).collect::<Vec<_>>(),
                        "proof": json::bytes(&unflag.encode()),
                    })),
                    Err(ProofError::State(e)) => Err(node_err(e)),
                    Err(ProofError::Unavailable(why)) => Err(err(NOT_ENABLED, why.to_string())),
                };
            }
            Err(ProofError::Unavailable(why)) => {
                return Err(err(
                    NOT_ENABLED,
                    format!("{why} (the current epoch is {current})"),
                ))
            }
        };
        let sealed = keel_pruning::sealed_archive(&view, sealed_epoch)
            .map_err(node_err)?
            .map(|s| s.root.to_hex());
        Ok(json!({
            "key": json::bytes(&key.to_bytes()),
            "expired": true,
            "expired_epoch": proof.expired_epoch,
            "leaf_index": proof.leaf_index,
            // The fold page that holds it, once its stub was folded out of the tree.
            "fold_page": proof.folded.as_ref().map(|f| f.page),
            "sealed_epoch": sealed_epoch,
            "archive_root": sealed,
            "value": json::bytes(&proof.value),
            "proof": json::bytes(&proof.encode()),
        }))
    }
}

fn one_string(params: &Params<'_>) -> Result<String, ErrorObjectOwned> {
    params
        .one::<String>()
        .map_err(|e| bad_params(e.message().to_string()))
}

/// Builds the module of `keel_*` methods.
pub fn module(
    ctx: RpcContext,
) -> Result<RpcModule<RpcContext>, jsonrpsee::core::RegisterMethodError> {
    let mut module = RpcModule::new(ctx);
    module.register_method("keel_status", |_, ctx, _| {
        metrics::counter!(m::RPC_REQUESTS, "method" => "keel_status").increment(1);
        ctx.status()
    })?;
    module.register_method("keel_getValidators", |_, ctx, _| {
        metrics::counter!(m::RPC_REQUESTS, "method" => "keel_getValidators").increment(1);
        ctx.validators()
    })?;
    module.register_blocking_method("keel_sendTransaction", |params, ctx, _| {
        metrics::counter!(m::RPC_REQUESTS, "method" => "keel_sendTransaction").increment(1);
        ctx.send_transaction(&one_string(&params)?)
    })?;
    module.register_method("keel_getReceipt", |params, ctx, _| {
        ctx.receipt(&one_string(&params)?)
    })?;
    module.register_method("keel_getBlock", |params, ctx, _| {
        let which: Value = params
            .one()
            .map_err(|e| bad_params(e.message().to_string()))?;
        ctx.block(&which)
    })?;
    module.register_method("keel_getAccount", |params, ctx, _| {
        ctx.account(&one_string(&params)?)
    })?;
    module.register_method("keel_getValidatorSet", |params, ctx, _| {
        let epoch: Option<u64> = params
            .sequence()
            .optional_next()
            .map_err(|e| bad_params(e.message().to_string()))?;
        ctx.validator_set(epoch)
    })?;
    module.register_method("keel_getEpochProof", |params, ctx, _| {
        let from: Option<u64> = params
            .sequence()
            .optional_next()
            .map_err(|e| bad_params(e.message().to_string()))?;
        ctx.epoch_proof(from)
    })?;
    module.register_method("keel_getPolicy", |params, ctx, _| {
        ctx.policy(&one_string(&params)?)
    })?;
    module.register_method("keel_getStorage", |params, ctx, _| {
        let (address, slot): (String, String) = params
            .parse()
            .map_err(|e| bad_params(e.message().to_string()))?;
        ctx.storage(&address, &slot)
    })?;
    module.register_blocking_method("keel_call", |params, ctx, _| {
        let request: Value = params
            .one()
            .map_err(|e| bad_params(e.message().to_string()))?;
        ctx.call(&request)
    })?;
    module.register_blocking_method("keel_simulate", |params, ctx, _| {
        ctx.simulate(&one_string(&params)?)
    })?;
    module.register_blocking_method("keel_getProof", |params, ctx, _| ctx.proof(params))?;
    eth::register(&mut module)?;
    module.register_subscription(
        "keel_subscribe",
        "keel_subscription",
        "keel_unsubscribe",
        |params, pending, ctx, _| async move {
            let kind: String = match params.one() {
                Ok(k) => k,
                Err(e) => {
                    pending.reject(bad_params(e.message().to_string())).await;
                    return Ok(());
                }
            };
            if kind != "finalizedBlocks" {
                pending
                    .reject(bad_params(format!(
                        "unknown subscription {kind:?}; use \"finalizedBlocks\""
                    )))
                    .await;
                return Ok(());
            }
            let mut rx = ctx.shared.subscribe();
            let sink = pending.accept().await?;
            while let Some(event) = next_for(&mut rx, &sink).await {
                let value = json::block(&event.block, event.state_root);
                let message =
                    SubscriptionMessage::new(sink.method_name(), sink.subscription_id(), &value)?;
                if sink.send(message).await.is_err() {
                    return Ok(());
                }
            }
            Ok(())
        },
    )?;
    Ok(module)
}

/// The next item for a subscription's sink; `None` once its client left (at once, not at
/// the next send: a filter that never matches would otherwise outlive its connection) or
/// the source closed. A slow subscriber skips what it missed rather than stalling others.
async fn next_for<T: Clone>(
    rx: &mut tokio::sync::broadcast::Receiver<T>,
    sink: &jsonrpsee::server::SubscriptionSink,
) -> Option<T> {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Ok(item) => return Some(item),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            },
            () = sink.closed() => return None,
        }
    }
}

/// Subscription ids as geth spells them, "0x" and 32 hex digits (16 random bytes): web3.py
/// requires a string, and other Ethereum clients expect this shape.
#[derive(Debug)]
struct HexIdProvider;

impl jsonrpsee::server::IdProvider for HexIdProvider {
    fn next_id(&self) -> jsonrpsee::types::SubscriptionId<'static> {
        let bytes: [u8; 16] = rand::random();
        jsonrpsee::types::SubscriptionId::Str(format!("0x{}", hex::encode(bytes)).into())
    }
}

/// Starts the server; it runs until the handle is stopped or dropped with the process.
pub async fn serve<C: Send + Sync + 'static>(
    addr: SocketAddr,
    limits: &RpcLimits,
    module: RpcModule<C>,
) -> std::io::Result<ServerHandle> {
    let config = ServerConfig::builder()
        .max_request_body_size(limits.max_request_bytes)
        .max_response_body_size(MAX_RESPONSE_BYTES)
        .max_connections(limits.max_connections)
        .max_subscriptions_per_connection(MAX_SUBSCRIPTIONS_PER_CONNECTION)
        .set_id_provider(HexIdProvider)
        .set_batch_request_config(BatchRequestConfig::Limit(limits.max_batch))
        .build();
    let server = Server::builder().set_config(config).build(addr).await?;
    Ok(server.start(module))
}
