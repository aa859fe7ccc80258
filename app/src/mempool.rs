//! The mempool: transactions admitted for inclusion, bounded in count, bytes and per sender.
//!
//! Admission checks what can be checked against the latest state (size, decoding, chain id,
//! gas bounds, signature — batch-verified —, a nonce window and the balance for the maximum
//! cost of the sender's queued transactions), so a flood of garbage never reaches a block.
//! Each sender has a nonce-ordered queue; when the pool is full a new transaction displaces
//! the cheapest transactions of other senders if it pays more (with their later nonces,
//! which could no longer run), so a flood keeps the best-paying transactions and never
//! leaves holes in a queue. After each committed block [`Mempool::revalidate`] drops what the block made stale.
//!
//! Everything is ordered (BTreeMap), so two nodes with the same inputs hold the same pool.
//!
//! The node shares one pool under one lock between RPC admission, gossip admission and the
//! driver (selection, then pruning after each commit). How each takes the lock and reads the
//! committed state is in the functions at the end ([`admit_latest`], [`select_locked`],
//! [`prune_committed`]), generic over the lock so the loom models (`loom_models.rs`) run
//! exactly them.

use keel_runtime::policy::{self, At};
use keel_runtime::precheck::check_stateless;
use keel_runtime::signatures::{admission_chunk, bad_signatures_in_chunks, SignatureCache};
use keel_state::{StateError, StateView, StateViewExt};
use keel_types::limits::{MAX_TX_BYTES, MAX_TX_GAS};
use keel_types::policy::PolicySpend;
use keel_types::sync::Lock;
use keel_types::{Address, Canonical, Hash, SignedTransaction, TxError, U256};
use std::collections::{BTreeMap, BTreeSet};

/// Mempool bounds. Every field bounds memory or work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Transactions held in total.
    pub max_txs: usize,
    /// Encoded bytes held in total.
    pub max_bytes: usize,
    /// Transactions held per sender.
    pub max_per_sender: usize,
    /// A transaction's nonce may be at most this far above the sender's account nonce.
    pub nonce_window: u64,
    /// A same-nonce replacement must raise the gas price by at least this percentage.
    pub replace_bump_percent: u128,
    /// Threads for batch signature verification (timing only).
    pub verify_threads: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 20_000,
            max_bytes: 64 * 1024 * 1024,
            max_per_sender: 64,
            nonce_window: 64,
            replace_bump_percent: 10,
            verify_threads: 1,
        }
    }
}

/// Why a transaction was not admitted. Every variant says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("transaction is {len} bytes, the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("transaction does not decode: {0}")]
    Decode(String),
    #[error("wrong chain id: expected {expected}, got {got}")]
    WrongChainId { expected: u64, got: u64 },
    #[error("bad signature")]
    BadSignature,
    #[error("gas limit {gas_limit} exceeds the per-transaction limit {max}")]
    GasLimitTooHigh { gas_limit: u64, max: u64 },
    #[error("gas price {gas_price} is below the minimum {min}")]
    GasPriceTooLow { gas_price: u128, min: u128 },
    #[error("gas limit {gas_limit} is below the transaction's intrinsic gas {intrinsic}")]
    IntrinsicGasTooLow { gas_limit: u64, intrinsic: u64 },
    /// Any other refusal of the runtime's stateless checks.
    #[error("refused: {0}")]
    Refused(TxError),
    #[error("nonce {got} is already used: the account nonce is {next}")]
    NonceTooLow { next: u64, got: u64 },
    #[error("nonce {got} is too far ahead: the account nonce is {next}, the window is {window}")]
    NonceTooFarAhead { next: u64, got: u64, window: u64 },
    #[error("insufficient balance for this and the sender's queued transactions: need {needed}, have {available}")]
    InsufficientBalance { needed: U256, available: U256 },
    #[error("transaction is already in the mempool")]
    AlreadyKnown,
    #[error("a transaction with this nonce is queued at gas price {queued}; a replacement must pay at least {required}")]
    ReplacementUnderpriced { queued: u128, required: u128 },
    #[error("sender already has {max} queued transactions; wait for some to be included")]
    SenderFull { max: usize },
    #[error("mempool full ({max_txs} transactions); retry later or raise the gas price")]
    Full { max_txs: usize },
    #[error("state read failed: {0}")]
    State(String),
    /// A session key may not replace what its account signed: it could keep the account's own
    /// revocation of it out of every block.
    #[error("a transaction signed by a session key cannot replace one its account signed")]
    ReplacementBySessionKey,
    /// The sender's policy refuses it (with its queued transactions counted first).
    #[error("policy denied: {0}")]
    PolicyDenied(keel_types::policy::PolicyDenial),
    /// Its policy plugins would run past what this node spends on plugins for one gossiped
    /// batch: not taken unjudged (a peer could otherwise spend the budget on denials first
    /// and slip a denied transaction in). The peer that relayed it keeps it.
    #[error("this batch's plugin gas at admission is spent; the relaying peer keeps it")]
    PluginBudget,
}

