//! The one place keel assembles a revm EVM. The block executor, the cross-environment
//! bridge's nested calls and the state-test runner all build theirs here, so the instruction
//! table, the frame stack and the context type cannot drift apart between them.

use crate::db::KeelDb;
use revm::context::{BlockEnv, CfgEnv, Context, Evm, FrameStack, Journal, TxEnv};
use revm::handler::instructions::EthInstructions;
use revm::handler::{EthFrame, EthPrecompiles, PrecompileProvider};
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::InterpreterResult;

/// Frames preallocated per EVM (revm's own default for mainnet builds).
const FRAME_STACK_PREALLOC: usize = 8;

/// revm's context over keel's state.
pub type KeelCtx<'a> = Context<BlockEnv, TxEnv, CfgEnv, KeelDb<'a>, Journal<KeelDb<'a>>, ()>;

/// A revm EVM over keel's state with precompile provider `P` (the Ethereum set, or the
/// runtime's set that also dispatches to WASM) and inspector `I` (none, or a tracer; revm
/// calls it only on its `inspect_*` paths, so an EVM that is not traced pays nothing).
pub type KeelEvm<'a, P = EthPrecompiles, I = ()> =
    Evm<KeelCtx<'a>, I, EthInstructions<EthInterpreter, KeelCtx<'a>>, P, EthFrame<EthInterpreter>>;

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

/// [`evm`] with `inspector`, which sees every frame when the EVM runs through revm's
/// `inspect_*` entry points (the call tracer of `debug_traceTransaction`).
pub fn evm_with_inspector<'a, P, I>(
    ctx: KeelCtx<'a>,
    precompiles: P,
    inspector: I,
) -> KeelEvm<'a, P, I>
where
    P: PrecompileProvider<KeelCtx<'a>, Output = InterpreterResult>,
{
    let spec = ctx.cfg.spec;
    Evm {
        ctx,
        inspector,
        instruction: EthInstructions::new_mainnet_with_spec(spec),
        precompiles,
        frame_stack: FrameStack::new_prealloc(FRAME_STACK_PREALLOC),
    }
}

/// The EVM over `ctx` with Ethereum's precompiles for its spec (the state-test runner).
pub fn eth_evm(ctx: KeelCtx<'_>) -> KeelEvm<'_> {
    let precompiles = EthPrecompiles::new(ctx.cfg.spec);
    evm(ctx, precompiles)
}
