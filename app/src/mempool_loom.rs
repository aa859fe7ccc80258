//! loom models of the mempool under concurrent RPC and gossip admission racing the driver's
//! selection and post-commit prune. The production functions (`mempool::{admit_latest,
//! select_locked, prune_committed}`) are generic over [`Lock`]; here they run over
//! `loom::sync::Mutex` inside `loom::model`, which explores their interleavings (bounded
//! preemptions). The only stand-in is the store: its committed account nonces, under a loom
//! mutex, as RocksDB cannot run in a model.
//!
//! The driver executes and commits on one thread, inline: there is no executor ↔ committer
//! hand-off to model yet (the throughput issue's pipeline will add one, and its model).

use super::{admit_latest, prune_committed, select_locked, Mempool, MempoolConfig};
use keel_state::{Entry, StateError, StateView};
use keel_types::{
    AccountRecord, Address, Canonical, Hash, SecretKey, SignedTransaction, StateKey, Transaction,
    TxBody, U256,
};
use loom::sync::{Arc, Mutex};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// Preemptions per execution: the stale-view race needs two (admitter → driver → admitter);
/// three also covers every order of the three threads' lock sections, and each model still
/// runs in seconds.
const PREEMPTIONS: usize = 3;
const CHAIN_ID: u64 = 7;
const MIN_GAS_PRICE: u128 = 1;
/// Every sender's balance: far more than the model's transactions cost.
const FUNDS: u64 = 1_000_000_000_000;
/// Pool bounds small enough that the second sender's transaction must evict.
const POOL_MAX_TXS: usize = 2;
const POOL_MAX_BYTES: usize = 64 * 1024;
/// Block limits far above the model's transactions: selection is bounded by the pool.
const BLOCK_MAX_TXS: usize = 16;
const BLOCK_MAX_BYTES: usize = 1024 * 1024;
const BLOCK_MAX_GAS: u64 = 1_000_000;

fn model(f: impl Fn() + Sync + Send + 'static) {
    keel_types::sync::loom_model(PREEMPTIONS, f);
}

fn transfer(from: &SecretKey, nonce: u64, gas_price: u128) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN_ID,
        sender: from.public_key().into(),
        nonce,
        gas_limit: 21_000,
        gas_price,
        body: TxBody::Transfer {
            to: Address([0xee; 20]),
            amount: U256::from(1u64),
        },
    }
    .sign(from)
}

/// A committed state: account nonces (every sender funded).
#[derive(Debug, Clone, Default)]
struct View(BTreeMap<Address, u64>);

impl StateView for View {
    fn entry(&self, key: &StateKey) -> Result<Option<Entry>, StateError> {
        let StateKey::Account(address) = key else {
            return Ok(None);
        };
        Ok(self.0.get(address).map(|nonce| Entry::Live {
            touched_epoch: 0,
            value: AccountRecord {
                nonce: *nonce,
                balance: U256::from(FUNDS),
                code: None,
                policy_spend: None,
            }
            .encode(),
        }))
    }

    fn storage_entries(&self, _: &Address) -> Result<u64, StateError> {
        Ok(0) // accounts only
    }
}

/// The store stand-in: the latest committed view, replaced whole by a commit.
#[derive(Debug)]
struct Store(Mutex<View>);

impl Store {
    fn latest(&self) -> View {
        self.0.lock().expect("store").clone()
    }

    /// Commits a block: each sender's nonce moves past its included transactions.
    fn commit(&self, block: &[SignedTransaction]) {
        let mut view = self.0.lock().expect("store");
        for tx in block {
            let nonce = view.0.entry(tx.tx.sender_address()).or_default();
            *nonce = (*nonce).max(tx.tx.nonce + 1);
        }
    }
}

/// Bounds hold and the byte count is the sum of what the pool holds.
fn check_pool(pool: &Mempool) {
    let held: usize = pool.transactions().map(|t| t.encode().len()).sum();
    assert_eq!(pool.bytes(), held, "byte accounting");
    assert!(pool.len() <= POOL_MAX_TXS, "{} transactions", pool.len());
    assert!(pool.bytes() <= POOL_MAX_BYTES);
}

/// How the gossip admitter reads the committed view.
#[derive(Debug, Clone, Copy)]
enum Gossip {
    /// As `run::admit_gossip` does now: inside `admit_latest`, under the pool lock.
    UnderTheLock,
    /// As it did before: read first, then admitted under the lock.
    ViewFirst,
}

