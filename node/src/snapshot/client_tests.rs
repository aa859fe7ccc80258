//! The client's waits over a scripted transport: what it takes for an answer, when it stops
//! waiting, and when it gives up on its peers. Time is the script's, not the machine's.

use super::*;
use std::cell::Cell;
use std::collections::VecDeque;

/// Answers delivered at set times; links that change at a set time.
struct Scripted {
    now_ms: u64,
    connected: Vec<u16>,
    /// (at, from, message), in delivery order.
    arrivals: VecDeque<(u64, u16, SnapshotMessage)>,
    /// Every peer's link is 1 until this time, 2 after (`None`: never changes).
    relink_at_ms: Option<u64>,
    /// Every peer's link is 1 for this many `link` calls, 2 after.
    relink_after_calls: Option<usize>,
    link_calls: Cell<usize>,
    sent: Vec<(u16, SnapshotMessage)>,
    closed: bool,
}

impl Scripted {
    fn new(connected: &[u16]) -> Scripted {
        Scripted {
            now_ms: 0,
            connected: connected.to_vec(),
            arrivals: VecDeque::new(),
            relink_at_ms: None,
            relink_after_calls: None,
            link_calls: Cell::new(0),
            sent: Vec::new(),
            closed: false,
        }
    }
}

impl SnapshotTransport for Scripted {
    fn connected(&self) -> Vec<u16> {
        self.connected.clone()
    }

    fn known(&self) -> usize {
        self.connected.len()
    }

    fn link(&self, peer: u16) -> Option<u64> {
        if !self.connected.contains(&peer) {
            return None;
        }
        let calls = self.link_calls.get();
        self.link_calls.set(calls + 1);
        let relinked = self.relink_at_ms.is_some_and(|at| self.now_ms >= at)
            || self.relink_after_calls.is_some_and(|n| calls >= n);
        Some(if relinked { 2 } else { 1 })
    }

    fn send(&mut self, peer: u16, message: &SnapshotMessage) {
        self.sent.push((peer, message.clone()));
    }

    fn recv(
        &mut self,
        timeout_ms: u64,
    ) -> Result<Option<(u16, SnapshotMessage)>, SnapshotSyncError> {
        let until = self.now_ms + timeout_ms;
        match self.arrivals.front() {
            Some((at, _, _)) if *at <= until => {
                let (at, from, message) = self.arrivals.pop_front().expect("front");
                self.now_ms = self.now_ms.max(at);
                Ok(Some((from, message)))
            }
            _ if self.closed => Err(SnapshotSyncError::Closed),
            _ => {
                self.now_ms = until;
                Ok(None)
            }
        }
    }

    fn pause(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn wall_ms(&self) -> u64 {
        self.now_ms
    }
}

fn client(t: &mut Scripted) -> Client<'_> {
    Client::new(t)
}

fn changes(from_epoch: u64) -> SnapshotMessage {
    SnapshotMessage::EpochChanges {
        from_epoch,
        changes: Vec::new(),
    }
}

/// A fresh client's answer from `peer` to a request for the epoch changes from `from_epoch`.
fn ask_changes(t: &mut Scripted, peer: u16, from_epoch: u64) -> Option<SnapshotMessage> {
    client(t)
        .ask(peer, SnapshotMessage::EpochChangesRequest { from_epoch })
        .expect("open")
}

#[test]
fn only_the_asked_peers_answer_to_this_request_is_taken() {
    let mut t = Scripted::new(&[1, 2]);
    t.arrivals.extend([
        // Another peer's answer to the same request.
        (10, 2, changes(3)),
        // The peer's late answer to an earlier request.
        (20, 1, changes(2)),
        (30, 1, changes(3)),
    ]);
    let got = ask_changes(&mut t, 1, 3);
    assert_eq!(got, Some(changes(3)));
    assert_eq!(t.now_ms, 30);
    assert_eq!(
        t.sent,
        vec![(1, SnapshotMessage::EpochChangesRequest { from_epoch: 3 })]
    );
}

