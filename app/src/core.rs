//! The application's half of every protocol step, as a state machine: it runs the sans-IO
//! consensus engine and carries out its actions (persist the vote before sending, broadcast,
//! timers, build and verify proposals, commit finalized blocks, serve sync), and halts for
//! good if the network finalizes a root this node cannot reproduce.
//!
//! It owns no socket, timer or clock. The time comes in through [`Host::now`]; the caller
//! reads [`App::next_deadline_ms`] to know when to call [`App::on_deadline`], and carries
//! out what the app asks of the outside world through [`Host`] — the node's driver
//! over the vote-log file, p2p and the shared mempool; the simulator over memory and a
//! simulated network. Verification needs only the parent's execution, never its finality
//! (chain.rs): a proposal is executed before the vote for it, so its root is ready for the
//! next proposal while the finalize round is in flight.

use crate::admit::{ProposalWindow, RequestedBlocks, MAX_VIEWS_AHEAD};
use crate::chain::{Chain, ChainError};
use crate::mempool::AdmitError;
use crate::next_epoch::{message_epoch, NextEpoch};
use crate::propose::ProposalSlot;
use crate::sync;
use crate::validity::{check, check_finalized, BlockRules, EpochBounds, Verdict};
use crate::voted::VotedBlocks;
use keel_consensus::{Action, Config, Engine, Input, Message, ValidatorSet, VoteRecord};
use keel_state::StateView;
use keel_store::CommitInfo;
use keel_types::limits::MAX_BLOCK_BYTES;
use keel_types::{
    Block, Certificate, Hash, Height, PublicKey, Receipt, SecretKey, SignedTransaction, View,
};
use std::collections::{BTreeMap, VecDeque};

/// Proposals waiting for their parent's chain to become known.
pub const MAX_DEFERRED_VERIFICATIONS: usize = 64;
/// Retry interval when a proposal's parent is not executable yet.
const BUILD_RETRY_MS: u64 = 50;
/// Shortest pause between two looks at the pool while a leader waits for transactions.
const MIN_POOL_POLL_MS: u64 = 5;
/// How often a validator that cannot catch up (its peers pruned what it needs) says so.
const PRUNED_WARNING_EVERY_MS: u64 = 30_000;
/// Bytes of a block left for the header and framing.
const BLOCK_BYTES_MARGIN: usize = 64 * 1024;
/// Sync answers to one peer outside the set: at most `NON_MEMBER_SYNC_BURST` at once, then
/// one per `MIN_NON_MEMBER_SYNC_MS` on average. The burst lets an observer ask again at once
/// when a response ends an epoch or leaves more (an answer covers one epoch at most); a
/// strict interval made it wait a view timeout per short epoch, slower than the chain grew.
pub const MIN_NON_MEMBER_SYNC_MS: u64 = 100;
pub const NON_MEMBER_SYNC_BURST: u64 = 8;
/// Sync answers to all peers outside the set together: a burst of
/// `NON_MEMBER_SYNC_BURST_ALL`, then one per `MIN_NON_MEMBER_SYNC_ALL_MS` (50 a second).
/// Without it every registered key and guest had its own allowance (found by review).
pub const MIN_NON_MEMBER_SYNC_ALL_MS: u64 = 20;
pub const NON_MEMBER_SYNC_BURST_ALL: u64 = 16;
/// Guests (peers the p2p table does not know: unregistered keys) draw on their own shared
/// allowance instead: a burst of `NON_MEMBER_SYNC_BURST`, then one per
/// `MIN_NON_MEMBER_SYNC_MS` for all of them together, so strangers cannot use up what
/// registered non-members get (found by review).
pub const MIN_GUEST_SYNC_ALL_MS: u64 = MIN_NON_MEMBER_SYNC_MS;

/// Views without a finalization after which the engine skips ahead on evidence.
const SKIP_AFTER_VIEWS: u64 = 20;

/// Time as the caller gives it: wall-clock milliseconds for block timestamps (and their
/// bounds), a monotonic millisecond clock for timers. The simulator passes simulated time
/// for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub wall_ms: u64,
    pub mono_ms: u64,
}

/// The application's parameters.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub chain_id: u64,
    pub epoch_length: u64,
    /// The peer table: the validators the p2p layer knows, by peer index (`Host::send`'s
    /// `to`, `on_message`'s `from`). The app maps each epoch's set onto it by key.
    pub validators: Vec<PublicKey>,
    pub timeout_base_ms: u64,
    pub timeout_max_ms: u64,
    /// The idle heartbeat: a leader with no transactions proposes an empty block this long
    /// after its parent's timestamp.
    pub block_time_ms: u64,
    /// A leader with transactions proposes this long after its parent's timestamp (at once
    /// if that has passed): blocks follow load instead of a fixed clock. At most
    /// `block_time_ms`; equal to it restores fixed-interval blocks.
    pub min_block_interval_ms: u64,
    pub max_block_txs: usize,
    pub block_gas_limit: u64,
    /// The p2p frame limit (every validator is assumed to run the same or larger): a block
    /// must fit in one frame.
    pub max_frame_bytes: usize,
}

