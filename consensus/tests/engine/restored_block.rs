//! After a restart, the block a restored vote names comes back from the node's own store
//! (`Engine::restore_voted`), so a finalization that re-forms from logged votes finalizes
//! it instead of waiting for a block no peer may hold. Nothing else gets in that way: a
//! block no restored vote of this validator names, one of another epoch, one at or below
//! the finalized tip.

use super::*;

fn finalize(signer: usize, b: &Block) -> Message {
    Message::Vote(signed(
        signer,
        vote(b.header.view, VoteKind::Finalize, b.hash()),
    ))
}

/// Validator 2 logged notarize and finalize for A in view 1, then crashed.
fn restarted(a: &Block) -> Engine {
    let log = [
        VoteRecord::Notarized {
            epoch: 0,
            view: 1,
            block: a.hash(),
        },
        VoteRecord::Finalized {
            epoch: 0,
            view: 1,
            block: a.hash(),
        },
    ];
    Engine::new(config(2), &log)
}

#[test]
fn a_restored_voted_block_is_finalized_when_its_certificate_re_forms() {
    let a = block(1, 1);
    for restore in [true, false] {
        let mut engine = restarted(&a);
        if restore {
            assert!(engine.restore_voted(a.clone()));
        }
        let mut actions = engine.handle(Input::Start);
        for signer in [0, 1] {
            actions.extend(send(&mut engine, signer, finalize(signer, &a)));
        }
        if restore {
            assert_eq!(finalized(&actions), vec![a.hash()], "{actions:?}");
        } else {
            // The case the store closes: a quorum of finalize votes, no block, no way on
            // but a peer that holds it.
            assert!(finalized(&actions).is_empty(), "{actions:?}");
            assert!(
                actions
                    .iter()
                    .any(|a| matches!(a, Action::Broadcast(Message::SyncRequest { .. }))),
                "{actions:?}"
            );
        }
    }
}

#[test]
fn only_blocks_its_own_restored_votes_name_are_taken() {
    let a = block(1, 1);
    let mut engine = restarted(&a);
    // Another block of the same view: no vote of this validator names it.
    assert!(!engine.restore_voted(block(1, 2)));
    // A block of a view it did not vote in.
    assert!(!engine.restore_voted(block(2, 1)));
    // A in another epoch: its hash differs, and no vote of this epoch names it.
    let mut other_epoch = a.clone();
    other_epoch.header.epoch = 1;
    assert!(!engine.restore_voted(other_epoch));
    assert!(!engine.holds(&block(1, 2).hash()));
    assert!(engine.restore_voted(a.clone()));
    assert!(engine.holds(&a.hash()));

    // At or below the finalized tip: settled, never restored.
    let mut cfg = config(2);
    cfg.finalized_tip = (1, Hash([9; 32]), 1);
    let log = [VoteRecord::Finalized {
        epoch: 0,
        view: 1,
        block: a.hash(),
    }];
    let mut settled = Engine::new(cfg, &log);
    assert!(!settled.restore_voted(a));
}

/// A power cut between commits: validators A committed X (and keep its certificate), the
/// others B had only logged their finalize votes for X. A ignores votes at or below its tip
/// and B may not nullify X's view, so they meet only through the certificate A re-sends on
/// its timeouts: seeded from A's store after the restart (`seed_finalization`), it brings B
/// to X. Without the seed A re-sends nothing B can use (found by review).
#[test]
fn a_validator_that_committed_before_the_crash_brings_the_others_to_its_tip() {
    let x = block(1, 1);
    let cert = certificate(vote(1, VoteKind::Finalize, x.hash()), &[0, 1, 2]);
    for seed in [true, false] {
        // A: validator 0, X committed before the crash.
        let mut cfg = config(0);
        cfg.finalized_tip = (1, x.hash(), 1);
        let log = [
            VoteRecord::Notarized {
                epoch: 0,
                view: 1,
                block: x.hash(),
            },
            VoteRecord::Finalized {
                epoch: 0,
                view: 1,
                block: x.hash(),
            },
        ];
        let mut a = Engine::new(cfg, &log);
        if seed {
            assert!(a.seed_finalization(cert.clone()));
        }
        a.handle(Input::Start);
        let resent = a.handle(Input::Timeout { view: a.view() });
        let certificates = broadcast_certificates(&resent);
        if !seed {
            assert!(certificates.is_empty(), "{resent:?}");
            continue;
        }
        assert_eq!(certificates, vec![&cert], "{resent:?}");
        // B: validator 2, its finalize vote for X logged, X back from its store.
        let mut b = restarted(&x);
        assert!(b.restore_voted(x.clone()));
        b.handle(Input::Start);
        let actions = send(&mut b, 0, Message::Certificate(cert.clone()));
        assert_eq!(finalized(&actions), vec![x.hash()], "{actions:?}");
    }
}

#[test]
fn only_a_finalization_at_or_above_the_tip_seeds() {
    let x = block(1, 1);
    let mut cfg = config(0);
    cfg.finalized_tip = (1, x.hash(), 3);
    let mut engine = Engine::new(cfg, &[]);
    let below = certificate(vote(2, VoteKind::Finalize, x.hash()), &[0, 1, 2]);
    let notarization = certificate(vote(3, VoteKind::Notarize, x.hash()), &[0, 1, 2]);
    assert!(!engine.seed_finalization(below));
    assert!(!engine.seed_finalization(notarization));
    assert!(engine.seed_finalization(certificate(
        vote(3, VoteKind::Finalize, x.hash()),
        &[0, 1, 2]
    )));
}

/// The seeded finalization is re-sent only until a newer one is heard: at an epoch's start
/// it may be the previous epoch's, and must not hide the newest (found by review).
#[test]
fn a_newer_finalization_replaces_the_seeded_one_on_timeouts() {
    let x = block(1, 1);
    let mut cfg = config(0);
    cfg.finalized_tip = (1, x.hash(), 1);
    let mut engine = Engine::new(cfg, &[]);
    // As an epoch's suffix certificate: a view above those the new epoch starts at.
    let seeded = certificate(vote(9, VoteKind::Finalize, Hash([5; 32])), &[0, 1, 2]);
    assert!(engine.seed_finalization(seeded.clone()));
    engine.handle(Input::Start);
    // A finalization of a later block this engine does not hold yet.
    let y = child(3, 2, x.hash(), 7);
    let newer = certificate(vote(3, VoteKind::Finalize, y.hash()), &[1, 2, 3]);
    send(&mut engine, 1, Message::Certificate(newer.clone()));
    let resent = engine.handle(Input::Timeout {
        view: engine.view(),
    });
    let certificates = broadcast_certificates(&resent);
    assert!(certificates.contains(&&newer), "{resent:?}");
    assert!(!certificates.contains(&&seeded), "{resent:?}");
}

/// The certificates among `actions`' broadcasts (what a timeout re-sends).
fn broadcast_certificates(actions: &[Action]) -> Vec<&Certificate> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast(Message::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}
