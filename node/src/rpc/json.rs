//! The JSON shapes of INTERFACES.md: hex strings for bytes, 0x-prefixed quantities.

use keel_types::{Block, Hash, Height, Receipt, RevivalError, TxError, U256};
use serde_json::{json, Value};

pub fn qty(n: u64) -> String {
    format!("{n:#x}")
}

pub fn qty256(n: &U256) -> String {
    format!("{n:#x}")
}

pub fn bytes(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// The reason code of a transaction error, stable for clients to match on.
pub fn error_code(error: &TxError) -> &'static str {
    match error {
        TxError::WrongChainId { .. } => "wrong_chain_id",
        TxError::BadSignature => "bad_signature",
        TxError::BadNonce { .. } => "bad_nonce",
        TxError::InsufficientBalance { .. } => "insufficient_balance",
        TxError::IntrinsicGasTooLow { .. } => "intrinsic_gas_too_low",
        TxError::GasLimitTooHigh { .. } => "gas_limit_too_high",
        TxError::GasPriceTooLow { .. } => "gas_price_too_low",
        TxError::OutOfGas => "out_of_gas",
        TxError::Reverted => "reverted",
        TxError::NoContract { .. } => "no_contract",
        TxError::InvalidCode { .. } => "invalid_code",
        TxError::CallDepthExceeded => "call_depth_exceeded",
        TxError::Expired { .. } => "expired",
        TxError::InvalidRevival { .. } => "invalid_revival",
        TxError::Execution { .. } => "execution",
    }
}

/// A receipt as `--wait` prints it. `block` is `None` for simulations.
pub fn receipt(r: &Receipt, block: Option<Height>) -> Value {
    json!({
        "tx_hash": r.tx_hash.to_hex(),
        "status": r.status.as_str(),
        "block": block,
        "gas_used": r.gas_used,
        "output": bytes(&r.output),
        "contract_address": r.contract_address.map(|a| a.to_hex()),
        "logs": r.logs.iter().map(|l| json!({
            "address": l.address.to_hex(),
            "topics": l.topics.iter().map(|t| bytes(t)).collect::<Vec<_>>(),
            "data": bytes(&l.data),
        })).collect::<Vec<_>>(),
        "error": r.error.as_ref().map(error),
    })
}

/// A receipt's error: its stable `code` and human `message`, plus the fields an agent acts
/// on without parsing text — the expired `key` and `expired_epoch`, a refused revival's
/// `reason`.
fn error(e: &TxError) -> Value {
    let mut out = json!({"code": error_code(e), "message": e.to_string()});
    match e {
        TxError::Expired { key, expired_epoch } => {
            out["key"] = json!(key);
            out["expired_epoch"] = json!(expired_epoch);
        }
        TxError::InvalidRevival { reason } => out["reason"] = json!(revival_code(reason)),
        _ => {}
    }
    out
}

/// Stable codes of refused revivals (`error.reason` in a receipt).
pub fn revival_code(reason: &RevivalError) -> &'static str {
    match reason {
        RevivalError::Malformed(_) => "malformed",
        RevivalError::ExpiryOff => "expiry_off",
        RevivalError::AlreadyLive { .. } => "already_live",
        RevivalError::NotExpired { .. } => "not_expired",
        RevivalError::StaleVersion { .. } => "stale_version",
        RevivalError::UnsealedEpoch { .. } => "unsealed_epoch",
        RevivalError::BadProof { .. } => "bad_proof",
        RevivalError::BadFoldProof { .. } => "bad_fold_proof",
        RevivalError::Archived { .. } => "archived",
    }
}

/// A block header, its post-state root, and its transaction hashes.
pub fn block(b: &Block, state_root: Hash) -> Value {
    let h = &b.header;
    json!({
        "height": h.height,
        "hash": b.hash().to_hex(),
        "parent_hash": h.parent_hash.to_hex(),
        "epoch": h.epoch,
        "view": h.view,
        "timestamp_ms": h.timestamp_ms,
        "proposer": h.proposer.to_hex(),
        "tx_root": h.tx_root.to_hex(),
        "parent_state_root": h.parent_state_root.to_hex(),
        "parent_receipts_root": h.parent_receipts_root.to_hex(),
        "archive_root": h.archive_root.to_hex(),
        "state_root": state_root.to_hex(),
        "transactions": b.transactions.iter().map(|t| t.hash().to_hex()).collect::<Vec<_>>(),
    })
}
