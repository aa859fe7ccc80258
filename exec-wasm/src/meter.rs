//! Gas metering and call-depth instrumentation, both injected at compile time.
//!
//! Metering: wasmer-middlewares' `Metering` charges each basic block the sum of its operators'
//! costs from [`operator_cost`], in *ink*: [`INK_PER_GAS`] ink make one EVM gas, so WASM and EVM
//! frames spend one budget. Call depth: [`CallDepth`] adds a counter global and wraps every
//! `call`/`call_indirect` in increment / check / decrement, trapping past
//! [`MAX_CALL_DEPTH`]: with locals and operand stack bounded at validation, this bounds the
//! native stack a frame can use on every machine, so "too deep" is a deterministic outcome.

use crate::limits::MAX_CALL_DEPTH;
use std::sync::{Arc, Mutex};
use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::Operator;
use wasmer::ExportIndex;
use wasmer::{GlobalInit, GlobalType, LocalFunctionIndex, ModuleInfo, Mutability, Type};
use wasmer_middlewares::Metering;

/// keel's compile-time instrumentation, in order: call depth first, then metering, so the
/// depth counter's own instructions are metered too. Fresh instances per module (both
/// middlewares record the indices of the globals they add). Any compiler configured with
/// these runs a module exactly as keel charges it — the reference differential compiles
/// with cranelift this way and compares against singlepass.
pub fn keel_middlewares() -> [Arc<dyn ModuleMiddleware>; 2] {
    [
        Arc::new(CallDepth::default()),
        Arc::new(Metering::new(0, operator_cost)),
    ]
}

/// Ink per EVM gas unit: ink is the finer unit so that cheap operators can be priced below
/// one gas without rounding.
pub const INK_PER_GAS: u64 = 1_000;

/// Name under which the depth counter global is exported (for diagnosis after a trap).
pub const DEPTH_GLOBAL_EXPORT: &str = "keel_call_depth";

/// The per-operator cost table, in ink (docs/wasm-host-api.md lists the same classes).
///
/// Calibrated so that WASM gas means the same wall time as EVM gas (as Stylus prices ink):
/// `cargo bench --profile ci --workspace --bench execution` measures the marginal ns per gas
/// of compute-, memory- and host-call-heavy loops in both environments, and this table puts
/// WASM's within 0.5–2× of the EVM's on each (BENCHMARKS.md, "Gas that means time"). The
/// first table (≈ 5–15× cheaper in time than EVM gas) let a block at the gas limit of WASM
/// compute run ≈ 5× longer than one of EVM compute. Why the classes differ so much: the
/// costly WASM programs are latency-bound chains (each operator waits for the one before),
/// where a multiply costs 3–4 cycles and a division 20–40, while constants and locals mostly
/// compile to immediates and registers. Pricing the chain's critical operators high keeps
/// the cheapest-per-gas program an attacker can write within the bound.
pub fn operator_cost(op: &Operator) -> u64 {
    use Operator::*;
    match op {
        // Structure, constants and locals: mostly free once compiled, never zero so empty
        // loops still pay.
        Nop
        | Drop
        | Block { .. }
        | Loop { .. }
        | End
        | Else
        | I32Const { .. }
        | I64Const { .. }
        | LocalGet { .. }
        | LocalSet { .. }
        | LocalTee { .. } => 25,
        GlobalGet { .. } | GlobalSet { .. } | Select => 50,
        // Branches pay for the metering check each basic block carries.
        Br { .. } | BrIf { .. } | If { .. } | Return | Unreachable => 150,
        BrTable { targets } => 150 + 10 * u64::from(targets.len()),
        Call { .. } => 500,
        CallIndirect { .. } => 750,
        // Memory.
        I32Load { .. }
        | I64Load { .. }
        | I32Load8S { .. }
        | I32Load8U { .. }
        | I32Load16S { .. }
        | I32Load16U { .. }
        | I64Load8S { .. }
        | I64Load8U { .. }
        | I64Load16S { .. }
        | I64Load16U { .. }
        | I64Load32S { .. }
        | I64Load32U { .. } => 125,
        I32Store { .. }
        | I64Store { .. }
        | I32Store8 { .. }
        | I32Store16 { .. }
        | I64Store8 { .. }
        | I64Store16 { .. }
        | I64Store32 { .. } => 150,
        MemorySize { .. } => 50,
        // Growth zero-fills up to the declared maximum; priced high per call.
        MemoryGrow { .. } => 1_000_000,
        // Arithmetic: multiplies and divisions are the long-latency links of a dependent chain.
        I32Mul | I64Mul => 900,
        I32DivS | I32DivU | I32RemS | I32RemU | I64DivS | I64DivU | I64RemS | I64RemU => 3_000,
        _ => 40,
    }
}

/// Injects the call-depth counter. One instance per compiled module (it records the index of
/// the global it added).
#[derive(Debug, Default)]
pub struct CallDepth {
    global: Mutex<Option<u32>>,
}

impl ModuleMiddleware for CallDepth {
    fn generate_function_middleware<'a>(
        &self,
        _: LocalFunctionIndex,
    ) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let global = self
            .global
            .lock()
            .map(|g| g.unwrap_or(u32::MAX))
            .unwrap_or(u32::MAX);
        Box::new(FunctionCallDepth { global })
    }

    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let index = info
            .globals
            .push(GlobalType::new(Type::I32, Mutability::Var));
        info.global_initializers.push(GlobalInit::I32Const(0));
        info.exports
            .insert(DEPTH_GLOBAL_EXPORT.to_string(), ExportIndex::Global(index));
        let mut slot = self
            .global
            .lock()
            .map_err(|_| MiddlewareError::new("CallDepth", "poisoned lock"))?;
        if slot.is_some() {
            return Err(MiddlewareError::new(
                "CallDepth",
                "one CallDepth instance per module",
            ));
        }
        *slot = Some(index.as_u32());
        Ok(())
    }
}

#[derive(Debug)]
struct FunctionCallDepth {
    global: u32,
}

impl<'a> FunctionMiddleware<'a> for FunctionCallDepth {
    fn feed(
        &mut self,
        operator: Operator<'a>,
        state: &mut MiddlewareReaderState<'a>,
    ) -> Result<(), MiddlewareError> {
        let is_call = matches!(
            operator,
            Operator::Call { .. } | Operator::CallIndirect { .. }
        );
        if !is_call {
            state.push_operator(operator);
            return Ok(());
        }
        let global_index = self.global;
        state.extend(&[
            Operator::GlobalGet { global_index },
            Operator::I32Const { value: 1 },
            Operator::I32Add,
            Operator::GlobalSet { global_index },
            Operator::GlobalGet { global_index },
            Operator::I32Const {
                value: MAX_CALL_DEPTH as i32,
            },
            Operator::I32GtU,
            Operator::If {
                blockty: wasmer::wasmparser::BlockType::Empty,
            },
            Operator::Unreachable,
            Operator::End,
        ]);
        state.push_operator(operator);
        state.extend(&[
            Operator::GlobalGet { global_index },
            Operator::I32Const { value: 1 },
            Operator::I32Sub,
            Operator::GlobalSet { global_index },
        ]);
        Ok(())
    }
}
