//! One simulated validator: keel-app's `App` over a real RocksDB store in a temp dir, the
//! node's real mempool, a vote log in memory (it survives crashes, as the fsync'd file
//! does), and a [`Host`] that hands sends to the simulated network.

use super::byzantine::Adversary;
use super::snapshot::SimTransport;
use super::{Outgoing, StackScenario, CHAIN_ID, GAS_PRICE, GENESIS_TIME_MS};
use keel_app::core::{App, AppConfig, Committed, Host, Now, PersistError, SelectLimits};
use keel_app::mempool::AdmitError;
use keel_app::Chain;
use keel_consensus::{Message, VoteRecord};
use keel_node::genesis::{Genesis, GenesisBalance, GenesisValidator};
use keel_node::snapshot::{sync_over, SnapshotSyncError, SyncParams};
use keel_node::{Mempool, MempoolConfig};
use keel_runtime::{Runtime, RuntimeConfig};
use keel_state::StateView;
use keel_store::{Store, StoreOptions};
use keel_types::{Hash, PublicKey, SecretKey, SignedTransaction, VoteKind};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Module-cache entries per simulated validator (two contracts are ever deployed).
const MODULE_CACHE_ENTRIES: usize = 8;
/// Store memory per simulated validator: four run at once, a campaign opens thousands.
const SIM_BLOCK_CACHE_BYTES: usize = 4 * 1024 * 1024;
const SIM_WRITE_BUFFER_BYTES: usize = 1024 * 1024;
/// The p2p frame limit the simulated validators assume (the node's default).
const SIM_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Transactions per simulated block at most.
const SIM_MAX_BLOCK_TXS: usize = 256;

/// The chain's genesis for a scenario: validators, funded accounts, expiry settings.
pub fn genesis(s: &StackScenario, validators: &[PublicKey], funded: &[SecretKey]) -> Genesis {
    Genesis {
        chain_id: CHAIN_ID,
        genesis_time_ms: GENESIS_TIME_MS,
        epoch_length: s.epoch_length,
        expiry_epochs: s.expiry_epochs,
        fold_epochs: s.fold_epochs,
        block_gas_limit: keel_types::limits::BLOCK_GAS_LIMIT,
        min_gas_price: GAS_PRICE,
        plugin_gas: keel_types::policy::PLUGIN_GAS,
        attesters: Vec::new(),
        min_stake: keel_types::validator::DEFAULT_MIN_STAKE,
        max_validators: keel_types::limits::MAX_VALIDATORS,
        unbonding_epochs: keel_types::validator::DEFAULT_UNBONDING_EPOCHS,
        validators: validators
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                public_key: *k,
                p2p: format!("127.0.0.1:{}", 1 + i),
                stake: s
                    .stakes
                    .as_ref()
                    .and_then(|stakes| stakes.get(i).copied())
                    .unwrap_or(keel_types::validator::DEFAULT_GENESIS_STAKE),
                operator: Some(keel_types::Address::from_public_key(
                    &super::operator_key(i).public_key(),
                )),
            })
            .collect(),
        balances: funded
            .iter()
            .map(|k| GenesisBalance {
                address: keel_types::Address::from_public_key(&k.public_key()),
                balance: keel_types::U256::from(super::FUNDS),
            })
            // One operator more than validators: the newcomer's (workload.rs).
            .chain((0..=validators.len()).map(|i| GenesisBalance {
                address: keel_types::Address::from_public_key(&super::operator_key(i).public_key()),
                balance: keel_types::U256::from(super::OPERATOR_FUNDS),
            }))
            .collect(),
    }
}

/// A simulated validator's store settings.
fn store_options(genesis: &Genesis) -> StoreOptions {
    StoreOptions {
        sync_writes: false,
        block_cache_bytes: SIM_BLOCK_CACHE_BYTES,
        write_buffer_bytes: SIM_WRITE_BUFFER_BYTES,
        index_touches: genesis.expiry_epochs > 0,
        ..StoreOptions::default()
    }
}

