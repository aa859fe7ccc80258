//! The Simplex state machine. See docs/consensus.md for the rules and the safety argument;
//! comments here name the rule each branch implements.

mod blocks;
mod propose;
mod retained;
mod sync;
mod votes;

pub use blocks::MAX_PENDING_BLOCK_BYTES;
pub use retained::Retained;

use crate::message::Message;
use crate::quorum::{verify_certificate, ValidatorSet};
use crate::votelog::VoteRecord;
use keel_types::{
    Block, Certificate, Hash, Header, Height, SecretKey, Signature, SignedVote, View, Vote,
    VoteKind,
};
use std::collections::BTreeMap;

/// On a timeout, this validator re-sends its own votes for at most this many unfinalized
/// views back: a certificate lost with a crashed peer's memory can re-form from them.
pub const MAX_RESEND_VIEWS: u64 = 32;

/// Most distinct proposals kept per view: the leader's first (the only one this validator
/// may notarize) and one conflicting one, which with the leader's two signed notarize votes
/// is the equivocation evidence. A leader that signs thousands of blocks for one view (or
/// for every view it leads within `max_views_ahead`) costs this node at most this many
/// blocks per view; further ones are dropped before their signature is even checked.
pub const MAX_PROPOSALS_PER_VIEW: usize = 2;

/// Most blocks kept per view that arrive unsigned, only as the parent of a known block
/// (blocks a certificate names are always kept: at most two per view). An honest chain has
/// at most one block per view, so one is enough to fetch it; junk that takes the slot costs
/// only a fall-back to sync, and bounds how far a chain of invented ancestors can grow.
pub const MAX_UNCERTIFIED_PARENTS_PER_VIEW: usize = 1;

/// Engine parameters. Every bound on memory or time is here.
#[derive(Debug, Clone)]
pub struct Config {
    pub chain_id: u64,
    pub validators: ValidatorSet,
    /// This validator's index and key; `None` runs an observer that only follows.
    pub me: Option<(u16, SecretKey)>,
    /// The last block the application has finalized (genesis at start): height, hash, view.
    pub finalized_tip: (Height, Hash, View),
    /// First view timeout; doubles per consecutive nullified view up to `timeout_max_ms`.
    pub timeout_base_ms: u64,
    pub timeout_max_ms: u64,
    /// A leader with no vote seen for this many views is skipped at once (nullify on entry).
    pub skip_after_views: u64,
    /// Votes and proposals more than this many views ahead are dropped (memory bound);
    /// certificates are verified and may move the view any distance.
    pub max_views_ahead: u64,
    /// Blocks per epoch, and the first height this engine's epoch orders (the height after
    /// the previous epoch's last finalized block; 1 for epoch 0). The epoch's last height is
    /// `first + length − 1`. Past it leaders propose *empty* suffix blocks (as Aptos does
    /// after a reconfiguration block) so the last block is always finalizable through a
    /// descendant; suffix blocks are never delivered, so the epoch ends exactly at its last
    /// height on every validator, and the driver starts the next epoch's engine (with the
    /// set the application gives) at the height after it. `u64::MAX` for one endless epoch.
    pub epoch_length: u64,
    pub epoch_first_height: Height,
}

/// What the driver feeds in.
#[derive(Debug, Clone)]
pub enum Input {
    /// Begin (or resume after a restart): arms the timer and proposes if leader.
    Start,
    Message {
        from: u16,
        message: Message,
    },
    Timeout {
        view: View,
    },
    /// The application built the block asked for by `Action::BuildProposal`.
    Proposal {
        view: View,
        block: Block,
    },
    /// The application's verdict on a block asked for by `Action::Verify`.
    Verified {
        view: View,
        block: Hash,
        valid: bool,
    },
    /// The epoch before this engine's ended while its engine was behind
    /// ([`Engine::is_behind`]): ask for the next blocks now, not at the first timeout.
    /// Without it a node that syncs across many short epochs (an observer, a restored
    /// joiner) gained one epoch per view timeout and could fall behind for good. One
    /// request per epoch change, which only a finalization certificate causes.
    CatchUp,
}

