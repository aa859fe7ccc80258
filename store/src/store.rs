//! The store: open, commit one block atomically, and read state, roots, proofs, blocks and
//! receipts at any retained height.

use crate::expiry::ExpiryCounts;
use crate::schema::*;
use crate::tree::{newest_value_at, DbTreeReader};
use borsh::{BorshDeserialize, BorshSerialize};
use keel_state::ArchiveBatch;
use keel_state::Entry;
use keel_state::StateError;
use keel_state::{decode_entry, StateDiff, StateView};
use keel_types::archive::ArchivedLeaf;
use keel_types::hash::JmtHasher;
use keel_types::limits::MAX_STATE_VALUE_BYTES;
use keel_types::receipt::BlockReceipts;
use keel_types::{Block, Canonical, Hash, Height, Receipt, StateKey, StateProof};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Options, SliceTransform, WriteBatch,
    WriteOptions, DB,
};
use std::path::Path;
use std::sync::{Mutex, RwLock};

type Jmt<'a> = jmt::JellyfishMerkleTree<'a, DbTreeReader<'a>, JmtHasher>;

/// Level-0 files a restoring store compacts at a time (RocksDB's default is 4): fewer
/// rewrites of what the restore writes, and below RocksDB's write-stop limit (36 files,
/// kept), so the reopened store's writes never start stopped.
pub const RESTORE_L0_FILES: u32 = 24;

/// Store tuning. Every field bounds a resource.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// fsync the WAL on every commit. Off only for benchmarks and throwaway stores: with it
    /// off a machine crash (not a process crash) can lose the newest commits.
    pub sync_writes: bool,
    /// Shared block cache for all column families.
    pub block_cache_bytes: usize,
    /// Memtable size per column family before it is flushed.
    pub write_buffer_bytes: usize,
    /// Open file handles RocksDB may keep.
    pub max_open_files: i32,
    /// Keep the expiry archive (expired entries and the nodes to prove them), so this node
    /// can serve revival proofs. Validators that turn it off still commit to the archive.
    pub keep_archive: bool,
    /// Maintain the touch index the expiry sweep draws candidates from. Only chains with
    /// expiry on read it; with expiry off it would cost a put and a delete per written entry
    /// and ≈ 10% of disk for nothing (`expiry_candidates` then finds nothing).
    pub index_touches: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync_writes: true,
            block_cache_bytes: 64 * 1024 * 1024,
            write_buffer_bytes: 32 * 1024 * 1024,
            max_open_files: 512,
            keep_archive: true,
            index_touches: true,
        }
    }
}

/// What the latest commit produced; stored under `meta/latest` in the same batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommitInfo {
    pub height: Height,
    /// State root after executing `height`.
    pub state_root: Hash,
    /// Hash of the block at `height` (`Hash::ZERO` if the commit carried no block).
    pub block_hash: Hash,
}

/// A node record outside the state: key and value.
pub type AuxRecord = (Vec<u8>, Vec<u8>);

/// One block's worth of changes to commit.
#[derive(Debug, Clone, Copy)]
pub struct CommitRequest<'a> {
    pub height: Height,
    pub diff: &'a StateDiff,
    pub block: Option<&'a Block>,
    pub receipts: &'a [Receipt],
    /// Entries this height moved to the expiry archive.
    pub archive: &'a ArchiveBatch,
}

/// The node's database. Commits are serialised; reads run concurrently with them and see
/// either all of a block or none of it.
pub struct Store {
    pub(crate) db: DB,
    pub(crate) options: StoreOptions,
    latest: RwLock<Option<CommitInfo>>,
    commit_lock: Mutex<()>,
    /// Entries of the latest height (moved forward by each commit's diff).
    latest_cache: crate::latest_cache::LatestCache,
    /// Internal tree nodes (each commit adds the ones it wrote).
    pub(crate) nodes: crate::tree::NodeCache,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("latest", &self.latest())
            .finish_non_exhaustive()
    }
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, StateError> {
    db.cf_handle(name)
        .ok_or_else(|| StateError::Corrupt(format!("missing column family {name}")))
}

fn tree_err(e: anyhow::Error) -> StateError {
    StateError::Tree(format!("{e:#}"))
}