/// Two admitters (RPC-like and gossip-like) race the driver, which selects a block, commits
/// it, prunes, and does it again. Returns whether the execution ended with a transaction
/// whose nonce the chain had already used still in the pool (after the driver's last prune).
fn admission_against_the_driver(gossip: Gossip) -> bool {
    let (alice, bob) = (SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32]));
    let a0 = transfer(&alice, 0, 2);
    let a1 = transfer(&alice, 1, 2);
    // Pays more than Alice's: admitting it into a full pool evicts her queue.
    let b0 = transfer(&bob, 0, 3);
    let genesis = View(BTreeMap::from([
        (a0.tx.sender_address(), 0),
        (b0.tx.sender_address(), 0),
    ]));
    let mut pool = Mempool::new(
        MempoolConfig {
            max_txs: POOL_MAX_TXS,
            max_bytes: POOL_MAX_BYTES,
            ..MempoolConfig::default()
        },
        CHAIN_ID,
        MIN_GAS_PRICE,
    );
    assert!(pool.admit(&genesis, vec![a0.clone()])[0].is_ok());
    let pool = Arc::new(Mutex::new(pool));
    let store = Arc::new(Store(Mutex::new(genesis)));

    let rpc = {
        let (pool, store) = (pool.clone(), store.clone());
        loom::thread::spawn(move || {
            admit_latest(&*pool, || store.latest(), vec![a1]);
            check_pool(&pool.lock().expect("pool"));
        })
    };
    let gossip = {
        let (pool, store) = (pool.clone(), store.clone());
        // A peer gossips Alice's first transaction late (the driver may have included it
        // already), with Bob's.
        let batch = vec![a0.clone(), b0];
        loom::thread::spawn(move || {
            match gossip {
                Gossip::UnderTheLock => admit_latest(&*pool, || store.latest(), batch),
                Gossip::ViewFirst => {
                    let view = store.latest();
                    admit_latest(&*pool, move || view, batch)
                }
            };
            check_pool(&pool.lock().expect("pool"));
        })
    };
    let mut selected: Vec<Hash> = Vec::new();
    for _ in 0..2 {
        let before = store.latest();
        let block = select_locked(
            &*pool,
            &before,
            BLOCK_MAX_TXS,
            BLOCK_MAX_BYTES,
            BLOCK_MAX_GAS,
        )
        .expect("selection");
        for tx in &block {
            let hash = tx.hash();
            assert!(!selected.contains(&hash), "selected twice: {hash:?}");
            selected.push(hash);
        }
        store.commit(&block);
        let hashes: Vec<Hash> = block.iter().map(SignedTransaction::hash).collect();
        let (revalidated, size) = prune_committed(&*pool, hashes.iter(), || store.latest());
        revalidated.expect("revalidation");
        assert!(size.txs <= POOL_MAX_TXS && size.bytes <= POOL_MAX_BYTES);
    }
    rpc.join().expect("rpc");
    gossip.join().expect("gossip");
    let committed = store.latest();
    let pool = pool.lock().expect("pool");
    check_pool(&pool);
    let stale = pool.transactions().any(|tx| {
        let next = committed.0.get(&tx.tx.sender_address()).copied();
        tx.tx.nonce < next.unwrap_or_default()
    });
    stale
}

#[test]
fn admission_racing_the_driver_keeps_the_bounds_and_never_selects_twice() {
    model(|| {
        let stale = admission_against_the_driver(Gossip::UnderTheLock);
        assert!(!stale, "a used nonce outlived the driver's prune");
    });
}

/// The race `admit_latest` closes, shown on the old order: a view read before the pool
/// lock predates the commit, the driver prunes in between, and the late gossip copy of an
/// included transaction is admitted again with its used nonce. It stays until the next
/// block's prune (selection skips it; it still counts against its sender's queue).
#[test]
fn stale_view_leaves_a_used_nonce_in_the_pool() {
    let found = std::sync::Arc::new(AtomicBool::new(false));
    let seen = found.clone();
    model(move || {
        if admission_against_the_driver(Gossip::ViewFirst) {
            seen.store(true, Ordering::Relaxed);
        }
    });
    assert!(
        found.load(Ordering::Relaxed),
        "the model no longer finds the stale-view race"
    );
}
