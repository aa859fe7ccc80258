//! Driver unit tests: bodies bound to headers as they arrive from the wire, and the fault
//! variable read only with debug assertions.

use super::*;
use keel_p2p::NetMessage;
use keel_types::block::tx_root;
use keel_types::{
    Block, Canonical, Certificate, Hash, Header, SecretKey, Signature, SignedTransaction,
    Transaction, TxBody, Vote, VoteKind,
};

fn tx(nonce: u64) -> SignedTransaction {
    let key = SecretKey::from_seed([7; 32]);
    Transaction {
        chain_id: 1,
        sender: key.public_key().into(),
        nonce,
        gas_limit: 21_000,
        gas_price: 1,
        body: TxBody::Transfer {
            to: keel_types::Address([1; 20]),
            amount: keel_types::U256::from(1u64),
        },
    }
    .sign(&key)
}

fn block(transactions: Vec<SignedTransaction>) -> Block {
    Block {
        header: Header {
            chain_id: 1,
            height: 5,
            epoch: 0,
            view: 5,
            parent_hash: Hash::ZERO,
            proposer: SecretKey::from_seed([1; 32]).public_key(),
            timestamp_ms: 1_000,
            tx_root: tx_root(&transactions),
            parent_state_root: Hash::ZERO,
            parent_receipts_root: Hash::ZERO,
            archive_root: Hash::ZERO,
        },
        transactions,
    }
}

/// `message` as a peer's bytes would decode.
fn from_wire(message: Message) -> Message {
    let bytes = NetMessage::Consensus(Box::new(message)).encode();
    match NetMessage::decode(&bytes).expect("decodes") {
        NetMessage::Consensus(message) => *message,
        _ => unreachable!(),
    }
}

#[test]
fn every_block_carrying_message_with_a_swapped_body_is_dropped() {
    let good = block(vec![tx(0), tx(1)]);
    // Same header (same hash, same signatures over it), other transactions.
    let bad = Block {
        header: good.header.clone(),
        transactions: vec![tx(2)],
    };
    let key = SecretKey::from_seed([1; 32]);
    let vote = Vote {
        chain_id: 1,
        epoch: 0,
        view: 5,
        kind: VoteKind::Notarize,
        block: good.hash(),
    };
    let signed = keel_types::SignedVote {
        signature: key.sign(&vote.signing_hash().0),
        vote,
        signer: 0,
    };
    let cert = Certificate {
        vote,
        signers: vec![0],
        signatures: vec![Signature::ZERO],
    };
    let messages = |b: &Block| {
        vec![
            Message::Propose {
                block: b.clone(),
                vote: signed,
            },
            Message::BlockResponse(b.clone()),
            Message::SyncResponse {
                blocks: vec![good.clone(), b.clone()],
                headers: Vec::new(),
                finalization: cert.clone(),
            },
        ]
    };
    for message in messages(&bad) {
        assert_eq!(unbound_body(&from_wire(message)), Some(5));
    }
    for message in messages(&good) {
        assert_eq!(unbound_body(&from_wire(message)), None);
    }
}

#[test]
fn the_fault_variable_is_read_only_with_debug_assertions() {
    // Release builds never read it; under debug assertions an unset variable is None.
    if !cfg!(debug_assertions) || std::env::var(FAULT_DIVERGE_ENV).is_err() {
        assert_eq!(fault_diverge_height(), None);
    }
}

fn set_of(powers: &[u64]) -> keel_consensus::ValidatorSet {
    let keys = (0..powers.len())
        .map(|i| SecretKey::from_seed([i as u8 + 1; 32]).public_key())
        .collect();
    keel_consensus::ValidatorSet::weighted(0, keys, powers.to_vec())
}

fn honest(heard: &[u64], powers: &[u64]) -> u64 {
    super::honest_view_heard(heard, &set_of(powers))
}

/// The status page's "catching up" must not be raised by f Byzantine validators signing
/// votes far ahead (found by review): the honest view is the highest view that validators
/// holding more than 1/3 of the power were heard voting in — with equal powers, the
/// (f + 1)-th highest.
#[test]
fn validators_voting_far_ahead_raise_the_honest_view_only_when_f_plus_one_do() {
    assert_eq!(honest(&[10, 11, 10, 300], &[1; 4]), 11);
    assert_eq!(honest(&[10, 300, 11, 300], &[1; 4]), 300);
    assert_eq!(honest(&[7], &[1]), 7);
    // Seven validators tolerate two.
    assert_eq!(honest(&[5, 900, 5, 6, 900, 5, 5], &[1; 7]), 6);
    // Sizes that are multiples of 3 (found by review: "more than 1/3" asked one more than
    // f + 1 there): three tolerate none, six tolerate one.
    assert_eq!(honest(&[10, 10, 900], &[1; 3]), 900);
    assert_eq!(honest(&[10, 10, 10, 10, 900, 900], &[1; 6]), 900);
    assert_eq!(honest(&[10, 10, 10, 10, 10, 900], &[1; 6]), 10);
}

/// Counted by stake, not by number (found by review): three minimum-stake validators of a
/// set whose power sits with two large ones are more than f by number but hold far less
/// than 1/3 of the power, so their votes far ahead must not raise the honest view.
#[test]
fn small_validators_voting_far_ahead_do_not_raise_the_honest_view() {
    let powers = [100, 100, 1, 1, 1];
    assert_eq!(honest(&[10, 10, 900, 900, 900], &powers), 10);
    // One large validator ahead with them: 103 of 203 is more than 1/3.
    assert_eq!(honest(&[10, 900, 900, 900, 900], &powers), 900);
    // Votes from indexes the set does not have count for nothing.
    assert_eq!(honest(&[10, 10, 900, 900, 900, 900, 900], &powers), 10);
    // Nothing heard: 0.
    assert_eq!(honest(&[], &powers), 0);
}