impl Store {
    /// Opens (or creates) the store at `path` and checks that the latest commit's root is the
    /// root of the tree actually on disk.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StateError> {
        Self::open_with(path, options, false)
    }

    /// `restoring`: opened for a snapshot restore's bulk writes, which skip the WAL. Every
    /// column family is flushed at one sequence number (atomic flush), so those writes
    /// survive a crash as a consistent prefix of batches, never as one column family's half
    /// of a batch; and level-0 files are compacted [`RESTORE_L0_FILES`] at a time, not 4
    /// (see [`Store::end_bulk_load`]).
    pub(crate) fn open_with(
        path: &Path,
        options: StoreOptions,
        restoring: bool,
    ) -> Result<Store, StateError> {
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_open_files(options.max_open_files);
        db_opts.set_write_buffer_size(options.write_buffer_bytes);
        db_opts.set_atomic_flush(restoring);
        let descriptors = ALL_CFS.iter().map(|name| {
            let mut cf_opts = Options::default();
            cf_opts.set_block_based_table_factory(&table);
            cf_opts.set_write_buffer_size(options.write_buffer_bytes);
            // A restore flushes after every chunk, and compacting those files four at a time
            // while more arrive took as much CPU as the restore itself (its compaction thread
            // beside the verifying one). It compacts them RESTORE_L0_FILES at a time instead,
            // a fraction of the rewriting, and leaves fewer than RocksDB's write-stop limit
            // of 36 level-0 files to the reopened store, which compacts them in the
            // background while the node catches up.
            if restoring {
                let files = i32::try_from(RESTORE_L0_FILES).unwrap_or(i32::MAX);
                cf_opts.set_level_zero_file_num_compaction_trigger(files);
                // Writes slow down past 30 files and stop at RocksDB's 36 as usual, so the
                // reopened store never starts with its writes stopped.
                cf_opts.set_level_zero_slowdown_writes_trigger(files.saturating_add(6));
            }
            if *name == CF_VALUES {
                cf_opts.set_prefix_extractor(SliceTransform::create_fixed_prefix(KEY_HASH_BYTES));
            }
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = DB::open_cf_descriptors(&db_opts, path, descriptors).map_err(StateError::db)?;
        let latest = match db
            .get_cf(cf(&db, CF_META)?, META_LATEST)
            .map_err(StateError::db)?
        {
            None => None,
            Some(raw) => Some(
                CommitInfo::try_from_slice(&raw)
                    .map_err(|e| StateError::Corrupt(format!("meta/latest: {e}")))?,
            ),
        };
        let store = Store {
            db,
            options,
            latest_cache: crate::latest_cache::LatestCache::new(latest.map(|l| l.height)),
            latest: RwLock::new(latest),
            commit_lock: Mutex::new(()),
            nodes: crate::tree::NodeCache::new(),
        };
        store.check_latest()?;
        let latest = store.latest();
        crate::storage_count::ensure(&store.db, latest.is_some(), |key| match latest {
            Some(l) => store.entry(key, l.height),
            None => Ok(None),
        })?;
        Ok(store)
    }

    /// The latest commit's root must equal both the stored root for its height and the hash
    /// of the tree's root node at that version.
    fn check_latest(&self) -> Result<(), StateError> {
        let Some(latest) = self.latest() else {
            return Ok(());
        };
        let recorded = self.state_root(latest.height)?;
        let reader = DbTreeReader {
            db: &self.db,
            nodes: Some(&self.nodes),
        };
        let tree = Jmt::new(&reader);
        let computed = tree.get_root_hash(latest.height).map_err(tree_err)?;
        if recorded != latest.state_root || computed.0 != latest.state_root.0 {
            return Err(StateError::Corrupt(format!(
                "height {}: meta root {}, recorded root {}, tree root {}",
                latest.height,
                latest.state_root,
                recorded,
                Hash(computed.0)
            )));
        }
        Ok(())
    }

    pub fn latest(&self) -> Option<CommitInfo> {
        *self.latest.read().expect("latest lock poisoned")
    }

    /// The height the next commit must carry.
    pub fn next_height(&self) -> Height {
        self.latest().map_or(0, |l| l.height + 1)
    }

    /// The oldest height whose state, blocks and receipts are still retained.
    pub fn oldest_retained(&self) -> Result<Height, StateError> {
        Ok(self
            .db
            .get_cf(cf(&self.db, CF_META)?, META_OLDEST)
            .map_err(StateError::db)?
            .and_then(|raw| decode_height(&raw))
            .unwrap_or(0))
    }

    pub(crate) fn check_readable(&self, height: Height) -> Result<(), StateError> {
        let latest = self.latest().map(|l| l.height);
        if latest.is_none_or(|l| height > l) {
            return Err(StateError::FutureHeight { height, latest });
        }
        let oldest = self.oldest_retained()?;
        if height < oldest {
            return Err(StateError::Pruned { height, oldest });
        }
        Ok(())
    }

    /// Computes the state root `diff` would produce at `height` without writing anything.
    pub fn preview_root(&self, height: Height, diff: &StateDiff) -> Result<Hash, StateError> {
        let expected = self.next_height();
        if height != expected {
            return Err(StateError::NotNextHeight {
                expected,
                got: height,
            });
        }
        let reader = DbTreeReader {
            db: &self.db,
            nodes: Some(&self.nodes),
        };
        let tree = Jmt::new(&reader);
        let (root, _) = update_tree(&tree, (diff, &key_hashes(diff)), height)?;
        Ok(root)
    }

    /// Commits one height: the state diff, its tree nodes, the block, receipts and indexes,
    /// and the new latest pointer, in one atomic WriteBatch.
    pub fn commit(&self, request: CommitRequest<'_>) -> Result<CommitInfo, StateError> {
        let _guard = self.commit_lock.lock().expect("commit lock poisoned");
        let height = request.height;
        let expected = self.next_height();
        if height != expected {
            return Err(StateError::NotNextHeight {
                expected,
                got: height,
            });
        }
        for (key, value) in request.diff {
            if let Some(v) = value {
                if v.len() > MAX_STATE_VALUE_BYTES {
                    return Err(StateError::ValueTooLarge {
                        key: format!("{key:?}"),
                        len_bytes: v.len(),
                        max_bytes: MAX_STATE_VALUE_BYTES,
                    });
                }
            }
        }
        let reader = DbTreeReader {
            db: &self.db,
            nodes: Some(&self.nodes),
        };
        let tree = Jmt::new(&reader);
        let key_hashes = key_hashes(request.diff);
        let (state_root, update) = update_tree(&tree, (request.diff, &key_hashes), height)?;

        let db = &self.db;
        let mut batch = WriteBatch::default();
        crate::expiry::bookkeep(
            db,
            &mut batch,
            height,
            (request.diff, &key_hashes),
            request.archive.folded_revivals,
            self.options.index_touches,
        )?;
        if self.options.keep_archive {
            crate::expiry::write_archive(db, &mut batch, request.archive)?;
        }
        let nodes = cf(db, CF_NODES)?;
        for (node_key, node) in update.node_batch.nodes() {
            batch.put_cf(
                nodes,
                borsh::to_vec(node_key).map_err(io_corrupt)?,
                borsh::to_vec(node).map_err(io_corrupt)?,
            );
        }
        let values = cf(db, CF_VALUES)?;
        for ((version, key_hash), value) in update.node_batch.values() {
            batch.put_cf(
                values,
                value_key(&key_hash.0, *version),
                borsh::to_vec(value).map_err(io_corrupt)?,
            );
        }
        let preimages = cf(db, CF_PREIMAGES)?;
        for ((key, value), key_hash) in request.diff.iter().zip(&key_hashes) {
            // A deleted key keeps its preimage until the pruner drops the delete (prune.rs):
            // a snapshot of a retained height before the delete serves the key by it.
            if value.is_some() {
                batch.put_cf(preimages, key_hash, key.to_bytes());
            }
        }
        let stale = cf(db, CF_STALE)?;
        for index in &update.stale_node_index_batch {
            let mut k = height_key(index.stale_since_version).to_vec();
            k.extend(borsh::to_vec(&index.node_key).map_err(io_corrupt)?);
            batch.put_cf(stale, k, []);
        }
        batch.put_cf(cf(db, CF_ROOTS)?, height_key(height), state_root.0);
        let mut block_hash = Hash::ZERO;
        if let Some(block) = request.block {
            if block.header.height != height {
                return Err(StateError::NotNextHeight {
                    expected: height,
                    got: block.header.height,
                });
            }
            block_hash = block.hash();
            batch.put_cf(cf(db, CF_BLOCKS)?, height_key(height), block.encode());
            batch.put_cf(cf(db, CF_BLOCK_INDEX)?, block_hash.0, height_key(height));
            // The index keeps a transaction's first inclusion: a later copy (which a valid
            // block never holds, its nonce being used) must not point lookups elsewhere.
            let tx_index = cf(db, CF_TX_INDEX)?;
            let mut indexed = std::collections::BTreeSet::new();
            for (i, tx) in block.transactions.iter().enumerate() {
                let hash = tx.hash();
                if !indexed.insert(hash)
                    || db
                        .get_pinned_cf(tx_index, hash.0)
                        .map_err(StateError::db)?
                        .is_some()
                {
                    continue;
                }
                let mut location = height_key(height).to_vec();
                location.extend((i as u32).to_be_bytes());
                batch.put_cf(tx_index, hash.0, location);
            }
        }
        batch.put_cf(
            cf(db, CF_RECEIPTS)?,
            height_key(height),
            BlockReceipts(request.receipts.to_vec()).encode(),
        );
        let info = CommitInfo {
            height,
            state_root,
            block_hash,
        };
        batch.put_cf(
            cf(db, CF_META)?,
            META_LATEST,
            borsh::to_vec(&info).map_err(io_corrupt)?,
        );

        let mut write = WriteOptions::default();
        write.set_sync(self.options.sync_writes);
        db.write_opt(batch, &write).map_err(StateError::db)?;
        // Only once written: a commit that failed (a bad block, a write error) may be
        // retried with another diff, whose nodes at this version differ.
        for (node_key, node) in update.node_batch.nodes() {
            self.nodes.put(node_key, node);
        }
        *self.latest.write().expect("latest lock poisoned") = Some(info);
        self.latest_cache.advance(height, request.diff);
        tracing::debug!(height, root = %state_root, "committed");
        Ok(info)
    }

    /// Holds off commits (the pruner's decisions that depend on the latest state).
    pub(crate) fn lock_commits(&self) -> std::sync::MutexGuard<'_, ()> {
        self.commit_lock.lock().expect("commit lock poisoned")
    }

    /// A snapshot restore wrote `info` as the latest commit (snapshot.rs).
    pub(crate) fn restored(&self, info: CommitInfo) {
        *self.latest.write().expect("latest lock poisoned") = Some(info);
        self.latest_cache.advance(info.height, &StateDiff::new());
    }

    /// Sets RocksDB's level-0 limits back to its defaults after a restore's bulk writes (a
    /// store opened `restoring` compacts [`RESTORE_L0_FILES`] files at a time).
    pub(crate) fn end_bulk_load(&self) -> Result<(), StateError> {
        for name in ALL_CFS {
            self.db
                .set_options_cf(
                    cf(&self.db, name)?,
                    &[
                        ("level0_file_num_compaction_trigger", "4"),
                        ("level0_slowdown_writes_trigger", "20"),
                        ("level0_stop_writes_trigger", "36"),
                    ],
                )
                .map_err(StateError::db)?;
        }
        Ok(())
    }

    /// Writes a node record outside the state (not part of any root), durably.
    pub fn put_aux(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        let mut write = WriteOptions::default();
        write.set_sync(self.options.sync_writes);
        self.db
            .put_cf_opt(cf(&self.db, CF_AUX)?, key, value, &write)
            .map_err(StateError::db)?;
        Ok(())
    }

    /// Deletes a node record outside the state (absent is fine). Not synced: a crash may
    /// bring the record back, so callers delete only what they can sweep again.
    pub fn delete_aux(&self, key: &[u8]) -> Result<(), StateError> {
        let write = WriteOptions::default();
        self.db
            .delete_cf_opt(cf(&self.db, CF_AUX)?, key, &write)
            .map_err(StateError::db)
    }

    pub fn get_aux(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db
            .get_cf(cf(&self.db, CF_AUX)?, key)
            .map_err(StateError::db)
    }

    /// The first aux record with key ≥ `from` that still starts with `prefix`.
    pub fn next_aux(&self, prefix: &[u8], from: &[u8]) -> Result<Option<AuxRecord>, StateError> {
        let mut iter = self.db.raw_iterator_cf(cf(&self.db, CF_AUX)?);
        iter.seek(from);
        match (iter.key(), iter.value()) {
            (Some(k), Some(v)) if k.starts_with(prefix) => Ok(Some((k.to_vec(), v.to_vec()))),
            _ => {
                iter.status().map_err(StateError::db)?;
                Ok(None)
            }
        }
    }

    /// Live, expired and revived entry counts as of the latest commit.
    pub fn expiry_counts(&self) -> Result<ExpiryCounts, StateError> {
        crate::expiry::counts(&self.db)
    }

    /// Whether this node keeps the expiry archive.
    pub fn keeps_archive(&self) -> bool {
        self.options.keep_archive
    }

    /// An archive node hash, if this node keeps the archive.
    pub fn archive_node(&self, level: u32, index: u64) -> Result<Option<Hash>, StateError> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_ARCHIVE)?, archive_node_key(level, index))
            .map_err(StateError::db)?;
        raw.map(|r| {
            r.as_slice()
                .try_into()
                .map(Hash)
                .map_err(|_| StateError::Corrupt("archive node length".into()))
        })
        .transpose()
    }

    /// An archived entry by leaf index, if this node keeps the archive.
    pub fn archive_leaf(&self, index: u64) -> Result<Option<ArchivedLeaf>, StateError> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_ARCHIVE)?, archive_leaf_key(index))
            .map_err(StateError::db)?;
        raw.map(|r| {
            ArchivedLeaf::try_from_slice(&r)
                .map_err(|e| StateError::Corrupt(format!("archive leaf {index}: {e}")))
        })
        .transpose()
    }

    /// The state root after executing `height`.
    pub fn state_root(&self, height: Height) -> Result<Hash, StateError> {
        let oldest = self.oldest_retained()?;
        if height < oldest {
            return Err(StateError::Pruned { height, oldest });
        }
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_ROOTS)?, height_key(height))
            .map_err(StateError::db)?
            .ok_or(StateError::FutureHeight {
                height,
                latest: self.latest().map(|l| l.height),
            })?;
        Ok(Hash(
            raw.as_slice()
                .try_into()
                .map_err(|_| StateError::Corrupt("root length".into()))?,
        ))
    }

    /// The stored entry (live or expired stub) of `key` as of `height`.
    pub fn entry(&self, key: &StateKey, height: Height) -> Result<Option<Entry>, StateError> {
        // A hit is of the latest height, which is always readable.
        if let Some(entry) = self.latest_cache.get(key, height) {
            return Ok(entry);
        }
        self.check_readable(height)?;
        let raw = newest_value_at(&self.db, &key.key_hash().0, height)
            .map(Option::flatten)
            .map_err(tree_err)?;
        let entry = decode_entry(raw.as_ref())?;
        self.latest_cache.put(key, height, &entry);
        Ok(entry)
    }

    /// The live value of `key` as of `height` (`StateError::Expired` for an expired entry,
    /// its stub in the tree or folded into a page that flags it).
    pub fn get(&self, key: &StateKey, height: Height) -> Result<Option<Vec<u8>>, StateError> {
        StateView::get(&self.view(height)?, key)
    }

    /// A membership (or non-membership) proof for `key` against the root at `height`.
    pub fn prove(&self, key: &StateKey, height: Height) -> Result<StateProof, StateError> {
        self.check_readable(height)?;
        let reader = DbTreeReader {
            db: &self.db,
            nodes: Some(&self.nodes),
        };
        let tree = Jmt::new(&reader);
        let (value, proof) = tree
            .get_with_proof(jmt::KeyHash(key.key_hash().0), height)
            .map_err(tree_err)?;
        Ok(StateProof {
            height,
            key: key.clone(),
            value,
            proof,
        })
    }

    pub fn block(&self, height: Height) -> Result<Option<Block>, StateError> {
        self.db
            .get_cf(cf(&self.db, CF_BLOCKS)?, height_key(height))
            .map_err(StateError::db)?
            .map(|raw| Block::decode(&raw).map_err(StateError::decode("block")))
            .transpose()
    }

    pub fn block_height(&self, hash: &Hash) -> Result<Option<Height>, StateError> {
        Ok(self
            .db
            .get_cf(cf(&self.db, CF_BLOCK_INDEX)?, hash.0)
            .map_err(StateError::db)?
            .and_then(|raw| decode_height(&raw)))
    }

    pub fn receipts(&self, height: Height) -> Result<Option<Vec<Receipt>>, StateError> {
        self.db
            .get_cf(cf(&self.db, CF_RECEIPTS)?, height_key(height))
            .map_err(StateError::db)?
            .map(|raw| {
                BlockReceipts::decode(&raw)
                    .map(|r| r.0)
                    .map_err(StateError::decode("receipts"))
            })
            .transpose()
    }

    /// Where a transaction landed: (height, index in block).
    pub fn tx_location(&self, tx_hash: &Hash) -> Result<Option<(Height, u32)>, StateError> {
        let Some(raw) = self
            .db
            .get_cf(cf(&self.db, CF_TX_INDEX)?, tx_hash.0)
            .map_err(StateError::db)?
        else {
            return Ok(None);
        };
        let height = decode_height(&raw).ok_or_else(|| StateError::Corrupt("tx index".into()))?;
        let index = raw
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| StateError::Corrupt("tx index".into()))?;
        Ok(Some((height, index)))
    }

    /// A read-only view of state as of `height`.
    pub fn view(&self, height: Height) -> Result<StoreView<'_>, StateError> {
        self.check_readable(height)?;
        Ok(StoreView {
            store: self,
            height,
        })
    }

    /// A view of the latest committed state (empty state before the first commit).
    pub fn latest_view(&self) -> StoreView<'_> {
        StoreView {
            store: self,
            height: self.latest().map_or(0, |l| l.height),
        }
    }

    /// Recomputes the tree root at `height` from the stored nodes and compares it with the
    /// recorded root: the deep consistency check the crash test runs after every restart.
    pub fn verify_root(&self, height: Height) -> Result<Hash, StateError> {
        let recorded = self.state_root(height)?;
        let reader = DbTreeReader {
            db: &self.db,
            nodes: Some(&self.nodes),
        };
        let tree = Jmt::new(&reader);
        let computed = Hash(tree.get_root_hash(height).map_err(tree_err)?.0);
        if computed != recorded {
            return Err(StateError::Corrupt(format!(
                "height {height}: recorded root {recorded}, tree root {computed}"
            )));
        }
        Ok(recorded)
    }

    /// Whether anything is stored for a height above the latest commit (must never be true:
    /// a commit is all-or-nothing).
    pub fn has_data_above_latest(&self) -> Result<bool, StateError> {
        let next = height_key(self.next_height());
        for name in [CF_ROOTS, CF_BLOCKS, CF_RECEIPTS] {
            let mut iter = self.db.iterator_cf(
                cf(&self.db, name)?,
                rocksdb::IteratorMode::From(&next, rocksdb::Direction::Forward),
            );
            if iter.next().transpose().map_err(StateError::db)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Approximate on-disk size of all column families (live SST files), for metrics.
    pub fn disk_size_bytes(&self) -> Result<u64, StateError> {
        let mut total = 0u64;
        for name in ALL_CFS {
            total += self
                .db
                .property_int_value_cf(cf(&self.db, name)?, "rocksdb.total-sst-files-size")
                .map_err(StateError::db)?
                .unwrap_or(0);
        }
        Ok(total)
    }
}

pub(crate) fn io_corrupt(e: std::io::Error) -> StateError {
    StateError::Corrupt(format!("encoding for storage: {e}"))
}

/// Each written key's place in the tree (`StateKey::key_hash`, a keyed blake3), in the
/// diff's order: computed once per commit for the tree update, the expiry bookkeeping and
/// the preimages, which each hashed every key.
fn key_hashes(diff: &StateDiff) -> Vec<[u8; 32]> {
    diff.keys().map(|k| k.key_hash().0).collect()
}

/// Applies `diff` as tree version `height`. jmt's batch insertion (sorted keys, subtrees
/// built bottom-up) is several times faster than key-at-a-time insertion but cannot delete
/// and rejects an empty set, so it is used for diffs of inserts and updates only. A Jellyfish
/// tree's shape depends only on its key set, so both paths give the same root; the store
/// property tests check this (from-scratch roots take the batch path, mixed histories the
/// other).
fn update_tree(
    tree: &Jmt<'_>,
    (diff, key_hashes): (&StateDiff, &[[u8; 32]]),
    height: Height,
) -> Result<(Hash, jmt::storage::TreeUpdateBatch), StateError> {
    if diff.len() != key_hashes.len() {
        return Err(StateError::Corrupt("a key hash per written key".into()));
    }
    let has_delete = diff.values().any(Option::is_none);
    let (roots, update) = if diff.is_empty() || has_delete {
        let updates: Vec<(jmt::KeyHash, Option<jmt::OwnedValue>)> = diff
            .values()
            .zip(key_hashes)
            .map(|(v, h)| (jmt::KeyHash(*h), v.clone()))
            .collect();
        tree.put_value_sets(vec![updates], height)
            .map_err(tree_err)?
    } else {
        let updates: Vec<(jmt::KeyHash, jmt::OwnedValue)> = diff
            .values()
            .zip(key_hashes)
            .filter_map(|(v, h)| v.as_ref().map(|v| (jmt::KeyHash(*h), v.clone())))
            .collect();
        tree.batch_put_value_sets(vec![updates], None, height)
            .map_err(tree_err)?
    };
    let root = roots
        .first()
        .ok_or_else(|| StateError::Tree("no root for the version".into()))?;
    Ok((Hash(root.0), update))
}

/// State as of one committed height.
#[derive(Debug, Clone, Copy)]
pub struct StoreView<'a> {
    store: &'a Store,
    height: Height,
}

