//! WASM modules as a deploy sees them (runtime/src/bridge.rs): validation, then compilation
//! through the module cache (singlepass with keel's metering middlewares, serialize, load).

use keel_exec_wasm::limits::MAX_MODULE_BYTES;
use keel_exec_wasm::{validate, ModuleCache, ValidationError};
use std::sync::OnceLock;

/// Compiled modules the fuzz cache keeps in memory (cleared before every input anyway, so
/// each input is compiled).
const FUZZ_CACHE_ENTRIES: usize = 4;

/// `keel_exec_wasm::validate`, the deploy's first check: a typed verdict, its receipt code,
/// and the size bound holds.
pub fn wasm_validate(data: &[u8]) {
    match validate(data) {
        Ok(facts) => {
            assert!(data.len() <= MAX_MODULE_BYTES, "an oversized module passed");
            let _ = format!("{facts:?}");
        }
        Err(e) => {
            let _ = e.code();
            let _ = e.to_string();
            if data.len() > MAX_MODULE_BYTES {
                assert!(matches!(e, ValidationError::TooLarge { .. }));
            }
        }
    }
}

fn cache() -> &'static ModuleCache {
    static CACHE: OnceLock<ModuleCache> = OnceLock::new();
    CACHE.get_or_init(|| {
        ModuleCache::new(None, FUZZ_CACHE_ENTRIES).expect("an in-memory module cache opens")
    })
}

/// The deploy path: validate, then `ModuleCache::get` (compile, serialize, load). A module
/// that validation accepts must compile or be refused with a receipt code: an error without
/// one stops the node, so a stranger who finds such a module can halt every validator.
pub fn wasm_compile(data: &[u8]) {
    if validate(data).is_err() {
        return;
    }
    let cache = cache();
    cache.clear_memory();
    let key = *blake3::hash(data).as_bytes();
    if let Err(e) = cache.get(&key, data) {
        assert!(
            e.refusal().is_some(),
            "a validated module made the node fail instead of refusing it: {e}"
        );
    }
}
