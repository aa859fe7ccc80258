//! Running one WASM call frame: instantiate, lend the host API, meter, classify the exit.
//!
//! A frame is a fresh `Store` and instance (WASM keeps no state between calls except through
//! storage), so nested frames — WASM → EVM → WASM — never share anything but the [`Host`].

use crate::host_api::{gas, HOST_MODULE};
use crate::limits::{MAX_CALL_DEPTH, MAX_IO_BYTES, MAX_LOG_TOPICS};
use crate::meter::{DEPTH_GLOBAL_EXPORT, INK_PER_GAS};
use keel_types::policy::SESSION_SCOPE_BYTES;
use keel_types::receipt::{ExecError, HostArgument};
use keel_types::TxError;
use std::ptr::NonNull;
use wasmer::{
    imports, Function, FunctionEnv, FunctionEnvMut, Global, Instance, Memory, Module, Store,
    TypedFunction, Value,
};

/// Export names wasmer-middlewares' `Metering` gives its two globals.
pub(crate) const INK_EXPORT: &str = "wasmer_metering_remaining_points";
pub(crate) const EXHAUSTED_EXPORT: &str = "wasmer_metering_points_exhausted";

/// What a frame knows about itself and its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameContext {
    pub address: [u8; 20],
    pub caller: [u8; 20],
    /// Call value, 32 bytes big-endian.
    pub value: [u8; 32],
    /// A static frame may not write storage, emit logs or send value.
    pub is_static: bool,
    pub block_height: u64,
    pub block_epoch: u64,
    pub block_timestamp_ms: u64,
    /// The session key that signed the transaction (docs/policies.md); zero if none.
    pub tx_session_key: [u8; 32],
}

/// A nested call a frame asks its host to make.
#[derive(Debug, Clone, Copy)]
pub struct CallRequest<'a> {
    pub to: [u8; 20],
    pub value: [u8; 32],
    pub input: &'a [u8],
    pub is_static: bool,
    /// Gas the callee may use at most; 0 means "all the rules allow".
    pub gas_requested: u64,
}

/// What a nested call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    pub success: bool,
    pub output: Vec<u8>,
    /// Everything the call cost the caller: access and value costs plus the callee's gas.
    pub gas_used: u64,
    /// Storage refunds the callee earned (only on success).
    pub refund: i64,
}

/// Gas effect of one storage write under EIP-2200/2929/3529.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCost {
    pub gas: u64,
    pub refund: i64,
}

/// A failure of the node, not of the contract: execution of the block must stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host failure: {0}")]
pub struct HostError(pub String);

/// The world as a WASM frame sees it. The runtime implements this over the same journal the
/// EVM uses, so both environments read and write one state.
pub trait Host {
    /// Slot value and its access cost in gas.
    fn storage_load(&mut self, slot: &[u8; 32]) -> Result<([u8; 32], u64), HostError>;
    /// Write a slot; `gas_left` is needed for EIP-2200's stipend rule.
    fn storage_store(
        &mut self,
        slot: &[u8; 32],
        value: &[u8; 32],
        gas_left: u64,
    ) -> Result<Option<StoreCost>, HostError>;
    fn emit_log(&mut self, topics: Vec<[u8; 32]>, data: Vec<u8>) -> Result<(), HostError>;
    /// Balance (32 bytes BE) and its access cost in gas.
    fn balance(&mut self, address: &[u8; 20]) -> Result<([u8; 32], u64), HostError>;
    /// Run a nested call into either environment with at most `gas_available` gas.
    fn call(
        &mut self,
        request: CallRequest<'_>,
        gas_available: u64,
    ) -> Result<CallResult, HostError>;
    /// The jurisdiction codes (ISO 3166-1 alpha-2, two ASCII bytes each) `caller` holds a
    /// live tag for, at most [`crate::limits::MAX_CALLER_TAGS`], and the reads' cost in gas.
    /// A host without jurisdiction tags has none.
    fn caller_tags(&mut self, caller: &[u8; 20]) -> Result<(Vec<[u8; 2]>, u64), HostError> {
        let _ = caller;
        Ok((Vec::new(), 0))
    }
    /// The scope of the session key that signed the transaction, as ABI words
    /// (`keel_types::policy::SessionScope::abi`; all zero if none signed). A host without
    /// session keys has none.
    fn tx_session_scope(&mut self) -> [u8; SESSION_SCOPE_BYTES] {
        [0; SESSION_SCOPE_BYTES]
    }
}

