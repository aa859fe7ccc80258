//! What account policies, plugins and jurisdiction rules cost execution (issue 20's
//! benchmark), each a ratio against plain transfers measured in the same run:
//!
//! - transfers from accounts whose policy lists 16 targets and caps value and fees per epoch
//!   ÷ the same transfers from accounts without a policy (goal ≥ 0.9);
//! - one plugin check (the allow-list plugin, WASM) ÷ one plain transfer;
//! - plain transfers once some address declares jurisdiction rules (every frame then reads
//!   the rules count and the target's rules), and to recipients that all declare rules (the
//!   sender's tags read too).
//!
//! Each block holds `SENDERS` native transfers, one per sender, signatures verified
//! beforehand (verify-once), executed serially over the same parent `REPEATS` times by one
//! runtime kept throughout (as a node keeps its caches), the blocks taking turns; the median
//! is kept. Execution only: the commit is the same for every variant.
//!
//! Run: `scripts/bench` (or `cargo bench --profile ci -p keel-runtime --bench policy`).

// Floats only format the measured rates; nothing here reaches state.
#![allow(clippy::float_arithmetic)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{abi, addr, artifact, key, Chain};
use keel_runtime::executor::Runtime;
use keel_types::jurisdiction::{set_rules_call, Rules, JURISDICTION_ADDRESS};
use keel_types::policy::{AccountPolicy, TargetRule};
use keel_types::{Address, Env, SecretKey, SignedTransaction, TxBody, TxStatus, U256};
use std::time::{Duration, Instant};

const SENDERS: u16 = 500;
const REPEATS: usize = 21;
/// Targets in each sender's policy (the recipient is the last).
const POLICY_TARGETS: u8 = 16;
/// Gas limit of a transfer that runs a plugin first.
const PLUGIN_TX_GAS: u64 = 300_000;

fn group(tag: u8) -> Vec<SecretKey> {
    (0..SENDERS)
        .map(|i| {
            let mut seed = [tag; 32];
            seed[..2].copy_from_slice(&i.to_le_bytes());
            SecretKey::from_seed(seed)
        })
        .collect()
}

fn recipient(tag: u8, i: usize) -> Address {
    let mut a = [tag; 20];
    a[..4].copy_from_slice(&(i as u32).to_le_bytes());
    Address(a)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Sets up `txs` in as many blocks as their gas limits need, asserting each succeeded.
fn setup(chain: &mut Chain, txs: Vec<SignedTransaction>) {
    let limit = chain.runtime.config().block_gas_limit;
    let mut blocks: Vec<Vec<SignedTransaction>> = vec![Vec::new()];
    let mut gas = 0u64;
    for tx in txs {
        if gas + tx.tx.gas_limit > limit {
            blocks.push(Vec::new());
            gas = 0;
        }
        gas += tx.tx.gas_limit;
        blocks.last_mut().expect("one block").push(tx);
    }
    for chunk in blocks {
        let (out, _) = chain.block(chunk);
        for r in &out.receipts {
            assert_eq!(r.status, TxStatus::Success, "setup: {r:?}");
        }
    }
}

/// One transfer of 1 wei from each of `senders`, sender `i` paying `to(i)` (nonces advance).
fn payments(
    chain: &mut Chain,
    senders: &[SecretKey],
    to: impl Fn(usize) -> Address,
    gas: u64,
) -> Vec<SignedTransaction> {
    senders
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let body = TxBody::Transfer {
                to: to(i),
                amount: U256::from(1u64),
            };
            chain.tx(s, gas, body)
        })
        .collect()
}

/// Commits one transfer from each of `senders` to its recipient: the steady state of agents
/// that pay the same counterparties again and again (the recipient exists, and so does the
/// sender's spending entry of the epoch when it has a policy).
fn warm(chain: &mut Chain, senders: &[SecretKey], tag: u8, gas: u64) {
    let txs = payments(chain, senders, |i| recipient(tag, i), gas);
    setup(chain, txs);
}

/// `txs` of `senders` as a block to measure over the chain's latest state, signatures
/// verified beforehand (verify-once); the senders' nonces are put back, as nothing is
/// committed.
fn measured_block(
    chain: &mut Chain,
    senders: &[SecretKey],
    txs: Vec<SignedTransaction>,
) -> keel_types::Block {
    for s in senders {
        chain.resync_nonce(s);
    }
    let hashes: Vec<keel_types::Hash> = txs.iter().map(SignedTransaction::hash).collect();
    let cache = chain.runtime.signature_cache().clone();
    assert!(keel_runtime::signatures::bad_signatures(&txs, &hashes, 2, 1, Some(&cache)).is_empty());
    chain.make_block(txs)
}

