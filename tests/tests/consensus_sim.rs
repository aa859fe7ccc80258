//! Deterministic cluster simulation of the consensus engine. Every run checks: no two honest
//! validators finalize different blocks at a height, each honest chain is delivered in order
//! (so honest chains are prefixes of one another), no honest key equivocates (even across
//! crashes), and every honest validator finalizes new blocks after the network heals.
//!
//! `KEEL_SIM_SEEDS=100000` runs a long campaign; `KEEL_SIM_SEED=n` replays one seed.

use keel_tests::sim::{Fault, Report, Scenario, Sim, MAX_RESTART_MS};

#[path = "sim/stack.rs"]
mod stack;
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
    // Weighted sets, with new powers every epoch when epochs are short.
    s.weighted = rng.gen_bool(0.5);
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
            failures.push(format!("seed {seed}: {e}\n  replay: KEEL_SIM_SEED={seed} cargo test --profile ci --workspace --test integration consensus_sim::replay -- --nocapture"));
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

/// Voting power, not head count: half the validators Byzantine (more than f by count) but
/// holding just under a third of the power, in sets whose powers change every epoch. A
/// count-based quorum would let them certify alone; by power they cannot, and the honest
/// minority by count, a supermajority by power, keeps finalizing.
#[test]
fn byzantine_half_by_count_under_a_third_of_power_cannot_break_safety() {
    for seed in 0..8 {
        let mut s = byzantine_scenario(9_100 + seed);
        let n = s.n;
        s.faults = (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    Fault::Byzantine
                } else {
                    Fault::Honest
                }
            })
            .collect();
        s.crash_per_action = 0.0;
        s.weighted = true;
        s.epoch_length = 10;
        let set = keel_tests::sim::set_for(&s, 0);
        let faulty: u128 = (0..n)
            .filter(|i| i % 2 == 0)
            .map(|i| u128::from(set.powers[i]))
            .sum();
        assert!(3 * faulty < set.total_power(), "the rule's premise");
        let report = Sim::new(s.clone()).run();
        check_byzantine(&report, &s).unwrap_or_else(|e| panic!("seed {}: {e}", 9_100 + seed));
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

// ---- The Byzantine campaign (issue 18): `Fault::Byzantine` validators that run no engine and
// send arbitrary well-formed messages built from what they saw, with their own keys.

/// Heights every honest validator must finalize between the heal and the end of the run.
const LIVENESS_HEIGHTS: usize = 2;
/// Simulated time after the heal in which they must do it (the run ends then).
const LIVENESS_WINDOW_MS: u64 = 3_000;
/// When partitions, loss and crashes stop in the Byzantine campaign.
const BYZANTINE_HEAL_MS: u64 = 1_000;
/// First view timeout in the Byzantine campaign (ms).
const BYZANTINE_TIMEOUT_MS: u64 = 200;

/// A Byzantine scenario for a seed: n ∈ {4, 7, 10} with f `Fault::Byzantine` validators (at
/// n = 10 one of them may be an older scripted kind instead), random delay, loss and
/// duplication, often a partition, sometimes honest crashes and epochs with rotating keys;
/// everything but the adversaries stops at `BYZANTINE_HEAL_MS`.
fn byzantine_scenario(seed: u64) -> Scenario {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xb7a2_7111);
    let n = [4, 4, 4, 4, 7, 7, 10][rng.gen_range(0..7)];
    let f = (n - 1) / 3;
    let mut s = Scenario::new(n, seed);
    let mut placed = 0;
    while placed < f {
        let i = rng.gen_range(0..n);
        if s.faults[i] == Fault::Honest {
            s.faults[i] = Fault::Byzantine;
            placed += 1;
        }
    }
    if n == 10 && rng.gen_bool(0.5) {
        if let Some(i) = s.faults.iter().position(|f| *f == Fault::Byzantine) {
            s.faults[i] = [
                Fault::EquivocatingLeader,
                Fault::DoubleVoter,
                Fault::ForgedSync,
            ][rng.gen_range(0..3)];
        }
    }
    // Delays of at least 10 ms: the runs stay short in views (CI time) and each view still
    // has many message delays for the adversary to act in.
    let max_delay = rng.gen_range(20..80);
    s.delay_ms = (rng.gen_range(10..=max_delay), max_delay);
    s.loss = if rng.gen_bool(0.3) {
        rng.gen_range(0.0..0.15)
    } else {
        0.0
    };
    s.duplicate = rng.gen_range(0.0..0.1);
    s.partition_until_ms = if rng.gen_bool(0.5) {
        rng.gen_range(300..BYZANTINE_HEAL_MS)
    } else {
        0
    };
    s.faults_until_ms = BYZANTINE_HEAL_MS;
    s.crash_per_action = if rng.gen_bool(0.3) { 0.002 } else { 0.0 };
    // With f Byzantine validators a crashed honest one leaves less than a quorum up: the
    // window for liveness opens when the last crashed process is surely back.
    let restarts = if s.crash_per_action > 0.0 {
        MAX_RESTART_MS
    } else {
        0
    };
    s.duration_ms = BYZANTINE_HEAL_MS + restarts + LIVENESS_WINDOW_MS;
    // A shorter first timeout than the default 300 ms (still ≥ 2.5 of the longest delays;
    // backoff doubles it up to 4×): views a Byzantine leader stalls cost less, so a short
    // window shows liveness and the campaign fits CI.
    s.timeout_base_ms = BYZANTINE_TIMEOUT_MS;
    if rng.gen_bool(0.3) {
        s.epoch_length = rng.gen_range(5..60);
        s.rotate_keys = rng.gen_bool(0.5);
    }
    // Weighted sets, with new powers every epoch when epochs are short.
    s.weighted = rng.gen_bool(0.5);
    s
}

