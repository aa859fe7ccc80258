//! Mempool admission rate (decode, checks, batch signature verification, state reads,
//! queue insertion) against raw ed25519 batch verification of the same signatures, in the
//! same run.
//!
//! Run: `scripts/bench` (or `cargo bench --profile ci -p keel-node --bench mempool`).

// Floats only format the measured rates; nothing here reaches state.
#![allow(clippy::float_arithmetic)]

#[path = "../../runtime/tests/common/mod.rs"]
mod common;

use common::{addr, key, Chain, CHAIN_ID};
use keel_node::{Mempool, MempoolConfig};
use keel_types::{Canonical, SecretKey, Transaction, TxBody, U256};
use std::time::Instant;

const SENDERS: u8 = 200;
const PER_SENDER: u64 = 50;
const BATCH: usize = 500;
/// Rounds of the first table, each running every path once.
const ROUNDS: usize = 7;

/// `PER_SENDER` encoded transfers of 1 to `to` from each of `keys`, nonces from
/// `first_nonce`, in nonce-major order.
fn transfers(keys: &[SecretKey], first_nonce: u64, to: keel_types::Address) -> Vec<Vec<u8>> {
    let mut raw = Vec::new();
    for nonce in first_nonce..first_nonce + PER_SENDER {
        for k in keys {
            let tx = Transaction {
                chain_id: CHAIN_ID,
                sender: k.public_key().into(),
                nonce,
                gas_limit: 21_000,
                gas_price: 1,
                body: TxBody::Transfer {
                    to,
                    amount: U256::from(1),
                },
            }
            .sign(k);
            raw.push(tx.encode());
        }
    }
    raw
}

