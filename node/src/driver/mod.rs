//! The consensus driver: runs the sans-IO engine, carries out its actions (persist the vote
//! log before sending, broadcast, timers, build and verify proposals, commit finalized
//! blocks), and halts loudly if the network finalizes a root this node cannot reproduce.
//!
//! It runs on its own thread (execution is CPU work and must not stall network tasks).
//! Verification needs only the parent's execution, never its finality (see chain.rs). It
//! executes a proposal before voting for it (every transaction must be charged, charge.rs),
//! so its root is ready for the next proposal while the finalize round is still in flight,
//! and committing h on finality is one write of a diff already computed.

use crate::mempool::Mempool;
use crate::metrics as m;
use crate::shared::{FinalizedEvent, Shared};
use keel_app::propose::ProposalSlot;
use keel_app::validity::{BlockRules, EpochBounds, Verdict};
use keel_app::{admit, sync, Chain};
use keel_consensus::{Action, Config, Engine, FileVoteLog, Input, Message, ValidatorSet};
use keel_p2p::{Inbound, NetMessage, Network};
use keel_types::limits::MAX_BLOCK_BYTES;
use keel_types::{Block, Certificate, Hash, Height, PublicKey, SecretKey, View};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Fault injection for the halt test: a node started with this variable set to a height
/// writes one extra storage slot when it executes that height, so its state (and root)
/// diverges from the network's exactly as a nondeterminism bug would. Honoured only in
/// builds with debug assertions (the test profiles); see [`fault_diverge_height`].
pub const FAULT_DIVERGE_ENV: &str = "KEEL_FAULT_DIVERGE_AT_HEIGHT";
/// Proposals waiting for their parent's chain to become known.
pub const MAX_DEFERRED_VERIFICATIONS: usize = 64;
/// Retry interval when a proposal's parent is not executable yet.
const BUILD_RETRY_MS: u64 = 50;
/// How often a validator that cannot catch up (its peers pruned what it needs) says so.
const PRUNED_WARNING_EVERY: Duration = Duration::from_secs(30);
/// Bytes of a block left for the header and framing.
const BLOCK_BYTES_MARGIN: usize = 64 * 1024;

/// The height [`FAULT_DIVERGE_ENV`] asks this node to diverge at. Only builds with debug
/// assertions read it (the `ci` and `dev` profiles the halt test runs under): a release
/// binary ignores the variable, so no environment setting can make a production validator
/// corrupt its own state.
pub fn fault_diverge_height() -> Option<Height> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let value = std::env::var(FAULT_DIVERGE_ENV).ok()?;
    tracing::warn!(height = %value, "{FAULT_DIVERGE_ENV} is set: this node will diverge on purpose");
    value.parse().ok()
}

/// Wall-clock milliseconds. Used for proposal timestamps and their bounds check only; the
/// timestamp that execution sees is the one in the header.
pub fn now_ms() -> u64 {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub chain_id: u64,
    pub epoch_length: u64,
    pub validators: Vec<PublicKey>,
    pub me: u16,
    pub timeout_base_ms: u64,
    pub timeout_max_ms: u64,
    pub block_time_ms: u64,
    pub max_block_txs: usize,
    pub block_gas_limit: u64,
    /// The p2p frame limit (every validator is assumed to run the same or larger).
    pub max_frame_bytes: usize,
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
        .find(|b| !keel_app::body_matches_header(b))
        .map(|b| b.header.height)
}

/// Carries out one batch of engine actions in order and stops at the first action after
/// which the node is `halted`. The engine emits `Persist(vote)` before the `Broadcast` or
/// `Send` of that vote: if the vote log cannot make the vote durable, neither that vote nor
/// anything after it may leave, or a restart could sign a conflicting vote for the same view.
fn perform_in_order<S, A>(
    state: &mut S,
    actions: impl IntoIterator<Item = A>,
    perform: impl Fn(&mut S, A),
    halted: impl Fn(&S) -> bool,
) {
    for action in actions {
        if halted(state) {
            return;
        }
        perform(state, action);
    }
}

