//! Compilation and the compiled-module cache (memory, then disk, then compile).
//!
//! Every module is compiled once with singlepass plus the keel middlewares, serialized, and
//! from then on only ever *loaded* into a headless engine of its own: a cold call (compile then
//! load) and a warm call (load from memory or disk) run the very same artifact bytes, so
//! warm and cold results cannot differ. The disk copy lets a restarted node skip compiling
//! everything again, as Stylus' activation does.

use crate::lru::MemoryCache;
use crate::meter::keel_middlewares;
use crate::validate::{validate, ValidationError};
use keel_types::receipt::CodeError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmer::sys::{CompilerConfig, EngineBuilder, NativeEngineExt, Singlepass};
use wasmer::{CompileError, Engine, Module};

/// Bumped whenever the cost table, the middlewares or the wasmer version change: artifacts
/// built under another version are never loaded.
pub const ARTIFACT_VERSION: u32 = 1;
const FILE_MAGIC: &[u8; 8] = b"KEELWASM";

/// Why a module could not be made runnable.
///
/// `Invalid` and `Compile` are properties of the module — every node reaches the same
/// verdict — so the transaction is refused ([`CacheError::refusal`]). `Resource` and `Io` are
/// this machine's problem (memory, disk): the node must stop rather than decide differently
/// from its peers.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The compiler refused a module that passed validation (wasmer's message, for logs).
    #[error("compilation failed: {0}")]
    Compile(String),
    /// Compiling, serializing or loading ran out of some resource of this machine.
    #[error("compiler resources: {0}")]
    Resource(String),
    #[error("module cache I/O: {0}")]
    Io(String),
}

impl CacheError {
    /// The deploy refusal this error stands for, or `None` if it is the node's failure.
    pub fn refusal(&self) -> Option<CodeError> {
        match self {
            CacheError::Invalid(e) => Some(e.code()),
            CacheError::Compile(_) => Some(CodeError::CompileFailed),
            CacheError::Resource(_) | CacheError::Io(_) => None,
        }
    }
}