/// The runtime's stateless refusals, as admission errors.
impl From<TxError> for AdmitError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::WrongChainId { expected, got } => AdmitError::WrongChainId { expected, got },
            TxError::GasLimitTooHigh {
                gas_limit,
                block_gas_limit,
            } => AdmitError::GasLimitTooHigh {
                gas_limit,
                max: block_gas_limit,
            },
            TxError::GasPriceTooLow {
                gas_price,
                min_gas_price,
            } => AdmitError::GasPriceTooLow {
                gas_price,
                min: min_gas_price,
            },
            TxError::IntrinsicGasTooLow {
                gas_limit,
                intrinsic,
            } => AdmitError::IntrinsicGasTooLow {
                gas_limit,
                intrinsic,
            },
            other => AdmitError::Refused(other),
        }
    }
}

impl From<StateError> for AdmitError {
    fn from(e: StateError) -> Self {
        AdmitError::State(e.to_string())
    }
}

#[derive(Debug, Clone)]
struct Entry {
    tx: SignedTransaction,
    hash: Hash,
    bytes: usize,
    /// Its whole fee at its gas price (`Transaction::max_fee`), computed once: every later
    /// admission of the sender sums its queue, and a 256-bit product per queued entry was a
    /// tenth of admission's own work in a profile.
    max_fee: U256,
    /// The most it can take from the sender's balance: `max_fee` and the value it sends.
    max_cost: U256,
}

impl Entry {
    fn new(tx: SignedTransaction, hash: Hash, bytes: usize) -> Entry {
        let max_fee = tx.tx.max_fee();
        let max_cost = max_fee.saturating_add(tx.tx.body.value());
        Entry {
            tx,
            hash,
            bytes,
            max_fee,
            max_cost,
        }
    }

    /// The most this transaction can take from the sender's balance.
    fn max_cost(&self) -> U256 {
        self.max_cost
    }
}

/// One sender's pooled transactions by nonce, with what they may cost in all: the balance
/// check of a transaction queued after all of them (the usual order) is one read, not a sum
/// over the queue. Read through `Deref`; changed only by `insert` and `remove`, which keep
/// the total.
#[derive(Debug)]
struct Queue {
    entries: BTreeMap<u64, Entry>,
    /// The entries' `max_cost` summed, or `None` once a sum overflowed (the queue is then
    /// summed entry by entry; a sender's costs never come near 2^256 while balances are
    /// what they are, but nothing here may assume it).
    cost: Option<U256>,
    /// What the entries would use of the account's policy budgets in all (values sent, whole
    /// fees, count; the epoch is not kept), or `None` once a sum overflowed: the policy
    /// check of a policed sender's next transaction reads it instead of walking the queue
    /// (the walk was a third of policed admission's own work in a profile).
    spend: Option<PolicySpend>,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            entries: BTreeMap::new(),
            cost: Some(U256::ZERO),
            spend: Some(PolicySpend::default()),
        }
    }
}

/// `total` with `entry`'s use of the policy budgets added (`add`) or taken away; `None` on
/// overflow (or a subtraction below zero, which the bookkeeping never does).
fn shift_spend(total: Option<PolicySpend>, entry: &Entry, add: bool) -> Option<PolicySpend> {
    let total = total?;
    let value = entry.tx.tx.body.value();
    Some(if add {
        PolicySpend {
            epoch: total.epoch,
            value: total.value.checked_add(value)?,
            fees: total.fees.checked_add(entry.max_fee)?,
            txs: total.txs.checked_add(1)?,
        }
    } else {
        PolicySpend {
            epoch: total.epoch,
            value: total.value.checked_sub(value)?,
            fees: total.fees.checked_sub(entry.max_fee)?,
            txs: total.txs.checked_sub(1)?,
        }
    })
}

