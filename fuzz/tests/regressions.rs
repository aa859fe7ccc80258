//! Inputs the fuzz targets found, one named test each. A finding's input lives in
//! `fuzz/findings/<target>/` while it is open (so the smoke run stays green and its test is
//! ignored); once fixed, copy it to `fuzz/corpus/<target>/regression-<name>` and un-ignore.

use keel_types::crypto::verify_batch;
use keel_types::{
    Address, Authorization, PublicKey, Sender, Signature, SignedTransaction, Transaction, TxBody,
    U256,
};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// One test at a time: `evicted_modules_release_their_code_memory` measures the process's
/// resident memory, which any test running beside it (or its panic's backtrace) would grow.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn finding(target: &str, name: &str) -> Vec<u8> {
    let path = manifest_dir().join("findings").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The small-order ed25519 public key whose encoding is all zeros (y = 0: a point of order 4).
const SMALL_ORDER_KEY: PublicKey = PublicKey([0; 32]);

/// agent_tx, found by libFuzzer after 8.4 million runs: a transaction whose sender key is
/// the all-zero encoding (a small-order point) and whose signature is all zeros passes
/// `crypto::verify_batch` (dalek's batch equation multiplies by the cofactor, so small-order
/// keys and R values drop out) while the strict single check (`verify_signature`, which
/// `keel_simulate` runs) refuses it. The runtime (`runtime/src/signatures.rs`) and the
/// consensus quorum check use the batch rule, so in a chunk of otherwise valid signatures
/// anyone can sign for `Address::from_public_key(&[0; 32])` and the other small-order keys.
#[test]
fn the_batch_rule_refuses_what_the_strict_rule_refuses_found_input() {
    let _serial = serial();
    keel_fuzz::agent_tx(&finding("agent_tx", "small-order-key-zero-signature"));
}

/// The same finding, minimized by hand: transfers from the small-order key with the
/// all-zero signature. Whether the batch accepts depends on the message (the batch
/// coefficients and the hash decide whether the small-order terms cancel): about one gas
/// price in three makes a forgery, so a forger just tries a few.
#[test]
fn a_small_order_key_cannot_sign_anything_under_the_batch_rule() {
    let _serial = serial();
    let forged: Vec<u128> = (1..=FORGERY_ATTEMPTS)
        .filter(|&gas_price| {
            let tx = SignedTransaction {
                tx: Transaction {
                    chain_id: keel_fuzz::FUZZ_CHAIN_ID,
                    sender: Sender::Agent(SMALL_ORDER_KEY),
                    nonce: 0,
                    gas_limit: 21_000,
                    gas_price,
                    body: TxBody::Transfer {
                        to: Address([0x11; 20]),
                        amount: U256::from(1u64),
                    },
                },
                signature: Authorization::Ed25519(Signature([0; 64])),
            };
            assert!(
                tx.verify_signature(keel_fuzz::FUZZ_BASE_FEE).is_err(),
                "the strict rule refuses it"
            );
            let hash = tx.hash();
            verify_batch(&[(&hash.0[..], SMALL_ORDER_KEY, Signature([0; 64]))]).is_ok()
        })
        .collect();
    assert!(
        forged.is_empty(),
        "the batch rule accepts the all-zero signature of the all-zero key at gas prices {forged:?}"
    );
}

/// Messages the hand-minimized forgery tries.
const FORGERY_ATTEMPTS: u128 = 32;

