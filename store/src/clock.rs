//! A bounded map with CLOCK eviction (second chance), for the store's in-memory caches.
//! A read only sets an atomic flag, so readers can share a lock and never write the
//! index; eviction goes through entries oldest first, giving each one read since its last
//! pass a second chance at the back. Bounded in entries and in (caller-counted) bytes.
//!
//! The index is a hash map: a lookup is one or two cache misses, where a B-tree of 262,144
//! state keys took about a dozen key comparisons (14 % of a transfer's execution in a
//! profile). It is never iterated, so its order reaches nothing; eviction order comes from
//! the tick map. The hasher is seeded per process (foldhash: from addresses and the clock,
//! not a cryptographic secret), so keys cannot be chosen in advance to collide on every
//! node; a peer that still made some collide would slow one node's lookups in a bounded
//! cache, never change what they return.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
struct Slot<V> {
    value: V,
    bytes: usize,
    tick: u64,
    used: AtomicBool,
}

/// Looked up only, never iterated (see the module comment).
#[allow(clippy::disallowed_types)]
type Index<K, V> = std::collections::HashMap<K, Slot<V>, foldhash::fast::RandomState>;

#[derive(Debug)]
pub(crate) struct Clock<K, V> {
    entries: Index<K, V>,
    /// Insertion (or second-chance) order; ticks are unique.
    by_tick: BTreeMap<u64, K>,
    clock: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl<K: Hash + Eq + Clone, V> Clock<K, V> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Clock<K, V> {
        Clock {
            entries: Index::default(),
            by_tick: BTreeMap::new(),
            clock: 0,
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// The value of `key`, marked as read.
    pub fn get(&self, key: &K) -> Option<&V> {
        let slot = self.entries.get(key)?;
        slot.used.store(true, Ordering::Relaxed);
        Some(&slot.value)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    fn next_tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(slot) = self.entries.remove(key) {
            self.by_tick.remove(&slot.tick);
            self.bytes -= slot.bytes;
        }
    }

    /// Evicts the oldest entry not read since its last pass (read ones go to the back once).
    fn evict_one(&mut self) {
        while let Some((_, oldest)) = self.by_tick.pop_first() {
            let tick = self.next_tick();
            let Some(slot) = self.entries.get_mut(&oldest) else {
                continue;
            };
            if slot.used.swap(false, Ordering::Relaxed) {
                slot.tick = tick;
                self.by_tick.insert(tick, oldest);
                continue;
            }
            self.remove(&oldest);
            return;
        }
    }

    /// Inserts (or replaces) `key`; `bytes` is what it counts against the byte bound. A
    /// value larger than a 64th of the bound is not kept.
    pub fn insert(&mut self, key: K, value: V, bytes: usize) {
        self.remove(&key);
        if bytes > self.max_bytes / 64 {
            return;
        }
        while !self.entries.is_empty()
            && (self.entries.len() >= self.max_entries
                || self.bytes.saturating_add(bytes) > self.max_bytes)
        {
            self.evict_one();
        }
        let tick = self.next_tick();
        self.by_tick.insert(tick, key.clone());
        let used = AtomicBool::new(false);
        self.entries.insert(
            key,
            Slot {
                value,
                bytes,
                tick,
                used,
            },
        );
        self.bytes += bytes;
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_tick.clear();
        self.bytes = 0;
    }
}
