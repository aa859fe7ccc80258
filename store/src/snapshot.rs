//! Snapshot state sync at the store: serve one height's state as key-hash-ordered chunks with
//! Jellyfish range proofs, and restore an empty store from such chunks, verifying each
//! against the certified root as it arrives (jmt's `JellyfishMerkleRestore`, which keeps only
//! the right edge of the tree in memory, so a state larger than memory restores).
//!
//! A restore survives `kill -9`: every chunk's values, preimages and the tree nodes it
//! completed go to RocksDB in one batch with the rightmost leaf written so far, and reopening
//! rebuilds the right edge from that leaf (jmt's recovery); the keys after it are fetched
//! again. The batches skip the WAL and are made durable by an atomic flush of every column
//! family, which runs while the next chunk is verified: a death loses whole batches only,
//! at most the last one written (a batch waits for the last one's flush), so at most a
//! chunk and a leaf are fetched again. A chunk that fails its proof writes
//! nothing, and the restore rewinds to what is stored. The derived indexes (touch and stub indexes, entry
//! counters, per-address storage counts) are written with each key's value; a key fetched
//! again (its preimage already stored) is not counted twice.

use crate::schema::*;
use crate::store::{cf, io_corrupt, Store, StoreOptions};
use crate::tree::{newest_value_at, DbTreeReader};
use jmt::restore::{JellyfishMerkleRestore, StateSnapshotReceiver};
use jmt::storage::{LeafNode, Node, NodeBatch, NodeKey, TreeReader, TreeWriter};
use jmt::{KeyHash, OwnedValue, Version};
use keel_state::{Entry, EntryKind, StateError};
use keel_types::hash::{Domain, JmtHasher};
use keel_types::proof::{
    snapshot_entry_bytes, MAX_SNAPSHOT_CHUNK_BYTES, MAX_SNAPSHOT_CHUNK_ENTRIES,
    SNAPSHOT_PROOF_RESERVE_BYTES,
};
use keel_types::receipt::BlockReceipts;
use keel_types::{Block, Canonical, Hash, Header, Height, Receipt, SnapshotChunk, StateKey};
use rocksdb::{FlushOptions, WriteBatch, WriteOptions};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// The height and root a restore is for (so a resumed restore cannot mix two states).
const META_RESTORE_TARGET: &[u8] = b"restore_target";
/// borsh((NodeKey, LeafNode)): the rightmost leaf node written so far.
const META_RESTORE_RIGHTMOST: &[u8] = b"restore_rightmost";
/// Meta key: the greatest key hash whose value (and indexes) a restore has written. Values
/// run ahead of the rightmost finished leaf (jmt writes a chunk's values with its batch,
/// its last leaves stay in the right edge), so after a restart the keys up to this one
/// come again and are already indexed; keys after it cannot be.
const META_RESTORE_VALUES_THROUGH: &[u8] = b"restore_values_through";

/// Why a snapshot chunk or restore is refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("chunk for height {got}, the restore is for height {expected}")]
    WrongHeight { expected: Height, got: Height },
    #[error("chunk does not verify against root {root}: {reason}")]
    BadProof { root: Hash, reason: String },
    #[error("chunk entry {index}: {reason}")]
    BadEntry { index: usize, reason: String },
    #[error("chunk starts at or before what is restored")]
    Overlap,
    #[error("the store already holds state (latest height {0})")]
    NotEmpty(Height),
    #[error(
        "the store holds a restore of height {height} root {root}; start from an empty directory"
    )]
    OtherRestore { height: Height, root: Hash },
    #[error("the restored tree's root {got} is not the certified root {expected}")]
    RootMismatch { expected: Hash, got: Hash },
    #[error("the last chunk has not arrived")]
    Incomplete,
    #[error(transparent)]
    State(#[from] StateError),
}

