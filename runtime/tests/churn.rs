//! Churn: a steady agent workload (every agent pays a fresh counterparty each block, so new
//! accounts are created all the time and go idle) over 22 epochs, with the pruner keeping
//! two epochs of history. Expiry on keeps the live entries flat; expiry off lets them grow.
//! The pruner must delete history at least 5× faster than the chain produces it. Disk size
//! is printed for expiry on (with and without this node's archive copy) and off: stubs grow with
//! expired entries, so it is reported, not asserted flat.
//!
//! The numbers are printed (BENCHMARKS.md quotes them): `cargo test --profile ci --test churn
//! -- --nocapture`.

mod common;

use common::{key, Chain};
use keel_types::{Address, SecretKey, TxBody, TxStatus, U256};
use std::time::{Duration, Instant};

const AGENTS: u8 = 32;
const BLOCKS_PER_EPOCH: u64 = 4;
const EPOCHS: u64 = 22;
const RETAIN_HEIGHTS: u64 = 2 * BLOCKS_PER_EPOCH;
const EXPIRY_EPOCHS: u64 = 2;

#[derive(Debug, Clone, Copy)]
struct Sample {
    epoch: u64,
    active: u64,
    expired: u64,
    disk_bytes: u64,
}

struct Run {
    samples: Vec<Sample>,
    execute: Duration,
    prune: Duration,
    pruned_bytes: u64,
}

fn churn(expiry_epochs: u64, keep_archive: bool) -> Run {
    let agents: Vec<SecretKey> = (1..=AGENTS).map(key).collect();
    let refs: Vec<&SecretKey> = agents.iter().collect();
    let mut chain = if keep_archive {
        Chain::new(&refs)
    } else {
        Chain::without_archive(&refs)
    };
    chain.set_expiry_epochs(expiry_epochs);
    let (mut execute, mut prune, mut pruned_bytes) = (Duration::ZERO, Duration::ZERO, 0u64);
    let mut samples = Vec::new();
    let mut fresh = 0u64;
    for epoch in 1..=EPOCHS {
        chain.epoch = epoch;
        for _ in 0..BLOCKS_PER_EPOCH {
            let txs = agents
                .iter()
                .map(|agent| {
                    fresh += 1;
                    let mut to = [0u8; 20];
                    to[..8].copy_from_slice(&fresh.to_be_bytes());
                    to[8] = 0xc0;
                    chain.tx(
                        agent,
                        21_000,
                        TxBody::Transfer {
                            to: Address(to),
                            amount: U256::from(1u64),
                        },
                    )
                })
                .collect();
            let started = Instant::now();
            let (output, _) = chain.block(txs);
            execute += started.elapsed();
            assert!(output
                .receipts
                .iter()
                .all(|r| r.status == TxStatus::Success));
            let started = Instant::now();
            let target = chain.height.saturating_sub(RETAIN_HEIGHTS);
            loop {
                let step = chain.store.prune_step(target, 64, &[]).expect("prune");
                pruned_bytes += step.deleted_bytes;
                if step.heights == 0 {
                    break;
                }
            }
            prune += started.elapsed();
        }
        chain.store.compact().expect("compact");
        let counts = chain.store.expiry_counts().expect("counts");
        samples.push(Sample {
            epoch,
            active: counts.active,
            expired: counts.expired,
            disk_bytes: chain.store.disk_size_bytes().expect("size"),
        });
    }
    // Retained history is intact: the oldest retained root still verifies.
    let oldest = chain.store.oldest_retained().expect("oldest");
    assert_eq!(oldest, chain.height - RETAIN_HEIGHTS);
    chain
        .store
        .verify_root(oldest)
        .expect("oldest retained root");
    chain.store.verify_root(chain.height).expect("latest root");
    Run {
        samples,
        execute,
        prune,
        pruned_bytes,
    }
}

fn at(run: &Run, epoch: u64) -> Sample {
    run.samples[(epoch - 1) as usize]
}

#[test]
fn expiry_keeps_state_flat_and_the_pruner_outpaces_the_chain() {
    let on = churn(EXPIRY_EPOCHS, true);
    let validator = churn(EXPIRY_EPOCHS, false);
    let off = churn(0, true);
    println!(
        "epoch | active on | expired on | disk on, archive (KiB) | disk on, no archive (KiB) \
         | active off | disk off (KiB)"
    );
    for ((a, v), b) in on.samples.iter().zip(&validator.samples).zip(&off.samples) {
        assert_eq!((a.active, a.expired), (v.active, v.expired));
        println!(
            "{:>5} | {:>9} | {:>10} | {:>22} | {:>25} | {:>10} | {:>14}",
            a.epoch,
            a.active,
            a.expired,
            a.disk_bytes / 1024,
            v.disk_bytes / 1024,
            b.active,
            b.disk_bytes / 1024
        );
    }
    let ratio = |run: &Run, f: fn(&Sample) -> u64| f(&at(run, 20)) as f64 / f(&at(run, 5)) as f64;
    let active_on = ratio(&on, |s| s.active);
    let active_off = ratio(&off, |s| s.active);
    let disk_on = ratio(&on, |s| s.disk_bytes);
    let disk_validator = ratio(&validator, |s| s.disk_bytes);
    let disk_off = ratio(&off, |s| s.disk_bytes);
    // Bytes per second: what the chain produced for the pruner (everything it eventually
    // deleted, over the time spent executing and committing) against how fast it deleted.
    let produced_rate = on.pruned_bytes as f64 / on.execute.as_secs_f64();
    let pruned_rate = on.pruned_bytes as f64 / on.prune.as_secs_f64();
    println!(
        "active entries epoch 20 / epoch 5: expiry on {active_on:.3}, off {active_off:.3}; \
         disk: on {disk_on:.3} (without the archive {disk_validator:.3}), off {disk_off:.3}; pruner {:.0} KiB/s vs chain {:.0} KiB/s = {:.1}x",
        pruned_rate / 1024.0,
        produced_rate / 1024.0,
        pruned_rate / produced_rate
    );
    assert!(
        active_on <= 1.1,
        "expiry on: active entries grew {active_on:.3}x"
    );
    assert!(
        active_off >= 2.0,
        "expiry off: active entries must grow, {active_off:.3}x"
    );
    // On-disk size is reported, not asserted: stubs and this node's own archive copy grow
    // with every entry that expires (docs/expiry.md, "Why stubs"); the flat-disk
    // bound does not hold for a create-heavy workload yet.
    assert!(
        pruned_rate >= 5.0 * produced_rate,
        "pruner {pruned_rate:.0} B/s is not 5x the production rate {produced_rate:.0} B/s"
    );
}
