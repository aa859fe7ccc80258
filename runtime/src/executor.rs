//! The block executor: a pure function of (parent state, block) → (receipts, state diff).

use crate::bridge::{KeelEvm, KeelPrecompiles};
use crate::trace::Tracer;
use keel_exec_evm::revm::context::result::{
    EVMError, ExecutionResult, HaltReason, InvalidTransaction, OutOfGasError, Output,
};
use keel_exec_evm::revm::context::TxEnv;
use keel_exec_evm::revm::primitives::{Bytes, TxKind};
use keel_exec_evm::{
    apply_evm_state, block_env, cfg_env, revm, to_revm, u256_to_revm, BlockContext, BlockHashes,
    KeelDb,
};
use keel_exec_wasm::ModuleCache;
use keel_state::{ArchiveBatch, Overlay, StateDiff, StateView, StateViewExt};
use keel_types::limits::{BLOCK_GAS_LIMIT, MAX_OUTPUT_BYTES, MAX_TX_GAS};
use keel_types::receipt::ExecError;
use keel_types::{
    Address, Block, Env, Hash, Log, Receipt, SignedTransaction, TxBody, TxError, TxStatus, U256,
};
use std::sync::Arc;

mod plugins;
pub use plugins::PluginCheck;

/// A runtime-made state change: its logs, or the typed refusal the sender is charged for.
type NativeChange<'a> =
    &'a mut dyn FnMut(
        &mut Overlay<&dyn StateView>,
    ) -> Result<Result<Vec<keel_types::Log>, TxError>, keel_state::StateError>;

/// Chain parameters the executor needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub chain_id: u64,
    pub block_gas_limit: u64,
    pub min_gas_price: u128,
    /// Threads that verify a block's signatures (timing only; never the result).
    pub verify_threads: usize,
    /// Threads that execute a block's transactions (timing only; never the result):
    /// 1 executes serially, more speculate in parallel (`parallel`).
    pub exec_threads: usize,
    /// Epochs an untouched entry stays live (0: expiry off).
    pub expiry_epochs: u64,
    /// Epochs an expired stub stays in the tree before a fold page takes it (0: never fold).
    pub fold_epochs: u64,
    /// Gas one policy plugin check may use at most (genesis `plugin_gas`; docs/policies.md).
    pub plugin_gas: u64,
    /// The validator registry's genesis parameters (docs/validators.md).
    pub registry: keel_types::validator::RegistryParams,
}

impl RuntimeConfig {
    pub fn new(chain_id: u64) -> RuntimeConfig {
        RuntimeConfig {
            chain_id,
            block_gas_limit: BLOCK_GAS_LIMIT,
            min_gas_price: 0,
            verify_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            exec_threads: 1,
            expiry_epochs: 0,
            fold_epochs: 0,
            plugin_gas: keel_types::policy::PLUGIN_GAS,
            registry: keel_types::validator::RegistryParams {
                min_stake: keel_types::validator::DEFAULT_MIN_STAKE,
                max_validators: keel_types::limits::MAX_VALIDATORS,
                unbonding_epochs: keel_types::validator::DEFAULT_UNBONDING_EPOCHS,
                epoch_length: u64::MAX,
            },
        }
    }
}

/// A failure of the node (storage, compile cache), not of a transaction: the block cannot
/// be executed here and the node must stop rather than diverge.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("state: {0}")]
    State(#[from] keel_state::StateError),
    #[error("execution environment: {0}")]
    Fatal(String),
}

/// What executing a block produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOutput {
    pub receipts: Vec<Receipt>,
    pub diff: StateDiff,
    pub gas_used: u64,
    /// Entries this block moved to the expiry archive.
    pub archive: ArchiveBatch,
}

/// A read-only call (see [`Runtime::call`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    pub from: Address,
    /// `None` runs `data` as EVM creation code (what `eth_estimateGas` of a deployment asks).
    pub to: Option<Address>,
    pub data: Vec<u8>,
    pub value: U256,
    pub gas_limit: u64,
}

/// Executes blocks; holds the WASM module cache shared across blocks.
#[derive(Debug, Clone)]
pub struct Runtime {
    config: RuntimeConfig,
    wasm: Arc<ModuleCache>,
    /// RPC calls and simulations run on a speculative copy: WASM modules they compile are
    /// neither written to disk nor kept in the cache (`ModuleCache::get_speculative`).
    speculative: bool,
    /// Signatures this node already verified (shared with its mempool): a block verifies
    /// only the others.
    signatures: Arc<crate::signatures::SignatureCache>,
    parallel: Arc<crate::parallel::ParallelStats>,
    /// Analyzed EVM code by code hash (time only: a hit is what analysis would give).
    code_cache: Arc<keel_exec_evm::CodeCache>,
    /// Decoded policy records by account (time only: used for the same stored bytes).
    policies: Arc<crate::policy::PolicyCache>,
    /// The genesis jurisdiction attesters, shared with every transaction's precompiles.
    attesters: Arc<[Address]>,
}

/// How one transaction runs, besides its inputs.
#[derive(Clone, Copy, Default)]
pub(crate) struct TxMode<'a> {
    /// Watches the transaction's frames (`debug_traceTransaction`).
    pub tracer: Option<&'a Tracer>,
    /// Set: the fee recipient is not credited; the fee owed lands here (`parallel`).
    pub deferred_fee: Option<&'a std::cell::Cell<Option<u128>>>,
    /// Gas of the transaction's limit its policy plugins already used (and were paid for):
    /// the EVM runs with the rest.
    pub reserved_gas: u64,
    /// The session key that signed the transaction (what WASM's `tx_session_key` returns).
    pub session_key: Option<[u8; 32]>,
    /// Its scope as the policy decision read it (what `tx_session_scope` returns).
    pub session_scope: Option<keel_types::policy::SessionScope>,
    /// `policy::evaluate` checked the top frame's jurisdiction rules before this ran.
    pub top_frame_checked: bool,
}