impl std::ops::Deref for Queue {
    type Target = BTreeMap<u64, Entry>;

    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl Queue {
    /// Inserts `entry` at `nonce`; returns the entry it replaced.
    fn insert(&mut self, nonce: u64, entry: Entry) -> Option<Entry> {
        self.cost = self.cost.and_then(|c| c.checked_add(entry.max_cost));
        self.spend = shift_spend(self.spend, &entry, true);
        let replaced = self.entries.insert(nonce, entry);
        if let Some(old) = &replaced {
            self.cost = self.cost.and_then(|c| c.checked_sub(old.max_cost));
            self.spend = shift_spend(self.spend, old, false);
        }
        replaced
    }

    fn remove(&mut self, nonce: u64) -> Option<Entry> {
        let removed = self.entries.remove(&nonce);
        if let Some(old) = &removed {
            self.cost = self.cost.and_then(|c| c.checked_sub(old.max_cost));
            self.spend = shift_spend(self.spend, old, false);
        }
        if self.entries.is_empty() {
            self.cost = Some(U256::ZERO);
            self.spend = Some(PolicySpend::default());
        }
        removed
    }

    /// What the entries before `nonce` would use of the account's policy budgets, when the
    /// total says it at once (`nonce` after every entry).
    fn spend_before(&self, nonce: u64) -> Option<PolicySpend> {
        let last = self.entries.last_key_value().map(|(&n, _)| n);
        if last.is_some_and(|last| last >= nonce) {
            return None;
        }
        self.spend
    }

    /// What the entries before `nonce` may cost in all, when the total says it at once
    /// (`nonce` after every entry).
    fn cost_before(&self, nonce: u64) -> Option<U256> {
        let (&last, _) = self.entries.last_key_value()?;
        (last < nonce).then_some(self.cost).flatten()
    }
}

/// Admission's signature check, detached from the pool so RPC and gossip run it before
/// taking the pool lock (verification is most of admission's work, and block selection and
/// pruning wait on that lock).
#[derive(Debug, Clone)]
pub struct SignatureChecker {
    threads: usize,
    eth_base_fee: u128,
    cache: Option<std::sync::Arc<SignatureCache>>,
}

/// Transactions with their hashes and the indices of those whose signature failed.
#[derive(Debug)]
pub struct Checked {
    txs: Vec<SignedTransaction>,
    hashes: Vec<Hash>,
    bad: Vec<usize>,
    /// Transactions refused by a veto ([`admit_latest_vetted`]), by index, with why.
    vetoed: BTreeMap<usize, AdmitError>,
}

impl Checked {
    /// Refuses each transaction whose signature verified with its `prechecked` error, if it
    /// has one, else asks `veto` about it; what `veto` refuses is refused with its error.
    /// `prechecked` is `None` for a transaction the veto is not asked about (left to the
    /// pool's own checks).
    fn veto(
        &mut self,
        prechecked: Vec<Option<Option<AdmitError>>>,
        mut veto: impl FnMut(&SignedTransaction) -> Option<AdmitError>,
    ) {
        for ((i, tx), early) in self.txs.iter().enumerate().zip(prechecked) {
            let Some(early) = early else {
                continue;
            };
            if self.bad.binary_search(&i).is_ok() {
                continue;
            }
            if let Some(error) = early.or_else(|| veto(tx)) {
                self.vetoed.insert(i, error);
            }
        }
    }
}

impl SignatureChecker {
    /// Hashes and verifies `txs` (skipping what the cache holds; it is filled only by what
    /// the pool then admits).
    pub fn check(&self, txs: Vec<SignedTransaction>) -> Checked {
        let hashes: Vec<Hash> = txs.iter().map(SignedTransaction::hash).collect();
        let bad = bad_signatures_in_chunks(
            &txs,
            &hashes,
            self.threads,
            self.eth_base_fee,
            admission_chunk(txs.len(), self.threads),
            self.cache.as_deref(),
        );
        Checked {
            txs,
            hashes,
            bad,
            vetoed: BTreeMap::new(),
        }
    }
}

/// The pool. Not thread-safe by itself: the node wraps it in one lock.
#[derive(Debug)]
pub struct Mempool {
    config: MempoolConfig,
    chain_id: u64,
    min_gas_price: u128,
    senders: BTreeMap<Address, Queue>,
    hashes: BTreeMap<Hash, (Address, u64)>,
    /// Every entry by (gas price, sender, nonce): the eviction order.
    by_price: BTreeSet<(u128, Address, u64)>,
    bytes: usize,
    /// Shared with the runtime: signatures admission verified are not verified again when a
    /// block carries them (issue 22).
    signatures: Option<std::sync::Arc<SignatureCache>>,
    /// Decoded policy records of senders (time only: used for the same stored bytes): an
    /// agent's queued transactions check the same record.
    policies: policy::PolicyCache,
    epoch_length: u64,
    /// Where policies are checked at admission (`set_latest_height`).
    next_block: At,
}

impl Mempool {
    pub fn new(config: MempoolConfig, chain_id: u64, min_gas_price: u128) -> Mempool {
        Mempool {
            config,
            chain_id,
            min_gas_price,
            senders: BTreeMap::new(),
            hashes: BTreeMap::new(),
            by_price: BTreeSet::new(),
            bytes: 0,
            signatures: None,
            policies: Default::default(),
            epoch_length: u64::MAX,
            next_block: At {
                height: 1,
                epoch: 0,
            },
        }
    }

    /// Admission checks policies for the block after the latest committed one, whose epoch
    /// needs the chain's epoch length (without it, every block is in epoch 0).
    pub fn with_epoch_length(mut self, epoch_length: u64) -> Mempool {
        self.epoch_length = epoch_length.max(1);
        self
    }

    /// After a commit (and at start): the latest committed height, so that admission checks
    /// policies at the next height and its epoch.
    pub fn set_latest_height(&mut self, height: u64) {
        self.next_block = At {
            height: height.saturating_add(1),
            epoch: height / self.epoch_length,
        };
    }