/// Why a frame stopped abnormally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrapKind {
    Unreachable,
    CallDepth,
    MemoryOutOfBounds,
    TableOutOfBounds,
    /// `call_indirect` through a table slot that holds no function.
    IndirectCallToNull,
    /// `call_indirect` to a function whose type differs from the expected one.
    BadSignature,
    IntegerOverflowOrDivideByZero,
    StackOverflow,
    StaticStateChange,
    BadHostArgument(HostArgument),
    /// The module could not be instantiated (wasmer's message, for diagnosis only).
    Instantiate(String),
    /// A deployed module that did not compile when called.
    CompileFailed,
    /// A trap keel does not classify further (wasmer's message, for diagnosis only).
    Other(String),
}

impl TrapKind {
    /// The error a receipt carries for a transaction that ended in this trap: keel's own
    /// code, never the text some variants keep for diagnosis.
    pub fn tx_error(&self) -> TxError {
        let code = match self {
            TrapKind::CallDepth | TrapKind::StackOverflow => return TxError::CallDepthExceeded,
            TrapKind::Unreachable => ExecError::WasmUnreachable,
            TrapKind::MemoryOutOfBounds => ExecError::WasmMemoryOutOfBounds,
            TrapKind::TableOutOfBounds => ExecError::WasmTableOutOfBounds,
            TrapKind::IndirectCallToNull => ExecError::WasmIndirectCallToNull,
            TrapKind::BadSignature => ExecError::WasmBadSignature,
            TrapKind::IntegerOverflowOrDivideByZero => ExecError::WasmIntegerOverflowOrDivideByZero,
            TrapKind::StaticStateChange => ExecError::WasmStaticStateChange,
            TrapKind::BadHostArgument(argument) => ExecError::WasmBadHostArgument {
                argument: *argument,
            },
            TrapKind::Instantiate(_) => ExecError::WasmInstantiate,
            TrapKind::CompileFailed => ExecError::WasmCompileFailed,
            TrapKind::Other(_) => ExecError::WasmOther,
        };
        TxError::Execution { code }
    }
}

/// How a frame ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Return,
    Revert,
    OutOfGas,
    Trap(TrapKind),
}

/// The result of one frame. Exceptional exits (out of gas, trap) consume all the frame's
/// gas, like the EVM's exceptional halts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub exit: Exit,
    pub output: Vec<u8>,
    pub gas_used: u64,
    pub refund: i64,
}

/// Non-local exits out of host functions.
#[derive(Debug, thiserror::Error)]
enum Abort {
    #[error("revert")]
    Revert,
    #[error("out of gas")]
    OutOfGas,
    #[error("trap")]
    Trap(TrapKind),
    #[error(transparent)]
    Host(HostError),
}

