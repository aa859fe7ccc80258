//! The consensus driver: the shell around the application core (keel-app's `App`, which runs
//! the sans-IO engine and carries out its actions). It owns what the app must not: the
//! thread, the vote-log file (fsync'd before a vote leaves), p2p, the shared mempool, the
//! status and health the RPC reads, metrics, and the clocks whose time it passes in.
//!
//! It runs on its own thread (execution is CPU work and must not stall network tasks).

use crate::mempool::Mempool;
use crate::metrics as m;
use crate::shared::{FinalizedEvent, Shared};
use keel_app::core::{App, Committed, Host, Now, PersistError, SelectLimits};
use keel_app::mempool::AdmitError;
use keel_app::Chain;
use keel_consensus::{FileVoteLog, Message, VoteRecord};
use keel_p2p::{Inbound, NetMessage, Network};
use keel_state::StateView;
use keel_store::Store;
use keel_types::{Hash, Height, SecretKey, SignedTransaction};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use keel_app::admit::MAX_VIEWS_AHEAD;
pub use keel_app::core::{unbound_body, AppConfig as DriverConfig, MAX_DEFERRED_VERIFICATIONS};
pub use keel_app::MAX_FUTURE_DRIFT_MS;

/// Fault injection for the halt test: a node started with this variable set to a height
/// writes one extra storage slot when it executes that height, so its state (and root)
/// diverges from the network's exactly as a nondeterminism bug would. Honoured only in
/// builds with debug assertions (the test profiles); see [`fault_diverge_height`].
pub const FAULT_DIVERGE_ENV: &str = "KEEL_FAULT_DIVERGE_AT_HEIGHT";

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

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("vote log: {0}")]
    VoteLog(#[from] keel_consensus::VoteLogError),
    #[error("restoring the chain: {0}")]
    Chain(#[from] keel_app::ChainError),
}

/// The validator's application ([`App`]) joined to this process: its thread, the vote-log
/// file, the p2p network, the shared mempool, the status RPC and health read, metrics, and
/// the clocks it passes in.
#[derive(Debug)]
pub struct Driver {
    app: App,
    votelog: FileVoteLog,
    mempool: Arc<Mutex<Mempool>>,
    net: Network,
    shared: Arc<Shared>,
    /// The origin of the monotonic milliseconds the app's timers run on.
    origin: Instant,
    /// This validator's key, and the highest view it has voted in (for the status page).
    my_key: keel_types::PublicKey,
    my_last_vote: u64,
    /// The view and time the status was last published (see [`STATUS_REFRESH_MS`]).
    status_view: u64,
    status_at: Instant,
    epoch_length: u64,
    /// The epoch of the set the status page's activity charges missed views by.
    activity_epoch: u64,
    /// Answers snapshot sync requests from the store, off this thread.
    snapshots: crate::snapshot::SnapshotServer,
}

/// Every registered validator (docs/validators.md) by key, with its p2p address: the peers
/// the p2p table gains after the genesis validators.
pub fn registry_peers(
    state: &dyn StateView,
) -> Result<Vec<(keel_types::PublicKey, String)>, keel_state::StateError> {
    let mut peers = Vec::new();
    for key in keel_runtime::validators::read_registry(state)?.0 {
        if let Some(record) = keel_runtime::validators::read_record(state, &key)? {
            peers.push((key, record.p2p));
        }
    }
    Ok(peers)
}

/// What the app asks of the process, for the duration of one call into it.
struct Shell<'a> {
    votelog: &'a mut FileVoteLog,
    mempool: &'a Arc<Mutex<Mempool>>,
    net: &'a Network,
    shared: &'a Shared,
    store: &'a Arc<Store>,
    origin: Instant,
    /// A committed block may have changed the registry (a validator transaction or an
    /// epoch's last block): the peer table is refreshed after the call.
    registry_touched: bool,
    epoch_length: u64,
}

