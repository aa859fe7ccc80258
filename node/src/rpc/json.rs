//! The JSON shapes of INTERFACES.md: hex strings for bytes, 0x-prefixed quantities.

use keel_types::receipt::{
    ArchiveProofCode, CodeError, ExecError, FoldProofCode, HostArgument, ModuleLimit,
    ProofDecodeError, RequiredExport,
};
use keel_types::{Block, Hash, Height, Receipt, RevivalError, TxError, U256};
use serde_json::{json, Value};

pub fn qty(n: u64) -> String {
    format!("{n:#x}")
}

pub fn qty256(n: &U256) -> String {
    format!("{n:#x}")
}

pub fn bytes(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// The reason code of a transaction error, stable for clients to match on.
pub fn error_code(error: &TxError) -> &'static str {
    match error {
        TxError::WrongChainId { .. } => "wrong_chain_id",
        TxError::BadSignature => "bad_signature",
        TxError::BadNonce { .. } => "bad_nonce",
        TxError::InsufficientBalance { .. } => "insufficient_balance",
        TxError::IntrinsicGasTooLow { .. } => "intrinsic_gas_too_low",
        TxError::GasLimitTooHigh { .. } => "gas_limit_too_high",
        TxError::GasPriceTooLow { .. } => "gas_price_too_low",
        TxError::OutOfGas => "out_of_gas",
        TxError::Reverted => "reverted",
        TxError::NoContract { .. } => "no_contract",
        TxError::InvalidCode { .. } => "invalid_code",
        TxError::CallDepthExceeded => "call_depth_exceeded",
        TxError::Expired { .. } => "expired",
        TxError::InvalidRevival { .. } => "invalid_revival",
        TxError::Execution { .. } => "execution",
        TxError::PolicyDenied { .. } => "policy_denied",
        TxError::Registry { .. } => "registry",
    }
}

/// A policy denial's fields, as receipts and admission errors carry them.
pub fn denial_fields(denial: &keel_types::policy::PolicyDenial, out: &mut Value) {
    out["rule"] = json!(denial.rule.as_str());
    out["scope"] = json!(denial.scope.as_str());
    out["limit"] = json!(qty256(&denial.limit));
    out["used"] = json!(qty256(&denial.used));
    out["resets_at_epoch"] = json!(denial.resets_at_epoch);
    out["source"] = json!(denial.source.to_hex());
}

/// A receipt as `--wait` prints it. `block` is `None` for simulations.
pub fn receipt(r: &Receipt, block: Option<Height>) -> Value {
    json!({
        "tx_hash": r.tx_hash.to_hex(),
        "status": r.status.as_str(),
        "block": block,
        "gas_used": r.gas_used,
        "output": bytes(&r.output),
        "contract_address": r.contract_address.map(|a| a.to_hex()),
        "logs": r.logs.iter().map(|l| json!({
            "address": l.address.to_hex(),
            "topics": l.topics.iter().map(|t| bytes(t)).collect::<Vec<_>>(),
            "data": bytes(&l.data),
        })).collect::<Vec<_>>(),
        "error": r.error.as_ref().map(error),
    })
}

/// A receipt's error: its stable `code` and human `message`, plus the fields an agent acts
/// on without parsing text — the expired `key` and `expired_epoch`, a refused revival's
/// `reason`, and for errors with sub-codes a stable `detail` with its bounded numbers (an
/// `offset`, an import `index`, a `limit`, ...). docs/rpc.md lists them.
fn error(e: &TxError) -> Value {
    let mut out = json!({"code": error_code(e), "message": e.to_string()});
    match e {
        TxError::Expired { key, expired_epoch } => {
            out["key"] = json!(key.to_string());
            out["expired_epoch"] = json!(expired_epoch);
        }
        TxError::InvalidRevival { reason } => {
            out["reason"] = json!(revival_code(reason));
            revival_detail(reason, &mut out);
        }
        TxError::InvalidCode { code } => code_detail(code, &mut out),
        TxError::PolicyDenied { denial } => denial_fields(denial, &mut out),
        TxError::Registry { reason } => out["reason"] = json!(registry_code(reason)),
        TxError::Execution { code } => {
            out["detail"] = json!(exec_code(code));
            if let ExecError::WasmBadHostArgument { argument } = code {
                out["argument"] = json!(host_argument_code(argument));
            }
        }
        _ => {}
    }
    out
}

