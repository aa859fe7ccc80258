//! Where the two environments meet: a revm precompile provider that runs WASM contracts and
//! the WASM deployer inside revm's call frames, and a WASM [`Host`] over revm's journal that
//! runs nested calls — into EVM or WASM — as ordinary revm frames.
//!
//! One journal holds the whole transaction's state, so a revert at any depth undoes exactly
//! the frames it covers, whichever environment each frame ran in, and one gas counter flows
//! down and back up through every frame (Arbitrum Stylus' model).

use crate::trace::Tracer;
use keel_exec_evm::{revm, KeelCtx, KeelDb, SPEC};
use keel_exec_wasm::host_api::{gas as wasm_gas, CONSTRUCTOR, ENTRY_POINT};
use keel_exec_wasm::limits::MAX_WASM_FRAME_DEPTH;
use keel_exec_wasm::{
    execute, wasm_module_of, CallRequest, CallResult, Exit, FrameContext, Host, HostError,
    ModuleCache, Outcome, StoreCost, TrapKind, WASM_CODE_PREFIX,
};
use keel_types::receipt::{CodeError, ExecError};
use keel_types::TxError;
use revm::bytecode::Bytecode;
use revm::context::Context;
use revm::context_interface::journaled_state::account::JournaledAccountTr;
use revm::context_interface::journaled_state::TransferError;
use revm::context_interface::{ContextTr, JournalTr, LocalContextTr};
use revm::handler::{EthPrecompiles, EvmTr, FrameResult, ItemOrResult, PrecompileProvider};
use revm::inspector::{Inspector, InspectorEvmTr, NoOpInspector};
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::interpreter_action::FrameInit;
use revm::interpreter::{
    CallInput, CallInputs, CallScheme, CallValue, FrameInput, Gas, InstructionResult,
    InterpreterResult, SharedMemory,
};
use revm::primitives::{address, keccak256, Address, AddressSet, Bytes, Log, LogData, B256, U256};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// The system address that deploys WASM modules. Input: `u32 BE module length ‖ module ‖
/// constructor args`; output: the new contract's address, left-padded to 32 bytes.
pub const WASM_DEPLOYER: Address = address!("000000000000000000000000000000000000c0de");

/// The runtime's EVM: keel's context with the precompiles that also dispatch to WASM.
pub(crate) type KeelEvm<'a> = keel_exec_evm::KeelEvm<'a, KeelPrecompiles>;

// EIP-2929 access costs, used for the WASM host's account and slot accesses.
pub(crate) const WARM_ACCESS: u64 = 100;
pub(crate) const COLD_ACCOUNT_ACCESS: u64 = 2_600;
pub(crate) const COLD_SLOAD: u64 = 2_100;
const CALL_VALUE: u64 = 9_000;
const NEW_ACCOUNT: u64 = 25_000;
const CALL_STIPEND: u64 = 2_300;

/// The Ethereum precompiles plus keel's WASM dispatch.
#[derive(Debug, Clone)]
pub struct KeelPrecompiles {
    eth: EthPrecompiles,
    wasm: Arc<ModuleCache>,
    /// An RPC call or simulation: modules it compiles are neither written nor cached.
    speculative: bool,
    epoch: u64,
    timestamp_ms: u64,
    /// WASM frames already on the native stack below this provider's frames.
    wasm_frames: usize,
    /// The session key that signed the transaction, zero if none (the `tx_session_key` host
    /// call).
    tx_session_key: [u8; 32],
    /// That key's scope (the `tx_session_scope` host call, `txSessionScope()`).
    tx_session_scope: Option<keel_types::policy::SessionScope>,
    /// The typed reason the most recently finished WASM frame or deploy failed with, `None`
    /// if it did not fail that way (for the receipt: a top-level WASM call or deploy is the
    /// last one to finish). Never text: receipts are hashed.
    last_trap: Rc<RefCell<Option<TxError>>>,
    /// The call tracer of a traced transaction: WASM frames' nested calls record into it.
    tracer: Option<Tracer>,
    /// Genesis jurisdiction attesters (`crate::jurisdiction`).
    attesters: Arc<[keel_types::Address]>,
    /// The transaction's top frame already passed its target's jurisdiction rules in the
    /// policy decision (`policy::evaluate`, over the same state): not read again.
    top_frame_checked: bool,
}

