//! Parallel block execution whose results are byte-identical to serial execution.
//!
//! The scheme is optimistic concurrency with commit in block order (Block-STM's validation
//! rule without its multi-version scheduler, which two cores cannot repay):
//!
//! - Worker threads take transactions in block order and *speculate*: each runs on its own
//!   overlay over a [`Recording`] view that serves the writes of the transactions already
//!   committed, then the state the block started from, and records every entry it served.
//! - The calling thread *commits* in block order. A speculation is kept only if every entry
//!   it read is still what the block's overlay holds for that key now, i.e. what serial
//!   execution would have read: execution is a function of the entries read, so its
//!   receipt, writes and touches are then exactly serial's, and they are absorbed. Anything
//!   else — a stale read, an error, a panic, a read of the fee recipient — is executed
//!   again on the block's overlay, which *is* the serial path. A transaction no worker has
//!   started yet is executed there directly.
//!
//! Every transaction pays the same fee recipient, so a speculation does not credit it: revm
//! reports the fee instead (`KeelEvm::transact_deferring_fee`) and the commit credits it
//! with the read-modify-write serial execution performs, in order. A transaction that reads
//! the fee recipient itself (a transfer to the proposer; a revival, an unflag or a charged
//! failure that pays a fee, which credit it in the transaction) is serial. Free ones are
//! speculated like any other: their proof checks read through the recording view too.
//!
//! No thread timing reaches a result: timing decides only which of the two equivalent paths
//! a transaction takes. The differential tests compare receipts and diffs at 1, 2, 4 and 8
//! threads.

use crate::executor::{Runtime, RuntimeError, TxMode};
use crate::schedule::{Committed, FinishOnDrop, ForCommit, Scheduler};
use keel_exec_evm::{BlockContext, BlockHashes, KeelDb};
use keel_state::{
    decode_entry, layered_storage_entries, Entry, Overlay, OverlayParts, StateDiff, StateError,
    StateView, StateViewExt,
};
use keel_types::limits::MAX_TX_GAS;
use keel_types::{Address, Epoch, Hash, Receipt, SignedTransaction, StateKey};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

/// The most threads a block uses, whatever the configuration asks (each holds a revm and a
/// speculation's read set; more than the cores only adds stale speculations).
pub const MAX_EXEC_THREADS: usize = 64;

/// How the transactions of parallel blocks were committed (timing, never results): a
/// runtime's clones share one set.
#[derive(Debug, Default)]
pub struct ParallelStats {
    /// Speculations that validated and were absorbed.
    pub kept: AtomicU64,
    /// Speculations discarded (a stale read, or a transaction speculation leaves to the
    /// serial path) and executed again.
    pub redone: AtomicU64,
    /// Transactions the committing thread executed itself (no speculation had started, or
    /// speculation paused after a run of stale ones).
    pub direct: AtomicU64,
}

impl ParallelStats {
    /// (kept, redone, direct) so far.
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.kept.load(Ordering::Relaxed),
            self.redone.load(Ordering::Relaxed),
            self.direct.load(Ordering::Relaxed),
        )
    }
}

/// What the workers read from: the block's starting state and the committed writes.
struct Shared<'a> {
    parent: &'a (dyn StateView + Sync),
    /// The block's writes before its first transaction (expiry sweep).
    pre: &'a StateDiff,
    /// Raw entries written by the transactions committed so far.
    committed: CommittedWrites,
}

/// Shards of the committed writes. Every read of a speculation that misses its own record
/// looks here while the committing thread publishes each commit's writes: one lock for all
/// of them was a fifth of those reads' time in a profile (its cache line moving between the
/// cores on every read, and readers waiting out each publish). A speculation may see one
/// commit's writes in some shards and not yet in others; validation checks every read
/// against the committed state whatever it saw, so that only costs a re-execution.
const COMMITTED_SHARDS: usize = 16;

struct CommittedWrites {
    shards: [RwLock<BTreeMap<StateKey, Option<Vec<u8>>>>; COMMITTED_SHARDS],
}

impl CommittedWrites {
    fn new() -> CommittedWrites {
        CommittedWrites {
            shards: std::array::from_fn(|_| RwLock::new(BTreeMap::new())),
        }
    }