/// The host borrowed for the duration of one `execute`. wasmer's environments must be
/// `'static + Send`; the borrow is neither, so the frame keeps a raw pointer that it clears
/// before `execute` returns (the `Store` holding it is dropped in the same function).
struct HostPtr(NonNull<dyn Host + 'static>);
// SAFETY: a frame's store, instance and environment live and die on the thread that called
// `execute`; the pointer is never sent anywhere.
#[allow(unsafe_code)]
unsafe impl Send for HostPtr {}

struct Env {
    host: HostPtr,
    memory: Option<Memory>,
    ink: Option<Global>,
    exhausted: Option<Global>,
    ctx: FrameContext,
    input: Vec<u8>,
    output: Vec<u8>,
    return_data: Vec<u8>,
    refund: i64,
}

type Ctx<'a> = FunctionEnvMut<'a, Env>;

fn ink_left(env: &mut Ctx<'_>) -> u64 {
    let (data, mut store) = env.data_and_store_mut();
    match data.ink.as_ref().map(|g| g.get(&mut store)) {
        Some(Value::I64(v)) => v as u64,
        _ => 0,
    }
}

fn set_ink(env: &mut Ctx<'_>, ink: u64) {
    let (data, mut store) = env.data_and_store_mut();
    if let Some(g) = data.ink.as_ref() {
        // The global is typed i64 by the metering middleware; the set cannot fail.
        let _ = g.set(&mut store, Value::I64(ink as i64));
    }
}

fn gas_left(env: &mut Ctx<'_>) -> u64 {
    ink_left(env) / INK_PER_GAS
}

/// Charge `gas`, or stop the frame out of gas.
fn charge(env: &mut Ctx<'_>, gas: u64) -> Result<(), Abort> {
    let ink = gas.saturating_mul(INK_PER_GAS);
    let left = ink_left(env);
    if ink > left {
        set_ink(env, 0);
        return Err(Abort::OutOfGas);
    }
    set_ink(env, left - ink);
    Ok(())
}

fn host<'a>(env: &'a mut Ctx<'_>) -> &'a mut dyn Host {
    // SAFETY: the pointer was made from a `&mut dyn Host` that outlives this frame's store
    // (see `HostPtr`); host functions run one at a time on this thread, so no other
    // reference to the host exists while this one is used.
    #[allow(unsafe_code)]
    unsafe {
        &mut *env.data_mut().host.0.as_ptr()
    }
}

fn read(env: &mut Ctx<'_>, ptr: i32, len: u32) -> Result<Vec<u8>, Abort> {
    if len > MAX_IO_BYTES {
        return Err(Abort::Trap(TrapKind::BadHostArgument(
            HostArgument::LengthOverLimit,
        )));
    }
    let (data, store) = env.data_and_store_mut();
    let memory = data
        .memory
        .as_ref()
        .ok_or(Abort::Trap(TrapKind::MemoryOutOfBounds))?;
    let mut buf = vec![0u8; len as usize];
    memory
        .view(&store)
        .read(u64::from(ptr as u32), &mut buf)
        .map_err(|_| Abort::Trap(TrapKind::MemoryOutOfBounds))?;
    Ok(buf)
}

fn read_array<const N: usize>(env: &mut Ctx<'_>, ptr: i32) -> Result<[u8; N], Abort> {
    let bytes = read(env, ptr, N as u32)?;
    bytes
        .try_into()
        .map_err(|_| Abort::Trap(TrapKind::MemoryOutOfBounds))
}

fn write(env: &mut Ctx<'_>, ptr: i32, bytes: &[u8]) -> Result<(), Abort> {
    let (data, store) = env.data_and_store_mut();
    let memory = data
        .memory
        .as_ref()
        .ok_or(Abort::Trap(TrapKind::MemoryOutOfBounds))?;
    memory
        .view(&store)
        .write(u64::from(ptr as u32), bytes)
        .map_err(|_| Abort::Trap(TrapKind::MemoryOutOfBounds))
}

fn length(len: i32) -> Result<u32, Abort> {
    u32::try_from(len)
        .map_err(|_| Abort::Trap(TrapKind::BadHostArgument(HostArgument::NegativeLength)))
}

fn not_static(env: &mut Ctx<'_>) -> Result<(), Abort> {
    if env.data().ctx.is_static {
        return Err(Abort::Trap(TrapKind::StaticStateChange));
    }
    Ok(())
}

fn read_input(mut env: Ctx<'_>, ptr: i32) -> Result<(), Abort> {
    let input = std::mem::take(&mut env.data_mut().input);
    let result = charge(
        &mut env,
        gas::HOST_CALL_BASE + gas::copy(input.len() as u64),
    )
    .and_then(|()| write(&mut env, ptr, &input));
    env.data_mut().input = input;
    result
}

fn set_output(env: &mut Ctx<'_>, ptr: i32, len: i32) -> Result<(), Abort> {
    let len = length(len)?;
    charge(env, gas::HOST_CALL_BASE + gas::copy(u64::from(len)))?;
    let bytes = read(env, ptr, len)?;
    env.data_mut().output = bytes;
    Ok(())
}

fn return_data(mut env: Ctx<'_>, ptr: i32, len: i32) -> Result<(), Abort> {
    set_output(&mut env, ptr, len)
}

fn revert(mut env: Ctx<'_>, ptr: i32, len: i32) -> Result<(), Abort> {
    set_output(&mut env, ptr, len)?;
    Err(Abort::Revert)
}

fn storage_load(mut env: Ctx<'_>, key_ptr: i32, out_ptr: i32) -> Result<(), Abort> {
    charge(&mut env, gas::HOST_CALL_BASE)?;
    let slot = read_array::<32>(&mut env, key_ptr)?;
    let (value, cost) = host(&mut env).storage_load(&slot).map_err(Abort::Host)?;
    charge(&mut env, cost)?;
    write(&mut env, out_ptr, &value)
}

fn storage_store(mut env: Ctx<'_>, key_ptr: i32, value_ptr: i32) -> Result<(), Abort> {
    not_static(&mut env)?;
    charge(&mut env, gas::HOST_CALL_BASE)?;
    let slot = read_array::<32>(&mut env, key_ptr)?;
    let value = read_array::<32>(&mut env, value_ptr)?;
    let left = gas_left(&mut env);
    // `None`: EIP-2200's rule that a store needs more than the call stipend left.
    let cost = host(&mut env)
        .storage_store(&slot, &value, left)
        .map_err(Abort::Host)?
        .ok_or(Abort::OutOfGas)?;
    charge(&mut env, cost.gas)?;
    env.data_mut().refund += cost.refund;
    Ok(())
}

fn copy_out(mut env: Ctx<'_>, ptr: i32, bytes: &[u8]) -> Result<(), Abort> {
    charge(&mut env, gas::HOST_CALL_BASE)?;
    write(&mut env, ptr, bytes)
}

fn caller(env: Ctx<'_>, ptr: i32) -> Result<(), Abort> {
    let v = env.data().ctx.caller;
    copy_out(env, ptr, &v)
}

/// The transaction's session key (32 bytes, zero if an account key signed it) → `out`;
/// returns 1 if a session key signed it, else 0. A contract sees the scope its caller acts in.
fn tx_session_key(mut env: Ctx<'_>, ptr: i32) -> Result<i32, Abort> {
    let key = env.data().ctx.tx_session_key;
    charge(&mut env, gas::HOST_CALL_BASE + gas::copy(32))?;
    write(&mut env, ptr, &key)?;
    Ok(i32::from(key != [0; 32]))
}

/// The scope of the transaction's session key → `out` (`SESSION_SCOPE_BYTES`: the ABI words
/// of Solidity's `txSessionScope()`, all zero if the account's own key signed); returns 1 if
/// a session key signed it, else 0.
fn tx_session_scope(mut env: Ctx<'_>, ptr: i32) -> Result<i32, Abort> {
    charge(
        &mut env,
        gas::HOST_CALL_BASE + gas::copy(SESSION_SCOPE_BYTES as u64),
    )?;
    let scope = host(&mut env).tx_session_scope();
    write(&mut env, ptr, &scope)?;
    Ok(i32::from(scope[..32] != [0; 32]))
}

/// The live jurisdiction codes of this frame's caller → `out` (2 bytes each, at most
/// `MAX_CALLER_TAGS`, so `out` needs 16 bytes); returns how many.
fn caller_tags(mut env: Ctx<'_>, ptr: i32) -> Result<i32, Abort> {
    charge(&mut env, gas::HOST_CALL_BASE)?;
    let caller = env.data().ctx.caller;
    let (codes, cost) = host(&mut env).caller_tags(&caller).map_err(Abort::Host)?;
    charge(
        &mut env,
        cost.saturating_add(gas::copy(2 * codes.len() as u64)),
    )?;
    let codes: Vec<[u8; 2]> = codes
        .into_iter()
        .take(crate::limits::MAX_CALLER_TAGS)
        .collect();
    write(&mut env, ptr, &codes.concat())?;
    Ok(codes.len() as i32)
}

fn address(env: Ctx<'_>, ptr: i32) -> Result<(), Abort> {
    let v = env.data().ctx.address;
    copy_out(env, ptr, &v)
}

fn call_value(env: Ctx<'_>, ptr: i32) -> Result<(), Abort> {
    let v = env.data().ctx.value;
    copy_out(env, ptr, &v)
}

fn balance(mut env: Ctx<'_>, addr_ptr: i32, out_ptr: i32) -> Result<(), Abort> {
    charge(&mut env, gas::HOST_CALL_BASE)?;
    let address = read_array::<20>(&mut env, addr_ptr)?;
    let (value, cost) = host(&mut env).balance(&address).map_err(Abort::Host)?;
    charge(&mut env, cost)?;
    write(&mut env, out_ptr, &value)
}

fn block_height(mut env: Ctx<'_>) -> Result<i64, Abort> {
    charge(&mut env, gas::HOST_CALL_BASE)?;
    Ok(env.data().ctx.block_height as i64)
}

fn block_epoch(mut env: Ctx<'_>) -> Result<i64, Abort> {
    charge(&mut env, gas::HOST_CALL_BASE)?;
    Ok(env.data().ctx.block_epoch as i64)
}

fn block_timestamp(mut env: Ctx<'_>) -> Result<i64, Abort> {
    charge(&mut env, gas::HOST_CALL_BASE)?;
    Ok(env.data().ctx.block_timestamp_ms as i64)
}

fn emit_log(
    mut env: Ctx<'_>,
    topics_ptr: i32,
    topic_count: i32,
    data_ptr: i32,
    data_len: i32,
) -> Result<(), Abort> {
    not_static(&mut env)?;
    let topic_count = length(topic_count)?;
    if topic_count > MAX_LOG_TOPICS {
        return Err(Abort::Trap(TrapKind::BadHostArgument(
            HostArgument::TooManyTopics,
        )));
    }
    let data_len = length(data_len)?;
    charge(
        &mut env,
        gas::HOST_CALL_BASE
            + gas::LOG_BASE
            + gas::LOG_PER_TOPIC * u64::from(topic_count)
            + gas::LOG_PER_BYTE * u64::from(data_len),
    )?;
    let raw = read(&mut env, topics_ptr, topic_count * 32)?;
    let topics = raw
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap_or([0; 32]))
        .collect();
    let data = read(&mut env, data_ptr, data_len)?;
    host(&mut env).emit_log(topics, data).map_err(Abort::Host)
}

