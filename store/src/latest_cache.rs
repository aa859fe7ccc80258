//! Entries of the latest committed height, kept in memory across blocks: the keys a busy
//! chain reads again and again (contracts' code and accounts, hot slots, senders) are served
//! without a RocksDB seek, a key hash and a metadata read per access. Each commit moves the
//! cache to its height by applying its diff, the only thing that changes between two
//! consecutive heights, so a hit is exactly what the store would return. Reads of any other
//! height bypass it.

use crate::clock::Clock;
use keel_state::{decode_entry, Entry, StateDiff, ValueStamp};
use keel_types::{Height, StateKey};
use std::sync::{PoisonError, RwLock};

/// Entries kept.
pub const LATEST_CACHE_ENTRIES: usize = 262_144;
/// Bytes kept, counting keys, values and bookkeeping.
pub const LATEST_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Bookkeeping bytes charged per entry besides its key (kept twice: the index and the
/// eviction order) and value: the slot, its tick and flag, the hash table's spare slots
/// and the eviction tree's node slack.
const ENTRY_OVERHEAD_BYTES: usize = 160;

#[derive(Debug)]
struct Inner {
    /// The height every cached entry describes; `None` before the first commit is known.
    height: Option<Height>,
    /// Each entry with the stamp it was taken in under ([`LatestCache::get_stamped`]).
    entries: Clock<StateKey, (Option<Entry>, ValueStamp)>,
}

fn size_of(key: &StateKey, entry: &Option<Entry>) -> usize {
    let value = match entry {
        Some(Entry::Live { value, .. }) => value.len(),
        Some(Entry::Expired { .. }) | None => 16,
    };
    2 * key.to_bytes().len() + value + ENTRY_OVERHEAD_BYTES
}

impl Inner {
    fn insert(&mut self, key: StateKey, entry: Option<Entry>) {
        let bytes = size_of(&key, &entry);
        self.entries
            .insert(key, (entry, ValueStamp::fresh()), bytes);
    }
}

/// The cache: readers share its lock, inserts and commits take it briefly (a poisoned lock
/// is recovered: its data is only ever a subset of the store's, and `advance` marks the
/// height unknown while it updates, so a panic there leaves no entry of the wrong height).
#[derive(Debug)]
pub(crate) struct LatestCache {
    inner: RwLock<Inner>,
}

impl LatestCache {
    pub fn new(height: Option<Height>) -> LatestCache {
        LatestCache {
            inner: RwLock::new(Inner {
                height,
                entries: Clock::new(LATEST_CACHE_ENTRIES, LATEST_CACHE_BYTES),
            }),
        }
    }

    /// The cached entry of `key` at `height`, if `height` is the cached one and it is there.
    pub fn get(&self, key: &StateKey, height: Height) -> Option<Option<Entry>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        if inner.height != Some(height) {
            return None;
        }
        inner.entries.get(key).map(|(entry, _)| entry.clone())
    }

    /// The stamp of `key`'s live value at `height` (`Ok`), or the entry when it holds none
    /// (`Err`: absent, expired or a deletion marker), if `height` is the cached one and `key`
    /// is there. Every insert takes a fresh stamp, and an entry changes only by an insert,
    /// so a stamp names one value for good.
    pub fn get_stamped(
        &self,
        key: &StateKey,
        height: Height,
    ) -> Option<Result<ValueStamp, Option<Entry>>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        if inner.height != Some(height) {
            return None;
        }
        Some(match inner.entries.get(key)? {
            (Some(Entry::Live { value, .. }), stamp) if !value.is_empty() => Ok(*stamp),
            (entry, _) => Err(entry.clone()),
        })
    }

    /// Remembers `entry`, read from the store at `height`, if that is still the cached
    /// height (a commit that moved on meanwhile makes the read stale for the cache).
    pub fn put(&self, key: &StateKey, height: Height, entry: &Option<Entry>) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if inner.height == Some(height) {
            inner.insert(key.clone(), entry.clone());
        }
    }

    /// Height `height` was committed with `diff`: the cache describes it from now on. If the
    /// cache did not describe the height below (or a written entry does not decode), it
    /// starts empty.
    pub fn advance(&self, height: Height, diff: &StateDiff) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let follows = height
            .checked_sub(1)
            .is_some_and(|below| inner.height == Some(below));
        inner.height = None;
        let mut clean = follows;
        if follows {
            for (key, raw) in diff {
                // Updated only if already hot: a block's writes are not a read forecast.
                if !inner.entries.contains(key) {
                    continue;
                }
                match decode_entry(raw.as_ref()) {
                    Ok(entry) => inner.insert(key.clone(), entry),
                    Err(_) => {
                        clean = false;
                        break;
                    }
                }
            }
        }
        if !clean {
            inner.entries.clear();
        }
        inner.height = Some(height);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_state::encode_live;
    use keel_types::Address;

    fn key(i: u32) -> StateKey {
        let mut slot = [0u8; 32];
        slot[..4].copy_from_slice(&i.to_be_bytes());
        StateKey::Storage(Address([7; 20]), slot)
    }

    fn live(v: u8) -> Option<Entry> {
        Some(Entry::Live {
            touched_epoch: 1,
            value: vec![v; 32],
        })
    }

    #[test]
    fn only_the_cached_height_is_served_and_commits_move_it() {
        let cache = LatestCache::new(Some(5));
        cache.put(&key(1), 4, &live(1));
        assert_eq!(cache.len(), 0, "a read of an older height is not cached");
        cache.put(&key(1), 5, &live(1));
        cache.put(&key(2), 5, &live(2));
        assert_eq!(cache.get(&key(1), 5), Some(live(1)));
        assert_eq!(cache.get(&key(1), 4), None);
        let diff: StateDiff = [(key(1), Some(encode_live(6, &[9; 32]))), (key(3), None)]
            .into_iter()
            .collect();
        cache.advance(6, &diff);
        let nine = Some(Entry::Live {
            touched_epoch: 6,
            value: vec![9; 32],
        });
        assert_eq!(
            cache.get(&key(1), 6),
            Some(nine),
            "a written hot key follows"
        );
        assert_eq!(
            cache.get(&key(2), 6),
            Some(live(2)),
            "an unwritten key carries over"
        );
        assert_eq!(
            cache.get(&key(3), 6),
            None,
            "a written cold key is not forecast"
        );
        assert_eq!(cache.get(&key(1), 5), None);
        // A gap (a height the cache did not see) empties it.
        cache.advance(8, &StateDiff::new());
        assert_eq!(cache.len(), 0);
    }

    /// A stamp names one value: it stays while a commit leaves the entry alone, and a
    /// write, or taking it in again after a gap, gives another; an absent, expired or
    /// deleted entry is answered as itself, and another height not at all.
    #[test]
    fn a_stamp_names_one_value_for_good() {
        let cache = LatestCache::new(Some(5));
        let stamp = |k: u32, h: Height| match cache.get_stamped(&key(k), h) {
            Some(Ok(stamp)) => Some(stamp),
            _ => None,
        };
        assert_eq!(cache.get_stamped(&key(1), 5), None, "not cached");
        cache.put(&key(1), 5, &live(1));
        cache.put(&key(2), 5, &live(2));
        cache.put(&key(3), 5, &None);
        let expired = Some(Entry::Expired { epoch: 1, leaf: 0 });
        cache.put(&key(4), 5, &expired);
        let deleted = Some(Entry::Live {
            touched_epoch: 1,
            value: Vec::new(),
        });
        cache.put(&key(5), 5, &deleted);
        let (one, two) = (stamp(1, 5), stamp(2, 5));
        assert!(one.is_some() && two.is_some() && one != two);
        assert_eq!(stamp(1, 5), one, "the same value, the same stamp");
        assert_eq!(cache.get_stamped(&key(1), 4), None, "another height");
        assert_eq!(cache.get_stamped(&key(3), 5), Some(Err(None)));
        assert_eq!(cache.get_stamped(&key(4), 5), Some(Err(expired)));
        assert_eq!(cache.get_stamped(&key(5), 5), Some(Err(deleted)));
        let diff: StateDiff = [(key(1), Some(encode_live(6, &[1; 32])))]
            .into_iter()
            .collect();
        cache.advance(6, &diff);
        let rewritten = stamp(1, 6);
        assert!(
            rewritten.is_some() && rewritten != one,
            "written (even with the same bytes)"
        );
        assert_eq!(stamp(2, 6), two, "left alone by the commit");
        cache.advance(8, &StateDiff::new());
        cache.put(&key(2), 8, &live(2));
        let again = stamp(2, 8);
        assert!(
            again.is_some() && again != two,
            "taken in again after a gap"
        );
    }

    #[test]
    fn the_cache_stays_within_its_entry_bound_and_keeps_what_is_read() {
        let cache = LatestCache::new(Some(1));
        let hot = key(u32::MAX);
        cache.put(&hot, 1, &live(1));
        for i in 0..(LATEST_CACHE_ENTRIES as u32 + 1_000) {
            cache.put(&key(i), 1, &live(2));
            if i % 1_000 == 0 {
                assert!(
                    cache.get(&hot, 1).is_some(),
                    "a key read often is kept ({i})"
                );
            }
        }
        assert!(cache.len() <= LATEST_CACHE_ENTRIES, "{}", cache.len());
        assert!(
            cache.get(&key(0), 1).is_none(),
            "the oldest unread entry went first"
        );
    }
}
