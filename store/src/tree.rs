//! The Jellyfish Merkle tree's view of RocksDB: nodes by key, values by "newest version at or
//! below a height".

use crate::schema::{value_key, CF_NODES, CF_PREIMAGES, CF_VALUES, KEY_HASH_BYTES};
use jmt::storage::{HasPreimage, LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};
use rocksdb::{Direction, IteratorMode, ReadOptions, DB};

/// Reads tree nodes and versioned values straight from the database.
pub(crate) struct DbTreeReader<'a> {
    pub db: &'a DB,
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
            if key.len() != KEY_HASH_BYTES + 8 || key[..KEY_HASH_BYTES] != key_hash[..] {
                return Ok(None);
            }
            let record: Option<OwnedValue> = borsh::from_slice(&raw)?;
            let version = crate::schema::decode_height(&key[KEY_HASH_BYTES..])
                .ok_or_else(|| anyhow::anyhow!("value key without a height"))?;
            Ok(Some((version, record)))
        }
    }
}

impl TreeReader for DbTreeReader<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let key = borsh::to_vec(node_key)?;
        match self.db.get_pinned_cf(cf(self.db, CF_NODES)?, key)? {
            None => Ok(None),
            Some(raw) => Ok(Some(borsh::from_slice::<Node>(&raw)?)),
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
