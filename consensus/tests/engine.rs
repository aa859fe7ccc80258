//! Engine-level tests without the simulator: restored vote logs bind the engine, the message
//! decoder rejects every malformed input with a typed error, and Byzantine inputs (forged
//! sync chains, absurd views, malformed votes, floods of proposals) are refused.

use keel_consensus::{
    verify_certificate, Action, CertificateError, Config, Engine, Input, Message, ValidatorSet,
    VoteRecord, MAX_PENDING_BLOCK_BYTES, MAX_PROPOSALS_PER_VIEW, MAX_UNCERTIFIED_PARENTS_PER_VIEW,
};
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
        validators: ValidatorSet::equal(0, keys.iter().map(SecretKey::public_key).collect()),
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

// ---- Byzantine inputs (issue 24) ----

fn vote(view: u64, kind: VoteKind, block: Hash) -> Vote {
    Vote {
        chain_id: CHAIN,
        epoch: 0,
        view,
        kind,
        block,
    }
}

/// A certificate on `vote` signed by `signers` (a genuine quorum when three of the four).
fn certificate(vote: Vote, signers: &[usize]) -> Certificate {
    Certificate {
        vote,
        signers: signers.iter().map(|&s| s as u16).collect(),
        signatures: signers
            .iter()
            .map(|&s| keys()[s].sign(&vote.signing_hash().0))
            .collect(),
    }
}

fn send(engine: &mut Engine, from: usize, message: Message) -> Vec<Action> {
    engine.handle(Input::Message {
        from: from as u16,
        message,
    })
}

fn finalized(actions: &[Action]) -> Vec<Hash> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Finalized { block, .. } => Some(block.hash()),
            _ => None,
        })
        .collect()
}

/// A block of `view` at `height` on `parent`, naming the view's leader as proposer.
fn child(view: u64, height: u64, parent: Hash, salt: u64) -> Block {
    let mut b = block(view, salt);
    b.header.height = height;
    b.header.parent_hash = parent;
    b
}

fn propose(leader: usize, b: &Block) -> Message {
    Message::Propose {
        block: b.clone(),
        vote: signed(leader, vote(b.header.view, VoteKind::Notarize, b.hash())),
    }
}

/// Validator 0 finalizes T (height 1, view 1) the ordinary way: validator 1's proposal,
/// the application's verdict, then notarize and finalize votes from a quorum.
fn engine_with_t_finalized() -> (Engine, Block) {
    let t = block(1, 1);
    let mut engine = Engine::new(config(0), &[]);
    engine.handle(Input::Start);
    let mut actions = send(&mut engine, 1, propose(1, &t));
    assert!(
        actions.iter().any(|a| matches!(a, Action::Verify { .. })),
        "{actions:?}"
    );
    actions.extend(engine.handle(Input::Verified {
        view: 1,
        block: t.hash(),
        valid: true,
    }));
    for kind in [VoteKind::Notarize, VoteKind::Finalize] {
        for signer in [2, 3] {
            let v = signed(signer, vote(1, kind, t.hash()));
            actions.extend(send(&mut engine, signer, Message::Vote(v)));
        }
    }
    assert_eq!(finalized(&actions), vec![t.hash()], "{actions:?}");
    assert_eq!(engine.finalized_tip(), (1, t.hash(), 1));
    (engine, t)
}