impl KeelPrecompiles {
    pub fn new(wasm: Arc<ModuleCache>, epoch: u64, timestamp_ms: u64) -> KeelPrecompiles {
        KeelPrecompiles {
            eth: EthPrecompiles::new(SPEC),
            wasm,
            speculative: false,
            epoch,
            timestamp_ms,
            wasm_frames: 0,
            tx_session_key: [0; 32],
            tx_session_scope: None,
            last_trap: Rc::new(RefCell::new(None)),
            tracer: None,
            attesters: Arc::from(Vec::new()),
            top_frame_checked: false,
        }
    }

    /// The policy decision already checked the top frame's jurisdiction rules.
    pub fn top_frame_checked(mut self, checked: bool) -> KeelPrecompiles {
        self.top_frame_checked = checked;
        self
    }

    /// The chain's jurisdiction attesters.
    pub fn attesters(mut self, attesters: Arc<[keel_types::Address]>) -> KeelPrecompiles {
        self.attesters = attesters;
        self
    }

    /// For `debug_traceTransaction`: nested calls run under `tracer`.
    pub(crate) fn traced(mut self, tracer: Option<Tracer>) -> KeelPrecompiles {
        self.tracer = tracer;
        self
    }

    /// The session key that signed the transaction, if one did.
    pub fn session_key(mut self, key: Option<[u8; 32]>) -> KeelPrecompiles {
        self.tx_session_key = key.unwrap_or([0; 32]);
        self
    }

    /// The scope of the session key that signed the transaction, if one did.
    pub fn session_scope(
        mut self,
        scope: Option<keel_types::policy::SessionScope>,
    ) -> KeelPrecompiles {
        self.tx_session_scope = scope;
        self
    }

    /// For an RPC call or simulation: see [`ModuleCache::get_speculative`].
    pub fn speculative(mut self, speculative: bool) -> KeelPrecompiles {
        self.speculative = speculative;
        self
    }

    /// The runnable module, from the cache as block execution or a speculative caller uses it.
    fn module(
        &self,
        key: &[u8; 32],
        code: &[u8],
    ) -> Result<keel_exec_wasm::LoadedModule, keel_exec_wasm::CacheError> {
        if self.speculative {
            self.wasm.get_speculative(key, code)
        } else {
            self.wasm.get(key, code)
        }
    }

    /// Take the reason recorded by the last WASM frame or deploy to finish, if it failed.
    pub fn take_trap(&self) -> Option<TxError> {
        self.last_trap.borrow_mut().take()
    }

    fn nested(&self) -> KeelPrecompiles {
        KeelPrecompiles {
            wasm_frames: self.wasm_frames + 1,
            ..self.clone()
        }
    }

    fn frame_context(
        &self,
        ctx: &KeelCtx<'_>,
        inputs: &CallInputs,
        address: Address,
    ) -> FrameContext {
        FrameContext {
            address: address.0 .0,
            caller: inputs.caller.0 .0,
            value: inputs.value.get().to_be_bytes::<32>(),
            is_static: inputs.is_static,
            block_height: ctx.block.number.saturating_to::<u64>(),
            block_epoch: self.epoch,
            block_timestamp_ms: self.timestamp_ms,
            tx_session_key: self.tx_session_key,
        }
    }