    /// Remembers the signatures admission verifies in `cache` (the runtime's), and skips
    /// ones already in it (a transaction that arrives by RPC and again by gossip).
    pub fn with_signature_cache(mut self, cache: std::sync::Arc<SignatureCache>) -> Mempool {
        self.signatures = Some(cache);
        self
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// A pooled transaction by hash.
    pub fn get(&self, hash: &Hash) -> Option<&SignedTransaction> {
        let (sender, nonce) = self.hashes.get(hash)?;
        self.senders.get(sender)?.get(nonce).map(|e| &e.tx)
    }

    /// The nonce a sender's next transaction should carry: after its queued transactions
    /// that follow `state_nonce` without a gap.
    pub fn pending_nonce(&self, sender: &Address, state_nonce: u64) -> u64 {
        let Some(queue) = self.senders.get(sender) else {
            return state_nonce;
        };
        let mut next = state_nonce;
        for nonce in queue.range(state_nonce..).map(|(n, _)| *n) {
            if nonce != next {
                break;
            }
            next += 1;
        }
        next
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Encoded bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.hashes.contains_key(hash)
    }

    /// Every held transaction, by sender then nonce.
    pub fn transactions(&self) -> impl Iterator<Item = &SignedTransaction> {
        self.senders
            .values()
            .flat_map(|q| q.values().map(|e| &e.tx))
    }

    pub fn config(&self) -> &MempoolConfig {
        &self.config
    }

    /// Decode and admit raw transactions (as received over RPC or gossip).
    pub fn admit_raw(
        &mut self,
        state: &dyn StateView,
        raw: &[Vec<u8>],
    ) -> Vec<Result<Hash, AdmitError>> {
        let mut results: Vec<Option<Result<Hash, AdmitError>>> = vec![None; raw.len()];
        let mut decoded = Vec::new();
        let mut positions = Vec::new();
        for (i, bytes) in raw.iter().enumerate() {
            if bytes.len() > MAX_TX_BYTES {
                results[i] = Some(Err(AdmitError::TooLarge {
                    len: bytes.len(),
                    max: MAX_TX_BYTES,
                }));
                continue;
            }
            match SignedTransaction::decode(bytes) {
                Ok(tx) => {
                    // Canonical decoding: the bytes are the encoding, so their length is
                    // its length (no re-encoding per transaction).
                    decoded.push((tx, bytes.len()));
                    positions.push(i);
                }
                Err(e) => results[i] = Some(Err(AdmitError::Decode(e.to_string()))),
            }
        }
        for (i, result) in positions.into_iter().zip(self.admit_sized(state, decoded)) {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(AdmitError::Decode("not processed".into()))))
            .collect()
    }

    /// Admit decoded transactions; one result per transaction, in order. Signatures of the
    /// whole batch are verified together.
    pub fn admit(
        &mut self,
        state: &dyn StateView,
        txs: Vec<SignedTransaction>,
    ) -> Vec<Result<Hash, AdmitError>> {
        let sized = txs
            .into_iter()
            .map(|tx| {
                let len = tx.encode().len();
                (tx, len)
            })
            .collect();
        self.admit_sized(state, sized)
    }

    /// The shared signature cache's counts (blocks' signatures found verified, and not), for
    /// metrics.
    pub fn signature_cache_counts(&self) -> Option<(u64, u64)> {
        self.signatures.as_ref().map(|c| c.hits_and_misses())
    }

    /// What admission's signature check needs, to run it without the pool (and the lock
    /// around it): the check is a function of the transactions alone.
    pub fn signature_checker(&self) -> SignatureChecker {
        SignatureChecker {
            threads: self.config.verify_threads,
            eth_base_fee: self.min_gas_price,
            cache: self.signatures.clone(),
        }
    }

    /// [`Mempool::admit`] of transactions with their encoded lengths.
    fn admit_sized(
        &mut self,
        state: &dyn StateView,
        sized: Vec<(SignedTransaction, usize)>,
    ) -> Vec<Result<Hash, AdmitError>> {
        let (txs, lens): (Vec<SignedTransaction>, Vec<usize>) = sized.into_iter().unzip();
        let checked = self.signature_checker().check(txs);
        self.admit_checked(state, checked, lens)
    }

    /// Admits transactions whose signatures [`SignatureChecker::check`] verified; `lens` are
    /// their encoded lengths.
    pub fn admit_checked(
        &mut self,
        state: &dyn StateView,
        checked: Checked,
        lens: Vec<usize>,
    ) -> Vec<Result<Hash, AdmitError>> {
        let Checked {
            txs,
            hashes,
            bad,
            mut vetoed,
        } = checked;
        assert_eq!(txs.len(), lens.len(), "one length per transaction");
        txs.into_iter()
            .zip(hashes)
            .zip(lens)
            .enumerate()
            .map(|(i, ((tx, hash), bytes))| {
                if bad.binary_search(&i).is_ok() {
                    return Err(AdmitError::BadSignature);
                }
                if let Some(error) = vetoed.remove(&i) {
                    return Err(error);
                }
                // Remembered only once admitted: what the pool refuses (an unfunded fresh
                // key, a stale nonce) never takes cache room.
                let key = self
                    .signatures
                    .as_ref()
                    .map(|_| SignatureCache::key(&tx, &hash, self.min_gas_price));
                let admitted = self.insert(state, tx, hash, bytes);
                if let (Ok(_), Some(cache), Some(key)) = (&admitted, &self.signatures, key) {
                    cache.remember_key(key);
                }
                admitted
            })
            .collect()
    }

