//! `Fault::Byzantine`: a validator that runs no engine at all. It records what it receives
//! (votes, certificates, proposals, blocks, sync responses) in bounded pools and, on every
//! step and on some receipts, sends each chosen honest validator its own message, built by a
//! seeded RNG from a menu of moves: replays, votes re-signed with its own keys for other
//! views, epochs, kinds and blocks, proposals with one field changed, equivocating proposals
//! and votes in its own views, certificates with signers added, duplicated, dropped or from
//! another epoch, sync responses that mix stale, reordered, truncated, duplicated and forged
//! blocks and headers with real certificates, nullifies naming blocks, invented ancestors,
//! and u64 extremes. Everything it signs, it signs with its own keys (one per epoch): it holds
//! no honest key, so honest signatures it sends are only replayed or misattributed.

mod moves;

use super::{key_for, Event, Fault, Scenario, Sim, CHAIN_ID};
use keel_consensus::Message;
use keel_types::{
    Address, Block, Certificate, Hash, Header, PublicKey, SecretKey, SignedVote, Transaction,
    TxBody, Vote, VoteKind,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Items kept per pool (votes, certificates, proposals, sync responses, invented blocks): a
/// full pool overwrites a random item, so the adversary's memory is fixed however long it runs.
pub const POOL_ITEMS: usize = 64;
/// Blocks the adversary remembers to build on (the lowest view is forgotten first).
const KNOWN_BLOCKS: usize = 256;
/// Views whose notarization or nullification it remembers (to find a leader view's parent).
const KNOWN_VIEWS: usize = 128;
/// Most moves one step makes (each may send to several validators).
const MAX_MOVES_PER_STEP: usize = 2;
/// Simulated time between steps, drawn uniformly (ms).
const STEP_MS: (u64, u64) = (20, 100);
/// Probability that a received message makes it act at once (a reaction to fresh traffic).
const REACT_PROBABILITY: f64 = 0.05;
/// Epoch keys cached (extreme epochs would otherwise be re-derived on every signature).
const KEY_CACHE: usize = 8;
/// Blocks of a synthesized sync response, walked back from a finalized block.
const SYNC_CHAIN: usize = 8;
/// Most distinct blocks it proposes for one of its views in one move (more than the
/// `MAX_PROPOSALS_PER_VIEW` an honest engine keeps).
const MAX_OWN_PROPOSALS: u64 = 8;
/// Longest chain of invented ancestors under one of its proposals.
const MAX_INVENTED_ANCESTORS: u64 = 4;
/// The simulator's `Config::max_views_ahead` (the edge of the honest engines' vote window).
const VIEWS_AHEAD: u64 = 64;
/// Most unsigned parents, in one shared view, that one fan-in move builds under its proposals.
const MAX_FAN_IN: usize = 32;
/// Longest chain of unsigned ancestors reaching down into views behind the honest tips.
const MAX_STALE_ANCESTORS: u64 = 8;
/// Messages queued to be sent again on later steps (unsigned ancestors are kept only once the
/// block that names them arrived, and delivery order is random): at most this many waves.
const MAX_LATER_WAVES: usize = 4;

/// A bounded sample of what the adversary saw.
struct Pool<T> {
    items: Vec<T>,
}

impl<T: Clone> Pool<T> {
    fn new() -> Pool<T> {
        Pool { items: Vec::new() }
    }

    fn put(&mut self, rng: &mut ChaCha8Rng, item: T) {
        if self.items.len() < POOL_ITEMS {
            self.items.push(item);
        } else {
            let i = rng.gen_range(0..self.items.len());
            self.items[i] = item;
        }
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> Option<T> {
        self.items.choose(rng).cloned()
    }
}

type Sync = (Vec<Block>, Vec<Header>, Certificate);
type Out = Vec<(u16, Message)>;

/// One Byzantine validator's whole state.
pub(super) struct Adversary {
    index: u16,
    s: Scenario,
    /// The honest validators it targets (other adversaries need no lies).
    targets: Vec<u16>,
    rng: ChaCha8Rng,
    keys: BTreeMap<u64, SecretKey>,
    votes: Pool<SignedVote>,
    certs: Pool<Certificate>,
    proposals: Pool<(Block, SignedVote)>,
    syncs: Pool<Sync>,
    invented: Pool<Block>,
    blocks: BTreeMap<Hash, Block>,
    /// Per recent view: the notarized block, or `None` when it saw a nullification.
    views: BTreeMap<u64, Option<Hash>>,
    /// The newest finalization it saw, with the block it names when known.
    finalized: Option<Certificate>,
    epoch: u64,
    view: u64,
    /// Waves of messages to send again on the next steps (oldest first).
    later: Vec<Out>,
}

impl Adversary {
    fn new(index: u16, s: &Scenario) -> Adversary {
        let targets = (0..s.n as u16)
            .filter(|&i| i != index && s.faults[usize::from(i)] != Fault::Byzantine)
            .collect();
        Adversary {
            index,
            s: s.clone(),
            targets,
            rng: ChaCha8Rng::seed_from_u64(s.seed ^ (0xb12a_0000 + u64::from(index))),
            keys: BTreeMap::new(),
            votes: Pool::new(),
            certs: Pool::new(),
            proposals: Pool::new(),
            syncs: Pool::new(),
            invented: Pool::new(),
            blocks: BTreeMap::new(),
            views: BTreeMap::new(),
            finalized: None,
            epoch: 0,
            view: 1,
            later: Vec::new(),
        }
    }

    fn key(&mut self, epoch: u64) -> SecretKey {
        if self.keys.len() >= KEY_CACHE && !self.keys.contains_key(&epoch) {
            self.keys.clear();
        }
        let (s, i) = (&self.s, usize::from(self.index));
        self.keys
            .entry(epoch)
            .or_insert_with(|| key_for(s, epoch, i))
            .clone()
    }

    fn sign_as(&mut self, vote: Vote, signer: u16) -> SignedVote {
        let signature = self.key(vote.epoch).sign(&vote.signing_hash().0);
        SignedVote {
            vote,
            signer,
            signature,
        }
    }

    fn sign(&mut self, vote: Vote) -> SignedVote {
        self.sign_as(vote, self.index)
    }

    fn leader(&self, view: u64) -> u16 {
        super::set_for(&self.s, self.epoch).leader(view)
    }

    fn extreme(&mut self) -> u64 {
        let v = self.view;
        *[
            0,
            1,
            u64::MAX,
            u64::MAX - 1,
            u64::MAX / 2,
            v.saturating_add(VIEWS_AHEAD),
            v.saturating_add(VIEWS_AHEAD + 1),
        ]
        .choose(&mut self.rng)
        .unwrap_or(&u64::MAX)
    }

    fn some_hash(&mut self) -> Hash {
        if self.rng.gen_bool(0.7) {
            if let Some(b) = self.any_block() {
                return b.hash();
            }
        }
        Hash(self.rng.gen())
    }

    fn any_block(&mut self) -> Option<Block> {
        if self.blocks.is_empty() {
            return None;
        }
        let i = self.rng.gen_range(0..self.blocks.len());
        self.blocks.values().nth(i).cloned()
    }

    fn remember(&mut self, block: &Block) {
        self.blocks.insert(block.hash(), block.clone());
        while self.blocks.len() > KNOWN_BLOCKS {
            let lowest = self
                .blocks
                .iter()
                .min_by_key(|(_, b)| b.header.view)
                .map(|(h, _)| *h);
            if let Some(h) = lowest {
                self.blocks.remove(&h);
            }
        }
    }

    fn note_vote(&mut self, vote: &Vote) {
        if vote.epoch > self.epoch {
            self.epoch = vote.epoch;
            self.view = vote.view;
        }
        if vote.epoch == self.epoch && vote.view > self.view {
            self.view = vote.view;
        }
    }

    /// Records a message an honest validator sent it.
    fn observe(&mut self, message: &Message) {
        match message {
            Message::Propose { block, vote } => {
                self.proposals.put(&mut self.rng, (block.clone(), *vote));
                self.votes.put(&mut self.rng, *vote);
                self.remember(block);
                self.note_vote(&vote.vote);
            }
            Message::Vote(vote) => {
                self.votes.put(&mut self.rng, *vote);
                self.note_vote(&vote.vote);
            }
            Message::Certificate(cert) => {
                self.certs.put(&mut self.rng, cert.clone());
                self.note_vote(&cert.vote);
                let v = cert.vote;
                match v.kind {
                    VoteKind::Notarize => {
                        self.views.insert(v.view, Some(v.block));
                    }
                    VoteKind::Nullify => {
                        self.views.entry(v.view).or_insert(None);
                    }
                    VoteKind::Finalize => {
                        if self
                            .finalized
                            .as_ref()
                            .is_none_or(|f| (f.vote.epoch, f.vote.view) < (v.epoch, v.view))
                        {
                            self.finalized = Some(cert.clone());
                        }
                    }
                }
                while self.views.len() > KNOWN_VIEWS {
                    self.views.pop_first();
                }
            }
            Message::BlockResponse(block) => self.remember(block),
            Message::SyncResponse {
                blocks,
                headers,
                finalization,
            } => {
                self.syncs.put(
                    &mut self.rng,
                    (blocks.clone(), headers.clone(), finalization.clone()),
                );
                self.certs.put(&mut self.rng, finalization.clone());
                for b in blocks {
                    self.remember(b);
                }
            }
            _ => {}
        }
    }

    /// Rule PARENT as far as it saw: the block notarized in the highest earlier view with
    /// only nullifications after it, else the highest block it knows of.
    fn parent_for(&self, view: u64) -> Option<Block> {
        let mut u = view.checked_sub(1)?;
        while let Some(seen) = self.views.get(&u) {
            match seen {
                Some(h) => return self.blocks.get(h).cloned(),
                None => u = u.checked_sub(1)?,
            }
        }
        self.blocks
            .values()
            .filter(|b| b.header.view < view && b.header.epoch == self.epoch)
            .max_by_key(|b| b.header.view)
            .cloned()
    }

    fn make_block(&mut self, view: u64, parent: &Block, salt: u64) -> Block {
        let epoch = self.epoch;
        let header = Header {
            chain_id: CHAIN_ID,
            height: parent.header.height.saturating_add(1),
            epoch,
            view,
            parent_hash: parent.hash(),
            proposer: self.key(epoch).public_key(),
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

    fn someone_key(&mut self, epoch: u64) -> PublicKey {
        let i = self.rng.gen_range(0..self.s.n);
        key_for(&self.s, epoch, i).public_key()
    }

    /// One field of a block changed (the rest as it was).
    fn twist_block(&mut self, mut b: Block) -> Block {
        let h = &mut b.header;
        match self.rng.gen_range(0..11) {
            0 => {
                h.height = h
                    .height
                    .wrapping_add(*[1, u64::MAX].choose(&mut self.rng).unwrap_or(&1))
            }
            1 => h.height = self.extreme(),
            2 => h.parent_hash = self.some_hash(),
            3 => h.view = h.view.saturating_add(self.rng.gen_range(1..4)),
            4 => h.view = self.extreme(),
            5 => {
                h.epoch = *[h.epoch.wrapping_add(1), h.epoch.wrapping_sub(1), u64::MAX]
                    .choose(&mut self.rng)
                    .unwrap_or(&u64::MAX)
            }
            6 => h.tx_root = Hash(self.rng.gen()),
            7 => h.proposer = self.someone_key(h.epoch),
            8 => h.parent_state_root = Hash(self.rng.gen()),
            9 => {
                // A body: one transfer signed by the adversary; the root updated or not.
                let key = self.key(self.epoch);
                let tx = Transaction {
                    chain_id: CHAIN_ID,
                    sender: key.public_key().into(),
                    nonce: self.rng.gen_range(0..4),
                    gas_limit: 21_000,
                    gas_price: 1,
                    body: TxBody::Transfer {
                        to: Address::from_public_key(&key.public_key()),
                        amount: keel_types::U256::from(1u64),
                    },
                }
                .sign(&key);
                b.transactions.push(tx);
                if self.rng.gen_bool(0.5) {
                    b.header.tx_root = b.compute_tx_root();
                }
            }
            _ => h.timestamp_ms = h.timestamp_ms.wrapping_add(self.rng.gen_range(1..1_000)),
        }
        b
    }

    /// One field of a vote changed.
    fn twist_vote(&mut self, mut v: Vote) -> Vote {
        match self.rng.gen_range(0..8) {
            0 => v.view = v.view.saturating_add(self.rng.gen_range(1..4)),
            1 => v.view = v.view.saturating_sub(self.rng.gen_range(1..4)),
            2 => v.view = self.extreme(),
            3 => {
                v.epoch = *[v.epoch.wrapping_add(1), v.epoch.wrapping_sub(1), u64::MAX]
                    .choose(&mut self.rng)
                    .unwrap_or(&0)
            }
            4 => v.block = self.some_hash(),
            5 => {
                v.kind = *[VoteKind::Notarize, VoteKind::Nullify, VoteKind::Finalize]
                    .choose(&mut self.rng)
                    .unwrap_or(&VoteKind::Nullify)
            }
            6 => v.chain_id = v.chain_id.wrapping_add(1),
            _ => {
                // A nullify that names a block.
                v.kind = VoteKind::Nullify;
                v.block = self.some_hash();
            }
        }
        v
    }

    fn some_targets(&mut self) -> Vec<u16> {
        let mut t: Vec<u16> = self
            .targets
            .iter()
            .copied()
            .filter(|_| self.rng.gen_bool(0.6))
            .collect();
        if t.is_empty() {
            t.extend(self.targets.choose(&mut self.rng));
        }
        t
    }

    fn send_to_some(&mut self, message: Message) -> Out {
        self.some_targets()
            .into_iter()
            .map(|to| (to, message.clone()))
            .collect()
    }

    fn vote_for(&self, view: u64, kind: VoteKind, block: Hash) -> Vote {
        Vote {
            chain_id: CHAIN_ID,
            epoch: self.epoch,
            view,
            kind,
            block,
        }
    }

    /// One move from the menu.
    fn make_move(&mut self) -> Out {
        match self.rng.gen_range(0..14) {
            0 => self.replay(),
            1 => self.resigned_vote(),
            2 => self.own_proposals(),
            3 => self.twisted_proposal(),
            4 => self.equivocating_votes(),
            5 | 6 => self.twisted_certificate(),
            7 | 8 => self.twisted_sync(None),
            9 => self.invented_ancestors(),
            10 => self.extremes(),
            11 => self.fan_in_parents(),
            12 => self.stale_ancestors(),
            _ => self.requests(),
        }
    }

    /// Its answer to a message: requests get twisted answers; other traffic, sometimes a move.
    fn react(&mut self, from: u16, message: &Message) -> Out {
        match message {
            Message::SyncRequest { .. } => self.twisted_sync(Some(from)),
            Message::BlockRequest(hash) => {
                let block = match self.blocks.get(hash) {
                    Some(b) if self.rng.gen_bool(0.5) => b.clone(),
                    Some(b) => self.twist_block(b.clone()),
                    None => match self.invented.pick(&mut self.rng) {
                        Some(b) => b,
                        None => return vec![],
                    },
                };
                vec![(from, Message::BlockResponse(block))]
            }
            _ if self.rng.gen_bool(REACT_PROBABILITY) => self.make_move(),
            _ => vec![],
        }
    }

    /// Queues `out` to be sent again on the next step (the oldest wave goes when full).
    fn send_again(&mut self, out: &Out) {
        if self.later.len() >= MAX_LATER_WAVES {
            self.later.remove(0);
        }
        self.later.push(out.clone());
    }

    fn step(&mut self) -> Out {
        let mut out = if self.later.is_empty() {
            Vec::new()
        } else {
            self.later.remove(0)
        };
        let moves = self.rng.gen_range(1..=MAX_MOVES_PER_STEP);
        out.extend((0..moves).flat_map(|_| self.make_move()));
        out
    }
}

impl Sim {
    pub(super) fn start_adversary(&mut self, node: usize) {
        let index = self.nodes[node].index;
        if self.nodes[node].adversary.is_none() {
            self.nodes[node].adversary = Some(Box::new(Adversary::new(index, &self.s)));
        }
        self.push(self.now + 1, Event::ByzantineStep { node });
    }

    fn adversary_send(&mut self, node: usize, out: Out) {
        self.report.byzantine_messages += out.len() as u64;
        for (to, message) in out {
            self.send(node, to, message);
        }
    }

    pub(super) fn adversary_receive(&mut self, node: usize, from: u16, message: Message) {
        let Some(adversary) = self.nodes[node].adversary.as_mut() else {
            return;
        };
        adversary.observe(&message);
        let out = adversary.react(from, &message);
        self.adversary_send(node, out);
    }

    pub(super) fn adversary_step(&mut self, node: usize) {
        let Some(adversary) = self.nodes[node].adversary.as_mut() else {
            return;
        };
        let out = adversary.step();
        let next = adversary.rng.gen_range(STEP_MS.0..=STEP_MS.1) / self.s.byzantine_rate.max(1);
        self.adversary_send(node, out);
        self.push(self.now + next.max(1), Event::ByzantineStep { node });
    }
}