    fn run_frame(
        &self,
        ctx: &mut KeelCtx<'_>,
        (module_bytes, key): (&[u8], B256),
        entry: &str,
        frame: FrameContext,
        input: Vec<u8>,
        gas_limit: u64,
    ) -> Result<Outcome, String> {
        let module = match self.module(&key.0, module_bytes) {
            Ok(module) => module,
            // A module that does not compile fails its frame like a trap (every node reaches
            // the same verdict); only this machine's own failures (I/O, memory) stop the node.
            Err(e) if e.refusal().is_some() => {
                tracing::debug!(error = %e, "a deployed WASM module does not compile");
                *self.last_trap.borrow_mut() = Some(TrapKind::CompileFailed.tx_error());
                return Ok(Outcome {
                    exit: Exit::Trap(TrapKind::CompileFailed),
                    output: Vec::new(),
                    gas_used: gas_limit,
                    refund: 0,
                });
            }
            Err(e) => return Err(e.to_string()),
        };
        let mut host = RevmHost {
            ctx,
            address: Address::from(frame.address),
            precompiles: self.nested(),
        };
        let outcome = execute(
            module.engine(),
            &module,
            entry,
            frame,
            input,
            gas_limit,
            &mut host,
        )
        .map_err(|e| e.0)?;
        if let Exit::Trap(TrapKind::Instantiate(message) | TrapKind::Other(message)) = &outcome.exit
        {
            tracing::debug!(%message, "WASM frame trapped");
        }
        *self.last_trap.borrow_mut() = match &outcome.exit {
            Exit::Trap(kind) => Some(kind.tx_error()),
            _ => None,
        };
        Ok(outcome)
    }

    fn run_wasm(
        &self,
        ctx: &mut KeelCtx<'_>,
        inputs: &CallInputs,
        module_bytes: &[u8],
    ) -> Result<InterpreterResult, String> {
        if self.wasm_frames >= MAX_WASM_FRAME_DEPTH {
            return Ok(failed(InstructionResult::CallTooDeep, inputs.gas_limit));
        }
        let input = inputs.input.bytes(ctx).to_vec();
        let frame = self.frame_context(ctx, inputs, inputs.target_address);
        let outcome = self.run_frame(
            ctx,
            (module_bytes, inputs.known_bytecode.0),
            ENTRY_POINT,
            frame,
            input,
            inputs.gas_limit,
        )?;
        Ok(to_interpreter_result(outcome, inputs.gas_limit))
    }