    /// Size, then the runtime's own stateless checks (`keel_runtime::precheck`: chain id, gas
    /// bounds, gas price, intrinsic gas), so the pool refuses what a block would refuse.
    fn stateless_checks(&self, tx: &SignedTransaction, len: usize) -> Result<(), AdmitError> {
        if len > MAX_TX_BYTES {
            return Err(AdmitError::TooLarge {
                len,
                max: MAX_TX_BYTES,
            });
        }
        check_stateless(&tx.tx, self.chain_id, self.min_gas_price, MAX_TX_GAS)
            .map_err(AdmitError::from)
    }

    /// The checks of [`Self::insert`] before the sender's policy, in its order: size, chain
    /// id, gas bounds and price, already known, the nonce window, replacement and sender
    /// limits, and a balance covering this transaction and its sender's queued ones ahead of
    /// it. Admission's veto
    /// (policy plugins) runs only for what passes them ([`admit_latest_vetted`]), so a
    /// refusal that costs the sender nothing never buys a plugin run. Returns the sender, the
    /// nonce and the sender's account.
    fn precheck(
        &self,
        state: &dyn StateView,
        tx: &SignedTransaction,
        hash: &Hash,
        bytes: usize,
    ) -> Result<(Address, u64, keel_types::AccountRecord), AdmitError> {
        self.stateless_checks(tx, bytes)?;
        if self.hashes.contains_key(hash) {
            return Err(AdmitError::AlreadyKnown);
        }
        let sender = tx.tx.sender_address();
        let nonce = tx.tx.nonce;
        let account = state.account(&sender)?.unwrap_or_default();
        if nonce < account.nonce {
            return Err(AdmitError::NonceTooLow {
                next: account.nonce,
                got: nonce,
            });
        }
        if nonce - account.nonce >= self.config.nonce_window {
            return Err(AdmitError::NonceTooFarAhead {
                next: account.nonce,
                got: nonce,
                window: self.config.nonce_window,
            });
        }
        let queue = self.senders.get(&sender);
        if let Some(old) = queue.and_then(|q| q.get(&nonce)) {
            let by_session = matches!(tx.tx.sender, keel_types::Sender::Session { .. });
            if by_session && old.tx.tx.sender != tx.tx.sender {
                return Err(AdmitError::ReplacementBySessionKey);
            }
            let queued = old.tx.tx.gas_price;
            let required = queued
                .saturating_mul(100 + self.config.replace_bump_percent)
                .div_ceil(100)
                .max(queued.saturating_add(1));
            if tx.tx.gas_price < required {
                return Err(AdmitError::ReplacementUnderpriced { queued, required });
            }
        } else if queue.is_some_and(|q| q.len() >= self.config.max_per_sender) {
            return Err(AdmitError::SenderFull {
                max: self.config.max_per_sender,
            });
        }
        // The balance must cover this transaction and every queued one with a lower nonce
        // (they run first); higher ones are re-checked when their turn comes.
        let (ahead, _) = self.queued_before(&sender, nonce, &tx.tx.sender, false);
        let needed = ahead.saturating_add(tx.tx.max_fee().saturating_add(tx.tx.body.value()));
        if needed > account.balance {
            return Err(AdmitError::InsufficientBalance {
                needed,
                available: account.balance,
            });
        }
        Ok((sender, nonce, account))
    }

    /// Admit one transaction whose signature has been verified.
    /// `bytes`: its encoded length.
    fn insert(
        &mut self,
        state: &dyn StateView,
        tx: SignedTransaction,
        hash: Hash,
        bytes: usize,
    ) -> Result<Hash, AdmitError> {
        let (sender, nonce, _) = self.precheck(state, &tx, &hash, bytes)?;
        let entry = Entry::new(tx, hash, bytes);
        let replaced = self.senders.get(&sender).and_then(|q| q.get(&nonce));
        // Whether the sender's policy (or a session key, or some address's jurisdiction
        // rules) applies. Most senders have no policy and no address declares rules: two
        // cached reads, and nothing else to do.
        let session = matches!(entry.tx.tx.sender, keel_types::Sender::Session { .. });
        let (policed, record) = self.policies.read(state, &sender).and_then(|record| {
            let policed =
                session || record.is_some() || keel_runtime::jurisdiction::any_rules(state)?;
            Ok((policed, record))
        })?;
        // The sender's policy, with its queued transactions that run first counted as if
        // each sent its value and paid its whole fee (execution, in the block, decides).
        if policed {
            let (_, queued) = self.queued_before(&sender, nonce, &entry.tx.tx.sender, true);
            let decision =
                policy::evaluate_with(state, record, &entry.tx.tx, self.next_block, queued)?;
            if let Some(denial) = decision.denial {
                return Err(AdmitError::PolicyDenied(denial));
            }
        }
        let freed = replaced.map_or(0, |e| e.bytes);
        self.make_room(&sender, &entry, freed)?;
        self.remove(&sender, nonce);
        self.by_price.insert((entry.tx.tx.gas_price, sender, nonce));
        self.senders.entry(sender).or_default().insert(nonce, entry);
        self.hashes.insert(hash, (sender, nonce));
        self.bytes += bytes;
        Ok(hash)
    }

