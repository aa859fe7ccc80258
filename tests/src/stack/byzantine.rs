//! The full-stack simulator's Byzantine validator: an honest `App` (so it holds the real
//! chain and builds plausible blocks) whose outgoing messages pass through an [`Adversary`]
//! that, per recipient, sends the honest message or a lie signed with the validator's own
//! key. The lies are the application's to catch — the engine-level simulator
//! (`sim/byzantine.rs`) covers what the consensus engine must refuse on its own:
//!
//! - proposals whose header commits a wrong parent state, receipts or archive root, a
//!   timestamp in the future or not after its parent, another height, epoch or chain, or a
//!   transaction root that does not match the body; each re-signed, so the signature holds;
//! - proposals whose body carries a transaction that cannot be charged (an unfunded
//!   sender), a transaction whose signature was altered, or a duplicate; the transaction root
//!   recomputed, so only execution can tell;
//! - a second, valid proposal for the same view (equivocation);
//! - a conflicting vote beside each vote (double signing);
//! - sync and block responses whose blocks carry another body under the same header.
//!
//! Every invalid block it proposes is remembered: the run fails if an honest validator
//! signed a notarize or finalize vote for one (its validity check let the lie through).

use keel_consensus::Message;
use keel_types::block::canonical_order;
use keel_types::{
    Authorization, Block, Hash, SecretKey, SignedTransaction, SignedVote, Transaction, TxBody,
    Vote, VoteKind, U256,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// One kind of lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lie {
    ParentStateRoot,
    ParentReceiptsRoot,
    ArchiveRoot,
    FutureTimestamp,
    StaleTimestamp,
    TxRoot,
    Height,
    Epoch,
    ChainId,
    UnfundedTx,
    ForgedSignature,
    DuplicateTx,
    /// A second valid proposal for the view (the only lie an honest validator may vote for).
    Equivocation,
    ConflictingVote,
    ForgedSyncBody,
    ForgedBlockResponse,
}

/// Every lie, for the campaign's check that each was told; the first
/// [`PROPOSAL_LIE_COUNT`] are told about proposals.
pub const ALL_LIES: [Lie; 16] = [
    Lie::ParentStateRoot,
    Lie::ParentReceiptsRoot,
    Lie::ArchiveRoot,
    Lie::FutureTimestamp,
    Lie::StaleTimestamp,
    Lie::TxRoot,
    Lie::Height,
    Lie::Epoch,
    Lie::ChainId,
    Lie::UnfundedTx,
    Lie::ForgedSignature,
    Lie::DuplicateTx,
    Lie::Equivocation,
    Lie::ConflictingVote,
    Lie::ForgedSyncBody,
    Lie::ForgedBlockResponse,
];

const PROPOSAL_LIE_COUNT: usize = 13;
/// The lies told about a proposal (`Lie::Equivocation` is the last of them).
const PROPOSAL_LIES: &[Lie] = ALL_LIES.split_at(PROPOSAL_LIE_COUNT).0;
const _: () = assert!(matches!(
    PROPOSAL_LIES[PROPOSAL_LIE_COUNT - 1],
    Lie::Equivocation
));

/// How far past its own clock a future-timestamp lie goes (beyond any honest drift bound).
const FUTURE_MS: u64 = 60_000;

/// What the Byzantine validator does to its honest core's messages.
#[derive(Debug)]
pub struct Adversary {
    key: SecretKey,
    me: usize,
    n: usize,
    rng: ChaCha8Rng,
    /// How many times each lie was told.
    pub told: BTreeMap<Lie, u64>,
    /// Hashes of the invalid blocks it proposed: no honest validator may vote for one.
    pub invalid_blocks: BTreeSet<Hash>,
}

