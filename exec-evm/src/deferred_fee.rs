//! A transaction run without crediting the block's beneficiary, which reports the fee it
//! owes instead. The parallel executor runs transactions this way: every transaction pays
//! the same beneficiary, so crediting inside each one would make all of them conflict on
//! one account (pevm defers the beneficiary the same way). The executor credits the fee
//! when it commits the transaction, in block order, with the result serial execution gives.

use crate::db::DbError;
use crate::evm::{EvmOutcome, KeelCtx, KeelEvm};
use revm::context::result::{EVMError, ExecResultAndState, HaltReason};
use revm::context::{ContextSetters, TxEnv};
use revm::context_interface::{Block, Cfg, ContextTr, JournalTr, Transaction};
use revm::handler::{post_execution, FrameResult, Handler, PrecompileProvider};
use revm::interpreter::InterpreterResult;
use revm::primitives::hardfork::SpecId;
use std::cell::Cell;

/// revm's mainnet handler with the beneficiary's credit taken out and remembered.
struct DeferFee<EVM> {
    /// The fee the beneficiary is owed, once revm computed it.
    owed: Cell<Option<u128>>,
    _evm: std::marker::PhantomData<EVM>,
}

impl<'a, P> Handler for DeferFee<KeelEvm<'a, P>>
where
    P: PrecompileProvider<KeelCtx<'a>, Output = InterpreterResult>,
{
    type Evm = KeelEvm<'a, P>;
    type Error = EVMError<DbError>;
    type HaltReason = HaltReason;

    /// revm's `post_execution::reward_beneficiary`, with the credit replaced by a record of
    /// its amount. A fee whose product overflows is credited as revm credits it (the
    /// executor then sees the beneficiary among the transaction's reads and runs it
    /// serially).
    fn reward_beneficiary(
        &self,
        evm: &mut Self::Evm,
        exec_result: &mut FrameResult,
    ) -> Result<(), Self::Error> {
        let ctx = evm.ctx();
        if ctx.cfg().is_fee_charge_disabled() {
            return Ok(());
        }
        let basefee = u128::from(ctx.block().basefee());
        let effective_gas_price = ctx.tx().effective_gas_price(basefee);
        let spec: SpecId = ctx.cfg.spec;
        let coinbase_gas_price = if spec.is_enabled_in(SpecId::LONDON) {
            effective_gas_price.saturating_sub(basefee)
        } else {
            effective_gas_price
        };
        let gas = exec_result.gas();
        let effective_used = gas.used().saturating_sub(gas.reservoir());
        match coinbase_gas_price.checked_mul(u128::from(effective_used)) {
            Some(fee) => {
                self.owed.set(Some(fee));
                Ok(())
            }
            None => {
                post_execution::reward_beneficiary(evm.ctx(), exec_result.gas()).map_err(From::from)
            }
        }
    }
}

impl<'a, P> KeelEvm<'a, P>
where
    P: PrecompileProvider<KeelCtx<'a>, Output = InterpreterResult>,
{
    /// [`KeelEvm::transact`] without the beneficiary's credit: also returns the fee it owes
    /// (`None` if none was computed: the transaction was invalid, or its fee was credited).
    pub fn transact_deferring_fee(
        &mut self,
        tx: TxEnv,
    ) -> (Result<EvmOutcome, EVMError<DbError>>, Option<u128>) {
        self.inner.ctx.set_tx(tx);
        let mut handler = DeferFee::<Self> {
            owed: Cell::new(None),
            _evm: std::marker::PhantomData,
        };
        let result = handler.run(self);
        let state = self.inner.ctx.journal_mut().finalize();
        let outcome = result.map(|result| ExecResultAndState::new(result, state));
        (outcome, handler.owed.get())
    }
}
