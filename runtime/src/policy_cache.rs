//! Decoded policy records, kept between transactions so that an always-busy agent's policy is
//! decoded once, not once per transaction (issue 20's "the check must be nearly free").
//!
//! The cache never decides anything: a cached record is used only when the view holds the
//! same bytes it was decoded from, either because the view names them with the stamp they
//! were read under (`StateView::get_stamped`: the store's cache of the latest height, without
//! reading them) or because the bytes read are equal. So a policy changed by a block, a
//! reorganized parent or another view is simply a miss, and what a check sees is always
//! `PolicyRecord::decode_stored` of what the state holds. Time only, like the EVM code cache.

use keel_state::{Stamped, StateError, StateView, ValueStamp};
use keel_types::policy::{PolicyRecord, TargetRule};
use keel_types::{Address, StateKey};
use std::sync::{Arc, Mutex};

/// Accounts whose decoded record is kept. A record of the largest policy is about 3.4 KB
/// stored and 4 KB decoded, so a full cache holds about 30 MiB (the runtime and the mempool
/// keep one each); when full it starts over (a miss costs a decode).
pub const MAX_CACHED_POLICIES: usize = 4_096;

/// An account's stored record bytes, what they decode to, and the stamp a view named them
/// with when they were read (if it did).
type Cached = (Vec<u8>, Arc<IndexedRecord>, Option<ValueStamp>);

/// A decoded policy record with the first four bytes of each allowed target's address side
/// by side, in the list's order: finding a transaction's target reads one short array and
/// the one rule it names, not the whole list of rules (a profile of a policy of 16 targets
/// put the list's walk at a third of what the policy check added to a transfer). Reads as
/// the record itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexedRecord {
    record: PolicyRecord,
    /// `record.policy.targets[i].to`'s first four bytes, for each `i`.
    prefixes: Vec<u32>,
}

impl IndexedRecord {
    pub fn new(record: PolicyRecord) -> IndexedRecord {
        let prefixes = record
            .policy
            .targets
            .iter()
            .flatten()
            .map(|rule| prefix(&rule.to))
            .collect();
        IndexedRecord { record, prefixes }
    }

    /// The account's first target rule for `to` (the list's `find`), if it lists targets.
    /// `None` if it lists none; `Some(None)` if `to` is not among them.
    pub fn target(&self, to: &Address) -> Option<Option<&TargetRule>> {
        let targets = self.record.policy.targets.as_ref()?;
        let wanted = prefix(to);
        Some(
            self.prefixes
                .iter()
                .zip(targets)
                .find(|(p, rule)| **p == wanted && rule.to == *to)
                .map(|(_, rule)| rule),
        )
    }
}

fn prefix(address: &Address) -> u32 {
    let [a, b, c, d, ..] = address.0;
    u32::from_le_bytes([a, b, c, d])
}

impl std::ops::Deref for IndexedRecord {
    type Target = PolicyRecord;

    fn deref(&self) -> &PolicyRecord {
        &self.record
    }
}

/// Looked up, inserted into and cleared, never iterated, so its order reaches nothing (a
/// B-tree's key comparisons were a quarter of a policed transfer's cache lookup). Seeded per
/// process, like the store's entry cache (`keel_store::clock`): a sender that made addresses
/// collide would slow this node's lookups in a bounded map, never change what they return.
#[allow(clippy::disallowed_types)]
type Records = std::collections::HashMap<Address, Cached, foldhash::fast::RandomState>;

/// Decoded records by account (see the module comment). Shared by the threads of a parallel
/// block; the lock is held for a lookup or an insert, never for a read of the state.
#[derive(Debug, Default)]
pub struct PolicyCache {
    records: Mutex<Records>,
}

impl PolicyCache {
    /// `account`'s policy record in `view`, decoded, or `None` if it has none.
    pub fn read(
        &self,
        view: &dyn StateView,
        account: &Address,
    ) -> Result<Option<Arc<IndexedRecord>>, StateError> {
        self.read_keeping(view, account, true)
    }