/// What the driver must do, in order. A `Persist` must be durable before any later action
/// of the same batch is carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Persist(VoteRecord),
    Broadcast(Message),
    Send {
        to: u16,
        message: Message,
    },
    SetTimer {
        view: View,
        after_ms: u64,
    },
    /// Build a block for `view` on `parent`. `empty`: a suffix block past the epoch's last
    /// height, which must carry no transactions.
    BuildProposal {
        view: View,
        parent: Hash,
        height: Height,
        epoch: u64,
        empty: bool,
    },
    Verify {
        view: View,
        block: Block,
    },
    /// Finalized blocks, delivered exactly once each, in height order. `certificate` is the
    /// finalization certificate when this block was finalized directly (else a descendant's
    /// certificate finalized it).
    Finalized {
        block: Block,
        certificate: Option<Certificate>,
    },
    /// A peer asked for finalized blocks from `from_height`: answer with `SyncResponse`.
    ServeSync {
        to: u16,
        from_height: Height,
    },
    /// The epoch's last block (`tip`: height, hash, view) is finalized: this engine is done.
    /// Start the next epoch's engine from `tip` with the next validator set. If the last
    /// block was finalized through empty suffix blocks (never delivered), `suffix` holds
    /// their headers and the certificate of the top one: the proof to keep and serve in sync.
    EpochEnded {
        epoch: u64,
        tip: (Height, Hash, View),
        suffix: Option<(Vec<Header>, Certificate)>,
    },
}

#[derive(Debug, Default)]
struct ViewState {
    /// The leader's first proposal: the only block this validator may notarize in the view.
    proposal: Option<Hash>,
    /// Every proposal kept for the view, `proposal` first (at most `MAX_PROPOSALS_PER_VIEW`).
    proposals: Vec<Hash>,
    /// Blocks of this view kept only as the parent of a known block (at most
    /// `MAX_UNCERTIFIED_PARENTS_PER_VIEW`).
    uncertified_parents: usize,
    verifying: bool,
    proposing: bool,
    /// Voters this validator asked for the block f + 1 notarizes back (rule FETCH); each
    /// at most once per view, so at most n requests.
    asked: Vec<u16>,
    /// First notarize / finalize vote per signer (a second, conflicting one is evidence,
    /// not a vote), and nullifies per signer.
    notarizes: BTreeMap<u16, (Hash, Signature)>,
    finalizes: BTreeMap<u16, (Hash, Signature)>,
    nullifies: BTreeMap<u16, Signature>,
    notarization: Option<Certificate>,
    nullification: Option<Certificate>,
    finalization: Option<Certificate>,
    my_notarize: Option<Hash>,
    my_nullify: bool,
    my_finalize: Option<Hash>,
}

/// The consensus core of one validator for one epoch.
#[derive(Debug)]
pub struct Engine {
    cfg: Config,
    view: View,
    views: BTreeMap<View, ViewState>,
    /// Known blocks not yet finalized (plus the finalized tip's header for parent checks).
    blocks: BTreeMap<Hash, Block>,
    /// Encoded size of each block in `blocks`, bounded by `MAX_PENDING_BLOCK_BYTES`.
    block_bytes: BTreeMap<Hash, usize>,
    tip: (Height, Hash, View),
    /// Highest view each validator was last heard voting in (for skipping dead leaders).
    last_heard: Vec<View>,
    nullified_streak: u32,
    /// The highest finalization we could not yet connect to the tip (drives sync).
    pending_finalization: Option<(View, Hash)>,
    actions: Vec<Action>,
    /// Signatures this engine has verified (single votes plus certificate members).
    signatures_verified: u64,
    /// The newest finalization certificate this engine formed, received or synced; re-sent
    /// on timeouts so lagging validators learn where the chain is and sync to it.
    latest_finalization: Option<Certificate>,
    /// After a restart, the finalization of the tip from the store (`seed_finalization`):
    /// re-sent on timeouts while this engine has heard no newer one and finalized nothing.
    /// Kept apart from `latest_finalization`, which compares views only: at an epoch's start
    /// it may be the previous epoch's and must not hide this epoch's (found by review).
    restart_finalization: Option<Certificate>,
    /// Heard traffic from a later epoch: this validator is behind and should sync.
    behind: bool,
    /// The epoch's last block is finalized; only requests for data are still answered.
    ended: bool,
    /// Turns taken choosing the member asked to continue a sync beside its sender (see
    /// `on_sync`).
    sync_turn: u64,
}