/// The stable code of a registry refusal.
pub fn registry_code(reason: &keel_types::RegistryError) -> &'static str {
    use keel_types::RegistryError as R;
    match reason {
        R::AlreadyRegistered => "already_registered",
        R::NotRegistered => "not_registered",
        R::NotOperator => "not_operator",
        R::BadPossession => "bad_possession",
        R::BelowMinStake { .. } => "below_min_stake",
        R::RegistryFull => "registry_full",
        R::Jailed => "jailed",
        R::Leaving => "leaving",
        R::NotEnoughStake { .. } => "not_enough_stake",
        R::UnbondingFull => "unbonding_full",
        R::NotEquivocation => "not_equivocation",
        R::BadP2pAddress => "bad_p2p_address",
        R::ZeroAmount => "zero_amount",
    }
}

/// `detail` and its numbers for a refused WASM module.
fn code_detail(code: &CodeError, out: &mut Value) {
    let (detail, fields) = match code {
        CodeError::Malformed { offset } => ("malformed", json!({ "offset": offset })),
        CodeError::TooLarge {
            len_bytes,
            max_bytes,
        } => (
            "too_large",
            json!({"len_bytes": len_bytes, "max_bytes": max_bytes}),
        ),
        CodeError::FloatsNotAllowed { offset } => {
            ("floats_not_allowed", json!({ "offset": offset }))
        }
        CodeError::DisallowedImport { index } => ("disallowed_import", json!({ "index": index })),
        CodeError::ImportSignature { index } => ("import_signature", json!({ "index": index })),
        CodeError::NonFunctionImport { index } => {
            ("non_function_import", json!({ "index": index }))
        }
        CodeError::LimitExceeded { limit, count, max } => (
            "limit_exceeded",
            json!({"limit": module_limit_code(limit), "count": count, "max": max}),
        ),
        CodeError::Memory { max_pages } => ("memory", json!({ "max_pages": max_pages })),
        CodeError::MissingExport { export } => (
            "missing_export",
            json!({ "export": required_export_code(export) }),
        ),
        CodeError::StartFunction => ("start_function", json!({})),
        CodeError::IfWithParamsWithoutElse { offset } => {
            ("if_with_params_without_else", json!({ "offset": offset }))
        }
        CodeError::CompileFailed => ("compile_failed", json!({})),
        CodeError::BadDeployInput => ("bad_deploy_input", json!({})),
    };
    out["detail"] = json!(detail);
    if let (Value::Object(out), Value::Object(fields)) = (out, fields) {
        out.extend(fields);
    }
}

/// `detail` (and its numbers) for the revival refusals that have sub-codes.
fn revival_detail(reason: &RevivalError, out: &mut Value) {
    match reason {
        RevivalError::Malformed { code } => {
            out["detail"] = json!(decode_code(code));
            if let ProofDecodeError::UnknownVersion { got } = code {
                out["version"] = json!(got);
            }
        }
        RevivalError::BadProof { sealed_epoch, code } => {
            out["detail"] = json!(archive_proof_code(code));
            out["sealed_epoch"] = json!(sealed_epoch);
        }
        RevivalError::BadFoldProof { page, code } => {
            out["detail"] = json!(fold_proof_code(code));
            out["page"] = json!(page);
            if let FoldProofCode::LeafPath { code } = code {
                out["path"] = json!(archive_proof_code(code));
            }
        }
        _ => {}
    }
}

/// Stable codes of refused revivals (`error.reason` in a receipt).
pub fn revival_code(reason: &RevivalError) -> &'static str {
    match reason {
        RevivalError::Malformed { .. } => "malformed",
        RevivalError::ExpiryOff => "expiry_off",
        RevivalError::AlreadyLive { .. } => "already_live",
        RevivalError::NotExpired { .. } => "not_expired",
        RevivalError::StaleVersion { .. } => "stale_version",
        RevivalError::UnsealedEpoch { .. } => "unsealed_epoch",
        RevivalError::BadProof { .. } => "bad_proof",
        RevivalError::BadFoldProof { .. } => "bad_fold_proof",
        RevivalError::Archived { .. } => "archived",
    }
}

