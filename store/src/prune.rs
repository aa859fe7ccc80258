//! The pruner's store side: drop everything only heights below the retention window need —
//! superseded value versions, stale tree nodes, blocks, receipts, roots and their indexes —
//! in one atomic batch per step that also advances `oldest_retained`, then compact what was
//! deleted so the disk space is actually returned.
//!
//! A step is idempotent and its batch atomic, so a crash at any point leaves either the old
//! or the new oldest height, never a half-pruned one that claims to be readable.

use crate::schema::*;
use crate::store::{cf, Store};
use keel_pruning::{History, PruneStep};
use keel_state::StateError;
use keel_types::{Block, Canonical, Height};
use rocksdb::{WriteBatch, WriteOptions};

fn delete_prefix_below(
    store: &Store,
    batch: &mut WriteBatch,
    name: &str,
    below: &[u8],
    mut on_key: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
) -> Result<u64, StateError> {
    let handle = cf(&store.db, name)?;
    let mut iter = store.db.raw_iterator_cf(handle);
    iter.seek_to_first();
    let mut bytes = 0u64;
    while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
        if k >= below {
            break;
        }
        bytes += (k.len() + v.len()) as u64;
        on_key(k, v)?;
        batch.delete_cf(handle, k);
        iter.next();
    }
    iter.status().map_err(StateError::db)?;
    Ok(bytes)
}

