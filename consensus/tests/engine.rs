//! Engine-level tests without the simulator: restored vote logs bind the engine, and the
//! message decoder rejects every malformed input with a typed error.

use keel_consensus::{Action, Config, Engine, Input, Message, ValidatorSet, VoteRecord};
use keel_types::{
    Block, Canonical, Certificate, Hash, Header, SecretKey, Signature, SignedVote, Vote, VoteKind,
};
use proptest::prelude::*;

const CHAIN: u64 = 7;

fn keys() -> Vec<SecretKey> {
    (0..4u8)
        .map(|i| SecretKey::from_seed([i + 1; 32]))
        .collect()
}

fn config(me: usize) -> Config {
    let keys = keys();
    Config {
        chain_id: CHAIN,
        validators: ValidatorSet {
            epoch: 0,
            keys: keys.iter().map(SecretKey::public_key).collect(),
        },
        me: Some((me as u16, keys[me].clone())),
        finalized_tip: (0, Hash([9; 32]), 0),
        timeout_base_ms: 100,
        timeout_max_ms: 400,
        skip_after_views: 4,
        max_views_ahead: 16,
        epoch_length: u64::MAX,
        epoch_first_height: 1,
    }
}

fn block(view: u64, salt: u64) -> Block {
    Block {
        header: Header {
            chain_id: CHAIN,
            height: 1,
            epoch: 0,
            view,
            parent_hash: Hash([9; 32]),
            proposer: keys()[(view % 4) as usize].public_key(),
            timestamp_ms: salt,
            tx_root: Hash::ZERO,
            parent_state_root: Hash::ZERO,
            parent_receipts_root: Hash::ZERO,
            archive_root: Hash::ZERO,
        },
        transactions: vec![],
    }
}

fn signed(signer: usize, vote: Vote) -> SignedVote {
    SignedVote {
        vote,
        signer: signer as u16,
        signature: keys()[signer].sign(&vote.signing_hash().0),
    }
}

fn votes_sent(actions: &[Action]) -> Vec<Vote> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast(Message::Vote(v))
            | Action::Broadcast(Message::Propose { vote: v, .. }) => Some(v.vote),
            _ => None,
        })
        .collect()
}

/// A validator whose log says it notarized block A in view 1 never notarizes a different
/// block B in view 1 after a restart, and one that nullified view 1 never finalizes it.
#[test]
fn restored_log_binds_the_engine() {
    let a = block(1, 1);
    let b = block(1, 2);
    let log = [
        VoteRecord::Notarized {
            epoch: 0,
            view: 1,
            block: a.hash(),
        },
        VoteRecord::Nullified { epoch: 0, view: 1 },
    ];
    let mut engine = Engine::new(config(2), &log);
    let mut actions = engine.handle(Input::Start);
    // The leader of view 1 (validator 1) proposes B.
    let leader_vote = signed(
        1,
        Vote {
            chain_id: CHAIN,
            epoch: 0,
            view: 1,
            kind: VoteKind::Notarize,
            block: b.hash(),
        },
    );
    actions.extend(engine.handle(Input::Message {
        from: 1,
        message: Message::Propose {
            block: b.clone(),
            vote: leader_vote,
        },
    }));
    actions.extend(engine.handle(Input::Verified {
        view: 1,
        block: b.hash(),
        valid: true,
    }));
    // A notarization of B forms from three other validators' votes.
    for signer in [0, 1, 3] {
        let v = signed(
            signer,
            Vote {
                chain_id: CHAIN,
                epoch: 0,
                view: 1,
                kind: VoteKind::Notarize,
                block: b.hash(),
            },
        );
        actions.extend(engine.handle(Input::Message {
            from: signer as u16,
            message: Message::Vote(v),
        }));
    }
    for vote in votes_sent(&actions) {
        assert!(
            !(vote.view == 1 && vote.kind == VoteKind::Notarize && vote.block == b.hash()),
            "notarized a second block in view 1"
        );
        assert!(
            !(vote.view == 1 && vote.kind == VoteKind::Finalize),
            "finalized a view it had nullified"
        );
    }
    // On a timeout it re-sends its logged vote for view 1 — the very same signed vote
    // (ed25519 is deterministic) — so a certificate lost with peers' memory can re-form.
    let expected = signed(
        2,
        Vote {
            chain_id: CHAIN,
            epoch: 0,
            view: 1,
            kind: VoteKind::Notarize,
            block: a.hash(),
        },
    );
    let timeout_actions = engine.handle(Input::Timeout {
        view: engine.view(),
    });
    assert!(
        timeout_actions.contains(&Action::Broadcast(Message::Vote(expected))),
        "{timeout_actions:?}"
    );
    assert!(timeout_actions
        .iter()
        .all(|a| !matches!(a, Action::Persist(VoteRecord::Finalized { view: 1, .. }))));
}