impl Store {
    /// The entries of `height`'s state after key hash `after` (from the first if `None`),
    /// at most `max_bytes` (capped at [`MAX_SNAPSHOT_CHUNK_BYTES`]; at least one entry),
    /// with their range proof.
    pub fn snapshot_chunk(
        &self,
        height: Height,
        after: Option<[u8; 32]>,
        max_bytes: usize,
    ) -> Result<Option<SnapshotChunk>, StateError> {
        self.check_readable(height)?;
        // Not through the node cache: a served height's upper nodes would push out the
        // latest ones that commits read.
        let reader = Arc::new(DbTreeReader {
            db: &self.db,
            nodes: None,
        });
        let start = match after {
            None => Some([0u8; 32]),
            Some(key) => successor(key),
        };
        let Some(start) = start else {
            return Ok(None);
        };
        let budget = max_bytes.min(MAX_SNAPSHOT_CHUNK_BYTES - SNAPSHOT_PROOF_RESERVE_BYTES);
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        let iter = jmt::JellyfishMerkleIterator::new(Arc::clone(&reader), height, KeyHash(start))
            .map_err(tree_err)?;
        let mut last_key = None;
        let mut exhausted = true;
        for item in iter {
            let (key_hash, value) = item.map_err(tree_err)?;
            let preimage = self
                .db
                .get_cf(cf(&self.db, CF_PREIMAGES)?, key_hash.0)
                .map_err(StateError::db)?
                .ok_or_else(|| {
                    StateError::Corrupt(format!("no preimage for key hash {}", Hash(key_hash.0)))
                })?;
            let size = snapshot_entry_bytes(&preimage, &value);
            if !entries.is_empty()
                && (bytes + size > budget || entries.len() == MAX_SNAPSHOT_CHUNK_ENTRIES)
            {
                exhausted = false;
                break;
            }
            bytes += size;
            entries.push((preimage, value));
            last_key = Some(key_hash);
        }
        let Some(last_key) = last_key else {
            return Ok(None);
        };
        // Stopped by the budget, the iterator held a key that did not fit: more follows.
        let last = exhausted;
        let tree = jmt::JellyfishMerkleTree::<_, JmtHasher>::new(reader.as_ref());
        let proof = tree.get_range_proof(last_key, height).map_err(tree_err)?;
        Ok(Some(SnapshotChunk {
            height,
            after: after.map(keel_types::Hash),
            entries,
            last,
            proof,
        }))
    }
}

/// Whether a range proof shows no key to the right of its last one: every right sibling is
/// the empty placeholder. jmt keeps the siblings private; their borsh form is a length and
/// then one enum per sibling whose tag is 0 only for the placeholder (which has no fields).
fn nothing_after(proof: &keel_types::proof::RangeProof) -> Result<bool, SnapshotError> {
    let raw = borsh::to_vec(proof).map_err(io_corrupt)?;
    let siblings = raw
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| StateError::Corrupt("range proof encoding".into()))?;
    let rest = &raw[4..];
    Ok(rest.len() == siblings as usize && rest.iter().all(|b| *b == 0))
}

/// The next 32-byte key in big-endian order, `None` after the last.
fn successor(mut key: [u8; 32]) -> Option<[u8; 32]> {
    for byte in key.iter_mut().rev() {
        let (next, carry) = byte.overflowing_add(1);
        *byte = next;
        if !carry {
            return Some(key);
        }
    }
    None
}

fn tree_err(e: anyhow::Error) -> StateError {
    StateError::Tree(format!("{e:#}"))
}

/// A key added to the restore whose value jmt has not written yet: its hash, the key and
/// its canonical encoding (what the hash is of, stored as its preimage).
type PendingKey = ([u8; 32], StateKey, Vec<u8>);

/// What jmt's restore writes through: the store's database, plus the keys of the chunk
/// being added, whose preimages and derived indexes are written with their values in one
/// batch.
struct Target {
    store: Arc<Store>,
    /// In ascending key-hash order: chunks arrive in it, and jmt writes their values in it
    /// (each batch a prefix of these; a queue, where a sorted map's inserts and removals
    /// were a tenth of the verifying thread's time).
    pending: Mutex<VecDeque<PendingKey>>,
    /// The greatest key hash with a value written (read when the restore is opened or
    /// rewound; `None`: none). Only keys up to it can be indexed already.
    values_through: Mutex<Option<[u8; 32]>>,
    /// The flush of the last batch written, running while the next chunk is verified.
    flushing: Mutex<Option<std::thread::JoinHandle<Result<(), rocksdb::Error>>>>,
}

