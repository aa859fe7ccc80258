//! Ethereum transactions as keel transactions: decode an EIP-2718 envelope (legacy with
//! EIP-155 chain id, EIP-2930, EIP-1559), recover its secp256k1 signer with alloy, and map it
//! onto keel's [`Transaction`] so it runs through the same checks and the same EVM path as
//! an agent's, against the same accounts.

use crate::address::Address;
use crate::state_key::Env;
use crate::tx::{Authorization, Sender, SignedTransaction, Transaction, TxBody};
use crate::U256;
use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{Transaction as _, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::TxKind;

/// keccak256 (Ethereum's hash: transaction hashes, log blooms).
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    alloy_primitives::keccak256(data).0
}

/// Why an Ethereum transaction is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EthTxError {
    #[error("not a valid EIP-2718 transaction: {0}")]
    Malformed(String),
    #[error("{0} bytes after the transaction")]
    TrailingBytes(usize),
    #[error("transaction type {0} is not supported (legacy, EIP-2930 and EIP-1559 are)")]
    UnsupportedType(u8),
    #[error("legacy transaction without an EIP-155 chain id (replayable on any chain)")]
    NoChainId,
    #[error("chain id {got}, this chain is {expected}")]
    WrongChainId { expected: u64, got: u64 },
    #[error("signature does not recover a signer: {0}")]
    BadSignature(String),
    #[error("maxPriorityFeePerGas {tip} is above maxFeePerGas {cap}")]
    TipAboveCap { tip: u128, cap: u128 },
}

fn u256(v: alloy_primitives::U256) -> U256 {
    U256::from_be_bytes(v.to_be_bytes::<32>())
}

/// Decodes and verifies `raw` (as `eth_sendRawTransaction` receives it) for chain `chain_id`,
/// whose base fee (the chain's flat minimum gas price) is `base_fee`.
///
/// The keel fields: the sender is the recovered address; the gas price is what the sender
/// pays per gas ([`effective_gas_price`]: `gasPrice`, or for EIP-1559 `min(maxFeePerGas,
/// base_fee + maxPriorityFeePerGas)`, so a client's default cap of about twice the base fee
/// pays the base fee plus its tip, not the cap); a call becomes
/// [`TxBody::Call`] (to an account without code it moves value like a transfer) and a
/// creation [`TxBody::Deploy`] in the EVM with the input as creation code. Access lists are
/// accepted and not used for pricing.
pub fn decode(raw: &[u8], chain_id: u64, base_fee: u128) -> Result<SignedTransaction, EthTxError> {
    let mut buf = raw;
    let envelope =
        TxEnvelope::decode_2718(&mut buf).map_err(|e| EthTxError::Malformed(e.to_string()))?;
    if !buf.is_empty() {
        return Err(EthTxError::TrailingBytes(buf.len()));
    }
    match &envelope {
        TxEnvelope::Legacy(_) | TxEnvelope::Eip2930(_) | TxEnvelope::Eip1559(_) => {}
        other => return Err(EthTxError::UnsupportedType(other.tx_type() as u8)),
    }
    if let TxEnvelope::Eip1559(_) = &envelope {
        // EIP-1559: a tip above the cap is invalid (geth refuses it too).
        let (cap, tip) = (
            envelope.max_fee_per_gas(),
            envelope.max_priority_fee_per_gas().unwrap_or(0),
        );
        if tip > cap {
            return Err(EthTxError::TipAboveCap { tip, cap });
        }
    }
    let got = envelope.chain_id().ok_or(EthTxError::NoChainId)?;
    if got != chain_id {
        return Err(EthTxError::WrongChainId {
            expected: chain_id,
            got,
        });
    }
    let signer = envelope
        .recover_signer()
        .map_err(|e| EthTxError::BadSignature(e.to_string()))?;
    let value = u256(envelope.value());
    let input = envelope.input().to_vec();
    let body = match envelope.kind() {
        TxKind::Call(to) => TxBody::Call {
            to: Address(to.into_array()),
            data: input,
            value,
        },
        TxKind::Create => TxBody::Deploy {
            env: Env::Evm,
            code: input,
            args: Vec::new(),
            value,
        },
    };
    Ok(SignedTransaction {
        tx: Transaction {
            chain_id,
            sender: Sender::Ethereum(Address(signer.into_array())),
            nonce: envelope.nonce(),
            gas_limit: envelope.gas_limit(),
            gas_price: effective_gas_price(&envelope, base_fee),
            body,
        },
        signature: Authorization::Ethereum(raw.to_vec()),
    })
}

/// What an envelope pays per gas on a chain whose base fee is `base_fee`: `gasPrice` for
/// legacy and EIP-2930 envelopes, EIP-1559's effective gas price `min(maxFeePerGas, base_fee +
/// maxPriorityFeePerGas)` otherwise. The whole price goes to the block's proposer, as every
/// keel fee does. A cap below the base fee gives a price below it, which admission and
/// execution refuse (`GasPriceTooLow`).
pub fn effective_gas_price(envelope: &TxEnvelope, base_fee: u128) -> u128 {
    match envelope {
        TxEnvelope::Eip1559(_) => {
            let tip = envelope.max_priority_fee_per_gas().unwrap_or(0);
            envelope.max_fee_per_gas().min(base_fee.saturating_add(tip))
        }
        // Legacy and EIP-2930: their `gasPrice` (alloy reports it as the fee cap).
        _ => envelope.max_fee_per_gas(),
    }
}

/// The signature and fee fields of an envelope, for `eth_getTransactionByHash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeFields {
    /// EIP-2718 type: 0 legacy, 1 EIP-2930, 2 EIP-1559.
    pub tx_type: u8,
    /// Legacy `v` (EIP-155: `chain_id * 2 + 35 + parity`), else the y parity.
    pub v: u64,
    pub y_parity: bool,
    pub r: U256,
    pub s: U256,
    /// Legacy and EIP-2930 `gasPrice`.
    pub gas_price: Option<u128>,
    /// EIP-1559 fee caps.
    pub max_fee_per_gas: Option<u128>,
    pub max_priority_fee_per_gas: Option<u128>,
}

/// Reads the fields of an envelope [`decode`] has accepted (`None` if it does not decode).
pub fn envelope_fields(raw: &[u8]) -> Option<EnvelopeFields> {
    let envelope = TxEnvelope::decode_2718(&mut &raw[..]).ok()?;
    let signature = envelope.signature();
    let y_parity = signature.v();
    let tx_type = envelope.tx_type() as u8;
    let chain_id = envelope.chain_id().unwrap_or(0);
    let v = if tx_type == 0 {
        chain_id * 2 + 35 + u64::from(y_parity)
    } else {
        u64::from(y_parity)
    };
    let is_1559 = tx_type == 2;
    Some(EnvelopeFields {
        tx_type,
        v,
        y_parity,
        r: u256(signature.r()),
        s: u256(signature.s()),
        gas_price: envelope.gas_price(),
        max_fee_per_gas: is_1559.then(|| envelope.max_fee_per_gas()),
        max_priority_fee_per_gas: if is_1559 {
            envelope.max_priority_fee_per_gas()
        } else {
            None
        },
    })
}