/// What running a transaction in the EVM concluded.
enum Transacted {
    /// It ran: revm's result and the WASM trap behind a failure, if any.
    Ran(ExecutionResult, Option<TxError>),
    /// revm refused it before executing.
    Invalid(InvalidTransaction),
    /// It touched an expired entry.
    Expired(TxError),
}

/// What `run_block` is for.
#[derive(Clone, Copy)]
enum Run<'a> {
    /// A block, whose views may be shared with worker threads.
    Block {
        parent: &'a (dyn StateView + Sync),
        hashes: &'a (dyn BlockHashes + Sync),
    },
    /// Up to transaction `.0`, traced by `.1` (serially).
    Trace(usize, &'a Tracer),
}

fn expired_error(key: &keel_types::StateKey, epoch: u64) -> TxError {
    TxError::Expired {
        key: key.clone(),
        expired_epoch: epoch,
    }
}

pub(crate) fn rejected(tx_hash: Hash, error: TxError) -> Receipt {
    Receipt {
        tx_hash,
        status: TxStatus::Rejected,
        gas_used: 0,
        output: Vec::new(),
        logs: Vec::new(),
        contract_address: None,
        error: Some(error),
    }
}

fn map_invalid(tx: &SignedTransaction, invalid: InvalidTransaction, balance: U256) -> TxError {
    match invalid {
        InvalidTransaction::NonceTooHigh { tx: got, state }
        | InvalidTransaction::NonceTooLow { tx: got, state } => TxError::BadNonce {
            expected: state,
            got,
        },
        InvalidTransaction::LackOfFundForMaxFee { .. } => TxError::InsufficientBalance {
            needed: tx.tx.max_fee() + tx.tx.body.value(),
            available: balance,
        },
        InvalidTransaction::InvalidChainId | InvalidTransaction::MissingChainId => {
            TxError::WrongChainId {
                expected: 0,
                got: tx.tx.chain_id,
            }
        }
        other => crate::precheck::intrinsic_gas_refusal(&other)
            .unwrap_or_else(|| refused_by_revm(&other)),
    }
}

/// A transaction revm refused before running it, for a reason keel's own checks do not
/// name: a typed code chosen by revm's variant, never its text (receipts are hashed).
fn refused_by_revm(invalid: &InvalidTransaction) -> TxError {
    let code = match invalid {
        InvalidTransaction::CreateInitCodeSizeLimit => ExecError::CreateInitCodeSizeLimit,
        _ => ExecError::InvalidTransaction,
    };
    TxError::Execution { code }
}

/// The error of an exceptional halt, mapped from revm's `HaltReason` variant by variant
/// (never from its text or `Debug`: receipts are hashed, and a revm update that rewords a
/// message must not change one). `trap` is the typed reason the last WASM frame or deploy to
/// finish failed with.
fn halt_error(reason: &HaltReason, trap: Option<TxError>) -> TxError {
    let code = match reason {
        HaltReason::OutOfGas(_) => return TxError::OutOfGas,
        HaltReason::CallTooDeep => return TxError::CallDepthExceeded,
        // A top-level WASM frame's trap surfaces as a precompile error
        // (`bridge::to_interpreter_result`); it is the last WASM frame to finish.
        HaltReason::PrecompileError => match trap {
            Some(error) => return error,
            None => ExecError::PrecompileError,
        },
        // The context is a precompile's message: not kept.
        HaltReason::PrecompileErrorWithContext(_) => ExecError::PrecompileError,
        HaltReason::OpcodeNotFound => ExecError::OpcodeNotFound,
        HaltReason::InvalidFEOpcode => ExecError::InvalidFEOpcode,
        HaltReason::InvalidJump => ExecError::InvalidJump,
        HaltReason::NotActivated => ExecError::NotActivated,
        HaltReason::StackUnderflow => ExecError::StackUnderflow,
        HaltReason::StackOverflow => ExecError::StackOverflow,
        HaltReason::OutOfOffset => ExecError::OutOfOffset,
        HaltReason::CreateCollision => ExecError::CreateCollision,
        HaltReason::NonceOverflow => ExecError::NonceOverflow,
        HaltReason::CreateContractSizeLimit => ExecError::CreateContractSizeLimit,
        HaltReason::CreateContractStartingWithEF => ExecError::CreateContractStartingWithEF,
        HaltReason::CreateInitCodeSizeLimit => ExecError::CreateInitCodeSizeLimit,
        HaltReason::OverflowPayment => ExecError::OverflowPayment,
        HaltReason::StateChangeDuringStaticCall => ExecError::StateChangeDuringStaticCall,
        HaltReason::CallNotAllowedInsideStatic => ExecError::CallNotAllowedInsideStatic,
        HaltReason::OutOfFunds => ExecError::OutOfFunds,
    };
    TxError::Execution { code }
}

fn truncate(mut output: Vec<u8>) -> Vec<u8> {
    output.truncate(MAX_OUTPUT_BYTES);
    output
}

fn convert_logs(logs: Vec<revm::primitives::Log>) -> Vec<Log> {
    logs.into_iter()
        .map(|log| Log {
            address: Address(log.address.0 .0),
            topics: log.data.topics().iter().map(|t| t.0).collect(),
            data: log.data.data.to_vec(),
        })
        .collect()
}

impl Runtime {
    pub fn new(config: RuntimeConfig, wasm: Arc<ModuleCache>) -> Runtime {
        Runtime {
            attesters: Arc::from(Vec::new()),
            config,
            wasm,
            speculative: false,
            signatures: Arc::new(crate::signatures::SignatureCache::new(
                crate::signatures::SIGNATURE_CACHE_ENTRIES,
            )),
            parallel: Arc::default(),
            code_cache: Arc::default(),
            policies: Arc::default(),
        }
    }