/// Issue 24: a sync response must be one chain ending in the certified block. `[X, T]` with
/// T's real finalization certificate (T already final here) used to deliver X, a block no
/// quorum signed; so did other orders that put uncertified blocks above the tip.
#[test]
fn sync_delivers_only_a_chain_ending_in_the_certified_block() {
    let (mut engine, t) = engine_with_t_finalized();
    let cert_t = certificate(vote(1, VoteKind::Finalize, t.hash()), &[0, 1, 2]);
    // X: any block on the tip. H: the real height-2 block, finalized by a quorum elsewhere.
    let x = child(2, 2, t.hash(), 66);
    let x2 = child(3, 3, x.hash(), 67);
    let h = child(2, 2, t.hash(), 2);
    let cert_h = certificate(vote(2, VoteKind::Finalize, h.hash()), &[1, 2, 3]);
    let s = block(1, 99);
    let y = child(2, 2, s.hash(), 5);
    let cert_y = certificate(vote(2, VoteKind::Finalize, y.hash()), &[1, 2, 3]);
    let forged: Vec<(Vec<Block>, Vec<Header>, Certificate)> = vec![
        // The exact response from the issue.
        (vec![x.clone(), t.clone()], vec![], cert_t.clone()),
        (
            vec![x.clone(), x2.clone(), t.clone()],
            vec![],
            cert_t.clone(),
        ),
        (
            vec![x.clone(), t.clone(), t.clone()],
            vec![],
            cert_t.clone(),
        ),
        // Reordered and truncated: the certificate does not name the top.
        (vec![t.clone(), x.clone()], vec![], cert_t.clone()),
        (vec![x.clone()], vec![], cert_t.clone()),
        (vec![x.clone()], vec![t.header.clone()], cert_t.clone()),
        // A stale block after X, then a header the certificate really names: X still sits
        // on the tip and the header still links from T.
        (
            vec![x.clone(), t.clone()],
            vec![h.header.clone()],
            cert_h.clone(),
        ),
        // Even a quorum-certified chain is refused if its stale prefix is not our chain.
        (vec![s.clone(), y.clone()], vec![], cert_y),
    ];
    for (i, (blocks, headers, finalization)) in forged.into_iter().enumerate() {
        let actions = send(
            &mut engine,
            3,
            Message::SyncResponse {
                blocks,
                headers,
                finalization,
            },
        );
        assert!(finalized(&actions).is_empty(), "variant {i}: {actions:?}");
        assert_eq!(engine.finalized_tip(), (1, t.hash(), 1), "variant {i}");
    }
    // H's certificate alone: the engine knows the chain is ahead and says it is syncing.
    send(&mut engine, 3, Message::Certificate(cert_h.clone()));
    assert_eq!(engine.sync_target(), Some(2));
    // The honest response, with our own T as a stale prefix, delivers H alone.
    let actions = send(
        &mut engine,
        3,
        Message::SyncResponse {
            blocks: vec![t.clone(), h.clone()],
            headers: vec![],
            finalization: cert_h,
        },
    );
    assert_eq!(finalized(&actions), vec![h.hash()], "{actions:?}");
    assert_eq!(engine.finalized_tip(), (2, h.hash(), 2));
    assert_eq!(engine.sync_target(), None);
}