/// Limits of one mempool selection for a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectLimits {
    pub max_txs: usize,
    pub max_bytes: usize,
    pub max_gas: u64,
}

/// A block this node committed, with what the commit produced.
#[derive(Debug, Clone)]
pub struct Committed {
    pub block: Block,
    pub info: CommitInfo,
    pub receipts: Vec<Receipt>,
}

/// Why a vote could not be made durable (the host's own error, boxed: a file, memory).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PersistError(pub Box<dyn std::error::Error + Send + Sync>);

/// What the app asks of the outside world. Each call happens at the point of the protocol
/// step that needs it, in order.
pub trait Host {
    /// The time now. Read at each point the app needs it, so a long call (a sync response
    /// that executes many blocks) does not set timers or bound timestamps with the time the
    /// call began.
    fn now(&self) -> Now;
    /// Makes `record` durable before anything later leaves this node. `Err` halts the app,
    /// and nothing after it is sent: a restart could otherwise sign a conflicting vote.
    fn persist(&mut self, record: &VoteRecord) -> Result<(), PersistError>;
    fn broadcast(&mut self, message: Message);
    fn send(&mut self, to: u16, message: Message);
    /// Transactions for a proposal, valid on `state` (the mempool's selection).
    fn select(
        &mut self,
        state: &dyn StateView,
        limits: SelectLimits,
    ) -> Result<Vec<SignedTransaction>, AdmitError>;
    /// Transactions a proposal left out because they cannot be charged (drop them).
    fn uncharged(&mut self, hashes: &[Hash]);
    /// Whether the pool holds transactions a proposal could include (a leader waiting out
    /// the idle heartbeat proposes as soon as it does).
    fn has_pending(&mut self) -> bool;
    /// A block was committed to the store.
    fn committed(&mut self, committed: Committed);
    /// A peer's message was dropped before the engine saw it (for metrics).
    fn rejected(&mut self, from: u16, reason: &'static str, detail: Option<&'static str>);
    /// A new epoch began.
    fn epoch_started(&mut self, epoch: u64);
    /// The app halted for good.
    fn halted(&mut self, reason: &str);
}

#[derive(Debug, Clone)]
struct BuildRequest {
    view: View,
    parent: Hash,
    height: Height,
    epoch: u64,
    empty: bool,
    /// Monotonic time by which the block is built even with nothing to include (the
    /// heartbeat); `None` until it is scheduled against an executed parent.
    heartbeat_at_ms: Option<u64>,
}

/// The height of the first block in `message` whose body does not match its header's
/// `tx_root`, if any. Every block a peer sends (a proposal, a fetched block, a sync response)
/// goes through this before anything else sees it.
pub fn unbound_body(message: &Message) -> Option<Height> {
    let blocks: &[Block] = match message {
        Message::Propose { block, .. } | Message::BlockResponse(block) => {
            std::slice::from_ref(block)
        }
        Message::SyncResponse { blocks, .. } => blocks,
        _ => &[],
    };
    blocks
        .iter()
        .find(|b| !crate::chain::body_matches_header(b))
        .map(|b| b.header.height)
}

fn engine_config(
    cfg: &AppConfig,
    key: &SecretKey,
    tip: (Height, Hash, View),
    set: ValidatorSet,
) -> Config {
    let epoch = set.epoch;
    let me = set
        .index_of(&key.public_key())
        .map(|index| (index, key.clone()));
    Config {
        chain_id: cfg.chain_id,
        validators: set,
        me,
        finalized_tip: tip,
        timeout_base_ms: cfg.timeout_base_ms,
        timeout_max_ms: cfg.timeout_max_ms,
        skip_after_views: SKIP_AFTER_VIEWS,
        max_views_ahead: MAX_VIEWS_AHEAD,
        epoch_length: cfg.epoch_length,
        epoch_first_height: epoch * cfg.epoch_length + 1,
    }
}

/// The validator set of the epoch after the finalized tip `tip_height` (epoch e orders
/// heights e·L+1 ..= (e+1)·L), as the registry fixed it in state (docs/validators.md).
fn set_after(
    chain: &Chain,
    epoch_length: u64,
    tip_height: Height,
) -> Result<ValidatorSet, ChainError> {
    let epoch = tip_height / epoch_length;
    let view = chain.store().latest_view();
    let stored = keel_runtime::validators::read_epoch_set(&view, epoch)?.ok_or_else(|| {
        ChainError::State(keel_state::StateError::Corrupt(format!(
            "state at height {tip_height} holds no validator set for epoch {epoch} (a data \
             directory from before the validator registry: start from a fresh --home)"
        )))
    })?;
    Ok(ValidatorSet::weighted(
        epoch,
        stored.keys(),
        stored.powers(),
    ))
}

