//! A Byzantine validator against real `keel run` processes (issue 18): the harness holds
//! validator 3's key, joins the p2p network in its place through `Network::start` with the
//! real genesis and config, and replays each known attack end to end while validators 0..2
//! (a quorum without it) carry load. Raw TCP connections attack the listener before the
//! Noise handshake completes. After each attack the honest nodes must have kept finalizing,
//! agree on every root, have lost no accepted transaction, be healthy, hold none of the
//! harness's forged blocks and have stayed under `HONEST_PEAK_RSS_KIB`.

use crate::common::{finish_load, metric_sum, serial, start_load, Cluster};
use keel_consensus::Message;
use keel_p2p::{
    Inbound, NetConfig, NetMessage, Network, SnapshotMessage, HANDSHAKE_TIMEOUT_MS,
    MAX_PENDING_HANDSHAKES, MAX_PENDING_HANDSHAKES_PER_IP, MAX_PREAUTH_FRAME_BYTES, NOISE_PARAMS,
};
use keel_types::block::tx_root;
use keel_types::limits::MAX_CALLDATA_BYTES;
use keel_types::{
    Address, Authorization, Block, Canonical, Certificate, Hash, Header, SecretKey,
    SignedTransaction, SignedVote, Transaction, TxBody, Vote, VoteKind, U256,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

#[path = "byzantine/flood.rs"]
mod flood;
#[path = "byzantine/plugins.rs"]
mod plugins;
#[path = "byzantine/preauth.rs"]
mod preauth;
#[path = "byzantine/snapshot.rs"]
mod snapshot;
#[path = "byzantine/sync.rs"]
mod sync;

/// The Byzantine validator's index: the last one, so every honest validator dials it and
/// the harness needs no dial loop of its own.
const BYZ: usize = 3;
const HONEST: [usize; 3] = [0, 1, 2];
const VALIDATORS: usize = 4;
/// Views per leader rotation (the engine's leader is `view % validators`).
const ROTATION: u64 = VALIDATORS as u64;
/// Proposals of honest leaders the harness keeps (the bodies its swap attacks reuse).
const KEPT_PROPOSALS: usize = 64;
/// Echoed votes the harness remembers.
const KEPT_VOTED_VIEWS: usize = 4_096;
/// An honest vote seen again after this long (a re-send on timeout) is echoed again.
const ECHO_AGAIN: Duration = Duration::from_millis(500);
/// Sync responses waiting for the test.
const RESPONSE_QUEUE: usize = 64;
/// What an idle devnet validator's peak resident memory stays under (measured: 27-32 MiB
/// idle and under the sync, body-swap and pre-auth attacks, 50-63 MiB under the small flood).
const BASE_RSS_BYTES: usize = 64 * 1024 * 1024;
/// Peak resident memory (VmHWM) an honest validator may reach under any attack here: its
/// base, plus the byte bounds the node sets on what peers can make it hold — the unfinalized
/// block cache, the consensus engine's unfinalized blocks (a second copy of each) and each of
/// its three peers' inbound budget (640 MiB). Measured under the largest admissible proposal
/// flood: 465-489 MiB (it was ~930 MiB before the engine's blocks were bounded in bytes).
const HONEST_PEAK_RSS_KIB: u64 = ((BASE_RSS_BYTES
    + keel_app::chain::MAX_UNFINALIZED_BLOCK_BYTES
    + keel_consensus::MAX_PENDING_BLOCK_BYTES
    + HONEST.len() * keel_p2p::MAX_PEER_INBOUND_BYTES)
    / 1024) as u64;
/// Heights validator 2 falls behind before it comes back to the forgeries, how long that
/// may take, and how often it is tried.
const LAG_HEIGHTS: u64 = 3;
const LAG_TIMEOUT: Duration = Duration::from_secs(20);
const LAG_ATTEMPTS: usize = 3;
/// Heights the honest nodes must finalize during an attack.
const PROGRESS_HEIGHTS: u64 = 5;
/// How long they get for it.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// A refused pre-auth connection must close well before the handshake timeout.
const PROMPT_CLOSE: Duration = Duration::from_millis(2_000);
/// Consensus timeout of the devnets here: the harness's own views time out each rotation.
const TIMEOUT_BASE_MS: u64 = 800;
/// Longest view timeout (a validator re-sends its votes on each).
const TIMEOUT_MAX_MS: u64 = 3_200;

#[derive(Default)]
struct Seen {
    view: u64,
    epoch: u64,
    /// Vote like an honest follower (echo each honest vote once per view and kind), so the
    /// chain goes on with one honest validator down.
    echo: bool,
    voted: BTreeMap<(u64, VoteKind, Hash), Instant>,
    proposals: VecDeque<Block>,
    sync_requests: Vec<(u16, u64)>,
    block_requests: Vec<(u16, Hash)>,
    /// Votes echoed.
    echoed: u64,
    /// Messages received per peer.
    heard: BTreeMap<u16, u64>,
}

impl Seen {
    fn note(&mut self, view: u64, epoch: u64) {
        self.view = self.view.max(view);
        self.epoch = self.epoch.max(epoch);
    }

    /// The harness's copy of an honest vote: every vote any honest validator sends, so it
    /// joins whichever quorum they are forming (a Byzantine validator may sign both a
    /// nullify and a finalize; two honest ones never split into two quorums), again when
    /// they re-send theirs after `ECHO_AGAIN`.
    fn echo_vote(&mut self, vote: &Vote) -> Option<Vote> {
        if !self.echo {
            return None;
        }
        let now = Instant::now();
        let key = (vote.view, vote.kind, vote.block);
        if self
            .voted
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < ECHO_AGAIN)
        {
            return None;
        }
        self.voted.insert(key, now);
        self.echoed += 1;
        while self.voted.len() > KEPT_VOTED_VIEWS {
            self.voted.pop_first();
        }
        Some(*vote)
    }
}