impl Target {
    /// Waits for the last batch's flush: after it, everything written is on disk.
    fn settle(&self) -> Result<(), StateError> {
        let running = self
            .flushing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match running.map(std::thread::JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(StateError::db(e)),
            Some(Err(_)) => Err(StateError::Corrupt("the restore's flush panicked".into())),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // The flush holds the database open: reopening the directory must not race it.
        if let Err(e) = self.settle() {
            tracing::warn!(error = %e, "snapshot restore: the last flush failed");
        }
    }
}

impl Target {
    /// Adds to `write` the preimage of each value and — for a key not restored before (a
    /// key fetched again after a restart already has them) — its touch or stub index entry,
    /// its place in the entry counters and in its address's storage count.
    fn index(
        &self,
        write: &mut WriteBatch,
        values: &BTreeMap<(Version, KeyHash), Option<OwnedValue>>,
    ) -> Result<(), StateError> {
        let db = &self.store.db;
        let (preimages, touch, stubs) =
            (cf(db, CF_PREIMAGES)?, cf(db, CF_TOUCH)?, cf(db, CF_STUBS)?);
        let index_touches = self.store.options.index_touches;
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut active, mut expired) = (0u64, 0u64);
        let mut storage = crate::storage_count::Deltas::default();
        // Whether each value was indexed already (a resumed restore's right edge): only
        // keys up to the last value written before can be, and those are read in one
        // batched lookup (a point read per entry was a tenth of the restore; RocksDB sorts
        // the keys itself and answers in the input's order).
        let through = *self
            .values_through
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let again = values
            .keys()
            .take_while(|(_, k)| through.is_some_and(|t| k.0 <= t))
            .count();
        let mut seen: Vec<bool> = db
            .batched_multi_get_cf(
                preimages,
                values.keys().take(again).map(|(_, k)| &k.0),
                false,
            )
            .into_iter()
            .map(|found| found.map(|v| v.is_some()).map_err(StateError::db))
            .collect::<Result<_, _>>()?;
        seen.resize(values.len(), false);
        if let Some(((_, last), _)) = values.last_key_value() {
            // Never lowered, so a rewind still looks up every key an earlier run indexed.
            // (Defensive: jmt's restore leaves only the last leaf of a batch unwritten, so
            // no chunk after a restart ends below the mark today; a test stopping after
            // each of 400 one-entry chunks never found two keys past the rightmost leaf.)
            let through = through.map_or(last.0, |t| t.max(last.0));
            write.put_cf(cf(db, CF_META)?, META_RESTORE_VALUES_THROUGH, through);
        }
        for (((_, key_hash), value), seen) in values.iter().zip(seen) {
            let (key, raw_key) = match pending.pop_front() {
                Some((hash, key, raw)) if hash == key_hash.0 => (key, raw),
                _ => {
                    return Err(StateError::Corrupt(
                        "a restored value without its key".into(),
                    ))
                }
            };
            write.put_cf(preimages, key_hash.0, &raw_key);
            let Some(value) = value.as_deref().filter(|_| !seen) else {
                continue;
            };
            storage.record(&key, None, Some(value))?;
            if !key.expires() {
                continue;
            }
            match Entry::kind(value)? {
                EntryKind::Live { touched_epoch } => {
                    active += 1;
                    if index_touches {
                        write.put_cf(touch, touch_key(touched_epoch, &key_hash.0), []);
                    }
                }
                EntryKind::Expired { epoch } => {
                    expired += 1;
                    if index_touches {
                        write.put_cf(stubs, touch_key(epoch, &key_hash.0), []);
                    }
                }
            }
        }
        storage.write(db, write)?;
        let meta = cf(db, CF_META)?;
        let active = crate::expiry::read_counter(db, META_ACTIVE)? + active;
        let expired = crate::expiry::read_counter(db, META_EXPIRED)? + expired;
        write.put_cf(meta, META_ACTIVE, active.to_be_bytes());
        write.put_cf(meta, META_EXPIRED, expired.to_be_bytes());
        Ok(())
    }
}

