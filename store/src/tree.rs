//! The Jellyfish Merkle tree's view of RocksDB: nodes by key, values by "newest version at or
//! below a height".

use crate::clock::Clock;
use crate::schema::{value_key, CF_NODES, CF_PREIMAGES, CF_VALUES, KEY_HASH_BYTES};
use jmt::storage::{HasPreimage, LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};
use rocksdb::{Direction, IteratorMode, ReadOptions, DB};
use std::sync::{PoisonError, RwLock};

/// Tree levels kept in memory: the root and the three below it (at most 1 + 16 + 256 + 4,096
/// nodes). Deeper nodes are each on few paths; caching them would cost every commit an
/// insert per rewritten node (measured: about 8% of commit time) for rare hits.
pub const NODE_CACHE_LEVELS: usize = 4;
/// Internal tree nodes kept in memory (all of [`NODE_CACHE_LEVELS`], and room to spare).
pub const NODE_CACHE_ENTRIES: usize = 8_192;
/// What one cached internal node counts against [`NODE_CACHE_BYTES`] (16 children of a hash,
/// a version and a leaf count, plus bookkeeping).
const INTERNAL_NODE_BYTES: usize = 1_024;
pub const NODE_CACHE_BYTES: usize = NODE_CACHE_ENTRIES * INTERNAL_NODE_BYTES;

/// The tree's upper levels, kept across blocks. Every commit rewrites the path from each
/// written leaf to the root, and reads the previous version of each node on those paths:
/// the upper levels are the same few nodes every block, written by the commit before.
/// Each commit puts the upper internal nodes it wrote here, and reads fill it. A node key
/// never names another node (the version is part of it), so a hit is what the database
/// holds. Leaves are not kept: there is one per key, read once per write.
#[derive(Debug)]
pub(crate) struct NodeCache {
    nodes: RwLock<Clock<NodeKey, Node>>,
}

impl NodeCache {
    pub fn new() -> NodeCache {
        NodeCache {
            nodes: RwLock::new(Clock::new(NODE_CACHE_ENTRIES, NODE_CACHE_BYTES)),
        }
    }

    fn get(&self, key: &NodeKey) -> Option<Node> {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Keeps `node` if it is an internal node of the upper levels.
    pub fn put(&self, key: &NodeKey, node: &Node) {
        if matches!(node, Node::Internal(_)) && key.nibble_path().num_nibbles() < NODE_CACHE_LEVELS
        {
            self.nodes
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.clone(), node.clone(), INTERNAL_NODE_BYTES);
        }
    }
}

/// Reads tree nodes (through the node cache, if given) and versioned values from the
/// database.
pub(crate) struct DbTreeReader<'a> {
    pub db: &'a DB,
    pub nodes: Option<&'a NodeCache>,
}

fn cf<'a>(db: &'a DB, name: &str) -> anyhow::Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| anyhow::anyhow!("missing column family {name}"))
}

/// The newest stored value record for `key_hash` at or below `max_version`:
/// `Some(None)` is a recorded delete, `None` means never written by then.
pub(crate) fn newest_value_at(
    db: &DB,
    key_hash: &[u8; 32],
    max_version: Version,
) -> anyhow::Result<Option<Option<OwnedValue>>> {
    Ok(newest_record_at(db, key_hash, max_version)?.map(|(_, record)| record))
}

/// Newest stored value records of many keys through one RocksDB iterator: a commit looks up
/// the previous record of every key it writes, and creating an iterator per key (it pins
/// the column family's current files each time) cost more than the seek itself. Reads what
/// the database held when it was made; keep it only while nothing is written.
pub(crate) struct RecordReader<'a> {
    iter: rocksdb::DBRawIteratorWithThreadMode<'a, DB>,
}