    /// [`PolicyCache::read`]; a miss is remembered only if `keep` (speculative runs, RPC
    /// simulations and traces of old blocks, use the cache but never fill it: a client
    /// must not be able to replace what the validator's next block reads, or clear it).
    pub fn read_keeping(
        &self,
        view: &dyn StateView,
        account: &Address,
        keep: bool,
    ) -> Result<Option<Arc<IndexedRecord>>, StateError> {
        let key = StateKey::Policy(*account);
        let (raw, stamp) = match view.get_stamped(&key)? {
            Stamped::Value(None) => return Ok(None),
            Stamped::Value(Some(raw)) => (raw, None),
            Stamped::Stamp(stamp) => {
                if let Some((_, record, Some(cached))) = self.lock().get(account) {
                    if *cached == stamp {
                        return Ok(Some(Arc::clone(record)));
                    }
                }
                // The stamp was taken first, so the bytes read now are the stamped ones.
                let Some(raw) = view.get(&key)? else {
                    return Err(StateError::Corrupt(
                        "a stamped value reads as absent".into(),
                    ));
                };
                (raw, Some(stamp))
            }
        };
        if let Some(hit) = self.lookup(account, &raw, stamp.filter(|_| keep)) {
            return Ok(Some(hit));
        }
        let record = Arc::new(IndexedRecord::new(
            PolicyRecord::decode_stored(&raw).map_err(StateError::decode("policy"))?,
        ));
        if !keep {
            return Ok(Some(record));
        }
        let mut records = self.lock();
        if records.len() >= MAX_CACHED_POLICIES && !records.contains_key(account) {
            records.clear();
        }
        records.insert(*account, (raw, Arc::clone(&record), stamp));
        Ok(Some(record))
    }

    /// The cached record if it was decoded from `raw`; `restamp` (the stamp `raw` was read
    /// under) is remembered with it, so the next read under that stamp skips the bytes.
    fn lookup(
        &self,
        account: &Address,
        raw: &[u8],
        restamp: Option<ValueStamp>,
    ) -> Option<Arc<IndexedRecord>> {
        let mut records = self.lock();
        let (bytes, record, stamp) = records.get_mut(account)?;
        if bytes.as_slice() != raw {
            return None;
        }
        if restamp.is_some() {
            *stamp = restamp;
        }
        Some(Arc::clone(record))
    }

    /// Records held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        // A panic while holding the lock leaves a consistent map (each insert is whole), so
        // a poisoned lock is still usable.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_state::Overlay;
    use keel_types::policy::{AccountPolicy, TargetRule};
    use keel_types::Canonical;

    /// A state with nothing in it, under the overlay the test writes to.
    struct Empty;
    impl StateView for Empty {
        fn entry(&self, _: &StateKey) -> Result<Option<keel_state::Entry>, StateError> {
            Ok(None)
        }
        fn storage_entries(&self, _: &Address) -> Result<u64, StateError> {
            Ok(0)
        }
    }

    fn record(targets: u8) -> PolicyRecord {
        PolicyRecord {
            controller: None,
            source: Address([7; 20]),
            policy: AccountPolicy {
                targets: Some(
                    (1..=targets)
                        .map(|t| TargetRule {
                            to: Address([t; 20]),
                            selectors: None,
                        })
                        .collect(),
                ),
                ..AccountPolicy::default()
            },
            changed_at: 1,
        }
    }