impl TreeWriter for Target {
    fn write_node_batch(&self, batch: &NodeBatch) -> anyhow::Result<()> {
        let db = &self.store.db;
        let mut write = WriteBatch::default();
        let nodes = db
            .cf_handle(CF_NODES)
            .ok_or_else(|| anyhow::anyhow!("no nodes column family"))?;
        let mut rightmost: Option<(NodeKey, LeafNode)> = None;
        for (node_key, node) in batch.nodes() {
            write.put_cf(nodes, borsh::to_vec(node_key)?, borsh::to_vec(node)?);
            if let Node::Leaf(leaf) = node {
                if rightmost
                    .as_ref()
                    .is_none_or(|(_, r)| leaf.key_hash() > r.key_hash())
                {
                    rightmost = Some((node_key.clone(), leaf.clone()));
                }
            }
        }
        let values = db
            .cf_handle(CF_VALUES)
            .ok_or_else(|| anyhow::anyhow!("no values column family"))?;
        for ((version, key_hash), value) in batch.values() {
            write.put_cf(
                values,
                value_key(&key_hash.0, *version),
                borsh::to_vec(value)?,
            );
        }
        self.index(&mut write, batch.values())?;
        let meta = db
            .cf_handle(CF_META)
            .ok_or_else(|| anyhow::anyhow!("no meta column family"))?;
        if let Some(found) = rightmost {
            // Leaves are frozen left to right: a later batch's leaves lie further right.
            write.put_cf(meta, META_RESTORE_RIGHTMOST, borsh::to_vec(&found)?);
        }
        // Bulk data skips the WAL (writing every byte twice was a third of the restore)
        // and is made durable by flushing all column families at once (the store is
        // opened with atomic flush, so a crash keeps whole batches only). The flush runs
        // while the next chunk is verified, and is waited for before the next batch is
        // written: a crash loses at most the last batch, one chunk's worth.
        self.settle()?;
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        db.write_opt(write, &options)?;
        let store = Arc::clone(&self.store);
        let flush = std::thread::Builder::new()
            .name("keel-restore-flush".into())
            .spawn(move || -> Result<(), rocksdb::Error> {
                let db = &store.db;
                let families: Vec<_> = ALL_CFS.iter().filter_map(|n| db.cf_handle(n)).collect();
                db.flush_cfs_opt(&families, &FlushOptions::default())
            })?;
        *self.flushing.lock().unwrap_or_else(PoisonError::into_inner) = Some(flush);
        Ok(())
    }
}

impl TreeReader for Target {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        DbTreeReader {
            db: &self.store.db,
            nodes: None,
        }
        .get_node_option(node_key)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(newest_value_at(&self.store.db, &key_hash.0, max_version)?.flatten())
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        let db = &self.store.db;
        let meta = db
            .cf_handle(CF_META)
            .ok_or_else(|| anyhow::anyhow!("no meta column family"))?;
        Ok(match db.get_cf(meta, META_RESTORE_RIGHTMOST)? {
            None => None,
            Some(raw) => Some(borsh::from_slice(&raw)?),
        })
    }
}

/// Restores an empty store to one certified height's state, chunk by chunk.
pub struct SnapshotRestore {
    target: Arc<Target>,
    /// `None` once the tree is whole (a restart after the last chunk's nodes were written).
    restore: Option<JellyfishMerkleRestore<JmtHasher>>,
    height: Height,
    root: Hash,
    /// The key hash after which the next chunk must start (`None`: from the first).
    after: Option<[u8; 32]>,
    complete: bool,
    /// Entries added since this restore was opened (a resumed one does not count the
    /// earlier run's).
    pub entries_added: u64,
}

impl std::fmt::Debug for SnapshotRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotRestore")
            .field("height", &self.height)
            .field("root", &self.root)
            .field("after", &self.after.map(Hash))
            .finish_non_exhaustive()
    }
}

