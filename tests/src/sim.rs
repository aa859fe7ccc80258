//! A deterministic cluster simulator for the consensus engine: one seeded RNG drives message
//! delay, loss, duplication and reordering, partitions, crashes (between and inside action
//! batches) and restarts from the durable vote log, and Byzantine validators. The same seed
//! replays the same run exactly: no wall clock, threads or hash-ordered collections.

mod audit;
mod byzantine;
mod faults;

pub use audit::{memory_bound_broken, MAX_BLOCKS_PER_VIEW, MAX_KEPT_PROPOSALS_PER_VIEW};

use keel_consensus::{
    Action, Config, Engine, Input, Message, Retained, ValidatorSet, VoteRecord, MAX_SYNC_BLOCKS,
    MAX_SYNC_HEADERS,
};
use keel_types::{
    Block, Certificate, Hash, Header, PublicKey, SecretKey, SignedVote, Vote, VoteKind,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

pub const CHAIN_ID: u64 = 7;
/// A crashed process restarts within this long (ms): liveness is owed only after it is back.
pub const MAX_RESTART_MS: u64 = 2_000;

/// How a validator misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Honest,
    /// Never sends anything.
    Silent,
    /// As leader, proposes two different blocks to the two halves of the cluster.
    EquivocatingLeader,
    /// Sends every notarize vote also for a conflicting block, and nullifies views it
    /// finalizes, to different halves.
    DoubleVoter,
    /// Two instances share this key and vote log-free of each other (Twins).
    Twins,
    /// Votes honestly, but on each block it finalizes with a certificate T, sends every
    /// peer the sync response `[X, T]` with T's real certificate, X an invented block on T
    /// (issue 24: such a response used to finalize X at peers whose tip was T).
    ForgedSync,
    /// Runs no engine: records what it receives in bounded pools and sends, per recipient,
    /// messages a seeded RNG builds from them with its own keys (replays, re-signed and
    /// mutated votes, proposals, certificates and sync responses, equivocations, extreme
    /// values). See `sim/byzantine.rs`.
    Byzantine,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub n: usize,
    pub seed: u64,
    pub faults: Vec<Fault>,
    /// Simulated milliseconds to run.
    pub duration_ms: u64,
    /// Message delay range (ms); jitter reorders messages.
    pub delay_ms: (u64, u64),
    pub loss: f64,
    pub duplicate: f64,
    /// Partitions before this time split the cluster in two random halves, healing at it.
    pub partition_until_ms: u64,
    /// Honest validators crash at random with this probability per action executed
    /// (a crash point inside the vote path), until `faults_until_ms`.
    pub crash_per_action: f64,
    pub faults_until_ms: u64,
    /// One honest validator is taken offline for this window (catch-up).
    pub offline: Option<(usize, u64, u64)>,
    pub timeout_base_ms: u64,
    /// Crash process `.0` just before it carries out its `.1`-th action (0-based): one
    /// exact crash point in the vote path, for the systematic crash-point test.
    pub crash_at_action: Option<(usize, u64)>,
    /// The validators on one side of the partition; `None` picks a random side.
    pub partition_side: Option<Vec<u16>>,
    /// Blocks per epoch (`u64::MAX`: one epoch).
    pub epoch_length: u64,
    /// Each new epoch's set replaces the last validator's key with a fresh one.
    pub rotate_keys: bool,
    /// Before this time the network drops every finalize vote and finalization certificate,
    /// so long chains are finalized only through a later descendant's certificate.
    pub drop_finalize_until_ms: u64,
    /// `Fault::Byzantine` processes step this many times as often as by default (a flood).
    pub byzantine_rate: u64,
    /// Each epoch's validators get seeded unequal voting powers (a stake change at every
    /// epoch boundary), the faulty together as much as the rule allows: just under 1/3.
    pub weighted: bool,
}

