//! Transactions: an agent's (what `keel_sendTransaction`, gossip and blocks carry) and an
//! Ethereum envelope (what `eth_sendRawTransaction` receives).

use crate::{assert_canonical, FUZZ_BASE_FEE, FUZZ_CHAIN_ID};
use alloy_consensus::TxEnvelope;
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use keel_types::crypto::verify_batch;
use keel_types::eth::{self, EthTxError};
use keel_types::limits::MAX_TX_BYTES;
use keel_types::{Authorization, Canonical, SignedTransaction};

/// `SignedTransaction::decode`, then the signature checks the mempool and the runtime run
/// (the batch rule, the single check) and, for an Ethereum transaction, the re-derivation
/// from its envelope.
pub fn agent_tx(data: &[u8]) {
    let Ok(tx) = SignedTransaction::decode(data) else {
        return;
    };
    assert_canonical(data, &tx);
    if let Some((key, signature)) = tx.ed25519() {
        // The batch rule the mempool and the runtime run; a set it accepts must pass the
        // single check (both ZIP-215: they must agree; a failing batch falls back to the
        // single check inside `verify_batch`, so that direction is covered there).
        let hash = tx.hash();
        if verify_batch(&[(&hash.0[..], key, signature)]).is_ok() {
            assert_eq!(
                tx.verify_signature(FUZZ_BASE_FEE),
                Ok(()),
                "the batch rule accepts a signature the single check refuses"
            );
        }
    }
    // Everything the node reads off a decoded transaction is total.
    let _ = (tx.tx.max_fee(), tx.tx.sender_address(), tx.tx.hash());
    if let Authorization::Ethereum(raw) = &tx.signature {
        // The re-derivation from the envelope (one signer recovery), and the RPC's view of it.
        let _ = tx.verify_signature(FUZZ_BASE_FEE);
        let _ = eth::envelope_fields(raw);
    }
}

/// `eth::decode` as `eth_sendRawTransaction` calls it (after the node's length check): an
/// accepted envelope has RPC fields, re-encodes canonically (so one signed transaction has
/// one hash), survives keel's own encoding, and is refused on any other chain.
pub fn eth_tx(data: &[u8]) {
    let accepted = eth::decode(data, FUZZ_CHAIN_ID, FUZZ_BASE_FEE);
    // The RPC view of any stored envelope must not panic either.
    let fields = eth::envelope_fields(data);
    let Ok(tx) = accepted else {
        return;
    };
    let fields = fields.expect("an accepted envelope has fields");
    assert!(
        fields.tx_type <= 2,
        "only legacy, 2930 and 1559 are accepted"
    );
    // (`tx.verify_signature()` is `eth::decode(raw) == tx` again: a second signer recovery,
    // left to the agent_tx target so this one runs twice as many inputs.)
    assert_eq!(tx.hash().0, eth::keccak256(data));
    // What it pays per gas: its gasPrice, or for EIP-1559 never above its cap nor above
    // the base fee plus its tip.
    match (
        fields.gas_price,
        fields.max_fee_per_gas,
        fields.max_priority_fee_per_gas,
    ) {
        (_, Some(cap), Some(tip)) => assert_eq!(
            tx.tx.gas_price,
            cap.min(FUZZ_BASE_FEE.saturating_add(tip)),
            "EIP-1559 effective gas price"
        ),
        (Some(price), _, _) => assert_eq!(tx.tx.gas_price, price, "gasPrice"),
        other => panic!("an accepted envelope without fee fields: {other:?}"),
    }
    let envelope = TxEnvelope::decode_2718(&mut &data[..]).expect("decoded once already");
    assert_eq!(
        envelope.encoded_2718(),
        data,
        "an accepted envelope is not the canonical encoding of its transaction"
    );
    if data.len() <= MAX_TX_BYTES {
        let again = SignedTransaction::decode(&tx.encode()).expect("keel encoding round trip");
        assert_eq!(again, tx);
    }
    let other = FUZZ_CHAIN_ID.wrapping_add(1);
    assert!(
        matches!(
            eth::decode(data, other, FUZZ_BASE_FEE),
            Err(EthTxError::WrongChainId { .. })
        ),
        "an envelope is accepted on one chain only"
    );
}
