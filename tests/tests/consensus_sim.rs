//! Deterministic cluster simulation of the consensus engine. Every run checks: no two honest
//! validators finalize different blocks at a height, each honest chain is delivered in order
//! (so honest chains are prefixes of one another), no honest key equivocates (even across
//! crashes), and every honest validator finalizes new blocks after the network heals.
//!
//! `KEEL_SIM_SEEDS=100000` runs a long campaign; `KEEL_SIM_SEED=n` replays one seed.

use keel_tests::sim::{Fault, Report, Scenario, Sim};
use rand::{Rng, SeedableRng};

/// A random scenario for a seed: n ∈ {4, 7, 10}, up to f Byzantine validators of random
/// kinds, random delay, loss, duplication, a partition that heals, and honest crashes.
fn scenario(seed: u64) -> Scenario {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = [4, 4, 4, 4, 7, 7, 10][rng.gen_range(0..7)];
    let f = (n - 1) / 3;
    let mut s = Scenario::new(n, seed);
    let byzantine = rng.gen_range(0..=f);
    let kinds = [
        Fault::Silent,
        Fault::EquivocatingLeader,
        Fault::DoubleVoter,
        Fault::Twins,
    ];
    for _ in 0..byzantine {
        let i = rng.gen_range(0..n);
        s.faults[i] = kinds[rng.gen_range(0..kinds.len())];
    }
    let max_delay = rng.gen_range(5..80);
    s.delay_ms = (rng.gen_range(1..=max_delay), max_delay);
    s.loss = if rng.gen_bool(0.5) {
        rng.gen_range(0.0..0.2)
    } else {
        0.0
    };
    s.duplicate = rng.gen_range(0.0..0.1);
    s.partition_until_ms = if rng.gen_bool(0.4) {
        rng.gen_range(300..2_000)
    } else {
        0
    };
    s.faults_until_ms = 2_000;
    s.crash_per_action = if rng.gen_bool(0.4) { 0.002 } else { 0.0 };
    s.duration_ms = 6_000;
    if rng.gen_bool(0.3) {
        s.epoch_length = rng.gen_range(5..60);
        s.rotate_keys = rng.gen_bool(0.5);
    }
    s
}

fn check(report: &Report, s: &Scenario) -> Result<(), String> {
    if let Some(v) = report.violations.first() {
        return Err(format!("{v} ({} violations)", report.violations.len()));
    }
    for (node, chain) in &report.chains {
        let before = report.heights_at_heal.get(node).copied().unwrap_or(0);
        if chain.len() <= before {
            return Err(format!("LIVENESS: validator {node} finalized nothing after the heal (height {before}); scenario {s:?}"));
        }
    }
    Ok(())
}