/// One transfer from each of `senders` to its recipient, as a block to measure.
fn transfers(chain: &mut Chain, senders: &[SecretKey], tag: u8, gas: u64) -> keel_types::Block {
    let txs = payments(chain, senders, |i| recipient(tag, i), gas);
    measured_block(chain, senders, txs)
}

/// A block to time, with the chain whose latest state it runs over and the runtime that
/// runs it (kept throughout, as a node keeps its own).
type Run<'a> = (&'a Chain, &'a Runtime, &'a keel_types::Block);

/// Median serial execution times of `runs` (and the gas each used), after checking every
/// transfer succeeds. The blocks take turns, round after round, so the machine's drift (its
/// speed changes by half from one minute to the next) falls on each alike.
fn time(runs: &[Run]) -> Vec<(Duration, u64)> {
    let gas: Vec<u64> = runs
        .iter()
        .map(|(chain, runtime, block)| {
            let out = chain.execute_on(runtime, block);
            for r in &out.receipts {
                assert_eq!(r.status, TxStatus::Success, "{r:?}");
            }
            out.gas_used
        })
        .collect();
    // `KEEL_BENCH_REPEATS` raises the count (for a profiler).
    let repeats = std::env::var("KEEL_BENCH_REPEATS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(REPEATS);
    let mut times = vec![Vec::with_capacity(repeats); runs.len()];
    for _ in 0..repeats {
        for ((chain, runtime, block), times) in runs.iter().zip(&mut times) {
            let t0 = Instant::now();
            chain.execute_on(runtime, block);
            times.push(t0.elapsed());
        }
    }
    times.into_iter().map(median).zip(gas).collect()
}

/// A chain where `owner` and every key of `ruled` declared jurisdiction rules (deny KP), and
/// `plain` each paid their recipient once.
fn ruled_chain(
    funded: &[&SecretKey],
    owner: &SecretKey,
    plain: &[SecretKey],
    ruled: &[SecretKey],
) -> Chain {
    let mut chain = Chain::new(funded);
    warm(&mut chain, plain, 0xa1, 21_000);
    let rules = Rules {
        deny: vec![keel_types::jurisdiction::Code(*b"KP")],
        ..Rules::default()
    };
    let declares = std::iter::once(owner)
        .chain(ruled)
        .map(|k| {
            let body = TxBody::Call {
                to: JURISDICTION_ADDRESS,
                data: set_rules_call(&rules),
                value: U256::ZERO,
            };
            chain.tx(k, 200_000, body)
        })
        .collect();
    setup(&mut chain, declares);
    chain
}

fn main() {
    let (plain, policied, plugged) = (group(0xa1), group(0xb2), group(0xc3));
    let ruled = group(0xd4);
    let owner = key(1);
    let mut funded: Vec<&SecretKey> = plain
        .iter()
        .chain(&policied)
        .chain(&plugged)
        .chain(&ruled)
        .collect();
    funded.push(&owner);
    let mut chain = Chain::new(&funded);

    // 16 targets and two caps per policied sender, the recipient listed last.
    let changes: Vec<SignedTransaction> = policied
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut targets: Vec<TargetRule> = (1..POLICY_TARGETS)
                .map(|t| TargetRule {
                    to: Address([t; 20]),
                    selectors: None,
                })
                .collect();
            targets.push(TargetRule {
                to: recipient(0xb2, i),
                selectors: None,
            });
            let body = TxBody::SetPolicy {
                account: addr(s),
                policy: AccountPolicy {
                    targets: Some(targets),
                    max_value_per_epoch: Some(U256::from(10u64).pow(U256::from(24u64))),
                    max_fee_per_epoch: Some(U256::from(10u64).pow(U256::from(24u64))),
                    ..AccountPolicy::default()
                },
            };
            let gas = body.policy_gas().expect("gas");
            chain.tx(s, gas, body)
        })
        .collect();
    setup(&mut chain, changes);

    // The allow-list plugin, listing every recipient of the plugged group.
    let allowlist = chain.deploy(&owner, Env::Wasm, artifact("allowlist.wasm"), Vec::new());
    let lists: Vec<SignedTransaction> = (0..plugged.len())
        .map(|i| {
            let data = abi::call(
                "allow(address,uint256)",
                &[abi::address(&recipient(0xc3, i)), abi::u(1)],
            );
            let body = TxBody::Call {
                to: allowlist,
                data,
                value: U256::ZERO,
            };
            chain.tx(&owner, 200_000, body)
        })
        .collect();
    setup(&mut chain, lists);
    let attach: Vec<SignedTransaction> = plugged
        .iter()
        .map(|s| {
            let body = TxBody::SetPolicy {
                account: addr(s),
                policy: AccountPolicy {
                    plugins: vec![allowlist],
                    ..AccountPolicy::default()
                },
            };
            let gas = body.policy_gas().expect("gas");
            chain.tx(s, gas, body)
        })
        .collect();
    setup(&mut chain, attach);

    let runtime = chain.runtime_with_threads(1);
    warm(&mut chain, &plain, 0xa1, 21_000);
    warm(&mut chain, &policied, 0xb2, 21_000);
    warm(&mut chain, &plugged, 0xc3, PLUGIN_TX_GAS);
    let plain_block = transfers(&mut chain, &plain, 0xa1, 21_000);
    let policy_block = transfers(&mut chain, &policied, 0xb2, 21_000);
    if let Ok(focus) = std::env::var("KEEL_BENCH_FOCUS") {
        // For a profiler: the policy block alone, many times (`plain`: the plain block, to
        // set a profile beside).
        let block = match focus.as_str() {
            "plain" => &plain_block,
            _ => &policy_block,
        };
        for _ in 0..2_000 {
            chain.execute_on(&runtime, block);
        }
        return;
    }
    let plugin_block = transfers(&mut chain, &plugged, 0xc3, PLUGIN_TX_GAS);
    // Jurisdiction rules on a second chain from the same genesis, its blocks taking turns
    // with this chain's plain block: once some address declares rules, every frame reads
    // the target's rules; when every recipient declares, the senders' tags are read too
    // (the plain group pays a group of funded accounts that each declared).
    let mut ruled_chain = ruled_chain(&funded, &owner, &plain, &ruled);
    let ruled_runtime = ruled_chain.runtime_with_threads(1);
    let elsewhere_block = transfers(&mut ruled_chain, &plain, 0xa1, 21_000);
    let txs = payments(&mut ruled_chain, &plain, |i| addr(&ruled[i]), 21_000);
    let targets_block = measured_block(&mut ruled_chain, &plain, txs);
    let [(t_plain, gas_plain), (t_policy, gas_policy), (t_ruled_elsewhere, _), (t_ruled_targets, _)] =
        time(&[
            (&chain, &runtime, &plain_block),
            (&chain, &runtime, &policy_block),
            (&ruled_chain, &ruled_runtime, &elsewhere_block),
            (&ruled_chain, &ruled_runtime, &targets_block),
        ])[..]
    else {
        unreachable!("four blocks")
    };
    // (Apart: between the others, its WASM made them slower.)
    let [(t_plugin, gas_plugin)] = time(&[(&chain, &runtime, &plugin_block)])[..] else {
        unreachable!("one block")
    };

    let n = f64::from(SENDERS);
    let rate = |t: Duration| n / t.as_secs_f64();
    let mgas = |t: Duration, gas: u64| gas as f64 / t.as_secs_f64() / 1e6;
    println!("\n## Policies, plugins and jurisdiction rules ({SENDERS} native transfers per block, serial execution only, median of {REPEATS})");
    println!("| senders | time | transfers/s | Mgas/s | ratio to plain transfers |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| no policy (baseline) | {t_plain:.2?} | {:.0} | {:.1} | 1.000 |",
        rate(t_plain),
        mgas(t_plain, gas_plain)
    );
    println!(
        "| policy: {POLICY_TARGETS} targets, value and fee caps per epoch | {t_policy:.2?} | {:.0} | {:.1} | {:.3} |",
        rate(t_policy),
        mgas(t_policy, gas_policy),
        t_plain.as_secs_f64() / t_policy.as_secs_f64()
    );
    println!(
        "| policy attaching the allow-list plugin (WASM) | {t_plugin:.2?} | {:.0} | {:.1} | {:.3} |",
        rate(t_plugin),
        mgas(t_plugin, gas_plugin),
        t_plain.as_secs_f64() / t_plugin.as_secs_f64()
    );
    println!(
        "| no policy, some address declares jurisdiction rules | {t_ruled_elsewhere:.2?} | {:.0} | | {:.3} |",
        rate(t_ruled_elsewhere),
        t_plain.as_secs_f64() / t_ruled_elsewhere.as_secs_f64()
    );
    println!(
        "| no policy, every recipient declares jurisdiction rules | {t_ruled_targets:.2?} | {:.0} | | {:.3} |",
        rate(t_ruled_targets),
        t_plain.as_secs_f64() / t_ruled_targets.as_secs_f64()
    );
    let per_tx = |t: Duration| t.as_secs_f64() / n;
    println!(
        "\nOne plugin check costs {:.1} µs against {:.1} µs for one plain transfer: {:.2}× a transfer ({} gas of plugin per transaction).",
        (per_tx(t_plugin) - per_tx(t_plain)) * 1e6,
        per_tx(t_plain) * 1e6,
        (per_tx(t_plugin) - per_tx(t_plain)) / per_tx(t_plain),
        (gas_plugin - gas_plain) / u64::from(SENDERS)
    );
}
