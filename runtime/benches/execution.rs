//! Execution benchmarks, each a ratio against a raw baseline measured in the same run:
//!
//! 1. ERC-20 transfers/s through `Runtime::execute_block` + `Store::commit` (signatures,
//!    nonces, fees, receipts, state diff, Merkle commit to RocksDB) versus raw revm executing
//!    the same token bytecode and calldata over an in-memory `CacheDB`.
//! 2. Gas that means time: the same compute-, memory- and host-call-heavy loops as EVM
//!    bytecode and as a WASM module, marginal nanoseconds per gas through the runtime, with raw
//!    revm on the EVM bytecode as the baseline (this calibrates the WASM ink table).
//! 3. WASM module compile time per KB (validation + singlepass + metering + serialization)
//!    versus raw singlepass without keel's middlewares, and cache-hit time (memory, disk).
//!
//! Run: `scripts/bench` (or `cargo bench --profile ci -p keel-runtime --bench execution`).

// Floats only format the measured rates; nothing here reaches state.
#![allow(clippy::float_arithmetic)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{abi, addr, artifact, key, Chain};
use keel_types::{Address, Env, SecretKey, SignedTransaction, TxBody, U256};
use revm::context::TxEnv;
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::{Bytes, TxKind};
use revm::state::{AccountInfo, Bytecode};
use revm::{ExecuteCommitEvm, MainBuilder, MainContext};
use std::time::{Duration, Instant};

const SENDERS: u8 = 100;
const TRANSFERS_PER_SENDER: usize = 40;
const BLOCK_TXS: usize = 500;
/// Calls per measured block, each with `COMPUTE_GAS` (the block gas limit bounds their sum).
const COMPUTE_CALLS: usize = 4;
const COMPUTE_GAS: u64 = keel_types::limits::BLOCK_GAS_LIMIT / COMPUTE_CALLS as u64;

fn raw_revm_db() -> CacheDB<EmptyDB> {
    CacheDB::new(EmptyDB::default())
}

/// Raw revm: deploy the token and run the same transfers, committing into a `CacheDB`.
fn raw_revm_transfers(transfers: &[(Address, Vec<u8>)]) -> (f64, Duration, u64) {
    let token_code = artifact("Token.bin");
    let deployer = revm::primitives::Address::repeat_byte(0xaa);
    let mut db = raw_revm_db();
    db.insert_account_info(
        deployer,
        AccountInfo {
            balance: revm::primitives::U256::from(u64::MAX),
            ..Default::default()
        },
    );
    let mut evm = revm::Context::mainnet().with_db(db).build_mainnet();
    let mut tx = TxEnv::builder()
        .caller(deployer)
        .kind(TxKind::Create)
        .data(Bytes::from(
            [token_code, abi::u(u64::MAX).to_vec()].concat(),
        ))
        .gas_limit(5_000_000)
        .build()
        .expect("tx");
    let out = evm.transact_commit(tx.clone()).expect("deploy");
    let token = match out {
        revm::context::result::ExecutionResult::Success {
            output: revm::context::result::Output::Create(_, Some(a)),
            ..
        } => a,
        other => panic!("deploy failed: {other:?}"),
    };
    // Fund each sender with tokens, as the keel side does, outside the timed part.
    let senders: std::collections::BTreeSet<[u8; 20]> =
        transfers.iter().map(|(s, _)| s.0).collect();
    let senders: Vec<Address> = senders.into_iter().map(Address).collect();
    for (nonce, s) in (1..).zip(&senders) {
        tx.kind = TxKind::Call(token);
        tx.nonce = nonce;
        tx.data = Bytes::from(abi::call(
            "transfer(address,uint256)",
            &[abi::address(s), abi::u(1_000_000)],
        ));
        evm.transact_commit(tx.clone()).expect("fund");
    }
    for s in &senders {
        evm.ctx.journaled_state.database.insert_account_info(
            revm::primitives::Address::from(s.0),
            AccountInfo {
                balance: revm::primitives::U256::from(u64::MAX),
                ..Default::default()
            },
        );
    }
    let mut nonces = std::collections::BTreeMap::<[u8; 20], u64>::new();
    let mut gas = 0u64;
    let start = Instant::now();
    for (sender, data) in transfers {
        let n = nonces.entry(sender.0).or_insert(0);
        let tx = TxEnv::builder()
            .caller(revm::primitives::Address::from(sender.0))
            .kind(TxKind::Call(token))
            .data(Bytes::from(data.clone()))
            .gas_limit(200_000)
            .nonce(*n)
            .build()
            .expect("tx");
        *n += 1;
        let result = evm.transact_commit(tx).expect("transfer");
        assert!(result.is_success(), "{result:?}");
        gas += result.tx_gas_used();
    }
    let elapsed = start.elapsed();
    (transfers.len() as f64 / elapsed.as_secs_f64(), elapsed, gas)
}

