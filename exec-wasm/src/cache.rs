//! Compilation and the compiled-module cache (memory, then disk, then compile).
//!
//! Every module is compiled once with singlepass plus the keel middlewares, serialized, and
//! from then on only ever *loaded* into the shared headless engine: a cold call (compile then
//! load) and a warm call (load from memory or disk) run the very same artifact bytes, so
//! warm and cold results cannot differ. The disk copy lets a restarted node skip compiling
//! everything again, as Stylus' activation does.

use crate::meter::keel_middlewares;
use crate::validate::{validate, ValidationError};
use keel_types::receipt::CodeError;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
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
}

/// Compiles and caches modules by code hash.
#[derive(Debug)]
pub struct ModuleCache {
    engine: Engine,
    dir: Option<PathBuf>,
    memory: Mutex<BTreeMap<[u8; 32], (Module, u64)>>,
    clock: AtomicU64,
    capacity: usize,
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
    pub fn new(dir: Option<PathBuf>, capacity: usize) -> Result<ModuleCache, CacheError> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|e| CacheError::Io(e.to_string()))?;
        }
        wasmer_vm::set_stack_size(crate::limits::WASM_STACK_BYTES);
        Ok(ModuleCache {
            engine: <Engine as NativeEngineExt>::headless(),
            dir,
            memory: Mutex::new(BTreeMap::new()),
            clock: AtomicU64::new(0),
            capacity: capacity.max(1),
            stats: CacheStats::default(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn path(&self, key: &[u8; 32]) -> Option<PathBuf> {
        let name: String = key.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.as_ref().map(|d| d.join(format!("{name}.wasmer")))
    }

    fn load(&self, artifact: &[u8]) -> Result<Module, CacheError> {
        // SAFETY: `Module::deserialize` trusts its input to be an artifact wasmer produced.
        // Every byte string passed here either comes straight from `compile_artifact` in this
        // process or from a cache file whose keyed blake3 tag (over version, code hash and
        // artifact) was checked just before; anything else is recompiled instead.
        #[allow(unsafe_code)]
        let module = unsafe { Module::deserialize(&self.engine, artifact.to_vec()) };
        // The artifact is one this build produced: failing to load it is the machine's
        // problem (memory for the code pages), not the module's.
        module.map_err(|e| CacheError::Resource(e.to_string()))
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
        // Write then rename, so a crash never leaves a torn file under the final name.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &file).map_err(|e| CacheError::Io(e.to_string()))?;
        std::fs::rename(&tmp, &path).map_err(|e| CacheError::Io(e.to_string()))
    }

    /// The runnable module for `code`, whose code hash is `key`.
    pub fn get(&self, key: &[u8; 32], code: &[u8]) -> Result<Module, CacheError> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut memory) = self.memory.lock() {
            if let Some((module, used)) = memory.get_mut(key) {
                *used = tick;
                self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(module.clone());
            }
        }
        // A disk artifact that does not load (say, written by another wasmer under the same
        // ARTIFACT_VERSION) is recompiled rather than failing the call.
        let from_disk = self
            .read_disk(key)
            .and_then(|artifact| match self.load(&artifact) {
                Ok(module) => Some(module),
                Err(e) => {
                    tracing::warn!(error = %e, "cached WASM artifact does not load; recompiling");
                    None
                }
            });
        let module = match from_disk {
            Some(module) => {
                self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                module
            }
            None => {
                let artifact = compile_artifact(code)?;
                self.stats.compiles.fetch_add(1, Ordering::Relaxed);
                self.write_disk(key, &artifact)?;
                self.load(&artifact)?
            }
        };
        if let Ok(mut memory) = self.memory.lock() {
            if memory.len() >= self.capacity {
                // Evict the least recently used entry (ties cannot happen: ticks are unique).
                if let Some(oldest) = memory
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(k, _)| *k)
                {
                    memory.remove(&oldest);
                }
            }
            memory.insert(*key, (module.clone(), tick));
        }
        Ok(module)
    }

    /// Drop the in-memory entries (tests use this to force the disk path).
    pub fn clear_memory(&self) {
        if let Ok(mut memory) = self.memory.lock() {
            memory.clear();
        }
    }
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