impl Store {
    /// Prunes history below `target` (exclusive), at most `max_heights` heights in this step.
    /// `aux_prefixes` name aux records keyed by `prefix ‖ height (8, BE)` that go with them.
    pub fn prune_step(
        &self,
        target: Height,
        max_heights: u64,
        aux_prefixes: &[&[u8]],
    ) -> Result<PruneStep, StateError> {
        let oldest = self.oldest_retained()?;
        let latest = self.latest().map_or(0, |l| l.height);
        // The latest state must always stay readable.
        let new_oldest = target.min(latest).min(oldest.saturating_add(max_heights));
        if new_oldest <= oldest {
            return Ok(PruneStep {
                oldest_retained: oldest,
                ..PruneStep::default()
            });
        }
        let db = &self.db;
        let mut batch = WriteBatch::default();
        let mut bytes = 0u64;
        // Versions ≥ new_oldest stay readable: a node made stale at version ≤ new_oldest is
        // in no tree from new_oldest on, and a value superseded at ≤ new_oldest is shadowed
        // there by its newer version.
        let stale_end = height_key(new_oldest + 1);
        let nodes = cf(db, CF_NODES)?;
        let stale = cf(db, CF_STALE)?;
        for stale_key in collect_below(self, CF_STALE, &stale_end, <[u8]>::to_vec)? {
            // A node is ~100 bytes; the index key holds its key.
            bytes += 2 * stale_key.len() as u64 + 100;
            batch.delete_cf(nodes, &stale_key[8..]);
            batch.delete_cf(stale, stale_key);
        }
        let values = cf(db, CF_VALUES)?;
        let history = cf(db, CF_HISTORY)?;
        // Deletes (each supersedes itself) whose key may now be absent from every retained
        // height: their preimages are decided under the commit lock, below.
        let mut deleted_keys: Vec<([u8; 32], Height)> = Vec::new();
        for history_key in collect_below(self, CF_HISTORY, &stale_end, <[u8]>::to_vec)? {
            // key_hash ‖ old height is exactly the value's key.
            bytes += history_key.len() as u64 + 40 + 40;
            batch.delete_cf(values, &history_key[8..48]);
            if history_key[..8] == history_key[40..48] {
                let key_hash: [u8; 32] = history_key[8..40]
                    .try_into()
                    .map_err(|_| StateError::Corrupt("history key length".into()))?;
                let deleted_at = decode_height(&history_key[..8])
                    .ok_or_else(|| StateError::Corrupt("history key height".into()))?;
                deleted_keys.push((key_hash, deleted_at));
            }
            batch.delete_cf(history, history_key);
        }
        let end = height_key(new_oldest);
        let block_index = cf(db, CF_BLOCK_INDEX)?;
        let tx_index = cf(db, CF_TX_INDEX)?;
        let mut index_keys: Vec<Vec<u8>> = Vec::new();
        bytes += delete_prefix_below(self, &mut batch, CF_BLOCKS, &end, |_, v| {
            let block = Block::decode(v).map_err(StateError::decode("block"))?;
            index_keys.push(block.hash().0.to_vec());
            for tx in &block.transactions {
                index_keys.push([b"tx".as_slice(), &tx.hash().0].concat());
            }
            Ok(())
        })?;
        for k in index_keys {
            bytes += k.len() as u64 + 8;
            match k.strip_prefix(b"tx".as_slice()) {
                Some(tx) if k.len() == 34 => batch.delete_cf(tx_index, tx),
                _ => batch.delete_cf(block_index, k),
            }
        }
        for name in [CF_RECEIPTS, CF_ROOTS] {
            bytes += delete_prefix_below(self, &mut batch, name, &end, |_, _| Ok(()))?;
        }
        let aux = cf(db, CF_AUX)?;
        for prefix in aux_prefixes {
            let lo = [*prefix, &height_key(0)[..]].concat();
            let hi = [*prefix, &end[..]].concat();
            batch.delete_range_cf(aux, lo, hi);
        }
        let pruned_total = crate::expiry::read_counter(db, META_PRUNED_BYTES)? + bytes;
        let meta = cf(db, CF_META)?;
        batch.put_cf(meta, META_OLDEST, height_key(new_oldest));
        batch.put_cf(meta, META_PRUNED_BYTES, pruned_total.to_be_bytes());
        let mut write = WriteOptions::default();
        write.set_sync(self.options.sync_writes);
        // A key whose newest record is still that delete is absent from every retained
        // height on: its preimage goes too. Decided and written under the commit lock, so a
        // commit that re-creates the key (and writes its preimage) cannot come in between.
        let _commit = self.lock_commits();
        let preimages = cf(db, CF_PREIMAGES)?;
        let latest = self.latest().map_or(0, |l| l.height);
        for (key_hash, deleted_at) in deleted_keys {
            let newest = crate::tree::newest_record_at(db, &key_hash, latest)
                .map_err(|e| StateError::Tree(format!("{e:#}")))?;
            if newest.is_some_and(|(h, record)| record.is_none() && h == deleted_at) {
                batch.delete_cf(preimages, key_hash);
            }
        }
        db.write_opt(batch, &write).map_err(StateError::db)?;
        Ok(PruneStep {
            oldest_retained: new_oldest,
            heights: new_oldest - oldest,
            deleted_bytes: bytes,
        })
    }

    /// Bytes the pruner has deleted over this store's life.
    pub fn pruned_bytes(&self) -> Result<u64, StateError> {
        crate::expiry::read_counter(&self.db, META_PRUNED_BYTES)
    }