impl SnapshotRestore {
    /// Opens the store at `path` to restore `height` with state root `root`: a fresh
    /// directory, or one a restore of the same target was interrupted in (it resumes).
    pub fn open(
        path: &Path,
        options: StoreOptions,
        height: Height,
        root: Hash,
    ) -> Result<SnapshotRestore, SnapshotError> {
        let store = Arc::new(Store::open_with(path, options, true)?);
        if let Some(latest) = store.latest() {
            return Err(SnapshotError::NotEmpty(latest.height));
        }
        let meta = cf(&store.db, CF_META)?;
        let wanted = borsh::to_vec(&(height, root.0)).map_err(io_corrupt)?;
        match store
            .db
            .get_cf(meta, META_RESTORE_TARGET)
            .map_err(StateError::db)?
        {
            Some(found) if found != wanted => {
                let (height, root): (Height, [u8; 32]) = borsh::from_slice(&found)
                    .map_err(|e| StateError::Corrupt(format!("restore target: {e}")))?;
                return Err(SnapshotError::OtherRestore {
                    height,
                    root: Hash(root),
                });
            }
            Some(_) => {}
            None => store
                .db
                .put_cf(meta, META_RESTORE_TARGET, wanted)
                .map_err(StateError::db)?,
        }
        let target = Arc::new(Target {
            store,
            pending: Mutex::new(VecDeque::new()),
            values_through: Mutex::new(None),
            flushing: Mutex::new(None),
        });
        // A restart after the tree's last nodes were written (before the store was marked
        // restored): the root exists and only the last steps remain. jmt's recovery would
        // walk up past the root.
        let whole = jmt::JellyfishMerkleTree::<_, JmtHasher>::new(target.as_ref())
            .get_root_hash_option(height)
            .map_err(tree_err)?
            .is_some();
        let mut restore = SnapshotRestore {
            restore: if whole {
                None
            } else {
                Some(Self::rewind(&target, height, root)?)
            },
            target,
            height,
            root,
            after: None,
            complete: whole,
            entries_added: 0,
        };
        restore.after = restore.stored_rightmost()?;
        Ok(restore)
    }

    fn rewind(
        target: &Arc<Target>,
        height: Height,
        root: Hash,
    ) -> Result<JellyfishMerkleRestore<JmtHasher>, SnapshotError> {
        target
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let db = &target.store.db;
        let meta = cf(db, CF_META)?;
        let through =
            match db
                .get_cf(meta, META_RESTORE_VALUES_THROUGH)
                .map_err(StateError::db)?
            {
                Some(raw) => Some(<[u8; 32]>::try_from(raw.as_slice()).map_err(|_| {
                    StateError::Corrupt("restore values-through: not 32 bytes".into())
                })?),
                // A restore begun before this record existed: if it wrote any value, any
                // key may be indexed already.
                None if db
                    .iterator_cf(cf(db, CF_PREIMAGES)?, rocksdb::IteratorMode::Start)
                    .next()
                    .transpose()
                    .map_err(StateError::db)?
                    .is_some() =>
                {
                    Some([0xff; 32])
                }
                None => None,
            };
        *target
            .values_through
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = through;
        JellyfishMerkleRestore::new(Arc::clone(target), height, jmt::RootHash(root.0))
            .map_err(|e| SnapshotError::State(tree_err(e)))
    }

    fn stored_rightmost(&self) -> Result<Option<[u8; 32]>, SnapshotError> {
        Ok(self
            .target
            .get_rightmost_leaf()
            .map_err(tree_err)?
            .map(|(_, leaf)| leaf.key_hash().0))
    }

    pub fn height(&self) -> Height {
        self.height
    }

    /// Whether `store` holds an unfinished restore (it must not be used as an empty store).
    pub fn in_progress(store: &Store) -> Result<bool, StateError> {
        Ok(store
            .db
            .get_pinned_cf(cf(&store.db, CF_META)?, META_RESTORE_TARGET)
            .map_err(StateError::db)?
            .is_some())
    }

    /// The store being restored into (for records outside the state, such as the epoch
    /// changes the restore was verified by).
    pub fn store(&self) -> &Store {
        &self.target.store
    }

    pub fn root(&self) -> Hash {
        self.root
    }

    /// Where the next chunk must start: after this key hash (`None`: from the first).
    pub fn resume_after(&self) -> Option<[u8; 32]> {
        self.after
    }

