//! The mempool against a real store: typed admission errors, replacement, the global bound
//! under a 10× flood, selection of ready nonce runs, and re-validation after a block.

#[path = "../../runtime/tests/common/mod.rs"]
mod common;

use common::{addr, key, Chain, CHAIN_ID, FUNDS};
use keel_node::{AdmitError, Mempool, MempoolConfig};
use keel_state::StateViewExt;
use keel_types::{Canonical, Hash, SecretKey, SignedTransaction, Transaction, TxBody, U256};

fn transfer(k: &SecretKey, nonce: u64, gas_price: u128, amount: u64) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN_ID,
        sender: k.public_key().into(),
        nonce,
        gas_limit: 21_000,
        gas_price,
        body: TxBody::Transfer {
            to: addr(&key(200)),
            amount: U256::from(amount),
        },
    }
    .sign(k)
}

fn pool(max_txs: usize) -> Mempool {
    Mempool::new(
        MempoolConfig {
            max_txs,
            ..MempoolConfig::default()
        },
        CHAIN_ID,
        1,
    )
}

/// The balance check of a transaction queued after all of its sender's others reads the
/// queue's running total: after a replacement and a removal, the boundary is still exact
/// (the total is off by the replaced or removed cost if either is not kept).
#[test]
fn the_queue_total_follows_replacements_and_removals() {
    let alice = key(1);
    let chain = Chain::new(&[&alice]);
    let view = chain.store.latest_view();
    let mut pool = pool(100);
    let fee = |price: u64| 21_000 * price;
    let first = transfer(&alice, 0, 1, 1_000);
    let first_hash = first.hash();
    let results = pool.admit(&view, vec![first, transfer(&alice, 1, 1, 5_000)]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // Nonce 1 replaced, at twice the price and another amount; nonce 0 leaves (included).
    let replacement = pool.admit(&view, vec![transfer(&alice, 1, 2, 7_000)]);
    assert!(replacement[0].is_ok(), "{replacement:?}");
    assert_eq!(pool.remove_included([&first_hash]), 1);
    // Queued now: nonce 1 alone, costing fee(2) + 7,000. Nonce 2 may take the rest.
    let room = FUNDS - (fee(2) + 7_000) - fee(1);
    let over = pool.admit(&view, vec![transfer(&alice, 2, 1, room + 1)]);
    assert!(
        matches!(over[0], Err(AdmitError::InsufficientBalance { .. })),
        "{over:?}"
    );
    let exact = pool.admit(&view, vec![transfer(&alice, 2, 1, room)]);
    assert!(exact[0].is_ok(), "{exact:?}");
}

/// The veto (policy plugins at admission) is asked only about transactions the pool would
/// otherwise take: a refusal costs its sender nothing, so a used nonce, an unfunded sender,
/// a wrong chain or a transaction already held must never buy a plugin run; each keeps its
/// own refusal (found by review: they were vetoed first).
#[test]
fn the_veto_is_asked_only_about_what_the_pool_would_take() {
    let (alice, poor) = (key(1), SecretKey::from_seed([0x5e; 32]));
    let mut chain = Chain::new(&[&alice]);
    let (out, _) = chain.block(vec![transfer(&alice, 0, 1, 1)]);
    assert!(out.receipts[0].error.is_none(), "{:?}", out.receipts[0]);
    let pool = std::sync::Mutex::new(pool(100));
    let held = transfer(&alice, 1, 1, 1);
    let first =
        keel_node::mempool::admit_latest(&pool, || chain.store.latest_view(), vec![held.clone()]);
    assert!(first.0[0].is_ok(), "{first:?}");
    let mut wrong_chain = transfer(&alice, 2, 1, 1).tx;
    wrong_chain.chain_id += 1;
    let batch = vec![
        transfer(&alice, 0, 1, 1), // its nonce is used
        transfer(&poor, 0, 1, 1),  // nothing to pay with
        wrong_chain.sign(&alice),  // another chain
        held,                      // already held
        transfer(&alice, 1, 1, 2), // replaces it without paying more
        transfer(&alice, 2, 1, 1), // the pool would take it: the veto is asked
    ];
    let mut asked = Vec::new();
    let (results, _) = keel_node::mempool::admit_latest_vetted(
        &pool,
        || chain.store.latest_view(),
        batch,
        (
            |_: &SignedTransaction| true,
            |tx: &SignedTransaction| {
                asked.push(tx.tx.nonce);
                Some(AdmitError::AlreadyKnown)
            },
        ),
    );
    assert_eq!(asked, vec![2], "{results:?}");
    assert!(
        matches!(results[0], Err(AdmitError::NonceTooLow { .. })),
        "{results:?}"
    );
    assert!(
        matches!(results[1], Err(AdmitError::InsufficientBalance { .. })),
        "{results:?}"
    );
    assert!(
        matches!(results[2], Err(AdmitError::WrongChainId { .. })),
        "{results:?}"
    );
    assert_eq!(results[3], Err(AdmitError::AlreadyKnown));
    assert!(
        matches!(results[4], Err(AdmitError::ReplacementUnderpriced { .. })),
        "{results:?}"
    );
    assert_eq!(
        results[5],
        Err(AdmitError::AlreadyKnown),
        "the veto's refusal"
    );
}

/// A precheck's refusal stands: the pool admits under a second hold of its lock, on the
/// view it reads then, and a block committed in between must not let in a transaction the
/// veto was never asked about (found by review).
#[test]
fn a_precheck_refusal_stands_when_the_state_changes_before_admission() {
    let (alice, poor) = (key(1), key(2));
    let unfunded = Chain::new(&[&alice]);
    let funded = Chain::new(&[&alice, &poor]);
    let pool = std::sync::Mutex::new(pool(100));
    let calls = std::cell::Cell::new(0);
    let latest = || {
        calls.set(calls.get() + 1);
        match calls.get() {
            1 => unfunded.store.latest_view(),
            _ => funded.store.latest_view(),
        }
    };
    let mut asked = 0;
    let (results, _) = keel_node::mempool::admit_latest_vetted(
        &pool,
        latest,
        vec![transfer(&poor, 0, 1, 1)],
        (
            |_: &SignedTransaction| true,
            |_: &SignedTransaction| {
                asked += 1;
                None
            },
        ),
    );
    assert_eq!(calls.get(), 2, "one view per hold of the lock");
    assert_eq!(asked, 0);
    assert!(
        matches!(results[0], Err(AdmitError::InsufficientBalance { .. })),
        "{results:?}"
    );
}

/// What `may_veto` does not name skips the veto and its precheck: a batch of it is
/// admitted in one hold of the lock (one view), and the pool's own checks still refuse
/// what they refuse; what it names in the same batch is prechecked and vetoed.
#[test]
fn only_what_may_be_vetoed_is_prechecked_and_vetoed() {
    let (alice, bob) = (key(1), key(2));
    let chain = Chain::new(&[&alice, &bob]);
    let pool = std::sync::Mutex::new(pool(100));
    let views = std::cell::Cell::new(0);
    let latest = || {
        views.set(views.get() + 1);
        chain.store.latest_view()
    };
    let alices = |tx: &SignedTransaction| tx.tx.sender_address() == addr(&alice);
    let (results, _) = keel_node::mempool::admit_latest_vetted(
        &pool,
        latest,
        vec![transfer(&bob, 0, 1, 1), transfer(&bob, 5_000, 1, 1)],
        (alices, |_: &SignedTransaction| -> Option<AdmitError> {
            panic!("nothing here may be vetoed")
        }),
    );
    assert_eq!(views.get(), 1, "one hold of the lock");
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(AdmitError::NonceTooFarAhead { .. })),
        "{results:?}"
    );
    let mut asked = Vec::new();
    let (results, _) = keel_node::mempool::admit_latest_vetted(
        &pool,
        latest,
        vec![transfer(&bob, 1, 1, 1), transfer(&alice, 0, 1, 1)],
        (alices, |tx: &SignedTransaction| {
            asked.push(tx.tx.sender_address());
            Some(AdmitError::PluginBudget)
        }),
    );
    assert_eq!(views.get(), 3, "a precheck, then the admission");
    assert_eq!(asked, vec![addr(&alice)]);
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(results[1], Err(AdmitError::PluginBudget));
}

