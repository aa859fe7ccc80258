//! A follower that never received the leader's proposal (lost on the wire) must still be
//! able to vote in that view: otherwise one lost message plus one silent validator stalls a
//! 4-validator network until the view times out (found by review while adding adaptive
//! block pacing: simulator seed 697).
//!
//! Rule FETCH: f + 1 notarize votes for one block in the current view mean an honest
//! validator verified it as the leader's signed proposal; a follower without it asks those
//! voters for the block and, once it arrives, treats it as the view's proposal. Fewer votes
//! (f Byzantine validators agreeing on a block of their own) fetch nothing.

use super::*;

fn notarize(signer: usize, b: &Block) -> Message {
    Message::Vote(signed(
        signer,
        vote(b.header.view, VoteKind::Notarize, b.hash()),
    ))
}

fn requests(actions: &[Action]) -> Vec<(Option<u16>, Hash)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to,
                message: Message::BlockRequest(h),
            } => Some((Some(*to), *h)),
            Action::Broadcast(Message::BlockRequest(h)) => Some((None, *h)),
            _ => None,
        })
        .collect()
}

fn verifies(actions: &[Action]) -> Vec<Hash> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Verify { block, .. } => Some(block.hash()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_follower_that_lost_the_proposal_fetches_it_from_its_voters_and_votes() {
    // Validator 2 in view 1 (leader 1); the leader's Propose never arrives.
    let b = block(1, 7);
    let mut engine = Engine::new(config(2), &[]);
    engine.handle(Input::Start);
    // One vote (the leader's alone, or one Byzantine validator's) fetches nothing.
    let actions = send(&mut engine, 1, notarize(1, &b));
    assert!(requests(&actions).is_empty(), "{actions:?}");
    // The second (f + 1 = 2 of 4): ask one voter, not the leader (which may be withholding).
    let actions = send(&mut engine, 0, notarize(0, &b));
    assert_eq!(requests(&actions), vec![(Some(0), b.hash())], "{actions:?}");
    // A vote for another block (validator 3's) does not ask again in this view.
    let actions = send(&mut engine, 3, notarize(3, &block(1, 8)));
    assert!(requests(&actions).is_empty(), "{actions:?}");
    // The block arrives: it is verified as the view's proposal, and this validator votes.
    let actions = send(&mut engine, 0, Message::BlockResponse(b.clone()));
    assert_eq!(verifies(&actions), vec![b.hash()], "{actions:?}");
    let actions = engine.handle(Input::Verified {
        view: 1,
        block: b.hash(),
        valid: true,
    });
    assert!(
        votes_sent(&actions)
            .iter()
            .any(|v| v.view == 1 && v.kind == VoteKind::Notarize && v.block == b.hash()),
        "{actions:?}"
    );
    // Its vote completed the quorum: the view is notarized and this validator moved on.
    assert_eq!(engine.view(), 2);
}

#[test]
fn f_validators_cannot_make_a_follower_fetch_or_verify_their_own_block() {
    // Validator 3 is Byzantine: it builds a block naming leader 1 and votes for it; validator
    // 2 must neither fetch it nor treat it as the view's proposal when it is pushed.
    let forged = block(1, 99);
    let mut engine = Engine::new(config(2), &[]);
    engine.handle(Input::Start);
    let actions = send(&mut engine, 3, notarize(3, &forged));
    assert!(requests(&actions).is_empty(), "{actions:?}");
    let actions = send(&mut engine, 3, Message::BlockResponse(forged.clone()));
    assert!(verifies(&actions).is_empty(), "{actions:?}");
    // Then the leader's real proposal arrives and is the one verified.
    let real = block(1, 7);
    let actions = send(&mut engine, 1, propose(1, &real));
    assert_eq!(verifies(&actions), vec![real.hash()], "{actions:?}");
}