/// Sorts wasmer's compile errors: the module's fault (the same on every node) or the
/// machine's.
fn compile_error(e: CompileError) -> CacheError {
    match e {
        // singlepass reports a thread pool it could not start (the machine's resources) as a
        // codegen error. Matching its text only decides whether this node stops; nothing of
        // it reaches a receipt.
        CompileError::Codegen(ref message) if message.starts_with("failed to build rayon") => {
            CacheError::Resource(e.to_string())
        }
        CompileError::Wasm(_)
        | CompileError::Codegen(_)
        | CompileError::Validate(_)
        | CompileError::UnsupportedFeature(_)
        | CompileError::MiddlewareError(_) => CacheError::Compile(e.to_string()),
        CompileError::UnsupportedTarget(_)
        | CompileError::Resource(_)
        | CompileError::Aborted(_) => CacheError::Resource(e.to_string()),
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub memory_hits: AtomicU64,
    pub disk_hits: AtomicU64,
    pub compiles: AtomicU64,
    /// Artifacts not written because the disk bound was reached (they stay in memory).
    pub disk_full: AtomicU64,
    /// Artifact files deleted to make room under the disk bound.
    pub disk_evictions: AtomicU64,
}

/// Bytes of compiled artifacts kept on disk. A write past it first deletes the oldest-written
/// artifacts (down to nine tenths of it); one that still does not fit stays in memory only.
/// Writes come only from block execution, and a Byzantine leader's proposals full of WASM
/// deploys are executed to be verified though they never finalize (so cost nothing): without
/// this bound they could fill the disk, and a full disk halts the node. Racing writers can
/// overshoot it by at most one artifact each.
pub const MAX_DISK_CACHE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Compiled-artifact bytes kept in memory (the sum over cached modules of their artifact's
/// length, which is what a loaded module's code pages cost). The entry bound alone allowed
/// 256 (the node's) of the largest artifacts: a module of 4,000 one-instruction functions
/// (56 KiB of code) compiles to a 2.1 MB artifact, so 256 of them held over 500 MB. A module
/// above this bound on its own is still cached, alone.
pub const MODULE_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// A runnable module with the headless engine that holds its code pages. Each module gets
/// its own engine because a wasmer engine frees the code memory of the modules it loaded only
/// when it is dropped itself: with one shared engine, evicting a module freed nothing, and
/// a caller cycling through more modules than the cache holds grew memory without bound
/// (~260 KB per reload of a 7.9 KB contract; found by fuzzing `wasm_compile`). Run it in a
/// `Store` of [`LoadedModule::engine`].
#[derive(Debug, Clone)]
pub struct LoadedModule {
    module: Module,
    engine: Engine,
}

impl LoadedModule {
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl std::ops::Deref for LoadedModule {
    type Target = Module;

    fn deref(&self) -> &Module {
        &self.module
    }
}

/// Whether a module compiled on a cache miss is written to disk (block execution) or not
/// (speculative RPC calls and simulations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    Yes,
    No,
}

/// Compiles and caches modules by code hash.
#[derive(Debug)]
pub struct ModuleCache {
    dir: Option<PathBuf>,
    memory: MemoryCache<LoadedModule>,
    /// Makes each disk write's temporary file name unique: two threads compiling the same
    /// new module (the driver executing its deploy while RPC simulates it) used to share
    /// one `.tmp` path, and the second rename failed with "not found", an I/O error that
    /// halts the node.
    writes: AtomicU64,
    /// Bytes of the artifact files in `dir`, counted at start and on every write.
    disk_bytes: AtomicU64,
    disk_limit_bytes: u64,
    pub stats: CacheStats,
}

fn integrity_tag(key: &[u8; 32], artifact: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("keel wasm artifact v1");
    hasher.update(&ARTIFACT_VERSION.to_le_bytes());
    hasher.update(key);
    hasher.update(artifact);
    *hasher.finalize().as_bytes()
}

/// Validate and compile `code` into serialized artifact bytes (singlepass + middlewares).
/// Each compile gets a fresh engine because the middlewares record per-module state.
pub fn compile_artifact(code: &[u8]) -> Result<Vec<u8>, CacheError> {
    validate(code)?;
    let mut compiler = Singlepass::new();
    for middleware in keel_middlewares() {
        compiler.push_middleware(middleware);
    }
    let engine: Engine = EngineBuilder::new(compiler).engine().into();
    let module = Module::new(&engine, code).map_err(compile_error)?;
    // Serializing a compiled module in memory fails only for want of resources.
    let bytes = module
        .serialize()
        .map_err(|e| CacheError::Resource(e.to_string()))?;
    Ok(bytes.to_vec())
}

impl ModuleCache {
    /// A cache keeping up to `capacity` modules in memory and, if `dir` is given, every
    /// artifact on disk.
    /// Temporary files a crash left behind are removed; the artifacts' bytes are counted
    /// against [`MAX_DISK_CACHE_BYTES`].
    pub fn new(dir: Option<PathBuf>, capacity: usize) -> Result<ModuleCache, CacheError> {
        let disk_bytes = match &dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| CacheError::Io(e.to_string()))?;
                scan_disk(dir).map_err(|e| CacheError::Io(e.to_string()))?
            }
            None => 0,
        };
        wasmer_vm::set_stack_size(crate::limits::WASM_STACK_BYTES);
        Ok(ModuleCache {
            dir,
            memory: MemoryCache::new(capacity, MODULE_CACHE_BYTES),
            writes: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(disk_bytes),
            disk_limit_bytes: MAX_DISK_CACHE_BYTES,
            stats: CacheStats::default(),
        })
    }

    /// The same cache with another disk bound (tests).
    pub fn with_disk_limit(mut self, bytes: u64) -> ModuleCache {
        self.disk_limit_bytes = bytes;
        self
    }

    /// Bytes of artifact files on disk, as counted.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::Relaxed)
    }

    fn path(&self, key: &[u8; 32]) -> Option<PathBuf> {
        let name: String = key.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.as_ref().map(|d| d.join(format!("{name}.wasmer")))
    }

    fn load(&self, artifact: &[u8]) -> Result<LoadedModule, CacheError> {
        let engine = <Engine as NativeEngineExt>::headless();
        // SAFETY: `Module::deserialize` trusts its input to be an artifact wasmer produced.
        // Every byte string passed here either comes straight from `compile_artifact` in this
        // process or from a cache file whose keyed blake3 tag (over version, code hash and
        // artifact) was checked just before; anything else is recompiled instead.
        #[allow(unsafe_code)]
        let module = unsafe { Module::deserialize(&engine, artifact.to_vec()) };
        // The artifact is one this build produced: failing to load it is the machine's
        // problem (memory for the code pages), not the module's.
        let module = module.map_err(|e| CacheError::Resource(e.to_string()))?;
        Ok(LoadedModule { module, engine })
    }

    fn read_disk(&self, key: &[u8; 32]) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.path(key)?).ok()?;
        let header = FILE_MAGIC.len() + 4 + 32;
        if bytes.len() < header || &bytes[..8] != FILE_MAGIC {
            return None;
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
        let artifact = &bytes[header..];
        (version == ARTIFACT_VERSION && bytes[12..header] == integrity_tag(key, artifact))
            .then(|| artifact.to_vec())
    }

    fn write_disk(&self, key: &[u8; 32], artifact: &[u8]) -> Result<(), CacheError> {
        let Some(path) = self.path(key) else {
            return Ok(());
        };
        let mut file = Vec::with_capacity(artifact.len() + 44);
        file.extend_from_slice(FILE_MAGIC);
        file.extend_from_slice(&ARTIFACT_VERSION.to_le_bytes());
        file.extend_from_slice(&integrity_tag(key, artifact));
        file.extend_from_slice(artifact);
        // A file already there (one that did not load, or a racing writer's) is replaced.
        let replaced = std::fs::metadata(&path).map_or(0, |m| m.len());
        let size = file.len() as u64;
        let fits = |cache: &ModuleCache| {
            cache
                .disk_bytes()
                .saturating_add(size)
                .saturating_sub(replaced)
                <= cache.disk_limit_bytes
        };
        // An artifact larger than the whole bound would empty the cache and still not fit.
        if !fits(self) && size <= self.disk_limit_bytes {
            self.evict_disk(size, &path);
        }
        if !fits(self) {
            self.stats.disk_full.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                limit_bytes = self.disk_limit_bytes,
                "WASM artifact cache on disk is full; keeping this module in memory only"
            );
            return Ok(());
        }
        // Write then rename, so a crash never leaves a torn file under the final name.
        let write = self.writes.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("{write}.tmp"));
        std::fs::write(&tmp, &file).map_err(|e| CacheError::Io(e.to_string()))?;
        std::fs::rename(&tmp, &path).map_err(|e| CacheError::Io(e.to_string()))?;
        // Relaxed counts: racing writers of one file may each subtract the same old size or
        // none; the count stays within an artifact per writer of the truth.
        self.disk_bytes.fetch_add(size, Ordering::Relaxed);
        let _ = self
            .disk_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(replaced))
            });
        Ok(())
    }

    /// Deletes the oldest-written artifact files (never `keep`) until `incoming` more bytes
    /// fit under the disk bound with a tenth of it to spare, so a full cache does not rescan
    /// the directory on every write. A module whose file went is recompiled and written
    /// again on its next cold load, so modules in use keep coming back: oldest-written first
    /// approximates least recently used without reading a clock. Failures to list or delete
    /// are skipped (the write then stays in memory only), never an error that stops the node.
    fn evict_disk(&self, incoming: u64, keep: &std::path::Path) {
        let Some(entries) = self.dir.as_ref().and_then(|d| std::fs::read_dir(d).ok()) else {
            return;
        };
        let target = (self.disk_limit_bytes - self.disk_limit_bytes / 10).saturating_sub(incoming);
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                if path.extension()? != "wasmer" || path == keep {
                    return None;
                }
                let meta = std::fs::metadata(&path).ok()?;
                Some((meta.modified().ok()?, meta.len(), path))
            })
            .collect();
        files.sort();
        for (_, len, path) in files {
            if self.disk_bytes() <= target {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                self.stats.disk_evictions.fetch_add(1, Ordering::Relaxed);
                let _ = self
                    .disk_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                        Some(b.saturating_sub(len))
                    });
            }
        }
    }

    /// The runnable module for `code`, whose code hash is `key`.
    pub fn get(&self, key: &[u8; 32], code: &[u8]) -> Result<LoadedModule, CacheError> {
        let (module, from_memory) = self
            .memory
            .get_or_load(key, || self.load_or_compile(key, code, Persist::Yes))?;
        if from_memory {
            self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(module)
    }

    /// The runnable module for `code` for a speculative execution (RPC calls and
    /// simulations): from memory or disk if a block's execution put it there, else compiled
    /// for this caller alone, neither written to disk nor kept in memory. A client can ask
    /// for any number of simulated deploys for free; they must cost it time, never this
    /// node's disk or the cache that block execution relies on.
    pub fn get_speculative(&self, key: &[u8; 32], code: &[u8]) -> Result<LoadedModule, CacheError> {
        if let Some(module) = self.memory.inspect(|lru| lru.peek(key).cloned()).flatten() {
            self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(module);
        }
        self.load_or_compile(key, code, Persist::No)
            .map(|(module, _)| module)
    }

    /// The module from its disk artifact, else compiled (and written to disk if `persist`),
    /// with the artifact's length.
    fn load_or_compile(
        &self,
        key: &[u8; 32],
        code: &[u8],
        persist: Persist,
    ) -> Result<(LoadedModule, usize), CacheError> {
        // A disk artifact that does not load (say, written by another wasmer under the same
        // ARTIFACT_VERSION) is recompiled rather than failing the call.
        let from_disk = self
            .read_disk(key)
            .and_then(|artifact| match self.load(&artifact) {
                Ok(module) => Some((module, artifact.len())),
                Err(e) => {
                    tracing::warn!(error = %e, "cached WASM artifact does not load; recompiling");
                    None
                }
            });
        if let Some(loaded) = from_disk {
            self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(loaded);
        }
        let artifact = compile_artifact(code)?;
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        if persist == Persist::Yes {
            self.write_disk(key, &artifact)?;
        }
        Ok((self.load(&artifact)?, artifact.len()))
    }

    /// Drop the in-memory entries (tests use this to force the disk path).
    pub fn clear_memory(&self) {
        self.memory.clear();
    }

    /// Modules in memory and their accounted bytes (metrics and tests).
    pub fn memory_usage(&self) -> (usize, usize) {
        self.memory
            .inspect(|lru| (lru.len(), lru.bytes()))
            .unwrap_or_default()
    }
}