    /// The WASM deployer: validate, compile (cached by code hash), create the account, run
    /// the optional constructor.
    fn deploy(
        &self,
        ctx: &mut KeelCtx<'_>,
        inputs: &CallInputs,
    ) -> Result<InterpreterResult, String> {
        let gas_limit = inputs.gas_limit;
        *self.last_trap.borrow_mut() = None;
        // A refused deploy: the typed reason goes to the receipt, the revert data is empty
        // (it used to be text, including wasmparser's and revm's, which must not be hashed).
        let revert = |gas_used: u64, error: TxError| {
            *self.last_trap.borrow_mut() = Some(error);
            let mut gas = Gas::new(gas_limit);
            let _ = gas.record_regular_cost(gas_used.min(gas_limit));
            InterpreterResult::new(InstructionResult::Revert, Bytes::new(), gas)
        };
        let invalid = |code: CodeError| TxError::InvalidCode { code };
        if inputs.is_static || self.wasm_frames >= MAX_WASM_FRAME_DEPTH {
            return Ok(failed(
                InstructionResult::StateChangeDuringStaticCall,
                gas_limit,
            ));
        }
        let input = inputs.input.bytes(ctx);
        let Some((module, args)) = split_deploy_input(&input) else {
            return Ok(revert(0, invalid(CodeError::BadDeployInput)));
        };
        let cost = wasm_gas::DEPLOY_BASE + wasm_gas::DEPLOY_PER_BYTE * module.len() as u64;
        // Validation first (linear in the module, which the transaction already paid for as
        // calldata), so an invalid module gets its typed reason even when the deploy cost
        // exceeds the gas limit; it is charged the deploy cost up to the limit either way.
        if let Err(e) = keel_exec_wasm::validate(module) {
            tracing::debug!(error = %e, "WASM deploy refused");
            return Ok(revert(cost, invalid(e.code())));
        }
        if cost > gas_limit {
            return Ok(failed(InstructionResult::OutOfGas, gas_limit));
        }
        let code = [&WASM_CODE_PREFIX[..], module].concat();
        let code_hash = keccak256(&code);
        // A module the compiler refuses is refused like an invalid one, at the same cost;
        // only this machine's own failures (I/O, memory) stop the node.
        let compiled = match self.module(&code_hash.0, module) {
            Ok(compiled) => compiled,
            Err(e) => match e.refusal() {
                Some(code) => {
                    tracing::debug!(error = %e, "WASM deploy refused at compilation");
                    return Ok(revert(cost, invalid(code)));
                }
                None => return Err(e.to_string()),
            },
        };
        // Address: keccak("keel.wasm.create" ‖ deployer ‖ per-deployer counter), the counter
        // kept in the deployer account's storage so reverts roll it back too.
        let counter_slot = U256::from_be_slice(inputs.caller.as_slice());
        let journal = ctx.journal_mut();
        let counter = journal
            .sload(WASM_DEPLOYER, counter_slot)
            .map_err(|e| e.to_string())?
            .data;
        journal
            .sstore(WASM_DEPLOYER, counter_slot, counter + U256::from(1))
            .map_err(|e| e.to_string())?;
        // The deployer's nonce counts all WASM deploys. It also keeps the account non-empty:
        // an empty account (EIP-161) is deleted with its storage at the end of the
        // transaction, which would reset the counters above.
        journal
            .load_account_mut(WASM_DEPLOYER)
            .map_err(|e| e.to_string())?
            .data
            .bump_nonce();
        let new_address = Address::from_slice(
            &keccak256(
                [
                    b"keel.wasm.create".as_slice(),
                    inputs.caller.as_slice(),
                    &counter.to_be_bytes::<32>(),
                ]
                .concat(),
            )[12..],
        );
        let existing = journal
            .load_account_with_code(new_address)
            .map_err(|e| e.to_string())?;
        let occupied = existing.info.nonce != 0 || !existing.info.is_empty_code_hash();
        let storage_gone = existing.is_created() || existing.is_selfdestructed();
        // EIP-7610, as for EVM creations (`keel_exec_evm::KeelEvm`): storage collides too.
        let collides = occupied
            || (!storage_gone
                && journal
                    .db_mut()
                    .has_storage(&new_address)
                    .map_err(|e| e.to_string())?);
        if collides {
            return Ok(revert(
                cost,
                TxError::Execution {
                    code: ExecError::CreateCollision,
                },
            ));
        }
        let value = inputs.value.get();
        let checkpoint =
            match journal.create_account_checkpoint(WASM_DEPLOYER, new_address, value, SPEC) {
                Ok(checkpoint) => checkpoint,
                Err(e) => {
                    let code = match e {
                        TransferError::OutOfFunds => ExecError::OutOfFunds,
                        TransferError::OverflowPayment => ExecError::OverflowPayment,
                        TransferError::CreateCollision => ExecError::CreateCollision,
                    };
                    return Ok(revert(cost, TxError::Execution { code }));
                }
            };
        journal.set_code_with_hash(
            new_address,
            Bytecode::new_raw(code.clone().into()),
            code_hash,
        );
        let mut gas_used = cost;
        let has_constructor = compiled.exports().any(|e| e.name() == CONSTRUCTOR);
        if has_constructor {
            let mut frame = self.frame_context(ctx, inputs, new_address);
            frame.is_static = false;
            let outcome = self.run_frame(
                ctx,
                (module, code_hash),
                CONSTRUCTOR,
                frame,
                args.to_vec(),
                gas_limit - cost,
            )?;
            gas_used += outcome.gas_used;
            if outcome.exit != Exit::Return {
                ctx.journal_mut().checkpoint_revert(checkpoint);
                let mut result = to_interpreter_result(outcome, gas_limit - cost);
                // The deploy cost is spent in any case.
                result.gas = Gas::new(gas_limit);
                let _ = result.gas.record_regular_cost(gas_used.min(gas_limit));
                if result.result != InstructionResult::Revert {
                    result.gas.spend_all();
                }
                return Ok(result);
            }
        }
        ctx.journal_mut().checkpoint_commit();
        let mut gas = Gas::new(gas_limit);
        let _ = gas.record_regular_cost(gas_used.min(gas_limit));
        let mut output = [0u8; 32];
        output[12..].copy_from_slice(new_address.as_slice());
        Ok(InterpreterResult::new(
            InstructionResult::Return,
            Bytes::copy_from_slice(&output),
            gas,
        ))
    }
}