/// The campaign's assertions on one run: the simulator's (safety: no two honest validators
/// finalize different blocks at a height, chains delivered in order, no honest equivocation;
/// every finalized block under a finalization signed by > 2/3 of its epoch, verified by the
/// audit against the epoch's keys; honest engines' retained state within its bounds at every
/// sample), plus liveness: `LIVENESS_HEIGHTS` new heights at every honest validator within
/// `LIVENESS_WINDOW_MS` of the heal, and the adversary and the audit did work.
fn check_byzantine(report: &Report, s: &Scenario) -> Result<(), String> {
    if let Some(v) = report.violations.first() {
        // Each kind of violation counted (the first is printed in full).
        let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
        for v in &report.violations {
            *kinds.entry(v.split(':').next().unwrap_or("")).or_default() += 1;
        }
        return Err(format!("{v} (violations: {kinds:?})"));
    }
    for (node, chain) in &report.chains {
        let before = report.heights_at_heal.get(node).copied().unwrap_or(0);
        if chain.len() < before + LIVENESS_HEIGHTS {
            return Err(format!(
                "LIVENESS: validator {node} finalized {} heights in the {LIVENESS_WINDOW_MS} ms after the heal (from height {before}); scenario {s:?}",
                chain.len() - before.min(chain.len())
            ));
        }
    }
    if s.faults.contains(&Fault::Byzantine) && report.byzantine_messages == 0 {
        return Err("the adversary sent nothing".into());
    }
    if report.certified_blocks_checked == 0 {
        return Err("the certificate audit checked no block".into());
    }
    Ok(())
}