fn do_call(
    mut env: Ctx<'_>,
    to_ptr: i32,
    value: [u8; 32],
    input_ptr: i32,
    input_len: i32,
    gas_requested: i64,
    is_static: bool,
) -> Result<i32, Abort> {
    let input_len = length(input_len)?;
    charge(
        &mut env,
        gas::HOST_CALL_BASE + gas::copy(u64::from(input_len)),
    )?;
    let to = read_array::<20>(&mut env, to_ptr)?;
    let input = read(&mut env, input_ptr, input_len)?;
    let available = gas_left(&mut env);
    let request = CallRequest {
        to,
        value,
        input: &input,
        is_static: is_static || env.data().ctx.is_static,
        gas_requested: gas_requested.max(0) as u64,
    };
    let result = host(&mut env)
        .call(request, available)
        .map_err(Abort::Host)?;
    charge(&mut env, result.gas_used)?;
    env.data_mut().refund += result.refund;
    env.data_mut().return_data = result.output;
    Ok(if result.success { 0 } else { 1 })
}

fn call(
    mut env: Ctx<'_>,
    to_ptr: i32,
    value_ptr: i32,
    input_ptr: i32,
    input_len: i32,
    gas_requested: i64,
) -> Result<i32, Abort> {
    let value = read_array::<32>(&mut env, value_ptr)?;
    if value != [0; 32] {
        not_static(&mut env)?;
    }
    do_call(
        env,
        to_ptr,
        value,
        input_ptr,
        input_len,
        gas_requested,
        false,
    )
}

