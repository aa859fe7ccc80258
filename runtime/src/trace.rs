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
    CallInputs, CallOutcome, CallScheme, CreateInputs, CreateOutcome, InstructionResult,
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

impl TraceState {
    /// Takes `len` bytes of the data budget; `false` (and the trace marked truncated) when
    /// they do not fit. Asked before any copy, so data past the budget is never copied.
    fn take_budget(&mut self, len: usize) -> bool {
        if self.data_bytes.saturating_add(len) > MAX_TRACE_DATA_BYTES {
            self.truncated = true;
            return false;
        }
        self.data_bytes += len;
        true
    }

    /// Attaches a finished frame to its parent, or makes it the root.
    fn attach(&mut self, frame: CallFrame) {
        match self.open.last_mut() {
            Some(Some(parent)) => parent.calls.push(frame),
            // A frame past the bounds records no children (`enter` never opens one below).
            Some(None) => {}
            None => self.root = Some(frame),
        }
    }
}

impl Tracer {
    /// Opens a frame; `input` is asked for only if the frame and its input fit the bounds.
    fn enter(&self, frame: CallFrame, input_len: usize, input: impl FnOnce() -> Vec<u8>) {
        let mut state = self.0.borrow_mut();
        if state.frames >= MAX_TRACE_FRAMES || matches!(state.open.last(), Some(None)) {
            state.truncated = true;
            state.open.push(None);
            return;
        }
        state.frames += 1;
        let mut frame = frame;
        if state.take_budget(input_len) {
            frame.input = input();
        }
        state.open.push(Some(frame));
    }

    fn exit(&self, result: &InterpreterResult, created: Option<RevmAddress>) {
        let mut state = self.0.borrow_mut();
        let Some(Some(mut frame)) = state.open.pop() else {
            return;
        };
        frame.gas_used = frame.gas.saturating_sub(result.gas.remaining());
        frame.error = frame_error(result.result, frame.env);
        if frame.kind == CallKind::Create || frame.kind == CallKind::Create2 {
            // revm names the address of a failed creation too; geth does not.
            frame.to = created
                .filter(|_| frame.error.is_none())
                .map(|a| from_revm(&a));
        }
        // The WASM deployer is a create in all but name: report it as one, at the new
        // contract's address (its 32-byte output), with no output of its own.
        let output = &result.output;
        if frame.to == Some(from_revm(&WASM_DEPLOYER)) && frame.kind == CallKind::Call {
            frame.kind = CallKind::Create;
            frame.env = Env::Wasm;
            frame.to = match (&frame.error, output.get(12..32)) {
                (None, Some(address)) if output.len() == 32 => {
                    Some(Address(address.try_into().expect("20 bytes")))
                }
                _ => None,
            };
        } else if state.take_budget(output.len()) {
            // A create's output is the deployed code; geth reports it as the output too.
            frame.output = output.to_vec();
        }
        state.attach(frame);
    }

    /// The tree, with any frame an aborted run left open closed as failed by `error`.
    fn finish(&self, error: Option<FrameError>) -> (Option<CallFrame>, bool) {
        let mut state = self.0.borrow_mut();
        while let Some(open) = state.open.pop() {
            if let Some(mut frame) = open {
                frame.gas_used = frame.gas;
                frame.error = Some(error.clone().unwrap_or(FrameError::Other("aborted".into())));
                state.attach(frame);
            }
        }
        (state.root.take(), state.truncated)
    }
}

/// geth's words for a failed frame where geth has them.
fn frame_error(result: InstructionResult, env: Env) -> Option<FrameError> {
    let other = |text: &str| Some(FrameError::Other(text.into()));
    if result.is_ok() {
        None
    } else if result == InstructionResult::Revert {
        Some(FrameError::Reverted)
    } else if result == InstructionResult::CallTooDeep {
        other("max call depth exceeded")
    } else if result == InstructionResult::OutOfFunds {
        other("insufficient balance for transfer")
    } else if result == InstructionResult::CreateCollision {
        other("contract address collision")
    } else if result == InstructionResult::StateChangeDuringStaticCall {
        other("write protection")
    } else if matches!(
        result,
        InstructionResult::OutOfGas
            | InstructionResult::MemoryOOG
            | InstructionResult::MemoryLimitOOG
            | InstructionResult::PrecompileOOG
            | InstructionResult::InvalidOperandOOG
    ) {
        Some(FrameError::OutOfGas)
    } else if result == InstructionResult::PrecompileError && env == Env::Wasm {
        // How a WASM trap surfaces in revm (`bridge::to_interpreter_result`).
        other("trap")
    } else if result == InstructionResult::PrecompileError {
        other("precompile failed")
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
        // geth: a static call moves no value (none shown), a delegate call shows the value
        // it inherits.
        let value = match kind {
            CallKind::StaticCall => None,
            _ => Some(u256_from_revm(&inputs.value.get())),
        };
        let frame = CallFrame {
            kind,
            env: env_of(inputs.known_bytecode.1.original_byte_slice()),
            from: from_revm(&inputs.caller),
            to: Some(from_revm(&inputs.target_address)),
            value,
            gas: inputs.gas_limit,
            gas_used: 0,
            input: Vec::new(),
            output: Vec::new(),
            error: None,
            calls: Vec::new(),
        };
        // The caller's memory is read only if the input fits the budget.
        self.enter(frame, inputs.input.len(), || {
            inputs.input.as_bytes(&*ctx).to_vec()
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
        let frame = CallFrame {
            kind,
            env: Env::Evm,
            from: from_revm(&inputs.caller()),
            to: None,
            value: Some(u256_from_revm(&inputs.value())),
            gas: inputs.gas_limit(),
            gas_used: 0,
            input: Vec::new(),
            output: Vec::new(),
            error: None,
            calls: Vec::new(),
        };
        let code = inputs.init_code();
        self.enter(frame, code.len(), || code.to_vec());
        None
    }

    fn create_end(&mut self, _: &mut KeelCtx<'a>, _: &CreateInputs, outcome: &mut CreateOutcome) {
        self.exit(&outcome.result, outcome.address);
    }
}

impl Runtime {
    /// The trace of transaction `index` of `block`, executed over `parent` (the state after
    /// the block's parent) as the block executed it; `None` if there is no such transaction.
    /// The receipt is the block's own unless `parent` cannot reproduce the block's expiry
    /// sweep (a past height's view has no touch index): callers compare it with the stored
    /// receipt.
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
        let failed = (receipt.status != TxStatus::Success).then(|| {
            FrameError::Other(
                receipt
                    .error
                    .as_ref()
                    .map_or("failed".into(), |e| e.to_string()),
            )
        });
        let (mut root, truncated) = tracer.finish(failed);
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