fn run_byzantine_seeds(range: std::ops::Range<u64>) {
    let mut failures = Vec::new();
    let mut sent = 0;
    // Wall time per cluster size (printed, for tuning the campaign's CI budget).
    let mut cost: std::collections::BTreeMap<usize, (u64, u128)> = Default::default();
    for seed in range.clone() {
        let s = byzantine_scenario(seed);
        let started = std::time::Instant::now();
        // A panic in an engine is a finding too: report it with its seed, keep going.
        let run =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Sim::new(s.clone()).run()));
        let report = match run {
            Ok(report) => report,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_default();
                failures.push(format!("seed {seed}: PANIC: {what}"));
                continue;
            }
        };
        let entry = cost.entry(s.n).or_default();
        entry.0 += 1;
        entry.1 += started.elapsed().as_millis();
        sent += report.byzantine_messages;
        if let Err(e) = check_byzantine(&report, &s) {
            failures.push(format!("seed {seed}: {e}\n  replay: KEEL_SIM_SEED={seed} cargo test --profile ci --locked --workspace --test integration consensus_sim::byzantine_replay -- --nocapture"));
        }
    }
    eprintln!(
        "byzantine seeds {range:?}: {sent} adversarial messages sent; (runs, ms) by n: {cost:?}"
    );
    assert!(
        failures.is_empty(),
        "{} failing seeds:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// Split in four so the harness runs the parts on both cores.
#[test]
fn byzantine_seeds_part_0() {
    let n = seed_count();
    run_byzantine_seeds(0..n / 4);
}
#[test]
fn byzantine_seeds_part_1() {
    let n = seed_count();
    run_byzantine_seeds(n / 4..n / 2);
}
#[test]
fn byzantine_seeds_part_2() {
    let n = seed_count();
    run_byzantine_seeds(n / 2..3 * n / 4);
}
#[test]
fn byzantine_seeds_part_3() {
    let n = seed_count();
    run_byzantine_seeds(3 * n / 4..n);
}

/// Replays one Byzantine seed (set KEEL_SIM_SEED) with its full report.
#[test]
fn byzantine_replay() {
    let Some(seed) = std::env::var("KEEL_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    else {
        return;
    };
    let s = byzantine_scenario(seed);
    eprintln!("scenario: {s:?}");
    let report = Sim::new(s.clone()).run();
    for line in &report.final_states {
        eprintln!("  {line}");
    }
    eprintln!(
        "violations: {:#?}\nheights at heal: {:?}\nfinal heights: {:?}\nadversarial messages: {}, peak retained: {:?}",
        report.violations,
        report.heights_at_heal,
        report
            .chains
            .iter()
            .map(|(k, v)| (*k, v.len()))
            .collect::<Vec<_>>(),
        report.byzantine_messages,
        report.peak_retained
    );
    check_byzantine(&report, &s).expect("seed passes");
}

/// Bounded memory: the same runs with the adversaries stepping 1× and 16× as often. They send
/// many times more messages, yet what honest engines hold stays under the bounds (which
/// depend on n and the view window only) and the per-view peaks do not grow with the flood.
#[test]
fn byzantine_memory_does_not_grow_with_the_flood() {
    use keel_tests::sim::{memory_bound_broken, MAX_BLOCKS_PER_VIEW, MAX_KEPT_PROPOSALS_PER_VIEW};
    for seed in 0..4 {
        let mut runs = Vec::new();
        for rate in [1, 16] {
            let mut s = Scenario::new(4, 9_000 + seed);
            s.faults[(seed % 4) as usize] = Fault::Byzantine;
            s.byzantine_rate = rate;
            s.duration_ms = 4_000;
            let report = Sim::new(s.clone()).run();
            check_byzantine(&report, &s).unwrap_or_else(|e| panic!("rate {rate} seed {seed}: {e}"));
            let p = report.peak_retained;
            assert_eq!(memory_bound_broken(&p, s.n), None, "rate {rate}: {p:?}");
            assert!(p.max_blocks_per_view <= MAX_BLOCKS_PER_VIEW);
            eprintln!(
                "seed {seed} rate {rate}: {} adversarial messages, peak retained {p:?}",
                report.byzantine_messages
            );
            runs.push((report.byzantine_messages, p));
        }
        let ((calm_sent, calm), (flood_sent, flood)) = (runs[0], runs[1]);
        assert!(
            flood_sent >= 8 * calm_sent,
            "the flood sent {flood_sent} vs {calm_sent}"
        );
        assert!(flood.max_proposals_per_view <= MAX_KEPT_PROPOSALS_PER_VIEW);
        assert!(flood.max_votes_per_view <= 3 * 4);
        // Totals follow the view window, not the message count: what the flood's engines
        // held is under the bound for the window they had, which names no message count.
        let window = flood.unfinalized_views.max(calm.unfinalized_views) as usize + 65;
        assert!(
            flood.votes <= window * 3 * 4 && flood.blocks <= window * MAX_BLOCKS_PER_VIEW + 1,
            "retained state beyond the window's bound: {flood:?}"
        );
    }
}

/// Found by the campaign's memory check (random seed 19, a crash and restart): an engine
/// restarted from its vote log kept a view state for every view it ever voted in this epoch,
/// below its finalized tip too (81 views with the tip one view back), until its first view
/// change. Now it keeps none below the tip's view.
#[test]
fn a_restart_keeps_no_view_below_the_finalized_tip() {
    use keel_consensus::{Config, Engine, ValidatorSet, VoteRecord};
    let s = Scenario::new(4, 0);
    let keys = (0..4)
        .map(|i| keel_tests::sim::key_for(&s, 0, i))
        .collect::<Vec<_>>();
    let cfg = Config {
        chain_id: keel_tests::sim::CHAIN_ID,
        validators: ValidatorSet::equal(0, keys.iter().map(|k| k.public_key()).collect()),
        me: Some((0, keys[0].clone())),
        finalized_tip: (500, keel_types::Hash([1; 32]), 1_000),
        timeout_base_ms: 300,
        timeout_max_ms: 1_200,
        skip_after_views: 4,
        max_views_ahead: 64,
        epoch_length: u64::MAX,
        epoch_first_height: 1,
    };
    let log: Vec<VoteRecord> = (1..1_000)
        .map(|view| VoteRecord::Nullified { epoch: 0, view })
        .collect();
    let engine = Engine::new(cfg, &log);
    let held = engine.retained();
    assert_eq!(held.views, 0, "views kept below the tip: {held:?}");
    assert_eq!(engine.view(), 1_001);
}
