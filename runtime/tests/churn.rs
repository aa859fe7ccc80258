//! Churn: a steady agent workload (every agent pays a fresh counterparty each block, so new
//! accounts are created all the time and go idle) over 22 epochs, with the pruner keeping
//! two epochs of history. Expiry on keeps the live entries flat; expiry off lets them grow.
//! The pruner must delete history at least 5× faster than the chain produces it. With expiry
//! on and stubs folded out of the tree, a validator's disk is flat (epoch 20 ÷ epoch 5 ≤ 1.1);
//! it is also printed with this node's archive copy (an archive node keeps every expired
//! entry, by design), without folding (stubs grow disk), and with expiry off.
//!
//! The numbers are printed (BENCHMARKS.md quotes them): `cargo test --profile ci --test runtime churn::
//! -- --nocapture`.

use crate::common;

use common::{key, Chain};
use keel_types::{Address, SecretKey, TxBody, TxStatus, U256};
use std::time::{Duration, Instant};

const AGENTS: u8 = 32;
const BLOCKS_PER_EPOCH: u64 = 4;
const EPOCHS: u64 = 22;

/// One configuration of the churn run.
#[derive(Debug, Clone, Copy)]
struct Config {
    expiry_epochs: u64,
    fold_epochs: u64,
    retain_heights: u64,
    keep_archive: bool,
}

/// The shortest pipeline: entries expire after one idle epoch, stubs fold one epoch later,
/// the pruner keeps one epoch. Every stage (live, stub, folded, pruned history) is in its
/// steady shape by epoch 5, where the ratio starts.
const SHORT: Config = Config {
    expiry_epochs: 1,
    fold_epochs: 1,
    retain_heights: BLOCKS_PER_EPOCH,
    keep_archive: false,
};
/// Longer windows: two idle epochs, stubs fold after two epochs (the genesis default), two
/// epochs of history. The same flat disk, reached later (epoch 9: the ratio starts there).
const LONG: Config = Config {
    expiry_epochs: 2,
    fold_epochs: 2,
    retain_heights: 2 * BLOCKS_PER_EPOCH,
    keep_archive: false,
};
const LONG_STEADY_EPOCH: u64 = 9;

#[derive(Debug, Clone, Copy)]
struct Sample {
    epoch: u64,
    active: u64,
    expired: u64,
    folded: u64,
    disk_bytes: u64,
}

struct Run {
    samples: Vec<Sample>,
    execute: Duration,
    prune: Duration,
    pruned_bytes: u64,
}

fn churn(config: Config) -> Run {
    let agents: Vec<SecretKey> = (1..=AGENTS).map(key).collect();
    let refs: Vec<&SecretKey> = agents.iter().collect();
    let mut chain = if config.keep_archive {
        Chain::new(&refs)
    } else {
        Chain::without_archive(&refs)
    };
    chain.set_expiry_epochs(config.expiry_epochs);
    chain.set_fold_epochs(config.fold_epochs);
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
            for r in &output.receipts {
                assert_eq!(r.status, TxStatus::Success, "epoch {epoch}: {:?}", r.error);
            }
            let started = Instant::now();
            let target = chain.height.saturating_sub(config.retain_heights);
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
        let view = chain.store.view(chain.height).expect("view");
        let pages = keel_state::fold::all_pages(&view).expect("fold pages");
        samples.push(Sample {
            epoch,
            active: counts.active,
            expired: counts.expired,
            folded: pages.iter().map(|(_, p)| p.key_count).sum(),
            disk_bytes: chain.store.disk_size_bytes().expect("size"),
        });
    }
    // Retained history is intact: the oldest retained root still verifies.
    let oldest = chain.store.oldest_retained().expect("oldest");
    assert_eq!(oldest, chain.height - config.retain_heights);
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

// A ratio for the report and the bound, never state.
#[allow(clippy::float_arithmetic)]
fn disk_ratio(run: &Run, from_epoch: u64) -> f64 {
    at(run, 20).disk_bytes as f64 / at(run, from_epoch).disk_bytes as f64
}

#[test]
fn expiry_keeps_state_flat_and_the_pruner_outpaces_the_chain() {
    let validator = churn(SHORT);
    let archive = churn(Config {
        keep_archive: true,
        ..SHORT
    });
    let unfolded = churn(Config {
        fold_epochs: 0,
        ..SHORT
    });
    let off = churn(Config {
        expiry_epochs: 0,
        ..SHORT
    });
    let long = churn(LONG);
    println!(
        "epoch | active on | stubs on | folded on | disk on (KiB) | disk on, archive (KiB) \
         | disk on, no folding (KiB) | active off | disk off (KiB) | disk on, long windows (KiB)"
    );
    for ((((v, a), u), b), l) in validator
        .samples
        .iter()
        .zip(&archive.samples)
        .zip(&unfolded.samples)
        .zip(&off.samples)
        .zip(&long.samples)
    {
        assert_eq!(
            (a.active, a.expired, a.folded),
            (v.active, v.expired, v.folded)
        );
        assert_eq!(u.active, v.active);
        assert_eq!(
            u.expired,
            v.expired + v.folded,
            "folding keeps every expired entry"
        );
        println!(
            "{:>5} | {:>9} | {:>8} | {:>9} | {:>13} | {:>22} | {:>25} | {:>10} | {:>13} | {:>26}",
            v.epoch,
            v.active,
            v.expired,
            v.folded,
            v.disk_bytes / 1024,
            a.disk_bytes / 1024,
            u.disk_bytes / 1024,
            b.active,
            b.disk_bytes / 1024,
            l.disk_bytes / 1024
        );
    }
    let active = |run: &Run| at(run, 20).active as f64 / at(run, 5).active as f64;
    let (active_on, active_off) = (active(&validator), active(&off));
    let disk_on = disk_ratio(&validator, 5);
    let disk_long = disk_ratio(&long, LONG_STEADY_EPOCH);
    // Bytes per second: what the chain produced for the pruner (everything it eventually
    // deleted, over the time spent executing and committing) against how fast it deleted.
    let produced_rate = validator.pruned_bytes as f64 / validator.execute.as_secs_f64();
    let pruned_rate = validator.pruned_bytes as f64 / validator.prune.as_secs_f64();
    println!(
        "epoch 20 / epoch 5: active entries: expiry on {active_on:.3}, off {active_off:.3}; \
         disk: on {disk_on:.3} (archive node {:.3}, no folding {:.3}), off {:.3}; \
         long windows, epoch 20 / epoch {LONG_STEADY_EPOCH}: {disk_long:.3} (20 / 5: {:.3}); \
         pruner {:.0} KiB/s vs chain {:.0} KiB/s = {:.1}x",
        disk_ratio(&archive, 5),
        disk_ratio(&unfolded, 5),
        disk_ratio(&off, 5),
        disk_ratio(&long, 5),
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
    assert!(
        disk_on <= 1.1,
        "expiry on: a validator's disk grew {disk_on:.3}x from epoch 5 to 20"
    );
    assert!(
        disk_long <= 1.1,
        "long windows: disk grew {disk_long:.3}x from epoch {LONG_STEADY_EPOCH} to 20"
    );
    assert!(
        disk_ratio(&unfolded, 5) >= 1.5 && disk_ratio(&off, 5) >= 1.5,
        "without folding or without expiry disk must grow"
    );
    assert!(
        pruned_rate >= 5.0 * produced_rate,
        "pruner {pruned_rate:.0} B/s is not 5x the production rate {produced_rate:.0} B/s"
    );
}
