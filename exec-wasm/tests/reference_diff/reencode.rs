//! The re-encoders of the differential: keel's call-depth and metering instrumentation
//! written out as plain WASM for wasmi, and the explicit-`else` normalisation of generated
//! modules.

use super::*;

/// Re-encodes a module with the three globals keel's middlewares add (call depth, ink left,
/// exhausted flag — appended in that order, as `CallDepth` then `Metering` append them) and
/// the same instructions at the same points: `CallDepth` wraps calls; `Metering` sees the
/// wrapped stream, sums `operator_cost` per basic block and charges before each accounting
/// operator.
struct Instrument {
    /// Index of the first added global (= globals the module defines; it imports none).
    base: Option<u32>,
}

impl Instrument {
    fn base(&self) -> u32 {
        self.base.unwrap_or(0)
    }

    fn add_globals(&mut self, globals: &mut GlobalSection) {
        let mutable = |val_type| wasm_encoder::GlobalType {
            val_type,
            mutable: true,
            shared: false,
        };
        globals.global(
            mutable(wasm_encoder::ValType::I32),
            &ConstExpr::i32_const(0),
        );
        globals.global(
            mutable(wasm_encoder::ValType::I64),
            &ConstExpr::i64_const(0),
        );
        globals.global(
            mutable(wasm_encoder::ValType::I32),
            &ConstExpr::i32_const(0),
        );
    }

    fn feed<'a>(
        &mut self,
        f: &mut Function,
        accumulated: &mut u64,
        op: Operator<'a>,
    ) -> Result<(), ReencodeError<std::convert::Infallible>> {
        *accumulated += operator_cost(&op);
        let accounting = matches!(
            op,
            Operator::Loop { .. }
                | Operator::End
                | Operator::If { .. }
                | Operator::Else
                | Operator::Br { .. }
                | Operator::BrTable { .. }
                | Operator::BrIf { .. }
                | Operator::Call { .. }
                | Operator::CallIndirect { .. }
                | Operator::Return
        );
        if accounting && *accumulated > 0 {
            let (ink, exhausted) = (self.base() + 1, self.base() + 2);
            let cost = *accumulated as i64;
            for i in [
                Instruction::GlobalGet(ink),
                Instruction::I64Const(cost),
                Instruction::I64LtU,
                Instruction::If(BlockType::Empty),
                Instruction::I32Const(1),
                Instruction::GlobalSet(exhausted),
                Instruction::Unreachable,
                Instruction::End,
                Instruction::GlobalGet(ink),
                Instruction::I64Const(cost),
                Instruction::I64Sub,
                Instruction::GlobalSet(ink),
            ] {
                f.instruction(&i);
            }
            *accumulated = 0;
        }
        f.instruction(&self.instruction(op)?);
        Ok(())
    }
}

fn depth_wrap(depth: u32) -> (Vec<Operator<'static>>, Vec<Operator<'static>>) {
    let g = |global_index| Operator::GlobalGet { global_index };
    let s = |global_index| Operator::GlobalSet { global_index };
    let before = vec![
        g(depth),
        Operator::I32Const { value: 1 },
        Operator::I32Add,
        s(depth),
        g(depth),
        Operator::I32Const {
            value: MAX_CALL_DEPTH as i32,
        },
        Operator::I32GtU,
        Operator::If {
            blockty: wasmparser::BlockType::Empty,
        },
        Operator::Unreachable,
        Operator::End,
    ];
    let after = vec![
        g(depth),
        Operator::I32Const { value: 1 },
        Operator::I32Sub,
        s(depth),
    ];
    (before, after)
}

impl Reencode for Instrument {
    type Error = std::convert::Infallible;

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        self.base = Some(section.count());
        utils::parse_global_section(self, globals, section)?;
        self.add_globals(globals);
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        let past_globals = before.is_none_or(|b| {
            matches!(
                b,
                SectionId::Export
                    | SectionId::Start
                    | SectionId::Element
                    | SectionId::DataCount
                    | SectionId::Code
                    | SectionId::Data
            )
        });
        if self.base.is_none() && past_globals {
            self.base = Some(0);
            let mut globals = GlobalSection::new();
            self.add_globals(&mut globals);
            module.section(&globals);
        }
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        utils::parse_export_section(self, exports, section)?;
        let base = self.base();
        exports.export(DEPTH_GLOBAL_EXPORT, ExportKind::Global, base);
        exports.export(INK_EXPORT, ExportKind::Global, base + 1);
        exports.export(EXHAUSTED_EXPORT, ExportKind::Global, base + 2);
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: wasmparser::FunctionBody<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        let mut f = self.new_function_with_parsed_locals(&func)?;
        let mut reader = func.get_operators_reader()?;
        let (before, after) = depth_wrap(self.base());
        let mut accumulated = 0u64;
        while !reader.eof() {
            let op = reader.read()?;
            let is_call = matches!(op, Operator::Call { .. } | Operator::CallIndirect { .. });
            if is_call {
                for o in &before {
                    self.feed(&mut f, &mut accumulated, o.clone())?;
                }
            }
            self.feed(&mut f, &mut accumulated, op)?;
            if is_call {
                for o in &after {
                    self.feed(&mut f, &mut accumulated, o.clone())?;
                }
            }
        }
        code.function(&f);
        Ok(())
    }
}

pub(super) fn instrument(code: &[u8]) -> Vec<u8> {
    let mut module = wasm_encoder::Module::new();
    Instrument { base: None }
        .parse_core_module(&mut module, wasmparser::Parser::new(0), code)
        .expect("re-encode");
    module.finish()
}

/// Gives every `if` with block parameters an explicit empty `else` (the same semantics: the
/// implicit else passes the parameters through). keel refuses the implicit form because
/// singlepass miscompiles it (`if_with_params_without_else_is_refused_…` below), and
/// wasm-smith emits it often, so generated modules are normalised before the comparison.
struct AddElse {
    params_of_type: Vec<usize>,
}

impl Reencode for AddElse {
    type Error = std::convert::Infallible;

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: wasmparser::FunctionBody<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        let mut f = self.new_function_with_parsed_locals(&func)?;
        let mut reader = func.get_operators_reader()?;
        let mut frames: Vec<bool> = Vec::new();
        while !reader.eof() {
            let op = reader.read()?;
            match &op {
                Operator::Block { .. } | Operator::Loop { .. } => frames.push(false),
                Operator::If { blockty } => frames.push(matches!(
                    blockty,
                    wasmparser::BlockType::FuncType(t) if self.params_of_type.get(*t as usize).is_some_and(|n| *n > 0)
                )),
                Operator::Else => {
                    if let Some(top) = frames.last_mut() {
                        *top = false;
                    }
                }
                Operator::End => {
                    let implicit_else = frames.pop() == Some(true);
                    if implicit_else {
                        f.instruction(&Instruction::Else);
                    }
                }
                _ => {}
            }
            f.instruction(&self.instruction(op)?);
        }
        code.function(&f);
        Ok(())
    }
}

pub(super) fn add_else(code: &[u8]) -> Vec<u8> {
    let mut params_of_type = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(code) {
        if let Ok(wasmparser::Payload::TypeSection(reader)) = payload {
            for group in reader.into_iter().flatten() {
                for sub in group.into_types() {
                    if let wasmparser::CompositeInnerType::Func(f) = &sub.composite_type.inner {
                        params_of_type.push(f.params().len());
                    }
                }
            }
        }
    }
    let mut module = wasm_encoder::Module::new();
    AddElse { params_of_type }
        .parse_core_module(&mut module, wasmparser::Parser::new(0), code)
        .expect("re-encode");
    module.finish()
}
