//! Deploy-time validation: a module is accepted only if it is small, float-free, declares a
//! bounded memory, imports nothing but the documented host API and exports the entry point.
//!
//! Everything here runs on untrusted bytes, so every failure is a typed [`ValidationError`];
//! nothing panics and nothing is compiled before the whole module has passed.

use crate::host_api::{import_signature, CONSTRUCTOR, ENTRY_POINT, HOST_MODULE, MEMORY_EXPORT};
use crate::limits::*;
use keel_types::receipt::{CodeError, ModuleLimit, RequiredExport};
use wasmparser::{
    ExternalKind, FuncType, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures,
};

/// Why a module was refused at deploy. The human text (wasmparser's message, the import's
/// names) is for logs and tools; what reaches a receipt is [`ValidationError::code`], which
/// keeps only keel's own code and bounded numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("module is {len_bytes} bytes, the limit is {max_bytes}")]
    TooLarge { len_bytes: usize, max_bytes: usize },
    #[error("not a valid WASM module: {message} (offset {offset})")]
    Malformed { offset: u64, message: String },
    #[error("float instructions and types are not allowed (offset {offset})")]
    FloatsNotAllowed { offset: u64 },
    #[error("import #{index} {module}.{name} is not part of the host API")]
    DisallowedImport {
        index: u32,
        module: String,
        name: String,
    },
    #[error("import #{index} {module}.{name} has the wrong signature")]
    ImportSignature {
        index: u32,
        module: String,
        name: String,
    },
    #[error("only function imports are allowed (import #{index} {module}.{name})")]
    NonFunctionImport {
        index: u32,
        module: String,
        name: String,
    },
    #[error("{what}: {count} exceeds the limit {max}")]
    LimitExceeded {
        what: ModuleLimit,
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

impl ValidationError {
    /// The code a receipt carries: keel's own, with bounded numbers and no text.
    pub fn code(&self) -> CodeError {
        match self {
            ValidationError::TooLarge {
                len_bytes,
                max_bytes,
            } => CodeError::TooLarge {
                len_bytes: *len_bytes as u64,
                max_bytes: *max_bytes as u64,
            },
            ValidationError::Malformed { offset, .. } => CodeError::Malformed { offset: *offset },
            ValidationError::FloatsNotAllowed { offset } => {
                CodeError::FloatsNotAllowed { offset: *offset }
            }
            ValidationError::DisallowedImport { index, .. } => {
                CodeError::DisallowedImport { index: *index }
            }
            ValidationError::ImportSignature { index, .. } => {
                CodeError::ImportSignature { index: *index }
            }
            ValidationError::NonFunctionImport { index, .. } => {
                CodeError::NonFunctionImport { index: *index }
            }
            ValidationError::LimitExceeded { what, count, max } => CodeError::LimitExceeded {
                limit: *what,
                count: *count,
                max: *max,
            },
            ValidationError::Memory { max_pages } => CodeError::Memory {
                max_pages: *max_pages,
            },
            ValidationError::MissingExport(name) => CodeError::MissingExport {
                export: match *name {
                    CONSTRUCTOR => RequiredExport::Deploy,
                    MEMORY_EXPORT => RequiredExport::Memory,
                    _ => RequiredExport::Call,
                },
            },
            ValidationError::StartFunction => CodeError::StartFunction,
            ValidationError::IfWithParamsWithoutElse { offset } => {
                CodeError::IfWithParamsWithoutElse { offset: *offset }
            }
        }
    }
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
    ValidationError::Malformed {
        offset: e.offset(),
        message: e.message().to_string(),
    }
}

/// Whether wasmparser's refusal at `offset` is due to floats: the same module validates past
/// that offset once floats are enabled. Decided by what the module is, not by the wording of
/// wasmparser's message, which may change with any version (and would then fork the code
/// in receipts).
fn refused_for_floats(code: &[u8], offset: u64) -> bool {
    let mut with_floats = Validator::new_with_features(features() | WasmFeatures::FLOATS);
    match with_floats.validate_all(code) {
        Ok(_) => true,
        Err(e) => e.offset() > offset,
    }
}

fn limit(what: ModuleLimit, count: u64, max: u64) -> Result<(), ValidationError> {
    if count > max {
        return Err(ValidationError::LimitExceeded { what, count, max });
    }
    Ok(())
}

fn is_float(t: &ValType) -> bool {
    matches!(t, ValType::F32 | ValType::F64)
}

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

/// Validate a module for deployment.
pub fn validate(code: &[u8]) -> Result<ModuleFacts, ValidationError> {
    match validate_module(code) {
        Err(ValidationError::Malformed { offset, .. }) if refused_for_floats(code, offset) => {
            Err(ValidationError::FloatsNotAllowed { offset })
        }
        other => other,
    }
}

fn validate_module(code: &[u8]) -> Result<ModuleFacts, ValidationError> {
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
    // An import of a type index that does not exist, at this section offset.
    let mut unknown_type: Option<u64> = None;

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
                // Imports are named by their position: the names are the module's own text,
                // which must not reach a receipt.
                for (index, import) in (0u32..).zip(reader.clone().into_imports()) {
                    let import = import.map_err(malformed)?;
                    let (module, name) = (import.module.to_string(), import.name.to_string());
                    let TypeRef::Func(type_index) = import.ty else {
                        return Err(ValidationError::NonFunctionImport {
                            index,
                            module,
                            name,
                        });
                    };
                    let Some(expected) = (module == HOST_MODULE)
                        .then(|| import_signature(&name))
                        .flatten()
                    else {
                        return Err(ValidationError::DisallowedImport {
                            index,
                            module,
                            name,
                        });
                    };
                    let Some(actual) = types.get(type_index as usize) else {
                        // wasmparser's validator refuses the section just below, at the
                        // import's own offset (which decides the float question too).
                        unknown_type = Some(reader.range().start);
                        break;
                    };
                    if actual.params() != expected.0 || actual.results() != expected.1 {
                        return Err(ValidationError::ImportSignature {
                            index,
                            module,
                            name,
                        });
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
                    ModuleLimit::Functions,
                    u64::from(imported_functions + defined_functions),
                    u64::from(MAX_FUNCTIONS),
                )?;
            }
            Payload::TableSection(reader) => {
                for table in reader.clone() {
                    let table = table.map_err(malformed)?;
                    let max = table.ty.maximum.unwrap_or(u64::MAX);
                    limit(
                        ModuleLimit::TableElements,
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
                limit(
                    ModuleLimit::Globals,
                    u64::from(reader.count()),
                    u64::from(MAX_GLOBALS),
                )?;
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
                    ModuleLimit::DataSegments,
                    u64::from(reader.count()),
                    u64::from(MAX_DATA_SEGMENTS),
                )?;
                let mut total = 0u64;
                for data in reader.clone() {
                    total += data.map_err(malformed)?.data.len() as u64;
                }
                limit(ModuleLimit::DataBytes, total, MAX_DATA_BYTES)?;
            }
            _ => {}
        }
        let valid = validator.payload(&payload).map_err(malformed)?;
        if let Some(offset) = unknown_type {
            return Err(ValidationError::Malformed {
                offset,
                message: "import of an unknown type".into(),
            });
        }
        if let wasmparser::ValidPayload::Func(to_validate, body) = valid {
            let mut func = to_validate.into_validator(std::mem::take(&mut allocs));
            let mut locals = body.get_binary_reader();
            locals.set_features(features());
            func.read_locals(&mut locals).map_err(malformed)?;
            limit(
                ModuleLimit::LocalsPerFunction,
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
                ModuleLimit::OperandStackPerFunction,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(wat: &str) -> CodeError {
        let bytes = wat::parse_str(wat).expect("wat");
        validate(&bytes).expect_err("refused").code()
    }

    #[test]
    fn floats_are_told_apart_by_the_module_not_by_wasmparser_text() {
        let body = |f: &str| {
            format!(
                r#"(module (memory (export "memory") 1 1)
                  (func (export "call") (param i32) (result i32) {f}))"#
            )
        };
        for f in [
            "(i32.reinterpret_f32 (f32.const 1))",
            "(local f64) (i32.const 0)",
            "(drop (f64.const 0)) (i32.const 0)",
        ] {
            assert!(
                matches!(code_of(&body(f)), CodeError::FloatsNotAllowed { .. }),
                "{f}"
            );
        }
        // A type error that has nothing to do with floats stays malformed.
        assert!(matches!(
            code_of(&body("(i64.const 0)")),
            CodeError::Malformed { .. }
        ));
    }

    #[test]
    fn codes_name_imports_by_position_and_keep_no_text() {
        let name = "\u{1D11E}".repeat(900);
        let wat = format!(
            r#"(module
              (import "keel" "caller" (func (param i32)))
              (import "keel" "{name}" (func))
              (memory (export "memory") 1 1)
              (func (export "call") (param i32) (result i32) (i32.const 0)))"#
        );
        let bytes = wat::parse_str(&wat).expect("wat");
        let error = validate(&bytes).expect_err("refused");
        // The human text keeps the name (for logs); the code does not.
        assert!(error.to_string().contains(&name));
        assert_eq!(error.code(), CodeError::DisallowedImport { index: 1 });
        let duplicate = format!(
            r#"(module (memory (export "memory") 1 1)
              (func $f (param i32) (result i32) (i32.const 0))
              (export "call" (func $f)) (export "{name}" (func $f)) (export "{name}" (func $f)))"#
        );
        assert!(matches!(code_of(&duplicate), CodeError::Malformed { .. }));
    }
}