    /// Evict the cheapest transactions of other senders (each with its sender's later
    /// nonces, which could no longer run) while they pay less than `entry`, until it fits;
    /// or refuse it. O(log n) per eviction through the price index.
    fn make_room(
        &mut self,
        sender: &Address,
        entry: &Entry,
        freed: usize,
    ) -> Result<(), AdmitError> {
        let is_replacement = freed > 0;
        loop {
            let count = self.hashes.len() + usize::from(!is_replacement);
            let bytes = self.bytes - freed + entry.bytes;
            if count <= self.config.max_txs && bytes <= self.config.max_bytes {
                return Ok(());
            }
            // Never the new transaction's own sender: that could leave a gap below it.
            let victim = self.by_price.iter().find(|(_, a, _)| a != sender).copied();
            match victim {
                Some((price, a, n)) if price < entry.tx.tx.gas_price => {
                    let later: Vec<u64> = self
                        .senders
                        .get(&a)
                        .map(|q| q.range(n..).map(|(k, _)| *k).collect())
                        .unwrap_or_default();
                    for k in later {
                        self.remove(&a, k);
                    }
                }
                _ => {
                    return Err(AdmitError::Full {
                        max_txs: self.config.max_txs,
                    })
                }
            }
        }
    }

    fn remove(&mut self, sender: &Address, nonce: u64) {
        let Some(queue) = self.senders.get_mut(sender) else {
            return;
        };
        if let Some(e) = queue.remove(nonce) {
            self.hashes.remove(&e.hash);
            self.by_price.remove(&(e.tx.tx.gas_price, *sender, nonce));
            self.bytes -= e.bytes;
        }
        if queue.is_empty() {
            self.senders.remove(sender);
        }
    }

    /// Drop these transactions: those a committed block included (also dropped by
    /// `revalidate`, their nonce being used), and those a proposer left out because they
    /// cannot be charged (they would otherwise be selected again for every proposal).
    pub fn remove_included<'a>(&mut self, hashes: impl IntoIterator<Item = &'a Hash>) -> usize {
        let before = self.len();
        for hash in hashes {
            if let Some((sender, nonce)) = self.hashes.get(hash).copied() {
                self.remove(&sender, nonce);
            }
        }
        before - self.len()
    }