fn split_deploy_input(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(input.get(..4)?.try_into().ok()?) as usize;
    let module = input.get(4..4usize.checked_add(len)?)?;
    Some((module, &input[4 + len..]))
}

/// Deployer input for a module and its constructor arguments.
pub fn deploy_input(module: &[u8], args: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(4 + module.len() + args.len());
    input.extend_from_slice(&(module.len() as u32).to_be_bytes());
    input.extend_from_slice(module);
    input.extend_from_slice(args);
    input
}

fn failed(result: InstructionResult, gas_limit: u64) -> InterpreterResult {
    let mut gas = Gas::new(gas_limit);
    gas.spend_all();
    InterpreterResult::new(result, Bytes::new(), gas)
}

fn to_interpreter_result(outcome: Outcome, gas_limit: u64) -> InterpreterResult {
    let result = match &outcome.exit {
        Exit::Return => InstructionResult::Return,
        Exit::Revert => InstructionResult::Revert,
        Exit::OutOfGas => InstructionResult::OutOfGas,
        Exit::Trap(TrapKind::CallDepth | TrapKind::StackOverflow) => InstructionResult::CallTooDeep,
        Exit::Trap(TrapKind::StaticStateChange) => InstructionResult::StateChangeDuringStaticCall,
        Exit::Trap(_) => InstructionResult::PrecompileError,
    };
    let mut gas = Gas::new(gas_limit);
    if matches!(outcome.exit, Exit::Return | Exit::Revert) {
        let _ = gas.record_regular_cost(outcome.gas_used.min(gas_limit));
        if outcome.exit == Exit::Return {
            gas.record_refund(outcome.refund);
        }
        InterpreterResult::new(result, Bytes::from(outcome.output), gas)
    } else {
        gas.spend_all();
        InterpreterResult::new(result, Bytes::new(), gas)
    }
}

impl<'a> PrecompileProvider<KeelCtx<'a>> for KeelPrecompiles {
    type Output = InterpreterResult;

    fn set_spec(&mut self, spec: revm::primitives::hardfork::SpecId) -> bool {
        <EthPrecompiles as PrecompileProvider<KeelCtx<'a>>>::set_spec(&mut self.eth, spec)
    }

