//! Catching up across more blocks than one sync response carries: the follow-up request
//! for the rest goes to the responder and to one other member in turn, so a Byzantine
//! validator that answers first (its valid response makes the honest answers to the same
//! request stale) and then ignores the follow-up cannot make the node wait a view timeout
//! for every `MAX_SYNC_BLOCKS` blocks (found by review).

use super::*;
use keel_consensus::MAX_SYNC_BLOCKS;

/// Heights 1..=len on the engine's genesis tip, one view each.
fn chain(len: u64) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for height in 1..=len {
        let parent = blocks.last().map_or(Hash([9; 32]), Block::hash);
        blocks.push(child(height, height, parent, 1_000 + height));
    }
    blocks
}

/// What an honest server answers for `from_height`: up to `MAX_SYNC_BLOCKS` blocks, then
/// the headers up to the certified top.
fn response(chain: &[Block], from_height: u64, cert: &Certificate) -> Message {
    let from = usize::try_from(from_height - 1).expect("small");
    let to = (from + MAX_SYNC_BLOCKS).min(chain.len());
    Message::SyncResponse {
        blocks: chain[from..to].to_vec(),
        headers: chain[to..].iter().map(|b| b.header.clone()).collect(),
        finalization: cert.clone(),
    }
}

fn sync_requests(actions: &[Action]) -> Vec<(Option<u16>, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to,
                message: Message::SyncRequest { from_height },
            } => Some((Some(*to), *from_height)),
            Action::Broadcast(Message::SyncRequest { from_height }) => Some((None, *from_height)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_responder_that_goes_silent_after_its_first_answer_sets_no_pace() {
    const BYZANTINE: u16 = 1;
    let len = 3 * MAX_SYNC_BLOCKS as u64 + 2;
    let blocks = chain(len);
    let top = blocks.last().expect("blocks");
    let cert = certificate(
        vote(top.header.view, VoteKind::Finalize, top.hash()),
        &[1, 2, 3],
    );
    let mut engine = Engine::new(config(0), &[]);
    engine.handle(Input::Start);
    // The Byzantine member answers first, with a valid partial response.
    let mut actions = send(
        &mut engine,
        usize::from(BYZANTINE),
        response(&blocks, 1, &cert),
    );
    let mut answered_by = vec![BYZANTINE];
    let mut second_asked = Vec::new();
    // From then on it answers nothing; each follow-up also asks another member, honest
    // here, whose answer goes on. No timeout ever fires.
    while engine.finalized_tip().0 < len {
        let requests = sync_requests(&actions);
        let next = requests
            .iter()
            .find_map(|&(to, from_height)| to.filter(|&t| t != BYZANTINE).map(|t| (t, from_height)))
            .unwrap_or_else(|| panic!("only the silent responder was asked: {requests:?}"));
        assert_eq!(next.1, engine.finalized_tip().0 + 1, "{requests:?}");
        assert!(
            requests.iter().all(|(to, _)| *to != Some(0)),
            "asked itself: {requests:?}"
        );
        answered_by.push(next.0);
        second_asked.extend(requests.get(1).and_then(|r| r.0));
        actions = send(
            &mut engine,
            usize::from(next.0),
            response(&blocks, next.1, &cert),
        );
        assert!(answered_by.len() <= 4, "no progress: {answered_by:?}");
    }
    assert_eq!(engine.finalized_tip(), (len, top.hash(), top.header.view));
    // An honest responder is asked on; the second member asked beside it varies.
    assert_eq!(answered_by, vec![1, 2, 2, 2]);
    assert!(second_asked.iter().all(|&m| m != 0), "{second_asked:?}");
    let distinct: std::collections::BTreeSet<u16> = second_asked.iter().copied().collect();
    assert!(distinct.len() >= 2, "{second_asked:?}");
}

/// A server ends its response early at its last certificate in the window (or at its byte
/// budget): no headers, fewer than `MAX_SYNC_BLOCKS` blocks. The rest is asked for at once,
/// not after a view timeout (found by review: big blocks synced slower than the chain grew).
#[test]
fn a_response_cut_short_at_a_certificate_is_followed_up() {
    let blocks = chain(30);
    let cert_at = |b: &Block| {
        certificate(
            vote(b.header.view, VoteKind::Finalize, b.hash()),
            &[1, 2, 3],
        )
    };
    let mut engine = Engine::new(config(0), &[]);
    engine.handle(Input::Start);
    // Blocks 1..=10, certified at 10; the server has more (and a certificate at 30).
    let actions = send(
        &mut engine,
        2,
        Message::SyncResponse {
            blocks: blocks[..10].to_vec(),
            headers: Vec::new(),
            finalization: cert_at(&blocks[9]),
        },
    );
    assert_eq!(engine.finalized_tip().0, 10);
    let requests = sync_requests(&actions);
    assert!(
        requests.contains(&(Some(2), 11)) && requests.len() >= 2,
        "{requests:?}"
    );
    let actions = send(&mut engine, 2, response(&blocks, 11, &cert_at(&blocks[29])));
    assert_eq!(engine.finalized_tip().0, 30, "{actions:?}");
}
