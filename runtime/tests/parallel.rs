//! Parallel execution gives serial execution's output byte for byte (issue 22).
//!
//! Seeded random blocks mix the differential harness's contract calls (token, AMM, registry
//! and cross-environment router, in two mixed layouts, with every revert path), native
//! transfers, transfers to and from the block's fee recipient, deploys in both
//! environments, touches of expired entries and revivals, at a low conflict rate (distinct
//! senders paying fresh addresses) or a high one (three users sharing a token and a pool).
//! Every block goes through `Chain::execute`, which executes it serially and again at 2, 4
//! and 8 threads and asserts identical receipts, logs, gas, state diff and archive batch —
//! so the state roots agree too.
//!
//! CI runs `KEEL_PAR_CASES` (default 6) sequences from `KEEL_PAR_SEED` (default fixed); a
//! long campaign: `KEEL_PAR_CASES=500 KEEL_PAR_SEED=$RANDOM scripts/test --test runtime parallel::`.

use crate::common::{addr, key, Chain, FUNDS};
use crate::differential::{self, Contract, Impl, Op, CONTRACTS, SUPPLY, USERS};
use keel_state::{Entry, StateView};
use keel_types::{Address, Env, SecretKey, SignedTransaction, StateKey, TxBody, U256};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Senders of native transfers (beside the harness's three users).
const PAYERS: u8 = 24;
const OP_GAS: u64 = 2_000_000;
const EXPIRY_EPOCHS: u64 = 2;

#[derive(Debug, Clone)]
enum Item {
    /// A contract call of the differential harness, sent by one of its users.
    Op(Op),
    /// A native transfer by payer `from` to: payer `to` (< PAYERS), the fee recipient
    /// (== PAYERS), or a fresh address.
    Pay { from: u8, to: u8, amount: u64 },
    /// A registry deployed by a payer, in the EVM or in WASM.
    Deploy { from: u8, wasm: bool },
    /// A revival, by a payer, of the `pick`-th expired entry there is.
    Revive { from: u8, pick: u8 },
    /// The fee recipient itself sends value.
    RecipientPays { to: u8, amount: u64 },
}

#[derive(Debug, Clone)]
struct Block {
    next_epoch: bool,
    items: Vec<Item>,
}

fn amount() -> impl Strategy<Value = u64> {
    // Mostly affordable; sometimes more than a payer holds.
    prop_oneof![8 => 0u64..1_000_000, 1 => Just(FUNDS), 1 => FUNDS..FUNDS * 2]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        6 => differential::op().prop_map(Item::Op),
        4 => (0..PAYERS, 0..PAYERS + 4, amount())
            .prop_map(|(from, to, amount)| Item::Pay { from, to, amount }),
        1 => (0..PAYERS, any::<bool>()).prop_map(|(from, wasm)| Item::Deploy { from, wasm }),
        1 => (0..PAYERS, any::<u8>()).prop_map(|(from, pick)| Item::Revive { from, pick }),
        1 => (0..PAYERS, amount()).prop_map(|(to, amount)| Item::RecipientPays { to, amount }),
    ]
}

/// Distinct payers paying fresh addresses, and a few contract calls.
fn low_conflict_block() -> impl Strategy<Value = Block> {
    (
        any::<bool>(),
        prop::collection::vec(0u64..1_000_000, 2..PAYERS as usize),
        prop::collection::vec(differential::op(), 0..3),
    )
        .prop_map(|(next_epoch, amounts, ops)| {
            let mut items: Vec<Item> = amounts
                .into_iter()
                .zip(0u8..)
                .map(|(amount, i)| Item::Pay {
                    from: i,
                    to: PAYERS + 4 + i,
                    amount,
                })
                .collect();
            items.extend(ops.into_iter().map(Item::Op));
            Block { next_epoch, items }
        })
}

fn high_conflict_block() -> impl Strategy<Value = Block> {
    (any::<bool>(), prop::collection::vec(item(), 2..24))
        .prop_map(|(next_epoch, items)| Block { next_epoch, items })
}

/// (layout, free: gas price 0 — revivals, unflags and charged failures then pay nothing to
/// the fee recipient and are speculated like everything else —, blocks).
fn blocks() -> impl Strategy<Value = (usize, bool, Vec<Block>)> {
    (
        0usize..LAYOUTS.len(),
        any::<bool>(),
        prop::collection::vec(
            prop_oneof![low_conflict_block(), high_conflict_block()],
            3..8,
        ),
    )
}