    /// Compacts every column family so deleted keys leave the disk (RocksDB otherwise keeps
    /// them in older files until a size-triggered compaction happens to reach them).
    pub fn compact(&self) -> Result<(), StateError> {
        for name in ALL_CFS {
            self.db
                .compact_range_cf(cf(&self.db, name)?, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }
}

/// The pruner's policy (keel-pruning) drives the store through this.
impl History for Store {
    type Error = StateError;

    fn latest_height(&self) -> Option<Height> {
        self.latest().map(|l| l.height)
    }

    fn prune_step(
        &self,
        target: Height,
        max_heights: u64,
        aux_prefixes: &[&[u8]],
    ) -> Result<PruneStep, StateError> {
        Store::prune_step(self, target, max_heights, aux_prefixes)
    }

    fn disk_size_bytes(&self) -> Result<u64, StateError> {
        Store::disk_size_bytes(self)
    }

    fn compact(&self) -> Result<(), StateError> {
        Store::compact(self)
    }
}

fn collect_below<T>(
    store: &Store,
    name: &str,
    below: &[u8],
    map: impl Fn(&[u8]) -> T,
) -> Result<Vec<T>, StateError> {
    let mut iter = store.db.raw_iterator_cf(cf(&store.db, name)?);
    iter.seek_to_first();
    let mut out = Vec::new();
    while let Some(k) = iter.key() {
        if k >= below {
            break;
        }
        out.push(map(k));
        iter.next();
    }
    iter.status().map_err(StateError::db)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;
    use keel_pruning::{PrunePolicy, Pruner, MIN_RETAIN_HEIGHTS};
    use keel_state::StateDiff;

    #[test]
    fn a_pass_keeps_the_blockhash_window_whatever_the_config_says() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        let latest = MIN_RETAIN_HEIGHTS + 50;
        for height in 0..=latest {
            crate::commit_diff(&store, height, &StateDiff::new());
        }
        // With epochs of 300 heights, the state before the second-to-last boundary (the
        // one a snapshot sync may be downloading) and the 256 blocks below it stay: at
        // latest 306 the boundaries are 300 and 0, so nothing goes; at 606 they are 600 and
        // 300, so heights from 299 - 256 = 43 on stay although the window alone keeps 350 on.
        let mut with_epochs = Pruner::new(PrunePolicy {
            retain_heights: 10,
            batch_heights: 1_000,
            epoch_length: 300,
        });
        with_epochs.pass(&store).expect("prune");
        assert_eq!(store.oldest_retained().expect("oldest"), 0);
        for height in latest + 1..=latest + 300 {
            crate::commit_diff(&store, height, &StateDiff::new());
        }
        with_epochs.pass(&store).expect("prune");
        assert_eq!(store.oldest_retained().expect("oldest"), 43);
        assert_eq!(keel_pruning::snapshot_floor(606, 100), 499 - 256);
        let mut pruner = Pruner::new(PrunePolicy {
            retain_heights: 10,
            batch_heights: 1_000,
            epoch_length: 0,
        });
        pruner.pass(&store).expect("prune");
        assert_eq!(
            store.oldest_retained().expect("oldest"),
            latest + 300 - MIN_RETAIN_HEIGHTS
        );
    }

    /// A deleted key keeps its preimage while a retained height may still hold it (a
    /// snapshot of such a height names the key by it); once the delete is pruned the
    /// preimage goes, unless the key came back.
    #[test]
    fn preimages_of_deleted_keys_go_with_the_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        let (gone, back) = (
            keel_types::StateKey::Account(keel_types::Address([1; 20])),
            keel_types::StateKey::Account(keel_types::Address([2; 20])),
        );
        let live = Some(keel_state::encode_live(0, &[7]));
        let preimage = |key: &keel_types::StateKey| {
            store
                .db
                .get_cf(cf(&store.db, CF_PREIMAGES).expect("cf"), key.key_hash().0)
                .expect("get")
                .is_some()
        };
        let latest = MIN_RETAIN_HEIGHTS + 20;
        for height in 0..=latest {
            let mut diff = StateDiff::new();
            match height {
                0 => {
                    diff.insert(gone.clone(), live.clone());
                    diff.insert(back.clone(), live.clone());
                }
                1 => {
                    diff.insert(gone.clone(), None);
                    diff.insert(back.clone(), None);
                }
                5 => {
                    diff.insert(back.clone(), live.clone());
                }
                _ => {}
            }
            crate::commit_diff(&store, height, &diff);
            if height == 1 {
                assert!(preimage(&gone) && preimage(&back), "kept after the delete");
            }
        }
        let mut pruner = Pruner::new(PrunePolicy {
            retain_heights: MIN_RETAIN_HEIGHTS,
            batch_heights: 1_000,
            epoch_length: 0,
        });
        pruner.pass(&store).expect("prune");
        assert!(store.oldest_retained().expect("oldest") > 5);
        assert!(!preimage(&gone), "the pruned delete took its preimage");
        assert!(preimage(&back), "a key that came back keeps it");
    }
}
