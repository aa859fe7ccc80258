//! The one place keel assembles a revm EVM. The block executor, the cross-environment
//! bridge's nested calls and the state-test runner all build theirs here, so the instruction
//! table, the frame stack and the context type cannot drift apart between them.

use crate::db::{DbError, KeelDb};
use revm::context::result::{EVMError, ExecResultAndState, ExecutionResult, HaltReason};
use revm::context::{BlockEnv, CfgEnv, Context, ContextSetters, Evm, FrameStack, Journal, TxEnv};
use revm::context_interface::context::ContextError;
use revm::context_interface::journaled_state::account::JournaledAccountTr;
use revm::context_interface::{ContextTr, JournalTr};
use revm::handler::evm::{ContextDbError, FrameInitResult};
use revm::handler::instructions::EthInstructions;
use revm::handler::{
    EthFrame, EthPrecompiles, EvmTr, FrameInitOrResult, FrameResult, Handler, ItemOrResult,
    MainnetHandler, PrecompileProvider,
};
use revm::inspector::{Inspector, InspectorEvmTr, InspectorHandler};
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::interpreter_action::FrameInit;
use revm::interpreter::{
    CreateInputs, CreateOutcome, FrameInput, Gas, InstructionResult, InterpreterResult,
};
use revm::primitives::constants::CALL_STACK_LIMIT;
use revm::primitives::{Bytes, KECCAK_EMPTY};
use revm::state::EvmState;

/// revm's context over keel's state.
pub type KeelCtx<'a> = Context<BlockEnv, TxEnv, CfgEnv, KeelDb<'a>, Journal<KeelDb<'a>>, ()>;

/// revm's EVM type under keel's context.
type Inner<'a, P, I> =
    Evm<KeelCtx<'a>, I, EthInstructions<EthInterpreter, KeelCtx<'a>>, P, EthFrame<EthInterpreter>>;

/// A revm EVM over keel's state with precompile provider `P` (the Ethereum set, or the
/// runtime's set that also dispatches to WASM) and inspector `I` (none, or a tracer; revm
/// calls it only on its `inspect_*` paths, so an EVM that is not traced pays nothing).
///
/// It is revm's `Evm` plus one rule revm leaves out: EIP-7610. A creation whose target
/// address holds storage (but no code and a zero nonce, which revm already refuses) fails
/// as a collision, exactly as revm fails the others: the creator's nonce is used, the
/// frame's gas is spent, nothing is created. revm cannot see storage it has not loaded;
/// keel's state counts each address's slots, so the check is one read.
pub struct KeelEvm<'a, P = EthPrecompiles, I = ()> {
    pub inner: Inner<'a, P, I>,
}

impl<P, I> std::fmt::Debug for KeelEvm<'_, P, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeelEvm")
    }
}

impl<'a, P, I> KeelEvm<'a, P, I>
where
    P: PrecompileProvider<KeelCtx<'a>, Output = InterpreterResult>,
{
    /// The context (state, journal, environment).
    pub fn ctx(&mut self) -> &mut KeelCtx<'a> {
        &mut self.inner.ctx
    }

    /// Takes the EVM apart into its context.
    pub fn into_ctx(self) -> KeelCtx<'a> {
        self.inner.ctx
    }

    /// Runs `tx` and returns its result and state changes (revm's `ExecuteEvm::transact`,
    /// through keel's frame rules).
    pub fn transact(&mut self, tx: TxEnv) -> Result<EvmOutcome, EVMError<DbError>> {
        self.run_tx(tx, |handler, evm| handler.run(evm))
    }

    /// [`Self::transact`] with the inspector watching every frame.
    pub fn inspect_tx(&mut self, tx: TxEnv) -> Result<EvmOutcome, EVMError<DbError>>
    where
        I: Inspector<KeelCtx<'a>, EthInterpreter>,
    {
        self.run_tx(tx, |handler, evm| handler.inspect_run(evm))
    }

    /// Sets `tx`, runs revm's mainnet handler through `run`, and finalizes the journal
    /// whatever the outcome (so nothing leaks into the next transaction), as revm does.
    fn run_tx(
        &mut self,
        tx: TxEnv,
        run: impl FnOnce(
            &mut MainnetHandler<Self, EVMError<DbError>, EthFrame<EthInterpreter>>,
            &mut Self,
        ) -> Result<ExecutionResult<HaltReason>, EVMError<DbError>>,
    ) -> Result<EvmOutcome, EVMError<DbError>> {
        self.inner.ctx.set_tx(tx);
        let result = run(&mut MainnetHandler::default(), self);
        let state = self.inner.ctx.journal_mut().finalize();
        result.map(|result| ExecResultAndState::new(result, state))
    }
}