    fn run(
        &mut self,
        ctx: &mut KeelCtx<'a>,
        inputs: &CallInputs,
    ) -> Result<Option<InterpreterResult>, String> {
        // Every call frame, in either environment, passes its target's jurisdiction rules
        // first (the value is already moved: a denial reverts the frame and so the transfer).
        let target = keel_exec_evm::from_revm(&inputs.target_address);
        let caller = keel_exec_evm::from_revm(&inputs.caller);
        let height = ctx.block.number.saturating_to::<u64>();
        let value = match inputs.value {
            CallValue::Transfer(v) => keel_exec_evm::u256_from_revm(&v),
            CallValue::Apparent(_) => keel_types::U256::ZERO,
        };
        // The top frame is at journal depth 1 (its checkpoint is taken before this runs).
        let top = self.top_frame_checked && self.wasm_frames == 0 && ctx.journal().depth() == 1;
        let verdict = if top {
            // Loaded all the same: the check loads the contract's account in every other
            // frame and path (`eth_call` too), and a contract's first access to it must cost
            // what an estimate said (found by review: cold here, warm in `eth_call`).
            crate::jurisdiction::JurisdictionJournal(ctx).load_account()?;
            None
        } else {
            crate::jurisdiction::check_frame(
                &mut |s: &[u8; 32]| crate::jurisdiction::JurisdictionJournal(ctx).read(s),
                (&target, &caller),
                value,
                height,
            )?
        };
        if let Some(verdict) = verdict {
            return Ok(Some(crate::jurisdiction::denied_result(
                &verdict,
                (&target, &caller),
                inputs.gas_limit,
            )));
        }
        if inputs.bytecode_address == crate::jurisdiction::JURISDICTION {
            let input = inputs.input.bytes(ctx);
            let session_key_caller =
                self.tx_session_key != [0; 32] && inputs.caller == ctx.tx.caller;
            // Who may declare rules or plugins: an account without code (a transaction's
            // sender) or a contract in its constructor; later, only a contract that did so
            // (`crate::jurisdiction::Declarer`).
            let caller_account = ctx
                .journal_mut()
                .load_account_with_code(inputs.caller)
                .map_err(|e| e.to_string())?;
            let declarer = crate::jurisdiction::Declarer {
                created: caller_account.is_created(),
                codeless: caller_account
                    .info
                    .code
                    .as_ref()
                    .is_none_or(|code| code.is_empty()),
            };
            let call = crate::jurisdiction::Call {
                input: &input,
                caller,
                sends_value: matches!(inputs.value, CallValue::Transfer(v) if !v.is_zero()),
                is_static: inputs.is_static,
                session_key_caller,
                declarer,
                direct: inputs.target_address == crate::jurisdiction::JURISDICTION
                    && matches!(inputs.scheme, CallScheme::Call | CallScheme::StaticCall),
                gas_limit: inputs.gas_limit,
                height,
                attesters: &self.attesters,
                tx_session_key: self.tx_session_key,
                tx_session_scope: self.tx_session_scope,
            };
            return crate::jurisdiction::run(
                &mut crate::jurisdiction::JurisdictionJournal(ctx),
                &call,
            )
            .map(Some);
        }
        if inputs.bytecode_address == WASM_DEPLOYER {
            return self.deploy(ctx, inputs).map(Some);
        }
        if inputs.bytecode_address
            == keel_exec_evm::to_revm(&keel_types::validator::REGISTRY_ADDRESS)
        {
            let input = inputs.input.bytes(ctx);
            let view = ctx.db().view();
            return crate::registry_read::run(
                view,
                &input,
                // Only value actually sent (not DELEGATECALL's apparent value).
                matches!(inputs.value, revm::interpreter::CallValue::Transfer(v) if !v.is_zero()),
                inputs.gas_limit,
            )
            .map(Some);
        }
        // `Bytecode` shares its bytes: this clone is a reference count, not a copy of the
        // module (which `run_wasm` needs only on a cache miss).
        let code = inputs.known_bytecode.1.clone();
        if let Some(module) = wasm_module_of(code.original_byte_slice()) {
            return self.run_wasm(ctx, inputs, module).map(Some);
        }
        self.eth.run(ctx, inputs)
    }

    fn warm_addresses(&self) -> &AddressSet {
        self.eth.warm_addresses()
    }

    fn contains(&self, address: &Address) -> bool {
        self.eth.contains(address)
    }
}