#[derive(Debug, Clone)]
struct BuildRequest {
    view: View,
    parent: Hash,
    height: Height,
    epoch: u64,
    empty: bool,
}

#[derive(Debug)]
pub struct Driver {
    cfg: DriverConfig,
    key: SecretKey,
    engine: Engine,
    votelog: FileVoteLog,
    chain: Chain,
    mempool: Arc<Mutex<Mempool>>,
    net: Network,
    shared: Arc<Shared>,
    timer: Option<(Instant, View)>,
    build: Option<(Instant, BuildRequest)>,
    /// When the last "peers pruned what this node needs" error was logged.
    pruned_warned: Option<Instant>,
    deferred: BTreeMap<View, Block>,
    /// Proposals admitted to the block cache per view (admit.rs).
    proposals: admit::ProposalWindow,
    /// Blocks this node asked for: the only block responses it stores.
    requested: admit::RequestedBlocks,
    to_execute: Vec<Hash>,
    inputs: VecDeque<Input>,
    halted: bool,
}

fn engine_config(cfg: &DriverConfig, key: &SecretKey, tip: (Height, Hash, View)) -> Config {
    // Epoch e orders heights e·L+1 ..= (e+1)·L; the next height after the tip decides.
    let epoch = tip.0 / cfg.epoch_length;
    Config {
        chain_id: cfg.chain_id,
        validators: ValidatorSet {
            epoch,
            keys: cfg.validators.clone(),
        },
        me: Some((cfg.me, key.clone())),
        finalized_tip: tip,
        timeout_base_ms: cfg.timeout_base_ms,
        timeout_max_ms: cfg.timeout_max_ms,
        skip_after_views: 20,
        max_views_ahead: admit::MAX_VIEWS_AHEAD,
        epoch_length: cfg.epoch_length,
        epoch_first_height: epoch * cfg.epoch_length + 1,
    }
}

impl Driver {
    pub fn new(
        cfg: DriverConfig,
        key: SecretKey,
        chain: Chain,
        votelog_path: &std::path::Path,
        mempool: Arc<Mutex<Mempool>>,
        net: Network,
        shared: Arc<Shared>,
    ) -> Result<Driver, String> {
        let (votelog, restored) = FileVoteLog::open(votelog_path).map_err(|e| e.to_string())?;
        let tip = Self::engine_tip(&chain)?;
        let engine = Engine::new(engine_config(&cfg, &key, tip), &restored);
        shared.update(|s| s.epoch = engine.epoch());
        metrics::gauge!(m::EPOCH).set(engine.epoch() as f64);
        Ok(Driver {
            cfg,
            key,
            engine,
            votelog,
            chain,
            mempool,
            net,
            shared,
            timer: None,
            build: None,
            pruned_warned: None,
            deferred: BTreeMap::new(),
            proposals: admit::ProposalWindow::default(),
            requested: admit::RequestedBlocks::default(),
            to_execute: Vec::new(),
            inputs: VecDeque::new(),
            halted: false,
        })
    }

