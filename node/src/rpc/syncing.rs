//! The RPC of a node restoring a snapshot (no store exists yet): `keel_status` with the
//! restore's progress, the constants a wallet asks first (`eth_chainId`, `net_version`), an
//! `eth_syncing` object, and for every other method the full node serves a typed `SYNCING`
//! error with the progress, so a client can tell "not yet" from "no such method".

use super::node_info;
use crate::metrics as m;
use crate::shared::{Shared, Status};
use jsonrpsee::server::RpcModule;
use jsonrpsee::types::ErrorObjectOwned;
use keel_types::Hash;
use serde_json::{json, Value};
use std::sync::Arc;

/// The node is restoring a snapshot: try again when `keel_status.syncing` is false
/// (`data`: `reason: "syncing"` and the restore's progress).
pub const SYNCING: i32 = -32007;

/// Every method the full node's RPC serves (a unit test holds this to the full module).
/// While a restore runs, each answers `SYNCING` except the few served from genesis alone.
pub const FULL_METHODS: &[&str] = &[
    "keel_call",
    "keel_getAccount",
    "keel_getBlock",
    "keel_getEpochProof",
    "keel_getPolicy",
    "keel_getProof",
    "keel_getReceipt",
    "keel_getStorage",
    "keel_getValidatorSet",
    "keel_getValidators",
    "keel_sendTransaction",
    "keel_simulate",
    "keel_status",
    "keel_subscribe",
    "keel_unsubscribe",
    "debug_traceTransaction",
    "eth_accounts",
    "eth_blockNumber",
    "eth_call",
    "eth_chainId",
    "eth_estimateGas",
    "eth_feeHistory",
    "eth_gasPrice",
    "eth_getBalance",
    "eth_getBlockByHash",
    "eth_getBlockByNumber",
    "eth_getBlockReceipts",
    "eth_getCode",
    "eth_getLogs",
    "eth_getStorageAt",
    "eth_getTransactionByHash",
    "eth_getTransactionCount",
    "eth_getTransactionReceipt",
    "eth_maxPriorityFeePerGas",
    "eth_sendRawTransaction",
    "eth_subscribe",
    "eth_syncing",
    "eth_unsubscribe",
    "net_listening",
    "net_version",
    "web3_clientVersion",
];

/// Methods the restoring node answers itself (from genesis and the restore's progress).
const SERVED_WHILE_SYNCING: &[&str] = &["keel_status", "eth_chainId", "net_version", "eth_syncing"];

/// What RPC serves while a snapshot restore runs and no store exists yet.
#[derive(Clone, Debug)]
pub struct SyncingContext {
    pub shared: Arc<Shared>,
    pub net: keel_p2p::Network,
    pub chain_id: u64,
    pub genesis_hash: Hash,
    pub validators: usize,
    pub min_gas_price: u128,
}

fn progress(status: &Status) -> Value {
    serde_json::to_value(&status.snapshot).unwrap_or(Value::Null)
}

/// The error every method but [`SERVED_WHILE_SYNCING`] answers while the restore runs.
fn syncing_error(status: &Status) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        SYNCING,
        "the node is restoring a snapshot; until it is done only keel_status, eth_chainId, \
         net_version and eth_syncing are served",
        Some(json!({ "reason": "syncing", "snapshot": progress(status) })),
    )
}

/// The RPC module of a restoring node (the full module replaces it on the same address).
pub fn syncing_module(
    ctx: SyncingContext,
) -> Result<RpcModule<SyncingContext>, jsonrpsee::core::RegisterMethodError> {
    let mut module = RpcModule::new(ctx);
    module.register_method("keel_status", |_, ctx, _| {
        metrics::counter!(m::RPC_REQUESTS, "method" => "keel_status").increment(1);
        let status = ctx.shared.status();
        Ok::<_, ErrorObjectOwned>(json!({
            "chain_id": ctx.chain_id,
            "genesis_hash": ctx.genesis_hash.to_hex(),
            "height": 0,
            "finalized_height": 0,
            "oldest_retained": 0,
            "epoch": status.epoch,
            "view": status.view,
            "state_root": null,
            "block_hash": null,
            // Genesis's count: the set in force is in the state being restored.
            "validators": ctx.validators,
            "voting_power": null,
            "peers": ctx.net.connected().len(),
            "mempool_size": 0,
            "min_gas_price": ctx.min_gas_price.to_string(),
            "halted": status.halted,
            "expiry": null,
            "syncing": true,
            "sync": node_info::sync_state(&status),
        }))
    })?;
    module.register_method("eth_chainId", |_, ctx, _| {
        Ok::<_, ErrorObjectOwned>(json!(super::json::qty(ctx.chain_id)))
    })?;
    module.register_method("net_version", |_, ctx, _| {
        Ok::<_, ErrorObjectOwned>(json!(ctx.chain_id.to_string()))
    })?;
    // geth's shape while syncing, plus the restore's progress.
    module.register_method("eth_syncing", |_, ctx, _| {
        let status = ctx.shared.status();
        let target = status.snapshot.as_ref().map_or(0, |p| p.target_height);
        Ok::<_, ErrorObjectOwned>(json!({
            "startingBlock": "0x0",
            "currentBlock": "0x0",
            "highestBlock": format!("{target:#x}"),
            "keelSnapshot": progress(&status),
        }))
    })?;
    for name in FULL_METHODS
        .iter()
        .filter(|name| !SERVED_WHILE_SYNCING.contains(name))
    {
        module.register_method(name, |_, ctx, _| {
            Err::<Value, _>(syncing_error(&ctx.shared.status()))
        })?;
    }
    Ok(module)
}

#[cfg(test)]
mod tests;