/// keel: the same transfers as signed transactions in blocks, executed and committed.
/// `verified_once`: the transactions' signatures were verified at admission (a node's
/// mempool shares its signature cache with the runtime, issue 22), so blocks skip them.
fn keel_transfers(
    senders: &[SecretKey],
    transfers: &[(Address, Vec<u8>)],
    (verified_once, threads): (bool, usize),
) -> (f64, Duration, u64) {
    let alice = key(1);
    let mut funded: Vec<&SecretKey> = senders.iter().collect();
    funded.push(&alice);
    let mut chain = Chain::new(&funded);
    let token = chain.deploy(
        &alice,
        Env::Evm,
        artifact("Token.bin"),
        abi::u(u64::MAX).to_vec(),
    );
    let fund: Vec<SignedTransaction> = senders
        .iter()
        .map(|s| {
            let data = abi::call(
                "transfer(address,uint256)",
                &[abi::address(&addr(s)), abi::u(1_000_000)],
            );
            chain.tx(
                &alice,
                200_000,
                TxBody::Call {
                    to: token,
                    data,
                    value: U256::ZERO,
                },
            )
        })
        .collect();
    chain.block(fund);
    let by_address: std::collections::BTreeMap<[u8; 20], &SecretKey> =
        senders.iter().map(|s| (addr(s).0, s)).collect();
    let txs: Vec<SignedTransaction> = transfers
        .iter()
        .map(|(sender, data)| {
            let k = by_address[&sender.0];
            chain.tx(
                k,
                200_000,
                TxBody::Call {
                    to: token,
                    data: data.clone(),
                    value: U256::ZERO,
                },
            )
        })
        .collect();
    // The signature share: raw ed25519 batch verification of the same transactions.
    let hashes: Vec<[u8; 32]> = txs.iter().map(|t| t.hash().0).collect();
    let items: Vec<_> = txs
        .iter()
        .zip(&hashes)
        .map(|(t, h)| {
            let (key, sig) = t.ed25519().expect("agent transaction");
            (h.as_slice(), key, sig)
        })
        .collect();
    let start = Instant::now();
    for chunk in items.chunks(BLOCK_TXS) {
        keel_types::crypto::verify_batch(chunk).expect("valid signatures");
    }
    let signatures = start.elapsed();
    for verify_threads in [1, 2] {
        let start = Instant::now();
        for chunk in txs.chunks(BLOCK_TXS) {
            let hashes: Vec<keel_types::Hash> = chunk.iter().map(SignedTransaction::hash).collect();
            assert!(keel_runtime::signatures::bad_signatures(
                chunk,
                &hashes,
                verify_threads,
                1,
                None
            )
            .is_empty());
        }
        println!(
            "keel block signature check, {verify_threads} thread(s): {:.2?}",
            start.elapsed()
        );
    }

    if verified_once {
        // What admission does before the measured blocks (untimed): verify and remember.
        let all: Vec<keel_types::Hash> = txs.iter().map(SignedTransaction::hash).collect();
        let cache = chain.runtime.signature_cache().clone();
        assert!(
            keel_runtime::signatures::bad_signatures(&txs, &all, 2, 1, Some(&cache)).is_empty()
        );
    }
    let (mut execute, mut commit) = (Duration::ZERO, Duration::ZERO);
    let mut gas = 0u64;
    let start = Instant::now();
    for chunk in txs.chunks(BLOCK_TXS) {
        let block = chain.make_block(chunk.to_vec());
        let t0 = Instant::now();
        let out = chain.execute_with_threads(&block, threads);
        let t1 = Instant::now();
        chain.commit(&block, &out);
        execute += t1 - t0;
        commit += t1.elapsed();
        gas += out.gas_used;
        assert!(out
            .receipts
            .iter()
            .all(|r| r.status == keel_types::TxStatus::Success));
    }
    let elapsed = start.elapsed();
    println!(
        "keel breakdown ({threads} execution thread(s)): execute {execute:.2?} (of which ed25519 batch verification alone takes {signatures:.2?}), commit {commit:.2?}; parallel commits kept / redone / direct {:?}",
        chain.parallel_counts.get()
    );
    (transfers.len() as f64 / elapsed.as_secs_f64(), elapsed, gas)
}