    /// A key's shard: one of its bytes that varies between keys (storage slots and
    /// addresses are hashes or chosen apart; the other keys are few).
    fn shard(&self, key: &StateKey) -> &RwLock<BTreeMap<StateKey, Option<Vec<u8>>>> {
        let byte = match key {
            StateKey::Storage(address, slot) => slot[31] ^ address.0[19],
            StateKey::Account(address)
            | StateKey::Policy(address)
            | StateKey::SessionKeys(address)
            | StateKey::SessionKey(address, _)
            | StateKey::SessionSpend(address, _) => address.0[19],
            StateKey::Code(hash) => hash.0[31],
            StateKey::Validator(key) => key.0[31],
            StateKey::ArchiveRoot(n) | StateKey::FoldPage(n) | StateKey::EpochValidators(n) => {
                n.to_le_bytes()[0]
            }
            StateKey::ArchiveAccumulator | StateKey::FoldCount | StateKey::ValidatorRegistry => 0,
        };
        &self.shards[usize::from(byte) % COMMITTED_SHARDS]
    }
}

/// Where a speculation's read of one key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// The block's starting state below its own writes (`parent`), which never changes: the
    /// read is stale exactly when the block has written the key since. The entry is kept
    /// only to serve the key again (re-reading the store costs more than the copy).
    Parent(Option<Entry>),
    /// A write of this block (its sweep or a committed transaction): this entry.
    Block(Option<Entry>),
}

/// One speculation's view: records every entry it serves and where it came from, and
/// serves a key read again from the record, so one speculation sees one value per key even
/// while commits change `committed`, and the commit can check them all.
struct Recording<'a> {
    shared: &'a Shared<'a>,
    reads: RefCell<BTreeMap<StateKey, Seen>>,
    counts: RefCell<BTreeMap<Address, u64>>,
    /// A read the validation cannot check was asked for (the sweep's candidate queries).
    unchecked: Cell<bool>,
}

impl StateView for Recording<'_> {
    fn entry(&self, key: &StateKey) -> Result<Option<Entry>, StateError> {
        if let Some(Seen::Block(entry) | Seen::Parent(entry)) = self.reads.borrow().get(key) {
            return Ok(entry.clone());
        }
        let written = {
            let committed = self
                .shared
                .committed
                .shard(key)
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            match committed.get(key).or_else(|| self.shared.pre.get(key)) {
                Some(raw) => Some(decode_entry(raw.as_ref())?),
                None => None,
            }
        };
        let (entry, seen) = match written {
            Some(entry) => (entry.clone(), Seen::Block(entry)),
            None => {
                let entry = self.shared.parent.entry(key)?;
                (entry.clone(), Seen::Parent(entry))
            }
        };
        self.reads.borrow_mut().insert(key.clone(), seen);
        Ok(entry)
    }

    fn expiry_candidates(&self, _: Epoch, _: usize) -> Result<Vec<StateKey>, StateError> {
        self.unchecked.set(true);
        Ok(Vec::new())
    }

    fn fold_candidates(&self, _: Epoch, _: usize) -> Result<Vec<StateKey>, StateError> {
        self.unchecked.set(true);
        Ok(Vec::new())
    }

    /// The block's starting count: a commit that changed it fails the validation.
    fn storage_entries(&self, address: &Address) -> Result<u64, StateError> {
        if let Some(count) = self.counts.borrow().get(address) {
            return Ok(*count);
        }
        let count = layered_storage_entries(self.shared.parent, &[self.shared.pre], address)?;
        self.counts.borrow_mut().insert(*address, count);
        Ok(count)
    }
}

/// A transaction executed speculatively.
struct Speculation {
    receipt: Receipt,
    parts: OverlayParts,
    reads: BTreeMap<StateKey, Seen>,
    counts: BTreeMap<Address, u64>,
    /// The fee owed to the fee recipient, not yet credited.
    fee: Option<u128>,
}

/// What a worker left for the commit of one transaction.
enum Outcome {
    Speculated(Box<Speculation>),
    /// Execute on the block's overlay.
    Serial,
}

/// One block's transactions and what the executor already decided about them.
pub(crate) struct Block<'a> {
    pub parent: &'a (dyn StateView + Sync),
    pub hashes: &'a (dyn BlockHashes + Sync),
    pub context: &'a BlockContext,
    pub transactions: &'a [SignedTransaction],
    pub tx_hashes: &'a [Hash],
    /// Indexes of transactions with a refused signature (sorted).
    pub bad: &'a [usize],
}

