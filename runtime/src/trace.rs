//! The call tracer behind `debug_traceTransaction`: re-executes a block's transactions up to
//! the traced one over its parent state, then runs that one with a revm inspector that
//! records every frame — EVM frames, WASM frames (which revm sees as calls its precompile
//! provider answers) and the frames a WASM contract opens through its host, which run in a
//! nested EVM sharing the same tracer — as one tree in geth's `callTracer` shape.
//!
//! Tracing is speculative: a module it compiles is not cached, and nothing is written.

use crate::bridge::WASM_DEPLOYER;
use crate::executor::{Runtime, RuntimeError};
use keel_exec_evm::revm::inspector::Inspector;
use keel_exec_evm::revm::interpreter::interpreter::EthInterpreter;
use keel_exec_evm::revm::interpreter::{
    CallInputs, CallOutcome, CallScheme, CallValue, CreateInputs, CreateOutcome, InstructionResult,
    InterpreterResult,
};
use keel_exec_evm::revm::primitives::Address as RevmAddress;
use keel_exec_evm::{from_revm, u256_from_revm, BlockHashes, KeelCtx};
use keel_exec_wasm::wasm_module_of;
use keel_state::StateView;
use keel_types::{Address, Block, Env, Receipt, TxStatus, U256};
use std::cell::RefCell;
use std::rc::Rc;

/// Frames recorded per trace; deeper or later frames are counted, not kept, and the trace
/// says it is truncated. (Gas bounds the frame count, but a 30 Mgas transaction of cheap
/// calls could still open ~10^5 of them.)
pub const MAX_TRACE_FRAMES: usize = 10_000;
/// Input and output bytes kept across all frames of one trace (beyond it, frames keep their
/// shape and lose their data, and the trace says it is truncated).
pub const MAX_TRACE_DATA_BYTES: usize = 16 << 20;

/// How a frame was entered (geth's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Call,
    CallCode,
    DelegateCall,
    StaticCall,
    Create,
    Create2,
}

impl CallKind {
    /// geth's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Call => "CALL",
            CallKind::CallCode => "CALLCODE",
            CallKind::DelegateCall => "DELEGATECALL",
            CallKind::StaticCall => "STATICCALL",
            CallKind::Create => "CREATE",
            CallKind::Create2 => "CREATE2",
        }
    }
}

/// Why a frame failed, in geth's words where geth has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    Reverted,
    OutOfGas,
    /// Anything else revm halted with (its instruction result's name), or the transaction's
    /// typed error for a transaction that never reached the EVM.
    Other(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Reverted => f.write_str("execution reverted"),
            FrameError::OutOfGas => f.write_str("out of gas"),
            FrameError::Other(reason) => f.write_str(reason),
        }
    }
}

/// One frame of a traced transaction and the frames it opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFrame {
    pub kind: CallKind,
    /// The environment the frame's code ran in.
    pub env: Env,
    pub from: Address,
    /// The callee, or the created contract (`None` for a create that failed).
    pub to: Option<Address>,
    /// Value moved by the frame (`None` for delegate and static calls, which move none).
    pub value: Option<U256>,
    pub gas: u64,
    pub gas_used: u64,
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    pub error: Option<FrameError>,
    pub calls: Vec<CallFrame>,
}

/// A traced transaction: its receipt (identical to the block's) and its frame tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub receipt: Receipt,
    /// `None` when the transaction never reached the EVM (refused, revival, expired read).
    pub root: Option<CallFrame>,
    /// Frames or data were left out (`MAX_TRACE_FRAMES`, `MAX_TRACE_DATA_BYTES`).
    pub truncated: bool,
}

#[derive(Debug, Default)]
struct TraceState {
    /// Open frames, innermost last; `None` for a frame past the bounds.
    open: Vec<Option<CallFrame>>,
    root: Option<CallFrame>,
    frames: usize,
    data_bytes: usize,
    truncated: bool,
}

/// The inspector: a shared handle, because a WASM frame's nested calls run in a nested EVM
/// that must record into the same tree.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracer(Rc<RefCell<TraceState>>);

impl Tracer {
    fn enter(&self, mut frame: CallFrame) {
        let mut state = self.0.borrow_mut();
        if state.frames >= MAX_TRACE_FRAMES {
            state.truncated = true;
            state.open.push(None);
            return;
        }
        state.frames += 1;
        if state.data_bytes.saturating_add(frame.input.len()) > MAX_TRACE_DATA_BYTES {
            state.truncated = true;
            frame.input.clear();
        }
        state.data_bytes += frame.input.len();
        state.open.push(Some(frame));
    }

    fn exit(&self, result: &InterpreterResult, created: Option<RevmAddress>) {
        let mut state = self.0.borrow_mut();
        let Some(Some(mut frame)) = state.open.pop() else {
            return;
        };
        frame.gas_used = frame.gas.saturating_sub(result.gas.remaining());
        let mut output = result.output.to_vec();
        if state.data_bytes.saturating_add(output.len()) > MAX_TRACE_DATA_BYTES {
            state.truncated = true;
            output.clear();
        }
        state.data_bytes += output.len();
        frame.error = frame_error(result.result);
        if frame.kind == CallKind::Create || frame.kind == CallKind::Create2 {
            frame.to = created.map(|a| from_revm(&a));
            // A create's output is the deployed code; geth reports it as the output too.
        }
        // The WASM deployer is a create in all but name: report it as one, at the new
        // contract's address (its 32-byte output), with no output of its own.
        if frame.to == Some(from_revm(&WASM_DEPLOYER)) && frame.kind == CallKind::Call {
            frame.kind = CallKind::Create;
            frame.env = Env::Wasm;
            frame.to = (frame.error.is_none() && output.len() == 32)
                .then(|| Address(output[12..].try_into().expect("20 bytes")));
            output.clear();
        }
        frame.output = output;
        match state.open.last_mut() {
            Some(Some(parent)) => parent.calls.push(frame),
            // The parent was past the bounds: so is this frame (never reached: a frame past
            // the bounds records no children).
            Some(None) => {}
            None => state.root = Some(frame),
        }
    }