fn erc20() {
    let senders: Vec<SecretKey> = (0..SENDERS).map(|i| key(10 + i)).collect();
    // Round-robin over senders, each paying the next one: every transfer touches two slots.
    let mut transfers = Vec::new();
    for round in 0..TRANSFERS_PER_SENDER {
        for (i, s) in senders.iter().enumerate() {
            let to = addr(&senders[(i + 1 + round) % senders.len()]);
            let data = abi::call("transfer(address,uint256)", &[abi::address(&to), abi::u(1)]);
            transfers.push((addr(s), data));
        }
    }
    transfers.sort_by_key(|(s, _)| s.0);
    // Interleave again so each block holds many senders (order within a sender kept).
    let mut ordered = Vec::with_capacity(transfers.len());
    for round in 0..TRANSFERS_PER_SENDER {
        for s in 0..SENDERS as usize {
            ordered.push(transfers[s * TRANSFERS_PER_SENDER + round].clone());
        }
    }
    let (raw, raw_t, raw_gas) = raw_revm_transfers(&ordered);
    let (keel, keel_t, keel_gas) = keel_transfers(&senders, &ordered, (false, 1));
    let (once, once_t, once_gas) = keel_transfers(&senders, &ordered, (true, 1));
    let (par, par_t, par_gas) = keel_transfers(&senders, &ordered, (true, 2));
    let mgas = |gas: u64, t: Duration| gas as f64 / t.as_secs_f64() / 1e6;
    println!(
        "\n## ERC-20 transfers ({} transfers, blocks of {BLOCK_TXS})",
        ordered.len()
    );
    println!("| path | transfers/s | Mgas/s | gas per transfer | time | ratio to raw revm |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| raw revm, in-memory CacheDB (baseline) | {raw:.0} | {:.1} | {} | {raw_t:.2?} | 1.000 |",
        mgas(raw_gas, raw_t),
        raw_gas / ordered.len() as u64
    );
    println!(
        "| keel runtime + RocksDB commit | {keel:.0} | {:.1} | {} | {keel_t:.2?} | {:.3} |",
        mgas(keel_gas, keel_t),
        keel_gas / ordered.len() as u64,
        keel / raw
    );
    println!(
        "| keel runtime + RocksDB commit, signatures verified at admission (verify-once) | {once:.0} | {:.1} | {} | {once_t:.2?} | {:.3} |",
        mgas(once_gas, once_t),
        once_gas / ordered.len() as u64,
        once / raw
    );
    println!(
        "| keel runtime + RocksDB commit, verify-once, 2 execution threads | {par:.0} | {:.1} | {} | {par_t:.2?} | {:.3} |",
        mgas(par_gas, par_t),
        par_gas / ordered.len() as u64,
        par / raw
    );
}

/// `block` executed serially over the store's latest state, without the cross-checks.
fn execute_serial(
    store: &keel_store::Store,
    runtime: &keel_runtime::Runtime,
    block: &keel_types::Block,
) {
    let view = store.latest_view();
    runtime
        .execute_block(&view, &keel_exec_evm::NoBlockHashes, block)
        .expect("execute");
}