#[test]
fn a_silent_peer_is_given_up_at_the_request_timeout() {
    let mut t = Scripted::new(&[1]);
    let got = ask_changes(&mut t, 1, 0);
    assert_eq!(got, None);
    assert_eq!(t.now_ms, SNAPSHOT_REQUEST_TIMEOUT_MS);
}

/// A request whose link closed (a guest link closed when the peer registered this node)
/// is given up at the next link check, not at the request timeout — but an answer already
/// queued is still taken.
#[test]
fn a_request_whose_link_is_gone_is_given_up_at_the_next_link_check() {
    let mut t = Scripted::new(&[1]);
    t.relink_at_ms = Some(50);
    let got = ask_changes(&mut t, 1, 0);
    assert_eq!(got, None);
    assert!(
        t.now_ms <= 2 * LINK_CHECK_MS,
        "gave up after {} ms",
        t.now_ms
    );

    // The link changes right after the request went out; its answer is queued already.
    let mut t = Scripted::new(&[1]);
    t.relink_after_calls = Some(1);
    t.arrivals.push_back((0, 1, changes(0)));
    let got = ask_changes(&mut t, 1, 0);
    assert_eq!(got, Some(changes(0)), "a queued answer is taken first");

    // No link when the request went out: given up at the first check.
    let mut t = Scripted::new(&[2]);
    let got = ask_changes(&mut t, 1, 0);
    assert_eq!(got, None);
    assert_eq!(t.now_ms, LINK_CHECK_MS);
}

/// A peer that let a request time out is asked last and rests at its next strike; one that
/// refused is struck once; an answer clears the mark.
#[test]
fn a_silent_peer_is_asked_last_and_rests() {
    let request = |from_epoch| SnapshotMessage::EpochChangesRequest { from_epoch };
    let mut t = Scripted::new(&[1, 2]);
    let late = SNAPSHOT_REQUEST_TIMEOUT_MS + 10;
    t.arrivals.push_back((late, 1, changes(1)));
    let mut c = client(&mut t);
    assert_eq!(c.ask(1, request(0)).expect("open"), None);
    assert!(c.silent.contains(&1));
    assert_eq!(c.peers_answering_first().expect("peers"), vec![2, 1]);
    let mut strikes = BTreeMap::new();
    c.strike(&mut strikes, 1);
    c.strike(&mut strikes, 2);
    assert_eq!(
        strikes.get(&1),
        Some(&MAX_STRIKES),
        "silence rests the peer"
    );
    assert_eq!(strikes.get(&2), Some(&1), "a refusal is one strike");
    assert_eq!(c.ask(1, request(1)).expect("open"), Some(changes(1)));
    assert!(!c.silent.contains(&1), "an answer clears the mark");
    assert_eq!(c.peers_answering_first().expect("peers"), vec![1, 2]);
}

#[test]
fn waiting_for_peers_ends_when_all_are_dropped_or_the_network_closes() {
    let mut t = Scripted::new(&[1, 2]);
    let mut c = client(&mut t);
    assert_eq!(c.peers().expect("peers"), vec![1, 2]);
    c.drop_peer(1, &"a forged chunk");
    assert_eq!(c.peers().expect("peers"), vec![2]);
    c.drop_peer(2, &"a forged chain");
    assert!(matches!(c.peers(), Err(SnapshotSyncError::AllPeersDropped)));

    // No peer yet, and the network closes: an error, not a spin.
    let mut t = Scripted::new(&[]);
    t.closed = true;
    let mut c = client(&mut t);
    assert!(matches!(c.peers(), Err(SnapshotSyncError::Closed)));
}

