//! Refusals and bounds: votes that name what they must not, proposals for another proposer,
//! and the per-view and per-byte bounds on what a Byzantine leader can make this node keep.

use super::*;

/// Issue 24: a nullify vote names no block. One that names a block is not counted, and a
/// nullification naming a block does not verify.
#[test]
fn nullify_votes_naming_a_block_are_refused() {
    let junk = Hash([0xee; 32]);
    let mut engine = Engine::new(config(0), &[]);
    engine.handle(Input::Start);
    send(
        &mut engine,
        1,
        Message::Vote(signed(1, vote(1, VoteKind::Nullify, junk))),
    );
    for signer in [2, 3] {
        send(
            &mut engine,
            signer,
            Message::Vote(signed(signer, vote(1, VoteKind::Nullify, Hash::ZERO))),
        );
    }
    assert_eq!(engine.view(), 1, "a nullify naming a block was counted");
    let cert = certificate(vote(1, VoteKind::Nullify, junk), &[1, 2, 3]);
    assert_eq!(
        verify_certificate(CHAIN, &config(0).validators, &cert),
        Err(CertificateError::NullifyNamesBlock(junk))
    );
    send(&mut engine, 1, Message::Certificate(cert));
    assert_eq!(
        engine.view(),
        1,
        "a nullification naming a block was applied"
    );
    // The well-formed vote from validator 1 completes the nullification.
    send(
        &mut engine,
        1,
        Message::Vote(signed(1, vote(1, VoteKind::Nullify, Hash::ZERO))),
    );
    assert_eq!(engine.view(), 2);
}

/// Issue 24: rule PROPOSER. The leader's signed proposal naming another validator as
/// proposer (who would be paid its fees) is not verified or voted for.
#[test]
fn proposal_naming_another_proposer_is_not_voted_for() {
    let mut engine = Engine::new(config(0), &[]);
    engine.handle(Input::Start);
    let mut wrong = block(1, 1);
    wrong.header.proposer = keys()[2].public_key();
    let mut actions = send(&mut engine, 1, propose(1, &wrong));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Verify { .. })),
        "{actions:?}"
    );
    actions.extend(engine.handle(Input::Verified {
        view: 1,
        block: wrong.hash(),
        valid: true,
    }));
    assert!(
        !votes_sent(&actions).iter().any(|v| v.block == wrong.hash()),
        "{actions:?}"
    );
    // The leader's proposal naming itself is still taken.
    let right = block(1, 2);
    let actions = send(&mut engine, 1, propose(1, &right));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Verify { block, .. } if block.hash() == right.hash())),
        "{actions:?}"
    );
}

/// Issue 24: a Byzantine leader signing 10,000 distinct proposals for one view, or spread
/// over the views it leads, or inventing 10,000 ancestors for one, leaves a bounded number
/// of blocks in memory (and the refused ones cost no signature check).
#[test]
fn proposals_kept_per_view_are_bounded() {
    const FLOOD: u64 = 10_000;
    // One view.
    let mut engine = Engine::new(config(0), &[]);
    engine.handle(Input::Start);
    let mut verifies = 0;
    for salt in 0..FLOOD {
        let actions = send(&mut engine, 1, propose(1, &block(1, salt)));
        verifies += actions
            .iter()
            .filter(|a| matches!(a, Action::Verify { .. }))
            .count();
    }
    assert_eq!(verifies, 1, "only the first proposal is verified");
    assert!(engine.retained_blocks() <= MAX_PROPOSALS_PER_VIEW);
    assert!(engine.signatures_verified() <= MAX_PROPOSALS_PER_VIEW as u64);

    // Many views: validator 1 leads views 1, 5, 9, …; those within max_views_ahead (16)
    // of view 1 are 1, 5, 9, 13 and 17.
    let mut engine = Engine::new(config(0), &[]);
    engine.handle(Input::Start);
    for salt in 0..FLOOD {
        let view = 1 + 4 * (salt % 25);
        send(&mut engine, 1, propose(1, &block(view, salt)));
    }
    assert!(
        engine.retained_blocks() <= 5 * MAX_PROPOSALS_PER_VIEW,
        "{} blocks retained",
        engine.retained_blocks()
    );

    // Invented ancestors: the leader's two proposals in view 17 (the second one equivocates)
    // each sit on a chain of 5,000 junk blocks that anyone can send, unsigned, as block
    // responses, top first, their views counting down 16, 15, …, 1 and around again.
    let mut engine = Engine::new(config(0), &[]);
    engine.handle(Input::Start);
    for fork in 0..2 {
        let mut chain = Vec::new();
        let mut parent = Hash([9; 32]);
        let length = FLOOD / 2;
        for i in 0..length {
            let view = 16 - (length - 1 - i) % 16;
            let junk = child(view, 1 + i, parent, fork * FLOOD + i);
            parent = junk.hash();
            chain.push(junk);
        }
        send(
            &mut engine,
            1,
            propose(1, &child(17, length + 1, parent, fork)),
        );
        for junk in chain.into_iter().rev() {
            send(&mut engine, 2, Message::BlockResponse(junk));
        }
    }
    assert!(
        engine.retained_blocks() <= MAX_PROPOSALS_PER_VIEW + 16 * MAX_UNCERTIFIED_PARENTS_PER_VIEW,
        "{} blocks retained",
        engine.retained_blocks()
    );
}