    /// Whether the last chunk has been added.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Verifies `chunk` against the root and writes it. A refused chunk writes nothing and
    /// rewinds the restore to what is stored (fetch from [`Self::resume_after`] again,
    /// from another peer).
    pub fn add(&mut self, chunk: SnapshotChunk) -> Result<(), SnapshotError> {
        if chunk.height != self.height {
            return Err(SnapshotError::WrongHeight {
                expected: self.height,
                got: chunk.height,
            });
        }
        chunk.validate().map_err(|e| SnapshotError::BadEntry {
            index: 0,
            reason: e.to_string(),
        })?;
        let Some(restore) = self.restore.as_mut().filter(|_| !self.complete) else {
            return Err(SnapshotError::Overlap);
        };
        let mut leaves = Vec::with_capacity(chunk.entries.len());
        let mut preimages = Vec::with_capacity(chunk.entries.len());
        for (index, (raw_key, value)) in chunk.entries.into_iter().enumerate() {
            let bad = |reason: String| SnapshotError::BadEntry { index, reason };
            let key = StateKey::from_bytes(&raw_key).map_err(|e| bad(e.to_string()))?;
            Entry::kind(&value).map_err(|e| bad(e.to_string()))?;
            // `StateKey::key_hash`, keeping the canonical encoding it hashes (the preimage
            // stored is that, whatever bytes the peer sent).
            let canonical = key.to_bytes();
            let key_hash = keel_types::Hash::digest(Domain::StateKey, &canonical).0;
            // Ascending and after what is restored; jmt checks the order again.
            let previous = leaves
                .last()
                .map(|(k, _): &(KeyHash, _)| k.0)
                .or(self.after);
            if previous.is_some_and(|p| key_hash <= p) {
                return Err(if index == 0 {
                    SnapshotError::Overlap
                } else {
                    bad("keys out of order".into())
                });
            }
            preimages.push((key_hash, key, canonical));
            leaves.push((KeyHash(key_hash), value));
        }
        if leaves.is_empty() {
            return Err(SnapshotError::BadEntry {
                index: 0,
                reason: "an empty chunk".into(),
            });
        }
        let count = leaves.len() as u64;
        let last_key = leaves.last().map(|(k, _)| k.0);
        let ends_state = nothing_after(&chunk.proof)?;
        self.target
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(preimages);
        if let Err(e) = restore.add_chunk(leaves, chunk.proof) {
            // A failed write or flush is this node's disk, not the peer's proof: the sync
            // stops with it instead of dropping every peer in turn.
            let local = e.chain().find_map(|cause| {
                let local = cause.is::<StateError>()
                    || cause.is::<rocksdb::Error>()
                    || cause.is::<std::io::Error>();
                local.then(|| StateError::db(std::io::Error::other(format!("{e:#}"))))
            });
            if let Some(local) = local {
                self.restore = None;
                return Err(SnapshotError::State(local));
            }
            // jmt has taken the chunk's keys into its right edge before checking the proof:
            // rebuild the edge from what is stored (if that fails, nothing more is added
            // until the restore is reopened).
            self.restore = None;
            self.restore = Some(Self::rewind(&self.target, self.height, self.root)?);
            self.after = self.stored_rightmost()?;
            return Err(SnapshotError::BadProof {
                root: self.root,
                reason: format!("{e:#}"),
            });
        }
        self.after = last_key;
        self.entries_added += count;
        // The proof, not the server's `last` flag, says whether the state ends here.
        self.complete = ends_state;
        Ok(())
    }