/// A snapshot restore a restarting validator ran (the report's record of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRestored {
    pub validator: usize,
    /// The height restored, or `None` if the peers said no epoch had ended yet (it then
    /// started from genesis, as the node does).
    pub height: Option<u64>,
    /// Peers the client dropped for failing a proof.
    pub dropped: Vec<u16>,
    /// Answers the Byzantine validator changed or withheld.
    pub lies: u64,
    /// Simulated time the restore took (the others waited for it).
    pub took_ms: u64,
    /// The latest (epoch, view) its key had signed a notarize or finalize vote in before
    /// the restore.
    pub signed_before: Option<(u64, u64)>,
    /// Answers that did not decode (a codec bug: a lie changes only what decodes).
    pub undecodable: u64,
}

/// A store a wipe or a snapshot restore replaced, with what its host was told it committed.
#[allow(missing_debug_implementations)] // holds a store
pub struct Retired {
    pub store: Arc<Store>,
    pub committed: Vec<Committed>,
    /// The height its commit stream started above (a restored height), if not genesis.
    pub restored_at: Option<u64>,
    _dir: tempfile::TempDir,
}

/// A simulated validator process and what outlives its crashes.
#[allow(missing_debug_implementations)] // holds an app and a store; the report is what is printed
pub struct Validator {
    pub index: usize,
    key: SecretKey,
    cfg: AppConfig,
    genesis_hash: Hash,
    runtime: Runtime,
    diverge_at: Option<u64>,
    pub store: Arc<Store>,
    /// The height a snapshot restore put the store at: it holds nothing below.
    pub restored_at: Option<u64>,
    /// The stores a wipe or a snapshot restore replaced (what it committed before): the
    /// report compares them too.
    pub retired: Vec<Retired>,
    /// `None` while crashed (or never started: a silent validator).
    pub app: Option<App>,
    pub mempool: Mempool,
    /// The durable vote log.
    votes: Vec<VoteRecord>,
    /// Blocks committed, in order (what the host saw).
    pub committed: Vec<Committed>,
    pub halted: Option<String>,
    /// Vote-log writes so far, and the one that fails (fault injection).
    persists: usize,
    fail_persist_at: Option<usize>,
    /// Messages sent after a failed vote-log write.
    pub sent_after_failure: usize,
    /// The process dies right after it logs its first finalize vote for a view at or past
    /// this one: before sending that vote, before committing anything it finalizes.
    crash_after_finalize_vote: Option<u64>,
    /// The process dies right after it commits this height (before the rest of the call:
    /// an epoch's records, the next engine).
    crash_in_commit_at: Option<u64>,
    /// A crash inside a call (taken by the run loop, which schedules the restart).
    pub crashed_mid_call: Option<MidCallCrash>,
    /// Every vote this validator's key signed, across restarts: (epoch, view, kind) → block.
    signed: BTreeMap<(u64, u64, u8), Hash>,
    /// Safety rules this validator broke (a vote sent before its record was durable, two
    /// conflicting votes), for the report.
    pub violations: Vec<String>,
    /// Peer messages the app dropped, by reason (`Host::rejected`).
    pub rejections: BTreeMap<&'static str, u64>,
    /// Set on the Byzantine validator: what it does to its honest core's messages.
    pub adversary: Option<Adversary>,
    /// Keeps the store's directory for the validator's life.
    _dir: tempfile::TempDir,
}

