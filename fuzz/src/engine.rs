//! `consensus_engine`: one validator's consensus engine driven by a coalition that holds
//! every validator key. The input is a script of operations (votes, certificates with any
//! signer set, proposals, unsigned blocks, sync responses, timeouts, the application's
//! answers, restarts from the vote log), each value chosen from what the engine holds now
//! or from extremes (views and heights at `u64::MAX`). A quorum can certify anything, so
//! this checks what must hold whoever signs: the engine never panics (also across restarts),
//! delivers only blocks that extend its finalized tip one height at a time, and keeps nothing
//! behind that tip.

use crate::FUZZ_CHAIN_ID;
use keel_consensus::{
    Action, Config, Engine, Input, Message, ValidatorSet, VoteRecord, MAX_PROPOSALS_PER_VIEW,
};
use keel_types::{Block, Certificate, Hash, Header, SecretKey, SignedVote, Vote, VoteKind};
use std::sync::OnceLock;

/// Validators of the engine's set; the engine is validator 0.
const VALIDATORS: usize = 4;
/// Operations read from one input (each costs a few signatures).
const MAX_OPS: usize = 256;
/// Blocks remembered to build on and to name.
const MAX_KNOWN_BLOCKS: usize = 64;
/// Blocks in a synthesized sync response.
const MAX_SYNC_BLOCKS: usize = 4;
/// Blocks per epoch: large, so an input stays in epoch 0 (epoch ends have their own tests).
const EPOCH_LENGTH: u64 = 1 << 20;
/// The vote log replayed on a restart keeps at most this many records (the newest).
const MAX_LOG_RECORDS: usize = 1024;
/// Proposals an engine may hold per view: its bound plus the blocks certificates name.
const MAX_HELD_PROPOSALS_PER_VIEW: usize = MAX_PROPOSALS_PER_VIEW + 2;

fn keys() -> &'static [SecretKey] {
    static KEYS: OnceLock<Vec<SecretKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0..VALIDATORS as u8)
            .map(|i| SecretKey::from_seed([0xc0 + i; 32]))
            .collect()
    })
}

fn genesis() -> Hash {
    Hash([0x9e; 32])
}

/// The bytes of the script, read front to back; reads past the end end the script.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u64(&mut self) -> Option<u64> {
        let mut v = [0u8; 8];
        for b in &mut v {
            *b = self.byte()?;
        }
        Some(u64::from_le_bytes(v))
    }
}

struct Harness {
    engine: Engine,
    /// Votes the engine persisted, replayed on a restart.
    log: Vec<VoteRecord>,
    /// The finalized tip as delivered: height, hash, view.
    tip: (u64, Hash, u64),
    known: Vec<Block>,
    verify: Vec<(u64, Block)>,
    build: Vec<(u64, Hash, u64, u64)>,
}

impl Harness {
    fn new() -> Harness {
        let tip = (0, genesis(), 0);
        let mut h = Harness {
            engine: Engine::new(config(tip), &[]),
            log: Vec::new(),
            tip,
            known: Vec::new(),
            verify: Vec::new(),
            build: Vec::new(),
        };
        h.feed(Input::Start);
        h
    }

    /// Feeds one input, records what the engine asks for, and checks what must hold.
    fn feed(&mut self, input: Input) {
        for action in self.engine.handle(input) {
            match action {
                Action::Persist(record) => {
                    if self.log.len() >= MAX_LOG_RECORDS {
                        self.log.remove(0);
                    }
                    self.log.push(record);
                }
                Action::Verify { view, block } => self.verify.push((view, block)),
                Action::BuildProposal {
                    view,
                    parent,
                    height,
                    epoch,
                    ..
                } => self.build.push((view, parent, height, epoch)),
                Action::Finalized { block, .. } => {
                    assert_eq!(
                        (block.header.height, block.header.parent_hash),
                        (self.tip.0.wrapping_add(1), self.tip.1),
                        "a finalized block that does not extend the tip {:?}",
                        self.tip
                    );
                    self.tip = (block.header.height, block.hash(), block.header.view);
                }
                _ => {}
            }
        }
        self.verify.truncate(MAX_KNOWN_BLOCKS);
        self.build.truncate(MAX_KNOWN_BLOCKS);
        let r = self.engine.retained();
        assert_eq!(r.behind_tip, 0, "held behind the finalized tip: {r:?}");
        assert!(
            r.max_proposals_per_view <= MAX_HELD_PROPOSALS_PER_VIEW,
            "proposals per view: {r:?}"
        );
    }

    fn remember(&mut self, block: &Block) {
        if self.known.len() >= MAX_KNOWN_BLOCKS {
            self.known.remove(0);
        }
        self.known.push(block.clone());
    }