/// What a transaction did: its result and the accounts it changed.
pub type EvmOutcome = ExecResultAndState<ExecutionResult<HaltReason>, EvmState>;

impl<'a, P, I> EvmTr for KeelEvm<'a, P, I>
where
    P: PrecompileProvider<KeelCtx<'a>, Output = InterpreterResult>,
{
    type Context = KeelCtx<'a>;
    type Instructions = EthInstructions<EthInterpreter, KeelCtx<'a>>;
    type Precompiles = P;
    type Frame = EthFrame<EthInterpreter>;

    fn all(
        &self,
    ) -> (
        &Self::Context,
        &Self::Instructions,
        &Self::Precompiles,
        &FrameStack<Self::Frame>,
    ) {
        self.inner.all()
    }

    fn all_mut(
        &mut self,
    ) -> (
        &mut Self::Context,
        &mut Self::Instructions,
        &mut Self::Precompiles,
        &mut FrameStack<Self::Frame>,
    ) {
        self.inner.all_mut()
    }

    fn frame_init(
        &mut self,
        init: FrameInit,
    ) -> Result<FrameInitResult<'_, Self::Frame>, ContextDbError<Self::Context>> {
        if let FrameInput::Create(inputs) = &init.frame_input {
            if let Some(collision) = storage_collision(&mut self.inner.ctx, init.depth, inputs)? {
                return Ok(ItemOrResult::Result(collision));
            }
        }
        self.inner.frame_init(init)
    }

    fn frame_run(
        &mut self,
    ) -> Result<FrameInitOrResult<Self::Frame>, ContextDbError<Self::Context>> {
        self.inner.frame_run()
    }

    fn frame_return_result(
        &mut self,
        result: FrameResult,
    ) -> Result<Option<FrameResult>, ContextDbError<Self::Context>> {
        self.inner.frame_return_result(result)
    }
}

impl<'a, P, I> InspectorEvmTr for KeelEvm<'a, P, I>
where
    P: PrecompileProvider<KeelCtx<'a>, Output = InterpreterResult>,
    I: Inspector<KeelCtx<'a>, EthInterpreter>,
{
    type Inspector = I;

    fn all_inspector(
        &self,
    ) -> (
        &Self::Context,
        &Self::Instructions,
        &Self::Precompiles,
        &FrameStack<Self::Frame>,
        &Self::Inspector,
    ) {
        self.inner.all_inspector()
    }

    fn all_mut_inspector(
        &mut self,
    ) -> (
        &mut Self::Context,
        &mut Self::Instructions,
        &mut Self::Precompiles,
        &mut FrameStack<Self::Frame>,
        &mut Self::Inspector,
    ) {
        self.inner.all_mut_inspector()
    }
}