fn static_call(
    env: Ctx<'_>,
    to_ptr: i32,
    input_ptr: i32,
    input_len: i32,
    gas_requested: i64,
) -> Result<i32, Abort> {
    do_call(
        env,
        to_ptr,
        [0; 32],
        input_ptr,
        input_len,
        gas_requested,
        true,
    )
}

fn return_data_size(mut env: Ctx<'_>) -> Result<i32, Abort> {
    charge(&mut env, gas::HOST_CALL_BASE)?;
    Ok(env.data().return_data.len() as i32)
}

fn return_data_copy(mut env: Ctx<'_>, out_ptr: i32, offset: i32, len: i32) -> Result<(), Abort> {
    let (offset, len) = (length(offset)? as usize, length(len)? as usize);
    charge(&mut env, gas::HOST_CALL_BASE + gas::copy(len as u64))?;
    let data = std::mem::take(&mut env.data_mut().return_data);
    let slice = offset
        .checked_add(len)
        .and_then(|end| data.get(offset..end))
        .map(<[u8]>::to_vec);
    env.data_mut().return_data = data;
    let slice = slice.ok_or(Abort::Trap(TrapKind::BadHostArgument(
        HostArgument::ReturnDataOutOfBounds,
    )))?;
    write(&mut env, out_ptr, &slice)
}

