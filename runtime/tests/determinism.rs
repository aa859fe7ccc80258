//! The same blocks executed on fresh stores, and with cold, warm (memory) and disk-only
//! module caches, give byte-identical receipts, state diffs and roots.

use crate::common;

use common::{abi, addr, artifact, key, Chain};
use keel_exec_wasm::limits::MODULE_CACHE_ENTRIES;
use keel_exec_wasm::ModuleCache;
use keel_runtime::BlockOutput;
use keel_types::{Env, Hash, SignedTransaction, TxBody, U256};
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn deploy_body(env: Env, code: Vec<u8>, args: Vec<u8>) -> TxBody {
    TxBody::Deploy {
        env,
        code,
        args,
        value: U256::ZERO,
    }
}

/// Three blocks: deploys, then a mixed block of transfers, token calls in both environments,
/// cross-environment relays and failing transactions, then the same again.
fn run(chain: &mut Chain) -> Vec<(BlockOutput, Hash)> {
    let (alice, bob) = (key(1), key(2));
    let mut out = Vec::new();
    let txs = vec![
        chain.tx(
            &alice,
            5_000_000,
            deploy_body(Env::Evm, artifact("Token.bin"), abi::u(1_000_000).to_vec()),
        ),
        chain.tx(
            &alice,
            5_000_000,
            deploy_body(
                Env::Wasm,
                artifact("token.wasm"),
                abi::u(1_000_000).to_vec(),
            ),
        ),
        chain.tx(
            &alice,
            5_000_000,
            deploy_body(Env::Wasm, artifact("router.wasm"), Vec::new()),
        ),
        chain.tx(
            &alice,
            5_000_000,
            deploy_body(Env::Evm, artifact("Router.bin"), Vec::new()),
        ),
    ];
    let (first, root) = chain.block(txs);
    let evm_token = first.receipts[0].contract_address.expect("evm token");
    let wasm_token = first.receipts[1].contract_address.expect("wasm token");
    let wasm_router = first.receipts[2]
        .contract_address
        .unwrap_or_else(|| panic!("{:?}", first.receipts[2]));
    let evm_router = first.receipts[3].contract_address.expect("evm router");
    out.push((first, root));
    for round in 0..2u64 {
        let transfer = |to: &keel_types::Address, n: u64| {
            abi::call("transfer(address,uint256)", &[abi::address(to), abi::u(n)])
        };
        let relay = |token: &keel_types::Address, n: u64, mode: u64| {
            abi::call(
                "relay(address,address,uint256,uint256)",
                &[
                    abi::address(token),
                    abi::address(&addr(&key(2))),
                    abi::u(n),
                    abi::u(mode),
                ],
            )
        };
        let call = |to, data| TxBody::Call {
            to,
            data,
            value: U256::ZERO,
        };
        let txs: Vec<SignedTransaction> = vec![
            chain.tx(
                &alice,
                100_000,
                TxBody::Transfer {
                    to: addr(&bob),
                    amount: U256::from(1_000 + round),
                },
            ),
            chain.tx(
                &alice,
                500_000,
                call(evm_token, transfer(&wasm_router, 500)),
            ),
            chain.tx(
                &alice,
                500_000,
                call(wasm_token, transfer(&evm_router, 500)),
            ),
            chain.tx(
                &alice,
                2_000_000,
                call(wasm_router, relay(&evm_token, 10 + round, 0)),
            ),
            chain.tx(
                &alice,
                2_000_000,
                call(evm_router, relay(&wasm_token, 10 + round, 1)),
            ),
            chain.tx(
                &alice,
                2_000_000,
                call(evm_router, relay(&wasm_token, 10_000, 1)),
            ),
            chain.tx(
                &alice,
                2_000_000,
                call(wasm_router, relay(&evm_token, 3, 2)),
            ),
            chain.tx(&bob, 500_000, call(wasm_token, transfer(&addr(&alice), 1))),
            chain.tx(&bob, 30_000, call(evm_token, transfer(&addr(&alice), 1))),
        ];
        out.push(chain.block(txs));
    }
    out
}

#[test]
fn same_blocks_on_fresh_stores_are_byte_identical() {
    let mut a = Chain::new(&[&key(1), &key(2)]);
    let mut b = Chain::new(&[&key(1), &key(2)]);
    let ra = run(&mut a);
    let rb = run(&mut b);
    assert_eq!(ra, rb);
    // Encoded receipts, not only equal values.
    for ((x, _), (y, _)) in ra.iter().zip(&rb) {
        for (p, q) in x.receipts.iter().zip(&y.receipts) {
            use keel_types::encoding::Canonical;
            assert_eq!(p.encode(), q.encode());
        }
    }
    assert_eq!(a.root(), b.root());
}

#[test]
fn warm_cold_and_disk_caches_give_identical_results() {
    let cold = Chain::new(&[&key(1), &key(2)]);
    let cache = cold.runtime.module_cache().clone();
    let cache_dir = cold.dir.path().join("wasm-cache");
    let mut cold = cold;
    let cold_out = run(&mut cold);
    assert!(cache.stats.compiles.load(Ordering::Relaxed) >= 2);

    // Warm: the same in-memory cache, every module already compiled.
    let compiles = cache.stats.compiles.load(Ordering::Relaxed);
    let mut warm = Chain::with_cache(
        tempfile::tempdir().expect("dir"),
        &[&key(1), &key(2)],
        cache.clone(),
    );
    let warm_out = run(&mut warm);
    assert_eq!(
        cache.stats.compiles.load(Ordering::Relaxed),
        compiles,
        "nothing recompiled"
    );
    assert_eq!(cold_out, warm_out);

    // Disk: a new process's cache over the same directory loads, never compiles.
    let disk_cache =
        Arc::new(ModuleCache::new(Some(cache_dir), MODULE_CACHE_ENTRIES).expect("cache"));
    let mut disk = Chain::with_cache(
        tempfile::tempdir().expect("dir"),
        &[&key(1), &key(2)],
        disk_cache.clone(),
    );
    let disk_out = run(&mut disk);
    assert_eq!(disk_cache.stats.compiles.load(Ordering::Relaxed), 0);
    assert!(disk_cache.stats.disk_hits.load(Ordering::Relaxed) >= 2);
    assert_eq!(cold_out, disk_out);
}

#[test]
fn corrupt_cache_files_are_recompiled_not_loaded() {
    let mut first = Chain::new(&[&key(1), &key(2)]);
    let reference = run(&mut first);
    let cache_dir = first.dir.path().join("wasm-cache");
    let mut corrupted = 0;
    for entry in std::fs::read_dir(&cache_dir).expect("dir") {
        let path = entry.expect("entry").path();
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).expect("write");
        corrupted += 1;
    }
    assert!(corrupted >= 2, "both WASM modules were cached");
    let cache = Arc::new(ModuleCache::new(Some(cache_dir), MODULE_CACHE_ENTRIES).expect("cache"));
    let mut second = Chain::with_cache(
        tempfile::tempdir().expect("dir"),
        &[&key(1), &key(2)],
        cache.clone(),
    );
    assert_eq!(run(&mut second), reference);
    assert_eq!(cache.stats.disk_hits.load(Ordering::Relaxed), 0);
    assert!(cache.stats.compiles.load(Ordering::Relaxed) >= 2);
}
