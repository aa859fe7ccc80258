//! Every bound the WASM environment enforces, in one place (docs/wasm-host-api.md repeats them).
//!
//! The numbers are chosen so that the worst case of each is cheap next to the gas it costs, and
//! so that the native stack a frame can use is bounded by construction (see `stack_budget`).

/// Largest accepted module, in bytes (the same cap as any contract code).
pub const MAX_MODULE_BYTES: usize = keel_types::limits::MAX_CODE_BYTES;
/// Functions defined or imported by one module.
pub const MAX_FUNCTIONS: u32 = 4_096;
/// Locals (parameters included) of one function.
pub const MAX_LOCALS_PER_FUNCTION: u32 = 256;
/// Operand stack height one function may reach, computed at validation.
pub const MAX_OPERAND_STACK_PER_FUNCTION: u32 = 512;
/// Module-defined globals.
pub const MAX_GLOBALS: u32 = 256;
/// Elements of the one table (for `call_indirect`).
pub const MAX_TABLE_ELEMENTS: u64 = 4_096;
/// Linear memory pages (64 KiB each) a module may declare as its maximum: 2 MiB.
/// A module must declare a maximum; `memory.grow` past it returns -1 as the spec says.
pub const MAX_MEMORY_PAGES: u64 = 32;
/// Nested WASM function calls inside one frame (direct and indirect). The call-depth
/// middleware traps past this, long before the native stack could overflow.
pub const MAX_CALL_DEPTH: u32 = 512;
/// Native stack each WASM frame runs on. Worst case per nested call is
/// (256 locals + 512 operands) × 8 bytes + ~256 bytes of frame overhead ≈ 6.4 KiB, so 512
/// nested calls need ≈ 3.3 MiB; 8 MiB leaves more than a 2× margin.
pub const WASM_STACK_BYTES: usize = 8 << 20;
/// Data segments and their total size (they are copied into memory at every instantiation).
pub const MAX_DATA_SEGMENTS: u32 = 256;
pub const MAX_DATA_BYTES: u64 = 256 * 1024;
/// Largest input, return data or log data a frame may copy through the host API.
pub const MAX_IO_BYTES: u32 = keel_types::limits::MAX_TX_BYTES as u32;
/// Topics per log, as in the EVM.
pub const MAX_LOG_TOPICS: u32 = 4;
/// Modules kept compiled in memory; the on-disk cache is bounded only by the code in state.
pub const MODULE_CACHE_ENTRIES: usize = 1_024;
/// Nested frames that run WASM inside one transaction (each takes a native stack); an
/// EVM-only call chain keeps the EVM's 1024.
pub const MAX_WASM_FRAME_DEPTH: usize = 64;
/// Most jurisdiction codes `caller_tags` returns: an account holds at most this many tags
/// (`keel_types::jurisdiction::MAX_TAGS_PER_ACCOUNT`).
pub const MAX_CALLER_TAGS: usize = keel_types::jurisdiction::MAX_TAGS_PER_ACCOUNT;
