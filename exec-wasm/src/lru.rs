//! The memory level of the module cache: modules by code hash, least recently used first
//! out, bounded in entries and in bytes, behind a [`Lock`] that loom can replace so its models
//! (`loom_models.rs`) check this very code. A poisoned lock (a holder panicked) makes the
//! cache skipped, never trusted.

use keel_types::sync::Lock;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The in-memory modules by code hash, least recently used first out, bounded in entries and
/// in bytes. Plain data: [`MemoryCache`] holds it under its lock.
#[derive(Debug)]
pub struct Lru<M> {
    /// Per code hash: the module, its last use and its bytes.
    entries: BTreeMap<[u8; 32], (M, u64, usize)>,
    /// Ticks under the lock, so each is unique and later uses have larger ones.
    clock: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl<M: Clone> Lru<M> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Lru<M> {
        Lru {
            entries: BTreeMap::new(),
            clock: 0,
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn touch(&mut self, key: &[u8; 32]) -> Option<M> {
        let tick = self.tick();
        let (module, used, _) = self.entries.get_mut(key)?;
        *used = tick;
        Some(module.clone())
    }

    /// Caches `module` unless another caller cached one for `key` first: that one is kept
    /// and returned, so a race of two loads never swaps the module callers already hold.
    fn insert_first(&mut self, key: &[u8; 32], module: M, bytes: usize) -> M {
        if let Some(cached) = self.touch(key) {
            return cached;
        }
        while !self.entries.is_empty()
            && (self.entries.len() >= self.max_entries
                || self.bytes.saturating_add(bytes) > self.max_bytes)
        {
            // Ticks are unique: the minimum is the one least recently used.
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used, _))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((_, _, freed)) = self.entries.remove(&oldest) {
                self.bytes -= freed;
            }
        }
        let tick = self.tick();
        self.entries.insert(*key, (module.clone(), tick, bytes));
        self.bytes += bytes;
        module
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes accounted for the cached modules.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The cached module for `key`, without counting it as a use.
    pub fn peek(&self, key: &[u8; 32]) -> Option<&M> {
        self.entries.get(key).map(|(m, _, _)| m)
    }

    /// Bytes of every entry, summed again (the models check `bytes` against it).
    #[cfg(test)]
    pub fn recount(&self) -> usize {
        self.entries.values().map(|(_, _, b)| *b).sum()
    }

    #[cfg(test)]
    pub fn bounds(&self) -> (usize, usize) {
        (self.max_entries, self.max_bytes)
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

/// The memory level of the cache: get-or-load under one lock, never held while loading
/// (compiling takes milliseconds and executions must not queue behind it). Two callers
/// missing the same key both load; the first to finish is cached and both get it. Generic
/// over the module and the lock for the loom models; production is
/// `MemoryCache<LoadedModule, Mutex<Lru<LoadedModule>>>`.
#[derive(Debug)]
pub struct MemoryCache<M, L = Mutex<Lru<M>>> {
    lru: L,
    _module: std::marker::PhantomData<fn() -> M>,
}

impl<M: Clone, L: Lock<Lru<M>>> MemoryCache<M, L> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        MemoryCache {
            lru: L::new(Lru::new(max_entries, max_bytes)),
            _module: std::marker::PhantomData,
        }
    }

    /// The cached module for `key`, or the one `load` makes (with its bytes), then cached.
    /// The second value says whether it came from memory.
    pub fn get_or_load<E>(
        &self,
        key: &[u8; 32],
        load: impl FnOnce() -> Result<(M, usize), E>,
    ) -> Result<(M, bool), E> {
        if let Some(module) = self.lru.acquire().ok().and_then(|mut lru| lru.touch(key)) {
            return Ok((module, true));
        }
        let (module, bytes) = load()?;
        Ok(match self.lru.acquire() {
            Ok(mut lru) => (lru.insert_first(key, module, bytes), false),
            Err(_) => (module, false),
        })
    }

    /// Runs `f` on the cache's content (metrics, tests and the models' invariants).
    pub fn inspect<R>(&self, f: impl FnOnce(&Lru<M>) -> R) -> Option<R> {
        self.lru.acquire().ok().map(|lru| f(&lru))
    }

    pub fn clear(&self) {
        if let Ok(mut lru) = self.lru.acquire() {
            lru.clear();
        }
    }
}

#[cfg(test)]
#[path = "loom_models.rs"]
mod loom_models;