fn gas_left_fn(mut env: Ctx<'_>) -> Result<i64, Abort> {
    charge(&mut env, gas::HOST_CALL_BASE)?;
    Ok(gas_left(&mut env) as i64)
}

fn hash_fn(
    mut env: Ctx<'_>,
    ptr: i32,
    len: i32,
    out_ptr: i32,
    base: u64,
    per_word: u64,
    f: fn(&[u8]) -> [u8; 32],
) -> Result<(), Abort> {
    let len = length(len)?;
    charge(
        &mut env,
        gas::HOST_CALL_BASE + base + per_word * u64::from(len).div_ceil(32),
    )?;
    let data = read(&mut env, ptr, len)?;
    write(&mut env, out_ptr, &f(&data))
}

fn blake3_fn(env: Ctx<'_>, ptr: i32, len: i32, out_ptr: i32) -> Result<(), Abort> {
    hash_fn(
        env,
        ptr,
        len,
        out_ptr,
        gas::BLAKE3_BASE,
        gas::BLAKE3_PER_WORD,
        |d| *blake3::hash(d).as_bytes(),
    )
}

fn keccak_fn(env: Ctx<'_>, ptr: i32, len: i32, out_ptr: i32) -> Result<(), Abort> {
    hash_fn(
        env,
        ptr,
        len,
        out_ptr,
        gas::KECCAK_BASE,
        gas::KECCAK_PER_WORD,
        keccak256,
    )
}

/// Ethereum's keccak-256.
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    use sha3::Digest;
    sha3::Keccak256::digest(data).into()
}