/// Run one call as a fresh frame stack over `ctx`'s journal (WASM → anything). The context
/// is moved into a nested EVM for the duration and put back after; the nested frames get
/// their own memory, so the suspended EVM frames' memory is untouched.
fn nested_call(
    ctx: &mut KeelCtx<'_>,
    precompiles: KeelPrecompiles,
    inputs: CallInputs,
) -> Result<InterpreterResult, String> {
    let placeholder = Context::new(KeelDb::empty(), SPEC);
    let mut owned = std::mem::replace(ctx, placeholder);
    let outer_local = std::mem::take(&mut owned.local);
    let depth = owned.journal().depth();
    let memory = SharedMemory::new_with_buffer(owned.local().shared_memory_buffer().clone());
    let init = FrameInit {
        depth,
        memory,
        frame_input: FrameInput::Call(Box::new(inputs)),
    };
    let (result, mut owned) = match precompiles.tracer.clone() {
        None => {
            let mut evm = keel_exec_evm::evm_with_inspector(owned, precompiles, NoOpInspector);
            (run_frames(&mut evm, init, false), evm.into_ctx())
        }
        Some(tracer) => {
            let mut evm = keel_exec_evm::evm_with_inspector(owned, precompiles, tracer);
            (run_frames(&mut evm, init, true), evm.into_ctx())
        }
    };
    owned.local = outer_local;
    *ctx = owned;
    result
}

/// revm's frame loop over `evm`: through its inspector when `inspect` (a traced
/// transaction), without it otherwise.
fn run_frames<'a, I>(
    evm: &mut keel_exec_evm::KeelEvm<'a, KeelPrecompiles, I>,
    init: FrameInit,
    inspect: bool,
) -> Result<InterpreterResult, String>
where
    I: Inspector<KeelCtx<'a>, EthInterpreter>,
{
    let err = |e: revm::context_interface::context::ContextError<keel_exec_evm::DbError>| {
        format!("{e:?}")
    };
    let frame_init = |evm: &mut keel_exec_evm::KeelEvm<'a, KeelPrecompiles, I>, init| {
        if inspect {
            evm.inspect_frame_init(init).map(|r| r.map_item(|_| ()))
        } else {
            evm.frame_init(init).map(|r| r.map_item(|_| ()))
        }
    };
    let mut result = match frame_init(evm, init).map_err(err)? {
        ItemOrResult::Result(result) => result,
        ItemOrResult::Item(()) => loop {
            let next = if inspect {
                evm.inspect_frame_run()
            } else {
                evm.frame_run()
            };
            let result = match next.map_err(err)? {
                ItemOrResult::Item(init) => match frame_init(evm, init).map_err(err)? {
                    ItemOrResult::Item(()) => continue,
                    ItemOrResult::Result(result) => result,
                },
                ItemOrResult::Result(result) => result,
            };
            if let Some(result) = evm.frame_return_result(result).map_err(err)? {
                break result;
            }
        },
    };
    if let Err(e) = std::mem::replace(&mut evm.ctx().error, Ok(())) {
        return Err(format!("{e:?}"));
    }
    match &mut result {
        FrameResult::Call(outcome) => Ok(std::mem::replace(
            &mut outcome.result,
            InterpreterResult::new(InstructionResult::Stop, Bytes::new(), Gas::new(0)),
        )),
        FrameResult::Create(_) => Err("nested call returned a create result".into()),
    }
}

/// The WASM host over revm's journal.
struct RevmHost<'c, 'a> {
    ctx: &'c mut KeelCtx<'a>,
    address: Address,
    precompiles: KeelPrecompiles,
}

fn fatal(e: impl std::fmt::Display) -> HostError {
    HostError(e.to_string())
}

impl Host for RevmHost<'_, '_> {
    fn tx_session_scope(&mut self) -> [u8; keel_types::policy::SESSION_SCOPE_BYTES] {
        keel_types::policy::SessionScope::abi(self.precompiles.tx_session_scope.as_ref())
    }

    fn caller_tags(&mut self, caller: &[u8; 20]) -> Result<(Vec<[u8; 2]>, u64), HostError> {
        crate::jurisdiction::caller_tags(self.ctx, &keel_types::Address(*caller)).map_err(HostError)
    }

    fn storage_load(&mut self, slot: &[u8; 32]) -> Result<([u8; 32], u64), HostError> {
        let load = self
            .ctx
            .journal_mut()
            .sload(self.address, U256::from_be_bytes(*slot))
            .map_err(fatal)?;
        let cost = if load.is_cold {
            COLD_SLOAD
        } else {
            WARM_ACCESS
        };
        Ok((load.data.to_be_bytes::<32>(), cost))
    }