#[test]
fn admission_errors_are_typed() {
    let (alice, poor) = (key(1), key(2));
    let chain = Chain::new(&[&alice]);
    let view = chain.store.latest_view();
    let mut pool = pool(100);
    let mut wrong_chain = transfer(&alice, 0, 1, 1);
    wrong_chain.tx.chain_id = CHAIN_ID + 1;
    let wrong_chain = wrong_chain.tx.sign(&alice);
    let mut forged = transfer(&alice, 0, 1, 1);
    if let keel_types::Authorization::Ed25519(s) = &mut forged.signature {
        s.0[1] ^= 1;
    }
    let mut huge_gas = transfer(&alice, 0, 1, 1).tx;
    huge_gas.gas_limit = keel_types::limits::MAX_TX_GAS + 1;
    let mut free = transfer(&alice, 0, 1, 1).tx;
    free.gas_price = 0;
    let results = pool.admit(
        &view,
        vec![
            transfer(&alice, 0, 1, 1),
            transfer(&alice, 0, 1, 1),
            wrong_chain,
            forged,
            huge_gas.sign(&alice),
            free.sign(&alice),
            transfer(&alice, 64, 1, 1),
            transfer(&poor, 0, 1, 1),
            transfer(&alice, 1, 1, FUNDS),
            transfer(&alice, 0, 1, 2),
        ],
    );
    assert!(results[0].is_ok());
    assert_eq!(results[1], Err(AdmitError::AlreadyKnown));
    assert_eq!(
        results[2],
        Err(AdmitError::WrongChainId {
            expected: CHAIN_ID,
            got: CHAIN_ID + 1
        })
    );
    assert_eq!(results[3], Err(AdmitError::BadSignature));
    assert!(matches!(
        results[4],
        Err(AdmitError::GasLimitTooHigh { .. })
    ));
    assert!(matches!(
        results[5],
        Err(AdmitError::GasPriceTooLow {
            gas_price: 0,
            min: 1
        })
    ));
    assert_eq!(
        results[6],
        Err(AdmitError::NonceTooFarAhead {
            next: 0,
            got: 64,
            window: 64
        })
    );
    assert!(matches!(
        results[7],
        Err(AdmitError::InsufficientBalance { .. })
    ));
    // Nonce 1 must also leave room for nonce 0's cost: FUNDS alone is too much.
    assert!(matches!(
        results[8],
        Err(AdmitError::InsufficientBalance { .. })
    ));
    assert_eq!(
        results[9],
        Err(AdmitError::ReplacementUnderpriced {
            queued: 1,
            required: 2
        })
    );
    assert_eq!(pool.len(), 1);

    // Raw bytes: garbage and oversized input get typed errors too.
    let raw = vec![
        vec![0xde, 0xad],
        vec![0u8; keel_types::limits::MAX_TX_BYTES + 1],
        transfer(&alice, 1, 1, 1).encode(),
    ];
    let results = pool.admit_raw(&view, &raw);
    assert!(matches!(results[0], Err(AdmitError::Decode(_))));
    assert!(matches!(results[1], Err(AdmitError::TooLarge { .. })));
    assert!(results[2].is_ok());
    assert_eq!(pool.len(), 2);
}