/// One validator's application: the consensus engine and the chain it orders.
#[derive(Debug)]
pub struct App {
    cfg: AppConfig,
    key: SecretKey,
    engine: Engine,
    chain: Chain,
    /// The view timer: monotonic deadline and view.
    timer: Option<(u64, View)>,
    build: Option<(u64, BuildRequest)>,
    /// When the last "peers pruned what this node needs" error was logged (monotonic ms).
    pruned_warned: Option<u64>,
    deferred: BTreeMap<View, Block>,
    /// Proposals admitted to the block cache per view (admit.rs).
    proposals: ProposalWindow,
    /// Blocks this node asked for: the only block responses it stores.
    requested: RequestedBlocks,
    /// The next epoch's consensus messages, replayed when this epoch ends (next_epoch.rs).
    next_epoch: NextEpoch,
    /// Per peer outside the set, when its sync answers are paid up: the last answer's
    /// time plus `MIN_NON_MEMBER_SYNC_MS` per answer since (monotonic ms; a token bucket in
    /// its GCRA form; at most one entry per peer index).
    sync_served: BTreeMap<u16, u64>,
    /// The same for all table peers outside the set together, and for all guests.
    sync_served_all: Option<u64>,
    sync_served_guests: Option<u64>,
    to_execute: Vec<Hash>,
    inputs: VecDeque<Input>,
    halted: Option<String>,
    /// The blocks this validator voted for above the finalized tip, on disk (voted.rs).
    voted: VotedBlocks,
    /// Vote-log records of epochs after the engine's, handed to each epoch's engine as the
    /// chain reaches it (see [`App::new`]).
    later_votes: Vec<VoteRecord>,
}

