//! What revm derives from an account's code — the bytes it sees (WASM behind its prefix),
//! their keccak-256 (`EXTCODEHASH`) and the jump-destination analysis — cached by keel's code
//! hash across transactions and blocks. Loading a contract otherwise hashes and analyzes its
//! whole code on every transaction that touches it, which costs more than a token transfer's
//! execution (BENCHMARKS.md). Code under a hash never changes, so a cached value is exactly
//! what deriving it again would give: the cache changes time, never a result. The state read
//! of the code itself still happens on every load (expiry needs it: a read keeps the entry
//! alive, and an expired entry must fail the transaction).

use keel_types::Hash;
use revm::bytecode::Bytecode;
use revm::primitives::B256;
use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

/// Distinct codes kept.
pub const CODE_CACHE_ENTRIES: usize = 4_096;
/// Code bytes kept (the analysis adds about an eighth).
pub const CODE_CACHE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Default)]
struct Entries {
    by_hash: BTreeMap<Hash, (Bytecode, B256, u64)>,
    /// Insertion order (ticks are unique).
    by_tick: BTreeMap<u64, Hash>,
    clock: u64,
    bytes: usize,
}

/// Analyzed code by code hash, oldest inserted out first, bounded by
/// [`CODE_CACHE_ENTRIES`] and [`CODE_CACHE_BYTES`]. Readers share the lock (every
/// transaction that loads a contract reads here, from every execution thread); a contract
/// evicted while still in use is analyzed once more and re-inserted.
#[derive(Debug, Default)]
pub struct CodeCache {
    entries: RwLock<Entries>,
}

impl CodeCache {
    pub fn new() -> CodeCache {
        CodeCache::default()
    }

    /// The analyzed code and its keccak-256 for `code_hash`, or what `derive` makes of it
    /// (then kept). A poisoned lock only skips the cache.
    pub fn get_or_derive(
        &self,
        code_hash: &Hash,
        derive: impl FnOnce() -> (Bytecode, B256),
    ) -> (Bytecode, B256) {
        if let Ok(entries) = self.entries.read() {
            if let Some((code, hash, _)) = entries.by_hash.get(code_hash) {
                return (code.clone(), *hash);
            }
        }
        let (code, hash) = derive();
        let bytes = code.original_byte_slice().len();
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if bytes > CODE_CACHE_BYTES || entries.by_hash.contains_key(code_hash) {
            return (code, hash);
        }
        while entries.by_hash.len() >= CODE_CACHE_ENTRIES
            || entries.bytes.saturating_add(bytes) > CODE_CACHE_BYTES
        {
            let Some((_, oldest)) = entries.by_tick.pop_first() else {
                break;
            };
            if let Some((code, _, _)) = entries.by_hash.remove(&oldest) {
                entries.bytes -= code.original_byte_slice().len();
            }
        }
        entries.clock += 1;
        let tick = entries.clock;
        entries.by_tick.insert(tick, *code_hash);
        entries
            .by_hash
            .insert(*code_hash, (code.clone(), hash, tick));
        entries.bytes += bytes;
        (code, hash)
    }

    /// Codes cached.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .map_or(0, |entries| entries.by_hash.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
