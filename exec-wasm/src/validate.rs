//! Deploy-time validation: a module is accepted only if it is small, float-free, declares a
//! bounded memory, imports nothing but the documented host API and exports the entry point.
//!
//! Everything here runs on untrusted bytes, so every failure is a typed [`ValidationError`];
//! nothing panics and nothing is compiled before the whole module has passed.

use crate::host_api::{import_signature, CONSTRUCTOR, ENTRY_POINT, HOST_MODULE, MEMORY_EXPORT};
use crate::limits::*;
use wasmparser::{
    ExternalKind, FuncType, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures,
};

/// Why a module was refused at deploy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("module is {len_bytes} bytes, the limit is {max_bytes}")]
    TooLarge { len_bytes: usize, max_bytes: usize },
    #[error("not a valid WASM module: {0}")]
    Malformed(String),
    #[error("float instructions and types are not allowed (offset {offset})")]
    FloatsNotAllowed { offset: u64 },
    #[error("import {module}.{name} is not part of the host API")]
    DisallowedImport { module: String, name: String },
    #[error("import {module}.{name} has the wrong signature")]
    ImportSignature { module: String, name: String },
    #[error("only function imports are allowed ({module}.{name})")]
    NonFunctionImport { module: String, name: String },
    #[error("{what}: {count} exceeds the limit {max}")]
    LimitExceeded {
        what: &'static str,
        count: u64,
        max: u64,
    },
    #[error(
        "the module must define exactly one memory with a declared maximum <= {max_pages} pages"
    )]
    Memory { max_pages: u64 },
    #[error("missing or mistyped export `{0}` (must be a function (i32) -> i32, or the memory)")]
    MissingExport(&'static str),
    #[error("start functions are not allowed (they would run outside any call frame)")]
    StartFunction,
    #[error("an `if` with block parameters needs an explicit `else` (offset {offset}): wasmer's singlepass compiler miscompiles the implicit one")]
    IfWithParamsWithoutElse { offset: u64 },
}

/// What validation learned about an accepted module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFacts {
    pub functions: u32,
    pub max_locals: u32,
    pub max_operand_stack: u32,
    pub memory_max_pages: u64,
}

/// The WASM features keel accepts: the MVP without floats, plus mutable globals, sign
/// extension and multi-value. No SIMD, threads, bulk memory (its cost is not per operator),
/// reference types, tail calls, exceptions, memory64 or GC.
pub fn features() -> WasmFeatures {
    WasmFeatures::MUTABLE_GLOBAL | WasmFeatures::SIGN_EXTENSION | WasmFeatures::MULTI_VALUE
}

fn malformed(e: wasmparser::BinaryReaderError) -> ValidationError {
    // wasmparser's float rejection is a plain message; keep it typed for callers.
    if e.message().contains("floating-point") {
        ValidationError::FloatsNotAllowed { offset: e.offset() }
    } else {
        ValidationError::Malformed(format!("{} (offset {})", e.message(), e.offset()))
    }
}

fn limit(what: &'static str, count: u64, max: u64) -> Result<(), ValidationError> {
    if count > max {
        return Err(ValidationError::LimitExceeded { what, count, max });
    }
    Ok(())
}

fn is_float(t: &ValType) -> bool {
    matches!(t, ValType::F32 | ValType::F64)
}

