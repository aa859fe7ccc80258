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

/// Until a peer answers a request of its kind, a request waits the full timeout; after,
/// four times the slowest recent answer of that kind (at least the minimum), decaying by an
/// eighth per answer, so a silent peer costs seconds, not half a minute. A timeout doubles
/// the next wait and a slow answer lengthens it; a refusal is no measure. A peer that was
/// silent rests at its next strike.
#[test]
fn once_peers_answer_a_silent_one_is_given_up_sooner() {
    let request = |from_epoch| SnapshotMessage::EpochChangesRequest { from_epoch };
    let chunk = SnapshotMessage::ChunkRequest {
        height: 7,
        after: None,
        max_bytes: 1 << 20,
    };
    let mut t = Scripted::new(&[1, 2]);
    let slow_at = 300 + MIN_REQUEST_TIMEOUT_MS + 4_000;
    t.arrivals.extend([
        (300, 1, changes(0)),
        (slow_at, 1, changes(1)),
        (slow_at + 10, 1, changes(2)),
        (slow_at + 20, 1, SnapshotMessage::Unavailable),
    ]);
    let mut c = client(&mut t);
    assert_eq!(c.timeout_ms(&request(0)), SNAPSHOT_REQUEST_TIMEOUT_MS);
    assert_eq!(c.ask(1, request(0)).expect("open"), Some(changes(0)));
    assert_eq!(c.timeout_ms(&request(0)), MIN_REQUEST_TIMEOUT_MS);
    // Epoch pages say nothing of how long a chunk takes.
    assert_eq!(c.timeout_ms(&chunk), SNAPSHOT_REQUEST_TIMEOUT_MS);
    assert_eq!(c.ask(2, request(0)).expect("open"), None);
    assert_eq!(c.t.now_ms(), 300 + MIN_REQUEST_TIMEOUT_MS);
    assert!(c.silent.contains(&2));
    assert_eq!(
        c.timeout_ms(&request(0)),
        2 * MIN_REQUEST_TIMEOUT_MS,
        "doubled"
    );
    // A 4 s answer: the wait becomes 16 s, then decays by an eighth per answer.
    assert_eq!(c.ask(1, request(1)).expect("open"), Some(changes(1)));
    assert_eq!(c.timeout_ms(&request(0)), 4 * 4_000);
    assert_eq!(c.ask(1, request(2)).expect("open"), Some(changes(2)));
    assert_eq!(c.timeout_ms(&request(0)), 4 * (4_000 - 500));
    assert_eq!(
        c.ask(1, request(3)).expect("open"),
        Some(SnapshotMessage::Unavailable)
    );
    assert_eq!(
        c.timeout_ms(&request(0)),
        4 * (4_000 - 500),
        "a refusal is no measure"
    );
    let mut strikes = BTreeMap::new();
    c.strike(&mut strikes, 1);
    c.strike(&mut strikes, 2);
    assert_eq!(strikes.get(&1), Some(&1), "a refusal is one strike");
    assert_eq!(
        strikes.get(&2),
        Some(&MAX_STRIKES),
        "silence rests the peer"
    );
    assert_eq!(c.peers_answering_first().expect("peers"), vec![1, 2]);
}

/// Answers slower than the least wait (a slow link, after fast answers set the estimate)
/// are waited for: a timeout doubles the next wait, so the next peer's 6 s answer is taken,
/// and the estimate then follows it. (With a wait that stayed at 5 s, every such request
/// would time out, every peer rest, and the sync end with no server.)
#[test]
fn answers_slower_than_the_least_wait_are_waited_for() {
    let request = SnapshotMessage::EpochChangesRequest { from_epoch: 0 };
    let mut t = Scripted::new(&[1, 2, 3]);
    let second = 10 + MIN_REQUEST_TIMEOUT_MS;
    t.arrivals.extend([
        (10, 1, changes(0)),
        (10 + 6_000, 2, changes(0)),
        (second + 6_000, 3, changes(0)),
    ]);
    let mut c = client(&mut t);
    assert!(c.ask(1, request.clone()).expect("open").is_some());
    assert_eq!(
        c.ask(2, request.clone()).expect("open"),
        None,
        "5 s: too short"
    );
    assert_eq!(c.ask(3, request.clone()).expect("open"), Some(changes(0)));
    assert_eq!(c.t.now_ms(), second + 6_000);
    assert_eq!(c.timeout_ms(&request), 4 * 6_000);
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
    // Peer 0's answer sets the wait for the others to the least, and peer 1's timeout
    // doubles it for peer 2.
    let second_round = 10 + 3 * MIN_REQUEST_TIMEOUT_MS + CHAIN_RETRY_PAUSE_MS;
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
    // The bound: each silent peer's wait once a round, doubling from the least to the full
    // timeout, and the pauses between rounds.
    let rounds = u64::from(CHAIN_ROUNDS);
    let (mut wait, mut waited) = (MIN_REQUEST_TIMEOUT_MS, 0);
    for _ in 0..rounds * 2 {
        waited += wait;
        wait = (wait * 2).min(SNAPSHOT_REQUEST_TIMEOUT_MS);
    }
    assert_eq!(t.now_ms, 10 + waited + (rounds - 1) * CHAIN_RETRY_PAUSE_MS);

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
