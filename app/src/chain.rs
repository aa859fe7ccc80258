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
use keel_state::{Entry, StateDiff, StateError, StateView};
use keel_store::{CommitInfo, CommitRequest, Store, StoreView};
use keel_types::receipt::receipts_root;
use keel_types::{Block, Hash, Height, Receipt, StateKey};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Unfinalized blocks kept (known or executed). Honest runs hold a handful; this bounds
/// what peers can make us hold.
pub const MAX_UNFINALIZED_BLOCKS: usize = 512;
/// Encoded bytes of the unfinalized blocks kept: the count bound alone allows 512 maximal
/// (16 MiB) blocks, 8 GiB. Honest runs hold a few blocks; 256 MiB still holds sixteen
/// maximal ones, more than the views in flight between two finalizations.
pub const MAX_UNFINALIZED_BLOCK_BYTES: usize = 256 * 1024 * 1024;

/// Whether `block`'s transactions are the ones its header commits (`tx_root`, the header's
/// only commitment to the body). The block hash covers the header alone, so a peer can pair
/// a real header with any body; every block that arrives from the network is checked with
/// this before it is stored, handed to the engine or executed.
pub fn body_matches_header(block: &Block) -> bool {
    block.compute_tx_root() == block.header.tx_root
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("finalized block {height} does not extend the finalized tip")]
    NotNext { height: Height },
    #[error("block {height}: its transactions do not match the header's tx_root")]
    BodyMismatch { height: Height },
}

#[derive(Debug)]
struct Executed {
    output: BlockOutput,
    root: Hash,
    receipts_root: Hash,
    /// The expiry archive's root after this block (what a child's header commits).
    archive_root: Hash,
}

/// Where a [`Chain`] reports what it executes and commits. The chain reads no clock: the
/// node's observer times executions for its metrics; the simulator's observes nothing.
pub trait ChainObserver: Send + Sync {
    /// A block starts executing; the token comes back in [`ChainObserver::executed`].
    fn execution_started(&self) -> u64 {
        0
    }
    /// The block that started at `started` finished executing.
    fn executed(&self, _started: u64) {}
    /// A block with `txs` transactions using `gas_used` was committed.
    fn committed(&self, _gas_used: u64, _txs: u64) {}
}

/// Observes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl ChainObserver for NoObserver {}

