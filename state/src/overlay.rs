//! The read/write interface execution uses: `StateView` for reads, `Overlay` to buffer a
//! block's (or a call's) writes over any view, with checkpoints for nested-call rollback.

use crate::error::StateError;
use keel_types::limits::MAX_STATE_VALUE_BYTES;
use keel_types::state_key::CodeBlob;
use keel_types::{AccountRecord, Address, Canonical, Hash, StateKey};
use std::collections::BTreeMap;

/// The writes of a block: key → new value, `None` deletes. A BTreeMap so every iteration
/// (tree update, write batch, hashing) is in key order on every node.
pub type StateDiff = BTreeMap<StateKey, Option<Vec<u8>>>;

/// Read access to state at one point (a committed height, or an overlay over one).
pub trait StateView {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError>;
}

impl<T: StateView + ?Sized> StateView for &T {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        (**self).get(key)
    }
}

/// Typed reads over any view.
pub trait StateViewExt: StateView {
    fn account(&self, address: &Address) -> Result<Option<AccountRecord>, StateError> {
        self.get(&StateKey::Account(*address))?
            .map(|raw| AccountRecord::decode(&raw).map_err(StateError::decode("account")))
            .transpose()
    }

    /// A storage slot; an absent slot reads as zero (EVM semantics, shared by WASM).
    fn storage(&self, address: &Address, slot: &[u8; 32]) -> Result<[u8; 32], StateError> {
        match self.get(&StateKey::Storage(*address, *slot))? {
            None => Ok([0; 32]),
            Some(raw) => raw
                .as_slice()
                .try_into()
                .map_err(|_| StateError::Corrupt(format!("slot value of {} bytes", raw.len()))),
        }
    }

    fn code(&self, code_hash: &Hash) -> Result<Option<CodeBlob>, StateError> {
        self.get(&StateKey::Code(*code_hash))?
            .map(|raw| CodeBlob::decode(&raw).map_err(StateError::decode("code")))
            .transpose()
    }
}

impl<T: StateView + ?Sized> StateViewExt for T {}

/// A position in an overlay's journal to roll back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint(usize);

/// Buffers writes over a base view: reads see the buffered writes first.
#[derive(Debug)]
pub struct Overlay<V> {
    base: V,
    writes: StateDiff,
    /// (key, the write-set entry it replaced): `None` = the key had no buffered write.
    journal: Vec<(StateKey, Option<Option<Vec<u8>>>)>,
}

impl<V: StateView> Overlay<V> {
    pub fn new(base: V) -> Overlay<V> {
        Overlay {
            base,
            writes: BTreeMap::new(),
            journal: Vec::new(),
        }
    }

    pub fn base(&self) -> &V {
        &self.base
    }

    /// Buffers a write; `None` deletes the key.
    pub fn set(&mut self, key: StateKey, value: Option<Vec<u8>>) -> Result<(), StateError> {
        if let Some(v) = &value {
            if v.len() > MAX_STATE_VALUE_BYTES {
                return Err(StateError::ValueTooLarge {
                    key: format!("{key:?}"),
                    len_bytes: v.len(),
                    max_bytes: MAX_STATE_VALUE_BYTES,
                });
            }
        }
        let previous = self.writes.insert(key.clone(), value);
        self.journal.push((key, previous));
        Ok(())
    }

    pub fn put_account(
        &mut self,
        address: Address,
        record: &AccountRecord,
    ) -> Result<(), StateError> {
        self.set(StateKey::Account(address), Some(record.encode()))
    }

    /// Writes a slot; writing zero deletes it, so an all-zero slot is never stored.
    pub fn put_storage(
        &mut self,
        address: Address,
        slot: [u8; 32],
        value: [u8; 32],
    ) -> Result<(), StateError> {
        let stored = if value == [0; 32] {
            None
        } else {
            Some(value.to_vec())
        };
        self.set(StateKey::Storage(address, slot), stored)
    }

    /// Stores code and returns its hash.
    pub fn put_code(&mut self, blob: &CodeBlob) -> Result<Hash, StateError> {
        let hash = blob.code_hash();
        self.set(StateKey::Code(hash), Some(blob.encode()))?;
        Ok(hash)
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.journal.len())
    }

    /// Undoes every write made since `checkpoint`, newest first.
    pub fn revert_to(&mut self, checkpoint: Checkpoint) {
        while self.journal.len() > checkpoint.0 {
            let (key, previous) = self
                .journal
                .pop()
                .expect("journal is longer than checkpoint");
            match previous {
                Some(value) => {
                    self.writes.insert(key, value);
                }
                None => {
                    self.writes.remove(&key);
                }
            }
        }
    }

    /// Forgets the undo history (e.g. after a transaction succeeds) without changing writes.
    pub fn discard_journal(&mut self) {
        self.journal.clear();
    }

    pub fn diff(&self) -> &StateDiff {
        &self.writes
    }

    pub fn into_diff(self) -> StateDiff {
        self.writes
    }
}

impl<V: StateView> StateView for Overlay<V> {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        match self.writes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(key),
        }
    }
}