    fn storage_store(
        &mut self,
        slot: &[u8; 32],
        value: &[u8; 32],
        gas_left: u64,
    ) -> Result<Option<StoreCost>, HostError> {
        if gas_left <= CALL_STIPEND {
            return Ok(None);
        }
        let store = self
            .ctx
            .journal_mut()
            .sstore(
                self.address,
                U256::from_be_bytes(*slot),
                U256::from_be_bytes(*value),
            )
            .map_err(fatal)?;
        let params = self.ctx.cfg.gas_params.clone();
        let gas = params.sstore_static_gas()
            + params.sstore_dynamic_gas(true, &store.data, store.is_cold);
        let refund = params.sstore_refund(true, &store.data);
        Ok(Some(StoreCost { gas, refund }))
    }

    fn emit_log(&mut self, topics: Vec<[u8; 32]>, data: Vec<u8>) -> Result<(), HostError> {
        let topics = topics.into_iter().map(B256::from).collect();
        self.ctx.journal_mut().log(Log {
            address: self.address,
            data: LogData::new_unchecked(topics, Bytes::from(data)),
        });
        Ok(())
    }

    fn balance(&mut self, address: &[u8; 20]) -> Result<([u8; 32], u64), HostError> {
        let account = self
            .ctx
            .journal_mut()
            .load_account(Address::from(*address))
            .map_err(fatal)?;
        let cost = if account.is_cold {
            COLD_ACCOUNT_ACCESS
        } else {
            WARM_ACCESS
        };
        Ok((account.info.balance.to_be_bytes::<32>(), cost))
    }

    fn call(
        &mut self,
        request: CallRequest<'_>,
        gas_available: u64,
    ) -> Result<CallResult, HostError> {
        let to = Address::from(request.to);
        let value = U256::from_be_bytes(request.value);
        let (is_cold, is_empty, code_hash, code) = {
            let account = self
                .ctx
                .journal_mut()
                .load_account_with_code(to)
                .map_err(fatal)?;
            (
                account.is_cold,
                account.is_empty(),
                account.info.code_hash,
                account.info.code.clone().unwrap_or_default(),
            )
        };
        let mut cost = if is_cold {
            COLD_ACCOUNT_ACCESS
        } else {
            WARM_ACCESS
        };
        if !value.is_zero() {
            cost += CALL_VALUE;
            if is_empty {
                cost += NEW_ACCOUNT;
            }
        }
        if cost > gas_available {
            return Ok(CallResult {
                success: false,
                output: Vec::new(),
                gas_used: gas_available.saturating_add(1),
                refund: 0,
            });
        }
        let remaining = gas_available - cost;
        let max_forward = remaining - remaining / 64;
        let forward = match request.gas_requested {
            0 => max_forward,
            requested => requested.min(max_forward),
        };
        let stipend = if value.is_zero() { 0 } else { CALL_STIPEND };
        let inputs = CallInputs {
            input: CallInput::Bytes(Bytes::copy_from_slice(request.input)),
            return_memory_offset: 0..0,
            gas_limit: forward + stipend,
            reservoir: 0,
            bytecode_address: to,
            known_bytecode: (code_hash, code),
            target_address: to,
            caller: self.address,
            value: CallValue::Transfer(value),
            scheme: if request.is_static {
                CallScheme::StaticCall
            } else {
                CallScheme::Call
            },
            is_static: request.is_static,
            charged_new_account_state_gas: false,
        };
        let result = nested_call(self.ctx, self.precompiles.clone(), inputs).map_err(HostError)?;
        let success = result.result.is_ok();
        Ok(CallResult {
            success,
            output: result.output.to_vec(),
            gas_used: (cost + forward).saturating_sub(result.gas.remaining()),
            refund: if success { result.gas.refunded() } else { 0 },
        })
    }
}