pub(crate) fn classify(
    error: wasmer::RuntimeError,
    exhausted: bool,
    depth: Option<u32>,
) -> Result<Exit, HostError> {
    let error = match error.downcast::<Abort>() {
        Ok(Abort::Revert) => return Ok(Exit::Revert),
        Ok(Abort::OutOfGas) => return Ok(Exit::OutOfGas),
        Ok(Abort::Trap(kind)) => return Ok(Exit::Trap(kind)),
        Ok(Abort::Host(e)) => return Err(e),
        Err(error) => error,
    };
    if exhausted {
        return Ok(Exit::OutOfGas);
    }
    if depth.is_some_and(|d| d > MAX_CALL_DEPTH) {
        return Ok(Exit::Trap(TrapKind::CallDepth));
    }
    use wasmer_vm::TrapCode;
    Ok(Exit::Trap(match error.clone().to_trap() {
        Some(TrapCode::UnreachableCodeReached) => TrapKind::Unreachable,
        Some(TrapCode::HeapAccessOutOfBounds) => TrapKind::MemoryOutOfBounds,
        Some(TrapCode::TableAccessOutOfBounds) => TrapKind::TableOutOfBounds,
        Some(TrapCode::IndirectCallToNull) => TrapKind::IndirectCallToNull,
        Some(TrapCode::BadSignature) => TrapKind::BadSignature,
        Some(TrapCode::IntegerOverflow | TrapCode::IntegerDivisionByZero) => {
            TrapKind::IntegerOverflowOrDivideByZero
        }
        Some(TrapCode::StackOverflow) => TrapKind::StackOverflow,
        _ => TrapKind::Other(error.message()),
    }))
}

