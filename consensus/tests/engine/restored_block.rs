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