#[test]
fn a_replacement_needs_a_price_bump() {
    let alice = key(1);
    let chain = Chain::new(&[&alice]);
    let view = chain.store.latest_view();
    let mut pool = pool(100);
    assert!(pool.admit(&view, vec![transfer(&alice, 0, 10, 1)])[0].is_ok());
    assert_eq!(
        pool.admit(&view, vec![transfer(&alice, 0, 10, 2)])[0],
        Err(AdmitError::ReplacementUnderpriced {
            queued: 10,
            required: 11
        })
    );
    let replacement = transfer(&alice, 0, 11, 2);
    assert!(pool.admit(&view, vec![replacement.clone()])[0].is_ok());
    assert_eq!(pool.len(), 1);
    assert!(pool.contains(&replacement.hash()));
    assert_eq!(pool.bytes(), replacement.encode().len());
}

#[test]
fn a_flood_at_ten_times_capacity_stays_bounded_and_keeps_the_best_paying() {
    const CAPACITY: usize = 200;
    let senders: Vec<SecretKey> = (0..100).map(|i| key(10 + i)).collect();
    let spammers: Vec<SecretKey> = (0..50).map(|i| key(150 + i)).collect();
    let refs: Vec<&SecretKey> = senders.iter().chain(&spammers).collect();
    let chain = Chain::new(&refs);
    let view = chain.store.latest_view();
    let mut pool = pool(CAPACITY);
    let mut full = 0;
    // 20 transactions per sender = 2,000 = 10× capacity, at pseudo-random prices 1..=100.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut offered = 0u128;
    for round in 0..20u64 {
        let batch: Vec<SignedTransaction> = senders
            .iter()
            .map(|s| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let price = 1 + u128::from(seed >> 33) % 100;
                offered += price;
                transfer(s, round, price, 1)
            })
            .collect();
        for result in pool.admit(&view, batch) {
            match result {
                Ok(_) => {}
                Err(AdmitError::Full { max_txs }) => {
                    assert_eq!(max_txs, CAPACITY);
                    full += 1;
                }
                Err(e) => panic!("unexpected {e}"),
            }
            assert!(pool.len() <= CAPACITY);
        }
    }
    assert_eq!(pool.len(), CAPACITY);
    assert!(full > 0);
    let bytes: usize = pool.transactions().map(|t| t.encode().len()).sum();
    assert_eq!(
        bytes,
        pool.bytes(),
        "byte accounting matches the held transactions"
    );
    let prices: Vec<u128> = pool.transactions().map(|t| t.tx.gas_price).collect();
    let held = prices.iter().sum::<u128>() / prices.len() as u128;
    let offered = offered / 2_000;
    eprintln!("average price offered {offered}, held {held}");
    assert!(
        held > offered + 20,
        "eviction favours better payers: held {held}, offered {offered}"
    );
    // Cheap spam against a pool of better payers is refused outright.
    let spam: Vec<SignedTransaction> = spammers.iter().map(|k| transfer(k, 0, 1, 1)).collect();
    let before: Vec<Hash> = pool.transactions().map(SignedTransaction::hash).collect();
    for result in pool.admit(&view, spam) {
        assert_eq!(result, Err(AdmitError::Full { max_txs: CAPACITY }));
    }
    let after: Vec<Hash> = pool.transactions().map(SignedTransaction::hash).collect();
    assert_eq!(before, after);
    let ready = pool
        .select(&view, usize::MAX, usize::MAX, u64::MAX)
        .expect("select");
    assert!(ready.len() <= CAPACITY);
}