/// [token, AMM, registry, router]: routers calling tokens across environments.
const LAYOUTS: [[Impl; 4]; 2] = [
    [Impl::C, Impl::Sol, Impl::C, Impl::Sol],
    [Impl::Sol, Impl::Rust, Impl::Sol, Impl::Rust],
];

struct World {
    chain: Chain,
    users: Vec<SecretKey>,
    payers: Vec<SecretKey>,
    at: BTreeMap<Contract, Address>,
}

impl World {
    fn new(layout: [Impl; 4], cache: &std::sync::Arc<keel_exec_wasm::ModuleCache>) -> World {
        let users: Vec<SecretKey> = (0..USERS).map(|i| key(40 + i)).collect();
        let payers: Vec<SecretKey> = (0..PAYERS).map(|i| key(100 + i)).collect();
        let proposer = key(250);
        let mut funded: Vec<&SecretKey> = users.iter().chain(&payers).collect();
        funded.push(&proposer);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut chain = Chain::with_cache(dir, &funded, cache.clone());
        let mut at = BTreeMap::new();
        for (contract, imp) in CONTRACTS.into_iter().zip(layout) {
            let args = match contract {
                Contract::Token => crate::common::abi::u(SUPPLY).to_vec(),
                _ => Vec::new(),
            };
            let code = differential::code(contract, imp);
            at.insert(contract, chain.deploy(&users[0], imp.env(), code, args));
        }
        let mut world = World {
            chain,
            users,
            payers,
            at,
        };
        // The harness's setup (balances, allowances, liquidity) as one parallel block.
        let setup: Vec<Item> = differential::setup_ops()
            .into_iter()
            .map(Item::Op)
            .collect();
        world.run(&setup);
        world.chain.set_expiry_epochs(EXPIRY_EPOCHS);
        world
    }

    fn user_addresses(&self) -> Vec<Address> {
        self.users.iter().map(addr).collect()
    }

    /// Expired entries and the epoch each expired in, in key order.
    fn expired(&self) -> Vec<(StateKey, u64)> {
        let view = self.chain.store.latest_view();
        let mut out = BTreeMap::new();
        let mut index = 0u64;
        while let Some(leaf) = self.chain.store.archive_leaf(index).expect("archive leaf") {
            if let Ok(Some(Entry::Expired { epoch, .. })) = view.entry(&leaf.key) {
                out.insert(leaf.key, epoch);
            }
            index += 1;
        }
        out.into_iter().collect()
    }

    fn tx(&mut self, item: &Item) -> Option<SignedTransaction> {
        let recipient = self.chain.proposer.clone();
        let fresh = |i: u8| Address([0xee ^ i; 20]);
        let to_of = |world: &World, to: u8| match to {
            t if t < PAYERS => addr(&world.payers[t as usize]),
            t if t == PAYERS => addr(&recipient),
            t => fresh(t),
        };
        let transfer = |to, amount: u64| TxBody::Transfer {
            to,
            amount: U256::from(amount),
        };
        Some(match item {
            Item::Op(op) => {
                let (from, contract, data) =
                    differential::calldata(op, &self.user_addresses(), &self.at);
                let body = TxBody::Call {
                    to: self.at[&contract],
                    data,
                    value: U256::ZERO,
                };
                let sender = self.users[from as usize].clone();
                self.chain.tx(&sender, OP_GAS, body)
            }
            Item::Pay { from, to, amount } => {
                let body = transfer(to_of(self, *to), *amount);
                let sender = self.payers[*from as usize].clone();
                self.chain.tx(&sender, 21_000, body)
            }
            Item::RecipientPays { to, amount } => {
                let body = transfer(to_of(self, *to), *amount);
                self.chain.tx(&recipient, 21_000, body)
            }
            Item::Deploy { from, wasm } => {
                let imp = if *wasm { Impl::C } else { Impl::Sol };
                let body = TxBody::Deploy {
                    env: if *wasm { Env::Wasm } else { Env::Evm },
                    code: differential::code(Contract::Registry, imp),
                    args: Vec::new(),
                    value: U256::ZERO,
                };
                let sender = self.payers[*from as usize].clone();
                self.chain.tx(&sender, 10_000_000, body)
            }
            Item::Revive { from, pick } => {
                use keel_types::Canonical;
                let expired = self.expired();
                let sealed: Vec<_> = expired
                    .iter()
                    .filter(|(_, epoch)| *epoch < self.chain.epoch)
                    .collect();
                let (key, epoch) = sealed.get(usize::from(*pick) % sealed.len().max(1))?;
                let proof = self.chain.store.revival_proof(key, *epoch).ok()?;
                let body = TxBody::Revive {
                    proof: proof.encode(),
                };
                let sender = self.payers[*from as usize].clone();
                self.chain.tx(&sender, 1_000_000, body)
            }
        })
    }