/// A genesis of four validators of equal stake (what `empty_power_exceeds_a_third` reads).
fn four_validators() -> Genesis {
    use keel_app::genesis::GenesisValidator;
    Genesis {
        chain_id: 7,
        genesis_time_ms: 0,
        epoch_length: 4,
        expiry_epochs: 0,
        fold_epochs: 0,
        block_gas_limit: 30_000_000,
        min_gas_price: 1,
        plugin_gas: keel_types::policy::PLUGIN_GAS,
        attesters: Vec::new(),
        min_stake: keel_types::validator::DEFAULT_MIN_STAKE,
        max_validators: keel_types::limits::MAX_VALIDATORS,
        unbonding_epochs: keel_types::validator::DEFAULT_UNBONDING_EPOCHS,
        validators: (0..4u8)
            .map(|i| GenesisValidator {
                public_key: keel_types::SecretKey::from_seed([i + 1; 32]).public_key(),
                p2p: format!("127.0.0.1:{}", 1 + u16::from(i)),
                stake: keel_types::validator::DEFAULT_GENESIS_STAKE,
                operator: None,
            })
            .collect(),
        balances: Vec::new(),
    }
}

/// Three peers of four; peer 0 says no epoch has ended, peers 1 and 2 do not answer the
/// first request (lost, or too busy). One empty answer is a quarter of the power, too little
/// to believe; the client asks the silent peers again rather than give up (the sync ended
/// here before), and peer 1's empty answer in the second round makes a half: no boundary
/// yet.
#[test]
fn peers_that_did_not_answer_for_their_epoch_chain_are_asked_again() {
    let genesis = four_validators();
    let mut t = Scripted::new(&[0, 1, 2]);
    let second_round = 10 + 2 * SNAPSHOT_REQUEST_TIMEOUT_MS + CHAIN_RETRY_PAUSE_MS;
    t.arrivals
        .extend([(10, 0, changes(0)), (second_round + 50, 1, changes(0))]);
    let got = client(&mut t).epoch_chain(&genesis, None);
    assert!(
        matches!(got, Err(SnapshotSyncError::NoBoundaryYet)),
        "{got:?}"
    );
    let asked: Vec<u16> = t.sent.iter().map(|(p, _)| *p).collect();
    // Peer 2 is asked again too (a peer that serves a chain outweighs any number of
    // empty answers); peer 0 answered, so it is not.
    assert_eq!(asked, vec![0, 1, 2, 1, 2]);

    // Nobody answers again: the client gives up after its rounds, not before, and never
    // asks a peer that answered.
    let mut t = Scripted::new(&[0, 1, 2]);
    t.arrivals.push_back((10, 0, changes(0)));
    let got = client(&mut t).epoch_chain(&genesis, None);
    assert!(
        matches!(got, Err(SnapshotSyncError::NoEpochChain)),
        "{got:?}"
    );
    let asked: Vec<u16> = t.sent.iter().map(|(p, _)| *p).collect();
    let mut expected = vec![0];
    for _ in 0..CHAIN_ROUNDS {
        expected.extend([1, 2]);
    }
    assert_eq!(asked, expected);
    // The bound: each silent peer's timeout once a round, and the pauses between rounds.
    let rounds = u64::from(CHAIN_ROUNDS);
    assert_eq!(
        t.now_ms,
        10 + rounds * 2 * SNAPSHOT_REQUEST_TIMEOUT_MS + (rounds - 1) * CHAIN_RETRY_PAUSE_MS
    );

    // A refusal (`Unavailable`: a busy server) is not a finished answer either.
    let mut t = Scripted::new(&[0, 1]);
    t.arrivals
        .extend([(10, 0, changes(0)), (20, 1, SnapshotMessage::Unavailable)]);
    t.arrivals
        .push_back((20 + CHAIN_RETRY_PAUSE_MS + 10, 1, changes(0)));
    let got = client(&mut t).epoch_chain(&genesis, None);
    assert!(
        matches!(got, Err(SnapshotSyncError::NoBoundaryYet)),
        "{got:?}"
    );
}