impl App {
    /// The app over `chain`, its engine restored from the vote log's `restored` records.
    pub fn new(
        cfg: AppConfig,
        key: SecretKey,
        mut chain: Chain,
        restored: &[VoteRecord],
    ) -> Result<App, ChainError> {
        let tip = engine_tip(&chain)?;
        let set = set_after(&chain, cfg.epoch_length, tip.0)?;
        let mut engine = Engine::new(engine_config(&cfg, &key, tip, set), restored);
        let voted = VotedBlocks::restore(chain.store(), tip.0, &mut engine)?;
        let store = chain.store().clone();
        match sync::finalization_of(&store, tip.0, cfg.epoch_length) {
            Ok(Some(cert)) => {
                engine.seed_finalization(cert);
            }
            Ok(None) => {}
            // Only what this node re-sends on timeouts: a record it cannot read must not
            // stop it from starting.
            Err(e) => {
                tracing::warn!(error = %e, height = tip.0, "cannot read the tip's finalization")
            }
        }
        repair_epoch_change(&store, tip.0, cfg.epoch_length);
        // Executable again as a parent: the next proposal may build on a restored block.
        for hash in voted.hashes() {
            if let Some(block) = engine.block(&hash) {
                chain.remember_with(block, &|h| engine.holds(h), true);
            }
        }
        // Records of epochs after the tip's: this validator voted there before its state
        // went back (a store re-synced, or a snapshot restored below its last votes). They
        // bind it again when it replays those epochs.
        let later_votes = restored
            .iter()
            .filter(|r| r.epoch() > engine.epoch())
            .copied()
            .collect();
        Ok(App {
            later_votes,
            cfg,
            key,
            engine,
            chain,
            timer: None,
            build: None,
            pruned_warned: None,
            deferred: BTreeMap::new(),
            proposals: ProposalWindow::default(),
            requested: RequestedBlocks::default(),
            next_epoch: NextEpoch::default(),
            sync_served: BTreeMap::new(),
            sync_served_all: None,
            sync_served_guests: None,
            to_execute: Vec::new(),
            inputs: VecDeque::new(),
            halted: None,
            voted,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// When [`App::on_deadline`] is next due (monotonic ms), if ever.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        [self.timer.map(|t| t.0), self.build.as_ref().map(|b| b.0)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Starts the engine (first view, or the restored one).
    pub fn start(&mut self, host: &mut dyn Host) {
        self.push(Input::Start);
        self.drain(host);
    }

    /// A consensus message from validator `from`.
    pub fn on_message(&mut self, from: u16, message: Message, host: &mut dyn Host) {
        if self.halted.is_some() {
            return;
        }
        self.admit_message(from, message, host);
        self.drain(host);
    }

    /// Fires whatever deadline has passed.
    pub fn on_deadline(&mut self, host: &mut dyn Host) {
        let now = host.now();
        if let Some((at, view)) = self.timer {
            if at <= now.mono_ms {
                self.timer = None;
                self.push(Input::Timeout { view });
            }
        }
        if self
            .build
            .as_ref()
            .is_some_and(|(at, _)| *at <= now.mono_ms)
        {
            if let Some((_, request)) = self.build.take() {
                self.build_due(request, host);
            }
        }
        self.drain(host);
    }

    fn admit_message(&mut self, from: u16, message: Message, host: &mut dyn Host) {
        if let Some(height) = unbound_body(&message) {
            // The peer paired a header with a body it does not commit: drop the whole
            // message before the engine, the chain or execution sees any of it.
            host.rejected(from, "body_mismatch", None);
            tracing::warn!(
                peer = from,
                height,
                "dropping a message whose block body does not match its header"
            );
            return;
        }
        let Some(member) = self.member_of_peer(from) else {
            // A peer outside this epoch's set (it left, or is not in yet) has no vote here;
            // it may still catch up from this node.
            match message {
                Message::SyncRequest { from_height } => {
                    // A request costs this thread up to a full response's reads (found by
                    // review): a burst, then one answer per MIN_NON_MEMBER_SYNC_MS.
                    let now_ms = host.now().mono_ms;
                    let peer = crate::rate::within_rate(
                        self.sync_served.get(&from).copied(),
                        now_ms,
                        MIN_NON_MEMBER_SYNC_MS,
                        NON_MEMBER_SYNC_BURST,
                    );
                    let guest = usize::from(from) >= self.cfg.validators.len();
                    let (shared, interval_ms, burst) = if guest {
                        (
                            &mut self.sync_served_guests,
                            MIN_GUEST_SYNC_ALL_MS,
                            NON_MEMBER_SYNC_BURST,
                        )
                    } else {
                        (
                            &mut self.sync_served_all,
                            MIN_NON_MEMBER_SYNC_ALL_MS,
                            NON_MEMBER_SYNC_BURST_ALL,
                        )
                    };
                    let all = crate::rate::within_rate(*shared, now_ms, interval_ms, burst);
                    if let (Some(peer), Some(all)) = (peer, all) {
                        *shared = Some(all);
                        self.sync_served.insert(from, peer);
                        self.serve_sync(from, from_height, host);
                    } else {
                        host.rejected(from, "sync_rate", None);
                    }
                }
                m if message_epoch(&m) == Some(self.engine.epoch().saturating_add(1))
                    && self.next_epoch.non_member_room()
                    && self.signed_by_peer(from, &m) =>
                {
                    // Possibly a member of the next set.
                    let next = self.engine.epoch().saturating_add(1);
                    let peers = self.cfg.validators.len();
                    self.next_epoch.hold_from(next, (peers, from, false), &m);
                }
                _ => host.rejected(from, "not_in_set", None),
            }
            return;
        };
        let next = self.engine.epoch().saturating_add(1);
        if message_epoch(&message) == Some(next) {
            // Held for the next engine; this one only takes it as its hint to sync.
            if self.signed_by_peer(from, &message) {
                self.next_epoch
                    .hold(next, self.cfg.validators.len(), from, &message);
            }
            self.push(Input::Message {
                from: member,
                message,
            });
            return;
        }
        match &message {
            Message::Propose { block, vote } => {
                // Only the view's leader's signed proposals, a bounded number per view, may
                // take room in the block cache (admit.rs); the rest never reach the engine.
                let leader = self.engine.leader(vote.vote.view);
                let admitted = self.proposals.admit(
                    block,
                    vote,
                    &self.engine.validators().keys,
                    leader,
                    self.engine.finalized_tip().2,
                    self.engine.view(),
                    self.engine.epoch(),
                );
                if let Err(refusal) = admitted {
                    host.rejected(from, "proposal", Some(refusal.label()));
                    tracing::debug!(peer = from, %refusal, "dropping a proposal");
                    return;
                }
                let engine = &self.engine;
                self.chain.remember_with(block, &|h| engine.holds(h), false);
                self.retry_deferred(host);
            }
            Message::BlockResponse(block) => {
                if !self.requested.contains(&block.hash()) {
                    host.rejected(from, "unsolicited_block", None);
                    return;
                }
                let engine = &self.engine;
                self.chain.remember_with(block, &|h| engine.holds(h), false);
                self.retry_deferred(host);
            }
            Message::SyncPruned {
                from_height,
                oldest_retained,
            } => {
                let now_ms = host.now().mono_ms;
                if self
                    .pruned_warned
                    .is_none_or(|at| now_ms >= at + PRUNED_WARNING_EVERY_MS)
                {
                    self.pruned_warned = Some(now_ms);
                    tracing::error!(
                        peer = from,
                        from_height,
                        oldest_retained,
                        "cannot catch up from this peer: it pruned the blocks this node needs \
                         (block sync only; no state sync yet). Copy the data directory of a \
                         synced validator, or sync from an archive node (storage.retain_heights = 0)"
                    );
                }
                return;
            }
            _ => {}
        }
        self.push(Input::Message {
            from: member,
            message,
        });
    }

    /// The p2p layer's peer table grew (newly registered validators): `peers` must extend
    /// the current table, index for index.
    pub fn set_peers(&mut self, peers: Vec<PublicKey>) {
        if peers.len() < self.cfg.validators.len() || !peers.starts_with(&self.cfg.validators) {
            tracing::error!("the p2p table does not extend the app's; ignored");
            return;
        }
        self.cfg.validators = peers;
    }

    /// Whether a next-epoch `message` from `peer` may be held: a vote or proposal its own
    /// key signed (one signature check; the next set, and so the sender's index in it, is
    /// not known yet), or a certificate from a member of this epoch. Anyone else could fill
    /// the bounded hold with junk and crowd out the honest next-epoch messages (found by
    /// review).
    fn signed_by_peer(&self, peer: u16, message: &Message) -> bool {
        match message {
            Message::Propose { vote, .. } | Message::Vote(vote) => self
                .cfg
                .validators
                .get(usize::from(peer))
                .is_some_and(|key| vote.verify(key).is_ok()),
            Message::Certificate(_) => self.member_of_peer(peer).is_some(),
            _ => false,
        }
    }

    /// The index in this epoch's set of peer `peer`, if it is a member.
    fn member_of_peer(&self, peer: u16) -> Option<u16> {
        let key = self.cfg.validators.get(usize::from(peer))?;
        self.engine.validators().index_of(key)
    }

    /// The peer index of member `member` of this epoch's set, if the p2p layer knows it.
    fn peer_of_member(&self, member: u16) -> Option<u16> {
        let key = self.engine.validators().key(member)?;
        let peer = self.cfg.validators.iter().position(|k| k == key)?;
        u16::try_from(peer).ok()
    }

    fn push(&mut self, input: Input) {
        self.inputs.push_back(input);
    }

    /// Feeds queued inputs to the engine and carries out the actions, then executes the
    /// blocks voted for.
    fn drain(&mut self, host: &mut dyn Host) {
        loop {
            while let Some(input) = self.inputs.pop_front() {
                if self.halted.is_some() {
                    self.inputs.clear();
                    return;
                }
                // A block the cache refused on arrival (it ranks last until the engine holds
                // it) but the engine kept is never sent again: keep the engine's copy, or a
                // child of it could never execute (found by review).
                let arriving = match &input {
                    Input::Message {
                        message: Message::Propose { block, .. } | Message::BlockResponse(block),
                        ..
                    } if !self.chain.knows(&block.hash()) => Some(block.clone()),
                    _ => None,
                };
                let actions = self.engine.handle(input);
                if let Some(block) = arriving {
                    if self.engine.holds(&block.hash()) {
                        let engine = &self.engine;
                        self.chain.remember_with(&block, &|h| engine.holds(h), true);
                    }
                }
                // An epoch's suffix proof before its last block's commit (a crash between
                // them must not leave the block without the proof; see on_finalized).
                for action in &actions {
                    if let Action::EpochEnded {
                        epoch,
                        suffix: Some((headers, cert)),
                        ..
                    } = action
                    {
                        let store = self.chain.store();
                        if let Err(e) = sync::put_epoch_suffix(store, *epoch, headers, cert) {
                            tracing::warn!(error = %e, epoch, "cannot record the epoch's suffix proof");
                        }
                    }
                }
                // Stop at the first action after which the app halted: a vote the log could
                // not make durable must not leave, nor anything after it.
                for action in actions {
                    if self.halted.is_some() {
                        break;
                    }
                    self.perform(action, host);
                }
            }
            let hashes = std::mem::take(&mut self.to_execute);
            if hashes.is_empty() || self.halted.is_some() {
                return;
            }
            for hash in hashes {
                if let Err(e) = self.chain.execute(&hash) {
                    self.halt(format!("executing block {hash}: {e}"), host);
                    return;
                }
            }
            self.retry_deferred(host);
        }
    }

    fn perform(&mut self, action: Action, host: &mut dyn Host) {
        match action {
            Action::Persist(record) => {
                let store = self.chain.store();
                if let Err(e) = self.voted.before_vote(store, &self.engine, &record) {
                    // Without its block on disk, the vote could outlive what it names.
                    return self.halt(format!("keeping a voted block: {e}"), host);
                }
                if let Err(e) = host.persist(&record) {
                    // Cannot make the vote durable: must not send it, nor any later vote.
                    self.halt(format!("vote log: {e}"), host);
                }
            }
            Action::Broadcast(message) => {
                match &message {
                    Message::Propose { block, .. } => {
                        let engine = &self.engine;
                        self.chain.remember_with(block, &|h| engine.holds(h), true);
                    }
                    Message::BlockRequest(hash) => self.requested.record(*hash),
                    _ => {}
                }
                host.broadcast(message);
            }
            Action::Send { to, message } => {
                if let Message::BlockRequest(hash) = &message {
                    self.requested.record(*hash);
                }
                let Some(to) = self.peer_of_member(to) else {
                    tracing::debug!(member = to, "no peer for a member of the set");
                    return;
                };
                host.send(to, message);
            }
            Action::SetTimer { view, after_ms } => {
                // Read now, not when the call began: a call that executed a long sync
                // response must not set the new view's timer in the past.
                self.timer = Some((host.now().mono_ms.saturating_add(after_ms), view));
            }
            Action::BuildProposal {
                view,
                parent,
                height,
                epoch,
                empty,
            } => self.schedule_build(
                BuildRequest {
                    view,
                    parent,
                    height,
                    epoch,
                    empty,
                    heartbeat_at_ms: None,
                },
                host,
            ),
            Action::Verify { view, block } => {
                let engine = &self.engine;
                self.chain.remember_with(&block, &|h| engine.holds(h), true);
                self.verify(view, block, host);
            }
            Action::Finalized { block, certificate } => self.on_finalized(block, certificate, host),
            Action::ServeSync { to, from_height } => {
                if let Some(to) = self.peer_of_member(to) {
                    self.serve_sync(to, from_height, host);
                }
            }
            Action::EpochEnded { epoch, tip, suffix } => {
                // What a node without history trusts (keel_getEpochProof). A node that
                // cannot build it still runs; it only cannot serve this epoch's change.
                let store = self.chain.store();
                if let Err(e) =
                    crate::epoch_proof::record(store, epoch, self.cfg.epoch_length, suffix)
                {
                    tracing::warn!(error = %e, epoch, "cannot record the epoch change proof");
                }
                tracing::info!(epoch, height = tip.0, "epoch ended");
                // The next set is in the state the epoch's last block committed. A live
                // transition has no vote records for the new epoch yet, but a validator
                // replaying epochs it voted in before its state went back has (`new` kept
                // them aside).
                let set = match set_after(&self.chain, self.cfg.epoch_length, tip.0) {
                    Ok(set) => set,
                    Err(e) => {
                        self.halt(format!("the next epoch's validator set: {e}"), host);
                        return;
                    }
                };
                tracing::info!(
                    epoch = set.epoch,
                    validators = set.len(),
                    power = %set.total_power(),
                    member = set.index_of(&self.key.public_key()).is_some(),
                    "validator set"
                );
                let (binding, later): (Vec<VoteRecord>, Vec<VoteRecord>) =
                    std::mem::take(&mut self.later_votes)
                        .into_iter()
                        .filter(|r| r.epoch() > epoch)
                        .partition(|r| r.epoch() == epoch + 1);
                self.later_votes = later;
                let behind = self.engine.is_behind();
                self.engine = Engine::new(engine_config(&self.cfg, &self.key, tip, set), &binding);
                self.build = None;
                self.deferred.clear();
                host.epoch_started(epoch + 1);
                self.push(Input::Start);
                if behind {
                    self.push(Input::CatchUp);
                }
                for (from, message) in self.next_epoch.take(epoch + 1) {
                    let honest = self.member_of_peer(from).is_some_and(|member| {
                        crate::next_epoch::sent_by(self.engine.validators(), member, &message)
                    });
                    if honest {
                        self.admit_message(from, message, host);
                    }
                }
            }
        }
    }

    fn serve_sync(&mut self, to: u16, from_height: Height, host: &mut dyn Host) {
        match sync::response(self.chain.store(), from_height, self.cfg.epoch_length) {
            Ok(Some(message)) => host.send(to, message),
            Ok(None) => {
                // Say so when the gap is ours (pruned), so the requester can tell its
                // operator rather than wait forever.
                let oldest_retained = self.chain.store().oldest_retained().unwrap_or(0);
                if from_height < oldest_retained {
                    let message = Message::SyncPruned {
                        from_height,
                        oldest_retained,
                    };
                    host.send(to, message);
                }
            }
            Err(e) => tracing::warn!(error = %e, from_height, "cannot serve sync"),
        }
    }

    fn schedule_build(&mut self, mut request: BuildRequest, host: &mut dyn Host) {
        let now = host.now();
        // Pace blocks: with transactions waiting, not before the parent's timestamp plus the
        // minimum interval; with none, an empty heartbeat at the parent's plus the block
        // time, checking the pool meanwhile. Never longer than the interval itself: clocks
        // disagree, and a leader whose clock is behind the parent's proposer's would
        // otherwise wait out the skew, past its own view timeout, and every view it leads
        // would fail (the full-stack simulator found liveness collapse at ±1.5 s of skew).
        // Its timestamp is then the parent's + 1, still valid.
        let parent_ms = match self.chain.parent_info(&request.parent) {
            Ok(Some(parent)) => parent.timestamp_ms,
            Ok(None) => {
                // Not executed yet: pace from its timestamp once it is.
                request.heartbeat_at_ms = None;
                self.build = Some((now.mono_ms.saturating_add(BUILD_RETRY_MS), request));
                return;
            }
            Err(e) => return self.halt(format!("executing the parent of a proposal: {e}"), host),
        };
        let after = |interval_ms: u64| {
            now.mono_ms.saturating_add(
                parent_ms
                    .saturating_add(interval_ms)
                    .saturating_sub(now.wall_ms)
                    .min(interval_ms),
            )
        };
        let min_interval_ms = self.cfg.min_block_interval_ms.min(self.cfg.block_time_ms);
        request.heartbeat_at_ms = Some(after(self.cfg.block_time_ms));
        let earliest_ms = after(min_interval_ms);
        self.build = Some((earliest_ms, request));
    }

    /// At a scheduled build: build now if the heartbeat is due, or if the pool has
    /// something a block on this parent can include (a transaction whose nonce is next
    /// after the parent's state; queued ones with a nonce gap or already in an unfinalized
    /// ancestor do not count, or anyone could keep every leader at the fast pace for free);
    /// otherwise look at the pool again after the minimum interval.
    fn build_due(&mut self, request: BuildRequest, host: &mut dyn Host) {
        let Some(heartbeat_at_ms) = request.heartbeat_at_ms else {
            return self.schedule_build(request, host);
        };
        let heartbeat = request.empty || host.now().mono_ms >= heartbeat_at_ms;
        if heartbeat || host.has_pending() {
            self.build_proposal(request, host, heartbeat);
        } else {
            self.wait_for_transactions(request, host);
        }
    }

    /// Looks at the pool again after the minimum interval (at the latest at the heartbeat).
    fn wait_for_transactions(&mut self, request: BuildRequest, host: &mut dyn Host) {
        let poll_ms = self.cfg.min_block_interval_ms.max(MIN_POOL_POLL_MS);
        let now_ms = host.now().mono_ms;
        let at = now_ms
            .saturating_add(poll_ms)
            .min(request.heartbeat_at_ms.unwrap_or(u64::MAX));
        self.build = Some((at, request));
    }

    /// `heartbeat`: build even with nothing to include.
    fn build_proposal(&mut self, request: BuildRequest, host: &mut dyn Host, heartbeat: bool) {
        if self.engine.view() > request.view {
            return; // the view moved on
        }
        let parent = match self.chain.parent_info(&request.parent) {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.build = Some((host.now().mono_ms.saturating_add(BUILD_RETRY_MS), request));
                return;
            }
            Err(e) => return self.halt(format!("executing the parent of a proposal: {e}"), host),
        };
        let transactions = if request.empty {
            Vec::new()
        } else {
            let limits = SelectLimits {
                max_txs: self.cfg.max_block_txs,
                // A block must fit in one frame the peers accept.
                max_bytes: MAX_BLOCK_BYTES.min(self.cfg.max_frame_bytes) - BLOCK_BYTES_MARGIN,
                max_gas: self.cfg.block_gas_limit,
            };
            match self
                .chain
                .with_state_after(&parent.hash, |state| host.select(state, limits))
            {
                Ok(Some(Ok(txs))) => txs,
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "mempool selection failed; proposing empty");
                    Vec::new()
                }
                Ok(None) => Vec::new(),
                Err(e) => return self.halt(format!("reading state for a proposal: {e}"), host),
            }
        };
        if transactions.is_empty() && !heartbeat {
            return self.wait_for_transactions(request, host);
        }
        let slot = ProposalSlot {
            chain_id: self.cfg.chain_id,
            view: request.view,
            height: request.height,
            epoch: request.epoch,
            proposer: self.key.public_key(),
        };
        // Validators refuse a block holding a transaction that cannot be charged: build
        // executes the candidate and leaves those out (and out of the pool: they would come
        // back).
        let built = crate::propose::build(
            &mut self.chain,
            &slot,
            &parent,
            transactions,
            host.now().wall_ms,
        );
        let (block, dropped) = match built {
            Ok(built) => built,
            Err(e) => return self.halt(format!("executing a proposal: {e}"), host),
        };
        if !dropped.is_empty() {
            tracing::debug!(
                dropped = dropped.len(),
                "left out transactions that cannot be charged"
            );
            host.uncharged(&dropped);
        }
        tracing::debug!(
            height = request.height,
            view = request.view,
            txs = block.transactions.len(),
            "proposing"
        );
        let engine = &self.engine;
        self.chain.remember_with(&block, &|h| engine.holds(h), true);
        self.to_execute.push(block.hash());
        self.push(Input::Proposal {
            view: request.view,
            block,
        });
    }