/// Stable codes of execution failures (`error.detail` of `execution`).
pub fn exec_code(code: &ExecError) -> &'static str {
    match code {
        ExecError::WasmUnreachable => "wasm_unreachable",
        ExecError::WasmMemoryOutOfBounds => "wasm_memory_out_of_bounds",
        ExecError::WasmTableOutOfBounds => "wasm_table_out_of_bounds",
        ExecError::WasmIndirectCallToNull => "wasm_indirect_call_to_null",
        ExecError::WasmBadSignature => "wasm_bad_signature",
        ExecError::WasmIntegerOverflowOrDivideByZero => "wasm_integer_overflow_or_divide_by_zero",
        ExecError::WasmStaticStateChange => "wasm_static_state_change",
        ExecError::WasmBadHostArgument { .. } => "wasm_bad_host_argument",
        ExecError::WasmInstantiate => "wasm_instantiate",
        ExecError::WasmCompileFailed => "wasm_compile_failed",
        ExecError::WasmOther => "wasm_trap",
        ExecError::OpcodeNotFound => "opcode_not_found",
        ExecError::InvalidFEOpcode => "invalid_fe_opcode",
        ExecError::InvalidJump => "invalid_jump",
        ExecError::NotActivated => "not_activated",
        ExecError::StackUnderflow => "stack_underflow",
        ExecError::StackOverflow => "stack_overflow",
        ExecError::OutOfOffset => "out_of_offset",
        ExecError::CreateCollision => "create_collision",
        ExecError::PrecompileError => "precompile_error",
        ExecError::NonceOverflow => "nonce_overflow",
        ExecError::CreateContractSizeLimit => "create_contract_size_limit",
        ExecError::CreateContractStartingWithEF => "create_contract_starting_with_ef",
        ExecError::CreateInitCodeSizeLimit => "create_initcode_size_limit",
        ExecError::OverflowPayment => "overflow_payment",
        ExecError::StateChangeDuringStaticCall => "state_change_during_static_call",
        ExecError::CallNotAllowedInsideStatic => "call_not_allowed_inside_static",
        ExecError::OutOfFunds => "out_of_funds",
        ExecError::InvalidTransaction => "invalid_transaction",
    }
}

fn host_argument_code(argument: &HostArgument) -> &'static str {
    match argument {
        HostArgument::LengthOverLimit => "length_over_limit",
        HostArgument::NegativeLength => "negative_length",
        HostArgument::TooManyTopics => "too_many_topics",
        HostArgument::ReturnDataOutOfBounds => "return_data_out_of_bounds",
    }
}

fn module_limit_code(limit: &ModuleLimit) -> &'static str {
    match limit {
        ModuleLimit::Functions => "functions",
        ModuleLimit::TableElements => "table_elements",
        ModuleLimit::Globals => "globals",
        ModuleLimit::DataSegments => "data_segments",
        ModuleLimit::DataBytes => "data_bytes",
        ModuleLimit::LocalsPerFunction => "locals_per_function",
        ModuleLimit::OperandStackPerFunction => "operand_stack_per_function",
    }
}

fn required_export_code(export: &RequiredExport) -> &'static str {
    match export {
        RequiredExport::Call => "call",
        RequiredExport::Deploy => "deploy",
        RequiredExport::Memory => "memory",
    }
}

fn decode_code(code: &ProofDecodeError) -> &'static str {
    match code {
        ProofDecodeError::Empty => "empty",
        ProofDecodeError::TooLarge => "too_large",
        ProofDecodeError::UnknownVersion { .. } => "unknown_version",
        ProofDecodeError::Truncated => "truncated",
        ProofDecodeError::TrailingBytes => "trailing_bytes",
        ProofDecodeError::Malformed => "malformed",
        ProofDecodeError::FieldTooLarge => "field_too_large",
        ProofDecodeError::InvalidField => "invalid_field",
    }
}

fn archive_proof_code(code: &ArchiveProofCode) -> &'static str {
    match code {
        ArchiveProofCode::OutOfRange => "out_of_range",
        ArchiveProofCode::Shape => "shape",
        ArchiveProofCode::RootMismatch => "root_mismatch",
    }
}

fn fold_proof_code(code: &FoldProofCode) -> &'static str {
    match code {
        FoldProofCode::NoSuchPage => "no_such_page",
        FoldProofCode::WrongVersion => "wrong_version",
        FoldProofCode::LeafPath { .. } => "leaf_path",
        FoldProofCode::NotBracketing => "not_bracketing",
        FoldProofCode::MissingAbsence => "missing_absence",
        FoldProofCode::ExtraAbsence => "extra_absence",
    }
}

/// A block header, its post-state root, and its transaction hashes.
pub fn block(b: &Block, state_root: Hash) -> Value {
    let h = &b.header;
    json!({
        "height": h.height,
        "hash": b.hash().to_hex(),
        "parent_hash": h.parent_hash.to_hex(),
        "epoch": h.epoch,
        "view": h.view,
        "timestamp_ms": h.timestamp_ms,
        "proposer": h.proposer.to_hex(),
        "tx_root": h.tx_root.to_hex(),
        "parent_state_root": h.parent_state_root.to_hex(),
        "parent_receipts_root": h.parent_receipts_root.to_hex(),
        "archive_root": h.archive_root.to_hex(),
        "state_root": state_root.to_hex(),
        "transactions": b.transactions.iter().map(|t| t.hash().to_hex()).collect::<Vec<_>>(),
    })
}