/// Run `entry` of `module` as one call frame with `gas_limit` gas.
///
/// `Err` only for a host failure (the node's problem); every contract behaviour is an
/// [`Outcome`].
pub fn execute(
    engine: &wasmer::Engine,
    module: &Module,
    entry: &str,
    ctx: FrameContext,
    input: Vec<u8>,
    gas_limit: u64,
    host: &mut dyn Host,
) -> Result<Outcome, HostError> {
    let failed = |exit: Exit| Outcome {
        exit,
        output: Vec::new(),
        gas_used: gas_limit,
        refund: 0,
    };
    let mut store = Store::new(engine.clone());
    let host_ptr: NonNull<dyn Host + '_> = NonNull::from(host);
    // SAFETY: only the lifetime is erased; see `HostPtr`. `store` (and with it `env`) is
    // dropped before this function returns, so the pointer never outlives the borrow.
    #[allow(unsafe_code)]
    let host_ptr: NonNull<dyn Host + 'static> = unsafe { std::mem::transmute(host_ptr) };
    let env = FunctionEnv::new(
        &mut store,
        Env {
            host: HostPtr(host_ptr),
            memory: None,
            ink: None,
            exhausted: None,
            ctx,
            input,
            output: Vec::new(),
            return_data: Vec::new(),
            refund: 0,
        },
    );
    let s = &mut store;
    let imports = imports! {
        HOST_MODULE => {
            "read_input" => Function::new_typed_with_env(s, &env, read_input),
            "return_data" => Function::new_typed_with_env(s, &env, return_data),
            "revert" => Function::new_typed_with_env(s, &env, revert),
            "storage_load" => Function::new_typed_with_env(s, &env, storage_load),
            "storage_store" => Function::new_typed_with_env(s, &env, storage_store),
            "caller" => Function::new_typed_with_env(s, &env, caller),
            "address" => Function::new_typed_with_env(s, &env, address),
            "call_value" => Function::new_typed_with_env(s, &env, call_value),
            "balance" => Function::new_typed_with_env(s, &env, balance),
            "block_height" => Function::new_typed_with_env(s, &env, block_height),
            "block_epoch" => Function::new_typed_with_env(s, &env, block_epoch),
            "block_timestamp" => Function::new_typed_with_env(s, &env, block_timestamp),
            "emit_log" => Function::new_typed_with_env(s, &env, emit_log),
            "call" => Function::new_typed_with_env(s, &env, call),
            "static_call" => Function::new_typed_with_env(s, &env, static_call),
            "return_data_size" => Function::new_typed_with_env(s, &env, return_data_size),
            "return_data_copy" => Function::new_typed_with_env(s, &env, return_data_copy),
            "gas_left" => Function::new_typed_with_env(s, &env, gas_left_fn),
            "blake3" => Function::new_typed_with_env(s, &env, blake3_fn),
            "keccak256" => Function::new_typed_with_env(s, &env, keccak_fn),
            "tx_session_key" => Function::new_typed_with_env(s, &env, tx_session_key),
            "tx_session_scope" => Function::new_typed_with_env(s, &env, tx_session_scope),
            "caller_tags" => Function::new_typed_with_env(s, &env, caller_tags),
        }
    };
    let instance = match Instance::new(&mut store, module, &imports) {
        Ok(instance) => instance,
        // This node could not allocate the instance (memory, tables): its problem, not the
        // contract's — a receipt saying so would differ from nodes that could.
        Err(wasmer::InstantiationError::Link(wasmer::LinkError::Resource(e))) => {
            return Err(HostError(format!("instantiating a module: {e}")));
        }
        Err(e @ wasmer::InstantiationError::CpuFeature(_)) => {
            return Err(HostError(format!("instantiating a module: {e}")));
        }
        Err(e) => return Ok(failed(Exit::Trap(TrapKind::Instantiate(e.to_string())))),
    };
    let (Ok(memory), Ok(ink), Ok(exhausted)) = (
        instance
            .exports
            .get_memory(crate::host_api::MEMORY_EXPORT)
            .cloned(),
        instance.exports.get_global(INK_EXPORT).cloned(),
        instance.exports.get_global(EXHAUSTED_EXPORT).cloned(),
    ) else {
        return Ok(failed(Exit::Trap(TrapKind::Instantiate(
            "missing exports".into(),
        ))));
    };
    let depth = instance
        .exports
        .get_global(DEPTH_GLOBAL_EXPORT)
        .cloned()
        .ok();
    let pages = u64::from(memory.view(&store).size().0);
    let setup_gas = gas::INSTANTIATE_BASE + gas::INSTANTIATE_PER_PAGE * pages;
    let Some(start_ink) = gas_limit
        .checked_sub(setup_gas)
        .and_then(|g| g.checked_mul(INK_PER_GAS))
    else {
        return Ok(failed(Exit::OutOfGas));
    };
    if ink.set(&mut store, Value::I64(start_ink as i64)).is_err() {
        return Ok(failed(Exit::Trap(TrapKind::Instantiate(
            "metering global".into(),
        ))));
    }
    let input_len = env.as_ref(&store).input.len() as i32;
    {
        let data = env.as_mut(&mut store);
        data.memory = Some(memory);
        data.ink = Some(ink.clone());
        data.exhausted = Some(exhausted.clone());
    }
    let entry_fn: TypedFunction<i32, i32> = match instance.exports.get_typed_function(&store, entry)
    {
        Ok(f) => f,
        Err(e) => return Ok(failed(Exit::Trap(TrapKind::Instantiate(e.to_string())))),
    };
    let result = entry_fn.call(&mut store, input_len);
    let ink_left = match ink.get(&mut store) {
        Value::I64(v) => v as u64,
        _ => 0,
    };
    let data = env.as_mut(&mut store);
    let output = std::mem::take(&mut data.output);
    let refund = data.refund;
    let gas_used = setup_gas + (start_ink - ink_left.min(start_ink)).div_ceil(INK_PER_GAS);
    let gas_used = gas_used.min(gas_limit);
    let exit = match result {
        Ok(0) => Exit::Return,
        Ok(_) => Exit::Revert,
        Err(error) => {
            let exhausted = matches!(exhausted.get(&mut store), Value::I32(1));
            let depth = depth.and_then(|g| match g.get(&mut store) {
                Value::I32(d) => Some(d as u32),
                _ => None,
            });
            classify(error, exhausted, depth)?
        }
    };
    Ok(match exit {
        Exit::Return => Outcome {
            exit,
            output,
            gas_used,
            refund,
        },
        Exit::Revert => Outcome {
            exit,
            output,
            gas_used,
            refund: 0,
        },
        other => failed(other),
    })
}