impl Adversary {
    pub fn new(seed: u64, me: usize, n: usize, key: SecretKey) -> Adversary {
        Adversary {
            key,
            me,
            n,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xb42a_7100),
            told: BTreeMap::new(),
            invalid_blocks: BTreeSet::new(),
        }
    }

    /// What leaves instead of `message` (sent to `to`, or to every other validator): per
    /// recipient, the honest message, a lie, or both.
    pub fn corrupt(
        &mut self,
        now_ms: u64,
        to: Option<usize>,
        message: Message,
    ) -> Vec<(usize, Message)> {
        let recipients: Vec<usize> = match to {
            Some(t) => vec![t],
            None => (0..self.n).filter(|&t| t != self.me).collect(),
        };
        let mut out = Vec::new();
        for r in recipients {
            match self.lie_about(&message) {
                Some((lie, false)) => {
                    self.note(lie);
                    out.push((r, self.rebuild(now_ms, lie, &message)));
                }
                Some((lie, true)) => {
                    self.note(lie);
                    out.push((r, message.clone()));
                    out.push((r, self.rebuild(now_ms, lie, &message)));
                }
                None => out.push((r, message.clone())),
            }
        }
        out
    }

    fn note(&mut self, lie: Lie) {
        *self.told.entry(lie).or_default() += 1;
    }

    /// Which lie to tell about `message`, if any, and whether the honest message goes too.
    fn lie_about(&mut self, message: &Message) -> Option<(Lie, bool)> {
        if !self.rng.gen_bool(0.5) {
            return None;
        }
        match message {
            Message::Propose { .. } => {
                let lie = PROPOSAL_LIES[self.rng.gen_range(0..PROPOSAL_LIES.len())];
                Some((lie, false))
            }
            Message::Vote(v) if usize::from(v.signer) == self.me => {
                Some((Lie::ConflictingVote, true))
            }
            Message::SyncResponse { blocks, .. } if !blocks.is_empty() => {
                Some((Lie::ForgedSyncBody, false))
            }
            Message::BlockResponse(_) => Some((Lie::ForgedBlockResponse, false)),
            _ => None,
        }
    }

    /// The lie `lie` told about `message`.
    fn rebuild(&mut self, now_ms: u64, lie: Lie, message: &Message) -> Message {
        match message {
            Message::Propose { block, vote } => {
                let block = self.lie_in_block(now_ms, lie, block);
                let vote = self.sign(Vote {
                    block: block.hash(),
                    ..vote.vote
                });
                if lie != Lie::Equivocation {
                    self.invalid_blocks.insert(block.hash());
                }
                Message::Propose { block, vote }
            }
            Message::Vote(v) => {
                let vote = self.conflicting(v.vote);
                Message::Vote(self.sign(vote))
            }
            Message::SyncResponse {
                blocks,
                headers,
                finalization,
            } => {
                let mut blocks = blocks.clone();
                let i = self.rng.gen_range(0..blocks.len());
                blocks[i].transactions = self.other_body(&blocks[i]);
                Message::SyncResponse {
                    blocks,
                    headers: headers.clone(),
                    finalization: finalization.clone(),
                }
            }
            Message::BlockResponse(block) => {
                let mut block = block.clone();
                block.transactions = self.other_body(&block);
                Message::BlockResponse(block)
            }
            other => other.clone(),
        }
    }

    /// `block` with one lie in it (its transaction root recomputed unless the lie is the
    /// root itself).
    fn lie_in_block(&mut self, now_ms: u64, lie: Lie, block: &Block) -> Block {
        let mut b = block.clone();
        let h = &mut b.header;
        match lie {
            Lie::ParentStateRoot => h.parent_state_root = self.random_hash(),
            Lie::ParentReceiptsRoot => h.parent_receipts_root = self.random_hash(),
            Lie::ArchiveRoot => h.archive_root = self.random_hash(),
            Lie::FutureTimestamp => h.timestamp_ms = now_ms.saturating_add(FUTURE_MS),
            Lie::StaleTimestamp => h.timestamp_ms = 1,
            Lie::TxRoot => h.tx_root = self.random_hash(),
            Lie::Height => h.height = h.height.saturating_add(1),
            Lie::Epoch => h.epoch = h.epoch.saturating_add(1),
            Lie::ChainId => h.chain_id = h.chain_id.wrapping_add(1),
            Lie::Equivocation => h.timestamp_ms = h.timestamp_ms.saturating_add(1),
            Lie::UnfundedTx | Lie::ForgedSignature | Lie::DuplicateTx => {
                let mut txs = b.transactions.clone();
                match (lie, txs.is_empty()) {
                    (Lie::ForgedSignature, false) => {
                        let i = self.rng.gen_range(0..txs.len());
                        forge_signature(&mut txs[i]);
                    }
                    (Lie::DuplicateTx, false) => {
                        let i = self.rng.gen_range(0..txs.len());
                        txs.push(txs[i].clone());
                    }
                    // No transaction to alter or copy: an unfunded one instead.
                    _ => txs.push(self.unfunded_tx(b.header.chain_id)),
                }
                b.transactions = canonical_order(&b.header.parent_hash, txs);
                b.header.tx_root = b.compute_tx_root();
            }
            Lie::ConflictingVote | Lie::ForgedSyncBody | Lie::ForgedBlockResponse => {}
        }
        b
    }

    /// Another body for `block`'s header: one transaction dropped, or an unfunded one added.
    fn other_body(&mut self, block: &Block) -> Vec<SignedTransaction> {
        let mut txs = block.transactions.clone();
        if txs.is_empty() || self.rng.gen_bool(0.5) {
            txs.push(self.unfunded_tx(block.header.chain_id));
            canonical_order(&block.header.parent_hash, txs)
        } else {
            txs.remove(self.rng.gen_range(0..txs.len()));
            txs
        }
    }

    /// A vote of this validator's key that conflicts with `vote`.
    fn conflicting(&mut self, vote: Vote) -> Vote {
        match vote.kind {
            VoteKind::Notarize => Vote {
                block: self.random_hash(),
                ..vote
            },
            VoteKind::Nullify => Vote {
                kind: VoteKind::Finalize,
                block: self.random_hash(),
                ..vote
            },
            VoteKind::Finalize => Vote {
                kind: VoteKind::Nullify,
                block: Hash::ZERO,
                ..vote
            },
        }
    }

    fn sign(&self, vote: Vote) -> SignedVote {
        SignedVote {
            vote,
            signer: u16::try_from(self.me).unwrap_or(u16::MAX),
            signature: self.key.sign(&vote.signing_hash().0),
        }
    }

    fn random_hash(&mut self) -> Hash {
        Hash(self.rng.gen())
    }

    /// A correctly signed transfer from a fresh key that holds nothing.
    fn unfunded_tx(&mut self, chain_id: u64) -> SignedTransaction {
        let key = SecretKey::from_seed(self.rng.gen());
        Transaction {
            chain_id,
            sender: key.public_key().into(),
            nonce: 0,
            gas_limit: 21_000,
            gas_price: super::GAS_PRICE,
            body: TxBody::Transfer {
                to: keel_types::Address([0x5a; 20]),
                amount: U256::from(1u64),
            },
        }
        .sign(&key)
    }
}