    fn verify(&mut self, view: View, block: Block, host: &mut dyn Host) {
        let rules = BlockRules {
            chain_id: self.cfg.chain_id,
            block_gas_limit: self.cfg.block_gas_limit,
        };
        let epoch = EpochBounds {
            epoch: self.engine.epoch(),
            last_height: self.engine.epoch_last_height(),
        };
        match check(&mut self.chain, &rules, epoch, host.now().wall_ms, &block) {
            Ok(Verdict::Valid) => {
                let hash = block.hash();
                self.to_execute.push(hash);
                self.push(Input::Verified {
                    view,
                    block: hash,
                    valid: true,
                });
            }
            Ok(Verdict::Invalid(reason)) => {
                tracing::warn!(view, height = block.header.height, %reason, "rejecting proposal");
                self.push(Input::Verified {
                    view,
                    block: block.hash(),
                    valid: false,
                });
            }
            Ok(Verdict::Deferred) => {
                if self.deferred.len() >= MAX_DEFERRED_VERIFICATIONS {
                    self.deferred.pop_first();
                }
                self.deferred.insert(view, block);
            }
            Err(e) => self.halt(format!("checking a proposal: {e}"), host),
        }
    }

    fn retry_deferred(&mut self, host: &mut dyn Host) {
        let pending = std::mem::take(&mut self.deferred);
        for (view, block) in pending {
            if view
                >= self
                    .engine
                    .view()
                    .saturating_sub(MAX_DEFERRED_VERIFICATIONS as u64)
            {
                self.verify(view, block, host);
            }
        }
    }