    /// One block of `items` (executed at every thread count by `Chain::execute`).
    fn run(&mut self, items: &[Item]) {
        let txs: Vec<SignedTransaction> = items.iter().filter_map(|i| self.tx(i)).collect();
        let (output, _) = self.chain.block(txs);
        if std::env::var("KEEL_PAR_TRACE").is_ok() {
            for (item, r) in items.iter().zip(&output.receipts) {
                eprintln!("{:?} {:?} | {:?}", r.status, r.error, item);
            }
        }
        // Refused transactions did not use their nonces.
        let senders: Vec<SecretKey> = self
            .users
            .iter()
            .chain(&self.payers)
            .cloned()
            .chain([self.chain.proposer.clone()])
            .collect();
        for k in &senders {
            self.chain.resync_nonce(k);
        }
    }
}

#[test]
fn parallel_execution_matches_serial_on_random_blocks() {
    let cache = std::sync::Arc::new(
        keel_exec_wasm::ModuleCache::new(None, keel_exec_wasm::limits::MODULE_CACHE_ENTRIES)
            .expect("cache"),
    );
    let (mut runner, cases, seed) =
        differential::seeded_runner_from(("KEEL_PAR_CASES", 6), "KEEL_PAR_SEED");
    let totals = std::cell::Cell::new((0u64, 0u64, 0u64));
    let result = runner.run(&blocks(), |(layout, free, blocks)| {
        let mut world = World::new(LAYOUTS[layout], &cache);
        if free {
            world.chain.gas_price = 0;
        }
        for block in &blocks {
            if block.next_epoch {
                world.chain.epoch += 1;
            }
            world.run(&block.items);
        }
        let (k, r, d) = world.chain.parallel_counts.get();
        let (tk, tr, td) = totals.get();
        totals.set((tk + k, tr + r, td + d));
        Ok(())
    });
    if let Err(e) = result {
        panic!(
            "parallel execution diverged (seed {seed}; replay with KEEL_PAR_SEED={seed} \
             KEEL_PAR_CASES={cases}):\n{e}"
        );
    }
    // Both paths of the commit ran: speculations kept, and speculations redone.
    let (kept, redone, direct) = totals.get();
    eprintln!("parallel commits: {kept} kept, {redone} redone, {direct} direct");
    assert!(kept > 0 && redone > 0, "kept {kept}, redone {redone}");
}

/// A Byzantine proposer fills a block with deploys that share one sender and nonce: serial
/// execution compiles only the first (the rest are refused for their nonce before any
/// compilation). Speculations see the old nonce and compile them all, so they must not keep
/// what they compile: at most the one artifact serial execution writes is on disk.
#[test]
fn discarded_speculations_write_no_wasm_artifacts() {
    let k = key(1);
    let mut chain = Chain::new(&[&k]);
    let cache_dir = chain.dir.path().join("wasm-cache");
    let files = || std::fs::read_dir(&cache_dir).map_or(0, |d| d.count());
    let txs: Vec<SignedTransaction> = (0..12u8)
        .map(|n| {
            let code = wat::parse_str(format!(
                r#"(module (memory (export "memory") 1 1)
                     (func (export "call") (param i32) (result i32) (i32.const {n})))"#
            ))
            .expect("wat");
            let body = TxBody::Deploy {
                env: Env::Wasm,
                code,
                args: Vec::new(),
                value: U256::ZERO,
            };
            let tx = chain.tx(&k, 1_000_000, body);
            chain.resync_nonce(&k);
            tx
        })
        .collect();
    let block = chain.make_block(txs);
    let parallel = chain.execute_with_threads(&block, 4);
    assert!(files() <= 1, "{} artifacts on disk", files());
    assert_eq!(parallel, chain.execute_with_threads(&block, 1));
    let refused = parallel
        .receipts
        .iter()
        .filter(|r| r.status == keel_types::TxStatus::Rejected)
        .count();
    assert_eq!(refused, 11, "{:?}", parallel.receipts);
}