struct Harness {
    net: Network,
    key: SecretKey,
    chain_id: u64,
    genesis_hash: Hash,
    seen: Arc<Mutex<Seen>>,
    responses: Mutex<mpsc::Receiver<(u16, Message)>>,
    /// Snapshot-sync messages from any peer (requests of a syncing node, answers to the
    /// harness's own requests), for a test that serves forgeries.
    snapshots: Mutex<mpsc::Receiver<(u16, SnapshotMessage)>>,
}

/// A finalized chain segment as a sync response carries it.
type Segment = (Vec<Block>, Vec<Header>, Certificate);

impl Harness {
    /// Joins the cluster's network as validator `BYZ` with its own key and the real config.
    fn join(cluster: &Cluster) -> Harness {
        let home = cluster.home(BYZ);
        let key = keel_node::keys::read(&home.join("keys/validator.json")).expect("key");
        let genesis =
            keel_node::genesis::Genesis::load(&home.join("genesis.json")).expect("genesis");
        let p2p = &cluster.configs[BYZ].p2p;
        let config = NetConfig {
            listen: p2p.listen.parse().expect("address"),
            validators: genesis
                .validators
                .iter()
                .map(|v| (v.public_key, v.p2p.clone()))
                .collect(),
            chain_id: genesis.chain_id,
            genesis_hash: genesis.hash(),
            max_frame_bytes: p2p.max_frame_bytes as usize,
            peer_queue_len: p2p.peer_queue_len,
            guest_tenure_ms: keel_p2p::GUEST_TENURE_MS,
        };
        let (net, inbound, mut gossip) = cluster
            .rt
            .block_on(Network::start(config, key.clone()))
            .expect("join the network");
        // Gossip holds its sender's inbound budget until dropped: drop it at once.
        cluster
            .rt
            .spawn(async move { while gossip.recv().await.is_some() {} });
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
        let (snapshot_tx, snapshot_rx) = mpsc::channel(RESPONSE_QUEUE);
        cluster.rt.spawn(receive(
            net.clone(),
            key.clone(),
            seen.clone(),
            inbound,
            (tx, snapshot_tx),
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        while net.peer_count() < HONEST.len() {
            assert!(
                Instant::now() < deadline,
                "honest validators never connected"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Harness {
            net,
            key,
            chain_id: genesis.chain_id,
            genesis_hash: genesis.hash(),
            seen,
            responses: Mutex::new(rx),
            snapshots: Mutex::new(snapshot_rx),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().expect("seen")
    }

    fn send(&self, to: usize, message: Message) {
        self.net
            .send(to as u16, &NetMessage::Consensus(Box::new(message)));
    }

    fn broadcast(&self, message: Message) {
        self.net
            .broadcast(&NetMessage::Consensus(Box::new(message)));
    }

    fn sign(&self, vote: Vote) -> SignedVote {
        sign(&self.key, vote)
    }

    /// The harness's own signed proposal of `block` (its notarize vote in the block's view).
    fn propose(&self, block: Block) -> Message {
        let vote = self.sign(Vote {
            chain_id: self.chain_id,
            epoch: block.header.epoch,
            view: block.header.view,
            kind: VoteKind::Notarize,
            block: block.hash(),
        });
        Message::Propose { block, vote }
    }

    /// Asks validator `peer` for finalized blocks from `from_height` (it serves any
    /// validator) and returns its answer.
    fn fetch(&self, cluster: &Cluster, peer: usize, from_height: u64) -> Option<Segment> {
        let mut responses = self.responses.lock().expect("responses");
        while responses.try_recv().is_ok() {}
        self.send(peer, Message::SyncRequest { from_height });
        cluster.rt.block_on(async {
            let wait = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some((from, message)) = responses.recv().await {
                    if let (
                        true,
                        Message::SyncResponse {
                            blocks,
                            headers,
                            finalization,
                        },
                    ) = (usize::from(from) == peer, message)
                    {
                        return Some((blocks, headers, finalization));
                    }
                }
                None
            });
            wait.await.ok().flatten()
        })
    }

    /// The next `count` views at or after the current one that the harness leads.
    fn own_views(&self, count: usize) -> Vec<u64> {
        let view = self.seen().view;
        (view..)
            .filter(|v| v % ROTATION == BYZ as u64)
            .take(count)
            .collect()
    }

    /// The newest honest proposal with at least `txs` transactions.
    fn honest_proposal(&self, txs: usize) -> Option<Block> {
        self.seen()
            .proposals
            .iter()
            .rev()
            .find(|b| b.transactions.len() >= txs)
            .cloned()
    }

    /// A transaction nobody can pay for, `data` bytes of call data: the body of invented
    /// blocks (its encoding is well-formed, so only the header binding can refuse it).
    fn junk_tx(&self, nonce: u64, data: usize) -> SignedTransaction {
        Transaction {
            chain_id: self.chain_id,
            sender: self.key.public_key().into(),
            nonce,
            gas_limit: 100_000,
            gas_price: 1,
            body: TxBody::Call {
                to: Address::ZERO,
                data: vec![0xab; data],
                value: U256::ZERO,
            },
        }
        .sign(&self.key)
    }

    /// `template`'s header with the harness's own body (tx_root recomputed): a block at the
    /// same height and parent that no quorum ever saw.
    fn invent(&self, template: &Header, salt: u64) -> Block {
        let transactions = vec![self.junk_tx(salt, 32)];
        let mut header = template.clone();
        header.tx_root = tx_root(&transactions);
        header.proposer = self.key.public_key();
        Block {
            header,
            transactions,
        }
    }

    /// Blocks as a leader would propose them in `view`, bodies matching their headers.
    fn own_block(&self, template: &Header, view: u64, height: u64, body: &Body) -> Block {
        let mut header = template.clone();
        header.view = view;
        header.height = height;
        header.proposer = self.key.public_key();
        header.tx_root = body.root;
        header.timestamp_ms = template.timestamp_ms.wrapping_add(view);
        Block {
            header,
            transactions: body.txs.clone(),
        }
    }
}

/// A body and its root, computed once for many headers.
struct Body {
    txs: Vec<SignedTransaction>,
    root: Hash,
}

fn sign(key: &SecretKey, vote: Vote) -> SignedVote {
    SignedVote {
        vote,
        signer: BYZ as u16,
        signature: key.sign(&vote.signing_hash().0),
    }
}

/// Where `receive` hands sync responses and snapshot-sync messages on.
type Forwards = (
    mpsc::Sender<(u16, Message)>,
    mpsc::Sender<(u16, SnapshotMessage)>,
);

/// Everything the honest validators send the harness: it notes views, keeps honest
/// proposals, echoes votes when asked to, records requests and hands sync responses on.
async fn receive(
    net: Network,
    key: SecretKey,
    seen: Arc<Mutex<Seen>>,
    mut inbound: mpsc::Receiver<Inbound>,
    (responses, snapshots): Forwards,
) {
    while let Some(Inbound { from, message, .. }) = inbound.recv().await {
        let message = match message {
            NetMessage::Consensus(message) => message,
            NetMessage::Snapshot(message) => {
                let _ = snapshots.try_send((from, *message));
                continue;
            }
            _ => continue,
        };
        let echo = {
            let mut seen = seen.lock().expect("seen");
            *seen.heard.entry(from).or_insert(0) += 1;
            match &*message {
                Message::Propose { block, vote } => {
                    seen.note(vote.vote.view, vote.vote.epoch);
                    seen.proposals.push_back(block.clone());
                    while seen.proposals.len() > KEPT_PROPOSALS {
                        seen.proposals.pop_front();
                    }
                    seen.echo_vote(&vote.vote)
                }
                Message::Vote(vote) => {
                    seen.note(vote.vote.view, vote.vote.epoch);
                    seen.echo_vote(&vote.vote)
                }
                Message::Certificate(cert) => {
                    seen.note(cert.vote.view, cert.vote.epoch);
                    None
                }
                Message::SyncRequest { from_height } => {
                    seen.sync_requests.push((from, *from_height));
                    None
                }
                Message::BlockRequest(hash) => {
                    seen.block_requests.push((from, *hash));
                    None
                }
                _ => None,
            }
        };
        if let Some(vote) = echo {
            let vote = Message::Vote(sign(&key, vote));
            net.broadcast(&NetMessage::Consensus(Box::new(vote)));
        }
        if matches!(*message, Message::SyncResponse { .. }) {
            let _ = responses.try_send((from, *message));
        }
    }
}

/// A cluster of three honest `keel run` validators and the harness as validator 3.
fn devnet(base_port: u16) -> (Cluster, Harness) {
    let cluster = Cluster::start_without(VALIDATORS, base_port, 200, 4, &[BYZ], |c| {
        c.consensus.timeout_base_ms = TIMEOUT_BASE_MS;
        c.consensus.timeout_max_ms = TIMEOUT_MAX_MS;
    });
    let harness = Harness::join(&cluster);
    (cluster, harness)
}

/// The honest nodes finalize `PROGRESS_HEIGHTS` more blocks within `PROGRESS_TIMEOUT`.
fn keeps_finalizing(cluster: &Cluster, nodes: &[usize]) -> u64 {
    let deadline = Instant::now() + PROGRESS_TIMEOUT;
    let mut low = u64::MAX;
    for &i in nodes {
        // A validator busy with a flood may answer late; one that never does has stopped.
        let height = loop {
            if let Some(h) = cluster.height(i) {
                break h;
            }
            if Instant::now() > deadline {
                cluster.dump_logs();
                panic!("validator {i} does not answer keel_status");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        low = low.min(height);
    }
    cluster.wait_height(nodes, low + PROGRESS_HEIGHTS, PROGRESS_TIMEOUT);
    low + PROGRESS_HEIGHTS
}

/// Whether `nodes` all reach `height` within `timeout`.
fn reaches(cluster: &Cluster, nodes: &[usize], height: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if nodes
            .iter()
            .all(|&i| cluster.height(i).is_some_and(|h| h >= height))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// After an attack: progress, equal roots, health, no forged block, memory under the bound.
fn honest_nodes_unharmed(cluster: &Cluster, forged: &BTreeMap<u64, BTreeSet<String>>) {
    let top = keeps_finalizing(cluster, &HONEST);
    assert!(cluster.check_roots_of(&HONEST) >= top);
    for i in HONEST {
        assert!(cluster.healthy(i), "validator {i} is not healthy");
        for (&height, hashes) in forged {
            let hash = cluster.block_hash(i, height).expect("finalized block");
            assert!(
                !hashes.contains(&hash),
                "validator {i} finalized the harness's forged block {hash} at height {height}"
            );
        }
    }
    assert_eq!(cluster.equivocations(), Vec::<String>::new());
    check_memory(cluster);
}

fn check_memory(cluster: &Cluster) {
    for i in HONEST {
        let peak = cluster.peak_rss_kib(i).expect("VmHWM");
        eprintln!("validator {i}: peak RSS {} MiB", peak / 1024);
        assert!(
            peak <= HONEST_PEAK_RSS_KIB,
            "validator {i} peaked at {peak} KiB, over the bound of {HONEST_PEAK_RSS_KIB} KiB"
        );
    }
}

fn rejected(cluster: &Cluster, i: usize, reason: &str) -> u64 {
    metric_sum(
        &cluster.metrics_text(i),
        "keel_p2p_rejected_total",
        &format!("reason=\"{reason}\""),
    )
}

/// `block` with its body swapped three ways under the unchanged header: a transaction
/// replaced by the harness's own, two signatures exchanged, two transactions reordered.
fn swapped_bodies(harness: &Harness, block: &Block, salt: u64) -> Vec<Block> {
    let mut out = Vec::new();
    let mut replaced = block.clone();
    if let Some(tx) = replaced.transactions.first_mut() {
        *tx = harness.junk_tx(salt, 32);
    } else {
        replaced.transactions.push(harness.junk_tx(salt, 32));
    }
    out.push(replaced);
    if block.transactions.len() >= 2 {
        let mut resigned = block.clone();
        let (a, b) = (
            resigned.transactions[0].signature.clone(),
            resigned.transactions[1].signature.clone(),
        );
        if matches!(
            (&a, &b),
            (Authorization::Ed25519(_), Authorization::Ed25519(_))
        ) && a != b
        {
            resigned.transactions[0].signature = b;
            resigned.transactions[1].signature = a;
            out.push(resigned);
        }
        let mut reordered = block.clone();
        reordered.transactions.swap(0, 1);
        out.push(reordered);
    }
    for b in &out {
        assert_ne!(
            b.compute_tx_root(),
            b.header.tx_root,
            "a swap must break the binding"
        );
    }
    out
}

#[test]
fn byzantine_swapped_bodies_are_dropped_and_the_chain_goes_on() {
    let _guard = serial();
    let (cluster, harness) = devnet(26_010);
    let load = start_load(&cluster, &HONEST, 25, 12, &[0, 1, 2, 3]);
    let before: Vec<u64> = HONEST
        .iter()
        .map(|&i| rejected(&cluster, i, "body_mismatch"))
        .collect();
    let mut sent = [0u64; VALIDATORS];
    let mut swaps = [0u64; 3];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut salt = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let Some(honest) = harness.honest_proposal(2) else {
            continue;
        };
        salt += 1;
        // 1. Proposals in the harness's own views, signed by it: the header binds the real
        //    body, the message carries a swapped one.
        for (k, view) in harness.own_views(2).into_iter().enumerate() {
            let body = Body {
                root: honest.header.tx_root,
                txs: honest.transactions.clone(),
            };
            let own = harness.own_block(&honest.header, view, honest.header.height, &body);
            for (s, swapped) in swapped_bodies(&harness, &own, salt * 10 + k as u64)
                .into_iter()
                .enumerate()
            {
                let message = harness.propose(swapped);
                for i in HONEST {
                    harness.send(i, message.clone());
                    sent[i] += 1;
                }
                swaps[s.min(2)] += 1;
            }
        }
        // 2. An honest leader's real block, body swapped, as an unasked block response.
        for swapped in swapped_bodies(&harness, &honest, salt * 10 + 5) {
            for i in HONEST {
                harness.send(i, Message::BlockResponse(swapped.clone()));
                sent[i] += 1;
            }
        }
        // 3. Answers to block requests, if any came: the requested header, another body.
        let requests = std::mem::take(&mut harness.seen().block_requests);
        for (from, hash) in requests {
            let known = harness
                .seen()
                .proposals
                .iter()
                .find(|b| b.hash() == hash)
                .cloned();
            if let Some(block) = known {
                for swapped in swapped_bodies(&harness, &block, salt * 10 + 7) {
                    harness.send(usize::from(from), Message::BlockResponse(swapped));
                    sent[usize::from(from)] += 1;
                }
            }
        }
    }
    // 4. A real sync response (real blocks, real certificate) with one body swapped.
    let height = cluster.height(0).expect("height");
    let (mut blocks, headers, cert) = harness
        .fetch(&cluster, 0, height.saturating_sub(8).max(1))
        .expect("sync segment");
    let victim = blocks
        .iter()
        .position(|b| !b.transactions.is_empty())
        .unwrap_or(0);
    blocks[victim] = swapped_bodies(&harness, &blocks[victim], 99).remove(0);
    for i in HONEST {
        harness.send(
            i,
            Message::SyncResponse {
                blocks: blocks.clone(),
                headers: headers.clone(),
                finalization: cert.clone(),
            },
        );
        sent[i] += 1;
    }
    eprintln!("body swap: sent {sent:?} (proposal swaps by kind {swaps:?})");
    assert!(
        swaps[1] > 0,
        "no signature swap was sent (no block with two transactions)"
    );
    finish_load(&cluster, load);
    honest_nodes_unharmed(&cluster, &BTreeMap::new());
    for (k, &i) in HONEST.iter().enumerate() {
        let dropped = rejected(&cluster, i, "body_mismatch") - before[k];
        eprintln!(
            "validator {i}: {dropped} of {} swapped bodies dropped",
            sent[i]
        );
        assert_eq!(
            dropped, sent[i],
            "validator {i} must drop every swapped body at the binding check"
        );
    }
}
