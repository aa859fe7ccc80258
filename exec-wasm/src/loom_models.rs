//! loom models of the module cache's memory level: [`MemoryCache`], the code
//! `ModuleCache::get` runs, instantiated over `loom::sync::Mutex` with a stand-in module (the
//! code hash it was loaded for and which load made it) and a stand-in compile (a loom atomic
//! counter), inside `loom::model` with bounded preemptions. The disk level is covered by
//! `concurrent_writes_of_one_artifact_all_succeed` with real threads and files.

use super::{Lru, MemoryCache};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::{Arc, Mutex};

/// Preemptions per execution: every race below needs at most two (a get holds the lock
/// twice), the third finds orders the second cannot; each model still runs in seconds.
const PREEMPTIONS: usize = 3;

/// A stand-in compiled module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stub {
    /// The code hash it was compiled for (the byte the model's keys repeat).
    code: u8,
    /// Which load made it: two loads of one code hash give different stubs, as two
    /// compilations give two `Module` values.
    load: u64,
}

type Cache = MemoryCache<Stub, Mutex<Lru<Stub>>>;

fn model(f: impl Fn() + Sync + Send + 'static) {
    keel_types::sync::loom_model(PREEMPTIONS, f);
}

fn key(code: u8) -> [u8; 32] {
    [code; 32]
}

/// Accounted bytes are the entries' sum, within the bounds (a single entry may exceed the
/// byte bound on its own: it is still cached, alone).
fn check_accounts(cache: &Cache) {
    cache
        .inspect(|lru| {
            let (max_entries, max_bytes) = lru.bounds();
            assert_eq!(lru.bytes(), lru.recount(), "byte accounting");
            assert!(lru.len() <= max_entries, "{} entries", lru.len());
            assert!(
                lru.bytes() <= max_bytes || lru.len() == 1,
                "{} bytes",
                lru.bytes()
            );
        })
        .expect("the lock is never poisoned here");
}

/// `get` as `ModuleCache::get` does it, with the stand-in compile; checks the module is for
/// the code asked for, and the accounts after.
fn get(cache: &Cache, loads: &AtomicU64, code: u8, bytes: usize) -> Stub {
    let compile = || {
        let load = loads.fetch_add(1, Ordering::SeqCst);
        Ok::<_, ()>((Stub { code, load }, bytes))
    };
    let (stub, _) = cache
        .get_or_load(&key(code), compile)
        .expect("the stand-in compile never fails");
    assert_eq!(stub.code, code, "a module compiled for another code hash");
    check_accounts(cache);
    stub
}

fn cached(cache: &Cache, code: u8) -> Option<Stub> {
    cache.inspect(|lru| lru.peek(&key(code)).copied()).flatten()
}

/// Two executions (the driver's, an RPC simulation's) get one new module at once while a
/// third gets another, with room for both: all callers of one code hash hold the same
/// module, the one the cache keeps — a late second compile never replaces it.
#[test]
fn racing_loads_of_one_module_all_get_the_cached_one() {
    model(|| {
        let cache = Arc::new(Cache::new(2, 100));
        let loads = Arc::new(AtomicU64::new(0));
        let racers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|code| {
                let (cache, loads) = (cache.clone(), loads.clone());
                loom::thread::spawn(move || get(&cache, &loads, code, 10))
            })
            .collect();
        let mine = get(&cache, &loads, 1, 10);
        let results: Vec<Stub> = racers
            .into_iter()
            .map(|r| r.join().expect("racer"))
            .collect();
        assert_eq!(results[0], mine, "two modules handed out for one code hash");
        assert_eq!(
            cached(&cache, 1),
            Some(mine),
            "the module handed out is not the cached one"
        );
        assert_eq!(cached(&cache, 2), Some(results[1]));
        check_accounts(&cache);
    });
}

/// The byte bound fits one module of two: every load of the other code hash evicts, while
/// two callers race on the first. Accounts stay exact and bounded throughout, each caller
/// gets a module of its own code hash, and what stays cached is a module some caller got.
#[test]
fn evictions_under_racing_loads_keep_exact_accounts_within_the_bound() {
    model(|| {
        const MODULE_BYTES: usize = 6;
        let cache = Arc::new(Cache::new(4, 2 * MODULE_BYTES - 1));
        let loads = Arc::new(AtomicU64::new(0));
        let racers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|code| {
                let (cache, loads) = (cache.clone(), loads.clone());
                loom::thread::spawn(move || get(&cache, &loads, code, MODULE_BYTES))
            })
            .collect();
        let mine = get(&cache, &loads, 1, MODULE_BYTES);
        let results: Vec<Stub> = racers
            .into_iter()
            .map(|r| r.join().expect("racer"))
            .collect();
        check_accounts(&cache);
        assert_eq!(cache.inspect(Lru::len), Some(1), "one module fits");
        let kept = cached(&cache, 1)
            .or(cached(&cache, 2))
            .expect("one is cached");
        assert!(
            kept == mine || results.contains(&kept),
            "a cached module no caller got"
        );
    });
}

/// The entry bound, with a module above the byte bound on its own: it is cached alone, and
/// the count never exceeds the bound.
#[test]
fn the_entry_bound_holds_and_an_oversized_module_is_cached_alone() {
    model(|| {
        const SMALL: usize = 1;
        const LARGE: usize = 20;
        let cache = Arc::new(Cache::new(1, 10));
        let loads = Arc::new(AtomicU64::new(0));
        let large = {
            let (cache, loads) = (cache.clone(), loads.clone());
            loom::thread::spawn(move || get(&cache, &loads, 2, LARGE))
        };
        get(&cache, &loads, 1, SMALL);
        large.join().expect("large");
        check_accounts(&cache);
        assert_eq!(cache.inspect(Lru::len), Some(1));
    });
}