    #[test]
    fn a_cached_record_is_used_only_for_the_bytes_it_came_from() {
        let mut state = Overlay::new(Empty);
        let (a, b) = (Address([1; 20]), Address([2; 20]));
        let cache = PolicyCache::default();
        assert_eq!(cache.read(&state, &a).expect("read"), None);
        state
            .set(StateKey::Policy(a), Some(record(3).encode()))
            .expect("set");
        let first = cache.read(&state, &a).expect("read").expect("record");
        assert_eq!(*first, IndexedRecord::new(record(3)));
        let again = cache.read(&state, &a).expect("read").expect("record");
        assert!(
            Arc::ptr_eq(&first, &again),
            "a hit reuses the decoded record"
        );
        // The state changes under the cache: the new bytes are decoded, never the old record.
        state
            .set(StateKey::Policy(a), Some(record(5).encode()))
            .expect("set");
        assert_eq!(
            *cache.read(&state, &a).expect("read").expect("record"),
            IndexedRecord::new(record(5))
        );
        // Deleted: none, whatever is cached.
        state.set(StateKey::Policy(a), None).expect("delete");
        assert_eq!(cache.read(&state, &a).expect("read"), None);
        // Another account's bytes never answer for this one.
        state
            .set(StateKey::Policy(b), Some(record(2).encode()))
            .expect("set");
        assert_eq!(cache.read(&state, &a).expect("read"), None);
        assert_eq!(
            *cache.read(&state, &b).expect("read").expect("record"),
            IndexedRecord::new(record(2))
        );
        // Corrupt bytes are a typed error, and are not cached.
        state
            .set(StateKey::Policy(b), Some(vec![1, 2, 3]))
            .expect("set");
        assert!(cache.read(&state, &b).is_err());
        assert!(cache.read(&state, &b).is_err());
    }

    /// A base that stamps its values (as the store's latest-entry cache does) and counts the
    /// reads of their bytes.
    #[derive(Default)]
    struct StampingBase {
        values: std::collections::BTreeMap<StateKey, (Vec<u8>, ValueStamp)>,
        byte_reads: std::cell::Cell<usize>,
    }

    impl StampingBase {
        fn put(&mut self, key: StateKey, value: Vec<u8>) {
            self.values.insert(key, (value, ValueStamp::fresh()));
        }
    }

    impl StateView for StampingBase {
        fn entry(&self, key: &StateKey) -> Result<Option<keel_state::Entry>, StateError> {
            self.byte_reads.set(self.byte_reads.get() + 1);
            Ok(self
                .values
                .get(key)
                .map(|(value, _)| keel_state::Entry::Live {
                    touched_epoch: 0,
                    value: value.clone(),
                }))
        }
        fn get_stamped(&self, key: &StateKey) -> Result<Stamped, StateError> {
            Ok(match self.values.get(key) {
                Some((_, stamp)) => Stamped::Stamp(*stamp),
                None => Stamped::Value(None),
            })
        }
        fn storage_entries(&self, _: &Address) -> Result<u64, StateError> {
            Ok(0)
        }
    }

    /// Under a stamp it decoded before, the cache answers without reading the bytes; a new
    /// stamp, or an overlay that wrote the record, makes it read them (and never serve the
    /// old record for new bytes).
    #[test]
    fn a_stamp_it_decoded_under_skips_the_bytes_and_nothing_else() {
        let a = Address([1; 20]);
        let mut base = StampingBase::default();
        base.put(StateKey::Policy(a), record(3).encode());
        let cache = PolicyCache::default();
        let first = cache.read(&base, &a).expect("read").expect("record");
        assert_eq!(
            ((*first).clone(), base.byte_reads.get()),
            (IndexedRecord::new(record(3)), 1)
        );
        let hit = cache.read(&base, &a).expect("read").expect("record");
        assert!(Arc::ptr_eq(&first, &hit));
        assert_eq!(base.byte_reads.get(), 1, "the stamp answered");
        // Through an overlay that did not write it: still the stamp.
        let mut overlay = Overlay::new(&base);
        assert!(Arc::ptr_eq(
            &first,
            &cache.read(&overlay, &a).expect("read").expect("record")
        ));
        assert_eq!(base.byte_reads.get(), 1);
        // The overlay writes it: its bytes are read, and they decide.
        overlay
            .set(StateKey::Policy(a), Some(record(5).encode()))
            .expect("set");
        let five = cache.read(&overlay, &a).expect("read").expect("record");
        assert_eq!(*five, IndexedRecord::new(record(5)));
        drop(overlay);
        // The same bytes under a new stamp: read once (the record decoded before answers),
        // then the new stamp answers.
        base.put(StateKey::Policy(a), record(5).encode());
        let reads = base.byte_reads.get();
        let restamped = cache.read(&base, &a).expect("read").expect("record");
        assert!(Arc::ptr_eq(&five, &restamped));
        assert_eq!(base.byte_reads.get(), reads + 1);
        cache.read(&base, &a).expect("read").expect("record");
        assert_eq!(base.byte_reads.get(), reads + 1, "restamped");
        // New bytes under a new stamp: decoded, never the old record.
        base.put(StateKey::Policy(a), record(7).encode());
        assert_eq!(
            *cache.read(&base, &a).expect("read").expect("record"),
            IndexedRecord::new(record(7))
        );
        // A speculative read never restamps: the next read reads the bytes again.
        base.put(StateKey::Policy(a), record(7).encode());
        let reads = base.byte_reads.get();
        cache.read_keeping(&base, &a, false).expect("read");
        cache.read_keeping(&base, &a, false).expect("read");
        assert_eq!(base.byte_reads.get(), reads + 2);
    }