/// EIP-7610's collision, decided before revm builds the frame: `Some` (the failed frame's
/// result) when the creation would otherwise go ahead and its target holds storage. The
/// checks revm makes first (depth, balance, nonce overflow) and its own collision (code or
/// a nonce at the target) are left to revm, so each failure keeps revm's exact shape.
fn storage_collision(
    ctx: &mut KeelCtx<'_>,
    depth: usize,
    inputs: &CreateInputs,
) -> Result<Option<FrameResult>, ContextDbError<KeelCtx<'static>>> {
    if depth > CALL_STACK_LIMIT as usize {
        return Ok(None);
    }
    let journal = ctx.journal_mut();
    let caller = journal
        .load_account(inputs.caller())
        .map_err(ContextError::Db)?;
    let nonce = caller.data.info.nonce;
    if caller.data.info.balance < inputs.value() || nonce == u64::MAX {
        return Ok(None);
    }
    let target_address = inputs.created_address(nonce);
    let target = journal
        .load_account(target_address)
        .map_err(ContextError::Db)?
        .data;
    // Created or destroyed in this transaction: what the database holds for it is gone.
    let storage_gone = target.is_created() || target.is_selfdestructed();
    if target.info.code_hash != KECCAK_EMPTY || target.info.nonce != 0 || storage_gone {
        return Ok(None);
    }
    if !journal
        .db_mut()
        .has_storage(&target_address)
        .map_err(ContextError::Db)?
    {
        return Ok(None);
    }
    // As in revm's own collision: the creator's nonce is used, the frame's gas is spent.
    journal
        .load_account_mut(inputs.caller())
        .map_err(ContextError::Db)?
        .data
        .bump_nonce();
    Ok(Some(FrameResult::Create(CreateOutcome {
        result: InterpreterResult {
            result: InstructionResult::CreateCollision,
            gas: Gas::new_with_regular_gas_and_reservoir(inputs.gas_limit(), inputs.reservoir()),
            output: Bytes::new(),
        },
        address: None,
        charged_create_state_gas: inputs.charged_create_state_gas(),
    })))
}

/// A context reading `db` under `cfg` (which carries the spec) in `block`.
pub fn context(db: KeelDb<'_>, cfg: CfgEnv, block: BlockEnv) -> KeelCtx<'_> {
    let mut ctx: KeelCtx<'_> = Context::new(db, cfg.spec);
    ctx.cfg = cfg;
    ctx.block = block;
    ctx
}

/// The EVM over `ctx` with the mainnet instruction table of `ctx`'s spec and `precompiles`.
pub fn evm<'a, P>(ctx: KeelCtx<'a>, precompiles: P) -> KeelEvm<'a, P>
where
    P: PrecompileProvider<KeelCtx<'a>, Output = InterpreterResult>,
{
    evm_with_inspector(ctx, precompiles, ())
}

/// [`evm`] with `inspector`, which sees every frame when the EVM runs through
/// [`KeelEvm::inspect_tx`] or revm's `inspect_*` frame functions.
pub fn evm_with_inspector<'a, P, I>(
    ctx: KeelCtx<'a>,
    precompiles: P,
    inspector: I,
) -> KeelEvm<'a, P, I>
where
    P: PrecompileProvider<KeelCtx<'a>, Output = InterpreterResult>,
{
    let spec = ctx.cfg.spec;
    KeelEvm {
        inner: Evm {
            ctx,
            inspector,
            instruction: EthInstructions::new_mainnet_with_spec(spec),
            precompiles,
            // Frames are made as calls need them (revm reserves room for 8), not all 8 up
            // front: each holds a 32 KiB stack, and keel builds one EVM per transaction, so
            // preallocating cost every transaction 8 allocations and frees of 36 KiB (a fifth
            // of a native transfer's execution in a profile, which needs no frame at all).
            frame_stack: FrameStack::new(),
        },
    }
}

/// The EVM over `ctx` with Ethereum's precompiles for its spec (the state-test runner).
pub fn eth_evm(ctx: KeelCtx<'_>) -> KeelEvm<'_> {
    let precompiles = EthPrecompiles::new(ctx.cfg.spec);
    evm(ctx, precompiles)
}