    /// A view near the engine's, behind it, at the tip's, at the top of u64, or any.
    fn view(&mut self, s: &mut Script) -> Option<u64> {
        let b = s.byte()?;
        let small = u64::from(b >> 3);
        let now = self.engine.view();
        Some(match b & 7 {
            0..=2 => now.saturating_add(small % 8),
            3 => now.saturating_sub(small % 4),
            4 => u64::MAX - small % 3,
            5 => self.tip.2.saturating_add(small % 4),
            6 => small,
            _ => s.u64()?,
        })
    }

    fn block_ref(&mut self, s: &mut Script) -> Option<Option<Block>> {
        // 0 names none (the tip), 1 the newest known block, 2 the one before, …
        let b = usize::from(s.byte()?);
        let len = self.known.len();
        Some(if b == 0 || len == 0 {
            None
        } else {
            self.known.get(len - 1 - (b - 1) % len).cloned()
        })
    }

    fn hash(&mut self, s: &mut Script) -> Option<Hash> {
        Some(match self.block_ref(s)? {
            Some(b) => b.hash(),
            None => match s.byte()? {
                0 => Hash::ZERO,
                1 => genesis(),
                b => Hash([b; 32]),
            },
        })
    }

    /// A block in `view` on a known block (or the tip), at the next height or an extreme.
    fn block(&mut self, s: &mut Script, view: u64) -> Option<Block> {
        let parent = self.block_ref(s)?;
        let (parent_hash, parent_height) =
            parent.map_or((self.tip.1, self.tip.0), |p| (p.hash(), p.header.height));
        let height = match s.byte()? % 4 {
            0 => u64::MAX,
            1 => self.tip.0,
            _ => parent_height.saturating_add(1),
        };
        let salt = u64::from(s.byte()?);
        let block = make_block(view, parent_hash, height, 0, salt);
        self.remember(&block);
        Some(block)
    }

    fn signers(&mut self, s: &mut Script) -> Option<Vec<u16>> {
        let mask = s.byte()?;
        Some(
            (0..VALIDATORS as u16)
                .filter(|i| mask & (1 << i) != 0)
                .collect(),
        )
    }

    fn step(&mut self, s: &mut Script) -> Option<()> {
        let op = s.byte()?;
        let from = u16::from(op >> 4) % VALIDATORS as u16;
        match op % 10 {
            0 => {
                let kind = kind(s.byte()?);
                let view = self.view(s)?;
                let block = if kind == VoteKind::Nullify && s.byte()? & 1 == 0 {
                    Hash::ZERO
                } else {
                    self.hash(s)?
                };
                let vote = signed(vote(view, kind, block), from);
                self.message(from, Message::Vote(vote));
            }
            1 => {
                let kind = kind(s.byte()?);
                let view = self.view(s)?;
                let block = if kind == VoteKind::Nullify {
                    Hash::ZERO
                } else {
                    self.hash(s)?
                };
                let signers = self.signers(s)?;
                let cert = certificate(vote(view, kind, block), &signers);
                self.message(from, Message::Certificate(cert));
            }
            2 => {
                let view = self.view(s)?;
                let block = self.block(s, view)?;
                let leader = (view % VALIDATORS as u64) as u16;
                let vote = signed(vote(view, VoteKind::Notarize, block.hash()), leader);
                self.message(leader, Message::Propose { block, vote });
            }
            3 => {
                // A known block (as asked for), or a new one nobody signed.
                let block = if s.byte()? & 1 == 0 {
                    self.block_ref(s)?
                } else {
                    let view = self.view(s)?;
                    Some(self.block(s, view)?)
                };
                if let Some(block) = block {
                    self.message(from, Message::BlockResponse(block));
                }
            }
            4 => {
                let count = usize::from(s.byte()?) % MAX_SYNC_BLOCKS + 1;
                let mut blocks: Vec<Block> = Vec::new();
                for _ in 0..count {
                    let view = self.view(s)?;
                    let block = match blocks.last() {
                        Some(p) => make_block(
                            view,
                            p.hash(),
                            p.header.height.saturating_add(1),
                            0,
                            u64::from(s.byte()?),
                        ),
                        None => self.block(s, view)?,
                    };
                    self.remember(&block);
                    blocks.push(block);
                }
                let top = blocks.last()?;
                let signers = self.signers(s)?;
                let finalization = certificate(
                    vote(top.header.view, VoteKind::Finalize, top.hash()),
                    &signers,
                );
                let message = Message::SyncResponse {
                    blocks,
                    headers: Vec::new(),
                    finalization,
                };
                self.message(from, message);
            }
            5 => {
                let view = self.view(s)?;
                self.feed(Input::Timeout { view });
            }
            6 => {
                let valid = s.byte()? & 1 == 0;
                if let Some((view, block)) = self.verify.pop() {
                    let block = block.hash();
                    self.feed(Input::Verified { view, block, valid });
                }
            }
            7 => {
                let salt = u64::from(s.byte()?);
                if let Some((view, parent, height, epoch)) = self.build.pop() {
                    let block = make_block(view, parent, height, epoch, salt);
                    self.remember(&block);
                    self.feed(Input::Proposal { view, block });
                }
            }
            8 => {
                // A restart: a new engine from the delivered tip and the vote log.
                self.engine = Engine::new(config(self.tip), &self.log);
                self.verify.clear();
                self.build.clear();
                self.feed(Input::Start);
            }
            _ => {
                let from_height = match s.byte()? % 3 {
                    0 => u64::MAX,
                    1 => self.tip.0,
                    _ => 1,
                };
                self.message(from, Message::SyncRequest { from_height });
            }
        }
        Some(())
    }