/// Issue 24: views come from peers. A proposal, votes and certificates at view u64::MAX, a
/// quorum-certified block at that view becoming the finalized tip, timeouts there, and
/// restarts from the vote log and that tip never panic (`tip.view + 1` used to overflow).
#[test]
fn views_at_u64_max_never_panic_even_across_restarts() {
    const MAX: u64 = u64::MAX;
    let leader = (MAX % 4) as usize;
    let top = block(MAX, 1);
    assert_eq!(top.header.proposer, keys()[leader].public_key());
    let messages = || {
        vec![
            (leader, propose(leader, &top)),
            (
                1,
                Message::Vote(signed(1, vote(MAX, VoteKind::Notarize, top.hash()))),
            ),
            (
                2,
                Message::Vote(signed(2, vote(MAX, VoteKind::Nullify, Hash::ZERO))),
            ),
            (
                1,
                Message::Certificate(certificate(
                    vote(MAX, VoteKind::Nullify, Hash::ZERO),
                    &[1, 2, 3],
                )),
            ),
            (
                1,
                Message::Certificate(certificate(
                    vote(MAX, VoteKind::Notarize, top.hash()),
                    &[1, 2, 3],
                )),
            ),
            (
                1,
                Message::Certificate(certificate(
                    vote(MAX, VoteKind::Finalize, top.hash()),
                    &[1, 2, 3],
                )),
            ),
            (1, Message::BlockResponse(top.clone())),
            (
                1,
                Message::SyncResponse {
                    blocks: vec![top.clone()],
                    headers: vec![],
                    finalization: certificate(
                        vote(MAX, VoteKind::Finalize, top.hash()),
                        &[1, 2, 3],
                    ),
                },
            ),
        ]
    };
    let drive = |engine: &mut Engine, log: &mut Vec<VoteRecord>| {
        let mut actions = engine.handle(Input::Start);
        for (from, message) in messages() {
            actions.extend(send(engine, from, message));
            actions.extend(engine.handle(Input::Timeout {
                view: engine.view(),
            }));
        }
        actions.extend(engine.handle(Input::Timeout { view: MAX }));
        log.extend(actions.iter().filter_map(|a| match a {
            Action::Persist(r) => Some(*r),
            _ => None,
        }));
    };
    let mut log = Vec::new();
    let mut engine = Engine::new(config(0), &[]);
    drive(&mut engine, &mut log);
    // A full quorum signed it, so it is final: at the highest view there is.
    assert_eq!(engine.finalized_tip(), (1, top.hash(), MAX));
    // Restart from the vote log and that tip, twice (every restart used to panic).
    for _ in 0..2 {
        let mut cfg = config(0);
        cfg.finalized_tip = engine.finalized_tip();
        engine = Engine::new(cfg, &log);
        drive(&mut engine, &mut log);
        assert_eq!(engine.view(), MAX);
    }
    // A vote log naming u64::MAX in every record, on a genesis tip.
    let records = [
        VoteRecord::EnteredView {
            epoch: 0,
            view: MAX,
        },
        VoteRecord::Notarized {
            epoch: 0,
            view: MAX,
            block: top.hash(),
        },
        VoteRecord::Nullified {
            epoch: 0,
            view: MAX,
        },
        VoteRecord::Finalized {
            epoch: 0,
            view: MAX,
            block: top.hash(),
        },
    ];
    let mut engine = Engine::new(config(2), &records);
    drive(&mut engine, &mut Vec::new());
    assert_eq!(engine.view(), MAX);
}

#[path = "engine/bounds.rs"]
mod bounds;
#[path = "engine/lost_proposal.rs"]
mod lost_proposal;
#[path = "engine/restored_block.rs"]
mod restored_block;
#[path = "engine/sync_pace.rs"]
mod sync_pace;

/// Leaders: round robin when powers are equal; otherwise each member leads its share of the
/// power, its turns evenly spaced (a flood of minimum-stake members cannot take most turns,
/// and faulty members' turns do not come in runs).
#[test]
fn leaders_follow_voting_power() {
    use keel_consensus::ValidatorSet;
    let keys: Vec<_> = (1..=5u8)
        .map(|i| SecretKey::from_seed([i; 32]).public_key())
        .collect();
    let equal = ValidatorSet::equal(3, keys.clone());
    assert!((0..50u64).all(|v| equal.leader(v) == (v % 5) as u16));
    // Four members with 1,000 and 250 with 1 (a registration flood): the small ones share
    // one turn each in a schedule of 20 + 250... each at least one, so look at the large.
    let weighted = ValidatorSet::weighted(3, keys.clone(), vec![600, 100, 100, 100, 100]);
    let mut led = [0u64; 5];
    let mut run = (0u16, 0u32, 0u32);
    for v in 0..1_000u64 {
        let l = weighted.leader(v);
        led[usize::from(l)] += 1;
        run = if l == run.0 {
            (l, run.1 + 1, run.2.max(run.1 + 1))
        } else {
            (l, 1, run.2.max(1))
        };
    }
    assert_eq!(led[0] * 100 / 1_000, 60, "{led:?}");
    // The small members never lead two views in a row.
    let small_runs = (0..1_000u64)
        .map(|v| weighted.leader(v))
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == w[1] && w[0] != 0)
        .count();
    assert_eq!(small_runs, 0);
    assert!(run.2 <= 3, "longest run {}", run.2);
}