fn run_seeds(range: std::ops::Range<u64>) {
    let mut failures = Vec::new();
    for seed in range {
        let s = scenario(seed);
        let report = Sim::new(s.clone()).run();
        if let Err(e) = check(&report, &s) {
            failures.push(format!("seed {seed}: {e}\n  replay: KEEL_SIM_SEED={seed} cargo test --profile ci -p keel-tests --test consensus_sim replay -- --nocapture"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing seeds:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn seed_count() -> u64 {
    std::env::var("KEEL_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

// The campaign is split in four so the test harness runs the parts on both cores.
#[test]
fn random_seeds_part_0() {
    let n = seed_count();
    run_seeds(0..n / 4);
}
#[test]
fn random_seeds_part_1() {
    let n = seed_count();
    run_seeds(n / 4..n / 2);
}
#[test]
fn random_seeds_part_2() {
    let n = seed_count();
    run_seeds(n / 2..3 * n / 4);
}
#[test]
fn random_seeds_part_3() {
    let n = seed_count();
    run_seeds(3 * n / 4..n);
}

/// Replays one seed (set KEEL_SIM_SEED) with its full report.
#[test]
fn replay() {
    let Some(seed) = std::env::var("KEEL_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    else {
        return;
    };
    let s = scenario(seed);
    eprintln!("scenario: {s:?}");
    let report = Sim::new(s.clone()).run();
    eprintln!(
        "final views: {:?}, crashes {}",
        report.final_views, report.crashes
    );
    for line in &report.final_states {
        eprintln!("  {line}");
    }
    eprintln!(
        "violations: {:#?}\nheights at heal: {:?}\nfinal heights: {:?}",
        report.violations,
        report.heights_at_heal,
        report
            .chains
            .iter()
            .map(|(k, v)| (*k, v.len()))
            .collect::<Vec<_>>()
    );
    check(&report, &s).expect("seed passes");
}

/// Same seed, same run: the simulator (and so the engine) is deterministic.
#[test]
fn runs_replay_exactly() {
    for seed in [3, 17, 99] {
        let a = Sim::new(scenario(seed)).run();
        let b = Sim::new(scenario(seed)).run();
        assert_eq!(a.chains, b.chains, "seed {seed}");
        assert_eq!(a.signatures_verified, b.signatures_verified);
    }
}

/// Crash-point test: crash validator 0 just before each of its first actions in turn —
/// before or after each vote-log write, before each send — then restart it from its vote
/// log. No restart may produce an equivocation, and the cluster stays safe and live.
#[test]
fn crash_at_every_point_of_the_vote_path() {
    let points: u64 = std::env::var("KEEL_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut failures = Vec::new();
    for point in 0..points {
        let mut s = Scenario::new(4, 1_000 + point);
        s.crash_at_action = Some((0, point));
        s.delay_ms = (5, 25);
        s.duration_ms = 3_000;
        let report = Sim::new(s.clone()).run();
        if let Err(e) = check(&report, &s) {
            failures.push(format!("crash point {point}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each Byzantine kind alone, at n = 4 (f = 1), on a clean network.
#[test]
fn each_byzantine_kind_is_tolerated() {
    for fault in [
        Fault::Silent,
        Fault::EquivocatingLeader,
        Fault::DoubleVoter,
        Fault::Twins,
        Fault::ForgedSync,
    ] {
        for seed in 0..10 {
            let mut s = Scenario::new(4, seed);
            s.faults[(seed % 4) as usize] = fault;
            s.duration_ms = 8_000;
            let report = Sim::new(s.clone()).run();
            check(&report, &s).unwrap_or_else(|e| panic!("{fault:?} seed {seed}: {e}"));
            if fault == Fault::ForgedSync {
                assert!(
                    report.forged_sync_responses > 0,
                    "seed {seed}: nothing forged"
                );
            }
            let min = report.chains.values().map(Vec::len).min().unwrap_or(0);
            assert!(
                min >= 20,
                "{fault:?} seed {seed}: only {min} blocks finalized"
            );
        }
    }
}

/// Catch-up: a validator offline for hundreds of blocks rejoins and catches up, faster than
/// the chain grows.
#[test]
fn offline_validator_catches_up() {
    let mut s = Scenario::new(4, 42);
    s.delay_ms = (5, 15);
    s.offline = Some((3, 1_000, 15_000));
    s.duration_ms = 20_000;
    let report = Sim::new(s.clone()).run();
    check(&report, &s).expect("safe and live");
    let lagger = report.chains[&3].len();
    let best = report.chains.values().map(Vec::len).max().unwrap_or(0);
    let missed = report.heights_at_heal[&0] - report.heights_at_heal[&3];
    eprintln!("catch-up: missed {missed} blocks while offline; at the end {lagger} vs {best}");
    assert!(
        missed >= 200,
        "the validator should miss hundreds of blocks, missed {missed}"
    );
    assert!(
        best - lagger <= 5,
        "validator 3 did not catch up: {lagger} vs {best}"
    );
}

/// Finality latency in message delays (fixed delay δ, so time / δ counts delays) and
/// signature verifications per finalized block, printed for BENCHMARKS.md. Asserts the good
/// case finalizes in at most 3 message delays at every non-leader.
#[test]
#[allow(clippy::float_arithmetic)] // measurement output only
fn measure_finality_latency() {
    const DELTA: u64 = 10;
    let measure = |name: &str, s: Scenario, from_ms: u64| -> (f64, f64) {
        let mut sim = Sim::new(s.clone());
        let report;
        (sim, report) = {
            let r = sim.run_keep();
            (r.0, r.1)
        };
        let mut latencies = Vec::new();
        for (&(node, height), &at) in &sim.finalized_at {
            if at < from_ms || s.faults[node] != Fault::Honest {
                continue;
            }
            let hash = report.chains[&node][height as usize - 1];
            if let Some(&proposed) = sim.proposed_at.get(&hash) {
                if proposed >= from_ms {
                    latencies.push(at - proposed);
                }
            }
        }
        latencies.sort_unstable();
        let median = latencies[latencies.len() / 2] as f64 / DELTA as f64;
        let mean = latencies.iter().sum::<u64>() as f64 / latencies.len() as f64 / DELTA as f64;
        let honest = s.faults.iter().filter(|f| **f == Fault::Honest).count() as f64;
        let per_block = report.signatures_verified as f64 / report.finalized_blocks as f64 / honest;
        let blocks_per_s = report.finalized_blocks as f64 * 1_000.0 / s.duration_ms as f64;
        let first_after = sim
            .finalized_at
            .iter()
            .filter(|((node, _), at)| **at >= from_ms && s.faults[*node] == Fault::Honest)
            .map(|(_, at)| *at)
            .min()
            .map_or(f64::NAN, |at| (at - from_ms) as f64 / DELTA as f64);
        println!(
            "| {name} | n={} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
            s.n, median, mean, blocks_per_s, first_after, per_block
        );
        (median, per_block)
    };
    println!("| case | validators | median finality (δ) | mean finality (δ) | blocks/s at δ = {DELTA} ms | first finalization after start/heal (δ) | signature verifications per block per validator |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for n in [4, 7, 10] {
        let mut s = Scenario::new(n, 1);
        s.delay_ms = (DELTA, DELTA);
        s.duration_ms = 5_000;
        let (median, _) = measure("good case", s, 0);
        assert!(
            median <= 3.0,
            "good-case finality took {median} message delays at n={n}"
        );
    }
    let mut s = Scenario::new(4, 2);
    s.delay_ms = (DELTA, DELTA);
    s.faults[1] = Fault::Silent;
    s.duration_ms = 10_000;
    measure("one crashed leader (every 4th view)", s, 0);
    let mut s = Scenario::new(4, 3);
    s.delay_ms = (DELTA, DELTA);
    s.partition_until_ms = 2_000;
    s.partition_side = Some(vec![0, 1]);
    s.duration_ms = 6_000;
    measure("2/2 partition heals at 2 s", s, 2_000);
}

/// Epochs: every `epoch_length` blocks the set changes (the last validator's key rotates);
/// certificates are checked against their epoch's set, the chain crosses many boundaries,
/// and a validator offline across several epochs catches up through them.
#[test]
fn validator_set_changes_at_epoch_boundaries() {
    for seed in 0..6 {
        let mut s = Scenario::new(4, 500 + seed);
        s.epoch_length = 20;
        s.rotate_keys = true;
        s.delay_ms = (5, 25);
        s.loss = 0.05;
        s.faults_until_ms = 2_000;
        s.offline = Some((3, 1_000, 5_000));
        s.duration_ms = 10_000;
        let report = Sim::new(s.clone()).run();
        check(&report, &s).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let min_epoch = report.epochs.values().min().copied().unwrap_or(0);
        assert!(
            min_epoch >= 4,
            "seed {seed}: slowest validator only reached epoch {min_epoch}: {:?}",
            report.epochs
        );
        let lens: Vec<usize> = report.chains.values().map(Vec::len).collect();
        assert!(
            lens.iter().max().unwrap_or(&0) - lens.iter().min().unwrap_or(&0) <= 5,
            "seed {seed}: {lens:?}"
        );
    }
}

/// Sync across a long stretch finalized only through a descendant: finalize votes are
/// dropped for the first seconds, so one late certificate finalizes hundreds of blocks at
/// once; a validator offline through it must sync them (blocks, then headers up to the
/// certified block).
#[test]
fn sync_across_blocks_without_their_own_certificates() {
    let mut s = Scenario::new(4, 77);
    s.delay_ms = (5, 15);
    s.drop_finalize_until_ms = 6_000;
    s.offline = Some((3, 500, 8_000));
    s.duration_ms = 12_000;
    let report = Sim::new(s.clone()).run();
    check(&report, &s).expect("safe and live");
    let lens: Vec<usize> = report.chains.values().map(Vec::len).collect();
    let best = *lens.iter().max().unwrap_or(&0);
    assert!(
        best > 300,
        "chain too short to exercise the headers path: {lens:?}"
    );
    assert!(
        report.sync_headers_served > 0,
        "the headers path was not exercised"
    );
    eprintln!(
        "sync across uncertified stretch: {} headers served, chains {lens:?}",
        report.sync_headers_served
    );
    assert!(
        best - lens.iter().min().unwrap_or(&0) <= 5,
        "validator 3 did not catch up: {lens:?}"
    );
}