#[test]
fn selection_takes_ready_runs_and_revalidation_drops_what_a_block_used() {
    let (alice, bob) = (key(1), key(2));
    let mut chain = Chain::new(&[&alice, &bob]);
    let mut pool = pool(100);
    {
        let view = chain.store.latest_view();
        let txs = vec![
            transfer(&alice, 0, 5, 1),
            transfer(&alice, 1, 5, 1),
            transfer(&alice, 3, 50, 1), // gap at 2: not ready
            transfer(&bob, 0, 7, 1),
        ];
        assert!(pool.admit(&view, txs).iter().all(Result::is_ok));
        let picked = pool
            .select(&view, 10, usize::MAX, u64::MAX)
            .expect("select");
        let got: Vec<(u8, u64)> = picked
            .iter()
            .map(|t| {
                (
                    if t.tx.sender == alice.public_key().into() {
                        b'a'
                    } else {
                        b'b'
                    },
                    t.tx.nonce,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![(b'b', 0), (b'a', 0), (b'a', 1)],
            "highest price first, nonces in order"
        );
        // Limits: a gas budget for two transfers takes two.
        assert_eq!(
            pool.select(&view, 10, usize::MAX, 42_000)
                .expect("select")
                .len(),
            2
        );
        assert_eq!(
            pool.select(&view, 1, usize::MAX, u64::MAX)
                .expect("select")
                .len(),
            1
        );
    }
    // Execute and commit the selected block; the pool then drops exactly those three.
    let picked = pool
        .select(&chain.store.latest_view(), 10, usize::MAX, u64::MAX)
        .expect("select");
    let picked = keel_types::block::canonical_order(&chain.parent_hash, picked);
    let (out, _) = chain.block(picked);
    assert!(out
        .receipts
        .iter()
        .all(|r| r.status == keel_types::TxStatus::Success));
    let dropped = pool
        .revalidate(&chain.store.latest_view())
        .expect("revalidate");
    assert_eq!(dropped, 3);
    assert_eq!(pool.len(), 1, "alice's nonce 3 waits for nonce 2");
    assert!(
        pool.admit(&chain.store.latest_view(), vec![transfer(&alice, 0, 9, 1)])[0]
            == Err(AdmitError::NonceTooLow { next: 2, got: 0 })
    );
}

/// A junk revival (a proof that does not even decode) is charged: its nonce is used, so
/// revalidation drops it after its block and it can never be admitted or included again.
#[test]
fn a_junk_revival_is_charged_and_leaves_the_pool() {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let mut pool = pool(100);
    let garbage = chain.tx(&alice, 100_000, TxBody::Revive { proof: vec![7; 9] });
    assert!(pool.admit(&chain.store.latest_view(), vec![garbage.clone()])[0].is_ok());
    let picked = pool
        .select(&chain.store.latest_view(), 10, usize::MAX, u64::MAX)
        .expect("select");
    assert_eq!(picked, vec![garbage.clone()]);
    let (out, _) = chain.block(picked);
    assert_eq!(out.receipts[0].status, keel_types::TxStatus::Revert);
    assert_eq!(out.receipts[0].gas_used, keel_pruning::revival_gas(9));
    assert_eq!(
        pool.revalidate(&chain.store.latest_view())
            .expect("revalidate"),
        1
    );
    assert!(pool.is_empty());
    assert_eq!(
        pool.admit(&chain.store.latest_view(), vec![garbage])[0],
        Err(AdmitError::NonceTooLow { next: 1, got: 0 })
    );
}

/// Admission refuses what execution would refuse with the same check (one shared function):
/// a gas limit under the intrinsic gas, for a transfer and for a revival.
#[test]
fn admission_refuses_a_gas_limit_under_the_intrinsic_gas() {
    let alice = key(1);
    let chain = Chain::new(&[&alice]);
    let mut pool = pool(100);
    let mut short = transfer(&alice, 0, 1, 1).tx;
    short.gas_limit = 20_000;
    let revival = Transaction {
        chain_id: CHAIN_ID,
        sender: alice.public_key().into(),
        nonce: 0,
        gas_limit: 100,
        gas_price: 1,
        body: TxBody::Revive { proof: vec![7; 9] },
    };
    let results = pool.admit(
        &chain.store.latest_view(),
        vec![short.sign(&alice), revival.sign(&alice)],
    );
    assert_eq!(
        results[0],
        Err(AdmitError::IntrinsicGasTooLow {
            gas_limit: 20_000,
            intrinsic: 21_000
        })
    );
    assert_eq!(
        results[1],
        Err(AdmitError::IntrinsicGasTooLow {
            gas_limit: 100,
            intrinsic: keel_pruning::revival_gas(9)
        })
    );
    assert!(pool.is_empty());
}

/// The validators' block check (app/src/charge.rs): a driver chain over a real store.
mod block_check {
    use super::*;
    use keel_app::chain::Chain as DriverChain;
    use keel_app::charge::{chargeable_block, check_charged, Charged};
    use keel_types::block::canonical_order;
    use keel_types::{Block, Header, TxError, TxStatus};
    use std::sync::Arc;

    const GENESIS_MS: u64 = 1_700_000_000_000;

    fn driver_chain(funded: &[&SecretKey]) -> (tempfile::TempDir, DriverChain, Hash) {
        let Chain {
            dir,
            store,
            runtime,
            parent_hash,
            ..
        } = Chain::new(funded);
        let chain = DriverChain::new(Arc::new(store), runtime, parent_hash, GENESIS_MS);
        (dir, chain, parent_hash)
    }

    fn header(parent: Hash, height: u64) -> Header {
        Header {
            chain_id: CHAIN_ID,
            height,
            epoch: 0,
            view: height,
            parent_hash: parent,
            proposer: key(250).public_key(),
            timestamp_ms: GENESIS_MS + height * 1_000,
            tx_root: Hash::ZERO,
            parent_state_root: Hash::ZERO,
            parent_receipts_root: Hash::ZERO,
            archive_root: Hash::ZERO,
        }
    }

    fn block(parent: Hash, height: u64, transactions: Vec<SignedTransaction>) -> Block {
        Block {
            header: Header {
                tx_root: keel_types::block::tx_root(&transactions),
                ..header(parent, height)
            },
            transactions,
        }
    }

    fn refusal(verdict: Charged) -> (usize, Option<TxError>) {
        match verdict {
            Charged::Refused { index, error, .. } => (index, error),
            other => panic!("expected a refused block, got {other:?}"),
        }
    }

    /// A Byzantine proposer's block carrying a transaction its sender's policy denies (here
    /// after a freeze in the same block) is refused by validators; the honest proposer leaves
    /// the transaction out and keeps the rest.
    #[test]
    fn a_block_with_a_policy_denied_transaction_is_refused() {
        use keel_types::policy::{AccountPolicy, PolicyRule};
        let alice = key(1);
        let (_dir, mut chain, genesis) = driver_chain(&[&alice]);
        let freeze = TxBody::SetPolicy {
            account: addr(&alice),
            policy: AccountPolicy {
                frozen: true,
                ..AccountPolicy::default()
            },
        };
        let freeze = Transaction {
            chain_id: CHAIN_ID,
            sender: alice.public_key().into(),
            nonce: 0,
            gas_limit: freeze.policy_gas().expect("gas"),
            gas_price: 1,
            body: freeze,
        }
        .sign(&alice);
        let denied = transfer(&alice, 1, 1, 5);
        let txs = canonical_order(&genesis, vec![freeze.clone(), denied.clone()]);
        let byzantine = block(genesis, 1, txs.clone());
        let (_, error) = refusal(check_charged(&mut chain, &byzantine).expect("check"));
        assert!(
            matches!(&error, Some(TxError::PolicyDenied { denial }) if denial.rule == PolicyRule::Frozen),
            "{error:?}"
        );
        let (built, dropped) =
            chargeable_block(&mut chain, &header(genesis, 1), txs).expect("build");
        assert_eq!(built.transactions, vec![freeze]);
        assert_eq!(dropped, vec![denied.hash()]);
    }

    /// A block holding a transaction its sender cannot be charged for — a bad nonce, an
    /// unfunded sender, the same transaction twice, a transaction already included — is
    /// invalid; the same block without it, and the empty block, are valid.
    #[test]
    fn a_block_with_a_transaction_that_cannot_be_charged_is_refused() {
        let (alice, poor) = (key(1), key(2));
        let (_dir, mut chain, genesis) = driver_chain(&[&alice]);
        let good = transfer(&alice, 0, 1, 5);
        let check = |chain: &mut DriverChain, b: &Block| check_charged(chain, b).expect("check");

        let bad_nonce = block(genesis, 1, vec![good.clone(), transfer(&alice, 5, 1, 1)]);
        assert_eq!(
            refusal(check(&mut chain, &bad_nonce)),
            (
                1,
                Some(TxError::BadNonce {
                    expected: 1,
                    got: 5
                })
            )
        );
        let unfunded = block(genesis, 1, vec![transfer(&poor, 0, 1, 1)]);
        let (index, error) = refusal(check(&mut chain, &unfunded));
        assert_eq!(index, 0);
        assert!(
            matches!(error, Some(TxError::InsufficientBalance { .. })),
            "{error:?}"
        );
        let twice = block(genesis, 1, vec![good.clone(), good.clone()]);
        assert_eq!(
            refusal(check(&mut chain, &twice)),
            (
                1,
                Some(TxError::BadNonce {
                    expected: 1,
                    got: 0
                })
            )
        );
        assert_eq!(
            check(&mut chain, &block(genesis, 1, Vec::new())),
            Charged::All
        );
        let first = block(genesis, 1, vec![good.clone()]);
        assert_eq!(check(&mut chain, &first), Charged::All);
        let receipts = chain.executed_receipts(&first.hash()).expect("executed");
        assert_eq!(receipts[0].status, TxStatus::Success);
        // The same transaction again in a child block: its nonce is used.
        let replay = block(first.hash(), 2, vec![good]);
        assert_eq!(
            refusal(check(&mut chain, &replay)),
            (
                0,
                Some(TxError::BadNonce {
                    expected: 1,
                    got: 0
                })
            )
        );
    }

    /// The proposer executes its candidate and leaves out what cannot be charged, so its
    /// block passes the check; with nothing chargeable it proposes the empty block.
    #[test]
    fn the_proposer_leaves_out_what_cannot_be_charged() {
        let (alice, poor) = (key(1), key(2));
        let (_dir, mut chain, genesis) = driver_chain(&[&alice]);
        let good = transfer(&alice, 0, 1, 5);
        let bad_nonce = transfer(&alice, 5, 1, 1);
        let unfunded = transfer(&poor, 0, 1, 1);
        let candidate = canonical_order(
            &genesis,
            vec![bad_nonce.clone(), good.clone(), unfunded.clone()],
        );
        let (built, dropped) =
            chargeable_block(&mut chain, &header(genesis, 1), candidate).expect("build");
        assert_eq!(built.transactions, vec![good]);
        assert_eq!(built.header.tx_root, built.compute_tx_root());
        let mut expected = vec![bad_nonce.hash(), unfunded.hash()];
        expected.sort();
        let mut dropped = dropped;
        dropped.sort();
        assert_eq!(dropped, expected);
        assert_eq!(
            check_charged(&mut chain, &built).expect("check"),
            Charged::All
        );

        let (empty, dropped) =
            chargeable_block(&mut chain, &header(genesis, 1), vec![unfunded]).expect("build");
        assert!(empty.transactions.is_empty());
        assert_eq!(dropped.len(), 1);
        assert_eq!(
            check_charged(&mut chain, &empty).expect("check"),
            Charged::All
        );
    }
}

/// A sender whose account expires while its transactions wait neither blocks selection
/// (every other sender's transactions are still proposed) nor stays in the pool.
#[test]
fn an_expired_sender_is_skipped_by_selection_and_dropped_by_revalidation() {
    let (idle, busy) = (key(1), key(2));
    let mut chain = Chain::new(&[&idle, &busy]);
    chain.set_expiry_epochs(2);
    let mut pool = pool(100);
    let queued = vec![transfer(&idle, 0, 9, 1), transfer(&idle, 1, 9, 1)];
    assert!(pool
        .admit(&chain.store.latest_view(), queued)
        .iter()
        .all(Result::is_ok));
    // `idle` was last touched at genesis (epoch 0); it expires in epoch 3.
    let to = addr(&key(200));
    while chain.epoch < 3 {
        chain.epoch += 1;
        let tx = chain.tx(
            &busy,
            21_000,
            TxBody::Transfer {
                to,
                amount: U256::from(1u64),
            },
        );
        chain.block(vec![tx]);
    }
    let view = chain.store.latest_view();
    assert!(matches!(
        view.account(&addr(&idle)),
        Err(keel_state::StateError::Expired { .. })
    ));
    let next = transfer(&busy, 3, 1, 1);
    assert!(pool.admit(&view, vec![next.clone()])[0].is_ok());
    let picked = pool
        .select(&view, 10, usize::MAX, u64::MAX)
        .expect("select");
    assert_eq!(
        picked,
        vec![next],
        "the expired sender is skipped, not fatal"
    );
    assert_eq!(pool.revalidate(&view).expect("revalidate"), 2);
    assert_eq!(pool.len(), 1);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Any sequence of admissions and re-validations keeps the bounds and the accounting.
        #[test]
        fn bounds_and_accounting_hold(ops in proptest::collection::vec((0u8..12, 0u64..10, 1u128..50, any::<bool>()), 1..120)) {
            let keys: Vec<SecretKey> = (0..12).map(|i| key(20 + i)).collect();
            let chain = Chain::new(&keys.iter().collect::<Vec<_>>());
            let view = chain.store.latest_view();
            let config = MempoolConfig { max_txs: 16, max_per_sender: 4, nonce_window: 8, ..MempoolConfig::default() };
            let mut pool = Mempool::new(config.clone(), CHAIN_ID, 1);
            for (who, nonce, price, revalidate) in ops {
                if revalidate {
                    pool.revalidate(&view).expect("revalidate");
                }
                let _ = pool.admit(&view, vec![transfer(&keys[usize::from(who)], nonce, price, 1)]);
                prop_assert!(pool.len() <= config.max_txs);
                let held: Vec<&SignedTransaction> = pool.transactions().collect();
                prop_assert_eq!(held.len(), pool.len());
                prop_assert_eq!(held.iter().map(|t| t.encode().len()).sum::<usize>(), pool.bytes());
                let mut per_sender = std::collections::BTreeMap::new();
                for t in &held {
                    prop_assert!(pool.contains(&t.hash()));
                    prop_assert!(t.tx.nonce < config.nonce_window);
                    *per_sender.entry(t.tx.sender).or_insert(0usize) += 1;
                }
                prop_assert!(per_sender.values().all(|n| *n <= config.max_per_sender));
            }
        }
    }
}

/// Admission applies the sender's policy (issue 20) with the transactions it already queued
/// counted first, so an agent hears "denied" with the numbers before it waits for a block;
/// the per-epoch budgets reset when the next block is in a new epoch.
#[test]
fn admission_applies_the_policy_counting_queued_transactions() {
    use keel_types::policy::PolicyRule;
    let alice = key(1);
    let mut chain = capped(&alice);
    let mut pool = pool_with_policies(chain.height);
    let view = chain.store.latest_view();
    let denied = |result: &Result<Hash, AdmitError>| match result {
        Err(AdmitError::PolicyDenied(d)) => Some((d.rule, d.used, d.resets_at_epoch)),
        _ => None,
    };
    assert!(pool.admit(&view, vec![transfer(&alice, 1, 1, 60)])[0].is_ok());
    let over = pool.admit(&view, vec![transfer(&alice, 2, 1, 50)]);
    assert_eq!(
        denied(&over[0]),
        Some((PolicyRule::ValuePerEpoch, U256::from(110u64), Some(1))),
        "{over:?}"
    );
    assert!(pool.admit(&view, vec![transfer(&alice, 2, 1, 30)])[0].is_ok());
    // The policy change itself ran before there was a policy: not counted. Three fit.
    assert!(pool.admit(&view, vec![transfer(&alice, 3, 1, 1)])[0].is_ok());
    let fourth = pool.admit(&view, vec![transfer(&alice, 4, 1, 1)]);
    assert_eq!(
        denied(&fourth[0]).map(|d| d.0),
        Some(PolicyRule::TxsPerEpoch),
        "{fourth:?}"
    );
    // Once they ran, the stored spending counts the same way; in the next epoch it resets.
    let queued = pool
        .select(&view, 10, usize::MAX, u64::MAX)
        .expect("select");
    let queued = keel_types::block::canonical_order(&chain.parent_hash, queued);
    let (out, _) = chain.block(queued);
    assert!(out
        .receipts
        .iter()
        .all(|r| r.status == keel_types::TxStatus::Success));
    let mut pool = pool_with_policies(chain.height);
    let view = chain.store.latest_view();
    let again = pool.admit(&view, vec![transfer(&alice, 4, 1, 1)]);
    assert_eq!(
        denied(&again[0]),
        Some((PolicyRule::TxsPerEpoch, U256::from(4u64), Some(1))),
        "{again:?}"
    );
    pool.set_latest_height(10);
    assert!(pool.admit(&view, vec![transfer(&alice, 4, 1, 1)])[0].is_ok());
}

/// The policy check of a transaction queued after all of its sender's others reads the
/// queue's running spending total: after a replacement and a removal the value and count
/// budgets are still exact (the total is off by the replaced or removed entry if either is
/// not kept). (A session key's check walks the queue instead; its tests are
/// `a_session_key_cannot_replace_what_its_account_signed` and the runtime's.)
#[test]
fn the_queued_spending_total_follows_replacements_and_removals() {
    use keel_types::policy::PolicyRule;
    let alice = key(1);
    let chain = capped(&alice);
    let mut pool = pool_with_policies(chain.height);
    let view = chain.store.latest_view();
    let denied = |result: &Result<Hash, AdmitError>| match result {
        Err(AdmitError::PolicyDenied(d)) => Some((d.rule, d.used)),
        _ => None,
    };
    let first = transfer(&alice, 1, 1, 40);
    let first_hash = first.hash();
    let results = pool.admit(&view, vec![first, transfer(&alice, 2, 1, 30)]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // Nonce 2 replaced at twice the price, sending 50: 90 queued. Nonce 1 leaves (included
    // elsewhere): 50 and one transaction queued.
    let replacement = pool.admit(&view, vec![transfer(&alice, 2, 2, 50)]);
    assert!(replacement[0].is_ok(), "{replacement:?}");
    let over = pool.admit(&view, vec![transfer(&alice, 3, 1, 11)]);
    assert_eq!(
        denied(&over[0]),
        Some((PolicyRule::ValuePerEpoch, U256::from(101u64))),
        "{over:?}"
    );
    assert_eq!(pool.remove_included([&first_hash]), 1);
    let over = pool.admit(&view, vec![transfer(&alice, 3, 1, 51)]);
    assert_eq!(
        denied(&over[0]),
        Some((PolicyRule::ValuePerEpoch, U256::from(101u64))),
        "{over:?}"
    );
    assert!(pool.admit(&view, vec![transfer(&alice, 3, 1, 50)])[0].is_ok());
    // Two queued (2, 3) and a third fits the count; a fourth does not, as
    // `admission_applies_the_policy_counting_queued_transactions` has it with nothing left.
    assert!(pool.admit(&view, vec![transfer(&alice, 4, 1, 0)])[0].is_ok());
    let fourth = pool.admit(&view, vec![transfer(&alice, 5, 1, 0)]);
    assert_eq!(
        denied(&fourth[0]),
        Some((PolicyRule::TxsPerEpoch, U256::from(4u64))),
        "{fourth:?}"
    );
}

/// A chain where `alice` (its only account) has a policy of 100 in value and three
/// transactions per epoch, set by her nonce 0.
fn capped(alice: &SecretKey) -> Chain {
    use keel_types::policy::AccountPolicy;
    let mut chain = Chain::new(&[alice]);
    let body = TxBody::SetPolicy {
        account: addr(alice),
        policy: AccountPolicy {
            max_value_per_epoch: Some(U256::from(100u64)),
            max_txs_per_epoch: Some(3),
            ..AccountPolicy::default()
        },
    };
    let gas = body.policy_gas().expect("gas");
    let set = chain.run(alice, gas, body);
    assert_eq!(set.status, keel_types::TxStatus::Success, "{set:?}");
    chain
}

fn pool_with_policies(latest_height: u64) -> Mempool {
    let mut pool = pool(100).with_epoch_length(10);
    pool.set_latest_height(latest_height);
    pool
}

/// After a block freezes an account (or fills its budget), revalidation drops what it queued
/// and can no longer run, instead of leaving it for the proposer to refuse.
#[test]
fn revalidation_drops_what_the_policy_now_denies() {
    use keel_types::policy::AccountPolicy;
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let freeze = TxBody::SetPolicy {
        account: addr(&alice),
        policy: AccountPolicy {
            frozen: true,
            ..AccountPolicy::default()
        },
    };
    let gas = freeze.policy_gas().expect("gas");
    let freeze = chain.tx(&alice, gas, freeze);
    let mut pool = pool_with_policies(chain.height);
    let view = chain.store.latest_view();
    let queued = vec![
        freeze.clone(),
        transfer(&alice, 1, 1, 5),
        transfer(&alice, 2, 1, 5),
    ];
    assert!(pool.admit(&view, queued).iter().all(Result::is_ok));
    let (out, _) = chain.block(vec![freeze]);
    assert_eq!(out.receipts[0].status, keel_types::TxStatus::Success);
    pool.set_latest_height(chain.height);
    let dropped = pool
        .revalidate(&chain.store.latest_view())
        .expect("revalidate");
    assert_eq!(
        (dropped, pool.len()),
        (3, 0),
        "the freeze ran; the rest cannot"
    );
}

/// A session key cannot replace a queued transaction its account signed (it could keep the
/// account's revocation of it out of every block); the account can replace the key's.
#[test]
fn a_session_key_cannot_replace_what_its_account_signed() {
    let (alice, session) = (key(1), key(9));
    let mut chain = Chain::new(&[&alice]);
    let add = TxBody::AddSessionKey {
        account: addr(&alice),
        key: session.public_key(),
        policy: keel_types::policy::AccountPolicy::default(),
        expires_at: u64::MAX,
    };
    let gas = add.policy_gas().expect("gas");
    assert_eq!(
        chain.run(&alice, gas, add).status,
        keel_types::TxStatus::Success
    );
    let mut pool = pool_with_policies(chain.height);
    let view = chain.store.latest_view();
    let signed_by = |sender: keel_types::Sender, k: &SecretKey, price: u128| {
        Transaction {
            chain_id: CHAIN_ID,
            sender,
            nonce: 1,
            gas_limit: 21_000,
            gas_price: price,
            body: TxBody::Transfer {
                to: addr(&key(200)),
                amount: U256::from(1u64),
            },
        }
        .sign(k)
    };
    let as_session = keel_types::Sender::Session {
        account: addr(&alice),
        key: session.public_key(),
    };
    let own = signed_by(alice.public_key().into(), &alice, 1);
    assert!(pool.admit(&view, vec![own])[0].is_ok());
    let replacement = signed_by(as_session, &session, 10);
    assert_eq!(
        pool.admit(&view, vec![replacement])[0],
        Err(AdmitError::ReplacementBySessionKey)
    );
    // The other way round is the owner's right.
    let mut pool = pool_with_policies(chain.height);
    assert!(pool.admit(&view, vec![signed_by(as_session, &session, 1)])[0].is_ok());
    let own = signed_by(alice.public_key().into(), &alice, 10);
    assert!(pool.admit(&view, vec![own])[0].is_ok());
}

/// Jurisdiction rules (issue 20 item 3) are the target's, not the sender's: a sender with no
/// policy of its own is refused at admission once any address declares rules, and what it
/// queued before the target declared them is dropped at revalidation (found running the CLI
/// test: admitted, then left out of every block by the proposer, it held up its sender's
/// later nonces).
#[test]
fn admission_and_revalidation_apply_the_targets_jurisdiction_rules() {
    use keel_types::jurisdiction::{set_rules_call, Rules, JURISDICTION_ADDRESS};
    use keel_types::policy::PolicyRule;
    let (alice, shop) = (key(1), key(200));
    let mut chain = Chain::new(&[&alice, &shop]);
    let mut pool = pool_with_policies(chain.height);
    let queued = vec![transfer(&alice, 0, 1, 5), transfer(&alice, 1, 1, 50)];
    let view = chain.store.latest_view();
    assert!(pool.admit(&view, queued).iter().all(Result::is_ok));
    let rules = Rules {
        untagged_max_value: Some(U256::from(10u64)),
        ..Rules::default()
    };
    let declare = TxBody::Call {
        to: JURISDICTION_ADDRESS,
        data: set_rules_call(&rules),
        value: U256::ZERO,
    };
    let r = chain.run(&shop, 200_000, declare);
    assert_eq!(r.status, keel_types::TxStatus::Success, "{r:?}");
    pool.set_latest_height(chain.height);
    let view = chain.store.latest_view();
    let dropped = pool.revalidate(&view).expect("revalidate");
    assert_eq!((dropped, pool.len()), (1, 1), "50 > 10 leaves; 5 stays");
    let over = pool.admit(&view, vec![transfer(&alice, 1, 1, 11)]);
    match &over[0] {
        Err(AdmitError::PolicyDenied(d)) => assert_eq!(
            (d.rule, d.limit, d.used, d.source),
            (
                PolicyRule::JurisdictionUntaggedValue,
                U256::from(10u64),
                U256::from(11u64),
                addr(&shop)
            )
        ),
        other => panic!("admitted over the untagged cap: {other:?}"),
    }
    assert!(pool.admit(&view, vec![transfer(&alice, 1, 1, 10)])[0].is_ok());
}