    fn finish(&self) -> (Option<CallFrame>, bool) {
        let mut state = self.0.borrow_mut();
        (state.root.take(), state.truncated)
    }
}

fn frame_error(result: InstructionResult) -> Option<FrameError> {
    if result.is_ok() {
        None
    } else if result.is_revert() {
        Some(FrameError::Reverted)
    } else if matches!(
        result,
        InstructionResult::OutOfGas
            | InstructionResult::MemoryOOG
            | InstructionResult::MemoryLimitOOG
            | InstructionResult::PrecompileOOG
            | InstructionResult::InvalidOperandOOG
    ) {
        Some(FrameError::OutOfGas)
    } else if result == InstructionResult::PrecompileError {
        // How a WASM trap surfaces in revm (`bridge::to_interpreter_result`).
        Some(FrameError::Other("trap".into()))
    } else {
        Some(FrameError::Other(format!("{result:?}")))
    }
}

fn env_of(code: &[u8]) -> Env {
    if wasm_module_of(code).is_some() {
        Env::Wasm
    } else {
        Env::Evm
    }
}

impl<'a> Inspector<KeelCtx<'a>, EthInterpreter> for Tracer {
    fn call(&mut self, ctx: &mut KeelCtx<'a>, inputs: &mut CallInputs) -> Option<CallOutcome> {
        let kind = match inputs.scheme {
            CallScheme::Call => CallKind::Call,
            CallScheme::CallCode => CallKind::CallCode,
            CallScheme::DelegateCall => CallKind::DelegateCall,
            CallScheme::StaticCall => CallKind::StaticCall,
        };
        let value = match inputs.value {
            CallValue::Transfer(v) => Some(u256_from_revm(&v)),
            CallValue::Apparent(_) => None,
        };
        // Never read the caller's memory for a frame past the bounds.
        let input = if self.0.borrow().frames < MAX_TRACE_FRAMES {
            inputs.input.bytes(&*ctx).to_vec()
        } else {
            Vec::new()
        };
        self.enter(CallFrame {
            kind,
            env: env_of(inputs.known_bytecode.1.original_byte_slice()),
            from: from_revm(&inputs.caller),
            to: Some(from_revm(&inputs.target_address)),
            value,
            gas: inputs.gas_limit,
            gas_used: 0,
            input,
            output: Vec::new(),
            error: None,
            calls: Vec::new(),
        });
        None
    }

    fn call_end(&mut self, _: &mut KeelCtx<'a>, _: &CallInputs, outcome: &mut CallOutcome) {
        self.exit(&outcome.result, None);
    }

    fn create(&mut self, _: &mut KeelCtx<'a>, inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        let kind = match inputs.scheme() {
            keel_exec_evm::revm::context_interface::CreateScheme::Create2 { .. } => {
                CallKind::Create2
            }
            _ => CallKind::Create,
        };
        self.enter(CallFrame {
            kind,
            env: Env::Evm,
            from: from_revm(&inputs.caller()),
            to: None,
            value: Some(u256_from_revm(&inputs.value())),
            gas: inputs.gas_limit(),
            gas_used: 0,
            input: inputs.init_code().to_vec(),
            output: Vec::new(),
            error: None,
            calls: Vec::new(),
        });
        None
    }

    fn create_end(&mut self, _: &mut KeelCtx<'a>, _: &CreateInputs, outcome: &mut CreateOutcome) {
        self.exit(&outcome.result, outcome.address);
    }
}

impl Runtime {
    /// The trace of transaction `index` of `block`, executed over `parent` (the state after
    /// the block's parent) exactly as the block executed it; `None` if there is no such
    /// transaction.
    pub fn trace_transaction(
        &self,
        parent: &dyn StateView,
        hashes: &dyn BlockHashes,
        block: &Block,
        index: usize,
    ) -> Result<Option<Trace>, RuntimeError> {
        let Some(tx) = block.transactions.get(index) else {
            return Ok(None);
        };
        let tracer = Tracer::default();
        let Some(receipt) = self.execute_up_to(parent, hashes, block, (index, &tracer))? else {
            return Ok(None);
        };
        let (mut root, truncated) = tracer.finish();
        if let Some(root) = &mut root {
            // geth reports the transaction's gas, intrinsic cost included, at the top.
            root.gas = tx.tx.gas_limit;
            root.gas_used = receipt.gas_used;
            // A transaction charged after its run (an expired read) failed whatever its
            // frames say.
            if root.error.is_none() && receipt.status != TxStatus::Success {
                let reason = receipt
                    .error
                    .as_ref()
                    .map_or("failed".into(), |e| e.to_string());
                root.error = Some(FrameError::Other(reason));
            }
        }
        Ok(Some(Trace {
            receipt,
            root,
            truncated,
        }))
    }
}
