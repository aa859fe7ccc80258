//! Per-address counts of the storage slots the latest state holds (`CF_STORAGE_COUNTS`),
//! which answer EIP-7610's question — does a creation's target address hold storage? —
//! without a scan: the tree is keyed by hashes, so an address's slots are not adjacent.
//! Maintained by every commit from the same old/new entries the expiry bookkeeping reads;
//! deterministic because it is a function of the committed state alone.

use crate::schema::{CF_META, CF_PREIMAGES, CF_STORAGE_COUNTS, META_STORAGE_COUNTS};
use keel_state::{holds_storage, Entry, EntryKind, StateError, ENTRY_OVERHEAD_BYTES};
use keel_types::{Address, StateKey};
use rocksdb::{IteratorMode, WriteBatch, DB};
use std::collections::BTreeMap;

fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, StateError> {
    crate::store::cf(db, name)
}

/// Changes to the counts from one commit, per address.
#[derive(Debug, Default)]
pub(crate) struct Deltas(BTreeMap<Address, i64>);

impl Deltas {
    /// Records `key` going from `old` to `new` (raw stored entries).
    pub(crate) fn record(
        &mut self,
        key: &StateKey,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<(), StateError> {
        let StateKey::Storage(address, _) = key else {
            return Ok(());
        };
        // `holds_storage` over the raw entry, without copying its value (a snapshot restore
        // calls this for every slot): a stub, or a live slot with a value.
        let held = |raw: Option<&[u8]>| -> Result<bool, StateError> {
            Ok(match raw {
                None => false,
                Some(raw) => match Entry::kind(raw)? {
                    EntryKind::Live { .. } => raw.len() > ENTRY_OVERHEAD_BYTES,
                    EntryKind::Expired { .. } => true,
                },
            })
        };
        let delta = i64::from(held(new)?) - i64::from(held(old)?);
        if delta != 0 {
            *self.0.entry(*address).or_insert(0) += delta;
        }
        Ok(())
    }

    /// Adds the changes to the stored counts in `batch`.
    pub(crate) fn write(self, db: &DB, batch: &mut WriteBatch) -> Result<(), StateError> {
        let counts = cf(db, CF_STORAGE_COUNTS)?;
        for (address, delta) in self.0 {
            let count = i128::from(read(db, &address)?) + i128::from(delta);
            match u64::try_from(count) {
                Ok(0) => batch.delete_cf(counts, address.0),
                Ok(n) => batch.put_cf(counts, address.0, n.to_be_bytes()),
                Err(_) => {
                    return Err(StateError::Corrupt(format!(
                        "storage count of {address} would be {count}"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// How many storage slots `address` holds in the latest state.
pub(crate) fn read(db: &DB, address: &Address) -> Result<u64, StateError> {
    let raw = db
        .get_pinned_cf(cf(db, CF_STORAGE_COUNTS)?, address.0)
        .map_err(StateError::db)?;
    match raw {
        None => Ok(0),
        Some(raw) => Ok(u64::from_be_bytes(raw.as_ref().try_into().map_err(
            |_| StateError::Corrupt(format!("storage count of {address}: {} bytes", raw.len())),
        )?)),
    }
}

/// Counts every address's slots from scratch if this store predates the counts: every key
/// in the tree has a preimage, so the slots are found without the tree. `entry` reads a
/// key's latest entry. Marks the counts as current either way.
pub(crate) fn ensure(
    db: &DB,
    has_state: bool,
    entry: impl Fn(&StateKey) -> Result<Option<Entry>, StateError>,
) -> Result<(), StateError> {
    let meta = cf(db, CF_META)?;
    if db
        .get_pinned_cf(meta, META_STORAGE_COUNTS)
        .map_err(StateError::db)?
        .is_some()
    {
        return Ok(());
    }
    let mut batch = WriteBatch::default();
    // Rows a previous, interrupted count may have left (every key is 20 bytes, below the
    // 21-byte end).
    batch.delete_range_cf(
        cf(db, CF_STORAGE_COUNTS)?,
        &[0u8; 20][..],
        &[0xffu8; 21][..],
    );
    if has_state {
        let mut counts: BTreeMap<Address, u64> = BTreeMap::new();
        for item in db.iterator_cf(cf(db, CF_PREIMAGES)?, IteratorMode::Start) {
            let (_, raw_key) = item.map_err(StateError::db)?;
            let key = StateKey::from_bytes(&raw_key).map_err(StateError::decode("preimage"))?;
            if let StateKey::Storage(address, _) = &key {
                if holds_storage(entry(&key)?.as_ref()) {
                    *counts.entry(*address).or_insert(0) += 1;
                }
            }
        }
        let table = cf(db, CF_STORAGE_COUNTS)?;
        tracing::info!(
            addresses = counts.len(),
            "counted storage slots per address"
        );
        for (address, count) in counts {
            batch.put_cf(table, address.0, count.to_be_bytes());
        }
    }
    batch.put_cf(meta, META_STORAGE_COUNTS, []);
    db.write(batch).map_err(StateError::db)
}

#[cfg(test)]
mod tests {
    use crate::schema::{CF_META, CF_STORAGE_COUNTS, META_STORAGE_COUNTS};
    use crate::{Store, StoreOptions};
    use keel_state::{encode_live, Entry, StateDiff, StateView};
    use keel_types::{Address, StateKey};

    fn slot(a: u8, s: u8) -> StateKey {
        StateKey::Storage(Address([a; 20]), [s; 32])
    }

    fn commit(store: &Store, height: u64, writes: &[(StateKey, Option<Vec<u8>>)]) {
        let diff: StateDiff = writes.iter().cloned().collect();
        crate::commit_diff(store, height, &diff);
    }

    fn counts(store: &Store) -> [u64; 3] {
        let view = store.latest_view();
        [1, 2, 3].map(|a| view.storage_entries(&Address([a; 20])).expect("count"))
    }

    /// Inserts, overwrites, deletes, expiry stubs and deletion markers change the counts as
    /// `holds_storage` says; a store whose counts were lost recounts them at open.
    #[test]
    fn counts_follow_commits_and_are_rebuilt_when_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = || StoreOptions {
            sync_writes: false,
            ..StoreOptions::default()
        };
        let live = |v: u8| Some(encode_live(0, &[v; 32]));
        let stub = Some(Entry::Expired { epoch: 3, leaf: 0 }.encode());
        let marker = Some(encode_live(0, &[]));
        {
            let store = Store::open(dir.path(), options()).expect("open");
            commit(
                &store,
                0,
                &[
                    (slot(1, 1), live(1)),
                    (slot(1, 2), live(2)),
                    (slot(2, 1), live(1)),
                ],
            );
            assert_eq!(counts(&store), [2, 1, 0]);
            // An overwrite, a new slot, a delete, a stub (still storage), a deletion marker
            // (reads as absent: not storage), a delete of a key that never existed.
            commit(
                &store,
                1,
                &[
                    (slot(1, 1), live(9)),
                    (slot(1, 3), live(3)),
                    (slot(1, 2), None),
                    (slot(2, 1), stub.clone()),
                    (slot(3, 1), marker.clone()),
                    (slot(3, 2), None),
                ],
            );
            assert_eq!(counts(&store), [2, 1, 0]);
            commit(&store, 2, &[(slot(2, 1), None), (slot(3, 1), live(4))]);
            assert_eq!(counts(&store), [2, 0, 1]);
            // Lose the counts, as a store written before they existed has none.
            let meta = crate::store::cf(&store.db, CF_META).expect("cf");
            store
                .db
                .delete_cf(meta, META_STORAGE_COUNTS)
                .expect("delete");
            let table = crate::store::cf(&store.db, CF_STORAGE_COUNTS).expect("cf");
            for a in [1u8, 2, 3] {
                store.db.delete_cf(table, [a; 20]).expect("delete");
            }
            // ... and a row an interrupted count left behind.
            store
                .db
                .put_cf(table, [2u8; 20], 5u64.to_be_bytes())
                .expect("put");
            assert_eq!(counts(&store), [0, 5, 0]);
        }
        let store = Store::open(dir.path(), options()).expect("reopen");
        assert_eq!(counts(&store), [2, 0, 1], "recounted at open");
        commit(&store, 3, &[(slot(2, 5), live(5))]);
        assert_eq!(counts(&store), [2, 1, 1]);
    }
}
