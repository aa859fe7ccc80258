//! Execution ahead of finality.
//!
//! A header commits its parent's post-state root, and Simplex may extend a block that is
//! notarized but not yet finalized (it is finalized later, possibly only through a
//! descendant). So checking or building a child cannot wait for the parent's finality — that
//! would deadlock — it waits only for the parent's *execution*. This module executes known
//! unfinalized blocks over the finalized state plus their ancestors' diffs, keeps each
//! block's own diff, receipts and post-state root, and on finality commits the diff it
//! already has (one RocksDB batch; no re-execution). Forks that lose are dropped.

use keel_runtime::{BlockHashes, BlockOutput, Runtime, RuntimeError};
use keel_state::{
    CommitInfo, CommitRequest, Entry, StateDiff, StateError, StateView, Store, StoreView,
};
use keel_types::receipt::receipts_root;
use keel_types::{Block, Hash, Height, Receipt, StateKey};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Fault injection for the halt test: a node started with this variable set to a height
/// writes one extra storage slot when it executes that height, so its state (and root)
/// diverges from the network's exactly as a nondeterminism bug would. Read once at start;
/// never set in production (the node logs a warning when it is).
pub const FAULT_DIVERGE_ENV: &str = "KEEL_FAULT_DIVERGE_AT_HEIGHT";

/// Unfinalized blocks kept (known or executed). Honest runs hold a handful; this bounds
/// what peers can make us hold.
pub const MAX_UNFINALIZED_BLOCKS: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("finalized block {height} does not extend the finalized tip")]
    NotNext { height: Height },
}

#[derive(Debug)]
struct Executed {
    output: BlockOutput,
    root: Hash,
    receipts_root: Hash,
    /// The expiry archive's root after this block (what a child's header commits).
    archive_root: Hash,
}

/// The finalized store plus the unfinalized blocks above it.
#[derive(Debug)]
pub struct Chain {
    store: Arc<Store>,
    runtime: Runtime,
    genesis_hash: Hash,
    genesis_time_ms: u64,
    blocks: BTreeMap<Hash, Block>,
    executed: BTreeMap<Hash, Executed>,
    diverge_at: Option<Height>,
}

/// State as of an unfinalized block: its ancestors' diffs (newest first) over the store.
struct ChainView<'a> {
    base: StoreView<'a>,
    diffs: Vec<&'a StateDiff>,
}

impl StateView for ChainView<'_> {
    fn entry(&self, key: &StateKey) -> Result<Option<Entry>, StateError> {
        for diff in &self.diffs {
            if let Some(value) = diff.get(key) {
                return value.as_deref().map(Entry::decode).transpose();
            }
        }
        self.base.entry(key)
    }

    /// The store's candidates (the tip's touch index) less those the unfinalized ancestors
    /// touched, expired or deleted. Ancestors write at their own, recent epoch, so they never
    /// add a candidate; asking the store for as many extra as they wrote keeps the first
    /// `limit` exactly those of the state this view describes, whatever the tip is.
    fn expiry_candidates(&self, before: u64, limit: usize) -> Result<Vec<StateKey>, StateError> {
        let stored = self
            .base
            .expiry_candidates(before, limit + self.written())?;
        self.still_candidates(stored, limit, |entry| {
            matches!(entry, Some(Entry::Live { touched_epoch, .. }) if touched_epoch < before)
        })
    }

    /// The store's stubs less those the unfinalized ancestors revived or folded. Ancestors
    /// only add stubs of their own epoch, never one old enough to fold (see `sweep`).
    fn fold_candidates(&self, before: u64, limit: usize) -> Result<Vec<StateKey>, StateError> {
        let stored = self.base.fold_candidates(before, limit + self.written())?;
        self.still_candidates(
            stored,
            limit,
            |entry| matches!(entry, Some(Entry::Expired { epoch, .. }) if epoch < before),
        )
    }
}

impl ChainView<'_> {
    /// Entries the unfinalized ancestors wrote.
    fn written(&self) -> usize {
        self.diffs.iter().map(|d| d.len()).sum()
    }

    /// The first `limit` of `stored` that an ancestor did not write, or wrote so that they
    /// are `still` candidates.
    fn still_candidates(
        &self,
        stored: Vec<StateKey>,
        limit: usize,
        still: impl Fn(Option<Entry>) -> bool,
    ) -> Result<Vec<StateKey>, StateError> {
        let mut out = Vec::with_capacity(limit);
        for key in stored {
            if out.len() == limit {
                break;
            }
            let keep = match self.diffs.iter().find_map(|d| d.get(&key)) {
                None => true,
                Some(raw) => still(raw.as_deref().map(Entry::decode).transpose()?),
            };
            if keep {
                out.push(key);
            }
        }
        Ok(out)
    }
}