    fn on_finalized(
        &mut self,
        block: Block,
        certificate: Option<Certificate>,
        host: &mut dyn Host,
    ) {
        let height = block.header.height;
        // The header commits its parent's root: if the network finalized a root this node
        // did not compute, this node's state is wrong. Stop before committing on top of it.
        if let Err(e) = check_finalized(&mut self.chain, &block) {
            return self.halt(e.to_string(), host);
        }
        // The certificate first: a crash after the commit must not leave the block without
        // the proof a restarted node re-sends and serves (found by review). Written before
        // the block, it is a valid certificate of a block still to come.
        if let Some(cert) = &certificate {
            if let Err(e) = sync::put_certificate(self.chain.store(), height, cert) {
                tracing::warn!(error = %e, height, "cannot record the finalization certificate");
            }
        }
        let (info, receipts) = match self.chain.finalize(&block) {
            Ok(done) => done,
            Err(e) => return self.halt(format!("committing block {height}: {e}"), host),
        };
        self.proposals.prune(block.header.epoch, block.header.view);
        if let Err(e) = self.voted.finalized(self.chain.store(), height) {
            tracing::warn!(error = %e, height, "cannot drop the finalized voted blocks");
        }
        tracing::info!(height, txs = block.transactions.len(), root = %info.state_root, "finalized");
        host.committed(Committed {
            block,
            info,
            receipts,
        });
        self.retry_deferred(host);
    }

