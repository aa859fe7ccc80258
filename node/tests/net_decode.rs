//! Untrusted p2p bytes: every input decodes to a typed result, never a panic, and nothing a
//! peer sends can make the decoder allocate past the message bound.

use keel_consensus::Message;
use keel_p2p::NetMessage;
use keel_types::{Canonical, Hash, SecretKey, Transaction, TxBody, U256};
use proptest::prelude::*;

fn valid_messages() -> Vec<Vec<u8>> {
    let key = SecretKey::from_seed([3; 32]);
    let tx = Transaction {
        chain_id: 1,
        sender: key.public_key().into(),
        nonce: 0,
        gas_limit: 21_000,
        gas_price: 1,
        body: TxBody::Transfer {
            to: keel_types::Address([1; 20]),
            amount: U256::from(1u64),
        },
    }
    .sign(&key);
    vec![
        NetMessage::Transactions(vec![tx.clone(), tx]).encode(),
        NetMessage::Consensus(Box::new(Message::BlockRequest(Hash([7; 32])))).encode(),
        NetMessage::Consensus(Box::new(Message::SyncRequest { from_height: 5 })).encode(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = NetMessage::decode(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = valid_messages()[which].clone();
        for (at, value) in flips {
            let i = at % bytes.len();
            bytes[i] = value;
        }
        let _ = NetMessage::decode(&bytes);
        let _ = NetMessage::decode(&bytes[..cut % (bytes.len() + 1)]);
    }
}

#[test]
fn valid_messages_round_trip_and_huge_counts_are_refused() {
    for bytes in valid_messages() {
        let decoded = NetMessage::decode(&bytes).expect("valid");
        assert_eq!(decoded.encode(), bytes);
    }
    // A Transactions message claiming u32::MAX entries is refused without allocating them.
    let mut bytes = valid_messages()[0].clone();
    let mut forged = NetMessage::Transactions(vec![]).encode();
    let n = forged.len();
    forged[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(NetMessage::decode(&forged).is_err());
    bytes.truncate(bytes.len() / 2);
    assert!(NetMessage::decode(&bytes).is_err());
}