impl Validator {
    pub fn new(
        s: &StackScenario,
        index: usize,
        key: SecretKey,
        genesis: &Genesis,
    ) -> anyhow::Result<Validator> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(Store::open(dir.path(), store_options(genesis))?);
        genesis.apply(&store, dir.path())?;
        let cache = Arc::new(keel_exec_wasm::ModuleCache::new(
            None,
            MODULE_CACHE_ENTRIES,
        )?);
        let runtime = Runtime::new(
            RuntimeConfig {
                chain_id: genesis.chain_id,
                block_gas_limit: genesis.block_gas_limit,
                min_gas_price: genesis.min_gas_price,
                verify_threads: 1,
                // Validators differ in how they execute (serially, or in parallel on 2 or 3
                // threads) and must agree on every root all the same.
                exec_threads: 1 + index % 3,
                expiry_epochs: genesis.expiry_epochs,
                fold_epochs: genesis.fold_epochs,
                plugin_gas: genesis.plugin_gas,
                registry: genesis.registry_params(),
            },
            cache,
        )
        .with_attesters(&genesis.attesters);
        let cfg = AppConfig {
            chain_id: genesis.chain_id,
            epoch_length: genesis.epoch_length,
            validators: genesis.validators.iter().map(|v| v.public_key).collect(),
            timeout_base_ms: s.timeout_base_ms,
            timeout_max_ms: s.timeout_base_ms * 4,
            block_time_ms: s.block_time_ms,
            min_block_interval_ms: s.min_block_interval_ms,
            max_block_txs: SIM_MAX_BLOCK_TXS,
            block_gas_limit: genesis.block_gas_limit,
            max_frame_bytes: SIM_MAX_FRAME_BYTES,
        };
        // As the node: admission and execution share the signature cache.
        let mempool = Mempool::new(MempoolConfig::default(), CHAIN_ID, GAS_PRICE)
            .with_signature_cache(runtime.signature_cache().clone());
        Ok(Validator {
            index,
            key: key.clone(),
            cfg,
            genesis_hash: genesis.hash(),
            runtime,
            store,
            restored_at: None,
            retired: Vec::new(),
            app: None,
            mempool,
            votes: Vec::new(),
            committed: Vec::new(),
            halted: None,
            persists: 0,
            fail_persist_at: s.votelog_fails.and_then(|(i, n)| (i == index).then_some(n)),
            sent_after_failure: 0,
            crash_after_finalize_vote: s.crash_after_finalize_vote.map(|c| c.0),
            crash_in_commit_at: s
                .crash_in_commit
                .and_then(|(i, height, _)| (i == index).then_some(height)),
            crashed_mid_call: None,
            signed: BTreeMap::new(),
            violations: Vec::new(),
            rejections: BTreeMap::new(),
            diverge_at: s.diverge.and_then(|(i, h)| (i == index).then_some(h)),
            adversary: (s.byzantine == Some(index))
                .then(|| Adversary::new(s.seed, index, s.n, key.clone())),
            _dir: dir,
        })
    }

    /// Starts the process: a fresh app over the store's finalized chain, its engine restored
    /// from the vote log (a restart after a crash loses only what was in memory).
    pub fn start(&mut self, now: Now, out: &mut Vec<Outgoing>) -> anyhow::Result<()> {
        // Every vote record written before the crash is back (the file survives).
        let restored = self.votes.clone();
        let chain = Chain::new(
            self.store.clone(),
            self.runtime.clone(),
            self.genesis_hash,
            GENESIS_TIME_MS,
        )
        .diverging_at(self.diverge_at);
        let app = App::new(self.cfg.clone(), self.key.clone(), chain, &restored)?;
        self.app = Some(app);
        self.call(now, out, |app, host| app.start(host));
        Ok(())
    }

    /// The store is emptied to genesis (the vote log stays): the next start syncs from
    /// genesis through epochs this validator already voted in.
    pub fn wipe_store(&mut self, genesis: &Genesis) -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(Store::open(dir.path(), store_options(genesis))?);
        genesis.apply(&store, dir.path())?;
        self.retire(store, dir, None);
        Ok(())
    }

    /// Puts `store` in place of the current one, which is kept for the report with what the
    /// host was told it committed.
    fn retire(&mut self, store: Arc<Store>, dir: tempfile::TempDir, restored_at: Option<u64>) {
        let old = Retired {
            store: std::mem::replace(&mut self.store, store),
            committed: std::mem::take(&mut self.committed),
            restored_at: std::mem::replace(&mut self.restored_at, restored_at),
            _dir: std::mem::replace(&mut self._dir, dir),
        };
        self.retired.push(old);
    }

    /// The store is emptied and restored by snapshot sync, the node's own client over
    /// `transport` (the vote log stays): the next start block-syncs from the boundary.
    pub fn restore_by_snapshot(
        &mut self,
        genesis: &Genesis,
        mut transport: SimTransport,
    ) -> anyhow::Result<SnapshotRestored> {
        let dir = tempfile::tempdir()?;
        let params = SyncParams {
            checkpoint: None,
            // The smallest chunks a server sends: a simulated state spans several.
            chunk_bytes: keel_types::proof::MIN_SNAPSHOT_CHUNK_BYTES as u32,
            shared: Arc::new(keel_node::shared::Shared::default()),
        };
        // As the node: marked before the restore, so `apply` accepts the restored store.
        genesis.mark_restored(dir.path())?;
        let path = dir.path().join("state");
        let synced = sync_over(
            &mut transport,
            genesis,
            &params,
            &path,
            store_options(genesis),
        );
        let mut restored = SnapshotRestored {
            validator: self.index,
            height: None,
            dropped: Vec::new(),
            lies: transport.lies,
            took_ms: transport.elapsed_ms(),
            signed_before: latest_vote(&self.signed),
            undecodable: transport.undecodable,
        };
        let synced = match synced {
            Ok(synced) => synced,
            Err(SnapshotSyncError::NoBoundaryYet) => {
                self.wipe_store(genesis)?;
                return Ok(restored);
            }
            Err(e) => anyhow::bail!("validator {}: snapshot restore: {e}", self.index),
        };
        genesis.apply(&synced.store, dir.path())?;
        let height = synced.store.latest().map_or(0, |l| l.height);
        restored.height = Some(height);
        restored.dropped = synced.dropped.into_iter().collect();
        // What it committed before it lost its state is still compared with the others.
        self.retire(synced.store, dir, Some(height));
        Ok(restored)
    }

    /// The process dies: everything in memory is lost (the unfinalized blocks, the
    /// engine, the mempool); the store and the vote log stay.
    pub fn crash(&mut self) {
        self.app = None;
        // The signature cache is memory too.
        let fresh = std::sync::Arc::new(keel_runtime::signatures::SignatureCache::new(
            keel_runtime::signatures::SIGNATURE_CACHE_ENTRIES,
        ));
        self.runtime = self.runtime.clone().with_signature_cache(fresh.clone());
        self.mempool =
            Mempool::new(MempoolConfig::default(), CHAIN_ID, GAS_PRICE).with_signature_cache(fresh);
    }

    /// Runs `f` on the app (if up) with this validator's host.
    pub fn call(
        &mut self,
        now: Now,
        out: &mut Vec<Outgoing>,
        f: impl FnOnce(&mut App, &mut dyn Host),
    ) {
        let Some(app) = self.app.as_mut() else {
            return;
        };
        let mut host = SimHost {
            now,
            from: self.index,
            signed: &mut self.signed,
            violations: &mut self.violations,
            votes: &mut self.votes,
            persists: &mut self.persists,
            fail_persist_at: self.fail_persist_at,
            crash_after_finalize_vote: self.crash_after_finalize_vote,
            crash_in_commit_at: self.crash_in_commit_at,
            sent_after_failure: &mut self.sent_after_failure,
            out,
            mempool: &mut self.mempool,
            store: &self.store,
            committed: &mut self.committed,
            halted: &mut self.halted,
            adversary: self.adversary.as_mut(),
            rejections: &mut self.rejections,
        };
        // A crash in the middle of the call unwinds out of the app (`SimHost::persist`):
        // whatever the app would have done after it, in memory or in the store, never is.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(app, &mut host)));
        match result {
            Ok(()) => {}
            Err(payload) => match payload.downcast::<MidCallCrash>() {
                Ok(crash) => {
                    match *crash {
                        MidCallCrash::AfterFinalizeVote(_) => self.crash_after_finalize_vote = None,
                        MidCallCrash::InCommit(_) => self.crash_in_commit_at = None,
                    }
                    self.crashed_mid_call = Some(*crash);
                    self.crash();
                }
                Err(other) => std::panic::resume_unwind(other),
            },
        }
    }

    /// Offers transactions to this validator's mempool, as gossip would.
    pub fn admit(&mut self, txs: Vec<SignedTransaction>) -> Vec<bool> {
        if self.app.is_none() {
            return vec![false; txs.len()];
        }
        let view = self.store.latest_view();
        self.mempool
            .admit(&view, txs)
            .into_iter()
            .map(|r| r.is_ok())
            .collect()
    }

    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.app.as_ref().and_then(App::next_deadline_ms)
    }

    /// Every vote this validator's key signed: (epoch, view, kind: 0 notarize, 1 nullify,
    /// 2 finalize) → block.
    pub fn signed_votes(&self) -> &BTreeMap<(u64, u64, u8), Hash> {
        &self.signed
    }
}