/// The finalized store plus the unfinalized blocks above it.
pub struct Chain {
    store: Arc<Store>,
    runtime: Runtime,
    genesis_hash: Hash,
    genesis_time_ms: u64,
    blocks: BTreeMap<Hash, Block>,
    /// Encoded size of each block in `blocks` (same keys), for the byte bound.
    block_bytes: BTreeMap<Hash, usize>,
    executed: BTreeMap<Hash, Executed>,
    /// Fault injection for the halt test (see [`Chain::diverging_at`]).
    diverge_at: Option<Height>,
    observer: Arc<dyn ChainObserver>,
    /// [`MAX_UNFINALIZED_BLOCKS`] and [`MAX_UNFINALIZED_BLOCK_BYTES`] (smaller in tests).
    max_blocks: usize,
    max_block_bytes: usize,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("tip", &self.tip())
            .field("unfinalized_blocks", &self.blocks.len())
            .field("executed", &self.executed.len())
            .finish_non_exhaustive()
    }
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

    /// The store's answer unless an unfinalized ancestor wrote `key`.
    fn get_stamped(&self, key: &StateKey) -> Result<keel_state::Stamped, StateError> {
        if self.diffs.iter().any(|diff| diff.contains_key(key)) {
            return self.get(key).map(keel_state::Stamped::Value);
        }
        self.base.get_stamped(key)
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

    fn storage_entries(&self, address: &keel_types::Address) -> Result<u64, StateError> {
        keel_state::layered_storage_entries(&self.base, &self.diffs, address)
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
        self.store.block_hash_at(height).ok().flatten()
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
            block_bytes: BTreeMap::new(),
            executed: BTreeMap::new(),
            diverge_at: None,
            observer: Arc::new(NoObserver),
            max_blocks: MAX_UNFINALIZED_BLOCKS,
            max_block_bytes: MAX_UNFINALIZED_BLOCK_BYTES,
        }
    }

    /// Fault injection for the halt test: this chain writes one extra storage slot when it
    /// executes `height`, so its state (and root) diverges from the network's exactly as a
    /// nondeterminism bug would. The node sets it only in builds with debug assertions.
    pub fn diverging_at(mut self, height: Option<Height>) -> Chain {
        self.diverge_at = height;
        self
    }

    /// Reports executions and commits to `observer` (the node's metrics).
    pub fn observed_by(mut self, observer: Arc<dyn ChainObserver>) -> Chain {
        self.observer = observer;
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The receipts of an unfinalized block executed here (see [`Chain::execute`]).
    pub fn executed_receipts(&self, hash: &Hash) -> Option<&[Receipt]> {
        self.executed
            .get(hash)
            .map(|e| e.output.receipts.as_slice())
    }

    /// Finalized tip: height and hash (the genesis hash at height 0).
    pub fn tip(&self) -> (Height, Hash) {
        match self.store.latest() {
            Some(l) if l.height > 0 => (l.height, l.block_hash),
            _ => (0, self.genesis_hash),
        }
    }

    /// Whether the block is in the cache.
    pub fn knows(&self, hash: &Hash) -> bool {
        self.blocks.contains_key(hash)
    }

    /// Remembers a block seen on the network or built here, and says whether it is kept
    /// (see [`Chain::remember_with`]; here every kept block counts as one the engine holds).
    pub fn remember(&mut self, block: &Block) -> bool {
        self.remember_with(block, &|_| true, false)
    }

    /// Remembers a block, bounded in count and bytes; below the tip ignored. A body that does
    /// not match its header is refused, and a block already known is never replaced: the
    /// hash covers only the header, so a second copy could carry a different body.
    ///
    /// Room is made by evicting first the blocks the consensus engine no longer holds
    /// (`engine_holds`: the engine keeps exactly what it needs within its own byte bound —
    /// the tip, certified blocks, the current proposal, its own notarized blocks), then the
    /// highest view (then height): honest blocks near the current view outrank anything a
    /// leader proposed far ahead (the driver admits only leader-signed proposals within a
    /// window, admit.rs), and views increase along every chain. Ranking by view alone let
    /// junk of nullified views, below every later honest block, fill the cache for good.
    /// A `needed` block (one the engine asked to verify, or this node's own proposal) evicts
    /// every block the engine does not hold and is kept even past the bound.
    pub fn remember_with(
        &mut self,
        block: &Block,
        engine_holds: &dyn Fn(&Hash) -> bool,
        needed: bool,
    ) -> bool {
        let hash = block.hash();
        if block.header.height <= self.tip().0 || self.blocks.contains_key(&hash) {
            return self.blocks.contains_key(&hash);
        }
        if !body_matches_header(block) {
            tracing::warn!(
                height = block.header.height,
                "refusing a block whose body does not match its header"
            );
            return false;
        }
        let size = borsh::object_length(block).unwrap_or(usize::MAX);
        let rank = |b: &Block, h: Hash| (!engine_holds(&h), b.header.view, b.header.height, h);
        let new_rank = rank(block, hash);
        loop {
            let bytes: usize = self.block_bytes.values().sum();
            if self.blocks.len() < self.max_blocks
                && bytes.saturating_add(size) <= self.max_block_bytes
            {
                break;
            }
            let highest = self.blocks.iter().map(|(h, b)| rank(b, *h)).max();
            match highest {
                Some(top) if (needed && top.0) || (!needed && top > new_rank) => {
                    self.blocks.remove(&top.3);
                    self.block_bytes.remove(&top.3);
                    self.executed.remove(&top.3);
                }
                _ if needed => break,
                _ => return false,
            }
        }
        self.blocks.insert(hash, block.clone());
        self.block_bytes.insert(hash, size);
        true
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
        let started = self.observer.execution_started();
        let mut output = self.runtime.execute_block(&view, &hashes, block)?;
        if self.diverge_at == Some(block.header.height) {
            output.diff.insert(
                StateKey::Storage(keel_types::Address([0xfa; 20]), [0xfa; 32]),
                Some(keel_state::encode_live(block.header.epoch, &[1; 32])),
            );
        }
        self.observer.executed(started);
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
        // Commit the body this node checked (and may have executed), never a second copy.
        let block = match self.blocks.get(&hash) {
            Some(known) => known.clone(),
            None if body_matches_header(block) => {
                self.blocks.insert(hash, block.clone());
                block.clone()
            }
            None => {
                return Err(ChainError::BodyMismatch {
                    height: block.header.height,
                })
            }
        };
        let block = &block;
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
        // Views increase along a chain, so no block at or below the finalized block's view
        // can ever extend it: drop those too, whatever height they claim.
        let (height, view) = (info.height, block.header.view);
        self.blocks
            .retain(|_, b| b.header.height > height && b.header.view > view);
        self.block_bytes.retain(|h, _| self.blocks.contains_key(h));
        self.executed.retain(|h, _| self.blocks.contains_key(h));
        self.observer
            .committed(executed.output.gas_used, block.transactions.len() as u64);
        Ok((info, executed.output.receipts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_runtime::RuntimeConfig;
    use keel_store::StoreOptions;
    use keel_types::{Address, Header, SecretKey, SignedTransaction, Transaction, TxBody, U256};

    const GENESIS: Hash = Hash::ZERO;

    fn chain() -> (tempfile::TempDir, Chain) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("state"), StoreOptions::default()).expect("store");
        // An empty genesis state at height 0.
        store
            .commit(CommitRequest {
                height: 0,
                diff: &StateDiff::new(),
                block: None,
                receipts: &[],
                archive: &keel_state::ArchiveBatch::default(),
            })
            .expect("genesis");
        let cache = keel_exec_wasm::ModuleCache::new(None, 4).expect("module cache");
        let runtime = Runtime::new(RuntimeConfig::new(1), Arc::new(cache));
        (dir, Chain::new(Arc::new(store), runtime, GENESIS, 0))
    }

    fn tx(nonce: u64, data_bytes: usize) -> SignedTransaction {
        let key = SecretKey::from_seed([7; 32]);
        Transaction {
            chain_id: 1,
            sender: key.public_key().into(),
            nonce,
            gas_limit: 100_000,
            gas_price: 1,
            body: TxBody::Call {
                to: Address([1; 20]),
                data: vec![0xab; data_bytes],
                value: U256::ZERO,
            },
        }
        .sign(&key)
    }

    fn block(
        height: Height,
        parent: Hash,
        salt: u64,
        transactions: Vec<SignedTransaction>,
    ) -> Block {
        let header = Header {
            chain_id: 1,
            height,
            epoch: 0,
            view: height,
            parent_hash: parent,
            proposer: SecretKey::from_seed([1; 32]).public_key(),
            timestamp_ms: 1_000 + salt,
            tx_root: keel_types::block::tx_root(&transactions),
            parent_state_root: Hash::ZERO,
            parent_receipts_root: Hash::ZERO,
            archive_root: Hash::ZERO,
        };
        Block {
            header,
            transactions,
        }
    }

    /// The same header (so the same hash) with other transactions.
    fn swapped(block: &Block) -> Block {
        Block {
            header: block.header.clone(),
            transactions: vec![tx(99, 8)],
        }
    }

    /// A value an unfinalized ancestor wrote is read from its diff, never named by the
    /// store's stamp of the value below it (a policy cache would serve the old record).
    #[test]
    fn an_ancestors_write_is_read_not_stamped() {
        let (_dir, chain) = chain();
        let (a, b) = (
            StateKey::Policy(Address([1; 20])),
            StateKey::Policy(Address([2; 20])),
        );
        let stored: StateDiff = [
            (a.clone(), Some(keel_state::encode_live(0, &[1]))),
            (b.clone(), Some(keel_state::encode_live(0, &[2]))),
        ]
        .into_iter()
        .collect();
        let archive = keel_state::ArchiveBatch::default();
        let request = |diff| CommitRequest {
            height: 1,
            diff,
            block: None,
            receipts: &[],
            archive: &archive,
        };
        chain.store.commit(request(&stored)).expect("commit");
        let base = || chain.store.view(1).expect("view");
        // The first read takes the values into the store's cache; then they are stamped.
        for key in [&a, &b] {
            assert!(matches!(
                base().get_stamped(key),
                Ok(keel_state::Stamped::Value(Some(_)))
            ));
            assert!(matches!(
                base().get_stamped(key),
                Ok(keel_state::Stamped::Stamp(_))
            ));
        }
        let ancestor: StateDiff = [(a.clone(), Some(keel_state::encode_live(0, &[3])))]
            .into_iter()
            .collect();
        let view = ChainView {
            base: base(),
            diffs: vec![&ancestor],
        };
        assert_eq!(
            view.get_stamped(&a).expect("read"),
            keel_state::Stamped::Value(Some(vec![3]))
        );
        assert_eq!(
            view.get_stamped(&b).expect("read"),
            base().get_stamped(&b).expect("read"),
            "a key no ancestor wrote is the store's"
        );
    }

    #[test]
    fn a_block_whose_body_was_swapped_is_refused() {
        let (_dir, mut chain) = chain();
        let good = block(1, GENESIS, 0, vec![tx(0, 8)]);
        let bad = swapped(&good);
        assert_eq!(bad.hash(), good.hash());
        assert!(!body_matches_header(&bad));
        assert!(!chain.remember(&bad));
        assert!(chain.blocks.is_empty());
        assert!(chain.remember(&good));
    }

    #[test]
    fn a_stored_body_is_never_replaced() {
        let (_dir, mut chain) = chain();
        let good = block(1, GENESIS, 0, vec![tx(0, 8)]);
        assert!(chain.remember(&good));
        // A second copy of the same header, even one that matched it, is not stored again;
        // one that does not match is not stored either.
        chain.remember(&swapped(&good));
        assert_eq!(chain.blocks[&good.hash()], good);
    }

    #[test]
    fn finality_commits_the_checked_body_and_refuses_an_unbound_one() {
        let (_dir, mut chain) = chain();
        let good = block(1, GENESIS, 0, Vec::new());
        // Nothing stored: a body that does not match its header is never committed.
        let err = chain.finalize(&swapped(&good)).expect_err("unbound body");
        assert!(
            matches!(err, ChainError::BodyMismatch { height: 1 }),
            "{err}"
        );
        assert!(chain.remember(&good));
        chain.finalize(&swapped(&good)).expect("finalize");
        let stored = chain.store().block(1).expect("read").expect("block 1");
        assert_eq!(stored, good);
    }

    #[test]
    fn unfinalized_blocks_are_bounded_in_bytes() {
        let (_dir, mut chain) = chain();
        let size = borsh::object_length(&block(1, GENESIS, 0, vec![tx(0, 10_000)])).expect("size");
        chain.max_block_bytes = 2 * size + size / 2;
        let b1 = block(1, GENESIS, 0, vec![tx(0, 10_000)]);
        let b2 = block(2, b1.hash(), 0, vec![tx(1, 10_000)]);
        let b3 = block(3, b2.hash(), 0, vec![tx(2, 10_000)]);
        assert!(chain.remember(&b1));
        assert!(chain.remember(&b2));
        // Over the byte bound, and the highest: refused.
        assert!(!chain.remember(&b3));
        assert!(!chain.blocks.contains_key(&b3.hash()));
        // A lower block makes room by evicting the highest.
        let other = block(1, GENESIS, 1, vec![tx(0, 10_000)]);
        assert!(chain.remember(&other));
        assert!(!chain.blocks.contains_key(&b2.hash()));
        let bytes: usize = chain.block_bytes.values().sum();
        assert!(bytes <= chain.max_block_bytes, "{bytes}");
        assert_eq!(chain.blocks.len(), chain.block_bytes.len());
    }

    /// Found by review: the cache ranked by view alone, so junk of views later nullified sat
    /// below every later honest block and, once it filled the cache, kept them all out.
    /// Blocks the engine no longer holds go first; a block the engine needs is always kept.
    #[test]
    fn blocks_the_engine_dropped_go_first_and_needed_blocks_are_kept() {
        let (_dir, mut chain) = chain();
        let size = borsh::object_length(&block(1, GENESIS, 0, vec![tx(0, 10_000)])).expect("size");
        chain.max_block_bytes = 2 * size + size / 2;
        // Two junk blocks of low views fill the cache; then the engine drops them.
        let junk: Vec<Block> = (0..2)
            .map(|i| block(1, GENESIS, 10 + i, vec![tx(i, 10_000)]))
            .collect();
        for j in &junk {
            assert!(chain.remember(j));
        }
        let engine_holds = |h: &Hash| !junk.iter().any(|j| j.hash() == *h);
        let honest = block(5, GENESIS, 0, vec![tx(5, 10_000)]);
        assert!(chain.remember_with(&honest, &engine_holds, false));
        assert!(chain.blocks.contains_key(&honest.hash()));
        // A needed block is kept even when only blocks the engine holds are left.
        let next = block(6, honest.hash(), 0, vec![tx(6, 10_000)]);
        let also = block(7, next.hash(), 0, vec![tx(7, 10_000)]);
        assert!(chain.remember_with(&next, &|_| true, true));
        assert!(chain.remember_with(&also, &|_| true, true));
        assert!(chain.blocks.contains_key(&honest.hash()));
        // Without need, a block ranked above everything held is refused.
        let far = block(9, also.hash(), 0, vec![tx(9, 10_000)]);
        assert!(!chain.remember_with(&far, &|_| true, false));
    }

    #[test]
    fn a_far_ahead_block_is_evicted_before_an_honest_one() {
        let (_dir, mut chain) = chain();
        let size = borsh::object_length(&block(1, GENESIS, 0, vec![tx(0, 10_000)])).expect("size");
        chain.max_block_bytes = 2 * size + size / 2;
        let b1 = block(1, GENESIS, 0, vec![tx(0, 10_000)]);
        // A leader's proposal far ahead that claims the next height (it fills the cache).
        let mut junk = block(1, GENESIS, 7, vec![tx(0, 10_000)]);
        junk.header.view = 200;
        assert!(chain.remember(&b1));
        assert!(chain.remember(&junk));
        // The honest child at the current view still gets in: the far-ahead block goes.
        let b2 = block(2, b1.hash(), 0, vec![tx(1, 10_000)]);
        assert!(chain.remember(&b2));
        assert!(!chain.blocks.contains_key(&junk.hash()));
        assert!(chain.blocks.contains_key(&b1.hash()));
    }
}
