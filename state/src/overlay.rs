//! The read/write interface execution uses: `StateView` for reads, `Overlay` to buffer a
//! block's (or a call's) writes over any view, with checkpoints for nested-call rollback,
//! and the touch tracking that keeps read entries from expiring.

use crate::entry::{encode_live, Entry, ValueStamp};
use crate::error::StateError;
use keel_types::fold::FoldPage;
use keel_types::limits::MAX_STATE_VALUE_BYTES;
use keel_types::state_key::CodeBlob;
use keel_types::{AccountRecord, Address, Canonical, Epoch, Hash, StateKey};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// The writes of a block: key → new encoded [`Entry`], `None` deletes. A BTreeMap so every
/// iteration (tree update, write batch, hashing) is in key order on every node.
pub type StateDiff = BTreeMap<StateKey, Option<Vec<u8>>>;

/// What [`StateView::get_stamped`] answers: the value, or a stamp naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamped {
    /// A live value, named without reading it (read it with [`StateView::get`] if needed).
    Stamp(ValueStamp),
    /// What [`StateView::get`] returns.
    Value(Option<Vec<u8>>),
}

/// Read access to state at one point (a committed height, or an overlay over one).
pub trait StateView {
    /// The stored entry: live (with its touch epoch) or an expired stub.
    fn entry(&self, key: &StateKey) -> Result<Option<Entry>, StateError>;

    /// The live value; an expired entry is `StateError::Expired`, never a zero — also when
    /// its stub was folded out of the tree and only a fold page's filter remembers it.
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        let entry = self.entry(key)?;
        if entry.is_none() && key.expires() {
            let pages = crate::fold::flagging_pages(self, key)?;
            if let Some(e) = crate::fold::folded_error(&pages, key) {
                return Err(e);
            }
        }
        live_value(key, entry)
    }

    /// [`StateView::get`], or a stamp naming the live value instead of its bytes, for caches
    /// of what values decode to (the policy cache): a cache that remembers what it decoded
    /// under a stamp may use it whenever a view gives the same stamp again, without reading
    /// the bytes. Views that cannot name a value without reading it (the default) read it.
    /// Only keys that never expire are stamped, as a read of an expiring key can touch it or
    /// meet a stub, which a cache that skipped the read would skip too.
    fn get_stamped(&self, key: &StateKey) -> Result<Stamped, StateError> {
        self.get(key).map(Stamped::Value)
    }

    /// Up to `limit` live entries that take part in expiry and were last touched before
    /// `before_epoch`, oldest touch first then by key hash. Views that cannot answer (past
    /// heights, test views) return none, so they never expire anything.
    fn expiry_candidates(
        &self,
        _before_epoch: Epoch,
        _limit: usize,
    ) -> Result<Vec<StateKey>, StateError> {
        Ok(Vec::new())
    }

    /// Up to `limit` expired stubs that expired before `before_epoch`, oldest first then by
    /// key hash: what the next fold page takes. Views that cannot answer return none.
    fn fold_candidates(
        &self,
        _before_epoch: Epoch,
        _limit: usize,
    ) -> Result<Vec<StateKey>, StateError> {
        Ok(Vec::new())
    }

    /// How many of `address`'s storage slots the state holds ([`holds_storage`]: live or
    /// expired, not folded away): EIP-7610's "non-empty storage", which makes a contract
    /// creation at that address collide. Execution asks it; every view must answer exactly.
    fn storage_entries(&self, address: &Address) -> Result<u64, StateError>;
}

/// Whether an entry counts toward [`StateView::storage_entries`]: a live slot or an expired
/// stub (its value can be revived); not an absent key or a deletion marker.
pub fn holds_storage(entry: Option<&Entry>) -> bool {
    match entry {
        None => false,
        Some(Entry::Live { value, .. }) => !value.is_empty(),
        Some(Entry::Expired { .. }) => true,
    }
}

/// [`StateView::storage_entries`] of `layers` (diffs, newest first) over `base`: the base's
/// count, corrected for each of the address's slots some layer wrote.
pub fn layered_storage_entries(
    base: &dyn StateView,
    layers: &[&StateDiff],
    address: &Address,
) -> Result<u64, StateError> {
    count_layered(base.storage_entries(address)?, layers, address, |key| {
        Ok(holds_storage(base.entry(key)?.as_ref()))
    })
}