/// Every vote leaves the engine only after the record that binds it.
#[test]
fn persist_precedes_every_vote() {
    let mut engine = Engine::new(config(1), &[]);
    let actions = engine.handle(Input::Start);
    let Some(Action::BuildProposal {
        view,
        parent,
        height,
        ..
    }) = actions
        .iter()
        .find(|a| matches!(a, Action::BuildProposal { .. }))
        .cloned()
    else {
        panic!("validator 1 leads view 1 and must ask for a proposal: {actions:?}");
    };
    let mut b = block(view, 5);
    b.header.parent_hash = parent;
    b.header.height = height;
    let actions = engine.handle(Input::Proposal {
        view,
        block: b.clone(),
    });
    let persist = actions
        .iter()
        .position(|a| matches!(a, Action::Persist(VoteRecord::Notarized { .. })));
    let send = actions
        .iter()
        .position(|a| matches!(a, Action::Broadcast(Message::Propose { .. })));
    assert!(
        persist.is_some() && send.is_some() && persist < send,
        "{actions:?}"
    );
    let actions = engine.handle(Input::Timeout { view });
    let persist = actions
        .iter()
        .position(|a| matches!(a, Action::Persist(VoteRecord::Nullified { .. })));
    let send = actions.iter().position(
        |a| matches!(a, Action::Broadcast(Message::Vote(v)) if v.vote.kind == VoteKind::Nullify),
    );
    assert!(
        persist.is_some() && send.is_some() && persist < send,
        "{actions:?}"
    );
}

/// A forged certificate (bad signature, too few signers, wrong epoch) moves nothing.
#[test]
fn forged_certificates_are_ignored() {
    let mut engine = Engine::new(config(0), &[]);
    engine.handle(Input::Start);
    let vote = Vote {
        chain_id: CHAIN,
        epoch: 0,
        view: 1,
        kind: VoteKind::Nullify,
        block: Hash::ZERO,
    };
    let sigs: Vec<Signature> = (0..3)
        .map(|i| keys()[i].sign(&vote.signing_hash().0))
        .collect();
    let forged = [
        Certificate {
            vote,
            signers: vec![0, 1, 2],
            signatures: vec![sigs[0], sigs[1], sigs[0]],
        },
        Certificate {
            vote,
            signers: vec![0, 1],
            signatures: vec![sigs[0], sigs[1]],
        },
        Certificate {
            vote: Vote { epoch: 1, ..vote },
            signers: vec![0, 1, 2],
            signatures: sigs.clone(),
        },
    ];
    for cert in forged {
        engine.handle(Input::Message {
            from: 1,
            message: Message::Certificate(cert),
        });
        assert_eq!(engine.view(), 1);
    }
    let real = Certificate {
        vote,
        signers: vec![0, 1, 2],
        signatures: sigs,
    };
    engine.handle(Input::Message {
        from: 1,
        message: Message::Certificate(real),
    });
    assert_eq!(engine.view(), 2);
}

proptest! {
    /// Arbitrary bytes never panic the message decoder; valid messages round-trip and
    /// every strict prefix is rejected.
    #[test]
    fn message_decoder_is_total(bytes in prop::collection::vec(any::<u8>(), 0..512), view in 1u64..100, salt in any::<u64>()) {
        let _ = Message::decode(&bytes);
        let b = block(view, salt);
        let vote = signed(1, Vote { chain_id: CHAIN, epoch: 0, view, kind: VoteKind::Notarize, block: b.hash() });
        for message in [Message::Propose { block: b.clone(), vote }, Message::Vote(vote), Message::BlockRequest(b.hash()), Message::SyncRequest { from_height: salt }] {
            let encoded = message.encode();
            prop_assert_eq!(Message::decode(&encoded), Ok(message.clone()));
            for cut in 0..encoded.len() {
                prop_assert!(Message::decode(&encoded[..cut]).is_err());
            }
        }
    }
}

/// Heights in a sync response come from a peer: a block or header at `u64::MAX` (where the
/// next height would overflow) is refused, never a panic.
#[test]
fn sync_response_with_overflowing_heights_is_refused() {
    let mut engine = Engine::new(config(0), &[]);
    engine.handle(Input::Start);
    let mut top = block(1, 1);
    top.header.height = u64::MAX;
    let mut header = top.header.clone();
    header.parent_hash = top.hash();
    for (blocks, headers) in [
        (vec![top.clone()], vec![]),
        (vec![top.clone()], vec![header]),
    ] {
        // A genuinely valid quorum certificate naming the top, so only the heights are wrong.
        let named = headers.last().map_or_else(|| top.hash(), Header::hash);
        let vote = Vote {
            chain_id: CHAIN,
            epoch: 0,
            view: 1,
            kind: VoteKind::Finalize,
            block: named,
        };
        let signatures = (0..3)
            .map(|i| keys()[i].sign(&vote.signing_hash().0))
            .collect();
        let finalization = Certificate {
            vote,
            signers: vec![0, 1, 2],
            signatures,
        };
        let actions = engine.handle(Input::Message {
            from: 1,
            message: Message::SyncResponse {
                blocks,
                headers,
                finalization,
            },
        });
        assert!(!actions
            .iter()
            .any(|a| matches!(a, Action::Finalized { .. })));
        assert_eq!(engine.finalized_tip().0, 0);
    }
}