impl StoreView<'_> {
    pub fn height(&self) -> Height {
        self.height
    }

    /// Candidates from the touch or stub index. The indexes describe the latest commit only:
    /// a view of an older height (a query, never block execution) has none.
    fn indexed(
        &self,
        index: &str,
        before_epoch: keel_types::Epoch,
        limit: usize,
    ) -> Result<Vec<StateKey>, StateError> {
        if self.store.latest().map(|l| l.height) != Some(self.height) {
            return Ok(Vec::new());
        }
        crate::expiry::candidates(&self.store.db, index, before_epoch, limit)
    }
}

impl StateView for StoreView<'_> {
    fn entry(&self, key: &StateKey) -> Result<Option<Entry>, StateError> {
        if self.store.latest().is_none() {
            return Ok(None);
        }
        self.store.entry(key, self.height)
    }

    /// Stamped while the latest-entry cache holds `key`'s live value at this height (each
    /// value it takes in gets a fresh stamp, so a stamp names one value for good); anything
    /// else the cache holds is answered from the same lookup.
    fn get_stamped(&self, key: &StateKey) -> Result<keel_state::Stamped, StateError> {
        if !key.expires() && self.store.latest().is_some() {
            match self.store.latest_cache.get_stamped(key, self.height) {
                Some(Ok(stamp)) => return Ok(keel_state::Stamped::Stamp(stamp)),
                Some(Err(entry)) => {
                    return keel_state::live_value(key, entry).map(keel_state::Stamped::Value)
                }
                None => {}
            }
        }
        self.get(key).map(keel_state::Stamped::Value)
    }

    fn expiry_candidates(
        &self,
        before_epoch: keel_types::Epoch,
        limit: usize,
    ) -> Result<Vec<StateKey>, StateError> {
        self.indexed(CF_TOUCH, before_epoch, limit)
    }

    fn fold_candidates(
        &self,
        before_epoch: keel_types::Epoch,
        limit: usize,
    ) -> Result<Vec<StateKey>, StateError> {
        self.indexed(CF_STUBS, before_epoch, limit)
    }

    /// The latest state's count: exact for the latest height, which is what block execution
    /// reads; a view of an older height (a query or a trace) sees today's count.
    fn storage_entries(&self, address: &keel_types::Address) -> Result<u64, StateError> {
        if self.store.latest().is_none() {
            return Ok(0);
        }
        crate::storage_count::read(&self.store.db, address)
    }
}