/// Validate a module for deployment.
/// Found by the reference differential (exec-wasm/tests/reference_diff.rs, wasm-smith seed 1):
/// wasmer 7.4's singlepass compiles `if (param …) … end` without an `else` wrongly — the
/// implicit else must pass the parameters through, and singlepass loses them (a later
/// memory access then traps where cranelift and wasmi run on). With an explicit `else` the
/// code is correct, so such modules are refused at deploy with a typed error rather than run
/// with semantics that differ from the WASM spec. C, Rust and AssemblyScript toolchains do
/// not emit block parameters; hand-written or multi-value-optimised code can add the `else`.
fn check_if_params(
    op: &wasmparser::Operator<'_>,
    offset: u64,
    types: &[FuncType],
    frames: &mut Vec<Option<u64>>,
) -> Result<(), ValidationError> {
    use wasmparser::{BlockType, Operator};
    match op {
        Operator::Block { .. } | Operator::Loop { .. } => frames.push(None),
        Operator::If { blockty } => {
            let has_params = match blockty {
                BlockType::FuncType(index) => types
                    .get(*index as usize)
                    .is_some_and(|t| !t.params().is_empty()),
                BlockType::Empty | BlockType::Type(_) => false,
            };
            frames.push(has_params.then_some(offset));
        }
        Operator::Else => {
            if let Some(top) = frames.last_mut() {
                *top = None;
            }
        }
        Operator::End => {
            if let Some(Some(offset)) = frames.pop() {
                return Err(ValidationError::IfWithParamsWithoutElse { offset });
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn validate(code: &[u8]) -> Result<ModuleFacts, ValidationError> {
    if code.len() > MAX_MODULE_BYTES {
        return Err(ValidationError::TooLarge {
            len_bytes: code.len(),
            max_bytes: MAX_MODULE_BYTES,
        });
    }
    let mut validator = Validator::new_with_features(features());
    let mut types: Vec<FuncType> = Vec::new();
    let mut imported_functions = 0u32;
    let mut defined_functions = 0u32;
    let mut memories: Vec<wasmparser::MemoryType> = Vec::new();
    let mut entry_ok = false;
    let mut memory_export_ok = false;
    let mut func_type_of: Vec<u32> = Vec::new();
    let mut max_locals = 0u32;
    let mut max_operand_stack = 0u32;
    let mut allocs = wasmparser::FuncValidatorAllocations::default();
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();

    for payload in Parser::new(0).parse_all(code) {
        let payload = payload.map_err(malformed)?;
        match &payload {
            Payload::TypeSection(reader) => {
                for group in reader.clone() {
                    let group = group.map_err(malformed)?;
                    for sub in group.into_types() {
                        if let wasmparser::CompositeInnerType::Func(f) = &sub.composite_type.inner {
                            if f.params().iter().chain(f.results()).any(is_float) {
                                return Err(ValidationError::FloatsNotAllowed {
                                    offset: reader.range().start,
                                });
                            }
                            types.push(f.clone());
                        }
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    let import = import.map_err(malformed)?;
                    let (module, name) = (import.module.to_string(), import.name.to_string());
                    let TypeRef::Func(type_index) = import.ty else {
                        return Err(ValidationError::NonFunctionImport { module, name });
                    };
                    let expected = (module == HOST_MODULE)
                        .then(|| import_signature(&name))
                        .flatten()
                        .ok_or_else(|| ValidationError::DisallowedImport {
                            module: module.clone(),
                            name: name.clone(),
                        })?;
                    let actual = types
                        .get(type_index as usize)
                        .ok_or_else(|| ValidationError::Malformed("bad type index".into()))?;
                    if actual.params() != expected.0 || actual.results() != expected.1 {
                        return Err(ValidationError::ImportSignature { module, name });
                    }
                    imported_functions += 1;
                    func_type_of.push(type_index);
                }
            }
            Payload::FunctionSection(reader) => {
                for type_index in reader.clone() {
                    func_type_of.push(type_index.map_err(malformed)?);
                    defined_functions += 1;
                }
                limit(
                    "functions",
                    u64::from(imported_functions + defined_functions),
                    u64::from(MAX_FUNCTIONS),
                )?;
            }
            Payload::TableSection(reader) => {
                for table in reader.clone() {
                    let table = table.map_err(malformed)?;
                    let max = table.ty.maximum.unwrap_or(u64::MAX);
                    limit(
                        "table elements",
                        table.ty.initial.max(max),
                        MAX_TABLE_ELEMENTS,
                    )?;
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader.clone() {
                    memories.push(memory.map_err(malformed)?);
                }
            }
            Payload::GlobalSection(reader) => {
                limit("globals", u64::from(reader.count()), u64::from(MAX_GLOBALS))?;
                for global in reader.clone() {
                    if is_float(&global.map_err(malformed)?.ty.content_type) {
                        return Err(ValidationError::FloatsNotAllowed {
                            offset: reader.range().start,
                        });
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export.map_err(malformed)?;
                    exports.push((export.name.to_string(), export.kind, export.index));
                }
            }
            Payload::StartSection { .. } => return Err(ValidationError::StartFunction),
            Payload::DataSection(reader) => {
                limit(
                    "data segments",
                    u64::from(reader.count()),
                    u64::from(MAX_DATA_SEGMENTS),
                )?;
                let mut total = 0u64;
                for data in reader.clone() {
                    total += data.map_err(malformed)?.data.len() as u64;
                }
                limit("data bytes", total, MAX_DATA_BYTES)?;
            }
            _ => {}
        }
        if let wasmparser::ValidPayload::Func(to_validate, body) =
            validator.payload(&payload).map_err(malformed)?
        {
            let mut func = to_validate.into_validator(std::mem::take(&mut allocs));
            let mut locals = body.get_binary_reader();
            locals.set_features(features());
            func.read_locals(&mut locals).map_err(malformed)?;
            limit(
                "locals in one function",
                u64::from(func.len_locals()),
                u64::from(MAX_LOCALS_PER_FUNCTION),
            )?;
            max_locals = max_locals.max(func.len_locals());
            let mut reader = wasmparser::OperatorsReader::new(locals);
            let mut height = 0u32;
            // Per open control frame: `Some(offset)` for an `if` with block parameters that
            // has not reached its `else` yet (see `IfWithParamsWithoutElse`).
            let mut frames: Vec<Option<u64>> = Vec::new();
            while !reader.eof() {
                let offset = reader.original_position();
                let op = reader.read().map_err(malformed)?;
                func.op(offset, &op).map_err(malformed)?;
                height = height.max(func.operand_stack_height());
                check_if_params(&op, offset, &types, &mut frames)?;
            }
            reader.finish().map_err(malformed)?;
            limit(
                "operand stack height in one function",
                u64::from(height),
                u64::from(MAX_OPERAND_STACK_PER_FUNCTION),
            )?;
            max_operand_stack = max_operand_stack.max(height);
            allocs = func.into_allocations();
        }
    }

    let [memory] = memories.as_slice() else {
        return Err(ValidationError::Memory {
            max_pages: MAX_MEMORY_PAGES,
        });
    };
    match memory.maximum {
        Some(max) if max <= MAX_MEMORY_PAGES && memory.initial <= max && !memory.shared => {}
        _ => {
            return Err(ValidationError::Memory {
                max_pages: MAX_MEMORY_PAGES,
            })
        }
    }
    for (name, kind, index) in &exports {
        if name == ENTRY_POINT && *kind == ExternalKind::Func {
            let sig = func_type_of
                .get(*index as usize)
                .and_then(|t| types.get(*t as usize));
            entry_ok =
                sig.is_some_and(|f| f.params() == [ValType::I32] && f.results() == [ValType::I32]);
        }
        if name == CONSTRUCTOR {
            let sig = func_type_of
                .get(*index as usize)
                .and_then(|t| types.get(*t as usize));
            let ok = *kind == ExternalKind::Func
                && sig
                    .is_some_and(|f| f.params() == [ValType::I32] && f.results() == [ValType::I32]);
            if !ok {
                return Err(ValidationError::MissingExport(CONSTRUCTOR));
            }
        }
        if name == MEMORY_EXPORT && *kind == ExternalKind::Memory {
            memory_export_ok = true;
        }
    }
    if !entry_ok {
        return Err(ValidationError::MissingExport(ENTRY_POINT));
    }
    if !memory_export_ok {
        return Err(ValidationError::MissingExport(MEMORY_EXPORT));
    }
    Ok(ModuleFacts {
        functions: imported_functions + defined_functions,
        max_locals,
        max_operand_stack,
        memory_max_pages: memory.maximum.unwrap_or(0),
    })
}