impl<'a> RecordReader<'a> {
    pub fn new(db: &'a DB) -> anyhow::Result<RecordReader<'a>> {
        let mut read = ReadOptions::default();
        // As in `newest_record_at`: each seek stays within its key's 32-byte prefix.
        read.set_prefix_same_as_start(true);
        Ok(RecordReader {
            iter: db.raw_iterator_cf_opt(cf(db, CF_VALUES)?, read),
        })
    }

    /// What [`newest_record_at`] returns for `key_hash` at `max_version`.
    pub fn newest_at(
        &mut self,
        key_hash: &[u8; 32],
        max_version: Version,
    ) -> anyhow::Result<Option<(Version, Option<OwnedValue>)>> {
        self.iter.seek_for_prev(value_key(key_hash, max_version));
        let (Some(key), Some(raw)) = (self.iter.key(), self.iter.value()) else {
            self.iter.status()?;
            return Ok(None);
        };
        record_of(key_hash, key, raw)
    }
}

/// The record a value-column entry holds, if it is `key_hash`'s.
fn record_of(
    key_hash: &[u8; 32],
    key: &[u8],
    raw: &[u8],
) -> anyhow::Result<Option<(Version, Option<OwnedValue>)>> {
    if key.len() != KEY_HASH_BYTES + 8 || key[..KEY_HASH_BYTES] != key_hash[..] {
        return Ok(None);
    }
    let record: Option<OwnedValue> = borsh::from_slice(raw)?;
    let version = crate::schema::decode_height(&key[KEY_HASH_BYTES..])
        .ok_or_else(|| anyhow::anyhow!("value key without a height"))?;
    Ok(Some((version, record)))
}

/// Like [`newest_value_at`], with the version the record was written at.
pub(crate) fn newest_record_at(
    db: &DB,
    key_hash: &[u8; 32],
    max_version: Version,
) -> anyhow::Result<Option<(Version, Option<OwnedValue>)>> {
    let values = cf(db, CF_VALUES)?;
    let target = value_key(key_hash, max_version);
    let mut read = ReadOptions::default();
    // Values of one key share a 32-byte prefix; the prefix bloom filter skips other files.
    read.set_prefix_same_as_start(true);
    let mut iter = db.iterator_cf_opt(
        values,
        read,
        IteratorMode::From(&target, Direction::Reverse),
    );
    match iter.next() {
        None => Ok(None),
        Some(item) => {
            let (key, raw) = item?;
            record_of(key_hash, &key, &raw)
        }
    }
}

impl TreeReader for DbTreeReader<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        if let Some(node) = self.nodes.and_then(|cache| cache.get(node_key)) {
            return Ok(Some(node));
        }
        let key = borsh::to_vec(node_key)?;
        match self.db.get_pinned_cf(cf(self.db, CF_NODES)?, key)? {
            None => Ok(None),
            Some(raw) => {
                let node = borsh::from_slice::<Node>(&raw)?;
                if let Some(cache) = self.nodes {
                    cache.put(node_key, &node);
                }
                Ok(Some(node))
            }
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(newest_value_at(self.db, &key_hash.0, max_version)?.flatten())
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only jmt's restore and migration paths call this; keel uses neither, and a full
        // scan here would hide an accidental O(state) call on the commit path.
        anyhow::bail!("get_rightmost_leaf is not supported by keel's store")
    }
}

impl HasPreimage for DbTreeReader<'_> {
    fn preimage(&self, key_hash: KeyHash) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(cf(self.db, CF_PREIMAGES)?, key_hash.0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};
    use keel_state::{encode_live, StateDiff};
    use keel_types::{Address, StateKey};
    use rand::{Rng, SeedableRng};

    /// One iterator reused for seeks in any order answers what a fresh iterator per key
    /// does (found by review: the equivalence rested on reading RocksDB): keys written,
    /// rewritten, deleted, written only above the asked version, never written; records in
    /// the memtable and in flushed files.
    #[test]
    fn the_reused_record_reader_answers_as_a_fresh_iterator() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let key = |i: u8| StateKey::Storage(Address([i; 20]), [i; 32]);
        for height in 0..40u64 {
            let mut diff = StateDiff::new();
            for _ in 0..6 {
                let i = rng.gen_range(0u8..24);
                let value = match rng.gen_range(0..4) {
                    0 => None,
                    v => Some(encode_live(height, &[v; 32])),
                };
                diff.insert(key(i), value);
            }
            crate::commit_diff(&store, height, &diff);
            if height % 13 == 12 {
                store.db.flush().expect("flush");
            }
        }
        let mut reader = RecordReader::new(&store.db).expect("reader");
        for _ in 0..2_000 {
            // Keys 24..32 were never written.
            let hash = key(rng.gen_range(0u8..32)).key_hash().0;
            let version = rng.gen_range(0u64..45);
            let fresh = newest_record_at(&store.db, &hash, version).expect("fresh");
            let reused = reader.newest_at(&hash, version).expect("reused");
            assert_eq!(reused, fresh, "version {version}");
        }
    }
}