impl Engine {
    /// Builds the engine from its config and the records of its vote log (empty on first
    /// start). Restored records are binding: it will never sign against them.
    pub fn new(cfg: Config, restored: &[VoteRecord]) -> Engine {
        let n = cfg.validators.len();
        debug_assert!(cfg.validators.is_well_formed(), "a malformed validator set");
        let tip = cfg.finalized_tip;
        let mut engine = Engine {
            // Saturating: the tip's view comes from a block peers certified, and a view of
            // u64::MAX there must not panic every restart.
            view: tip.2.saturating_add(1),
            views: BTreeMap::new(),
            blocks: BTreeMap::new(),
            block_bytes: BTreeMap::new(),
            tip,
            last_heard: vec![tip.2; n],
            nullified_streak: 0,
            pending_finalization: None,
            actions: Vec::new(),
            signatures_verified: 0,
            latest_finalization: None,
            restart_finalization: None,
            behind: false,
            ended: false,
            sync_turn: 0,
            cfg,
        };
        let epoch = engine.cfg.validators.epoch;
        for record in restored {
            match *record {
                VoteRecord::EnteredView { epoch: e, view } if e == epoch => {
                    engine.view = engine.view.max(view);
                }
                VoteRecord::Notarized {
                    epoch: e,
                    view,
                    block,
                } if e == epoch => {
                    engine.view_mut(view).my_notarize = Some(block);
                    engine.view = engine.view.max(view);
                }
                VoteRecord::Nullified { epoch: e, view } if e == epoch => {
                    engine.view_mut(view).my_nullify = true;
                    engine.view = engine.view.max(view);
                }
                VoteRecord::Finalized {
                    epoch: e,
                    view,
                    block,
                } if e == epoch => {
                    engine.view_mut(view).my_finalize = Some(block);
                    engine.view = engine.view.max(view);
                }
                _ => {}
            }
        }
        // The log holds every vote of the epoch: views before the finalized tip's are
        // settled, so keep none of them (else a restart holds one view per vote ever logged
        // until the first view change).
        engine.gc();
        engine
    }

    /// Blocks this engine holds in memory (for tests of its bounds).
    pub fn retained_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Signatures verified so far (for the cost-per-block measurement).
    pub fn signatures_verified(&self) -> u64 {
        self.signatures_verified
    }

    /// A one-line summary of what this engine knows about `view` (for logs and debugging).
    pub fn describe_view(&self, view: View) -> String {
        let Some(s) = self.views.get(&view) else {
            return format!("view {view}: nothing");
        };
        format!(
            "view {view}: proposal={:?} verifying={} proposing={} notarizes={} nullifies={} finalizes={} notarized={} nullified={} finalized={} mine=({:?},{},{:?}) parent={:?}",
            s.proposal.map(|h| h.to_hex()[..10].to_string()), s.verifying, s.proposing,
            s.notarizes.len(), s.nullifies.len(), s.finalizes.len(),
            s.notarization.is_some(), s.nullification.is_some(), s.finalization.is_some(),
            s.my_notarize.map(|h| h.to_hex()[..10].to_string()), s.my_nullify, s.my_finalize.map(|h| h.to_hex()[..10].to_string()),
            self.parent_for(view).map(|(h, v)| (h.to_hex()[..10].to_string(), v)),
        )
    }

    pub fn epoch(&self) -> keel_types::Epoch {
        self.cfg.validators.epoch
    }