    /// Writes the tree's last nodes, checks the root, rebuilds the derived indexes and makes
    /// `tip` (the block at the restored height) with its `receipts` the store's latest
    /// commit — the caller checked both against the certified header above them (its parent
    /// hash and receipts root). Returns the store, ready to commit the next height.
    pub fn finish(
        self,
        tip: &Block,
        receipts: &[Receipt],
        ancestors: &[Header],
    ) -> Result<Arc<Store>, SnapshotError> {
        if !self.complete {
            return Err(SnapshotError::Incomplete);
        }
        if tip.header.height != self.height {
            return Err(SnapshotError::WrongHeight {
                expected: self.height,
                got: tip.header.height,
            });
        }
        let SnapshotRestore {
            target,
            restore,
            height,
            root,
            ..
        } = self;
        if let Some(restore) = restore {
            restore.finish().map_err(tree_err)?;
        }
        // The restored state is on disk before the store is marked restored (a mark that
        // survived a crash without the last batch would name a tree with holes).
        target.settle()?;
        let store = Arc::clone(&target.store);
        drop(target);
        let got = Hash(
            jmt::JellyfishMerkleTree::<_, JmtHasher>::new(&DbTreeReader {
                db: &store.db,
                nodes: None,
            })
            .get_root_hash(height)
            .map_err(tree_err)?
            .0,
        );
        if got != root {
            return Err(SnapshotError::RootMismatch {
                expected: root,
                got,
            });
        }
        store.finish_restore(height, root, tip, receipts, ancestors)?;
        // Reopened as every other store is: atomic flush (every column family flushed
        // whenever one memtable fills) only pays for itself while writes skip the WAL. The
        // reopened store has RocksDB's usual level-0 limits and compacts what the restore
        // left in the background.
        match Arc::try_unwrap(store) {
            Ok(store) => {
                let (path, options) = (store.db.path().to_path_buf(), store.options.clone());
                drop(store);
                Ok(Arc::new(Store::open(&path, options)?))
            }
            Err(shared) => {
                shared.end_bulk_load()?;
                Ok(shared)
            }
        }
    }
}

/// Aux key of the hash of a block below a restored height.
fn ancestor_key(height: Height) -> Vec<u8> {
    [ANCESTOR_PREFIX, &height.to_be_bytes()[..]].concat()
}

/// Aux prefix of the block hashes a restore keeps below its height (pruned like blocks).
pub const ANCESTOR_PREFIX: &[u8] = b"ancestor/";

impl Store {
    /// The hash of the finalized block at `height`: the stored block's, or below a restored
    /// height the hash the restore kept (what `BLOCKHASH` reads).
    pub fn block_hash_at(&self, height: Height) -> Result<Option<Hash>, StateError> {
        if let Some(block) = self.block(height)? {
            return Ok(Some(block.hash()));
        }
        let Some(raw) = self.get_aux(&ancestor_key(height))? else {
            return Ok(None);
        };
        raw.as_slice()
            .try_into()
            .map(|b| Some(Hash(b)))
            .map_err(|_| StateError::Corrupt("ancestor hash length".into()))
    }

    /// Makes a restored `height` the latest commit: its root, its block, the oldest
    /// retained height, and no more restore records.
    fn finish_restore(
        &self,
        height: Height,
        root: Hash,
        tip: &Block,
        receipts: &[Receipt],
        ancestors: &[Header],
    ) -> Result<(), StateError> {
        let db = &self.db;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(db, CF_ROOTS)?, height_key(height), root.0);
        let block_hash = tip.hash();
        batch.put_cf(cf(db, CF_BLOCKS)?, height_key(height), tip.encode());
        batch.put_cf(cf(db, CF_BLOCK_INDEX)?, block_hash.0, height_key(height));
        batch.put_cf(
            cf(db, CF_RECEIPTS)?,
            height_key(height),
            BlockReceipts(receipts.to_vec()).encode(),
        );
        let info = crate::CommitInfo {
            height,
            state_root: root,
            block_hash,
        };
        // The hashes below the tip that BLOCKHASH reads (a restored node has no blocks
        // there; the pruner drops them with the heights).
        let aux = cf(db, CF_AUX)?;
        for header in ancestors {
            batch.put_cf(aux, ancestor_key(header.height), header.hash().0);
        }
        let meta = cf(db, CF_META)?;
        batch.put_cf(meta, META_LATEST, borsh::to_vec(&info).map_err(io_corrupt)?);
        batch.put_cf(meta, META_OLDEST, height_key(height));
        // Revivals before the snapshot are history this node never saw.
        batch.put_cf(meta, META_REVIVED, 0u64.to_be_bytes());
        batch.delete_cf(meta, META_RESTORE_TARGET);
        batch.delete_cf(meta, META_RESTORE_RIGHTMOST);
        batch.delete_cf(meta, META_RESTORE_VALUES_THROUGH);
        let mut write = WriteOptions::default();
        write.set_sync(true);
        db.write_opt(batch, &write).map_err(StateError::db)?;
        self.restored(info);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