/// A block of about `bytes` (one deploy transaction carrying that much code).
fn heavy(view: u64, height: u64, salt: u64, bytes: usize) -> Block {
    use keel_types::{Env, Sender, Transaction, TxBody, U256};
    let key = SecretKey::from_seed([42; 32]);
    let tx = Transaction {
        chain_id: CHAIN,
        sender: Sender::Agent(key.public_key()),
        nonce: salt,
        gas_limit: 1,
        gas_price: 1,
        body: TxBody::Deploy {
            env: Env::Wasm,
            code: vec![0xab; bytes],
            args: vec![],
            value: U256::ZERO,
        },
    }
    .sign(&key);
    let mut b = child(view, height, Hash([9; 32]), salt);
    b.transactions = vec![tx];
    b
}

/// Found by the process-level Byzantine harness (cli/tests/devnet/byzantine.rs): a leader
/// that signs two large proposals in every view it leads within the window, at far-future
/// heights finality never frees, made every honest engine hold ~930 MiB. The engine's blocks
/// are bounded in bytes; the highest views go first, so an honest proposal for the current
/// view is still kept and verified after the flood.
#[test]
fn pending_blocks_are_bounded_in_bytes_and_the_current_view_still_gets_its_block() {
    const BODY_BYTES: usize = 3 * 1024 * 1024;
    let mut cfg = config(0);
    cfg.max_views_ahead = 256;
    let mut engine = Engine::new(cfg, &[]);
    engine.handle(Input::Start);
    // Validator 1 leads views 1, 5, 9, …: every one of its views after the current one, two
    // proposals each, 3 MiB apiece — 128 blocks, 384 MiB.
    let mut kept_peak = 0;
    for view in (5..=257).step_by(4) {
        for fork in 0..2 {
            let b = heavy(view, 100_000 + view, view * 2 + fork, BODY_BYTES);
            send(&mut engine, 1, propose(1, &b));
            kept_peak = kept_peak.max(engine.pending_block_bytes());
        }
    }
    assert!(
        kept_peak <= MAX_PENDING_BLOCK_BYTES,
        "{kept_peak} bytes of blocks held"
    );
    assert!(
        kept_peak > MAX_PENDING_BLOCK_BYTES / 2,
        "the flood must reach the bound for this test to mean anything ({kept_peak})"
    );
    // The honest proposal of the current view evicts the flood's highest view.
    let honest = heavy(1, 1, 7, BODY_BYTES);
    let actions = send(&mut engine, 1, propose(1, &honest));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Verify { block, .. } if block.hash() == honest.hash())),
        "the current view's proposal is verified ({} actions)",
        actions.len()
    );
    assert!(engine.pending_block_bytes() <= MAX_PENDING_BLOCK_BYTES);
}

/// Found by review of the byte bound: junk in views that were later nullified ranked below
/// every new honest block, so once it filled the budget nothing new was kept and nothing was
/// ever finalized (only finality frees past views). Blocks of past views now go first.
#[test]
fn junk_of_nullified_views_cannot_keep_out_the_next_honest_proposal() {
    const BODY_BYTES: usize = 15 * 1024 * 1024;
    let mut engine = Engine::new(config(0), &[]);
    engine.handle(Input::Start);
    // Validator 3 leads views 3, 7, 11 and 15: two 15 MiB proposals in each (240 MiB),
    // sent while those views are ahead, then every view up to 16 is nullified.
    for view in [3, 7, 11, 15] {
        for fork in 0..2 {
            let b = heavy(view, view, view * 2 + fork, BODY_BYTES);
            send(&mut engine, 3, propose(3, &b));
        }
    }
    for view in 1..=16 {
        for signer in [1, 2, 3] {
            send(
                &mut engine,
                signer,
                Message::Vote(signed(signer, vote(view, VoteKind::Nullify, Hash::ZERO))),
            );
        }
    }
    assert_eq!(engine.view(), 17);
    assert!(engine.pending_block_bytes() <= MAX_PENDING_BLOCK_BYTES);
    // View 17's leader (validator 1) proposes on the tip: the proposal is kept and verified.
    let honest = heavy(17, 1, 99, BODY_BYTES);
    let actions = send(&mut engine, 1, propose(1, &honest));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Verify { block, .. } if block.hash() == honest.hash())),
        "the next honest proposal is verified ({} actions)",
        actions.len()
    );
    assert!(engine.pending_block_bytes() <= MAX_PENDING_BLOCK_BYTES);
}

/// A timeout whose own nullify completes the view's nullification moves the engine to the
/// next view, and the timer armed last must be that view's. It re-armed the timed-out
/// view's timer after the new one's; a driver keeps one timer, so the stale one replaced
/// it, fired, was ignored (not the current view) and nothing armed another: the validator
/// waited in the new view forever and, with one peer silent, so did the chain (found by the
/// full-stack simulator, tests/tests/sim/stack.rs, seed 377).
#[test]
fn a_timeout_that_completes_a_nullification_arms_only_the_next_views_timer() {
    let mut engine = Engine::new(config(0), &[]);
    let _ = engine.handle(Input::Start);
    let view = engine.view();
    for from in [1, 2] {
        let nullify = signed(from, vote(view, VoteKind::Nullify, Hash::ZERO));
        let _ = send(&mut engine, from, Message::Vote(nullify));
    }
    assert_eq!(engine.view(), view, "two nullifies are not a quorum");
    let actions = engine.handle(Input::Timeout { view });
    assert_eq!(
        engine.view(),
        view + 1,
        "its own nullify completed the quorum"
    );
    let timers: Vec<u64> = actions
        .iter()
        .filter_map(|a| match a {
            Action::SetTimer { view, .. } => Some(*view),
            _ => None,
        })
        .collect();
    assert_eq!(timers.last(), Some(&(view + 1)), "timers armed: {timers:?}");
    assert!(
        !timers.contains(&view),
        "the timed-out view re-armed: {timers:?}"
    );
}