    /// The epoch's validator set.
    pub fn validators(&self) -> &ValidatorSet {
        &self.cfg.validators
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn finalized_tip(&self) -> (Height, Hash, View) {
        self.tip
    }

    /// The last height this engine's epoch orders.
    pub fn epoch_last_height(&self) -> Height {
        self.cfg
            .epoch_first_height
            .saturating_add(self.cfg.epoch_length.max(1) - 1)
    }

    pub fn has_ended(&self) -> bool {
        self.ended
    }

    /// Whether the chain is likely past this engine's epoch: it heard a message of a later
    /// epoch since it last asked for sync (an unverified hint), or its epoch ended through a
    /// sync response (it was catching up when the epoch's last block came).
    pub fn is_behind(&self) -> bool {
        self.behind
    }

    /// The highest view each validator (by index) was heard voting in, from votes whose
    /// signatures this engine verified; the finalized tip's view for one not heard since.
    pub fn last_heard(&self) -> &[View] {
        &self.last_heard
    }

    /// The view of a quorum-certified finalization above the tip that this engine cannot
    /// connect to its chain yet: while `Some`, it is syncing toward that view. Only a
    /// certificate sets it, so f Byzantine validators cannot.
    pub fn sync_target(&self) -> Option<View> {
        self.pending_finalization.map(|(view, _)| view)
    }

    pub fn leader(&self, view: View) -> u16 {
        self.cfg.validators.leader(view)
    }

    /// The key the leader of `view` signs with, which its proposal's header must name.
    fn leader_key(&self, view: View) -> Option<&keel_types::PublicKey> {
        self.cfg.validators.key(self.leader(view))
    }

    fn me(&self) -> Option<u16> {
        self.cfg.me.as_ref().map(|(i, _)| *i)
    }

    fn view_mut(&mut self, view: View) -> &mut ViewState {
        self.views.entry(view).or_default()
    }

    fn vote(&self, view: View, kind: VoteKind, block: Hash) -> Vote {
        Vote {
            chain_id: self.cfg.chain_id,
            epoch: self.cfg.validators.epoch,
            view,
            kind,
            block,
        }
    }

    fn sign(&self, vote: Vote) -> Option<SignedVote> {
        let (index, key) = self.cfg.me.as_ref()?;
        Some(SignedVote {
            vote,
            signer: *index,
            signature: key.sign(&vote.signing_hash().0),
        })
    }

    /// Feeds one input; returns the actions to carry out, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        if self.ended {
            // Done ordering; still serve what lagging peers ask for.
            if let Input::Message { from, message } = input {
                if matches!(
                    message,
                    Message::SyncRequest { .. } | Message::BlockRequest(_)
                ) {
                    self.on_message(from, message);
                }
            }
            return std::mem::take(&mut self.actions);
        }
        match input {
            Input::Start => {
                self.recount_own_votes();
                self.start_view();
            }
            Input::Message { from, message } => self.on_message(from, message),
            Input::Timeout { view } => self.on_timeout(view),
            Input::Proposal { view, block } => self.on_built(view, block),
            Input::Verified { view, block, valid } => self.on_verified(view, block, valid),
            Input::CatchUp => self.request_sync(None),
        }
        std::mem::take(&mut self.actions)
    }

    /// This validator's own signed votes for unfinalized views, from its safety state
    /// (restored from the vote log after a restart). Signing is deterministic, so these are
    /// the very votes it sent before.
    fn own_votes(&self, from_view: View) -> Vec<SignedVote> {
        let mut votes = Vec::new();
        let floor = from_view.max(self.tip.2.saturating_add(1));
        for (&view, state) in self.views.range(floor..) {
            let mut unsigned = Vec::new();
            if let Some(block) = state.my_notarize {
                unsigned.push(self.vote(view, VoteKind::Notarize, block));
            }
            if state.my_nullify {
                unsigned.push(self.vote(view, VoteKind::Nullify, Hash::ZERO));
            }
            if let Some(block) = state.my_finalize {
                unsigned.push(self.vote(view, VoteKind::Finalize, block));
            }
            votes.extend(unsigned.into_iter().filter_map(|v| self.sign(v)));
        }
        votes
    }

    /// After a restart the tallies are empty: count our own logged votes again, so the
    /// certificates they belong to can re-form when peers re-send theirs.
    fn recount_own_votes(&mut self) {
        for vote in self.own_votes(0) {
            let already = self
                .views
                .get(&vote.vote.view)
                .is_some_and(|s| match vote.vote.kind {
                    VoteKind::Notarize => s.notarizes.contains_key(&vote.signer),
                    VoteKind::Finalize => s.finalizes.contains_key(&vote.signer),
                    VoteKind::Nullify => s.nullifies.contains_key(&vote.signer),
                });
            if !already {
                self.record_vote(vote);
            }
        }
    }

    fn timeout_ms(&self) -> u64 {
        let factor = 1u64 << self.nullified_streak.min(16);
        self.cfg
            .timeout_base_ms
            .saturating_mul(factor)
            .min(self.cfg.timeout_max_ms)
    }

    fn start_view(&mut self) {
        let view = self.view;
        self.actions.push(Action::SetTimer {
            view,
            after_ms: self.timeout_ms(),
        });
        // Skip a leader that has been silent for a while: nullify at once instead of
        // waiting out the timer (liveness under crashed leaders).
        let leader = self.leader(view);
        let heard = self.last_heard.get(usize::from(leader)).copied();
        let silent = view.saturating_sub(heard.unwrap_or(view));
        if silent > self.cfg.skip_after_views && Some(leader) != self.me() {
            self.nullify(view);
        }
        self.try_propose();
        self.fetch_backed(view, None);
        self.try_verify(view);
    }

    fn enter_view(&mut self, view: View, after_nullification: bool) {
        if view <= self.view {
            return;
        }
        self.nullified_streak = if after_nullification {
            self.nullified_streak.saturating_add(1)
        } else {
            0
        };
        self.view = view;
        self.gc();
        self.start_view();
    }

    /// Drops views below the finalized tip's view, and blocks that cannot descend from the
    /// tip: at or below its height, or proposed in its view or earlier (views strictly
    /// increase along a chain), so proposals of nullified views go once a later block is final.
    fn gc(&mut self) {
        let floor = self.tip.2;
        self.views = self.views.split_off(&floor);
        let (tip_height, tip_hash, tip_view) = self.tip;
        self.blocks.retain(|h, b| {
            (b.header.height > tip_height && b.header.view > tip_view) || *h == tip_hash
        });
        self.forget_block_sizes();
    }

    /// Whether a certificate this engine holds names `hash` (such a block is always kept).
    fn named_by_certificate(&self, hash: &Hash) -> bool {
        self.views.values().any(|s| {
            [&s.notarization, &s.finalization]
                .into_iter()
                .flatten()
                .any(|c| c.vote.block == *hash)
        })
    }

    /// Rule PARENT: the parent for a proposal or vote in `view` is the block notarized in the
    /// highest earlier view u such that every view in (u, view) has a nullification, or the
    /// finalized tip if all views since it are nullified. `None` while that is not yet known.
    fn parent_for(&self, view: View) -> Option<(Hash, View)> {
        let mut u = view.checked_sub(1)?;
        loop {
            if u <= self.tip.2 {
                return Some((self.tip.1, self.tip.2));
            }
            let state = self.views.get(&u)?;
            if let Some(cert) = &state.notarization {
                return Some((cert.vote.block, u));
            }
            state.nullification.as_ref()?;
            u -= 1;
        }
    }

    fn block_height(&self, hash: &Hash) -> Option<Height> {
        if *hash == self.tip.1 {
            return Some(self.tip.0);
        }
        self.blocks.get(hash).map(|b| b.header.height)
    }

    /// Rule NULLIFY: on timeout, nullify the current view unless this validator already
    /// signed finalize for it (then the view is notarized and over).
    fn nullify(&mut self, view: View) {
        let epoch = self.cfg.validators.epoch;
        let state = self.view_mut(view);
        let (finalized, nullified) = (state.my_finalize.is_some(), state.my_nullify);
        if finalized {
            return;
        }
        let Some(vote) = self.sign(self.vote(view, VoteKind::Nullify, Hash::ZERO)) else {
            return; // an observer signs nothing
        };
        if !nullified {
            self.view_mut(view).my_nullify = true;
            self.actions
                .push(Action::Persist(VoteRecord::Nullified { epoch, view }));
        }
        self.actions.push(Action::Broadcast(Message::Vote(vote)));
        self.record_vote(vote);
    }

    fn on_timeout(&mut self, view: View) {
        if view != self.view {
            return;
        }
        self.nullify(view);
        // Re-send what peers may have missed on a lossy network or while down: our own votes
        // for recent unfinalized views (the nullify for this view was just sent), the certificates that justify this view's parent (the parent's
        // notarization and the nullifications after it — bounded by the views since the
        // parent), and the newest finalization so laggards sync.
        for vote in self.own_votes(view.saturating_sub(MAX_RESEND_VIEWS)) {
            if !(vote.vote.view == view && vote.vote.kind == VoteKind::Nullify) {
                self.actions.push(Action::Broadcast(Message::Vote(vote)));
            }
        }
        let mut justification = Vec::new();
        let mut u = view;
        while u > self.tip.2.saturating_add(1) {
            u -= 1;
            let Some(state) = self.views.get(&u) else {
                break;
            };
            if let Some(cert) = &state.notarization {
                justification.push(cert.clone());
                break;
            }
            match &state.nullification {
                Some(cert) => justification.push(cert.clone()),
                None => break,
            }
        }
        justification.extend(
            self.latest_finalization
                .clone()
                .or_else(|| self.restart_finalization.clone()),
        );
        for cert in justification {
            self.actions
                .push(Action::Broadcast(Message::Certificate(cert)));
        }
        if self.pending_finalization.is_some() || self.behind {
            self.behind = false;
            self.request_sync(None);
        }
        // Re-arm only if still in this view: the nullify above may have completed the view's
        // nullification and entered the next view, which armed its own timer. Arming the
        // old view's after it would replace it in a driver's single timer slot, and the
        // stale timeout is ignored, so nothing would ever time the new view out.
        if self.view == view {
            self.actions.push(Action::SetTimer {
                view,
                after_ms: self.timeout_ms(),
            });
        }
    }

    fn on_message(&mut self, from: u16, message: Message) {
        if usize::from(from) >= self.cfg.validators.len() {
            return;
        }
        let epoch = match &message {
            Message::Propose { vote, .. } | Message::Vote(vote) => Some(vote.vote.epoch),
            Message::Certificate(cert) => Some(cert.vote.epoch),
            _ => None,
        };
        if epoch.is_some_and(|e| e > self.cfg.validators.epoch) {
            // Unverifiable here (another epoch's set), but a cheap hint that the chain moved
            // on: sync on the next timeout. A liar can only make us ask, at timer rate.
            self.behind = true;
            return;
        }
        match message {
            Message::Propose { block, vote } => self.on_propose(block, vote),
            Message::Vote(vote) => {
                if self.check_vote(&vote) == VoteCheck::New {
                    self.record_vote(vote);
                }
            }
            Message::Certificate(cert) => self.on_certificate(from, cert),
            Message::BlockRequest(hash) => {
                if let Some(block) = self.blocks.get(&hash) {
                    self.actions.push(Action::Send {
                        to: from,
                        message: Message::BlockResponse(block.clone()),
                    });
                }
            }
            Message::BlockResponse(block) => self.on_block(block),
            Message::SyncRequest { from_height } => {
                self.actions.push(Action::ServeSync {
                    to: from,
                    from_height,
                });
            }
            Message::SyncResponse {
                blocks,
                headers,
                finalization,
            } => self.on_sync(from, blocks, headers, finalization),
            // Nothing to order: the driver reports it to the operator.
            Message::SyncPruned { .. } => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VoteCheck {
    Invalid,
    New,
    AlreadyCounted,
}