    fn message(&mut self, from: u16, message: Message) {
        self.feed(Input::Message { from, message });
    }
}

fn config(tip: (u64, Hash, u64)) -> Config {
    let keys = keys();
    Config {
        chain_id: FUZZ_CHAIN_ID,
        validators: ValidatorSet::equal(0, keys.iter().map(SecretKey::public_key).collect()),
        me: Some((0, keys[0].clone())),
        finalized_tip: tip,
        timeout_base_ms: 1_000,
        timeout_max_ms: 8_000,
        skip_after_views: VALIDATORS as u64,
        max_views_ahead: 16,
        epoch_length: EPOCH_LENGTH,
        epoch_first_height: 1,
    }
}

fn kind(b: u8) -> VoteKind {
    match b % 3 {
        0 => VoteKind::Notarize,
        1 => VoteKind::Nullify,
        _ => VoteKind::Finalize,
    }
}

fn vote(view: u64, kind: VoteKind, block: Hash) -> Vote {
    Vote {
        chain_id: FUZZ_CHAIN_ID,
        epoch: 0,
        view,
        kind,
        block,
    }
}

fn signed(vote: Vote, signer: u16) -> SignedVote {
    SignedVote {
        vote,
        signer,
        signature: keys()[usize::from(signer)].sign(&vote.signing_hash().0),
    }
}

fn certificate(vote: Vote, signers: &[u16]) -> Certificate {
    Certificate {
        vote,
        signers: signers.to_vec(),
        signatures: signers.iter().map(|&s| signed(vote, s).signature).collect(),
    }
}

fn make_block(view: u64, parent: Hash, height: u64, epoch: u64, salt: u64) -> Block {
    let leader = (view % VALIDATORS as u64) as usize;
    let mut block = Block {
        header: Header {
            chain_id: FUZZ_CHAIN_ID,
            height,
            epoch,
            view,
            parent_hash: parent,
            proposer: keys()[leader].public_key(),
            timestamp_ms: salt,
            tx_root: Hash::ZERO,
            parent_state_root: Hash::ZERO,
            parent_receipts_root: Hash::ZERO,
            archive_root: Hash::ZERO,
        },
        transactions: Vec::new(),
    };
    block.header.tx_root = block.compute_tx_root();
    block
}

/// The target: runs the script in `data` against a fresh engine.
pub fn consensus_engine(data: &[u8]) {
    consensus_engine_tip(data);
}

/// Runs the script in `data` and returns the finalized tip the engine delivered (height,
/// hash, view): for tests that a seed reaches what it is meant to.
pub fn consensus_engine_tip(data: &[u8]) -> (u64, Hash, u64) {
    let mut harness = Harness::new();
    let mut script = Script(data);
    for _ in 0..MAX_OPS {
        if harness.step(&mut script).is_none() {
            break;
        }
    }
    harness.tip
}

/// Seed scripts: a chain finalized through proposals and certificates; a block finalized
/// at view `u64::MAX`, then restarts and votes at the top of the range; a sync response.
/// (View bytes: `v << 3 | 6` is view v; `4` is `u64::MAX`. Block bytes: 0 is the tip, 1 the
/// newest known block.)
pub fn seeds() -> Vec<Vec<u8>> {
    let mut happy = Vec::new();
    for view in 1..=3u8 {
        let v = view << 3 | 6;
        happy.extend([
            2, v, 0, 2, view, // the leader's proposal on the tip
            1, 0, v, 1, 0x0f, // its notarization by all four
            1, 2, v, 1, 0x0f, // its finalization by all four
            6, 0, 7, 0, // the application's answer to a pending verify / build
        ]);
    }
    let top = vec![
        2, 4, 0, 2, 1, // a proposal at view u64::MAX on the tip (past the window: dropped)
        1, 2, 4, 1, 0x0e, // its finalization by validators 1, 2, 3
        3, 0, 1, // the block, as if asked for: finalized at view u64::MAX
        8, // restart from that tip
        5, 4, // a timeout at u64::MAX
        0, 1, 4, 0, // a nullify at u64::MAX
        8, // restart again
    ];
    let sync = vec![4, 2, 14, 0, 2, 7, 22, 8, 30, 9, 0x0b];
    vec![happy, top, sync]
}
