//! Execution benchmarks, each a ratio against a raw baseline measured in the same run:
//!
//! 1. ERC-20 transfers/s through `Runtime::execute_block` + `Store::commit` (signatures,
//!    nonces, fees, receipts, state diff, Merkle commit to RocksDB) versus raw revm executing
//!    the same token bytecode and calldata over an in-memory `CacheDB`.
//! 2. The same compute loop as EVM bytecode and as a WASM module, wall time per call, through
//!    the runtime, with raw revm on the EVM bytecode as the baseline.
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
const COMPUTE_ROUNDS: u64 = 20_000;
const COMPUTE_CALLS: usize = 20;

fn raw_revm_db() -> CacheDB<EmptyDB> {
    CacheDB::new(EmptyDB::default())
}

/// Raw revm: deploy the token and run the same transfers, committing into a `CacheDB`.
fn raw_revm_transfers(transfers: &[(Address, Vec<u8>)]) -> (f64, Duration) {
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
    }
    let elapsed = start.elapsed();
    (transfers.len() as f64 / elapsed.as_secs_f64(), elapsed)
}

/// keel: the same transfers as signed transactions in blocks, executed and committed.
fn keel_transfers(senders: &[SecretKey], transfers: &[(Address, Vec<u8>)]) -> (f64, Duration) {
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
    for threads in [1, 2] {
        let start = Instant::now();
        for chunk in txs.chunks(BLOCK_TXS) {
            let hashes: Vec<keel_types::Hash> = chunk.iter().map(SignedTransaction::hash).collect();
            assert!(keel_runtime::signatures::bad_signatures(chunk, &hashes, threads).is_empty());
        }
        println!(
            "keel block signature check, {threads} thread(s): {:.2?}",
            start.elapsed()
        );
    }

    let (mut execute, mut commit) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    for chunk in txs.chunks(BLOCK_TXS) {
        let block = chain.make_block(chunk.to_vec());
        let t0 = Instant::now();
        let out = chain.execute(&block);
        let t1 = Instant::now();
        chain.commit(&block, &out);
        execute += t1 - t0;
        commit += t1.elapsed();
        assert!(out
            .receipts
            .iter()
            .all(|r| r.status == keel_types::TxStatus::Success));
    }
    let elapsed = start.elapsed();
    println!(
        "keel breakdown: execute {execute:.2?} (of which ed25519 batch verification alone takes {signatures:.2?}), commit {commit:.2?}"
    );
    (transfers.len() as f64 / elapsed.as_secs_f64(), elapsed)
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
    let (raw, raw_t) = raw_revm_transfers(&ordered);
    let (keel, keel_t) = keel_transfers(&senders, &ordered);
    println!(
        "\n## ERC-20 transfers ({} transfers, blocks of {BLOCK_TXS})",
        ordered.len()
    );
    println!("| path | transfers/s | time | ratio to raw revm |");
    println!("|---|---:|---:|---:|");
    println!("| raw revm, in-memory CacheDB (baseline) | {raw:.0} | {raw_t:.2?} | 1.000 |");
    println!(
        "| keel runtime + RocksDB commit | {keel:.0} | {keel_t:.2?} | {:.3} |",
        keel / raw
    );
}

fn compute() {
    let (alice, bob) = (key(1), key(2));
    let mut chain = Chain::new(&[&alice, &bob]);
    let evm = chain.deploy(&alice, Env::Evm, artifact("Compute.bin"), Vec::new());
    let wasm = chain.deploy(&alice, Env::Wasm, artifact("compute.wasm"), Vec::new());
    let data = abi::call("run(uint256)", &[abi::u(COMPUTE_ROUNDS)]);
    // Blocks are executed, not committed: each measurement uses its own sender so nonces hold.
    let mut per_call = |sender: &SecretKey, to: Address| -> (Duration, Vec<u8>, u64) {
        let txs: Vec<SignedTransaction> = (0..COMPUTE_CALLS)
            .map(|_| {
                chain.tx(
                    sender,
                    10_000_000,
                    TxBody::Call {
                        to,
                        data: data.clone(),
                        value: U256::ZERO,
                    },
                )
            })
            .collect();
        let block = chain.make_block(txs);
        let start = Instant::now();
        let out = chain.execute(&block);
        let elapsed = start.elapsed() / COMPUTE_CALLS as u32;
        let r = &out.receipts[0];
        assert_eq!(r.status, keel_types::TxStatus::Success, "{r:?}");
        (elapsed, r.output.clone(), r.gas_used)
    };
    let (evm_t, evm_out, evm_gas) = per_call(&alice, evm);
    let (wasm_t, wasm_out, wasm_gas) = per_call(&bob, wasm);
    assert_eq!(
        evm_out, wasm_out,
        "both environments compute the same value"
    );

    // Raw revm on the same bytecode.
    let mut db = raw_revm_db();
    let target = revm::primitives::Address::repeat_byte(0xcc);
    let runtime_code = deployed_code("Compute.bin");
    db.insert_account_info(
        target,
        AccountInfo::default().with_code(Bytecode::new_raw(runtime_code.into())),
    );
    let mut raw = revm::Context::mainnet().with_db(db).build_mainnet();
    let start = Instant::now();
    for nonce in 0..COMPUTE_CALLS as u64 {
        let tx = TxEnv::builder()
            .kind(TxKind::Call(target))
            .data(Bytes::from(data.clone()))
            .gas_limit(10_000_000)
            .nonce(nonce)
            .build()
            .expect("tx");
        let r = raw.transact_commit(tx).expect("raw compute");
        assert!(r.is_success());
    }
    let raw_t = start.elapsed() / COMPUTE_CALLS as u32;
    println!("\n## Compute loop, {COMPUTE_ROUNDS} rounds per call (wall time per call)");
    println!("| path | time per call | gas | ratio to raw revm |");
    println!("|---|---:|---:|---:|");
    println!("| raw revm, EVM bytecode (baseline) | {raw_t:.2?} | | 1.000 |");
    println!(
        "| keel runtime, EVM | {evm_t:.2?} | {evm_gas} | {:.3} |",
        evm_t.as_secs_f64() / raw_t.as_secs_f64()
    );
    println!(
        "| keel runtime, WASM | {wasm_t:.2?} | {wasm_gas} | {:.3} |",
        wasm_t.as_secs_f64() / raw_t.as_secs_f64()
    );
    println!(
        "WASM ÷ EVM wall time through the runtime: {:.3}",
        wasm_t.as_secs_f64() / evm_t.as_secs_f64()
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
    erc20();
    compute();
    compile();
}