/// Removes the temporary files of writes a crash interrupted and sums the artifacts' bytes.
/// Only an unreadable directory is an error; an entry that cannot be read or removed is
/// skipped (with a warning), never a reason not to start.
fn scan_disk(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut bytes = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let result = match path.extension().and_then(|e| e.to_str()) {
            Some("tmp") => std::fs::remove_file(&path),
            Some("wasmer") => std::fs::metadata(&path).map(|m| {
                bytes = bytes.saturating_add(m.len());
            }),
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "skipping a WASM cache entry");
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = r#"(module
      (memory (export "memory") 1 1)
      (func (export "call") (param i32) (result i32) (i32.const 0)))"#;

    #[test]
    fn compile_errors_of_the_module_are_refusals_and_of_the_machine_are_not() {
        let refused = [
            CompileError::Codegen("x".into()),
            CompileError::Validate("x".into()),
            CompileError::UnsupportedFeature("x".into()),
            CompileError::MiddlewareError("x".into()),
        ];
        for e in refused {
            assert_eq!(
                compile_error(e).refusal(),
                Some(CodeError::CompileFailed),
                "a module the compiler refuses fails its deploy"
            );
        }
        let node = [
            CompileError::Codegen("failed to build rayon thread pool: no threads".into()),
            CompileError::Resource("x".into()),
            CompileError::UnsupportedTarget("x".into()),
        ];
        for e in node {
            assert_eq!(compile_error(e).refusal(), None, "the machine's failure");
        }
        assert_eq!(CacheError::Io("disk".into()).refusal(), None);
        let invalid = CacheError::from(ValidationError::StartFunction);
        assert_eq!(invalid.refusal(), Some(CodeError::StartFunction));
    }

    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// RPC simulations of deploys compile for the caller alone: nothing on disk, nothing in
    /// memory; a module block execution cached is served to them from there.
    #[test]
    fn speculative_gets_write_nothing_and_keep_nothing() {
        let code = wat::parse_str(MODULE).expect("wat");
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ModuleCache::new(Some(dir.path().to_path_buf()), 4).expect("cache");
        for _ in 0..3 {
            cache.get_speculative(&[1; 32], &code).expect("compiles");
        }
        assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
        assert_eq!(cache.memory_usage().0, 0);
        assert_eq!(cache.stats.compiles.load(Ordering::Relaxed), 3);
        cache
            .get(&[1; 32], &code)
            .expect("block execution caches it");
        assert_eq!(files(dir.path()).len(), 1);
        cache
            .get_speculative(&[1; 32], &code)
            .expect("served from memory");
        cache.clear_memory();
        cache
            .get_speculative(&[1; 32], &code)
            .expect("served from disk");
        assert_eq!(cache.stats.compiles.load(Ordering::Relaxed), 4);
    }

    /// Past the disk bound the oldest-written artifact goes to make room; one that cannot
    /// fit at all stays in memory only (the module still runs); a restart counts what is
    /// there and removes the temporary files of interrupted writes.
    #[test]
    fn the_disk_is_bounded_and_interrupted_writes_are_cleaned_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ModuleCache::new(Some(dir.path().to_path_buf()), 8).expect("cache");
        let module = |n: u8| {
            wat::parse_str(MODULE.replace("i32.const 0", &format!("i32.const {n}"))).expect("wat")
        };
        cache.get(&[1; 32], &module(1)).expect("compiles");
        let one = cache.disk_bytes();
        assert!(one > 0);
        let name = |k: u8| format!("{}.wasmer", format!("{k:02x}").repeat(32));
        let cache = ModuleCache::new(Some(dir.path().to_path_buf()), 8)
            .expect("cache")
            .with_disk_limit(one + one / 2);
        assert_eq!(cache.disk_bytes(), one, "counted at start");
        cache.get(&[2; 32], &module(2)).expect("compiles");
        assert_eq!(
            files(dir.path()),
            vec![name(2)],
            "the older artifact made room"
        );
        assert_eq!(cache.stats.disk_evictions.load(Ordering::Relaxed), 1);
        let tiny = ModuleCache::new(Some(dir.path().to_path_buf()), 8)
            .expect("cache")
            .with_disk_limit(one / 2);
        tiny.get(&[3; 32], &module(3))
            .expect("runs though its artifact cannot fit");
        assert_eq!(tiny.stats.disk_full.load(Ordering::Relaxed), 1);
        assert_eq!(files(dir.path()), vec![name(2)], "nothing evicted for it");
        std::fs::write(dir.path().join("0202.7.tmp"), b"torn").expect("write");
        let _ = ModuleCache::new(Some(dir.path().to_path_buf()), 8).expect("cache");
        assert!(
            files(dir.path()).iter().all(|f| !f.ends_with(".tmp")),
            "the temporary file is gone"
        );
    }

    /// Two threads writing one new module's artifact at once (the driver executing its
    /// deploy while RPC simulates the same deploy) shared one temporary file name: the
    /// second `rename` found nothing to rename, an I/O error, which halts the node when the
    /// driver is the one that gets it. With one shared name, 88 of these 400 writes failed.
    #[test]
    fn concurrent_writes_of_one_artifact_all_succeed() {
        const WRITERS: usize = 4;
        const ROUNDS: usize = 100;
        const ARTIFACT_BYTES: usize = 64 * 1024;
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ModuleCache::new(Some(dir.path().to_path_buf()), 4).expect("cache");
        let (key, artifact) = ([3u8; 32], vec![0x5a; ARTIFACT_BYTES]);
        let start = std::sync::Barrier::new(WRITERS);
        // Failures are counted, not panicked on: a panicking writer would leave the others
        // waiting at the barrier forever.
        let failed = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..WRITERS {
                s.spawn(|| {
                    for _ in 0..ROUNDS {
                        start.wait();
                        if cache.write_disk(&key, &artifact).is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let failed = failed.load(Ordering::Relaxed);
        assert_eq!(failed, 0, "{failed} racing writes failed");
        assert_eq!(cache.read_disk(&key), Some(artifact));
    }

    /// Executions missing one new module at once through `get` all get it (each compiles
    /// and writes; the first cached is kept), none gets an error. With a module this small
    /// the writes rarely overlap: the test above is the one that caught the shared file.
    #[test]
    fn racing_first_gets_of_one_module_all_succeed() {
        const THREADS: usize = 4;
        const ROUNDS: u8 = 16;
        let code = wat::parse_str(MODULE).expect("wat");
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ModuleCache::new(Some(dir.path().to_path_buf()), 4).expect("cache");
        let start = std::sync::Barrier::new(THREADS);
        let failed = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for round in 0..ROUNDS {
                        start.wait();
                        if cache.get(&[round; 32], &code).is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(failed.load(Ordering::Relaxed), 0, "racing gets failed");
        let (modules, _) = cache.memory_usage();
        assert_eq!(modules, 4, "the entry bound");
        let compiles = cache.stats.compiles.load(Ordering::Relaxed);
        assert!(compiles >= u64::from(ROUNDS), "{compiles} compiles");
    }

    /// The memory level is bounded in entries and in artifact bytes, and counts them exactly.
    #[test]
    fn memory_is_bounded_in_modules_and_bytes() {
        let code = wat::parse_str(MODULE).expect("wat");
        let cache = ModuleCache::new(None, 2).expect("cache");
        for k in 0..3u8 {
            cache.get(&[k; 32], &code).expect("compiles");
        }
        let (modules, bytes) = cache.memory_usage();
        assert_eq!(modules, 2, "the entry bound");
        let one = compile_artifact(&code).expect("compiles").len();
        assert_eq!(bytes, 2 * one, "two artifacts accounted");
        let lru: MemoryCache<u8> = MemoryCache::new(8, 10);
        for (k, len) in [(1u8, 4usize), (2, 4), (3, 4)] {
            let _ = lru.get_or_load(&[k; 32], || Ok::<_, ()>((k, len)));
        }
        assert_eq!(
            lru.inspect(|l| (l.len(), l.bytes())),
            Some((2, 8)),
            "the byte bound"
        );
        assert!(
            lru.inspect(|l| l.peek(&[1; 32]).is_none()).expect("lock"),
            "LRU first out"
        );
    }

    /// A disk artifact with a valid tag that wasmer cannot load (another wasmer build under
    /// the same ARTIFACT_VERSION, or a bad disk) is recompiled. It used to be a compile
    /// error, which the runtime turned into a node halt on the next call.
    #[test]
    fn an_artifact_that_does_not_load_is_recompiled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let code = wat::parse_str(MODULE).expect("wat");
        let key = [7u8; 32];
        let cache = ModuleCache::new(Some(dir.path().to_path_buf()), 4).expect("cache");
        cache
            .write_disk(&key, b"not a wasmer artifact")
            .expect("write");
        assert!(cache.read_disk(&key).is_some(), "the tag checks out");
        let module = cache.get(&key, &code).expect("recompiled, not an error");
        assert!(module.exports().any(|e| e.name() == "call"));
        assert_eq!(cache.stats.compiles.load(Ordering::Relaxed), 1);
        assert_eq!(cache.stats.disk_hits.load(Ordering::Relaxed), 0);
        // The recompiled artifact replaced the bad one.
        cache.clear_memory();
        cache.get(&key, &code).expect("loads");
        assert_eq!(cache.stats.disk_hits.load(Ordering::Relaxed), 1);
    }
}