/// Loads of an evicted module the memory check below makes.
const CACHE_RELOADS: usize = 400;
/// Resident memory those reloads may add (the cache holds one module; what it evicted must be
/// freed).
const MAX_RELOAD_GROWTH_BYTES: u64 = 16 * 1024 * 1024;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// wasm_compile, found by libFuzzer (resident memory climbing past 1.9 GB in 1.5 M runs): the
/// module cache loads every artifact into its one long-lived headless wasmer engine, and a
/// wasmer engine keeps the code memory of every module it ever loaded until the engine is
/// dropped (`code_memory: Vec<CodeMemory>` in wasmer-compiler's `EngineInner`, pushed on each
/// load, never popped). Evicting a module from the cache frees nothing, so calls that
/// round-robin over more contracts than the cache holds (each call then reloads its module
/// from disk) grow the node's memory without bound.
#[test]
fn evicted_modules_release_their_code_memory() {
    let _serial = serial();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-module-cache-reloads");
    let _ = std::fs::remove_dir_all(&dir);
    let cache = keel_exec_wasm::ModuleCache::new(Some(dir), 1).expect("a module cache");
    let (_, code) = keel_fuzz::seeds::WASM_CONTRACTS[4];
    let key = [7u8; 32];
    cache.get(&key, code).expect("the token contract compiles");
    let before = resident_bytes();
    for _ in 0..CACHE_RELOADS {
        // Evicted (as by any other module), then called again: loaded from the disk cache.
        cache.clear_memory();
        cache.get(&key, code).expect("the artifact loads");
    }
    let grown = resident_bytes().saturating_sub(before);
    println!("{CACHE_RELOADS} reloads of one evicted module: resident memory +{grown} bytes");
    assert!(
        grown <= MAX_RELOAD_GROWTH_BYTES,
        "{CACHE_RELOADS} reloads of one evicted module grew resident memory by {grown} bytes"
    );
}

/// rpc_params: `eth_getLogs` with `fromBlock` 0 and `toBlock` 2⁶⁴−1: the range-limit error
/// message computes `to - from + 1`, which overflows (node/src/rpc/eth/logs.rs:53); with
/// overflow checks on (the `ci` profile the node is built with) the handler panics and the
/// client gets an internal error instead of the typed `LIMIT_EXCEEDED`.
#[cfg(feature = "node")]
#[test]
fn eth_get_logs_over_every_height_is_a_typed_limit_error() {
    let _serial = serial();
    let input = finding("rpc_params", "eth-getlogs-full-range");
    assert_eq!(input[0], 23, "method index of eth_getLogs in RPC_METHODS");
    keel_fuzz::rpc_params(&input);
}

/// consensus_engine's seeds reach what they are there for (so the smoke run exercises it):
/// the happy script finalizes three blocks, and the top script finalizes a block at view
/// `u64::MAX` before restarting from it (the saturating view arithmetic of part 1: with
/// `tip.view + 1` the restart panics).
#[test]
fn the_engine_seeds_finalize_a_chain_and_a_block_at_the_top_view() {
    let _serial = serial();
    let seeds = keel_fuzz::seeds::for_target("consensus_engine");
    let (height, _, view) = keel_fuzz::consensus_engine_tip(&seeds[0]);
    assert_eq!((height, view), (3, 3));
    let (height, _, view) = keel_fuzz::consensus_engine_tip(&seeds[1]);
    assert_eq!((height, view), (1, u64::MAX));
}

/// consensus_engine, found by the smoke run's mutations within 300 inputs: a finalization
/// certificate of view 3 (signed by all four keys) naming a known block whose header says
/// view 7. The engine delivered it, so its finalized tip's view overtook its own view and it
/// went on holding views behind its tip. Now the certified block must be of the
/// certificate's view and the chain under it must fall a view and a height at a time to the
/// tip (as rule SYNC already required of sync responses), else the finalization is dropped.
#[test]
fn a_finalization_naming_a_block_of_another_view_is_never_applied() {
    let _serial = serial();
    let path =
        manifest_dir().join("corpus/consensus_engine/regression-finalized-block-of-a-later-view");
    keel_fuzz::consensus_engine(&std::fs::read(path).expect("the regression input"));
}

/// The package directory of the running test. Read at run time (cargo sets it for every test
/// process): the compile-time value can name another clone when clones share one target
/// directory, as the scripts' persistent `CARGO_TARGET_DIR` makes them do.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}