    /// The genesis jurisdiction attesters (docs/policies.md; none by default).
    pub fn with_attesters(mut self, attesters: &[Address]) -> Runtime {
        self.attesters = Arc::from(attesters.to_vec());
        self
    }

    pub fn attesters(&self) -> &[Address] {
        &self.attesters
    }

    /// Shares `cache` (the mempool's, so what admission verified is not verified again).
    pub fn with_signature_cache(
        mut self,
        cache: Arc<crate::signatures::SignatureCache>,
    ) -> Runtime {
        self.signatures = cache;
        self
    }

    /// How parallel blocks' transactions were committed (shared by this runtime's clones).
    pub fn parallel_stats(&self) -> &Arc<crate::parallel::ParallelStats> {
        &self.parallel
    }

    pub fn signature_cache(&self) -> &Arc<crate::signatures::SignatureCache> {
        &self.signatures
    }

    pub(crate) fn as_speculative(&self) -> Runtime {
        Runtime {
            speculative: true,
            ..self.clone()
        }
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    pub fn module_cache(&self) -> &Arc<ModuleCache> {
        &self.wasm
    }

    /// The execution context of a block with this header.
    pub fn context(&self, header: &keel_types::Header) -> BlockContext {
        BlockContext {
            chain_id: self.config.chain_id,
            height: header.height,
            epoch: header.epoch,
            timestamp_ms: header.timestamp_ms,
            beneficiary: Address::from_public_key(&header.proposer),
            parent_hash: header.parent_hash,
            gas_limit: self.config.block_gas_limit,
        }
    }

    /// An overlay for a block of `epoch`: reads re-stamp touch epochs only when expiry is on.
    pub(crate) fn overlay<'a>(
        &self,
        base: &'a dyn StateView,
        epoch: u64,
    ) -> Overlay<&'a dyn StateView> {
        let overlay = Overlay::at_epoch(base, epoch);
        if self.config.expiry_epochs == 0 {
            overlay.without_read_touches()
        } else {
            overlay
        }
    }

    /// `block` with its fees going to `fee_recipient` (the proposer, or the burn address if
    /// the proposer's account has expired).
    fn paying_context(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        block: &BlockContext,
    ) -> Result<BlockContext, RuntimeError> {
        let beneficiary =
            keel_pruning::fee_recipient(overlay, block.beneficiary, self.config.expiry_epochs)?;
        Ok(BlockContext {
            beneficiary,
            ..*block
        })
    }

    /// Whether `header` is its epoch's second-to-last block (epoch e orders heights
    /// e·L+1 ..= (e+1)·L, L ≥ 2), after whose transactions the next epoch's validator set is
    /// fixed. Not the last block: the last block's header commits to the state after this
    /// one (`parent_state_root`), so the epoch's own finalization certifies the next set and
    /// an epoch-change proof needs nothing signed by the set it introduces (epoch_proof in
    /// keel-app). At the last block itself nothing would certify it within the epoch.
    fn fixes_next_set(&self, header: &keel_types::Header) -> bool {
        let length = self.config.registry.epoch_length;
        header
            .epoch
            .checked_add(1)
            .and_then(|e| e.checked_mul(length))
            .is_some_and(|last| header.height.checked_add(1) == Some(last))
    }

    /// Execute `block` over `parent` (the state after the parent block).
    /// With `exec_threads` > 1 the transactions are executed in parallel, with the serial
    /// result (`parallel`).
    pub fn execute_block(
        &self,
        parent: &(dyn StateView + Sync),
        hashes: &(dyn BlockHashes + Sync),
        block: &Block,
    ) -> Result<BlockOutput, RuntimeError> {
        self.run_block(parent, hashes, block, Run::Block { parent, hashes })
    }

    /// The receipt of transaction `index` of `block`, executed as [`Self::execute_block`]
    /// executes it, with `tracer` watching only that transaction (speculatively: nothing is
    /// cached). `None` if the block has no such transaction.
    pub(crate) fn execute_up_to(
        &self,
        parent: &dyn StateView,
        hashes: &dyn BlockHashes,
        block: &Block,
        (index, tracer): (usize, &Tracer),
    ) -> Result<Option<Receipt>, RuntimeError> {
        if !self.speculative {
            return self
                .as_speculative()
                .execute_up_to(parent, hashes, block, (index, tracer));
        }
        if index >= block.transactions.len() {
            return Ok(None);
        }
        let mut output = self.run_block(parent, hashes, block, Run::Trace(index, tracer))?;
        Ok(output.receipts.pop())
    }

    /// The block executor; when tracing, it stops after the traced transaction.
    fn run_block(
        &self,
        parent: &dyn StateView,
        hashes: &dyn BlockHashes,
        block: &Block,
        run: Run<'_>,
    ) -> Result<BlockOutput, RuntimeError> {
        let header = &block.header;
        // Signatures first: the ones this node has not verified before, batch-verified in
        // chunks over the configured threads (the verdict depends only on the block).
        // Each transaction is hashed once, here, for its signature and its receipt.
        let tx_hashes: Vec<Hash> = block
            .transactions
            .iter()
            .map(SignedTransaction::hash)
            .collect();
        let bad = crate::signatures::bad_signatures(
            &block.transactions,
            &tx_hashes,
            self.config.verify_threads,
            self.config.min_gas_price,
            Some(&self.signatures),
        );

        let mut overlay = self.overlay(parent, header.epoch);
        // Expiry first: this block's transactions see the entries it archives as expired.
        let mut archive = keel_pruning::sweep(
            &mut overlay,
            header.epoch,
            self.config.expiry_epochs,
            self.config.fold_epochs,
        )?;
        let context = self.paying_context(&mut overlay, &self.context(header))?;
        overlay.discard_journal();
        let threads = self.config.exec_threads;
        let (receipts, block_gas_used) = match run {
            Run::Block { parent, hashes } if threads > 1 && block.transactions.len() > 1 => {
                let block = crate::parallel::Block {
                    parent,
                    hashes,
                    context: &context,
                    transactions: &block.transactions,
                    tx_hashes: &tx_hashes,
                    bad: &bad,
                };
                crate::parallel::execute(self, &block, &mut overlay, threads)?
            }
            _ => {
                let trace = match run {
                    Run::Trace(index, tracer) => Some((index, tracer)),
                    Run::Block { .. } => None,
                };
                let txs = (&block.transactions[..], &tx_hashes[..], &bad[..]);
                self.execute_serially(&mut overlay, hashes, &context, txs, trace)?
            }
        };
        if matches!(run, Run::Block { .. }) && self.fixes_next_set(header) {
            crate::validators::end_epoch(&mut overlay, header.epoch, &self.config.registry)?;
        }
        archive.folded_revivals = overlay.folded_revivals();
        Ok(BlockOutput {
            receipts,
            diff: overlay.into_diff(),
            gas_used: block_gas_used,
            archive,
        })
    }

    /// The transactions one after another over `overlay`; with `trace`, stops after the
    /// traced one.
    fn execute_serially(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        hashes: &dyn BlockHashes,
        context: &BlockContext,
        (transactions, tx_hashes, bad): (&[SignedTransaction], &[Hash], &[usize]),
        trace: Option<(usize, &Tracer)>,
    ) -> Result<(Vec<Receipt>, u64), RuntimeError> {
        let mut receipts = Vec::with_capacity(transactions.len());
        let mut block_gas_used = 0u64;
        for (index, (tx, tx_hash)) in transactions.iter().zip(tx_hashes).enumerate() {
            let tx_hash = *tx_hash;
            let tracer = trace.filter(|(at, _)| *at == index).map(|(_, t)| t);
            let receipt = if bad.binary_search(&index).is_ok() {
                rejected(tx_hash, TxError::BadSignature)
            } else {
                let at = (tx_hash, block_gas_used);
                let mode = TxMode {
                    tracer,
                    ..TxMode::default()
                };
                self.execute_tx(overlay, hashes, context, tx, at, mode)?
            };
            block_gas_used += receipt.gas_used;
            receipts.push(receipt);
            if tracer.is_some() {
                break;
            }
        }
        Ok((receipts, block_gas_used))
    }

    pub(crate) fn execute_tx(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        hashes: &dyn BlockHashes,
        block: &BlockContext,
        tx: &SignedTransaction,
        (tx_hash, block_gas_used): (Hash, u64),
        mode: TxMode<'_>,
    ) -> Result<Receipt, RuntimeError> {
        // A hit left by an earlier refusal (a read of an expired sender) is not this one's.
        overlay.take_expired_hit();
        let t = &tx.tx;
        // The same stateless checks as mempool admission (`precheck`), then what is left of
        // the block's gas: the block check bounds the sum of gas limits, so this only
        // refuses in blocks that are invalid anyway.
        let gas_cap = MAX_TX_GAS.min(self.config.block_gas_limit);
        let checked = crate::precheck::check_stateless(
            t,
            self.config.chain_id,
            self.config.min_gas_price,
            gas_cap,
        );
        if let Err(error) = checked {
            return Ok(rejected(tx_hash, error));
        }
        let block_left = self.config.block_gas_limit.saturating_sub(block_gas_used);
        if t.gas_limit > MAX_TX_GAS.min(block_left) {
            return Ok(rejected(
                tx_hash,
                TxError::GasLimitTooHigh {
                    gas_limit: t.gas_limit,
                    block_gas_limit: MAX_TX_GAS.min(block_left),
                },
            ));
        }
        let sender = t.sender_address();
        // An expired sender cannot be charged: refused (the block check keeps such a
        // transaction out of blocks). Any other expired entry is the transaction's to pay for.
        let sender_record = match overlay.account(&sender) {
            Ok(record) => record,
            Err(keel_state::StateError::Expired { key, epoch, .. }) => {
                overlay.take_expired_hit();
                return Ok(rejected(tx_hash, expired_error(&key, epoch)));
            }
            Err(e) => return Err(e.into()),
        };
        // The sender's policy, before anything runs: a denial is a refusal (nothing is
        // charged: a frozen account or a spent fee budget must not pay), and an expired
        // policy refuses too (fail closed), as an expired sender does.
        let at = crate::policy::At {
            height: block.height,
            epoch: block.epoch,
        };
        let decision = match crate::policy::evaluate_cached(
            &*overlay,
            (&self.policies, !self.speculative),
            (t, sender),
            (at, sender_record.as_ref()),
            Default::default(),
        ) {
            Ok(decision) => decision,
            Err(keel_state::StateError::Expired { key, epoch, .. }) => {
                overlay.take_expired_hit();
                return Ok(rejected(tx_hash, expired_error(&key, epoch)));
            }
            Err(e) => return Err(e.into()),
        };
        // The environment rule may have read an expired target: that read is not the
        // transaction's (found by review: it turned revm's refusal of an unpayable
        // transaction into a charge).
        overlay.take_expired_hit();
        let receipt = if let Some(denial) = decision.denial.clone() {
            // The sender's own rules refuse (nothing charged). A target's jurisdiction rules
            // are charged instead, as a plugin's denial is: whether they deny can change with
            // a block's order (a call before or after the target declared them), and a
            // refusal whose presence depends on order keeps a proposer's filter from settling
            // (found by review: a few cheap transactions emptied blocks).
            if denial.scope != keel_types::policy::PolicyScope::Contract {
                return Ok(rejected(tx_hash, TxError::PolicyDenied { denial }));
            }
            match self.payable(overlay, t, tx_hash)? {
                Err(refused) => return Ok(refused),
                Ok(intrinsic) => {
                    let error = TxError::PolicyDenied { denial };
                    self.charge_failed(overlay, block, t, tx_hash, (intrinsic, error))?
                }
            }
        } else {
            let mode = TxMode {
                session_scope: decision.session_scope,
                ..mode
            };
            match decision.plugins.is_empty() {
                true => self.execute_allowed(overlay, hashes, block, tx, tx_hash, mode)?,
                false => self.execute_with_plugins(
                    overlay,
                    hashes,
                    block,
                    tx,
                    (tx_hash, &decision),
                    mode,
                )?,
            }
        };
        // What a charged transaction used counts against its budgets: the value it sent if
        // it succeeded (an account without code sends value only in its own frame), and its
        // fee whatever the outcome.
        let checked = decision.record.is_some() || decision.session.is_some();
        if checked && receipt.status != TxStatus::Rejected {
            let value = match receipt.status {
                TxStatus::Success => t.body.value(),
                _ => U256::ZERO,
            };
            let fee = U256::from(receipt.gas_used) * U256::from(t.gas_price);
            crate::policy::record_outcome(overlay, (t, sender), &decision, (value, fee))?;
            overlay.discard_journal();
        }
        Ok(receipt)
    }

    /// Whether `t` can be charged as the EVM would check it (nonce, balance for the whole
    /// transaction, intrinsic gas): its intrinsic gas, or the refusal.
    fn payable(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        t: &keel_types::Transaction,
        tx_hash: Hash,
    ) -> Result<Result<u64, Receipt>, RuntimeError> {
        let account = overlay.account(&t.sender_address())?.unwrap_or_default();
        if account.nonce != t.nonce {
            let bad_nonce = TxError::BadNonce {
                expected: account.nonce,
                got: t.nonce,
            };
            return Ok(Err(rejected(tx_hash, bad_nonce)));
        }
        let needed = t.max_fee().saturating_add(t.body.value());
        if account.balance < needed {
            let short = TxError::InsufficientBalance {
                needed,
                available: account.balance,
            };
            return Ok(Err(rejected(tx_hash, short)));
        }
        Ok(
            crate::precheck::check_intrinsic_gas(t, self.config.chain_id)
                .map_err(|error| rejected(tx_hash, error)),
        )
    }

    /// [`Self::execute_tx`] of a transaction its sender's policy allows.
    fn execute_allowed(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        hashes: &dyn BlockHashes,
        block: &BlockContext,
        tx: &SignedTransaction,
        tx_hash: Hash,
        mode: TxMode<'_>,
    ) -> Result<Receipt, RuntimeError> {
        let t = &tx.tx;
        let sender = t.sender_address();
        if let Some(change) = t.body.as_policy_change() {
            return self.change_policy(overlay, block, t, (change.as_ref(), tx_hash));
        }
        if let TxBody::Validator(op) = &t.body {
            return self.change_registry(overlay, block, t, (op, tx_hash));
        }
        let tx_env = match &t.body {
            TxBody::Revive { proof } => {
                return self.revive(overlay, block, tx, tx_hash, (proof, false));
            }
            TxBody::Unflag { proof } => {
                return self.revive(overlay, block, tx, tx_hash, (proof, true));
            }
            TxBody::SetPolicy { .. } | TxBody::SetController { .. } => {
                return Err(RuntimeError::Fatal(
                    "a policy change past its dispatch".into(),
                ));
            }
            _ => crate::precheck::tx_env(t, self.config.chain_id)
                .ok_or_else(|| RuntimeError::Fatal("no EVM form for a call".into()))?,
        };
        let tx_env = keel_exec_evm::revm::context::TxEnv {
            gas_limit: tx_env.gas_limit.saturating_sub(mode.reserved_gas),
            ..tx_env
        };
        let mode = TxMode {
            session_key: match t.sender {
                keel_types::Sender::Session { key, .. } => Some(key.0),
                _ => None,
            },
            // `execute_tx` ran `policy::evaluate`, which checks a transfer's or call's
            // target's jurisdiction rules.
            top_frame_checked: true,
            ..mode
        };
        let is_wasm_deploy = matches!(t.body, TxBody::Deploy { env: Env::Wasm, .. });
        match self.transact(overlay, hashes, block, tx_env, (false, mode))? {
            Transacted::Ran(result, trap) => {
                Ok(receipt_from(result, tx_hash, is_wasm_deploy, trap))
            }
            // It passed every check and ran into an expired entry: charged its whole gas
            // limit (revm aborted on the read and reports no gas figure; charging less would
            // let it do that much work for less), nothing else applied.
            Transacted::Expired(error) => {
                let gas = t.gas_limit.saturating_sub(mode.reserved_gas);
                self.charge_failed(overlay, block, t, tx_hash, (gas, error))
            }
            Transacted::Invalid(invalid) => {
                let balance = match overlay.account(&sender) {
                    Ok(a) => a.map(|a| a.balance).unwrap_or_default(),
                    Err(keel_state::StateError::Expired { .. }) => U256::ZERO,
                    Err(e) => return Err(e.into()),
                };
                Ok(rejected(tx_hash, map_invalid(tx, invalid, balance)))
            }
        }
    }

    /// A revival (or, with `unflag`, the clearing of a fold filter's false positive): the
    /// same nonce and fee rules as every transaction, then the proof checks of
    /// `expiry::check_revival` (`check_unflag`). A sender that cannot pay is refused; a
    /// refused proof is charged (`charge_failed`).
    fn revive(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        block: &BlockContext,
        tx: &SignedTransaction,
        tx_hash: Hash,
        (proof, unflag): (&[u8], bool),
    ) -> Result<Receipt, RuntimeError> {
        let t = &tx.tx;
        let sender = t.sender_address();
        let account = match overlay.account(&sender) {
            Ok(a) => a.unwrap_or_default(),
            Err(keel_state::StateError::Expired { key, epoch, .. }) => {
                return Ok(rejected(tx_hash, expired_error(&key, epoch)))
            }
            Err(e) => return Err(e.into()),
        };
        if account.nonce != t.nonce {
            return Ok(rejected(
                tx_hash,
                TxError::BadNonce {
                    expected: account.nonce,
                    got: t.nonce,
                },
            ));
        }
        let intrinsic = keel_pruning::revival_gas(proof.len());
        if t.gas_limit < intrinsic {
            return Ok(rejected(
                tx_hash,
                TxError::IntrinsicGasTooLow {
                    gas_limit: t.gas_limit,
                    intrinsic,
                },
            ));
        }
        if account.balance < t.max_fee() {
            return Ok(rejected(
                tx_hash,
                TxError::InsufficientBalance {
                    needed: t.max_fee(),
                    available: account.balance,
                },
            ));
        }
        let expiry_epochs = self.config.expiry_epochs;
        let checked = if unflag {
            keel_pruning::check_unflag(&*overlay, proof, expiry_epochs)?
        } else {
            keel_pruning::check_revival(&*overlay, proof, expiry_epochs)?
        };
        let restore = match checked {
            keel_pruning::ProofCheck::Accepted(r) => r,
            // The sender can pay and the proof is refused: charged its intrinsic gas with
            // its nonce used, so a junk proof costs a fee and cannot be sent again.
            keel_pruning::ProofCheck::Refused(error) => {
                return self.charge_failed(overlay, block, t, tx_hash, (intrinsic, error));
            }
        };
        let fee = U256::from(intrinsic) * U256::from(t.gas_price);
        keel_pruning::apply_revival(overlay, sender, block.beneficiary, fee, restore)?;
        overlay.discard_journal();
        Ok(Receipt {
            tx_hash,
            status: TxStatus::Success,
            gas_used: intrinsic,
            output: Vec::new(),
            logs: Vec::new(),
            contract_address: None,
            error: None,
        })
    }

    /// A transaction that passed every check a sender must pass (nonce, balance, gas) but
    /// failed afterwards: only its fee — `gas` at its gas price, to the block's fee recipient
    /// — and its nonce bump are applied, and its receipt is a `Revert` carrying `error`. So a
    /// failure costs its sender and the same signed transaction can never run again.
    /// Re-checks nonce and balance itself; if they do not hold, it is refused instead.
    fn charge_failed(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        block: &BlockContext,
        t: &keel_types::Transaction,
        tx_hash: Hash,
        (gas, error): (u64, TxError),
    ) -> Result<Receipt, RuntimeError> {
        if let Some(refused) = self.charge(overlay, block, t, tx_hash, gas)? {
            return Ok(refused);
        }
        Ok(Receipt {
            tx_hash,
            status: TxStatus::Revert,
            gas_used: gas,
            output: Vec::new(),
            logs: Vec::new(),
            contract_address: None,
            error: Some(error),
        })
    }

    /// Charges `gas` at `t`'s gas price to its sender (to the block's fee recipient) and uses
    /// its nonce; or, if nonce or balance do not allow that, the refusal (nothing changed).
    fn charge(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        block: &BlockContext,
        t: &keel_types::Transaction,
        tx_hash: Hash,
        gas: u64,
    ) -> Result<Option<Receipt>, RuntimeError> {
        overlay.take_expired_hit();
        let sender = t.sender_address();
        let mut account = match overlay.account(&sender) {
            Ok(a) => a.unwrap_or_default(),
            Err(keel_state::StateError::Expired { key, epoch, .. }) => {
                overlay.take_expired_hit();
                return Ok(Some(rejected(tx_hash, expired_error(&key, epoch))));
            }
            Err(e) => return Err(e.into()),
        };
        let bad_nonce = TxError::BadNonce {
            expected: account.nonce,
            got: t.nonce,
        };
        let next_nonce = match account.nonce.checked_add(1) {
            Some(next) if account.nonce == t.nonce => next,
            _ => return Ok(Some(rejected(tx_hash, bad_nonce))),
        };
        let fee = U256::from(gas) * U256::from(t.gas_price);
        if account.balance < fee {
            return Ok(Some(rejected(
                tx_hash,
                TxError::InsufficientBalance {
                    needed: fee,
                    available: account.balance,
                },
            )));
        }
        account.nonce = next_nonce;
        settle_fee(overlay, block, (sender, account), fee)?;
        overlay.discard_journal();
        Ok(None)
    }

    /// Pays `gas` (what the policy plugins used) at `t`'s gas price from its sender to the
    /// block's fee recipient; or the refusal if the sender cannot.
    fn prepay(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        block: &BlockContext,
        t: &keel_types::Transaction,
        tx_hash: Hash,
        gas: u64,
    ) -> Result<Option<Receipt>, RuntimeError> {
        let fee = U256::from(gas) * U256::from(t.gas_price);
        if fee.is_zero() {
            return Ok(None);
        }
        let sender = t.sender_address();
        let account = overlay.account(&sender)?.unwrap_or_default();
        if account.balance < fee {
            let short = TxError::InsufficientBalance {
                needed: fee,
                available: account.balance,
            };
            return Ok(Some(rejected(tx_hash, short)));
        }
        settle_fee(overlay, block, (sender, account), fee)?;
        Ok(None)
    }

    /// A policy change (`SetPolicy`, `SetController`; `policy::apply_change`).
    fn change_policy(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        block: &BlockContext,
        t: &keel_types::Transaction,
        (change, tx_hash): (&TxBody, Hash),
    ) -> Result<Receipt, RuntimeError> {
        let sender = t.sender_address();
        let gas = t
            .body
            .policy_gas()
            .ok_or_else(|| RuntimeError::Fatal("a policy change without its gas".into()))?;
        let height = block.height;
        self.native_change(overlay, block, t, (gas, tx_hash), &mut |overlay| {
            Ok(
                match crate::policy::apply_change(overlay, (sender, change), height)? {
                    Ok(log) => Ok(vec![log]),
                    Err(denial) => Err(TxError::PolicyDenied { denial }),
                },
            )
        })
    }

    /// A validator transaction (`validators::apply`).
    fn change_registry(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        block: &BlockContext,
        t: &keel_types::Transaction,
        (op, tx_hash): (&keel_types::validator::ValidatorTx, Hash),
    ) -> Result<Receipt, RuntimeError> {
        let sender = t.sender_address();
        let (chain_id, params, epoch) = (self.config.chain_id, self.config.registry, block.epoch);
        self.native_change(overlay, block, t, (op.gas(), tx_hash), &mut |overlay| {
            Ok(
                crate::validators::apply(overlay, (chain_id, &params), (sender, op), epoch)?
                    .map(|()| Vec::new())
                    .map_err(|reason| TxError::Registry { reason }),
            )
        })
    }

    /// A change the runtime makes itself (policy, registry) for `gas`. The sender must be
    /// able to pay its whole gas limit and the value it locks, as every transaction; a
    /// change it may not make is charged like any failure, so a refused change is never
    /// free.
    fn native_change(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        block: &BlockContext,
        t: &keel_types::Transaction,
        (gas, tx_hash): (u64, Hash),
        change: NativeChange<'_>,
    ) -> Result<Receipt, RuntimeError> {
        let sender = t.sender_address();
        let account = overlay.account(&sender)?.unwrap_or_default();
        if account.nonce != t.nonce {
            let bad_nonce = TxError::BadNonce {
                expected: account.nonce,
                got: t.nonce,
            };
            return Ok(rejected(tx_hash, bad_nonce));
        }
        let needed = t.max_fee().saturating_add(t.body.value());
        if account.balance < needed {
            return Ok(rejected(
                tx_hash,
                TxError::InsufficientBalance {
                    needed,
                    available: account.balance,
                },
            ));
        }
        let checkpoint = overlay.checkpoint();
        let logs = match change(overlay) {
            Ok(Ok(logs)) => logs,
            Ok(Err(error)) => {
                overlay.revert_to(checkpoint);
                return self.charge_failed(overlay, block, t, tx_hash, (gas, error));
            }
            Err(keel_state::StateError::Expired { key, epoch, .. }) => {
                overlay.take_expired_hit();
                overlay.revert_to(checkpoint);
                let error = expired_error(&key, epoch);
                return self.charge_failed(overlay, block, t, tx_hash, (gas, error));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(refused) = self.charge(overlay, block, t, tx_hash, gas)? {
            overlay.revert_to(checkpoint);
            return Ok(refused);
        }
        Ok(Receipt {
            tx_hash,
            status: TxStatus::Success,
            gas_used: gas,
            output: Vec::new(),
            logs,
            contract_address: None,
            error: None,
        })
    }

    /// Runs one EVM transaction (WASM frames included) over `overlay` and applies its state
    /// changes there, or says why it did not run.
    fn transact(
        &self,
        overlay: &mut Overlay<&dyn StateView>,
        hashes: &dyn BlockHashes,
        block: &BlockContext,
        tx_env: TxEnv,
        (skip_nonce_check, mode): (bool, TxMode<'_>),
    ) -> Result<Transacted, RuntimeError> {
        let tracer = mode.tracer;
        let mut deferred = None;
        let precompiles = KeelPrecompiles::new(self.wasm.clone(), block.epoch, block.timestamp_ms)
            .session_key(mode.session_key)
            .session_scope(mode.session_scope)
            .attesters(self.attesters.clone())
            .top_frame_checked(mode.top_frame_checked)
            .speculative(self.speculative)
            .traced(tracer.cloned());
        let kept = keel_exec_evm::KeptSpends::default();
        let (result, state) = {
            let db = KeelDb::new(&*overlay, hashes)
                .with_code_cache(&self.code_cache)
                .keeping_spends(&kept);
            let mut cfg = cfg_env(self.config.chain_id);
            cfg.disable_nonce_check = skip_nonce_check;
            let ctx = keel_exec_evm::context(db, cfg, block_env(block));
            let outcome = match tracer {
                None => {
                    let mut evm: KeelEvm<'_> = keel_exec_evm::evm(ctx, precompiles.clone());
                    match mode.deferred_fee {
                        None => evm.transact(tx_env),
                        Some(_) => {
                            let (outcome, fee) = evm.transact_deferring_fee(tx_env);
                            deferred = fee;
                            outcome
                        }
                    }
                }
                Some(tracer) => {
                    let mut evm =
                        keel_exec_evm::evm_with_inspector(ctx, precompiles.clone(), tracer.clone());
                    evm.inspect_tx(tx_env)
                }
            };
            // A read of an expired entry aborts the transaction whichever way the failure
            // surfaced (a database error in the EVM, a host error in WASM, or a WASM caller
            // that turned it into a revert): nothing it did is applied.
            if let Some((key, epoch, _)) = overlay.take_expired_hit() {
                return Ok(Transacted::Expired(expired_error(&key, epoch)));
            }
            match outcome {
                Ok(out) => (out.result, out.state),
                Err(EVMError::Transaction(invalid)) => return Ok(Transacted::Invalid(invalid)),
                Err(e) => return Err(RuntimeError::Fatal(e.to_string())),
            }
        };
        apply_evm_state(overlay, state, &kept).map_err(|e| RuntimeError::Fatal(e.to_string()))?;
        // Owed only by a transaction that ran: an aborted one's credit is discarded with
        // the rest of what it did.
        if let Some(slot) = mode.deferred_fee {
            slot.set(deferred);
        }
        Ok(Transacted::Ran(result, precompiles.take_trap()))
    }

    /// A read-only call (RPC `keel_call`, `eth_call`, `eth_estimateGas`): `from` calls `to`
    /// (or creates, with `to` unset) with `data` and `value` at `state`, without signature,
    /// nonce or fee checks (gas price zero); every write is discarded.
    pub fn call(
        &self,
        state: &dyn StateView,
        hashes: &dyn BlockHashes,
        block: &BlockContext,
        request: CallRequest,
    ) -> Result<Receipt, RuntimeError> {
        if !self.speculative {
            return self.as_speculative().call(state, hashes, block, request);
        }
        let mut overlay = self.overlay(state, block.epoch);
        let block = &self.paying_context(&mut overlay, block)?;
        let tx_env = TxEnv {
            caller: to_revm(&request.from),
            gas_limit: request.gas_limit.min(MAX_TX_GAS),
            gas_price: 0,
            kind: match request.to {
                Some(to) => TxKind::Call(to_revm(&to)),
                None => TxKind::Create,
            },
            data: Bytes::from(request.data),
            value: u256_to_revm(&request.value),
            chain_id: Some(self.config.chain_id),
            ..Default::default()
        };
        match self.transact(
            &mut overlay,
            hashes,
            block,
            tx_env,
            (true, TxMode::default()),
        )? {
            Transacted::Ran(result, trap) => Ok(receipt_from(result, Hash::ZERO, false, trap)),
            Transacted::Expired(error) => Ok(rejected(Hash::ZERO, error)),
            Transacted::Invalid(invalid) => Ok(rejected(Hash::ZERO, refused_by_revm(&invalid))),
        }
    }

    /// What `tx` would do if it were the first transaction of the next block over `state`
    /// (RPC `keel_simulate`): every check a block applies, signature included; nothing is
    /// written.
    pub fn simulate(
        &self,
        state: &dyn StateView,
        hashes: &dyn BlockHashes,
        block: &BlockContext,
        tx: &SignedTransaction,
    ) -> Result<Receipt, RuntimeError> {
        if !self.speculative {
            return self.as_speculative().simulate(state, hashes, block, tx);
        }
        let tx_hash = tx.hash();
        if tx.verify_signature(self.config.min_gas_price).is_err() {
            return Ok(rejected(tx_hash, TxError::BadSignature));
        }
        let mut overlay = self.overlay(state, block.epoch);
        let block = &self.paying_context(&mut overlay, block)?;
        self.execute_tx(
            &mut overlay,
            hashes,
            block,
            tx,
            (tx_hash, 0),
            TxMode::default(),
        )
    }
}

/// Takes `fee` from `account` (which covers it) and writes it back under `sender`, then
/// credits the fee to the block's fee recipient (live, or the burn address:
/// `paying_context`).
fn settle_fee(
    overlay: &mut Overlay<&dyn StateView>,
    block: &BlockContext,
    (sender, mut account): (Address, keel_types::AccountRecord),
    fee: U256,
) -> Result<(), RuntimeError> {
    account.balance -= fee;
    overlay.put_account(sender, &account)?;
    if !fee.is_zero() {
        let mut paid = overlay.account(&block.beneficiary)?.unwrap_or_default();
        paid.balance = paid.balance.saturating_add(fee);
        overlay.put_account(block.beneficiary, &paid)?;
    }
    Ok(())
}

fn receipt_from(
    result: ExecutionResult,
    tx_hash: Hash,
    is_wasm_deploy: bool,
    trap: Option<TxError>,
) -> Receipt {
    // What the sender paid for: spent minus the EIP-3529 refund, at least the EIP-7623 floor.
    let gas_used = result.tx_gas_used();
    match result {
        ExecutionResult::Success { logs, output, .. } => {
            let (output, contract_address) = match output {
                Output::Create(bytes, address) => {
                    (bytes.to_vec(), address.map(|a| Address(a.0 .0)))
                }
                Output::Call(bytes) if is_wasm_deploy && bytes.len() == 32 => {
                    let mut address = [0u8; 20];
                    address.copy_from_slice(&bytes[12..]);
                    (Vec::new(), Some(Address(address)))
                }
                Output::Call(bytes) => (bytes.to_vec(), None),
            };
            Receipt {
                tx_hash,
                status: TxStatus::Success,
                gas_used,
                output: truncate(output),
                logs: convert_logs(logs),
                contract_address,
                error: None,
            }
        }
        ExecutionResult::Revert { output, .. } => {
            // A WASM deploy the deployer refused carries its typed reason (set by the
            // deployer itself, so a constructor's revert data cannot pose as one).
            let error = match trap {
                Some(refusal) if is_wasm_deploy => refusal,
                _ => TxError::Reverted,
            };
            Receipt {
                tx_hash,
                status: TxStatus::Revert,
                gas_used,
                output: truncate(output.to_vec()),
                logs: Vec::new(),
                contract_address: None,
                error: Some(error),
            }
        }
        ExecutionResult::Halt { reason, .. } => {
            let error = match reason {
                HaltReason::OutOfGas(OutOfGasError::Basic) => TxError::OutOfGas,
                ref other => halt_error(other, trap),
            };
            Receipt {
                tx_hash,
                status: TxStatus::Revert,
                gas_used,
                output: Vec::new(),
                logs: Vec::new(),
                contract_address: None,
                error: Some(error),
            }
        }
    }
}