impl Scenario {
    pub fn new(n: usize, seed: u64) -> Scenario {
        Scenario {
            n,
            seed,
            faults: vec![Fault::Honest; n],
            duration_ms: 20_000,
            delay_ms: (5, 40),
            loss: 0.0,
            duplicate: 0.0,
            partition_until_ms: 0,
            crash_per_action: 0.0,
            faults_until_ms: 0,
            offline: None,
            timeout_base_ms: 300,
            crash_at_action: None,
            partition_side: None,
            epoch_length: u64::MAX,
            rotate_keys: false,
            drop_finalize_until_ms: 0,
            byzantine_rate: 1,
            weighted: false,
        }
    }
}

#[derive(Debug)]
enum Event {
    Deliver {
        to: usize,
        from: u16,
        message: Box<Message>,
    },
    Timer {
        node: usize,
        incarnation: u64,
        view: u64,
    },
    Restart {
        node: usize,
    },
    GoOffline {
        node: usize,
    },
    /// A `Fault::Byzantine` process acts.
    ByzantineStep {
        node: usize,
    },
}

/// One simulated process (a Twin pair is two of these with one key index).
struct Node {
    index: u16,
    key: SecretKey,
    fault: Fault,
    engine: Option<Engine>,
    durable: Vec<VoteRecord>,
    incarnation: u64,
    /// The application's finalized chain (survives crashes, like the node's store).
    chain: Vec<(Block, Option<Certificate>)>,
    offline: bool,
    actions_executed: u64,
    /// The epoch this process orders and its first height (application state: survives
    /// crashes with the chain).
    epoch: u64,
    epoch_first: u64,
    /// Per ended epoch: the suffix headers and certificate that finalized its last block,
    /// when it was finalized through suffix blocks (application state, served in sync).
    epoch_proofs: BTreeMap<u64, (Vec<Header>, Certificate)>,
    /// `Fault::Byzantine`'s state (instead of an engine).
    adversary: Option<Box<byzantine::Adversary>>,
}

/// What a run produced, for assertions and measurements.
#[derive(Debug, Default)]
pub struct Report {
    /// Finalized block hashes per honest process, by height.
    pub chains: BTreeMap<usize, Vec<Hash>>,
    /// Honest chain lengths at the time faults stopped.
    pub heights_at_heal: BTreeMap<usize, usize>,
    pub violations: Vec<String>,
    pub signatures_verified: u64,
    pub finalized_blocks: u64,
    pub crashes: u64,
    /// Each process's view at the end (`None` if crashed or offline then).
    pub final_views: BTreeMap<usize, Option<u64>>,
    /// Each live process's summary of its current and previous view.
    pub final_states: Vec<String>,
    /// The epoch of each honest process's last finalized block.
    pub epochs: BTreeMap<usize, u64>,
    /// Headers served in sync responses (blocks linked to a later certificate).
    pub sync_headers_served: u64,
    /// Forged sync responses sent by `Fault::ForgedSync` validators.
    pub forged_sync_responses: u64,
    /// Messages `Fault::Byzantine` processes sent (each recipient counts once).
    pub byzantine_messages: u64,
    /// The most any honest engine held at any sample (field by field).
    pub peak_retained: Retained,
    /// Blocks on honest chains whose finality certificate the audit checked.
    pub certified_blocks_checked: u64,
    /// Distinct certificates honest processes sent, each checked against its epoch's keys.
    pub sent_certificates_checked: u64,
}

#[allow(missing_debug_implementations)] // holds engines and an RNG; the Report is what is printed
pub struct Sim {
    s: Scenario,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    nodes: Vec<Node>,
    genesis: Hash,
    partition: BTreeSet<u16>,
    /// Every vote an honest key ever signed and sent: (signer, epoch, view, kind) → blocks.
    sent_votes: BTreeMap<(u16, u64, u64, VoteKind), BTreeSet<Hash>>,
    report: Report,
    /// Certificates honest processes sent that the audit already checked (by signed message
    /// and signers), and the public keys of each epoch it checked them against.
    audited_certificates: BTreeSet<(Hash, Vec<u16>)>,
    audit_keys: BTreeMap<u64, ValidatorSet>,
    /// Per honest process: (height, time finalized) for latency measurement.
    pub finalized_at: BTreeMap<(usize, u64), u64>,
    /// Time each block was proposed.
    pub proposed_at: BTreeMap<Hash, u64>,
}