    fn engine_tip(chain: &Chain) -> Result<(Height, Hash, View), String> {
        let (height, hash) = chain.tip();
        if height == 0 {
            return Ok((0, hash, 0));
        }
        let block = chain
            .store()
            .block(height)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("finalized block {height} missing from the store"))?;
        Ok((height, hash, block.header.view))
    }

    /// Runs until the inbound stream closes.
    pub async fn run(mut self, mut inbound: mpsc::Receiver<Inbound>) {
        self.push(Input::Start);
        self.drain();
        loop {
            let deadline = [self.timer.map(|t| t.0), self.build.as_ref().map(|b| b.0)]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // The message's byte budget is returned once it is handled (end of the arm).
                message = inbound.recv() => match message {
                    Some(Inbound { from, message: NetMessage::Consensus(message), .. }) => {
                        self.on_message(from, *message)
                    }
                    // Routed to the mempool task.
                    Some(Inbound { message: NetMessage::Transactions(_), .. }) => {}
                    None => return,
                },
                () = sleep => self.on_deadline(),
            }
            self.drain();
            self.shared.update(|s| {
                s.view = self.engine.view();
                s.peers = self.net.peer_count();
            });
            metrics::gauge!(m::VIEW).set(self.engine.view() as f64);
        }
    }

    fn on_message(&mut self, from: u16, message: Message) {
        if let Some(height) = unbound_body(&message) {
            // The peer paired a header with a body it does not commit: drop the whole
            // message before the engine, the chain or execution sees any of it.
            metrics::counter!(m::P2P_REJECTED, "reason" => "body_mismatch").increment(1);
            tracing::warn!(
                peer = from,
                height,
                "dropping a message whose block body does not match its header"
            );
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
                    &self.cfg.validators,
                    leader,
                    self.engine.finalized_tip().2,
                    self.engine.view(),
                );
                if let Err(refusal) = admitted {
                    metrics::counter!(
                        m::P2P_REJECTED,
                        "reason" => "proposal",
                        "refusal" => refusal.label()
                    )
                    .increment(1);
                    tracing::debug!(peer = from, %refusal, "dropping a proposal");
                    return;
                }
                let engine = &self.engine;
                self.chain.remember_with(block, &|h| engine.holds(h), false);
                self.retry_deferred();
            }
            Message::BlockResponse(block) => {
                if !self.requested.contains(&block.hash()) {
                    metrics::counter!(m::P2P_REJECTED, "reason" => "unsolicited_block")
                        .increment(1);
                    return;
                }
                let engine = &self.engine;
                self.chain.remember_with(block, &|h| engine.holds(h), false);
                self.retry_deferred();
            }
            Message::SyncPruned {
                from_height,
                oldest_retained,
            } => {
                let now = Instant::now();
                if self
                    .pruned_warned
                    .is_none_or(|at| now >= at + PRUNED_WARNING_EVERY)
                {
                    self.pruned_warned = Some(now);
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
        self.push(Input::Message { from, message });
    }

    fn on_deadline(&mut self) {
        let now = Instant::now();
        if let Some((at, view)) = self.timer {
            if at <= now {
                self.timer = None;
                self.push(Input::Timeout { view });
            }
        }
        if self.build.as_ref().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, request)) = self.build.take() {
                self.build_proposal(request);
            }
        }
    }

    fn push(&mut self, input: Input) {
        self.inputs.push_back(input);
    }

    /// Feeds queued inputs to the engine and carries out the actions, then executes the
    /// blocks voted for.
    fn drain(&mut self) {
        loop {
            while let Some(input) = self.inputs.pop_front() {
                if self.halted {
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
                perform_in_order(self, actions, Driver::perform, |d| d.halted);
            }
            let hashes = std::mem::take(&mut self.to_execute);
            if hashes.is_empty() {
                return;
            }
            for hash in hashes {
                if let Err(e) = self.chain.execute(&hash) {
                    self.halt(format!("executing block {hash}: {e}"));
                    return;
                }
            }
            self.retry_deferred();
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Persist(record) => {
                let started = Instant::now();
                if let Err(e) = self.votelog.append(&record) {
                    // Cannot make the vote durable: must not send it, nor any later vote.
                    self.halt(format!("vote log: {e}"));
                    return;
                }
                metrics::histogram!(m::VOTELOG_FSYNC).record(started.elapsed().as_secs_f64());
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
                self.net
                    .broadcast(&NetMessage::Consensus(Box::new(message)));
            }
            Action::Send { to, message } => {
                if let Message::BlockRequest(hash) = &message {
                    self.requested.record(*hash);
                }
                self.net.send(to, &NetMessage::Consensus(Box::new(message)))
            }
            Action::SetTimer { view, after_ms } => {
                self.timer = Some((Instant::now() + Duration::from_millis(after_ms), view));
            }
            Action::BuildProposal {
                view,
                parent,
                height,
                epoch,
                empty,
            } => self.schedule_build(BuildRequest {
                view,
                parent,
                height,
                epoch,
                empty,
            }),
            Action::Verify { view, block } => {
                let engine = &self.engine;
                self.chain.remember_with(&block, &|h| engine.holds(h), true);
                self.verify(view, block);
            }
            Action::Finalized { block, certificate } => self.on_finalized(block, certificate),
            Action::ServeSync { to, from_height } => {
                match sync::response(self.chain.store(), from_height, self.cfg.epoch_length) {
                    Ok(Some(message)) => {
                        self.net.send(to, &NetMessage::Consensus(Box::new(message)))
                    }
                    Ok(None) => {
                        // Say so when the gap is ours (pruned), so the requester can tell
                        // its operator rather than wait forever.
                        let oldest_retained = self.chain.store().oldest_retained().unwrap_or(0);
                        if from_height < oldest_retained {
                            let message = Message::SyncPruned {
                                from_height,
                                oldest_retained,
                            };
                            self.net.send(to, &NetMessage::Consensus(Box::new(message)));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, from_height, "cannot serve sync"),
                }
            }
            Action::EpochEnded { epoch, tip, suffix } => {
                if let Some((headers, cert)) = suffix {
                    if let Err(e) =
                        sync::put_epoch_suffix(self.chain.store(), epoch, &headers, &cert)
                    {
                        tracing::warn!(error = %e, epoch, "cannot record the epoch's suffix proof");
                    }
                }
                tracing::info!(epoch, height = tip.0, "epoch ended");
                // The validator set is genesis' for every epoch until reconfiguration lands.
                // A live transition has no records for the new epoch yet (a restart inside
                // it restores them in `new`).
                self.engine = Engine::new(engine_config(&self.cfg, &self.key, tip), &[]);
                self.build = None;
                self.deferred.clear();
                self.shared.update(|s| s.epoch = epoch + 1);
                metrics::gauge!(m::EPOCH).set((epoch + 1) as f64);
                self.push(Input::Start);
            }
        }
    }

    fn schedule_build(&mut self, request: BuildRequest) {
        // Pace blocks: not before the parent's timestamp plus the block time.
        let wait_ms = match self.chain.parent_info(&request.parent) {
            Ok(Some(parent)) => {
                (parent.timestamp_ms + self.cfg.block_time_ms).saturating_sub(now_ms())
            }
            Ok(None) => BUILD_RETRY_MS,
            Err(e) => return self.halt(format!("executing the parent of a proposal: {e}")),
        };
        self.build = Some((Instant::now() + Duration::from_millis(wait_ms), request));
    }

    fn build_proposal(&mut self, request: BuildRequest) {
        if self.engine.view() > request.view {
            return; // the view moved on
        }
        let parent = match self.chain.parent_info(&request.parent) {
            Ok(Some(p)) => p,
            Ok(None) => {
                let at = Instant::now() + Duration::from_millis(BUILD_RETRY_MS);
                self.build = Some((at, request));
                return;
            }
            Err(e) => return self.halt(format!("executing the parent of a proposal: {e}")),
        };
        let transactions = if request.empty {
            Vec::new()
        } else {
            let mempool = self.mempool.clone();
            let (max_txs, gas) = (self.cfg.max_block_txs, self.cfg.block_gas_limit);
            // A block must fit in one frame the peers accept.
            let max_bytes = MAX_BLOCK_BYTES.min(self.cfg.max_frame_bytes) - BLOCK_BYTES_MARGIN;
            let selected = self.chain.with_state_after(&parent.hash, |state| {
                crate::mempool::select_locked(&*mempool, state, max_txs, max_bytes, gas)
            });
            match selected {
                Ok(Some(Ok(txs))) => txs,
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "mempool selection failed; proposing empty");
                    Vec::new()
                }
                Ok(None) => Vec::new(),
                Err(e) => return self.halt(format!("reading state for a proposal: {e}")),
            }
        };
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
        let (block, dropped) =
            match keel_app::propose::build(&mut self.chain, &slot, &parent, transactions, now_ms())
            {
                Ok(built) => built,
                Err(e) => return self.halt(format!("executing a proposal: {e}")),
            };
        if !dropped.is_empty() {
            tracing::debug!(
                dropped = dropped.len(),
                "left out transactions that cannot be charged"
            );
            self.mempool
                .lock()
                .expect("mempool lock")
                .remove_included(dropped.iter());
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

    fn verify(&mut self, view: View, block: Block) {
        let rules = BlockRules {
            chain_id: self.cfg.chain_id,
            block_gas_limit: self.cfg.block_gas_limit,
        };
        let epoch = EpochBounds {
            epoch: self.engine.epoch(),
            last_height: self.engine.epoch_last_height(),
        };
        match keel_app::validity::check(&mut self.chain, &rules, epoch, now_ms(), &block) {
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
            Err(e) => self.halt(format!("checking a proposal: {e}")),
        }
    }

    fn retry_deferred(&mut self) {
        let pending = std::mem::take(&mut self.deferred);
        for (view, block) in pending {
            if view
                >= self
                    .engine
                    .view()
                    .saturating_sub(MAX_DEFERRED_VERIFICATIONS as u64)
            {
                self.verify(view, block);
            }
        }
    }

    fn on_finalized(&mut self, block: Block, certificate: Option<Certificate>) {
        let height = block.header.height;
        // The header commits its parent's root: if the network finalized a root this node
        // did not compute, this node's state is wrong. Stop before committing on top of it.
        if let Err(reason) = keel_app::validity::check_finalized(&mut self.chain, &block) {
            return self.halt(reason);
        }
        let (info, receipts) = match self.chain.finalize(&block) {
            Ok(done) => done,
            Err(e) => return self.halt(format!("committing block {height}: {e}")),
        };
        self.proposals.prune(block.header.view);
        if let Some(cert) = &certificate {
            if let Err(e) = sync::put_certificate(self.chain.store(), height, cert) {
                tracing::warn!(error = %e, height, "cannot record the finalization certificate");
            }
        }
        let store = self.chain.store().clone();
        // The committed view is read under the pool lock, after the commit: the order the
        // loom model (node/src/loom_models.rs) checks against racing admissions.
        let (revalidated, size) = crate::mempool::prune_committed(
            &*self.mempool,
            receipts.iter().map(|r| &r.tx_hash),
            || store.latest_view(),
        );
        if let Err(e) = revalidated {
            tracing::warn!(error = %e, "mempool revalidation failed");
        }
        metrics::gauge!(m::MEMPOOL_BYTES).set(size.bytes as f64);
        metrics::gauge!(m::MEMPOOL_SIZE).set(size.txs as f64);
        metrics::gauge!(m::HEIGHT).set(height as f64);
        metrics::gauge!(m::FINALIZED_HEIGHT).set(height as f64);
        let latency_ms = now_ms().saturating_sub(block.header.timestamp_ms);
        metrics::histogram!(m::FINALITY_LATENCY)
            .record(Duration::from_millis(latency_ms).as_secs_f64());
        tracing::info!(height, txs = block.transactions.len(), root = %info.state_root, "finalized");
        self.shared.publish(FinalizedEvent {
            height,
            hash: info.block_hash,
            state_root: info.state_root,
            block,
            receipts,
        });
        self.retry_deferred();
    }

    /// Stops voting for good: error log, metric, health, and no more engine inputs.
    fn halt(&mut self, reason: String) {
        if self.halted {
            return;
        }
        self.halted = true;
        tracing::error!(%reason, "HALTED: this node stops voting");
        metrics::gauge!(m::HALTED).set(1.0);
        self.shared.update(|s| s.halted = Some(reason));
        self.inputs.clear();
        self.timer = None;
        self.build = None;
    }
}

#[cfg(test)]
mod tests;