/// The root of the expiry archive in `view` (zero before anything expired).
fn archive_root(view: &dyn StateView) -> Result<Hash, StateError> {
    use keel_types::archive::ArchiveAccumulator;
    use keel_types::Canonical;
    Ok(match view.get(&StateKey::ArchiveAccumulator)? {
        None => Hash::ZERO,
        Some(raw) => ArchiveAccumulator::decode(&raw)
            .map_err(|e| StateError::Corrupt(format!("archive accumulator: {e}")))?
            .root(),
    })
}

/// BLOCKHASH over finalized heights (the store) and the unfinalized ancestry.
struct ChainHashes<'a> {
    store: &'a Store,
    ancestry: BTreeMap<Height, Hash>,
}

impl BlockHashes for ChainHashes<'_> {
    fn block_hash(&self, height: u64) -> Option<Hash> {
        if let Some(hash) = self.ancestry.get(&height) {
            return Some(*hash);
        }
        self.store.block(height).ok().flatten().map(|b| b.hash())
    }
}

/// Parent hash, height and timestamp of what a new block would extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentInfo {
    pub hash: Hash,
    pub height: Height,
    pub timestamp_ms: u64,
    /// Post-state root and receipts root of the parent (what the child's header commits).
    pub state_root: Hash,
    pub receipts_root: Hash,
    /// The expiry archive's root after the parent.
    pub archive_root: Hash,
}