fn genesis_hash() -> Hash {
    Hash::digest(keel_types::Domain::Header, b"keel simulation genesis")
}

impl Sim {
    pub fn new(s: Scenario) -> Sim {
        let keys: Vec<SecretKey> = (0..s.n).map(|i| key_for(&s, 0, i)).collect();
        let mut nodes = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let copies = if s.faults[i] == Fault::Twins { 2 } else { 1 };
            for _ in 0..copies {
                nodes.push(Node {
                    index: i as u16,
                    key: key.clone(),
                    fault: s.faults[i],
                    engine: None,
                    durable: Vec::new(),
                    incarnation: 0,
                    chain: Vec::new(),
                    offline: s.faults[i] == Fault::Silent,
                    actions_executed: 0,
                    epoch: 0,
                    epoch_first: 1,
                    epoch_proofs: BTreeMap::new(),
                    adversary: None,
                });
            }
        }
        let rng = ChaCha8Rng::seed_from_u64(s.seed);
        let mut sim = Sim {
            s,
            rng,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            genesis: genesis_hash(),
            partition: BTreeSet::new(),
            sent_votes: BTreeMap::new(),
            report: Report::default(),
            audited_certificates: BTreeSet::new(),
            audit_keys: BTreeMap::new(),
            finalized_at: BTreeMap::new(),
            proposed_at: BTreeMap::new(),
        };
        if let Some(side) = sim.s.partition_side.clone() {
            sim.partition = side.into_iter().collect();
        } else if sim.s.partition_until_ms > 0 {
            for i in 0..sim.s.n as u16 {
                if sim.rng.gen_bool(0.5) {
                    sim.partition.insert(i);
                }
            }
        }
        sim
    }

    fn config(&self, node: usize) -> Config {
        let n = &self.nodes[node];
        let tip = n.chain.last().map_or((0, self.genesis, 0), |(b, _)| {
            (b.header.height, b.hash(), b.header.view)
        });
        Config {
            chain_id: CHAIN_ID,
            validators: set_for(&self.s, n.epoch),
            epoch_length: self.s.epoch_length,
            epoch_first_height: n.epoch_first,
            me: Some((n.index, n.key.clone())),
            finalized_tip: tip,
            timeout_base_ms: self.s.timeout_base_ms,
            // Backoff capped at 4× base: a long cap only delays recovery after the network
            // heals (seed 326 waited out a 4.8 s timer with a 16× cap).
            timeout_max_ms: self.s.timeout_base_ms * 4,
            skip_after_views: self.s.n as u64,
            max_views_ahead: 64,
        }
    }

    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    fn honest(&self, node: usize) -> bool {
        self.nodes[node].fault == Fault::Honest
    }

    fn start(&mut self, node: usize) {
        if self.nodes[node].fault == Fault::Byzantine {
            self.start_adversary(node);
            return;
        }
        let engine = Engine::new(self.config(node), &self.nodes[node].durable);
        self.nodes[node].engine = Some(engine);
        self.nodes[node].incarnation += 1;
        self.feed(node, Input::Start);
    }

    fn crash(&mut self, node: usize) {
        self.nodes[node].engine = None;
        self.report.crashes += 1;
        let back = self.now + self.rng.gen_range(50..MAX_RESTART_MS);
        self.push(back, Event::Restart { node });
    }

    /// Runs the scenario and checks safety (no conflicting finalization, honest chains are
    /// prefixes of each other, no honest equivocation) and liveness (progress after heal).
    pub fn run(self) -> Report {
        self.run_keep().1
    }

    /// Runs, returning the simulator too (for its timing records) with the report.
    pub fn run_keep(mut self) -> (Sim, Report) {
        for node in 0..self.nodes.len() {
            if !self.nodes[node].offline {
                self.start(node);
            }
        }
        if let Some((node, from, until)) = self.s.offline {
            self.push(from, Event::GoOffline { node });
            self.push(until, Event::Restart { node });
        }
        let heal = self
            .s
            .partition_until_ms
            .max(self.s.faults_until_ms)
            .max(self.s.offline.map_or(0, |o| o.2));
        let mut healed = false;
        while let Some((&(at, seq), _)) = self.queue.iter().next() {
            if at > self.s.duration_ms {
                break;
            }
            let event = self.queue.remove(&(at, seq)).expect("present");
            self.now = at;
            if !healed && at >= heal {
                healed = true;
                self.partition.clear();
                for (i, n) in self.nodes.iter().enumerate() {
                    if n.fault == Fault::Honest {
                        self.report.heights_at_heal.insert(i, n.chain.len());
                    }
                }
            }
            match event {
                Event::Deliver { to, from, message } => {
                    if self.nodes[to].engine.is_some() {
                        self.feed(
                            to,
                            Input::Message {
                                from,
                                message: *message,
                            },
                        );
                        self.sample_retained(to, from);
                    } else if self.nodes[to].adversary.is_some() {
                        self.adversary_receive(to, from, *message);
                    }
                }
                Event::Timer {
                    node,
                    incarnation,
                    view,
                } => {
                    if self.nodes[node].engine.is_some()
                        && self.nodes[node].incarnation == incarnation
                    {
                        self.feed(node, Input::Timeout { view });
                    }
                }
                Event::GoOffline { node } => {
                    self.nodes[node].engine = None;
                    self.nodes[node].offline = true;
                }
                Event::ByzantineStep { node } => self.adversary_step(node),
                Event::Restart { node } => {
                    self.nodes[node].offline = false;
                    if self.nodes[node].engine.is_none() {
                        self.start(node);
                    }
                }
            }
        }
        self.check();
        let report = std::mem::take(&mut self.report);
        (self, report)
    }

    fn check(&mut self) {
        self.audit_certified();
        let mut by_height: BTreeMap<u64, (Hash, usize)> = BTreeMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.fault != Fault::Honest {
                continue;
            }
            let hashes: Vec<Hash> = node.chain.iter().map(|(b, _)| b.hash()).collect();
            if node
                .chain
                .windows(2)
                .any(|w| w[1].0.header.epoch < w[0].0.header.epoch)
            {
                self.report
                    .violations
                    .push(format!("EPOCH: validator {i}'s chain goes back an epoch"));
            }
            // Epochs are exactly `epoch_length` blocks: height h (from 1) is in (h − 1) / L.
            if let Some((b, _)) = node
                .chain
                .iter()
                .find(|(b, _)| b.header.epoch != (b.header.height - 1) / self.s.epoch_length)
            {
                self.report.violations.push(format!(
                    "EPOCH: validator {i} has height {} in epoch {}",
                    b.header.height, b.header.epoch
                ));
            }
            self.report
                .epochs
                .insert(i, node.chain.last().map_or(0, |(b, _)| b.header.epoch));
            for (b, _) in &node.chain {
                match by_height.get(&b.header.height) {
                    Some((h, other)) if *h != b.hash() => self.report.violations.push(format!(
                        "SAFETY: validators {other} and {i} finalized different blocks at height {}",
                        b.header.height
                    )),
                    Some(_) => {}
                    None => {
                        by_height.insert(b.header.height, (b.hash(), i));
                    }
                }
            }
            self.report.chains.insert(i, hashes);
        }
        for ((signer, epoch, view, kind), blocks) in &self.sent_votes {
            if self.s.faults[usize::from(*signer)] != Fault::Honest {
                continue;
            }
            if blocks.len() > 1 {
                self.report.violations.push(format!(
                    "EQUIVOCATION: honest {signer} signed {kind:?} for {} blocks in view {view}",
                    blocks.len()
                ));
            }
            if *kind == VoteKind::Nullify
                && self
                    .sent_votes
                    .contains_key(&(*signer, *epoch, *view, VoteKind::Finalize))
            {
                self.report.violations.push(format!(
                    "EQUIVOCATION: honest {signer} signed nullify and finalize in view {view}"
                ));
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            self.report
                .final_views
                .insert(i, node.engine.as_ref().map(Engine::view));
            if let Some(e) = &node.engine {
                for v in e.view().saturating_sub(2)..=e.view() {
                    self.report
                        .final_states
                        .push(format!("p{i} {}", e.describe_view(v)));
                }
            }
            if let Some(engine) = &node.engine {
                self.report.signatures_verified += engine.signatures_verified();
            }
            if node.fault == Fault::Honest {
                self.report.finalized_blocks =
                    self.report.finalized_blocks.max(node.chain.len() as u64);
                let _ = i;
            }
        }
    }

    fn delay(&mut self) -> u64 {
        let (lo, hi) = self.s.delay_ms;
        if lo >= hi {
            lo
        } else {
            self.rng.gen_range(lo..=hi)
        }
    }

    fn send(&mut self, from_node: usize, to_index: u16, message: Message) {
        let from = self.nodes[from_node].index;
        let is_finalize = match &message {
            Message::Vote(v) => v.vote.kind == VoteKind::Finalize,
            Message::Certificate(c) => c.vote.kind == VoteKind::Finalize,
            _ => false,
        };
        if is_finalize && self.now < self.s.drop_finalize_until_ms {
            return;
        }
        if self.s.partition_until_ms > self.now
            && self.partition.contains(&from) != self.partition.contains(&to_index)
        {
            return;
        }
        if self.s.loss > 0.0
            && self.now < self.s.faults_until_ms.max(self.s.partition_until_ms)
            && self.rng.gen_bool(self.s.loss)
        {
            return;
        }
        let copies = if self.s.duplicate > 0.0 && self.rng.gen_bool(self.s.duplicate) {
            2
        } else {
            1
        };
        for to in 0..self.nodes.len() {
            if self.nodes[to].index != to_index || to == from_node {
                continue;
            }
            for _ in 0..copies {
                let at = self.now + self.delay();
                self.push(
                    at,
                    Event::Deliver {
                        to,
                        from,
                        message: Box::new(message.clone()),
                    },
                );
            }
        }
    }

    fn broadcast(&mut self, from_node: usize, message: &Message) {
        for to in 0..self.s.n as u16 {
            if to != self.nodes[from_node].index || self.nodes[from_node].fault == Fault::Twins {
                self.send(from_node, to, message.clone());
            }
        }
    }

    fn note_vote(&mut self, node: usize, vote: &SignedVote) {
        if self.honest(node) {
            self.sent_votes
                .entry((vote.signer, vote.vote.epoch, vote.vote.view, vote.vote.kind))
                .or_default()
                .insert(vote.vote.block);
        }
    }

    fn sign(&self, node: usize, vote: Vote) -> SignedVote {
        let n = &self.nodes[node];
        SignedVote {
            vote,
            signer: n.index,
            signature: n.key.sign(&vote.signing_hash().0),
        }
    }

    fn feed(&mut self, node: usize, input: Input) {
        let mut inputs = vec![input];
        while let Some(input) = inputs.pop() {
            let Some(engine) = self.nodes[node].engine.as_mut() else {
                return;
            };
            let actions = engine.handle(input);
            for action in actions {
                // A crash point: the process dies before carrying out this action.
                let count = self.nodes[node].actions_executed;
                self.nodes[node].actions_executed += 1;
                if self.s.crash_at_action == Some((node, count)) {
                    self.crash(node);
                    return;
                }
                if self.honest(node)
                    && self.now < self.s.faults_until_ms
                    && self.s.crash_per_action > 0.0
                    && self.rng.gen_bool(self.s.crash_per_action)
                {
                    self.crash(node);
                    return;
                }
                self.execute(node, action, &mut inputs);
            }
        }
    }

    fn execute(&mut self, node: usize, action: Action, inputs: &mut Vec<Input>) {
        match action {
            Action::Persist(record) => self.nodes[node].durable.push(record),
            Action::Broadcast(message) => {
                self.audit_sent(node, &message);
                self.byzantine_broadcast(node, message);
            }
            Action::Send { to, message } => {
                self.audit_sent(node, &message);
                self.send(node, to, message);
            }
            Action::SetTimer { view, after_ms } => {
                let incarnation = self.nodes[node].incarnation;
                self.push(
                    self.now + after_ms,
                    Event::Timer {
                        node,
                        incarnation,
                        view,
                    },
                );
            }
            Action::BuildProposal {
                view,
                parent,
                height,
                epoch,
                empty: _,
            } => {
                // Simulated blocks carry no transactions, so suffix blocks need no special case.
                let mut block = self.make_block(node, view, parent, height, 0);
                block.header.epoch = epoch;
                self.proposed_at.entry(block.hash()).or_insert(self.now);
                inputs.push(Input::Proposal { view, block });
            }
            Action::Verify { view, block } => {
                let valid = block.header.chain_id == CHAIN_ID
                    && block.compute_tx_root() == block.header.tx_root;
                inputs.push(Input::Verified {
                    view,
                    block: block.hash(),
                    valid,
                });
            }
            Action::Finalized { block, certificate } => {
                let n = &mut self.nodes[node];
                let (expect_height, expect_parent) = n
                    .chain
                    .last()
                    .map_or((1, self.genesis), |(b, _)| (b.header.height + 1, b.hash()));
                if block.header.height != expect_height || block.header.parent_hash != expect_parent
                {
                    self.report.violations.push(format!(
                        "DELIVERY: process {node} got height {} (parent {}) after {}",
                        block.header.height,
                        block.header.parent_hash,
                        expect_height - 1
                    ));
                }
                self.finalized_at
                    .insert((node, block.header.height), self.now);
                n.chain.push((block.clone(), certificate.clone()));
                if let (Fault::ForgedSync, Some(cert)) = (self.nodes[node].fault, certificate) {
                    self.forge_sync(node, block, cert);
                }
            }
            Action::EpochEnded { epoch, tip, suffix } => {
                let index = self.nodes[node].index as usize;
                let next = key_for(&self.s, epoch + 1, index);
                let n = &mut self.nodes[node];
                if let Some(proof) = suffix {
                    n.epoch_proofs.insert(epoch, proof);
                }
                n.epoch = epoch + 1;
                n.epoch_first = tip.0 + 1;
                n.key = next;
                self.start(node);
            }
            Action::ServeSync { to, from_height } => {
                if let Some(message) = self.sync_response(node, from_height) {
                    if let Message::SyncResponse { headers, .. } = &message {
                        self.report.sync_headers_served += headers.len() as u64;
                    }
                    self.audit_sent(node, &message);
                    self.send(node, to, message);
                }
            }
        }
    }

    /// Serves up to `MAX_SYNC_BLOCKS` finalized blocks from `from_height` within one epoch,
    /// plus the headers after them up to the next block that has its own finalization
    /// certificate (at most `MAX_SYNC_HEADERS`).
    fn sync_response(&self, node: usize, from_height: u64) -> Option<Message> {
        let chain = &self.nodes[node].chain;
        let start = usize::try_from(from_height.checked_sub(1)?).ok()?;
        let rest = chain.get(start..)?;
        // One epoch per response: the certificate must verify against the requester's set.
        let epoch = rest.first()?.0.header.epoch;
        let same_epoch = rest
            .iter()
            .take_while(|(b, _)| b.header.epoch == epoch)
            .count();
        let rest = &rest[..same_epoch.min(MAX_SYNC_BLOCKS + MAX_SYNC_HEADERS)];
        let blocks = &rest[..rest.len().min(MAX_SYNC_BLOCKS)];
        // 1. End on the last block in the window that has its own certificate.
        if let Some(top) = blocks.iter().rposition(|(_, c)| c.is_some()) {
            return Some(Message::SyncResponse {
                blocks: rest[..=top].iter().map(|(b, _)| b.clone()).collect(),
                headers: vec![],
                finalization: rest[top].1.clone()?,
            });
        }
        // 2. Link the window by headers to the next certified block of the epoch, or, at the
        //    epoch's end, to the suffix proof of its last block.
        let (mut headers, finalization) = match rest.iter().position(|(_, c)| c.is_some()) {
            Some(top) => (
                rest[blocks.len()..=top]
                    .iter()
                    .map(|(b, _)| b.header.clone())
                    .collect::<Vec<_>>(),
                rest[top].1.clone()?,
            ),
            None => {
                let (suffix, cert) = self.nodes[node].epoch_proofs.get(&epoch)?;
                let mut headers: Vec<Header> = rest[blocks.len()..]
                    .iter()
                    .map(|(b, _)| b.header.clone())
                    .collect();
                headers.extend(suffix.iter().cloned());
                (headers, cert.clone())
            }
        };
        headers.truncate(MAX_SYNC_HEADERS + 1);
        if headers.len() > MAX_SYNC_HEADERS {
            return None;
        }
        Some(Message::SyncResponse {
            blocks: blocks.iter().map(|(b, _)| b.clone()).collect(),
            headers,
            finalization,
        })
    }

    fn make_block(&self, node: usize, view: u64, parent: Hash, height: u64, salt: u64) -> Block {
        let header = Header {
            chain_id: CHAIN_ID,
            height,
            epoch: 0,
            view,
            parent_hash: parent,
            proposer: self.nodes[node].key.public_key(),
            timestamp_ms: view.saturating_mul(1_000).saturating_add(salt),
            tx_root: Hash::ZERO,
            parent_state_root: Hash::ZERO,
            parent_receipts_root: Hash::ZERO,
            archive_root: Hash::ZERO,
        };
        Block {
            header,
            transactions: vec![],
        }
    }
}