/// Executes `block`'s transactions over `overlay` (the block's overlay after its sweep) on
/// `threads` threads; returns the receipts and the gas used, exactly as serial execution.
pub(crate) fn execute(
    runtime: &Runtime,
    block: &Block<'_>,
    overlay: &mut Overlay<&dyn StateView>,
    threads: usize,
) -> Result<(Vec<Receipt>, u64), RuntimeError> {
    let threads = threads.clamp(1, MAX_EXEC_THREADS);
    let pre = overlay.diff().clone();
    let shared = Shared {
        parent: block.parent,
        pre: &pre,
        committed: CommittedWrites::new(),
    };
    let scheduler = Scheduler::new(block.transactions.len(), threads);
    overlay.log_writes();
    overlay.take_write_log();
    // Speculations compile WASM modules without keeping them (on disk or in memory): a
    // discarded speculation must cost the node nothing serial execution would not.
    let speculative = runtime.as_speculative();
    let committed = std::thread::scope(|scope| {
        // Finishes the block however the commit ends (an error or a panic), so no worker
        // waits forever and the scope's join returns.
        let _finish = FinishOnDrop(&scheduler);
        for _ in 1..threads {
            scope.spawn(|| {
                while let Some(index) = scheduler.next_speculation() {
                    let outcome = speculate_caught(&speculative, block, &shared, index);
                    scheduler.speculated(index, outcome);
                }
            });
        }
        commit_all(runtime, &speculative, block, overlay, (&shared, &scheduler))
    });
    overlay.take_write_log();
    committed
}

/// [`speculate`], with a panic turned into the serial path (which reproduces it, or not):
/// never a hang of the committing thread.
fn speculate_caught(
    runtime: &Runtime,
    block: &Block<'_>,
    shared: &Shared<'_>,
    index: usize,
) -> Outcome {
    if block.bad.binary_search(&index).is_ok() {
        return Outcome::Serial;
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        speculate(runtime, block, shared, index)
    }))
    .unwrap_or(Outcome::Serial)
}