/// A simulated crash inside a call into the app (the unwind payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MidCallCrash {
    /// Right after logging a finalize vote of this view.
    AfterFinalizeVote(u64),
    /// Right after committing this height.
    InCommit(u64),
}

struct SimHost<'a> {
    now: Now,
    from: usize,
    signed: &'a mut BTreeMap<(u64, u64, u8), Hash>,
    violations: &'a mut Vec<String>,
    votes: &'a mut Vec<VoteRecord>,
    persists: &'a mut usize,
    fail_persist_at: Option<usize>,
    crash_after_finalize_vote: Option<u64>,
    crash_in_commit_at: Option<u64>,
    sent_after_failure: &'a mut usize,
    out: &'a mut Vec<Outgoing>,
    mempool: &'a mut Mempool,
    store: &'a Arc<Store>,
    committed: &'a mut Vec<Committed>,
    halted: &'a mut Option<String>,
    adversary: Option<&'a mut Adversary>,
    rejections: &'a mut BTreeMap<&'static str, u64>,
}

impl SimHost<'_> {
    /// Hands `message` to the network (to `to`, or to every other validator), through the
    /// adversary on the Byzantine validator.
    fn emit(&mut self, to: Option<usize>, message: Message) {
        let Some(adversary) = self.adversary.as_deref_mut() else {
            self.out.push(Outgoing {
                from: self.from,
                to,
                message,
            });
            return;
        };
        for (to, message) in adversary.corrupt(self.now.wall_ms, to, message) {
            self.out.push(Outgoing {
                from: self.from,
                to: Some(to),
                message,
            });
        }
    }

    /// Checks what leaves: nothing after a failed vote-log write; a vote of this validator
    /// only once its record is durable; never two conflicting votes of its key.
    fn note_send(&mut self, message: &Message) {
        if self.fail_persist_at.is_some_and(|at| *self.persists > at) {
            *self.sent_after_failure += 1;
        }
        let vote = match message {
            Message::Vote(v) | Message::Propose { vote: v, .. } => v,
            _ => return,
        };
        if usize::from(vote.signer) != self.from {
            return; // a certificate's or another validator's vote, forwarded
        }
        let v = vote.vote;
        let record = match v.kind {
            VoteKind::Notarize => VoteRecord::Notarized {
                epoch: v.epoch,
                view: v.view,
                block: v.block,
            },
            VoteKind::Nullify => VoteRecord::Nullified {
                epoch: v.epoch,
                view: v.view,
            },
            VoteKind::Finalize => VoteRecord::Finalized {
                epoch: v.epoch,
                view: v.view,
                block: v.block,
            },
        };
        if !self.votes.contains(&record) {
            self.violations.push(format!(
                "validator {} sent {:?} before its vote log held it",
                self.from, v
            ));
        }
        let kind = match v.kind {
            VoteKind::Notarize => 0,
            VoteKind::Nullify => 1,
            VoteKind::Finalize => 2,
        };
        // Nullify and finalize of one view conflict; two blocks for one kind conflict.
        let conflicting = match v.kind {
            VoteKind::Nullify => self.signed.contains_key(&(v.epoch, v.view, 2)),
            VoteKind::Finalize => self.signed.contains_key(&(v.epoch, v.view, 1)),
            VoteKind::Notarize => false,
        };
        let previous = self.signed.insert((v.epoch, v.view, kind), v.block);
        if conflicting || previous.is_some_and(|b| b != v.block) {
            self.violations.push(format!(
                "validator {} signed conflicting votes in epoch {} view {}",
                self.from, v.epoch, v.view
            ));
        }
    }
}