fn main() {
    let keys: Vec<SecretKey> = (0..SENDERS).map(|i| key(i.wrapping_add(1))).collect();
    let chain = Chain::new(&keys.iter().collect::<Vec<_>>());
    let view = chain.store.latest_view();
    let raw = transfers(&keys, 0, addr(&key(250)));
    let n = raw.len();

    // Baseline: raw batch verification of the same (message, key, signature) triples.
    let decoded: Vec<keel_types::SignedTransaction> = raw
        .iter()
        .map(|b| keel_types::SignedTransaction::decode(b).expect("decode"))
        .collect();
    let hashes: Vec<[u8; 32]> = decoded.iter().map(|t| t.hash().0).collect();
    let items: Vec<_> = decoded
        .iter()
        .zip(&hashes)
        .map(|(t, h)| {
            let (key, sig) = t.ed25519().expect("agent transaction");
            (h.as_slice(), key, sig)
        })
        .collect();
    // The library keel's rule runs on (ed25519-zebra, ZIP-215), called directly with an OS
    // RNG: the baseline. Then ed25519-dalek's batch (the library before issue 22's switch).
    let zebra = || {
        let start = Instant::now();
        for chunk in items.chunks(BATCH) {
            let mut verifier = ed25519_zebra::batch::Verifier::new();
            for (m, k, s) in chunk {
                verifier.queue((
                    ed25519_zebra::VerificationKeyBytes::from(k.0),
                    ed25519_zebra::Signature::from_bytes(&s.0),
                    m,
                ));
            }
            verifier.verify(rand::rngs::OsRng).expect("valid");
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let dalek = || {
        let start = Instant::now();
        for chunk in items.chunks(BATCH) {
            let messages: Vec<&[u8]> = chunk.iter().map(|(m, _, _)| *m).collect();
            let sigs: Vec<ed25519_dalek::Signature> = chunk
                .iter()
                .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
                .collect();
            let keys: Vec<ed25519_dalek::VerifyingKey> = chunk
                .iter()
                .map(|(_, k, _)| ed25519_dalek::VerifyingKey::from_bytes(&k.0).expect("key"))
                .collect();
            ed25519_dalek::verify_batch(&messages, &sigs, &keys).expect("valid");
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let admit = |verify_threads: usize| {
        let mut pool = Mempool::new(
            MempoolConfig {
                max_txs: n,
                max_per_sender: PER_SENDER as usize,
                verify_threads,
                ..MempoolConfig::default()
            },
            CHAIN_ID,
            1,
        );
        let start = Instant::now();
        for chunk in raw.chunks(BATCH) {
            for result in pool.admit_raw(&view, chunk) {
                result.expect("admitted");
            }
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        assert_eq!(pool.len(), n);
        rate
    };
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    // The paths take turns, round after round, and each keeps its median: this machine's
    // speed moves by a third from one minute to the next, and one pass each (as this bench
    // did until 2026-12-07) put that drift into the ratio.
    let mut rates: [Vec<f64>; 4] = Default::default();
    for _ in 0..ROUNDS {
        rates[0].push(zebra());
        rates[1].push(dalek());
        rates[2].push(admit(1));
        rates[3].push(admit(threads));
    }
    let [raw_rate, dalek_rate, keel_rate, keel_threaded_rate] = rates.map(|mut r| {
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    });

    println!("\n## Mempool admission ({n} transfers from {SENDERS} senders, batches of {BATCH}, median of {ROUNDS} rounds taking turns)");
    println!("| path | tx/s | ratio to raw batch verification |");
    println!("|---|---:|---:|");
    println!("| raw ed25519 batch verification, ed25519-zebra (ZIP-215; baseline) | {raw_rate:.0} | 1.000 |");
    println!("| raw ed25519 batch verification, ed25519-dalek (cofactorless; the rule before issue 22) | {dalek_rate:.0} | {:.3} |", dalek_rate / raw_rate);
    println!("| keel mempool admission (decode, checks, signatures, state, queues) | {keel_rate:.0} | {:.3} |", keel_rate / raw_rate);
    println!("| keel mempool admission, {threads} verify threads (the node's setting) | {keel_threaded_rate:.0} | {:.3} |", keel_threaded_rate / raw_rate);
    policed_admission(threads);
}

/// Rounds of the policy admission figure, each admitting both groups once.
const POLICY_ROUNDS: usize = 9;

/// Issue 20's admission figure: transfers from senders whose policy lists 16 targets and caps
/// value and fees per epoch ÷ the same transfers from senders without a policy, same run.
fn policed_admission(threads: usize) {
    use keel_types::policy::{AccountPolicy, TargetRule};
    let plain: Vec<SecretKey> = (0..SENDERS).map(|i| key(i.wrapping_add(1))).collect();
    let policed: Vec<SecretKey> = (0..SENDERS)
        .map(|i| {
            let mut seed = [0xa7; 32];
            seed[0] = i;
            seed[31] = 0x3c; // never all one byte: not a `key(n)`
            SecretKey::from_seed(seed)
        })
        .collect();
    let payee = addr(&key(250));
    let mut chain = Chain::new(&plain.iter().chain(&policed).collect::<Vec<_>>());
    let changes: Vec<_> = policed
        .iter()
        .map(|k| {
            let mut targets: Vec<TargetRule> = (1..16u8)
                .map(|t| TargetRule {
                    to: keel_types::Address([t; 20]),
                    selectors: None,
                })
                .collect();
            targets.push(TargetRule {
                to: payee,
                selectors: None,
            });
            let cap = Some(U256::from(10u64).pow(U256::from(24u64)));
            let body = TxBody::SetPolicy {
                account: addr(k),
                policy: AccountPolicy {
                    targets: Some(targets),
                    max_value_per_epoch: cap,
                    max_fee_per_epoch: cap,
                    ..AccountPolicy::default()
                },
            };
            let gas = body.policy_gas().expect("gas");
            chain.tx(k, gas, body)
        })
        .collect();
    for chunk in changes.chunks(100) {
        let (out, _) = chain.block(chunk.to_vec());
        assert!(out
            .receipts
            .iter()
            .all(|r| r.status == keel_types::TxStatus::Success));
    }
    let view = chain.store.latest_view();
    let admit = |raw: &[Vec<u8>]| {
        let mut pool = Mempool::new(
            MempoolConfig {
                max_txs: raw.len(),
                max_per_sender: PER_SENDER as usize,
                verify_threads: threads,
                ..MempoolConfig::default()
            },
            CHAIN_ID,
            1,
        )
        .with_epoch_length(1_000_000);
        let start = Instant::now();
        for chunk in raw.chunks(BATCH) {
            for result in pool.admit_raw(&view, chunk) {
                result.expect("admitted");
            }
        }
        raw.len() as f64 / start.elapsed().as_secs_f64()
    };
    let (plain_raw, policed_raw) = (transfers(&plain, 0, payee), transfers(&policed, 1, payee));
    // Rounds of one admission of each group back to back (in turn first), the ratio taken
    // within each round and its median kept: the machine's slow spells last longer than a
    // round and are larger than the difference (best of three of each gave 0.84–0.96 from
    // run to run).
    let mut plain_rate = 0f64;
    let mut policed_rate = 0f64;
    let mut ratios = Vec::with_capacity(POLICY_ROUNDS);
    for round in 0..POLICY_ROUNDS {
        let (plain, policed) = if round % 2 == 0 {
            let plain = admit(&plain_raw);
            (plain, admit(&policed_raw))
        } else {
            let policed = admit(&policed_raw);
            (admit(&plain_raw), policed)
        };
        plain_rate = plain_rate.max(plain);
        policed_rate = policed_rate.max(policed);
        ratios.push(policed / plain);
    }
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    let n = plain_raw.len();
    println!("\n## Mempool admission with account policies ({n} transfers from {SENDERS} senders, {threads} verify threads, {POLICY_ROUNDS} rounds: best rate, median ratio within a round)");
    println!("| senders | tx/s | ratio to senders without a policy |");
    println!("|---|---:|---:|");
    println!("| no policy (baseline) | {plain_rate:.0} | 1.000 |");
    println!(
        "| policy: 16 targets, value and fee caps per epoch | {policed_rate:.0} | {ratio:.3} |"
    );
}