    #[test]
    fn a_speculative_read_never_fills_the_cache() {
        let mut state = Overlay::new(Empty);
        let a = Address([1; 20]);
        let cache = PolicyCache::default();
        state
            .set(StateKey::Policy(a), Some(record(3).encode()))
            .expect("set");
        let seen = cache.read_keeping(&state, &a, false).expect("read");
        assert_eq!(seen.as_deref(), Some(&IndexedRecord::new(record(3))));
        assert!(cache.is_empty());
        let kept = cache.read(&state, &a).expect("read").expect("record");
        let hit = cache
            .read_keeping(&state, &a, false)
            .expect("read")
            .expect("record");
        assert!(
            Arc::ptr_eq(&kept, &hit),
            "a speculative read still uses a hit"
        );
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let mut state = Overlay::new(Empty);
        let cache = PolicyCache::default();
        let bytes = record(1).encode();
        for i in 0..=MAX_CACHED_POLICIES as u32 {
            let mut a = [0u8; 20];
            a[..4].copy_from_slice(&i.to_le_bytes());
            state
                .set(StateKey::Policy(Address(a)), Some(bytes.clone()))
                .expect("set");
            assert!(cache.read(&state, &Address(a)).expect("read").is_some());
            assert!(cache.len() <= MAX_CACHED_POLICIES);
        }
        assert_eq!(cache.len(), 1, "full: it started over");
    }

    proptest::proptest! {
        /// The index finds what the list's `find` finds, first rule first, among targets
        /// that share their first four bytes (drawn from two values, so they often do) and
        /// with selectors on some, for listed and unlisted addresses; and nothing when the
        /// policy lists no targets.
        #[test]
        fn the_index_finds_the_first_rule_the_list_names(
            tos in proptest::collection::vec((0u8..2, 0u8..3, proptest::bool::ANY), 0..20),
            asked in (0u8..2, 0u8..3),
            listed in proptest::bool::ANY,
        ) {
            let address = |(head, tail): (u8, u8)| {
                let mut a = [head; 20];
                a[19] = tail;
                Address(a)
            };
            let targets: Vec<TargetRule> = tos
                .iter()
                .map(|&(h, t, narrowed)| TargetRule {
                    to: address((h, t)),
                    selectors: narrowed.then(|| vec![[h, t, 0, 0]]),
                })
                .collect();
            let mut record = record(0);
            record.policy.targets = listed.then(|| targets.clone());
            let indexed = IndexedRecord::new(record.clone());
            let to = address(asked);
            let want = record.policy.targets.as_ref().map(|ts| ts.iter().find(|r| r.to == to));
            proptest::prop_assert_eq!(indexed.target(&to), want);
            proptest::prop_assert_eq!(&*indexed, &record);
        }
    }
}