/// Senders in the parallel-execution blocks (one transfer each).
const PARALLEL_SENDERS: u16 = 500;

/// Parallel ÷ serial execution of one block of ERC-20 transfers (issue 22), signatures
/// verified beforehand (verify-once) so only execution is timed, the block executed over
/// the same parent state `REPEATS` times per thread count, median kept. Low conflict:
/// every transfer has its own sender and recipient. All conflict: every transfer pays the
/// same recipient, so each one reads the balance slot the one before it wrote.
fn parallel() {
    let senders: Vec<SecretKey> = (0..PARALLEL_SENDERS)
        .map(|i| {
            let mut seed = [0x5e; 32];
            seed[..2].copy_from_slice(&i.to_le_bytes());
            SecretKey::from_seed(seed)
        })
        .collect();
    let alice = key(1);
    let mut funded: Vec<&SecretKey> = senders.iter().collect();
    funded.push(&alice);
    let mut chain = Chain::new(&funded);
    let token = chain.deploy(
        &alice,
        Env::Evm,
        artifact("Token.bin"),
        abi::u(u64::MAX).to_vec(),
    );
    let call = |to: &Address| TxBody::Call {
        to: token,
        data: abi::call("transfer(address,uint256)", &[abi::address(to), abi::u(1)]),
        value: U256::ZERO,
    };
    let fund: Vec<SignedTransaction> = senders
        .iter()
        .map(|s| {
            let body = TxBody::Call {
                to: token,
                data: abi::call(
                    "transfer(address,uint256)",
                    &[abi::address(&addr(s)), abi::u(1_000_000)],
                ),
                value: U256::ZERO,
            };
            chain.tx(&alice, 200_000, body)
        })
        .collect();
    let block = chain.make_block(fund);
    let out = chain.execute_with_threads(&block, 1);
    chain.commit(&block, &out);
    let shared = Address([0x77; 20]);
    let mut blocks = Vec::new();
    for (name, all_conflict) in [("low conflict", false), ("all conflict", true)] {
        let txs: Vec<SignedTransaction> = senders
            .iter()
            .zip(0u32..)
            .map(|(s, i)| {
                let mut to = [0x99; 20];
                to[..4].copy_from_slice(&i.to_le_bytes());
                let to = if all_conflict { shared } else { Address(to) };
                chain.tx(s, 200_000, call(&to))
            })
            .collect();
        let hashes: Vec<keel_types::Hash> = txs.iter().map(SignedTransaction::hash).collect();
        let cache = chain.runtime.signature_cache().clone();
        assert!(
            keel_runtime::signatures::bad_signatures(&txs, &hashes, 2, 1, Some(&cache)).is_empty()
        );
        blocks.push((name, chain.make_block(txs)));
        // Both blocks use each sender's next nonce: each is measured alone over the parent.
        for s in &senders {
            chain.resync_nonce(s);
        }
    }
    if let Ok(threads) = std::env::var("KEEL_BENCH_FOCUS") {
        // For a profiler: the low-conflict block alone, many times, on that many threads.
        let threads = threads.parse().unwrap_or(1);
        if let Some((_, block)) = blocks.first() {
            for _ in 0..2_000 {
                chain.execute_with_threads(block, threads);
            }
        }
        return;
    }
    println!("\n## Parallel execution ({PARALLEL_SENDERS} ERC-20 transfers per block, execution only, median of {REPEATS})");
    println!("| block | threads | time | transfers/s | Mgas/s | parallel ÷ serial | kept / redone / direct |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    // The machine's own ceiling: the low-conflict block executed serially on two threads at
    // once (two independent executions), against one at a time.
    if let Some((_, block)) = blocks.first() {
        let one = median(
            (0..REPEATS)
                .map(|_| {
                    let t0 = Instant::now();
                    chain.execute_with_threads(block, 1);
                    t0.elapsed()
                })
                .collect(),
        );
        let two = median(
            (0..REPEATS)
                .map(|_| {
                    let t0 = Instant::now();
                    let (store, runtime) = (&chain.store, &chain.runtime);
                    std::thread::scope(|scope| {
                        let a = scope.spawn(|| execute_serial(store, runtime, block));
                        execute_serial(store, runtime, block);
                        a.join().expect("thread");
                    });
                    t0.elapsed()
                })
                .collect(),
        );
        println!(
            "machine ceiling: two serial executions at once take {two:.2?}, one takes {one:.2?}: {:.2}x the throughput on 2 threads",
            2.0 * one.as_secs_f64() / two.as_secs_f64()
        );
    }
    for (name, block) in &blocks {
        let mut serial = Duration::ZERO;
        let reference = chain.execute_with_threads(block, 1);
        assert!(reference
            .receipts
            .iter()
            .all(|r| r.status == keel_types::TxStatus::Success));
        for threads in [1usize, 2, 4] {
            let before = chain.parallel_counts.get();
            let mut times = Vec::new();
            for _ in 0..REPEATS {
                let t0 = Instant::now();
                let out = chain.execute_with_threads(block, threads);
                times.push(t0.elapsed());
                assert!(out == reference, "{threads} threads diverge");
            }
            let after = chain.parallel_counts.get();
            let time = median(times);
            if threads == 1 {
                serial = time;
            }
            let per_run = |a: u64, b: u64| (a - b) / REPEATS as u64;
            println!(
                "| {name} | {threads} | {time:.2?} | {:.0} | {:.1} | {:.2} | {} / {} / {} |",
                block.transactions.len() as f64 / time.as_secs_f64(),
                reference.gas_used as f64 / time.as_secs_f64() / 1e6,
                serial.as_secs_f64() / time.as_secs_f64(),
                per_run(after.0, before.0),
                per_run(after.1, before.1),
                per_run(after.2, before.2),
            );
        }
    }
}

/// The benchmark set that calibrates WASM's ink table (issue 24): the same compute-,
/// memory- and host-call-heavy loops in both environments (`contracts/evm/Compute.sol`,
/// `contracts/wasm/compute.c`; outputs asserted equal).
const WORKLOADS: [(&str, &str); 3] = [
    ("compute (64-bit LCG)", "run(uint256)"),
    ("memory (load + store, 4 KiB array)", "mem(uint256)"),
    ("host calls (chained keccak-256)", "hash(uint256)"),
];
/// Rounds per call at the two measuring points: the slope between them is the marginal
/// cost, free of per-transaction overhead (signature, nonce, fee, instantiation, intrinsic
/// gas), which is what the ink table prices.
const ROUNDS_LO: u64 = 5_000;
const ROUNDS_HI: u64 = 25_000;
/// Repetitions of each measured block; the median is kept (this machine is shared).
const REPEATS: usize = 7;

/// One measuring point: median wall time per call, gas per call, output.
struct Point {
    time: Duration,
    gas: u64,
    output: Vec<u8>,
}

fn keel_point(chain: &mut Chain, sender: &SecretKey, to: Address, data: &[u8]) -> Point {
    let txs: Vec<SignedTransaction> = (0..COMPUTE_CALLS)
        .map(|_| {
            chain.tx(
                sender,
                COMPUTE_GAS,
                TxBody::Call {
                    to,
                    data: data.to_vec(),
                    value: U256::ZERO,
                },
            )
        })
        .collect();
    // The block is executed, never committed, so the same block can be measured repeatedly.
    let block = chain.make_block(txs);
    let mut times = Vec::with_capacity(REPEATS);
    let mut receipt = None;
    for _ in 0..REPEATS {
        let start = Instant::now();
        let out = chain.execute(&block);
        times.push(start.elapsed() / COMPUTE_CALLS as u32);
        receipt = Some(out.receipts[0].clone());
    }
    let r = receipt.expect("at least one repetition");
    assert_eq!(r.status, keel_types::TxStatus::Success, "{r:?}");
    Point {
        time: median(times),
        gas: r.gas_used,
        output: r.output,
    }
}

fn raw_point(code: &[u8], data: &[u8]) -> Point {
    let mut db = raw_revm_db();
    let target = revm::primitives::Address::repeat_byte(0xcc);
    db.insert_account_info(
        target,
        AccountInfo::default().with_code(Bytecode::new_raw(code.to_vec().into())),
    );
    let mut raw = revm::Context::mainnet().with_db(db).build_mainnet();
    let mut times = Vec::with_capacity(REPEATS);
    let mut gas = 0;
    for nonce in 0..REPEATS as u64 {
        let tx = TxEnv::builder()
            .kind(TxKind::Call(target))
            .data(Bytes::from(data.to_vec()))
            .gas_limit(COMPUTE_GAS)
            .nonce(nonce)
            .build()
            .expect("tx");
        let start = Instant::now();
        let r = raw.transact_commit(tx).expect("raw compute");
        times.push(start.elapsed());
        assert!(r.is_success(), "{r:?}");
        gas = r.tx_gas_used();
    }
    Point {
        time: median(times),
        gas,
        output: Vec::new(),
    }
}

/// Marginal nanoseconds per gas between two measuring points.
fn ns_per_gas(lo: &Point, hi: &Point) -> f64 {
    let dt = hi.time.as_secs_f64() - lo.time.as_secs_f64();
    let dg = hi.gas.saturating_sub(lo.gas).max(1) as f64;
    dt * 1e9 / dg
}

fn compute() {
    let alice = key(1);
    // One fresh sender per measured block: blocks are executed, never committed, so each
    // block's nonces must start at the sender's (unchanged) nonce.
    let senders: Vec<SecretKey> = (0..4 * WORKLOADS.len() as u8)
        .map(|i| key(40 + i))
        .collect();
    let mut funded: Vec<&SecretKey> = senders.iter().collect();
    funded.push(&alice);
    let mut chain = Chain::new(&funded);
    let mut fresh = senders.iter();
    let evm = chain.deploy(&alice, Env::Evm, artifact("Compute.bin"), Vec::new());
    let wasm = chain.deploy(&alice, Env::Wasm, artifact("compute.wasm"), Vec::new());
    let runtime_code = deployed_code("Compute.bin");
    println!(
        "\n## Gas that means time: marginal ns per gas, {ROUNDS_LO} -> {ROUNDS_HI} rounds per call"
    );
    println!("| workload | raw revm ns/gas (baseline) | keel EVM ns/gas | keel WASM ns/gas | WASM ÷ EVM ns/gas | WASM ÷ raw revm | EVM Mgas/s | WASM Mgas/s | WASM ÷ EVM gas, same work | WASM ÷ EVM wall time, same work |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for (name, signature) in WORKLOADS {
        let mut points = |rounds: u64, chain: &mut Chain| {
            let data = abi::call(signature, &[abi::u(rounds)]);
            let e = keel_point(chain, fresh.next().expect("sender"), evm, &data);
            let w = keel_point(chain, fresh.next().expect("sender"), wasm, &data);
            assert_eq!(
                e.output, w.output,
                "{name}: both environments compute the same value"
            );
            (raw_point(&runtime_code, &data), e, w)
        };
        let (raw_lo, evm_lo, wasm_lo) = points(ROUNDS_LO, &mut chain);
        let (raw_hi, evm_hi, wasm_hi) = points(ROUNDS_HI, &mut chain);
        let raw = ns_per_gas(&raw_lo, &raw_hi);
        let e = ns_per_gas(&evm_lo, &evm_hi);
        let w = ns_per_gas(&wasm_lo, &wasm_hi);
        let dgas = |lo: &Point, hi: &Point| (hi.gas - lo.gas) as f64;
        let dtime = |lo: &Point, hi: &Point| hi.time.as_secs_f64() - lo.time.as_secs_f64();
        ratios.push(w / e);
        println!(
            "| {name} | {raw:.2} | {e:.2} | {w:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.3} | {:.3} |",
            w / e,
            w / raw,
            1e3 / e,
            1e3 / w,
            dgas(&wasm_lo, &wasm_hi) / dgas(&evm_lo, &evm_hi),
            dtime(&wasm_lo, &wasm_hi) / dtime(&evm_lo, &evm_hi),
        );
    }
    // Each workload is a different program, so the set is summarized by the range and the
    // geometric mean of the per-workload ratios (pooling their times would weight them by
    // how much gas each happens to burn).
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(0.0, f64::max);
    let mean = ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64;
    println!(
        "WASM ÷ EVM ns per gas over the set: min {min:.2}, max {max:.2}, geometric mean {:.2} (target 0.5–2)",
        mean.exp()
    );
}

/// The runtime bytecode a creation bytecode deploys (run the constructor in raw revm).
fn deployed_code(name: &str) -> Vec<u8> {
    let mut evm = revm::Context::mainnet()
        .with_db(raw_revm_db())
        .build_mainnet();
    let tx = TxEnv::builder()
        .kind(TxKind::Create)
        .data(Bytes::from(artifact(name)))
        .gas_limit(5_000_000)
        .build()
        .expect("tx");
    match evm.transact_commit(tx).expect("create") {
        revm::context::result::ExecutionResult::Success {
            output: revm::context::result::Output::Create(code, _),
            ..
        } => code.to_vec(),
        other => panic!("{other:?}"),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn compile() {
    use keel_exec_wasm::{compile_artifact, ModuleCache};
    let module = artifact("token.wasm");
    let kb = module.len() as f64 / 1024.0;
    let runs = 15;
    let raw = median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                let engine: wasmer::Engine =
                    wasmer::sys::EngineBuilder::new(wasmer::sys::Singlepass::new())
                        .engine()
                        .into();
                let m = wasmer::Module::new(&engine, &module).expect("raw compile");
                drop(m);
                start.elapsed()
            })
            .collect(),
    );
    let keel = median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                let a = compile_artifact(&module).expect("compile");
                drop(a);
                start.elapsed()
            })
            .collect(),
    );
    let dir = tempfile::tempdir().expect("dir");
    let key = keel_exec_wasm::keccak256(&module);
    let cache = ModuleCache::new(Some(dir.path().to_path_buf()), 16).expect("cache");
    cache.get(&key, &module).expect("first compile");
    let memory_hit = median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                cache.get(&key, &module).expect("hit");
                start.elapsed()
            })
            .collect(),
    );
    let disk_hit = median(
        (0..runs)
            .map(|_| {
                cache.clear_memory();
                let start = Instant::now();
                cache.get(&key, &module).expect("disk hit");
                start.elapsed()
            })
            .collect(),
    );
    let per_kb = |d: Duration| d.as_secs_f64() * 1e3 / kb;
    println!(
        "\n## WASM compile and cache ({} byte module, median of {runs})",
        module.len()
    );
    println!("| path | time | ms per KB | ratio to raw singlepass |");
    println!("|---|---:|---:|---:|");
    println!(
        "| raw wasmer singlepass compile (baseline) | {raw:.2?} | {:.3} | 1.000 |",
        per_kb(raw)
    );
    println!("| keel compile (validate + metering + call depth + serialize) | {keel:.2?} | {:.3} | {:.3} |", per_kb(keel), keel.as_secs_f64() / raw.as_secs_f64());
    println!(
        "| keel cache hit, memory | {memory_hit:.2?} | | {:.4} |",
        memory_hit.as_secs_f64() / raw.as_secs_f64()
    );
    println!(
        "| keel cache hit, disk (new process) | {disk_hit:.2?} | | {:.4} |",
        disk_hit.as_secs_f64() / raw.as_secs_f64()
    );
}

fn main() {
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    // `KEEL_BENCH=parallel` (or a comma-separated list) runs only those sections.
    let only = std::env::var("KEEL_BENCH").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|s| s == name);
    let sections: [(&str, fn()); 4] = [
        ("erc20", erc20),
        ("parallel", parallel),
        ("compute", compute),
        ("compile", compile),
    ];
    for (name, section) in sections {
        if run(name) {
            section();
        }
    }
}