/// Found by review: after a chunk fails its proof the restore rewinds to its last stored
/// leaf, so the chunk asked next starts with the previous chunk's own last entry, not with
/// the entry that chunk stopped before. Checked against it, an honest chunk that stopped
/// before a large entry read as cut short, and a Byzantine peer could time a bad chunk to
/// get an honest server dropped with it. A fill is judged only by the chunk asked right
/// after its last key.
#[test]
fn a_chunks_fill_is_judged_only_by_the_chunk_asked_right_after_it() {
    use keel_types::proof::{snapshot_chunk_filled, MIN_SNAPSHOT_CHUNK_BYTES};
    let budget = MIN_SNAPSHOT_CHUNK_BYTES;
    // Honest: 300 bytes short of the budget, stopped before a 1,000-byte entry; its own
    // last entry is 100 bytes.
    let honest = || Fill {
        peer: 1,
        max_bytes: budget,
        entries: 160,
        bytes: budget - 300,
        first_entry_bytes: 100,
        last_key: Some([7; 32]),
    };
    let next = |first_entry_bytes| Fill {
        peer: 3,
        max_bytes: budget,
        entries: 10,
        bytes: budget,
        first_entry_bytes,
        last_key: Some([9; 32]),
    };
    // Asked right after it: the 1,000-byte entry would not have fit.
    assert!(honest().check(Some([7; 32]), &next(1_000)).is_none());
    // After a rewind the next chunk starts with the honest chunk's own last entry, which
    // would read as fitting: no verdict.
    assert!(!snapshot_chunk_filled(budget, 160, budget - 300, 100));
    assert!(honest().check(Some([6; 32]), &next(100)).is_none());
    assert!(honest().check(None, &next(100)).is_none());
    // Cut short, asked right after it: the next entry would have fit; its server is named.
    let short = Fill {
        bytes: 2_000,
        ..honest()
    };
    let (peer, why) = short
        .check(Some([7; 32]), &next(1_000))
        .expect("underfilled");
    assert_eq!(peer, 1);
    assert!(
        matches!(
            why,
            SnapshotSyncError::UnderfilledChunk {
                entries: 160,
                bytes: 2_000,
                next: 1_000,
                ..
            }
        ),
        "{why}"
    );
    // A chunk at the entry cap is full whatever its bytes.
    let capped = Fill {
        entries: keel_types::proof::MAX_SNAPSHOT_CHUNK_ENTRIES,
        bytes: 2_000,
        ..honest()
    };
    assert!(capped.check(Some([7; 32]), &next(1_000)).is_none());
}

/// A tip block at height 1 (no headers below it) and the boundary header that commits to it.
fn tip_and_boundary() -> (keel_types::Block, keel_types::Header) {
    let header = |height: u64, parent_hash: Hash, parent_receipts_root: Hash| keel_types::Header {
        chain_id: 7,
        height,
        epoch: 0,
        view: height,
        parent_hash,
        proposer: keel_types::SecretKey::from_seed([3; 32]).public_key(),
        timestamp_ms: 1_000 * height,
        tx_root: keel_types::block::tx_root(&[]),
        parent_state_root: Hash::ZERO,
        parent_receipts_root,
        archive_root: Hash::ZERO,
    };
    let tip = keel_types::Block {
        header: header(1, Hash::ZERO, Hash::ZERO),
        transactions: Vec::new(),
    };
    let boundary = header(2, tip.hash(), keel_types::receipt::receipts_root(&[]));
    (tip, boundary)
}

fn tip_answer(block: &keel_types::Block) -> SnapshotMessage {
    SnapshotMessage::Tip {
        block: Box::new(block.clone()),
        receipts: Vec::new(),
        ancestors: Vec::new(),
    }
}