/// `base_count` corrected for the address's slots `layers` wrote; `held_before(key)` says
/// whether the base holds `key`.
fn count_layered(
    base_count: u64,
    layers: &[&StateDiff],
    address: &Address,
    mut held_before: impl FnMut(&StateKey) -> Result<bool, StateError>,
) -> Result<u64, StateError> {
    let range = StateKey::Storage(*address, [0; 32])..=StateKey::Storage(*address, [0xff; 32]);
    let mut written = std::collections::BTreeSet::new();
    for layer in layers {
        written.extend(layer.range(range.clone()).map(|(k, _)| k));
    }
    let mut count = i128::from(base_count);
    for key in written {
        let newest = layers
            .iter()
            .find_map(|l| l.get(key))
            .and_then(Option::as_ref);
        let now = holds_storage(decode_entry(newest)?.as_ref());
        count += i128::from(now) - i128::from(held_before(key)?);
    }
    u64::try_from(count)
        .map_err(|_| StateError::Corrupt(format!("storage entries of {address} below zero")))
}

/// What an overlay learned about its base for `storage_entries`: the base never changes
/// under an overlay, so each address's count and each written slot's presence are read
/// once, however often creations probe the same address (which would otherwise cost reads
/// that no gas pays for). Bounded by the overlay's writes and the addresses probed.
#[derive(Debug, Default)]
struct StorageMemo {
    counts: BTreeMap<Address, u64>,
    held: BTreeMap<StateKey, bool>,
}

/// The value of a looked-up entry, or the typed expiry error. A live entry with an empty
/// value is a *deletion marker* (a deleted key some fold page flags, kept so it cannot read
/// as archived): it reads as absent. No account, code or slot encodes to empty bytes.
pub fn live_value(key: &StateKey, entry: Option<Entry>) -> Result<Option<Vec<u8>>, StateError> {
    match entry {
        None => Ok(None),
        Some(Entry::Live { value, .. }) if value.is_empty() => Ok(None),
        Some(Entry::Live { value, .. }) => Ok(Some(value)),
        Some(Entry::Expired { epoch, leaf }) => Err(StateError::Expired {
            key: key.clone(),
            epoch,
            leaf: Some(leaf),
        }),
    }
}

/// Decodes a stored entry (or `None` for absent or deleted).
pub fn decode_entry(raw: Option<&Vec<u8>>) -> Result<Option<Entry>, StateError> {
    raw.map(|r| Entry::decode(r)).transpose()
}