impl Host for SimHost<'_> {
    fn now(&self) -> Now {
        self.now
    }

    fn persist(&mut self, record: &VoteRecord) -> Result<(), PersistError> {
        let n = *self.persists;
        *self.persists += 1;
        if self.fail_persist_at.is_some_and(|at| n >= at) {
            return Err(PersistError("injected vote-log failure".into()));
        }
        self.votes.push(*record);
        if let VoteRecord::Finalized { view, .. } = *record {
            if self
                .crash_after_finalize_vote
                .is_some_and(|from| view >= from)
            {
                // The record is on disk; the process dies before its next instruction.
                std::panic::resume_unwind(Box::new(MidCallCrash::AfterFinalizeVote(view)));
            }
        }
        Ok(())
    }

    fn broadcast(&mut self, message: Message) {
        self.note_send(&message);
        self.emit(None, message);
    }

    fn send(&mut self, to: u16, message: Message) {
        self.note_send(&message);
        self.emit(Some(usize::from(to)), message);
    }

    fn select(
        &mut self,
        state: &dyn StateView,
        limits: SelectLimits,
    ) -> Result<Vec<SignedTransaction>, AdmitError> {
        self.mempool
            .select(state, limits.max_txs, limits.max_bytes, limits.max_gas)
    }

    fn has_pending(&mut self) -> bool {
        !self.mempool.is_empty()
    }

    fn uncharged(&mut self, hashes: &[Hash]) {
        self.mempool.remove_included(hashes.iter());
    }

    fn committed(&mut self, committed: Committed) {
        self.mempool
            .remove_included(committed.receipts.iter().map(|r| &r.tx_hash));
        // Revalidation can only fail on a store error, which the comparison then shows.
        let _ = self.mempool.revalidate(&self.store.latest_view());
        let height = committed.info.height;
        self.committed.push(committed);
        if self.crash_in_commit_at == Some(height) {
            // The block is in the store; the process dies before its next instruction.
            std::panic::resume_unwind(Box::new(MidCallCrash::InCommit(height)));
        }
    }

    fn rejected(&mut self, _from: u16, reason: &'static str, _detail: Option<&'static str>) {
        *self.rejections.entry(reason).or_default() += 1;
    }

    fn epoch_started(&mut self, _epoch: u64) {}

    fn halted(&mut self, reason: &str) {
        *self.halted = Some(reason.to_string());
    }
}

/// The latest (epoch, view) of a notarize or finalize vote among `signed` (nullify votes,
/// kind 1, are cast on timeouts alone).
pub fn latest_vote(signed: &BTreeMap<(u64, u64, u8), Hash>) -> Option<(u64, u64)> {
    signed
        .keys()
        .filter(|(_, _, kind)| *kind != 1)
        .map(|(epoch, view, _)| (*epoch, *view))
        .max()
}