/// Issue 21: one pass over the peers for the tip used to end the sync (the node exited)
/// when every peer refused once. Refusals are asked again in rounds; a tip that does not
/// check drops its peer; only when no peer serves it in `MAX_ROUNDS` rounds is it `None`
/// (the sync's `NoServer`).
#[test]
fn a_tip_every_peer_refuses_at_first_is_asked_again_and_a_false_one_drops_its_peer() {
    let (tip, boundary) = tip_and_boundary();
    let mut wrong = tip.clone();
    wrong.header.timestamp_ms += 1;
    let mut t = Scripted::new(&[1, 2]);
    t.arrivals.extend([
        (1, 1, SnapshotMessage::Unavailable),
        (2, 2, SnapshotMessage::Unavailable),
        // Second round, after the pause: peer 1 sends a tip the boundary does not commit to,
        // peer 2 the right one.
        (RETRY_PAUSE_MS + 10, 1, tip_answer(&wrong)),
        (RETRY_PAUSE_MS + 20, 2, tip_answer(&tip)),
    ]);
    let mut c = client(&mut t);
    let got = c.tip(&boundary, 1).expect("open").expect("a tip");
    assert_eq!(got.0, tip);
    assert_eq!(c.dropped, BTreeSet::from([1]));
    drop(c);
    let asked = t
        .sent
        .iter()
        .filter(|(_, m)| matches!(m, SnapshotMessage::TipRequest { height: 1 }))
        .count();
    assert_eq!(asked, 4, "{:?}", t.sent);

    // Refused in every round: `None` after `MAX_ROUNDS` pauses, each peer asked each round.
    let mut t = Scripted::new(&[1, 2]);
    for round in 0..=u64::from(MAX_ROUNDS) {
        let at = round * (RETRY_PAUSE_MS + 100);
        t.arrivals.extend([
            (at + 1, 1, SnapshotMessage::Unavailable),
            (at + 2, 2, SnapshotMessage::Unavailable),
        ]);
    }
    let got = client(&mut t).tip(&boundary, 1).expect("open");
    assert!(got.is_none());
    assert_eq!(t.sent.len(), 2 * (MAX_ROUNDS as usize + 1));
    assert!(
        t.now_ms >= u64::from(MAX_ROUNDS) * RETRY_PAUSE_MS,
        "{}",
        t.now_ms
    );
}

/// Issue 21: the tip is kept in the restoring store once fetched, so a resumed restore
/// finishes with it without asking (its peers may have pruned the headers below it by
/// then); a kept tip that does not check against the boundary asked for is not used; the
/// finished store forgets it.
#[test]
fn a_kept_tip_is_used_without_asking_and_one_for_another_boundary_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state");
    let restore =
        SnapshotRestore::open(&path, StoreOptions::default(), 1, Hash([9; 32])).expect("open");
    let (tip, boundary) = tip_and_boundary();
    let mut t = Scripted::new(&[1]);
    t.arrivals.push_back((1, 1, tip_answer(&tip)));
    let got = client(&mut t)
        .tip_kept_or_fetched(&restore, &boundary)
        .expect("open")
        .expect("served");
    assert_eq!((got.0, t.sent.len()), (tip.clone(), 1));
    // Kept: asked again (a resumed restore), no peer is asked.
    let mut t = Scripted::new(&[1]);
    let again = client(&mut t)
        .tip_kept_or_fetched(&restore, &boundary)
        .expect("open")
        .expect("kept");
    assert_eq!(again.0, tip);
    assert!(t.sent.is_empty(), "{:?}", t.sent);
    // Another boundary: the kept tip does not check, so it is asked for (nobody answers).
    let mut other = boundary.clone();
    other.parent_hash = Hash([1; 32]);
    let mut t = Scripted::new(&[1]);
    let none = client(&mut t)
        .tip_kept_or_fetched(&restore, &other)
        .expect("open");
    assert!(none.is_none());
    assert_eq!(t.sent.len(), MAX_ROUNDS as usize + 1);
    // Finished: forgotten.
    forget_tip(restore.store(), 1);
    assert!(tip::kept_tip(&restore, &boundary).expect("read").is_none());
}
