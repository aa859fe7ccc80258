//! Running any export of a host-free module under keel's metering and trap classification.
//!
//! Contracts run through [`crate::execute`] with the host API and the `call(i32) -> i32` entry.
//! Reference differentials (and tooling) need more: call arbitrary exports with arbitrary
//! integer arguments, see the results, and compare memory and ink afterwards. This runner
//! uses the same compiled module, the same metering globals and the same `classify` as
//! `execute`, so what it reports is what keel would do.

use crate::exec::{classify, Exit, HostError, EXHAUSTED_EXPORT, INK_EXPORT};
use crate::meter::DEPTH_GLOBAL_EXPORT;
use wasmer::{imports, Engine, Global, Instance, Memory, Module, Store, Value};

/// An integer argument or result (keel modules have no floats or references).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntValue {
    I32(i32),
    I64(i64),
}

/// How one export call ended, and the ink the metering charged for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportCall {
    /// `Ok(results)` on return; otherwise the exit keel would report.
    pub result: Result<Vec<IntValue>, Exit>,
    /// Ink charged: the metering global's start value minus its value afterwards.
    pub ink_used: u64,
}

/// Why an instance could not be created or driven.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("instantiation failed: {0}")]
    Instantiate(String),
    #[error("the module lacks keel's metering globals (was it compiled with keel_middlewares?)")]
    NotMetered,
    #[error("no function export `{0}`")]
    NoSuchExport(String),
    #[error("argument or result of a non-integer type")]
    NonInteger,
    #[error(transparent)]
    Host(#[from] HostError),
}

/// One instance of a host-free module compiled with [`crate::meter::keel_middlewares`].
#[derive(Debug)]
pub struct StandaloneInstance {
    store: Store,
    instance: Instance,
    ink: Global,
    exhausted: Global,
    depth: Option<Global>,
}

fn to_value(v: IntValue) -> Value {
    match v {
        IntValue::I32(x) => Value::I32(x),
        IntValue::I64(x) => Value::I64(x),
    }
}

impl StandaloneInstance {
    /// Instantiates `module` (which must import nothing) in a fresh store of `engine`.
    pub fn new(engine: &Engine, module: &Module) -> Result<Self, StandaloneError> {
        let mut store = Store::new(engine.clone());
        let instance = Instance::new(&mut store, module, &imports! {})
            .map_err(|e| StandaloneError::Instantiate(e.to_string()))?;
        let global = |name: &str| instance.exports.get_global(name).cloned().ok();
        let (Some(ink), Some(exhausted)) = (global(INK_EXPORT), global(EXHAUSTED_EXPORT)) else {
            return Err(StandaloneError::NotMetered);
        };
        let depth = global(DEPTH_GLOBAL_EXPORT);
        Ok(StandaloneInstance {
            store,
            instance,
            ink,
            exhausted,
            depth,
        })
    }

    /// Calls `export` with `args` and a budget of `ink_limit` ink. State (memory, globals,
    /// tables) carries over between calls, as it would within one frame.
    pub fn call(
        &mut self,
        export: &str,
        args: &[IntValue],
        ink_limit: u64,
    ) -> Result<ExportCall, StandaloneError> {
        let function = self
            .instance
            .exports
            .get_function(export)
            .map_err(|_| StandaloneError::NoSuchExport(export.to_string()))?
            .clone();
        // Metering compares the budget unsigned, so the bit pattern is what matters.
        self.ink
            .set(&mut self.store, Value::I64(ink_limit as i64))
            .map_err(|_| StandaloneError::NotMetered)?;
        let params: Vec<Value> = args.iter().copied().map(to_value).collect();
        let outcome = function.call(&mut self.store, &params);
        let left = match self.ink.get(&mut self.store) {
            Value::I64(v) => v as u64,
            _ => return Err(StandaloneError::NotMetered),
        };
        let ink_used = ink_limit.saturating_sub(left);
        let result = match outcome {
            Ok(values) => Ok(values
                .iter()
                .map(|v| match v {
                    Value::I32(x) => Ok(IntValue::I32(*x)),
                    Value::I64(x) => Ok(IntValue::I64(*x)),
                    _ => Err(StandaloneError::NonInteger),
                })
                .collect::<Result<Vec<_>, _>>()?),
            Err(error) => {
                let exhausted = matches!(self.exhausted.get(&mut self.store), Value::I32(1));
                let depth = self
                    .depth
                    .as_ref()
                    .and_then(|g| match g.get(&mut self.store) {
                        Value::I32(d) => Some(d as u32),
                        _ => None,
                    });
                Err(classify(error, exhausted, depth)?)
            }
        };
        Ok(ExportCall { result, ink_used })
    }

    /// The bytes of the exported memory `name`, if there is one.
    pub fn memory(&self, name: &str) -> Option<Vec<u8>> {
        let memory: &Memory = self.instance.exports.get_memory(name).ok()?;
        Some(memory.view(&self.store).copy_to_vec().unwrap_or_default())
    }

    /// The value of the exported integer global `name`.
    pub fn global(&mut self, name: &str) -> Option<IntValue> {
        let global = self.instance.exports.get_global(name).ok()?.clone();
        match global.get(&mut self.store) {
            Value::I32(x) => Some(IntValue::I32(x)),
            Value::I64(x) => Some(IntValue::I64(x)),
            _ => None,
        }
    }
}