    /// Stops voting for good: no more engine inputs, timers or proposals.
    fn halt(&mut self, reason: String, host: &mut dyn Host) {
        if self.halted.is_some() {
            return;
        }
        tracing::error!(%reason, "HALTED: this node stops voting");
        host.halted(&reason);
        self.halted = Some(reason);
        self.inputs.clear();
        self.timer = None;
        self.build = None;
        self.deferred.clear();
    }
}

/// The change record of the epoch the tip ends, if the tip is an epoch's last block and a
/// crash came between its commit and the record (`Action::EpochEnded`): the proof is
/// rebuilt from the store, or the node would serve the epoch chain only up to the epoch
/// before, for good (found by review). Best effort: a node that cannot still runs.
fn repair_epoch_change(store: &keel_store::Store, tip: Height, epoch_length: u64) {
    if tip == 0 || epoch_length == 0 || !tip.is_multiple_of(epoch_length) {
        return;
    }
    let epoch = tip / epoch_length - 1;
    if crate::epoch_proof::changes(store, epoch, 1).is_ok_and(|c| !c.is_empty()) {
        return;
    }
    let suffix = sync::epoch_suffix(store, epoch).ok().flatten();
    match crate::epoch_proof::record(store, epoch, epoch_length, suffix) {
        Ok(_) => tracing::info!(epoch, "rebuilt the epoch change record a crash left out"),
        Err(e) => tracing::warn!(error = %e, epoch, "cannot rebuild the epoch change record"),
    }
}

fn engine_tip(chain: &Chain) -> Result<(Height, Hash, View), ChainError> {
    let (height, hash) = chain.tip();
    if height == 0 {
        return Ok((0, hash, 0));
    }
    let block = chain.store().block(height)?.ok_or_else(|| {
        ChainError::State(keel_state::StateError::Corrupt(format!(
            "finalized block {height} missing from the store"
        )))
    })?;
    Ok((height, hash, block.header.view))
}