/// Alters one byte of `tx`'s signature (an Ethereum envelope's last byte, inside its `s`).
fn forge_signature(tx: &mut SignedTransaction) {
    match &mut tx.signature {
        Authorization::Ed25519(signature) => signature.0[0] ^= 1,
        Authorization::Ethereum(raw) => {
            if let Some(last) = raw.last_mut() {
                *last ^= 1;
            }
        }
    }
}

/// Views an [`EvidenceWatch`] remembers while it has seen no conflict (the oldest go first).
const MAX_WATCHED_VIEWS: usize = 256;
/// Votes remembered per view: one of each kind is all an honest signer sends.
const MAX_VOTES_PER_VIEW: usize = 4;

/// Two conflicting votes one key signed, caught in what one peer received from its
/// validator: the evidence an equivocation report carries, taken from the wire rather than
/// signed by the harness.
#[derive(Debug)]
pub struct EvidenceWatch {
    key: keel_types::PublicKey,
    seen: BTreeMap<(u64, u64), Vec<SignedVote>>,
    /// The first conflicting pair seen.
    pub evidence: Option<(SignedVote, SignedVote)>,
}

impl EvidenceWatch {
    pub fn new(key: keel_types::PublicKey) -> EvidenceWatch {
        EvidenceWatch {
            key,
            seen: BTreeMap::new(),
            evidence: None,
        }
    }

    /// Looks at one message the peer received from the validator: a vote (alone or a
    /// proposal's) its key signed that conflicts with one received earlier is the evidence.
    pub fn observe(&mut self, message: &Message) {
        if self.evidence.is_some() {
            return;
        }
        let vote = match message {
            Message::Vote(vote) | Message::Propose { vote, .. } => vote,
            _ => return,
        };
        if vote.verify(&self.key).is_err() {
            return;
        }
        let votes = self
            .seen
            .entry((vote.vote.epoch, vote.vote.view))
            .or_default();
        if let Some(first) = votes
            .iter()
            .find(|f| keel_types::validator::conflicting(&f.vote, &vote.vote))
        {
            self.evidence = Some((*first, *vote));
            return;
        }
        if votes.len() < MAX_VOTES_PER_VIEW && !votes.contains(vote) {
            votes.push(*vote);
        }
        while self.seen.len() > MAX_WATCHED_VIEWS {
            self.seen.pop_first();
        }
    }
}
