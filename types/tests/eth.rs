//! Ethereum envelopes as keel transactions: vectors signed by web3.py's eth-account with a
//! well-known test key (Hardhat account 0), decoded and recovered by alloy.

use keel_types::eth::{decode, envelope_fields, EthTxError};
use keel_types::{Address, Authorization, Env, Sender, TxBody, U256};

/// EIP-1559: to 0x…bb, value 7, gas 21000, maxFee 2, tip 0, nonce 3, chain 1337.
const EIP1559: &str = "02f8648205390380028252089400000000000000000000000000000000000000bb0780c080a048735451d4cadab0a11662a0fda08ffc749984f40c253c0ff738a034f8de27f0a03fda13310c21a69fc8eef5db6a9408eddbe35a90a92faa81d757233d9cd44d38";
const EIP1559_HASH: &str = "1be99ff863748b48d82dd677cf7ae5e98106af03e575da49a4b296e1ab218f4f";
/// Legacy EIP-155 creation: data 0x6001, gas 60000, gasPrice 1, nonce 4, chain 1337.
const LEGACY_CREATE: &str = "f84f040182ea608080826001820a95a0d447972d77294be4607759fa3065c8ca30894050ef55df1b3667187ecf3f8b56a03d733e7d55e3b196b5a1c87eb5438478360883e6ba96693e4bc9e2af86711d45";
const LEGACY_HASH: &str = "d85efed4c644f79eb60aa2d54d3e1ea4b3043bacf2180c63353256bb3f489969";
const SIGNER: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";

/// The chain's base fee (its flat minimum gas price) the vectors are decoded against.
const BASE_FEE: u128 = 1;

fn raw(hex_str: &str) -> Vec<u8> {
    hex::decode(hex_str).expect("hex")
}

#[test]
fn eip1559_and_legacy_envelopes_become_keel_transactions() {
    let tx = decode(&raw(EIP1559), 1337, BASE_FEE).expect("decodes");
    assert_eq!(
        tx.tx.sender,
        Sender::Ethereum(Address::from_hex(SIGNER).expect("addr"))
    );
    assert_eq!(tx.tx.sender_address().to_hex(), SIGNER);
    // It pays min(maxFee 2, base 1 + tip 0) = 1 per gas, not its cap.
    assert_eq!(
        (tx.tx.nonce, tx.tx.gas_limit, tx.tx.gas_price),
        (3, 21_000, 1)
    );
    assert_eq!(
        tx.tx.body,
        TxBody::Call {
            to: Address::from_hex("0x00000000000000000000000000000000000000bb").expect("addr"),
            data: vec![],
            value: U256::from(7u64),
        }
    );
    assert_eq!(hex::encode(tx.hash().0), EIP1559_HASH, "the Ethereum hash");
    tx.verify_signature(BASE_FEE).expect("verifies");
    let fields = envelope_fields(&raw(EIP1559)).expect("fields");
    assert_eq!(
        (
            fields.tx_type,
            fields.max_fee_per_gas,
            fields.max_priority_fee_per_gas
        ),
        (2, Some(2), Some(0))
    );

    let create = decode(&raw(LEGACY_CREATE), 1337, BASE_FEE).expect("decodes");
    assert_eq!(hex::encode(create.hash().0), LEGACY_HASH);
    assert_eq!(
        create.tx.body,
        TxBody::Deploy {
            env: Env::Evm,
            code: vec![0x60, 0x01],
            args: vec![],
            value: U256::ZERO
        }
    );
    let fields = envelope_fields(&raw(LEGACY_CREATE)).expect("fields");
    assert_eq!(
        (fields.tx_type, fields.v, fields.gas_price),
        (0, 1337 * 2 + 35 + u64::from(fields.y_parity), Some(1))
    );
}

#[test]
fn tampering_and_wrong_chains_are_refused() {
    assert_eq!(
        decode(&raw(EIP1559), 1, BASE_FEE),
        Err(EthTxError::WrongChainId {
            expected: 1,
            got: 1337
        })
    );
    // Derived fields that disagree with the envelope fail verification (a node cannot be
    // handed a block whose transaction says something the key did not sign).
    let mut forged = decode(&raw(EIP1559), 1337, BASE_FEE).expect("decodes");
    forged.tx.nonce += 1;
    assert!(forged.verify_signature(BASE_FEE).is_err());
    let mut forged = decode(&raw(EIP1559), 1337, BASE_FEE).expect("decodes");
    forged.tx.sender = Sender::Ethereum(Address([0xaa; 20]));
    assert!(forged.verify_signature(BASE_FEE).is_err());
    // A flipped byte in the signature recovers another signer or none.
    let mut bytes = raw(EIP1559);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    match decode(&bytes, 1337, BASE_FEE) {
        Ok(other) => assert_ne!(other.tx.sender_address().to_hex(), SIGNER),
        Err(e) => assert!(matches!(e, EthTxError::BadSignature(_)), "{e}"),
    }
    let mut swapped = decode(&raw(EIP1559), 1337, BASE_FEE).expect("decodes");
    if let Authorization::Ethereum(env) = &mut swapped.signature {
        *env = raw(LEGACY_CREATE);
    }
    assert!(swapped.verify_signature(BASE_FEE).is_err());
    // Trailing bytes, garbage, unsupported types.
    let mut trailing = raw(EIP1559);
    trailing.push(0);
    assert_eq!(
        decode(&trailing, 1337, BASE_FEE),
        Err(EthTxError::TrailingBytes(1))
    );
    assert!(matches!(
        decode(&[0x02, 0xde, 0xad], 1337, BASE_FEE),
        Err(EthTxError::Malformed(_))
    ));
    assert!(decode(&[0x03, 0xc0], 1337, BASE_FEE).is_err());
}

/// EIP-1559's effective gas price: min(maxFeePerGas, base fee + tip), whatever the base fee;
/// and a transaction carrying any other price than its envelope's on this chain is refused.
#[test]
fn an_eip1559_envelope_pays_the_effective_price_and_no_other() {
    for (base, price) in [(0u128, 0u128), (1, 1), (2, 2), (3, 2), (u128::MAX, 2)] {
        let tx = decode(&raw(EIP1559), 1337, base).expect("decodes");
        assert_eq!(tx.tx.gas_price, price, "base fee {base}");
        tx.verify_signature(base)
            .expect("verifies at its own base fee");
    }
    let tx = decode(&raw(EIP1559), 1337, 1).expect("decodes");
    assert!(
        tx.verify_signature(2).is_err(),
        "priced for another base fee"
    );
    let mut claims_the_cap = tx.clone();
    claims_the_cap.tx.gas_price = 2;
    assert!(claims_the_cap.verify_signature(1).is_err());
    // A tip above the cap is invalid (EIP-1559), refused before any signer recovery: the
    // vector with maxPriorityFeePerGas 0 (RLP 0x80) made 3, above maxFeePerGas 2.
    let over = EIP1559.replacen("82053903800282", "82053903030282", 1);
    assert_ne!(over, EIP1559);
    assert_eq!(
        decode(&raw(&over), 1337, 1),
        Err(EthTxError::TipAboveCap { tip: 3, cap: 2 })
    );
    // Legacy envelopes pay their gasPrice at any base fee.
    for base in [0, 1, 5] {
        let legacy = decode(&raw(LEGACY_CREATE), 1337, base).expect("decodes");
        assert_eq!(legacy.tx.gas_price, 1);
    }
}