/// Validator `i`'s key in `epoch`: fixed, except that with `rotate_keys` the last
/// validator gets a fresh key every epoch (a set change at each boundary).
pub fn key_for(s: &Scenario, epoch: u64, i: usize) -> SecretKey {
    if s.rotate_keys && i + 1 == s.n && epoch > 0 {
        let mut seed = [0xa0; 32];
        seed[..8].copy_from_slice(&epoch.to_le_bytes());
        return SecretKey::from_seed(seed);
    }
    SecretKey::from_seed([i as u8 + 1; 32])
}

/// The voting powers of `epoch`'s validators: 1 each, or with `weighted` seeded honest
/// powers in 1..=10 and the faulty sharing the most power that stays under 1/3 of the total
/// (2F < H, so 3F < F + H).
pub fn powers_for(s: &Scenario, epoch: u64) -> Vec<u64> {
    if !s.weighted {
        return vec![1; s.n];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ epoch);
    let mut powers: Vec<u64> = (0..s.n).map(|_| rng.gen_range(1..=10)).collect();
    let faulty: Vec<usize> = (0..s.n).filter(|i| s.faults[*i] != Fault::Honest).collect();
    if !faulty.is_empty() {
        let honest: u64 = (0..s.n)
            .filter(|i| s.faults[*i] == Fault::Honest)
            .map(|i| powers[i])
            .sum();
        let share = (honest.saturating_sub(1) / 2 / faulty.len() as u64).max(1);
        for i in faulty {
            powers[i] = share;
        }
    }
    powers
}

/// The validator set of `epoch`: its keys and voting powers.
pub fn set_for(s: &Scenario, epoch: u64) -> ValidatorSet {
    ValidatorSet::weighted(
        epoch,
        (0..s.n)
            .map(|i| key_for(s, epoch, i).public_key())
            .collect(),
        powers_for(s, epoch),
    )
}

/// The public key of validator `i` in epoch 0 (for tests that build messages).
pub fn validator_key(i: usize) -> PublicKey {
    SecretKey::from_seed([i as u8 + 1; 32]).public_key()
}