impl Host for Shell<'_> {
    fn now(&self) -> Now {
        Now {
            wall_ms: now_ms(),
            mono_ms: u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn persist(&mut self, record: &VoteRecord) -> Result<(), PersistError> {
        let started = Instant::now();
        self.votelog
            .append(record)
            .map_err(|e| PersistError(Box::new(e)))?;
        metrics::histogram!(m::VOTELOG_FSYNC).record(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn broadcast(&mut self, message: Message) {
        self.net
            .broadcast(&NetMessage::Consensus(Box::new(message)));
    }

    fn send(&mut self, to: u16, message: Message) {
        self.net.send(to, &NetMessage::Consensus(Box::new(message)));
    }

    fn select(
        &mut self,
        state: &dyn StateView,
        limits: SelectLimits,
    ) -> Result<Vec<SignedTransaction>, AdmitError> {
        crate::mempool::select_locked(
            &**self.mempool,
            state,
            limits.max_txs,
            limits.max_bytes,
            limits.max_gas,
        )
    }

    fn has_pending(&mut self) -> bool {
        !self.mempool.lock().expect("mempool lock").is_empty()
    }

    fn uncharged(&mut self, hashes: &[Hash]) {
        self.mempool
            .lock()
            .expect("mempool lock")
            .remove_included(hashes.iter());
    }

    fn committed(&mut self, committed: Committed) {
        let Committed {
            block,
            info,
            receipts,
        } = committed;
        let height = info.height;
        // Only a successful validator transaction or an epoch's end changes the table
        // (found by review: refused ones triggered a registry read too).
        self.registry_touched |= height % self.epoch_length.max(1) == 0
            || block.transactions.iter().zip(&receipts).any(|(t, r)| {
                matches!(t.tx.body, keel_types::TxBody::Validator(_))
                    && r.status == keel_types::TxStatus::Success
            });
        let header = &block.header;
        self.shared
            .update_activity(|a| a.finalized(header.epoch, header.view, &header.proposer));
        let store = self.store.clone();
        if let Ok(mut pool) = self.mempool.lock() {
            pool.set_latest_height(height);
        }
        // The committed view is read under the pool lock, after the commit: the order the
        // loom model (app/src/mempool_loom.rs) checks against racing admissions.
        let (revalidated, size) = crate::mempool::prune_committed(
            &**self.mempool,
            receipts.iter().map(|r| &r.tx_hash),
            || store.latest_view(),
        );
        if let Err(e) = revalidated {
            tracing::warn!(error = %e, "mempool revalidation failed");
        }
        metrics::gauge!(m::MEMPOOL_BYTES).set(size.bytes as f64);
        metrics::gauge!(m::MEMPOOL_SIZE).set(size.txs as f64);
        let counts = self
            .mempool
            .lock()
            .ok()
            .and_then(|pool| pool.signature_cache_counts());
        if let Some((once, in_block)) = counts {
            metrics::counter!(m::SIGNATURES_VERIFIED_ONCE).absolute(once);
            metrics::counter!(m::SIGNATURES_VERIFIED_IN_BLOCK).absolute(in_block);
        }
        metrics::gauge!(m::HEIGHT).set(height as f64);
        metrics::gauge!(m::FINALIZED_HEIGHT).set(height as f64);
        let latency_ms = now_ms().saturating_sub(block.header.timestamp_ms);
        metrics::histogram!(m::FINALITY_LATENCY)
            .record(Duration::from_millis(latency_ms).as_secs_f64());
        self.shared.publish(FinalizedEvent {
            height,
            hash: info.block_hash,
            state_root: info.state_root,
            block,
            receipts,
            eth_head: std::sync::OnceLock::new(),
        });
    }

    fn rejected(&mut self, _from: u16, reason: &'static str, detail: Option<&'static str>) {
        match detail {
            Some(refusal) => {
                metrics::counter!(m::P2P_REJECTED, "reason" => reason, "refusal" => refusal)
                    .increment(1);
            }
            None => metrics::counter!(m::P2P_REJECTED, "reason" => reason).increment(1),
        }
    }

    fn epoch_started(&mut self, epoch: u64) {
        self.shared.update(|s| s.epoch = epoch);
        metrics::gauge!(m::EPOCH).set(epoch as f64);
    }

    fn halted(&mut self, reason: &str) {
        metrics::gauge!(m::HALTED).set(1.0);
        self.shared.update(|s| s.halted = Some(reason.to_string()));
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
    ) -> Result<Driver, DriverError> {
        let (votelog, restored) = FileVoteLog::open(votelog_path)?;
        let keys = cfg.validators.clone();
        let epoch_length = cfg.epoch_length;
        // This node's peer index (the status page's row), whatever its set index.
        let my_key = key.public_key();
        let snapshots = crate::snapshot::SnapshotServer::new(chain.store().clone(), net.clone());
        let app = App::new(cfg, key, chain, &restored)?;
        let start_view = app.engine().finalized_tip().2;
        let set = app.engine().validators().clone();
        let activity_epoch = set.epoch;
        shared.update_activity(|a| {
            *a = crate::activity::Activity::new(keys, start_view);
            a.set_validators(set);
        });
        shared.update(|s| s.epoch = app.engine().epoch());
        metrics::gauge!(m::EPOCH).set(app.engine().epoch() as f64);
        Ok(Driver {
            app,
            votelog,
            mempool,
            net,
            shared,
            origin: Instant::now(),
            my_key,
            my_last_vote: start_view,
            status_view: start_view,
            status_at: Instant::now(),
            epoch_length,
            activity_epoch,
            snapshots,
        })
    }

    /// Runs the app against `f`, with this process as its host.
    fn call(&mut self, f: impl FnOnce(&mut App, &mut dyn Host)) {
        let store = self.app.chain().store().clone();
        let mut shell = Shell {
            votelog: &mut self.votelog,
            mempool: &self.mempool,
            net: &self.net,
            shared: &self.shared,
            store: &store,
            origin: self.origin,
            registry_touched: false,
            epoch_length: self.epoch_length,
        };
        f(&mut self.app, &mut shell);
        // The status page charges missed views to the leaders of the set voting now.
        let set = self.app.engine().validators();
        if self.activity_epoch != set.epoch {
            let set = set.clone();
            self.activity_epoch = set.epoch;
            self.shared.update_activity(|a| a.set_validators(set));
        }
        if shell.registry_touched {
            self.refresh_peers();
        }
    }

    /// Adds newly registered validators to the p2p table (and their new addresses), and
    /// gives the app the table.
    fn refresh_peers(&mut self) {
        let store = self.app.chain().store().clone();
        match registry_peers(&store.latest_view()) {
            Ok(peers) => {
                let keys = self.net.add_peers(&peers);
                self.shared.update_activity(|a| a.extend_table(&keys));
                self.app.set_peers(keys);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the validator registry"),
        }
    }

    /// Runs until the inbound stream closes.
    pub async fn run(mut self, mut inbound: mpsc::Receiver<Inbound>) {
        self.call(|app, host| app.start(host));
        loop {
            let deadline = self
                .app
                .next_deadline_ms()
                .map(|ms| self.origin + Duration::from_millis(ms));
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
                        // Views past the engine's window are not votes it would ever count.
                        let window = self.app.engine().view().saturating_add(MAX_VIEWS_AHEAD);
                        if let Some(view) = own_vote_view(from, &message).filter(|v| *v <= window) {
                            self.shared.update_activity(|a| a.voted(from, view, now_ms()));
                        }
                        self.call(|app, host| app.on_message(from, *message, host))
                    }
                    // Routed to the mempool task.
                    Some(Inbound { message: NetMessage::Transactions(_), .. }) => {}
                    Some(Inbound { from, message: NetMessage::Snapshot(message), .. }) => {
                        self.snapshots.handle(from, *message);
                    }
                    None => return,
                },
                () = sleep => self.call(|app, host| app.on_deadline(host)),
            }
            let view = self.app.engine().view();
            // The figures only the status page reads are refreshed at most every
            // STATUS_REFRESH_MS (or when the view moves), not per message.
            let now = Instant::now();
            let refresh = view != self.status_view
                || now.duration_since(self.status_at) >= Duration::from_millis(STATUS_REFRESH_MS);
            if refresh {
                self.status_view = view;
                self.status_at = now;
                self.publish_status(view);
            }
            metrics::gauge!(m::VIEW).set(view as f64);
        }
    }
}

/// The longest the status published for RPC, health and the status page lags the engine
/// while its view stays the same.
pub const STATUS_REFRESH_MS: u64 = 100;

impl Driver {
    /// Publishes the engine's view, the links, the honest view heard, the sync target and
    /// this validator's own latest vote.
    fn publish_status(&mut self, view: u64) {
        let engine = self.app.engine();
        let heard = engine.last_heard();
        let honest_view = honest_view_heard(heard, engine.validators());
        let sync_target = engine.sync_target();
        // This validator's own votes never arrive over a link: the engine records them.
        // `heard` is by index in the set voting now; the status page's rows by peer table.
        let mine = engine
            .validators()
            .index_of(&self.my_key)
            .and_then(|i| heard.get(usize::from(i)));
        if let Some(&mine) = mine {
            if mine > self.my_last_vote {
                self.my_last_vote = mine;
                let key = self.my_key;
                self.shared
                    .update_activity(|a| a.voted_by_key(&key, mine, now_ms()));
            }
        }
        let connected = self.net.connected();
        self.shared.update(|s| {
            s.view = view;
            s.peers = connected.len();
            s.connected = connected;
            s.honest_view_heard = honest_view;
            s.sync_target = sync_target;
        });
    }
}

/// The highest view at least one honest validator was heard voting in: the highest view
/// that validators holding at least 1/3 of `set`'s power were heard voting in or above —
/// with equal powers, the (f + 1)-th highest of `heard` (⌈n/3⌉ = f + 1 for every n). Faulty
/// validators hold less than 1/3 of the power, so however many of them vote far ahead,
/// they cannot raise it.
fn honest_view_heard(heard: &[u64], set: &keel_consensus::ValidatorSet) -> u64 {
    let mut by_view: Vec<(u64, u64)> = heard
        .iter()
        .zip(0u16..)
        .map(|(view, index)| (*view, set.power(index)))
        .collect();
    by_view.sort_unstable_by(|a, b| b.cmp(a));
    let mut power = 0u128;
    for (view, weight) in by_view {
        power = power.saturating_add(u128::from(weight));
        if power > 0 && power.saturating_mul(3) >= set.total_power() {
            return view;
        }
    }
    0
}

/// The view of a vote `from` signed itself (a vote, or the vote a proposal carries): what
/// the status page shows as the validator's last vote.
fn own_vote_view(from: u16, message: &Message) -> Option<u64> {
    let vote = match message {
        Message::Vote(vote) | Message::Propose { vote, .. } => vote,
        _ => return None,
    };
    (vote.signer == from).then_some(vote.vote.view)
}

#[cfg(test)]
mod tests;