    /// After a block is committed: drop transactions whose nonce is used, and those the
    /// sender can no longer pay for (with everything queued before them). Returns how many
    /// were dropped.
    pub fn revalidate(&mut self, state: &dyn StateView) -> Result<usize, AdmitError> {
        let before = self.len();
        let senders: Vec<Address> = self.senders.keys().copied().collect();
        for sender in senders {
            let account = match state.account(&sender) {
                Ok(a) => a.unwrap_or_default(),
                // The sender's account expired while its transactions waited: none of them
                // can run until someone revives it, so they leave the pool.
                Err(StateError::Expired { .. }) => {
                    let nonces: Vec<u64> = self
                        .senders
                        .get(&sender)
                        .map(|q| q.keys().copied().collect())
                        .unwrap_or_default();
                    for nonce in nonces {
                        self.remove(&sender, nonce);
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let Some(queue) = self.senders.get(&sender) else {
                continue;
            };
            let mut drop = Vec::new();
            let mut spent = U256::ZERO;
            for (nonce, entry) in queue.iter() {
                spent = spent.saturating_add(entry.max_cost());
                let stale = *nonce < account.nonce;
                let unpayable = !stale && spent > account.balance;
                let out_of_window = nonce.saturating_sub(account.nonce) >= self.config.nonce_window;
                if stale {
                    spent = spent.saturating_sub(entry.max_cost());
                }
                if stale || unpayable || out_of_window {
                    drop.push(*nonce);
                }
            }
            for nonce in drop {
                self.remove(&sender, nonce);
            }
            self.drop_denied(state, &sender)?;
        }
        Ok(before - self.len())
    }

    /// The sender's queue in nonce order against its policy (and its session keys'), each
    /// counted as if the ones before it ran: the first denied one leaves with every later
    /// nonce (they could not run after it). So a policy change that freezes or tightens the
    /// account, or an epoch's budget filled by a block, empties what can no longer run
    /// instead of leaving it for the proposer to refuse (found by review).
    fn drop_denied(&mut self, state: &dyn StateView, sender: &Address) -> Result<(), AdmitError> {
        let Some(queue) = self.senders.get(sender) else {
            return Ok(());
        };
        let session = queue
            .values()
            .any(|e| matches!(e.tx.tx.sender, keel_types::Sender::Session { .. }));
        let record = self.policies.read(state, sender)?;
        if !session && record.is_none() && !keel_runtime::jurisdiction::any_rules(state)? {
            return Ok(());
        }
        let mut first_denied = None;
        for (nonce, entry) in queue.iter() {
            let (_, queued) = self.queued_before(sender, *nonce, &entry.tx.tx.sender, true);
            // The same record for every queued transaction: read once, above.
            let decision = policy::evaluate_with(
                state,
                record.clone(),
                &entry.tx.tx,
                self.next_block,
                queued,
            )?;
            if decision.denial.is_some() {
                first_denied = Some(*nonce);
                break;
            }
        }
        if let Some(from) = first_denied {
            let later: Vec<u64> = queue.range(from..).map(|(n, _)| *n).collect();
            for nonce in later {
                self.remove(sender, nonce);
            }
        }
        Ok(())
    }

    /// What the sender's transactions queued before `nonce` cost at most (for the balance
    /// check) and, if `policed`, would use of the policy budgets (for the policy check of
    /// `entry`, its session key's share apart): one pass over them.
    fn queued_before(
        &self,
        sender: &Address,
        nonce: u64,
        signer: &keel_types::Sender,
        policed: bool,
    ) -> (U256, policy::Queued) {
        let add = |used: PolicySpend, e: &Entry| PolicySpend {
            epoch: used.epoch,
            value: used.value.saturating_add(e.tx.tx.body.value()),
            fees: used.fees.saturating_add(e.max_fee),
            txs: used.txs.saturating_add(1),
        };
        let mut cost = U256::ZERO;
        let mut queued = policy::Queued::default();
        let queue = self.senders.get(sender);
        if let Some(total) = queue.and_then(|q| q.cost_before(nonce)) {
            if !policed {
                return (total, queued);
            }
            // A session key's share is summed apart (it may sign some of the queue), so
            // only the account's own signers read the totals.
            let session = matches!(signer, keel_types::Sender::Session { .. });
            if let Some(spend) = queue
                .and_then(|q| q.spend_before(nonce))
                .filter(|_| !session)
            {
                queued.account = spend;
                return (total, queued);
            }
        }
        let earlier = self
            .senders
            .get(sender)
            .into_iter()
            .flat_map(|q| q.range(..nonce));
        for (_, e) in earlier {
            cost = cost.saturating_add(e.max_cost());
            if policed {
                queued.account = add(queued.account, e);
                if e.tx.tx.sender == *signer {
                    queued.session = add(queued.session, e);
                }
            }
        }
        (cost, queued)
    }

    /// Transactions for a proposal: for each sender the run of consecutive nonces starting
    /// at its account nonce, merged by gas price (highest first; ties by sender address),
    /// within the given limits. The caller puts them in canonical block order.
    pub fn select(
        &self,
        state: &dyn StateView,
        max_txs: usize,
        max_bytes: usize,
        max_gas: u64,
    ) -> Result<Vec<SignedTransaction>, AdmitError> {
        // Per sender, its ready run, as a cursor.
        let mut runs: Vec<Vec<&Entry>> = Vec::new();
        for (sender, queue) in &self.senders {
            let first = match state.account(sender) {
                Ok(a) => a.unwrap_or_default().nonce,
                // An expired sender's transactions would be rejected; one such sender must
                // not empty every proposal.
                Err(StateError::Expired { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut run: Vec<&Entry> = (first..)
                .zip(queue.range(first..))
                .take_while(|(expected, (nonce, _))| expected == *nonce)
                .map(|(_, (_, entry))| entry)
                .collect();
            if !run.is_empty() {
                run.reverse(); // pop() gives the lowest nonce
                runs.push(run);
            }
        }
        let (mut out, mut bytes, mut gas) = (Vec::new(), 0usize, 0u64);
        while out.len() < max_txs {
            // The run whose next transaction pays most (stable: runs are in address order).
            let best = runs
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.last().map(|e| (e.tx.tx.gas_price, std::cmp::Reverse(i))))
                .max();
            let Some((_, std::cmp::Reverse(i))) = best else {
                break;
            };
            let Some(entry) = runs[i].pop() else {
                break;
            };
            if bytes + entry.bytes > max_bytes
                || gas.saturating_add(entry.tx.tx.gas_limit) > max_gas
            {
                // This sender's later nonces cannot go without this one.
                runs[i].clear();
                continue;
            }
            bytes += entry.bytes;
            gas += entry.tx.tx.gas_limit;
            out.push(entry.tx.clone());
        }
        Ok(out)
    }
}

/// The pool's lock. A holder that panicked may have left the pool half-updated (its byte
/// count, its indexes), so a poisoned pool is not used: the caller panics as it always did.
fn lock_pool<L: Lock<Mempool>>(pool: &L) -> L::Guard<'_> {
    match pool.acquire() {
        Ok(guard) => guard,
        Err(_) => panic!("mempool lock poisoned"),
    }
}

/// Admission as RPC and gossip do it; returns one result per transaction and the pool's
/// size after. `latest` (the store's latest committed view) is read *under* the pool lock:
/// read before it, it could predate a block the driver committed and pruned in between, and
/// that block's own transactions (a peer gossiping them late, a client resending one) were
/// admitted again with nonces the chain had already used. They stayed until the next
/// block's revalidation, counted against their sender's queue and balance, and RPC
/// gossiped them on (found by the loom model `stale_view_leaves_a_used_nonce_in_the_pool`).
///
/// Signatures are verified before the lock is taken (their verdict depends on nothing the
/// lock guards), so the driver's block selection and prune never wait on a batch's
/// verification.
pub fn admit_latest<L, V>(
    pool: &L,
    latest: impl FnOnce() -> V,
    txs: Vec<SignedTransaction>,
) -> (Vec<Result<Hash, AdmitError>>, usize)
where
    L: Lock<Mempool>,
    V: StateView,
{
    let lens: Vec<usize> = txs.iter().map(|tx| tx.encode().len()).collect();
    let checker = lock_pool(pool).signature_checker();
    let checked = checker.check(txs);
    admit_under_lock(pool, latest, checked, lens)
}

/// [`admit_latest`], with `veto` asked about each transaction whose signature verified,
/// that `may_veto` names (the node: those whose policy plugins could run), and that passes
/// every pool check before the sender's policy ([`Mempool::precheck`], under a short hold
/// of the lock; `insert` runs it again under the second), with the lock released: what it
/// refuses (`Some(error)`) is refused with that error. The node's veto runs policy
/// plugins, which execute contracts: too slow to run under the lock the driver's block
/// selection waits on, and never to be run for a transaction the pool refuses anyway (an
/// unfunded sender, a used nonce, one already held: a refusal costs its sender nothing, so
/// each would be a free plugin run; found by review). A batch `may_veto` names nothing in
/// is admitted as [`admit_latest`] admits it: one hold of the lock.
pub fn admit_latest_vetted<L, V>(
    pool: &L,
    latest: impl Fn() -> V,
    txs: Vec<SignedTransaction>,
    (may_veto, veto): (
        impl Fn(&SignedTransaction) -> bool,
        impl FnMut(&SignedTransaction) -> Option<AdmitError>,
    ),
) -> (Vec<Result<Hash, AdmitError>>, usize)
where
    L: Lock<Mempool>,
    V: StateView,
{
    let lens: Vec<usize> = txs.iter().map(|tx| tx.encode().len()).collect();
    let checker = lock_pool(pool).signature_checker();
    let mut checked = checker.check(txs);
    let asked: Vec<bool> = (checked.txs.iter().enumerate())
        .map(|(i, tx)| checked.bad.binary_search(&i).is_err() && may_veto(tx))
        .collect();
    if !asked.contains(&true) {
        return admit_under_lock(pool, latest, checked, lens);
    }
    // A precheck's refusal stands: were it retried under the second hold of the lock, a
    // block committed in between could let the transaction in without its veto (found by
    // review).
    let prechecked: Vec<Option<Option<AdmitError>>> = {
        let pool = lock_pool(pool);
        let view = latest();
        (checked
            .txs
            .iter()
            .zip(&checked.hashes)
            .zip(&lens)
            .zip(&asked))
        .map(|(((tx, hash), len), asked)| asked.then(|| pool.precheck(&view, tx, hash, *len).err()))
        .collect()
    };
    checked.veto(prechecked, veto);
    admit_under_lock(pool, latest, checked, lens)
}

/// The pool's admission of `checked` against the latest view, read under the lock (see
/// [`admit_latest`]).
fn admit_under_lock<L, V>(
    pool: &L,
    latest: impl FnOnce() -> V,
    checked: Checked,
    lens: Vec<usize>,
) -> (Vec<Result<Hash, AdmitError>>, usize)
where
    L: Lock<Mempool>,
    V: StateView,
{
    let mut pool = lock_pool(pool);
    let view = latest();
    let results = pool.admit_checked(&view, checked, lens);
    (results, pool.len())
}

/// Block selection by the driver (see [`Mempool::select`]) over `state`, the state after
/// the proposal's parent.
pub fn select_locked<L: Lock<Mempool>>(
    pool: &L,
    state: &dyn StateView,
    max_txs: usize,
    max_bytes: usize,
    max_gas: u64,
) -> Result<Vec<SignedTransaction>, AdmitError> {
    lock_pool(pool).select(state, max_txs, max_bytes, max_gas)
}

/// The pool's size after a prune, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    pub txs: usize,
    pub bytes: usize,
}

/// After the driver committed a block: drop its transactions, then revalidate against the
/// latest committed view (read under the lock, after the commit). Every admission that saw
/// an older view took the lock before this prune, so nothing stale outlives it.
pub fn prune_committed<'a, L, V>(
    pool: &L,
    included: impl IntoIterator<Item = &'a Hash>,
    latest: impl FnOnce() -> V,
) -> (Result<usize, AdmitError>, PoolSize)
where
    L: Lock<Mempool>,
    V: StateView,
{
    let mut pool = lock_pool(pool);
    let removed = pool.remove_included(included);
    let revalidated = pool.revalidate(&latest()).map(|dropped| removed + dropped);
    let size = PoolSize {
        txs: pool.len(),
        bytes: pool.bytes(),
    };
    (revalidated, size)
}

#[cfg(test)]
#[path = "mempool_loom.rs"]
mod loom_models;