impl Chain {
    pub fn new(
        store: Arc<Store>,
        runtime: Runtime,
        genesis_hash: Hash,
        genesis_time_ms: u64,
    ) -> Chain {
        Chain {
            store,
            runtime,
            genesis_hash,
            genesis_time_ms,
            blocks: BTreeMap::new(),
            executed: BTreeMap::new(),
            diverge_at: std::env::var(FAULT_DIVERGE_ENV).ok().and_then(|v| {
                tracing::warn!(height = %v, "{FAULT_DIVERGE_ENV} is set: this node will diverge on purpose");
                v.parse().ok()
            }),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Finalized tip: height and hash (the genesis hash at height 0).
    pub fn tip(&self) -> (Height, Hash) {
        match self.store.latest() {
            Some(l) if l.height > 0 => (l.height, l.block_hash),
            _ => (0, self.genesis_hash),
        }
    }

    /// Remembers a block seen on the network or built here (bounded; below the tip ignored).
    pub fn remember(&mut self, block: &Block) {
        if block.header.height <= self.tip().0 {
            return;
        }
        if self.blocks.len() >= MAX_UNFINALIZED_BLOCKS {
            // Keep the lowest heights (nearest to finality); drop the highest.
            let highest = self
                .blocks
                .iter()
                .max_by_key(|(h, b)| (b.header.height, **h))
                .map(|(h, _)| *h);
            if let Some(h) = highest {
                self.blocks.remove(&h);
                self.executed.remove(&h);
            }
        }
        self.blocks.insert(block.hash(), block.clone());
    }

    /// The unfinalized blocks from the tip's child up to `hash`, or `None` if some block in
    /// between is unknown or the chain does not reach the tip.
    fn ancestry(&self, hash: &Hash) -> Option<Vec<Hash>> {
        let (tip_height, tip_hash) = self.tip();
        let mut out = Vec::new();
        let mut cursor = *hash;
        while cursor != tip_hash {
            let block = self.blocks.get(&cursor)?;
            if block.header.height <= tip_height {
                return None;
            }
            out.push(cursor);
            cursor = block.header.parent_hash;
        }
        out.reverse();
        Some(out)
    }

    /// What a block on `parent` would extend, executing `parent` (and its unexecuted
    /// ancestors) if needed. `None` if the parent's chain is not fully known.
    pub fn parent_info(&mut self, parent: &Hash) -> Result<Option<ParentInfo>, ChainError> {
        let (tip_height, tip_hash) = self.tip();
        if *parent == tip_hash {
            let (timestamp_ms, receipts) = if tip_height == 0 {
                (self.genesis_time_ms, Vec::new())
            } else {
                let block = self.store.block(tip_height)?;
                let ts = block.map_or(self.genesis_time_ms, |b| b.header.timestamp_ms);
                (ts, self.store.receipts(tip_height)?.unwrap_or_default())
            };
            return Ok(Some(ParentInfo {
                hash: tip_hash,
                height: tip_height,
                timestamp_ms,
                state_root: self.store.state_root(tip_height)?,
                receipts_root: receipts_root(&receipts),
                archive_root: archive_root(&self.store.latest_view())?,
            }));
        }
        if !self.execute(parent)? {
            return Ok(None);
        }
        let block = &self.blocks[parent];
        let executed = &self.executed[parent];
        Ok(Some(ParentInfo {
            hash: *parent,
            height: block.header.height,
            timestamp_ms: block.header.timestamp_ms,
            state_root: executed.root,
            receipts_root: executed.receipts_root,
            archive_root: executed.archive_root,
        }))
    }

    /// Executes `hash` and every unexecuted ancestor. `false` if the chain is not known.
    pub fn execute(&mut self, hash: &Hash) -> Result<bool, ChainError> {
        let Some(ancestry) = self.ancestry(hash) else {
            return Ok(false);
        };
        for (i, h) in ancestry.iter().enumerate() {
            if self.executed.contains_key(h) {
                continue;
            }
            let executed = self.execute_one(&ancestry[..i], h)?;
            self.executed.insert(*h, executed);
        }
        Ok(true)
    }

    fn execute_one(&self, ancestors: &[Hash], hash: &Hash) -> Result<Executed, ChainError> {
        let (tip_height, _) = self.tip();
        let block = &self.blocks[hash];
        let diffs: Vec<&StateDiff> = ancestors
            .iter()
            .rev()
            .map(|h| &self.executed[h].output.diff)
            .collect();
        let view = ChainView {
            base: self.store.view(tip_height)?,
            diffs,
        };
        let hashes = ChainHashes {
            store: &self.store,
            ancestry: ancestors
                .iter()
                .map(|h| (self.blocks[h].header.height, *h))
                .collect(),
        };
        let started = std::time::Instant::now();
        let mut output = self.runtime.execute_block(&view, &hashes, block)?;
        if self.diverge_at == Some(block.header.height) {
            output.diff.insert(
                StateKey::Storage(keel_types::Address([0xfa; 20]), [0xfa; 32]),
                Some(keel_state::encode_live(block.header.epoch, &[1; 32])),
            );
        }
        metrics::histogram!(crate::metrics::BLOCK_EXECUTION)
            .record(started.elapsed().as_secs_f64());
        // The root the store will have once this chain is committed: the JMT root depends
        // only on the resulting key set, so the merged diffs give it at the tip's next height.
        let mut merged = StateDiff::new();
        for h in ancestors {
            merged.extend(
                self.executed[h]
                    .output
                    .diff
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        merged.extend(output.diff.iter().map(|(k, v)| (k.clone(), v.clone())));
        let root = self.store.preview_root(tip_height + 1, &merged)?;
        let receipts_root = receipts_root(&output.receipts);
        let archive_root = match merged.get(&StateKey::ArchiveAccumulator) {
            Some(_) => archive_root(&ChainView {
                base: self.store.view(tip_height)?,
                diffs: vec![&merged],
            })?,
            None => archive_root(&self.store.view(tip_height)?)?,
        };
        Ok(Executed {
            output,
            root,
            receipts_root,
            archive_root,
        })
    }

    /// State after `hash` (an unfinalized executed block, or the tip), for selecting
    /// transactions whose nonces follow the parent's.
    pub fn with_state_after<T>(
        &self,
        hash: &Hash,
        f: impl FnOnce(&dyn StateView) -> T,
    ) -> Result<Option<T>, ChainError> {
        let (tip_height, _) = self.tip();
        let Some(ancestry) = self.ancestry(hash) else {
            return Ok(None);
        };
        if ancestry.iter().any(|h| !self.executed.contains_key(h)) {
            return Ok(None);
        }
        let view = ChainView {
            base: self.store.view(tip_height)?,
            diffs: ancestry
                .iter()
                .rev()
                .map(|h| &self.executed[h].output.diff)
                .collect(),
        };
        Ok(Some(f(&view)))
    }

    /// Commits a finalized block (executing it now if it was not executed ahead), drops
    /// what can no longer be finalized, and returns the commit and the block's receipts.
    pub fn finalize(&mut self, block: &Block) -> Result<(CommitInfo, Vec<Receipt>), ChainError> {
        let hash = block.hash();
        let (tip_height, tip_hash) = self.tip();
        if block.header.height != tip_height + 1 || block.header.parent_hash != tip_hash {
            return Err(ChainError::NotNext {
                height: block.header.height,
            });
        }
        self.blocks.insert(hash, block.clone());
        let executed = match self.executed.remove(&hash) {
            Some(e) => e,
            None => self.execute_one(&[], &hash)?,
        };
        let info = self.store.commit(CommitRequest {
            height: block.header.height,
            diff: &executed.output.diff,
            block: Some(block),
            receipts: &executed.output.receipts,
            archive: &executed.output.archive,
        })?;
        if info.state_root != executed.root {
            // The preview and the commit compute the same function; a difference is a bug in
            // this node, and continuing would sign over a root it cannot reproduce.
            return Err(ChainError::State(StateError::Corrupt(format!(
                "height {}: committed root {} differs from executed root {}",
                info.height, info.state_root, executed.root
            ))));
        }
        let height = info.height;
        self.blocks.retain(|_, b| b.header.height > height);
        self.executed.retain(|h, _| self.blocks.contains_key(h));
        metrics::counter!(crate::metrics::EXECUTED_GAS).increment(executed.output.gas_used);
        metrics::counter!(crate::metrics::EXECUTED_TXS).increment(block.transactions.len() as u64);
        Ok((info, executed.output.receipts))
    }
}