/// The commit loop: every transaction in block order, speculated or executed here.
fn commit_all(
    runtime: &Runtime,
    speculative: &Runtime,
    block: &Block<'_>,
    overlay: &mut Overlay<&dyn StateView>,
    (shared, scheduler): (&Shared<'_>, &Scheduler<Outcome>),
) -> Result<(Vec<Receipt>, u64), RuntimeError> {
    let mut receipts = Vec::with_capacity(block.transactions.len());
    let mut gas_used = 0u64;
    let stats = runtime.parallel_stats();
    let mut recipient = Recipient::default();
    for (index, tx) in block.transactions.iter().enumerate() {
        let tx_hash = block.tx_hashes[index];
        let outcome = loop {
            match scheduler.for_commit(index) {
                ForCommit::Validate(outcome) => break Some(outcome),
                ForCommit::Direct => break None,
                ForCommit::TakeOver => break Some(Outcome::Serial),
                // Idle otherwise: speculate further ahead.
                ForCommit::Speculate(ahead) => {
                    let outcome = speculate_caught(speculative, block, shared, ahead);
                    scheduler.speculated(ahead, outcome);
                }
            }
        };
        let (receipt, how) = if block.bad.binary_search(&index).is_ok() {
            let refused = crate::executor::rejected(tx_hash, keel_types::TxError::BadSignature);
            (refused, Committed::Direct)
        } else {
            let block_left = runtime.config().block_gas_limit.saturating_sub(gas_used);
            // A speculation ran with the whole block's gas left; a limit above what is
            // left now is refused, which the serial path says.
            let fits = tx.tx.gas_limit <= MAX_TX_GAS.min(block_left);
            match outcome {
                Some(Outcome::Speculated(spec)) if fits && still_valid(overlay, &spec)? => {
                    let spec = *spec;
                    overlay.absorb(spec.parts);
                    if let Some(fee) = spec.fee {
                        recipient.credit(overlay, block, fee)?;
                    }
                    (spec.receipt, Committed::Kept)
                }
                _ => {
                    // The serial path may read the fee recipient: it must be up to date.
                    recipient.flush(overlay, block)?;
                    let at = (tx_hash, gas_used);
                    let mode = TxMode::default();
                    let receipt =
                        runtime.execute_tx(overlay, block.hashes, block.context, tx, at, mode)?;
                    let how = match outcome {
                        Some(_) => Committed::Redone,
                        None => Committed::Direct,
                    };
                    (receipt, how)
                }
            }
        };
        let counter = match how {
            Committed::Kept => &stats.kept,
            Committed::Redone => &stats.redone,
            Committed::Direct => &stats.direct,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        overlay.discard_journal();
        scheduler.committed(index, how, || publish(overlay, shared));
        gas_used += receipt.gas_used;
        receipts.push(receipt);
    }
    recipient.flush(overlay, block)?;
    Ok((receipts, gas_used))
}

/// Runs transaction `index` on its own overlay over a recording view.
fn speculate(runtime: &Runtime, block: &Block<'_>, shared: &Shared<'_>, index: usize) -> Outcome {
    let view = Recording {
        shared,
        reads: RefCell::new(BTreeMap::new()),
        counts: RefCell::new(BTreeMap::new()),
        unchecked: Cell::new(false),
    };
    let base: &dyn StateView = &view;
    let mut overlay = runtime.overlay(base, block.context.epoch);
    let fee = Cell::new(None);
    let mode = TxMode {
        deferred_fee: Some(&fee),
        ..TxMode::default()
    };
    let tx = &block.transactions[index];
    let at = (block.tx_hashes[index], 0);
    let Ok(receipt) = runtime.execute_tx(&mut overlay, block.hashes, block.context, tx, at, mode)
    else {
        return Outcome::Serial;
    };
    let parts = overlay.into_parts();
    let recipient = StateKey::Account(block.context.beneficiary);
    let reads = view.reads.into_inner();
    if view.unchecked.get()
        || reads.contains_key(&recipient)
        || parts.writes.contains_key(&recipient)
    {
        return Outcome::Serial;
    }
    Outcome::Speculated(Box::new(Speculation {
        receipt,
        parts,
        reads,
        counts: view.counts.into_inner(),
        fee: fee.get(),
    }))
}

/// Whether every entry `spec` read is what `overlay` holds now: a key read from the parent
/// must still be unwritten by the block (the overlay then reads the same parent entry), a
/// key read from the block's writes must hold the same entry (touched epoch included).
fn still_valid(overlay: &Overlay<&dyn StateView>, spec: &Speculation) -> Result<bool, StateError> {
    for (key, seen) in &spec.reads {
        let valid = match (seen, overlay.written(key)) {
            (Seen::Parent(_), None) => true,
            (Seen::Block(entry), Some(raw)) => decode_entry(raw.as_ref())? == *entry,
            // Written since the parent read; or a block write gone, which a committed
            // write never is (kept conservative: executed again).
            (Seen::Parent(_), Some(_)) | (Seen::Block(_), None) => false,
        };
        if !valid {
            return Ok(false);
        }
    }
    for (address, count) in &spec.counts {
        if overlay.storage_entries(address)? != *count {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The fee recipient's account while kept speculations credit it: revm's
/// `reward_beneficiary` and keel's `apply_evm_state` for the one account a speculation did
/// not touch, with the writes between two credits left out (nothing reads them: a
/// transaction that reads the recipient runs serially, after a flush).
#[derive(Default)]
struct Recipient {
    /// The account after the credits so far, not yet written to the block's overlay.
    pending: Option<keel_types::AccountRecord>,
}

impl Recipient {
    /// Credits `fee`. The first credit since a flush reads the account (and its code) as
    /// `KeelDb` reads them, so the same entries are touched; the balance grows unless that
    /// overflows, as revm's `incr_balance`.
    fn credit(
        &mut self,
        overlay: &mut Overlay<&dyn StateView>,
        block: &Block<'_>,
        fee: u128,
    ) -> Result<(), RuntimeError> {
        let mut record = match self.pending.take() {
            Some(record) => record,
            None => {
                let address = block.context.beneficiary;
                {
                    use keel_exec_evm::revm::Database;
                    let view: &dyn StateView = &*overlay;
                    KeelDb::new(view, block.hashes)
                        .basic(keel_exec_evm::to_revm(&address))
                        .map_err(|e| RuntimeError::Fatal(e.to_string()))?;
                }
                overlay.account(&address)?.unwrap_or_default()
            }
        };
        if let Some(balance) = record.balance.checked_add(keel_types::U256::from(fee)) {
            record.balance = balance;
        }
        self.pending = Some(record);
        Ok(())
    }

    /// Writes the pending account, with EIP-161's deletion of a touched empty account.
    fn flush(
        &mut self,
        overlay: &mut Overlay<&dyn StateView>,
        block: &Block<'_>,
    ) -> Result<(), RuntimeError> {
        let Some(record) = self.pending.take() else {
            return Ok(());
        };
        let address = block.context.beneficiary;
        if record.nonce == 0 && record.balance.is_zero() && record.code.is_none() {
            overlay.set(StateKey::Account(address), None)?;
        } else {
            overlay.put_account(address, &record)?;
        }
        overlay.discard_journal();
        Ok(())
    }
}

/// Makes the last commit's writes visible to the workers.
fn publish(overlay: &mut Overlay<&dyn StateView>, shared: &Shared<'_>) {
    let keys = overlay.take_write_log();
    if keys.is_empty() {
        return;
    }
    for key in keys {
        if let Some(raw) = overlay.written(&key) {
            shared
                .committed
                .shard(&key)
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, raw.clone());
        }
    }
}