impl<T: StateView + ?Sized> StateView for &T {
    fn entry(&self, key: &StateKey) -> Result<Option<Entry>, StateError> {
        (**self).entry(key)
    }
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        (**self).get(key)
    }
    fn get_stamped(&self, key: &StateKey) -> Result<Stamped, StateError> {
        (**self).get_stamped(key)
    }
    fn expiry_candidates(&self, before: Epoch, limit: usize) -> Result<Vec<StateKey>, StateError> {
        (**self).expiry_candidates(before, limit)
    }
    fn fold_candidates(&self, before: Epoch, limit: usize) -> Result<Vec<StateKey>, StateError> {
        (**self).fold_candidates(before, limit)
    }
    fn storage_entries(&self, address: &Address) -> Result<u64, StateError> {
        (**self).storage_entries(address)
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
///
/// Writes are stamped with the overlay's epoch. Reads of base entries last touched in an
/// earlier epoch are remembered, and [`Overlay::into_diff`] re-stamps them: reading keeps an
/// entry alive exactly as writing does. The first expired entry a read hits is remembered too,
/// so the executor can turn a failed execution into the typed `Expired` receipt.
#[derive(Debug)]
pub struct Overlay<V> {
    base: V,
    epoch: Epoch,
    writes: StateDiff,
    /// (key, the write-set entry it replaced): `None` = the key had no buffered write.
    journal: Vec<(StateKey, Option<Option<Vec<u8>>>)>,
    touched: RefCell<BTreeMap<StateKey, Vec<u8>>>,
    /// Whether reads re-stamp (see `without_read_touches`).
    touch_reads: bool,
    expired_hit: RefCell<Option<(StateKey, Epoch, Option<u64>)>>,
    /// The fold pages, read once per overlay on the first absent read (pages only change by
    /// this overlay's own writes, which reset it).
    pages: RefCell<Option<Vec<(u64, FoldPage)>>>,
    /// Revivals of folded entries applied here (their diff is absent → live, which the
    /// commit's counters cannot tell from a creation).
    folded_revivals: u64,
    storage_memo: RefCell<StorageMemo>,
    /// Keys written since `log_writes` (for a parallel executor to publish), if logging.
    write_log: Option<Vec<StateKey>>,
}

/// What a transaction executed on its own overlay left behind, for [`Overlay::absorb`].
#[derive(Debug, Default)]
pub struct OverlayParts {
    pub writes: StateDiff,
    /// Base entries read in an older epoch (key → value), which `into_diff` re-stamps.
    pub touched: BTreeMap<StateKey, Vec<u8>>,
    pub folded_revivals: u64,
}

impl<V: StateView> Overlay<V> {
    /// An overlay whose writes are stamped with epoch 0 (genesis, read-only calls).
    pub fn new(base: V) -> Overlay<V> {
        Overlay::at_epoch(base, 0)
    }

    /// An overlay for executing a block of `epoch`.
    pub fn at_epoch(base: V, epoch: Epoch) -> Overlay<V> {
        Overlay {
            base,
            epoch,
            writes: BTreeMap::new(),
            journal: Vec::new(),
            touched: RefCell::new(BTreeMap::new()),
            touch_reads: true,
            expired_hit: RefCell::new(None),
            pages: RefCell::new(None),
            folded_revivals: 0,
            storage_memo: RefCell::new(StorageMemo::default()),
            write_log: None,
        }
    }

    /// Reads no longer re-stamp entries. For chains with expiry off, where nothing ever
    /// looks at a touch epoch: re-stamping would rewrite every entry a block only reads (a
    /// contract's code included) once per epoch, for nothing. Writes are still stamped.
    pub fn without_read_touches(mut self) -> Overlay<V> {
        self.touch_reads = false;
        self
    }

    pub fn base(&self) -> &V {
        &self.base
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Buffers a write of a live value; `None` deletes the key — or, if a fold page flags the
    /// key, writes a deletion marker (see `live_value`), so that an archived older version
    /// cannot be revived over the deletion.
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
        let value = match value {
            None if key.expires() && self.folded(&key)?.is_some() => Some(Vec::new()),
            value => value,
        };
        let stored = value.map(|v| encode_live(self.epoch, &v));
        self.set_raw(key, stored);
        Ok(())
    }

    /// Amends, in place, the live value this overlay itself wrote for `key`, as the last
    /// write of a transaction that is over: the undo history is forgotten first (as
    /// [`Overlay::discard_journal`]; no checkpoint taken before can be reverted to), so the
    /// old value is neither copied nor kept. `f` gets the entry's buffer, whose first
    /// `at` bytes are its header, and may change only what follows (changing the header is
    /// a typed error); it must leave the buffer as it was if it fails. One lookup and no
    /// allocation, where a read and a write took two lookups and two buffers: for a
    /// transaction's own account record, amended with its policy spending after it ran.
    /// `Ok(false)`, changing nothing, if this overlay holds no live value for `key` (never
    /// written here, or deleted). After an `Err` for a value grown past
    /// [`MAX_STATE_VALUE_BYTES`] the entry holds what `f` left: the run must stop, as
    /// every caller's does on a state error.
    pub fn amend_written(
        &mut self,
        key: &StateKey,
        f: impl FnOnce(&mut Vec<u8>, usize) -> Result<(), StateError>,
    ) -> Result<bool, StateError> {
        self.journal.clear();
        let Some(Some(raw)) = self.writes.get_mut(key) else {
            return Ok(false);
        };
        let crate::entry::EntryKind::Live { .. } = Entry::kind(raw)? else {
            return Ok(false);
        };
        let at = crate::entry::ENTRY_OVERHEAD_BYTES;
        let mut header = [0u8; crate::entry::ENTRY_OVERHEAD_BYTES];
        header.copy_from_slice(&raw[..at]);
        f(raw, at)?;
        if raw.get(..at) != Some(&header[..]) {
            // Put back what `f` changed of the header (the value is `f`'s to answer for).
            if raw.len() < at {
                raw.resize(at, 0);
            }
            raw[..at].copy_from_slice(&header);
            return Err(StateError::Corrupt(format!(
                "an amendment of {key:?} changed its header"
            )));
        }
        // Touched now, as a write now would have it.
        raw[..at].copy_from_slice(&crate::entry::live_header_bytes(self.epoch));
        let len_bytes = raw.len() - at;
        if len_bytes > MAX_STATE_VALUE_BYTES {
            return Err(StateError::ValueTooLarge {
                key: format!("{key:?}"),
                len_bytes,
                max_bytes: MAX_STATE_VALUE_BYTES,
            });
        }
        if matches!(key, StateKey::FoldCount | StateKey::FoldPage(_)) {
            *self.pages.get_mut() = None;
        }
        if let Some(log) = &mut self.write_log {
            log.push(key.clone());
        }
        Ok(true)
    }

    /// Records that a revival of a folded entry was applied (for the revived counter).
    pub fn count_folded_revival(&mut self) {
        self.folded_revivals += 1;
    }

    pub fn folded_revivals(&self) -> u64 {
        self.folded_revivals
    }

    /// Removes a stub that a fold page now holds (no deletion marker: the page is the record).
    pub fn delete_folded(&mut self, key: StateKey) {
        self.set_raw(key, None);
    }

    /// The error for reading `key` if it is absent here and a fold page flags it.
    fn folded(&self, key: &StateKey) -> Result<Option<StateError>, StateError> {
        if self.pages.borrow().is_none() {
            let pages = crate::fold::all_pages(self)?;
            *self.pages.borrow_mut() = Some(pages);
        }
        let pages = self.pages.borrow();
        Ok(crate::fold::folded_error(
            pages.as_deref().unwrap_or_default(),
            key,
        ))
    }

    /// Buffers an entry as is (expiry stubs).
    pub fn set_entry(&mut self, key: StateKey, entry: &Entry) {
        self.set_raw(key, Some(entry.encode()));
    }

    fn set_raw(&mut self, key: StateKey, stored: Option<Vec<u8>>) {
        if matches!(key, StateKey::FoldCount | StateKey::FoldPage(_)) {
            *self.pages.get_mut() = None;
        }
        if let Some(log) = &mut self.write_log {
            log.push(key.clone());
        }
        let previous = self.writes.insert(key.clone(), stored);
        self.journal.push((key, previous));
    }

    /// Logs every key written from now on (duplicates and reverted writes included; a
    /// reader looks each up in [`Overlay::written`]).
    pub fn log_writes(&mut self) {
        self.write_log = Some(Vec::new());
    }

    /// The keys written since the last call (empty unless `log_writes` was called).
    pub fn take_write_log(&mut self) -> Vec<StateKey> {
        self.write_log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// What this overlay buffered for `key` (`Some(None)`: a deletion), without reading the
    /// base or recording a touch.
    pub fn written(&self, key: &StateKey) -> Option<&Option<Vec<u8>>> {
        self.writes.get(key)
    }

    /// The writes, touch re-stamps and folded-revival count, for another overlay over the
    /// same state to [`absorb`](Overlay::absorb).
    pub fn into_parts(self) -> OverlayParts {
        OverlayParts {
            writes: self.writes,
            touched: self.touched.into_inner(),
            folded_revivals: self.folded_revivals,
        }
    }

    /// Applies what a transaction did on its own overlay as if it had run on this one. Sound
    /// only when every base entry it read is what this overlay would have given it (the
    /// parallel executor's validation): then its touches are exactly the ones this overlay
    /// would have recorded, and none of them is a key already written here.
    pub fn absorb(&mut self, parts: OverlayParts) {
        {
            let mut touched = self.touched.borrow_mut();
            for (key, value) in parts.touched {
                debug_assert!(!self.writes.contains_key(&key), "validated read was stale");
                touched.entry(key).or_insert(value);
            }
        }
        for (key, value) in parts.writes {
            self.set_raw(key, value);
        }
        self.folded_revivals += parts.folded_revivals;
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
        *self.pages.get_mut() = None;
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

    /// The first expired entry a read hit since the last call, if any.
    pub fn take_expired_hit(&self) -> Option<(StateKey, Epoch, Option<u64>)> {
        self.expired_hit.borrow_mut().take()
    }

    /// The buffered writes (without the touch re-stamps `into_diff` adds).
    pub fn diff(&self) -> &StateDiff {
        &self.writes
    }

    /// The writes plus a re-stamp of every entry read from the base in an older epoch.
    pub fn into_diff(self) -> StateDiff {
        let mut writes = self.writes;
        for (key, value) in self.touched.into_inner() {
            writes
                .entry(key)
                .or_insert_with(|| Some(encode_live(self.epoch, &value)));
        }
        writes
    }
}

impl<V: StateView> StateView for Overlay<V> {
    fn entry(&self, key: &StateKey) -> Result<Option<Entry>, StateError> {
        if let Some(raw) = self.writes.get(key) {
            return decode_entry(raw.as_ref());
        }
        let entry = self.base.entry(key)?;
        if let Some(Entry::Live {
            touched_epoch,
            value,
        }) = &entry
        {
            if self.touch_reads && *touched_epoch < self.epoch && key.expires() {
                self.touched
                    .borrow_mut()
                    .entry(key.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        Ok(entry)
    }

    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        let entry = self.entry(key)?;
        let folded = match entry {
            None if key.expires() => self.folded(key)?,
            _ => None,
        };
        let result = match folded {
            Some(e) => Err(e),
            None => live_value(key, entry),
        };
        if let Err(StateError::Expired { key, epoch, leaf }) = &result {
            self.expired_hit
                .borrow_mut()
                .get_or_insert_with(|| (key.clone(), *epoch, *leaf));
        }
        result
    }

    /// The base's answer unless this overlay wrote `key` (its bytes are not the base's): a
    /// key that never expires and was not written here reads as the base reads it.
    fn get_stamped(&self, key: &StateKey) -> Result<Stamped, StateError> {
        if key.expires() || self.writes.contains_key(key) {
            return self.get(key).map(Stamped::Value);
        }
        self.base.get_stamped(key)
    }

    fn expiry_candidates(&self, before: Epoch, limit: usize) -> Result<Vec<StateKey>, StateError> {
        self.base.expiry_candidates(before, limit)
    }

    fn fold_candidates(&self, before: Epoch, limit: usize) -> Result<Vec<StateKey>, StateError> {
        self.base.fold_candidates(before, limit)
    }

    fn storage_entries(&self, address: &Address) -> Result<u64, StateError> {
        let mut memo = self.storage_memo.borrow_mut();
        let base_count = match memo.counts.get(address) {
            Some(count) => *count,
            None => {
                let count = self.base.storage_entries(address)?;
                memo.counts.insert(*address, count);
                count
            }
        };
        count_layered(base_count, &[&self.writes], address, |key| {
            if let Some(held) = memo.held.get(key) {
                return Ok(*held);
            }
            // The base's own entry, not this overlay's `entry`: no touch is recorded.
            let held = holds_storage(self.base.entry(key)?.as_ref());
            memo.held.insert(key.clone(), held);
            Ok(held)
        })
    }
}

#[cfg(test)]
mod storage_entries_tests {
    use super::*;

    /// A map of raw entries as a view, counting its own slots.
    struct Mem(StateDiff);

    impl StateView for Mem {
        fn entry(&self, key: &StateKey) -> Result<Option<Entry>, StateError> {
            decode_entry(self.0.get(key).and_then(Option::as_ref))
        }
        fn storage_entries(&self, address: &Address) -> Result<u64, StateError> {
            let mut n = 0;
            for (key, raw) in &self.0 {
                if matches!(key, StateKey::Storage(a, _) if a == address) {
                    n += u64::from(holds_storage(decode_entry(raw.as_ref())?.as_ref()));
                }
            }
            Ok(n)
        }
    }

    fn slot(a: u8, s: u8) -> StateKey {
        StateKey::Storage(Address([a; 20]), [s; 32])
    }

    /// An overlay's count is its base's corrected for its own writes — new, deleted,
    /// expired, deletion markers — through checkpoints and reverts, probed as often as a
    /// block likes; the layered form over diffs (unfinalized ancestors) agrees.
    #[test]
    fn counts_follow_the_writes_of_overlays_and_layers() {
        let a = Address([1; 20]);
        let base = Mem([
            (slot(1, 1), Some(encode_live(0, &[1]))),
            (slot(1, 2), Some(encode_live(0, &[2]))),
            (slot(2, 1), Some(encode_live(0, &[3]))),
        ]
        .into_iter()
        .collect());
        let mut overlay = Overlay::new(&base);
        assert_eq!(overlay.storage_entries(&a).expect("count"), 2);
        overlay.set(slot(1, 1), None).expect("delete");
        overlay.set(slot(1, 3), Some(vec![9])).expect("new");
        assert_eq!(overlay.storage_entries(&a).expect("count"), 2);
        let checkpoint = overlay.checkpoint();
        overlay.set(slot(1, 2), None).expect("delete");
        overlay.set_entry(slot(1, 4), &Entry::Expired { epoch: 1, leaf: 0 });
        overlay.set_entry(
            slot(1, 5),
            &Entry::Live {
                touched_epoch: 0,
                value: Vec::new(),
            },
        );
        for _ in 0..3 {
            assert_eq!(
                overlay.storage_entries(&a).expect("count"),
                2,
                "stub yes, marker no"
            );
        }
        overlay.revert_to(checkpoint);
        assert_eq!(overlay.storage_entries(&a).expect("count"), 2);
        overlay.set(slot(1, 3), None).expect("delete");
        assert_eq!(overlay.storage_entries(&a).expect("count"), 1);
        assert_eq!(
            overlay.storage_entries(&Address([2; 20])).expect("count"),
            1
        );
        let diff = overlay.into_diff();
        let newer: StateDiff = [(slot(1, 2), None)].into_iter().collect();
        assert_eq!(
            layered_storage_entries(&base, &[&diff], &a).expect("count"),
            1
        );
        assert_eq!(
            layered_storage_entries(&base, &[&newer, &diff], &a).expect("count"),
            0
        );
    }

    /// `amend_written` changes only a live value this overlay wrote, as `set` would (the
    /// same entry afterwards, touched in the overlay's epoch), refuses a change of the
    /// header, and forgets the undo history (a checkpoint taken before it reverts nothing
    /// it did, nor what came before).
    #[test]
    fn a_written_value_is_amended_in_place_and_the_history_forgotten() {
        let base = Mem([(slot(1, 1), Some(encode_live(0, &[1])))]
            .into_iter()
            .collect());
        let mut overlay = Overlay::at_epoch(&base, 5);
        let double = |entry: &mut Vec<u8>, at: usize| {
            entry[at..].iter_mut().for_each(|b| *b *= 2);
            Ok(())
        };
        assert!(!overlay
            .amend_written(&slot(1, 1), double)
            .expect("base only"));
        assert_eq!(overlay.get(&slot(1, 1)).expect("read"), Some(vec![1]));
        overlay.set(slot(1, 2), Some(vec![3, 4])).expect("write");
        overlay.set(slot(1, 3), None).expect("delete");
        assert!(!overlay.amend_written(&slot(1, 3), double).expect("deleted"));
        let header = |entry: &mut Vec<u8>, _: usize| {
            entry[0] ^= 0xff;
            Ok(())
        };
        assert!(overlay.amend_written(&slot(1, 2), header).is_err());
        assert_eq!(overlay.get(&slot(1, 2)).expect("read"), Some(vec![3, 4]));
        let checkpoint = overlay.checkpoint();
        overlay.set(slot(1, 4), Some(vec![1])).expect("write");
        assert!(overlay.amend_written(&slot(1, 2), double).expect("written"));
        assert_eq!(overlay.get(&slot(1, 2)).expect("read"), Some(vec![6, 8]));
        let mut set = Overlay::at_epoch(&base, 5);
        set.set(slot(1, 2), Some(vec![6, 8])).expect("write");
        assert_eq!(overlay.written(&slot(1, 2)), set.written(&slot(1, 2)));
        overlay.revert_to(checkpoint);
        assert_eq!(overlay.get(&slot(1, 2)).expect("read"), Some(vec![6, 8]));
        assert_eq!(overlay.get(&slot(1, 4)).expect("read"), Some(vec![1]));
    }
}
