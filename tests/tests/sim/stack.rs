//! The full-stack campaign: consensus + application + a real RocksDB store per validator
//! (keel_tests::stack), transactions in both environments, expiry and folding on. Every seed
//! must leave all running validators with identical blocks, receipts and state roots at
//! every height they all committed, none halted, and the chain live.
//!
//! A quarter of the seeds run one Byzantine validator (keel_tests::stack's byzantine.rs):
//! its lies about blocks, bodies, votes and sync must leave the honest validators agreeing,
//! live, and never voting for an invalid block.
//!
//! Half the seeds that crash a validator restart it with an empty store restored by snapshot
//! sync (the node's own client, served by the live validators' stores): what it holds from the
//! restored height on, and what it committed before, must agree with the others. In half the
//! Byzantine seeds the validator restored is honest and the Byzantine one lies to it (forged
//! epoch changes, chunks, tip, or silence): the restore drops the liar and only it.
//!
//! `KEEL_STACK_SEEDS=n` sets the campaign's size (default 1,000); `KEEL_STACK_SEED=n`
//! replays one seed and prints its report (`KEEL_STACK_DURATION_MS` runs it longer).

use keel_node::snapshot::SNAPSHOT_REQUEST_TIMEOUT_MS;
use keel_tests::stack::{
    run, token_calls, Kind, Lie, SnapshotLie, StackReport, StackScenario, ALL_LIES,
    ALL_SNAPSHOT_LIES,
};
use keel_types::Env;
use std::collections::{BTreeMap, BTreeSet};

/// Heights every running validator must have committed by the end of a seed's run.
const MIN_COMMON_HEIGHTS: u64 = 5;
/// Epochs a running validator may lag the highest at the end (a restarted one catches up
/// by sync within the run).
const MAX_LAG_EPOCHS: u64 = 2;

fn check(report: &StackReport, s: &StackScenario) -> Result<(), String> {
    if let Some(v) = report.violations.first() {
        return Err(format!("SAFETY: {v}; scenario {s:?}"));
    }
    if let Some(m) = report.mismatches.first() {
        return Err(format!(
            "DIVERGED: {m} ({} differences); scenario {s:?}",
            report.mismatches.len()
        ));
    }
    if let Some(h) = report.halted.first() {
        return Err(format!("HALTED: {h}; scenario {s:?}"));
    }
    // A snapshot restore drops only a peer that failed a proof: never an honest one. Every
    // answer decodes (a lie changes only what still decodes), and the restored validator
    // commits past the height it restored.
    for restore in &report.snapshot_restores {
        if restore.undecodable > 0 {
            return Err(format!(
                "CODEC: {} snapshot answers to validator {} did not decode; scenario {s:?}",
                restore.undecodable, restore.validator
            ));
        }
        if let Some(at) = restore.height {
            if report.heights[restore.validator] <= at {
                return Err(format!(
                    "LIVENESS: validator {} restored height {at} and committed nothing after; scenario {s:?}",
                    restore.validator
                ));
            }
        }
        // Every epoch change is verified: one with a flipped bit is refused, its server
        // dropped.
        if let (Some(b), Some(SnapshotLie::EpochChain)) = (s.byzantine, s.snapshot_lie) {
            if restore.lies > 0 && !restore.dropped.iter().any(|p| usize::from(*p) == b) {
                return Err(format!(
                    "FORGERY: validator {} took {} forged epoch-change answers from {b} without dropping it; scenario {s:?}",
                    restore.validator, restore.lies
                ));
            }
        }
        if let Some(honest) = restore
            .dropped
            .iter()
            .find(|p| s.byzantine != Some(usize::from(**p)))
        {
            return Err(format!(
                "SAFETY: the snapshot restore of validator {} dropped honest peer {honest}; scenario {s:?}",
                restore.validator
            ));
        }
    }
    let top = report.heights.iter().copied().max().unwrap_or(0);
    if report.compared < MIN_COMMON_HEIGHTS
        || report.compared + MAX_LAG_EPOCHS * s.epoch_length < top
    {
        return Err(format!(
            "LIVENESS: heights {:?} (a running validator below {MIN_COMMON_HEIGHTS} or more \
             than {MAX_LAG_EPOCHS} epochs behind); scenario {s:?}",
            report.heights
        ));
    }
    if top <= report.height_before_window {
        return Err(format!(
            "LIVENESS: nothing committed in the last {} ms (height {top}); scenario {s:?}",
            keel_tests::stack::liveness_window_ms(s)
        ));
    }
    if report.late_successes == 0 {
        return Err(format!(
            "WORKLOAD: no transaction succeeded in the last third of the run; scenario {s:?}"
        ));
    }
    Ok(())
}

fn seed_count() -> u64 {
    std::env::var("KEEL_STACK_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

/// Runs a quarter of the campaign; returns what the seeds executed, summed.
fn run_part(part: u64) {
    let count = seed_count();
    let seeds = (part * count / 4)..((part + 1) * count / 4);
    let mut totals: BTreeMap<Kind, u64> = BTreeMap::new();
    let mut lies: BTreeMap<Lie, u64> = BTreeMap::new();
    let (mut expired, mut folded, mut byzantine, mut jailed) = (0u64, 0u64, 0u64, 0u64);
    let mut restored = 0u64;
    // Restores a Byzantine server lied to, by lie; and how many of those dropped it.
    let mut lied_to: BTreeMap<String, u64> = BTreeMap::new();
    let mut liar_dropped = 0u64;
    for seed in seeds.clone() {
        let s = StackScenario::random(seed);
        let report = run(&s).unwrap_or_else(|e| panic!("seed {seed}: harness: {e:#}"));
        if let Err(e) = check(&report, &s) {
            panic!("seed {seed}: {e}\nreplay: KEEL_STACK_SEED={seed} cargo test --profile ci --workspace --test integration consensus_sim::stack::replay -- --nocapture");
        }
        for (kind, n) in &report.succeeded {
            *totals.entry(*kind).or_default() += n;
        }
        expired += u64::from(report.expired_entries > 0);
        folded += u64::from(report.fold_pages > 0);
        byzantine += u64::from(s.byzantine.is_some());
        restored += report
            .snapshot_restores
            .iter()
            .filter(|r| r.height.is_some())
            .count() as u64;
        for restore in report.snapshot_restores.iter().filter(|r| r.lies > 0) {
            let lie = s.snapshot_lie.map_or("none".into(), |l| format!("{l:?}"));
            *lied_to.entry(lie).or_default() += 1;
            liar_dropped += u64::from(
                s.byzantine
                    .is_some_and(|b| restore.dropped.iter().any(|p| usize::from(*p) == b)),
            );
        }
        // A Byzantine validator jailed on the conflicting votes it sent.
        jailed +=
            u64::from(s.byzantine.is_some_and(|b| {
                report.jailed == [keel_tests::stack::validator_key(b).public_key()]
            }));
        for (lie, n) in &report.lies {
            *lies.entry(*lie).or_default() += n;
        }
    }
    if seeds.is_empty() {
        return;
    }
    // What the campaign exercised: both environments' contracts, native transfers, and
    // expiry and folding in some seeds (a harness that stopped sending would pass otherwise).
    eprintln!("part {part}: seeds {seeds:?}: {totals:?}, expiring seeds {expired}, folding seeds {folded}, Byzantine seeds {byzantine} ({jailed} jailed), snapshot restores {restored}, lied to {lied_to:?} ({liar_dropped} dropped the liar): {lies:?}");
    for kind in [
        Kind::Transfer,
        Kind::Deploy(Env::Evm),
        Kind::Deploy(Env::Wasm),
        Kind::TokenCall(Env::Evm),
        Kind::TokenCall(Env::Wasm),
    ] {
        assert!(
            totals.get(&kind).copied().unwrap_or(0) > 0,
            "no {kind:?} executed in {seeds:?}"
        );
    }
    // A third of the seeds reconfigure: stakes move, and a newcomer registers, joins the set
    // and leaves it (a stretch of fewer than 40 seeds may hold none).
    if seeds.end - seeds.start >= 40 {
        for kind in [Kind::Stake, Kind::Membership] {
            assert!(
                totals.get(&kind).copied().unwrap_or(0) > 0,
                "no {kind:?} executed in {seeds:?}"
            );
        }
    }
    // A Byzantine validator is jailed in about one seed in eleven (94 of 1,000: Byzantine,
    // reconfiguring, and double-signed in time): 150 seeds hold one but for a chance under
    // one in a million.
    if seeds.end - seeds.start >= 150 {
        assert!(jailed > 0, "no Byzantine validator jailed in {seeds:?}");
    }
    // A third of the seeds crash a validator, half of those restart it by snapshot; in
    // half the Byzantine seeds an honest validator restores by snapshot and the Byzantine
    // one lies to it (about 30 seeds in 250), and a liar that is asked and lies provably
    // is dropped (5 to 15 seeds in 250 in the committed campaign).
    if seeds.end - seeds.start >= 150 {
        assert!(restored > 0, "no snapshot restore in {seeds:?}");
        assert!(
            liar_dropped > 0,
            "no lying snapshot server dropped in {seeds:?}: {lied_to:?}"
        );
    }
    assert!(expired > 0, "no seed in {seeds:?} expired an entry");
    assert!(folded > 0, "no seed in {seeds:?} made a fold page");
    // Every lie was told: the proposal lies and the double vote in Byzantine seeds, the
    // sync lies to the honest validator a Byzantine seed restores by snapshot (it then
    // block-syncs from the boundary, from the liar too).
    for lie in ALL_LIES {
        // The sync lies come from about one seed in eight: 150 seeds hold one but for a
        // chance under one in a million.
        let sync = matches!(lie, Lie::ForgedSyncBody | Lie::ForgedBlockResponse);
        if !sync || seeds.end - seeds.start >= 150 {
            assert!(
                lies.get(&lie).copied().unwrap_or(0) > 0,
                "no {lie:?} told in {seeds:?}"
            );
        }
    }
}

#[test]
fn full_stack_seeds_part_0() {
    run_part(0);
}

#[test]
fn full_stack_seeds_part_1() {
    run_part(1);
}

#[test]
fn full_stack_seeds_part_2() {
    run_part(2);
}

#[test]
fn full_stack_seeds_part_3() {
    run_part(3);
}

#[test]
fn replay() {
    let Some(seed) = std::env::var("KEEL_STACK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    else {
        return;
    };
    let mut s = StackScenario::random(seed);
    if let Some(ms) = std::env::var("KEEL_STACK_DURATION_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        s.duration_ms = ms;
    }
    if std::env::var("KEEL_STACK_SKEW").is_ok_and(|v| v == "0") {
        s.skew_ms = vec![0; s.n];
    }
    eprintln!("{s:?}");
    let report = run(&s).expect("harness");
    eprintln!("{report:#?}");
    check(&report, &s).expect("seed passes");
}

/// The same seed replays the same run: every validator commits the same blocks with the
/// same roots, and the same transactions succeed; a snapshot restore restores the same
/// height from the same peers.
#[test]
fn a_seed_replays_exactly() {
    let restored = restarted_by_snapshot(calm(9), 2_000, 5_000);
    for s in [StackScenario::random(7), StackScenario::random(8), restored] {
        let seed = s.seed;
        let a = run(&s).expect("harness");
        let b = run(&s).expect("harness");
        assert!(a.chains.iter().any(|c| c.len() >= 5), "seed {seed}: {a:#?}");
        assert_eq!(a.chains, b.chains, "seed {seed}");
        assert_eq!(a.succeeded, b.succeeded, "seed {seed}");
        assert_eq!(a.snapshot_restores, b.snapshot_restores, "seed {seed}");
        assert!(
            !s.snapshot_restart || a.snapshot_restores.iter().any(|r| r.height.is_some()),
            "seed {seed}: no snapshot restore: {:?}",
            a.snapshot_restores
        );
        check(&a, &s).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(token_calls(&a, Env::Wasm) > 0 && token_calls(&a, Env::Evm) > 0);
    }
}

/// A quiet network, so a fault test sees only its own fault.
fn calm(seed: u64) -> StackScenario {
    let mut s = StackScenario::random(seed);
    s.crash = None;
    s.silent = None;
    s.loss = 0.0;
    s.skew_ms = vec![0; s.n];
    s.byzantine = None;
    s.stakes = None;
    s.reconfig = false;
    s.jail = None;
    s.join = None;
    s.wipe_on_restart = false;
    s.snapshot_restart = false;
    s
}

/// A calm run of 8 s in epochs of 8 blocks with genesis stakes `stakes` (tokens) and
/// operators bonding and unbonding, in which validator 3 is reported from `jail_at_ms`.
fn jailing(seed: u64, stakes: [u64; 4], jail_at_ms: u64) -> StackScenario {
    let token = keel_types::U256::from(10u128.pow(18));
    let mut s = calm(seed);
    s.stakes = Some(
        stakes
            .iter()
            .map(|t| token * keel_types::U256::from(*t))
            .collect(),
    );
    s.reconfig = true;
    s.jail = Some((3, jail_at_ms));
    s.duration_ms = 8_000;
    s.epoch_length = 8;
    s.min_block_interval_ms = s.block_time_ms;
    s
}

/// Runs a [`jailing`] scenario, checks it, and that validator 3 (whose key it returns)
/// and only it was jailed.
fn run_jailing(s: &StackScenario) -> (StackReport, keel_types::PublicKey) {
    let seed = s.seed;
    let r = run(s).expect("harness");
    check(&r, s).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let jailed = keel_tests::stack::validator_key(3).public_key();
    assert_eq!(r.jailed, vec![jailed], "seed {seed}: {r:#?}");
    (r, jailed)
}

/// The validator set follows the registry: operators bond and unbond every few blocks, so
/// each epoch's powers differ from genesis'; a silent validator is reported for two
/// conflicting votes its key signed, jailed, and dropped from the set — and all the while
/// every validator agrees on every block, receipt and root, and the chain is live.
#[test]
fn stake_changes_and_a_jailed_validator_reconfigure_the_set() {
    for seed in 60..63 {
        let stakes = [1_000u64, 700, 1_300, 600];
        let mut s = jailing(seed, stakes, 400);
        s.silent = Some(3);
        s.join = Some((200, 150));
        let (r, jailed) = run_jailing(&s);
        let set = r.set.clone().expect("a set in state");
        assert!(
            set.epoch >= 3,
            "seed {seed}: only reached epoch {}",
            set.epoch
        );
        assert!(
            set.members.iter().all(|m| m.key != jailed),
            "seed {seed}: the jailed validator is still in {set:?}"
        );
        let genesis_powers: Vec<u64> = stakes[..3].iter().map(|t| t * 1_000_000_000).collect();
        assert_ne!(
            set.powers(),
            genesis_powers,
            "seed {seed}: no stake change took effect"
        );
        assert!(
            r.succeeded.get(&Kind::Stake).copied().unwrap_or(0) > 0,
            "seed {seed}"
        );
        assert_eq!(
            r.succeeded.get(&Kind::Report).copied(),
            Some(1),
            "seed {seed}"
        );
        // The newcomer joined a set at a boundary and left it again; the chain's sets
        // were certified by the members of each (epoch changes verified below).
        let newcomer = keel_tests::stack::newcomer_key().public_key();
        let sets_with = |c: &keel_app::epoch_proof::EpochChange| {
            next_set(c).is_some_and(|set| set.members.iter().any(|m| m.key == newcomer))
        };
        let joined = r.epoch_changes.iter().position(sets_with);
        assert!(
            joined.is_some(),
            "seed {seed}: the newcomer never joined a set: {:?}, {} changes, {set:?}",
            r.succeeded,
            r.epoch_changes.len()
        );
        assert!(
            set.members.iter().all(|m| m.key != newcomer),
            "seed {seed}: the newcomer never left: {set:?}"
        );
        assert_eq!(
            r.succeeded.get(&Kind::Membership).copied(),
            Some(2),
            "seed {seed}: a registration and a leave"
        );
        forged_epoch_changes_are_refused(&r, &s, &set);
    }
}

/// A Byzantine validator that double-signs is jailed on the two conflicting votes it sent
/// (caught in its traffic, not signed by the harness), dropped from the set at a boundary,
/// and from then on its messages — still lies — move nothing: every honest validator agrees
/// on every block, receipt and root, and the chain stays live without it.
#[test]
fn a_byzantine_double_signer_is_jailed_on_its_own_votes() {
    for seed in 70..72 {
        let mut s = jailing(seed, [1_000, 900, 1_100, 600], 300);
        s.byzantine = Some(3);
        let (r, jailed) = run_jailing(&s);
        assert!(
            r.lies.get(&Lie::ConflictingVote).copied().unwrap_or(0) > 0,
            "seed {seed}: {:?}",
            r.lies
        );
        assert_eq!(
            r.succeeded.get(&Kind::Report).copied(),
            Some(1),
            "seed {seed}"
        );
        let set = r.set.clone().expect("a set in state");
        assert!(
            set.epoch >= 3,
            "seed {seed}: only reached epoch {}",
            set.epoch
        );
        assert!(
            set.members.iter().all(|m| m.key != jailed),
            "seed {seed}: the jailed validator is still in {set:?}"
        );
        // The chain went on after the set dropped it: blocks of later epochs, certified by
        // the three left (the epoch changes verify).
        let dropped = r
            .epoch_changes
            .iter()
            .position(|c| {
                next_set(c).is_some_and(|set| set.members.iter().all(|m| m.key != jailed))
            })
            .unwrap_or_else(|| panic!("seed {seed}: no epoch change dropped it"));
        assert!(
            r.epoch_changes.len() > dropped + 1,
            "seed {seed}: no epoch ended without it"
        );
        forged_epoch_changes_are_refused(&r, &s, &set);
    }
}

/// The set an epoch change commits to for the next epoch, decoded from its proven entry.
fn next_set(c: &keel_app::epoch_proof::EpochChange) -> Option<keel_types::validator::EpochSet> {
    let raw = c.next_set.value.as_deref()?;
    match keel_state::Entry::decode(raw).ok()? {
        keel_state::Entry::Live { value, .. } => {
            <keel_types::validator::EpochSet as keel_types::Canonical>::decode(&value).ok()
        }
        keel_state::Entry::Expired { .. } => None,
    }
}

/// The recorded chain of epoch changes reaches the set in state; every forgery of it is
/// refused with its typed error: a certificate with a signature changed, a next set that
/// is not the certified one, a header swapped in, a checkpoint that is not on the chain.
fn forged_epoch_changes_are_refused(
    r: &keel_tests::stack::StackReport,
    s: &keel_tests::stack::StackScenario,
    set: &keel_types::validator::EpochSet,
) {
    use keel_app::epoch_proof::{verify_from_checkpoint, verify_from_set, EpochProofError};
    let chain_id = keel_tests::stack::CHAIN_ID;
    let genesis = r.genesis_set.clone().expect("genesis set");
    let changes = &r.epoch_changes;
    assert!(changes.len() >= 3, "{} epoch changes", changes.len());
    let verify = |c: &[keel_app::epoch_proof::EpochChange]| {
        verify_from_set(chain_id, s.epoch_length, genesis.clone(), c)
    };
    let trusted = verify(changes).expect("the honest chain verifies");
    // The chain ends at the set the top validator runs (or the one after, announced).
    assert!(trusted.set.epoch >= set.epoch, "{trusted:?} vs {set:?}");
    if trusted.set.epoch == set.epoch {
        assert_eq!(&trusted.set, set);
    }
    let last = changes.len() - 1;
    let mut forged = changes.clone();
    forged[last].certificate.signatures[0].0[7] ^= 1;
    assert!(matches!(
        verify(&forged),
        Err(EpochProofError::Certificate { .. })
    ));
    let mut forged = changes.clone();
    forged[1].next_set.value = Some(forged[0].next_set.value.clone().expect("value"));
    assert!(matches!(
        verify(&forged),
        Err(EpochProofError::SetProof { .. })
    ));
    let mut forged = changes.clone();
    forged[1].last.parent_state_root = keel_types::Hash([9; 32]);
    assert!(matches!(
        verify(&forged),
        Err(EpochProofError::WrongCertificate { .. } | EpochProofError::BrokenChain { .. })
    ));
    let mut forged = changes.clone();
    forged.remove(1);
    assert!(matches!(
        verify(&forged),
        Err(EpochProofError::WrongEpoch { .. })
    ));
    // A checkpoint: the first change's block is trusted without a certificate, the rest
    // chain on; a (height, hash) not on the chain is refused.
    let at = (changes[1].last.height, changes[1].last.hash());
    let from_checkpoint =
        verify_from_checkpoint(chain_id, s.epoch_length, at, &changes[1..]).expect("checkpoint");
    assert_eq!(from_checkpoint, trusted);
    let off_chain = (at.0, keel_types::Hash([1; 32]));
    assert!(matches!(
        verify_from_checkpoint(chain_id, s.epoch_length, off_chain, &changes[1..]),
        Err(EpochProofError::CheckpointNotOnChain { .. })
    ));
}

#[test]
fn a_peer_outside_the_set_is_answered_a_burst_then_one_sync_request_per_interval() {
    use keel_app::core::{
        MIN_NON_MEMBER_SYNC_ALL_MS, MIN_NON_MEMBER_SYNC_MS, NON_MEMBER_SYNC_BURST,
        NON_MEMBER_SYNC_BURST_ALL,
    };
    use keel_tests::stack::non_member_sync_bursts;
    assert_eq!(
        MIN_NON_MEMBER_SYNC_MS, 100,
        "the harness's bursts are 100 ms apart"
    );
    let burst = NON_MEMBER_SYNC_BURST;
    assert_eq!(
        non_member_sync_bursts(1, 0, 50).expect("harness"),
        vec![[50 - burst, 49]],
        "the burst at once, then one answer per interval"
    );
    // Many outsiders at once share one allowance (found by review: each had its own).
    let refused = non_member_sync_bursts(6, 0, 50).expect("harness");
    let total = |i: usize| refused.iter().map(|r| r[i]).sum::<u64>();
    assert_eq!(
        total(0),
        6 * 50 - NON_MEMBER_SYNC_BURST_ALL,
        "the shared burst"
    );
    // 100 ms later the shared allowance has 100 / 20 = 5 answers of room.
    assert_eq!(total(1), 6 * 50 - 100 / MIN_NON_MEMBER_SYNC_ALL_MS);
    // Guests (unregistered keys) asking first share their own, smaller allowance and leave
    // the outsiders theirs (found by review: strangers could use it all up).
    let refused = non_member_sync_bursts(2, 6, 50).expect("harness");
    let (guests, outsiders) = refused.split_at(6);
    assert_eq!(guests.iter().map(|r| 50 - r[0]).sum::<u64>(), burst);
    assert_eq!(outsiders, [[50 - burst, 49], [50 - burst, 49]]);
}

/// A validator that crashes and restarts catches up by sync, from peers one of which is
/// Byzantine and answers with blocks whose bodies differ from their certified headers
/// (and requested blocks likewise): the restarted validator must take none of them, and
/// every honest validator must agree and stay live.
#[test]
fn a_byzantine_validator_lies_to_a_syncing_peer() {
    let mut told: BTreeMap<Lie, u64> = BTreeMap::new();
    for seed in 40..56 {
        let mut s = calm(seed);
        s.loss = 0.02;
        s.byzantine = Some(0);
        s.crash = Some((2, 1_200, 900));
        let r = run(&s).expect("harness");
        check(&r, &s).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for (lie, n) in &r.lies {
            *told.entry(*lie).or_default() += n;
        }
    }
    eprintln!("lies told: {told:?}");
    for lie in [Lie::ForgedSyncBody, Lie::ForgedBlockResponse] {
        assert!(
            told.get(&lie).copied().unwrap_or(0) > 0,
            "no {lie:?} told: {told:?}"
        );
    }
}

/// The whole network dies between its votes and its commits (a power cut): every validator
/// crashes right after it logs its finalize vote for a view (before sending it), so after
/// the restarts the finalization re-forms from logged votes alone, none of them may nullify
/// that view, and no one holds the block in memory. Each kept it on disk before voting
/// (app/src/voted.rs), so the chain goes on. Without that it halted for good — found by CI
/// on a one-validator devnet killed with SIGKILL, the `n = 1` case here.
#[test]
fn a_network_that_crashes_between_its_finalize_votes_and_its_commits_goes_on() {
    for (seed, n) in [(70, 4), (71, 4), (72, 1)] {
        let mut s = calm(seed);
        s.n = n;
        s.skew_ms = vec![0; n];
        s.crash_after_finalize_vote = Some((8, 300));
        let r = run(&s).expect("harness");
        check(&r, &s).unwrap_or_else(|e| panic!("seed {seed}, {n} validators: {e}"));
        // Every validator crashed, each right after its finalize vote of one same view: no
        // one sent it, no one committed the block.
        let views: BTreeSet<u64> = r.finalize_vote_crashes.iter().map(|c| c.1).collect();
        assert!(
            r.finalize_vote_crashes.len() == n && views.len() == 1,
            "seed {seed}: crashes {:?}",
            r.finalize_vote_crashes
        );
    }
}

/// A validator that dies right after it commits an epoch's last block — before the epoch's
/// change record and the next epoch's engine — rebuilds the record when it restarts: every
/// validator's epoch chain stays whole and verifies from genesis (checked in every run), and
/// it serves it. Without the repair its chain stopped at the epoch before, for good (found
/// by review).
#[test]
fn a_crash_between_an_epochs_last_commit_and_its_records_is_repaired() {
    for seed in [80, 81, 82] {
        let mut s = calm(seed);
        s.crash_in_commit = Some((1, s.epoch_length, 300));
        let r = run(&s).expect("harness");
        check(&r, &s).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(r.commit_crashes, vec![(1, s.epoch_length)], "seed {seed}");
    }
}

/// A validator whose execution diverges (a nondeterminism bug) halts rather than commit on
/// top of a root the network did not finalize; the others agree and go on.
#[test]
fn a_diverging_validator_halts_and_the_rest_agree() {
    const AT: u64 = 6;
    let mut s = calm(11);
    s.diverge = Some((2, AT));
    let r = run(&s).expect("harness");
    assert_eq!(r.halted.len(), 1, "{r:#?}");
    assert!(
        r.halted[0].starts_with("validator 2: finalized block")
            && r.halted[0].contains("commits parent state root"),
        "validator 2 did not halt on its root: {r:#?}"
    );
    assert!(r.mismatches.is_empty() && r.violations.is_empty(), "{r:#?}");
    assert_eq!(
        r.heights[2], AT,
        "the diverged validator committed past its fault, or stopped early: {r:#?}"
    );
    assert!(
        r.compared >= AT + MIN_COMMON_HEIGHTS,
        "the others stopped: {r:#?}"
    );
}

/// A vote the log could not make durable is never sent, nor anything after it: the
/// validator halts at its failed write, wherever in the run that falls, and the others go on.
#[test]
fn a_vote_whose_log_write_failed_is_never_sent() {
    for at in [0, 1, 2, 7, 30] {
        let mut s = calm(12 + at as u64);
        s.votelog_fails = Some((1, at));
        let r = run(&s).expect("harness");
        assert!(
            r.halted.iter().any(|h| h.starts_with("validator 1:")),
            "write {at}: validator 1 did not halt: {r:#?}"
        );
        assert_eq!(
            r.sent_after_votelog_failure[1], 0,
            "write {at}: messages left after the failed write"
        );
        assert!(r.mismatches.is_empty(), "write {at}: {:?}", r.mismatches);
        assert!(
            r.compared >= MIN_COMMON_HEIGHTS,
            "write {at}: the others stopped: {r:#?}"
        );
    }
}

/// A validator that lost its state but kept its vote log (an operator re-syncing, or a
/// snapshot restore to a height below its last votes) replays epochs it voted in: its log
/// binds it in each of them, not only in the epoch it restarts in.
#[test]
fn a_validator_that_lost_its_state_never_votes_against_its_log() {
    for seed in [41, 42, 43, 44] {
        let mut s = calm(seed);
        s.epoch_length = 4;
        s.crash = Some((1, 2_000, 300));
        s.wipe_on_restart = true;
        // Long enough to sync from genesis and vote again; without expiry, so the agents'
        // contracts outlive the short epochs.
        s.duration_ms = 10_000;
        s.expiry_epochs = 0;
        let r = run(&s).expect("harness");
        check(&r, &s).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// `s` with validator 1 crashing at `crash_at_ms` and restarting 300 ms later with an empty
/// store restored by snapshot sync (its vote log kept), the run lasting `duration_ms`.
fn restarted_by_snapshot(
    mut s: StackScenario,
    crash_at_ms: u64,
    duration_ms: u64,
) -> StackScenario {
    s.crash = Some((1, crash_at_ms, 300));
    s.wipe_on_restart = true;
    s.snapshot_restart = true;
    s.duration_ms = duration_ms;
    s
}

/// Issue 21: a validator that lost its state restores it by snapshot sync (the node's own
/// client, served by the live validators' stores through the wire's encoding) to the latest
/// epoch boundary, block-syncs from there and votes again; every height it holds agrees
/// with the others, its commit stream starts above the restored height.
#[test]
fn a_validator_that_lost_its_state_restores_it_by_snapshot_and_votes_again() {
    for seed in [51, 52, 53] {
        let s = restarted_by_snapshot(calm(seed), 2_000, 6_000);
        let r = run(&s).expect("harness");
        check(&r, &s).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let [restore] = r.snapshot_restores.as_slice() else {
            panic!(
                "seed {seed}: one restore expected: {:?}",
                r.snapshot_restores
            )
        };
        let at = restore
            .height
            .unwrap_or_else(|| panic!("seed {seed}: no epoch had ended by 2.3 s"));
        assert_eq!(
            (at + 1) % s.epoch_length,
            0,
            "seed {seed}: restored height {at} is not below a boundary"
        );
        assert!(restore.dropped.is_empty(), "seed {seed}: {restore:?}");
        assert!(
            r.last_signed[1] > restore.signed_before,
            "seed {seed}: validator 1 signed nothing after its restore at height {at}: {restore:?}, {:?}",
            r.last_signed
        );
    }
}

/// Issue 21: a Byzantine validator serving a restoring validator forged epoch changes,
/// chunks that fail their proofs or a tip its boundary does not commit to is dropped (and
/// only it), one that stays silent is asked no more; either way the restore finishes from
/// the honest validators and the restored validator agrees with them at every height. The
/// Byzantine validator is 0, the first peer the client asks for chunks and the tip.
#[test]
fn a_byzantine_server_cannot_spoil_a_snapshot_restore() {
    for (k, lie) in ALL_SNAPSHOT_LIES.into_iter().enumerate() {
        let seed = 61 + k as u64;
        let mut s = calm(seed);
        s.byzantine = Some(0);
        s.snapshot_lie = Some(lie);
        // Epochs of 4 blocks at a fixed 100 ms: several have ended by the crash, whatever
        // the Byzantine leader's views cost.
        s.epoch_length = 4;
        s.min_block_interval_ms = s.block_time_ms;
        let s = restarted_by_snapshot(s, 3_000, 7_000);
        let r = run(&s).expect("harness");
        check(&r, &s).unwrap_or_else(|e| panic!("{lie:?}: {e}"));
        let [restore] = r.snapshot_restores.as_slice() else {
            panic!("{lie:?}: one restore expected: {:?}", r.snapshot_restores)
        };
        assert!(restore.height.is_some(), "{lie:?}: {restore:?}");
        assert!(restore.lies > 0, "{lie:?} never told: {restore:?}");
        let expected: Vec<u16> = match lie {
            SnapshotLie::Silence | SnapshotLie::OldChain => Vec::new(),
            _ => vec![0],
        };
        assert_eq!(restore.dropped, expected, "{lie:?}: {restore:?}");
        // A silent server costs one request timeout, the sync's first request; after that
        // it rests and is asked last (it took three timeouts, 90 s, when a timeout was one
        // strike of three).
        assert!(
            restore.took_ms < SNAPSHOT_REQUEST_TIMEOUT_MS + 2_000,
            "{lie:?}: {restore:?}"
        );
    }
}

/// Issue 21: a Byzantine server that answers at once with a chain that verifies but ends
/// long ago, while the honest validators' answers are lost for the first 45 simulated
/// seconds (two request timeouts), does not set the boundary: the client asks the honest
/// ones again (peers that finished hold only a quarter of the power) and restores the same
/// height as the same run with no lie and no loss.
#[test]
fn an_old_chain_served_while_honest_answers_are_late_does_not_set_the_boundary() {
    let mut s = calm(65);
    s.byzantine = Some(0);
    s.epoch_length = 4;
    s.min_block_interval_ms = s.block_time_ms;
    let honest = restarted_by_snapshot(s, 3_000, 6_000);
    let mut lying = honest.clone();
    lying.snapshot_lie = Some(SnapshotLie::OldChain);
    lying.snapshot_honest_mute_ms = 45_000;
    let mut restored = Vec::new();
    for s in [&honest, &lying] {
        let r = run(s).expect("harness");
        check(&r, s).unwrap_or_else(|e| panic!("{:?}: {e}", s.snapshot_lie));
        let [restore] = r.snapshot_restores.as_slice() else {
            panic!("one restore expected: {:?}", r.snapshot_restores)
        };
        assert!(restore.dropped.is_empty(), "{restore:?}");
        restored.push(restore.clone());
    }
    let (at, lied) = (&restored[0], &restored[1]);
    assert!(lied.lies > 0 && lied.took_ms > 45_000, "{lied:?}");
    assert!(
        at.height.is_some_and(|h| h >= 2 * honest.epoch_length),
        "{at:?}"
    );
    assert_eq!(lied.height, at.height, "{lied:?} against {at:?}");
}

/// Issue 22, adaptive pacing: with the agents' transactions waiting, a leader proposes
/// `min_block_interval_ms` after the parent instead of a fixed block time, so the same
/// calm run commits many more blocks, all validators still agreeing.
#[test]
fn blocks_follow_load_with_adaptive_pacing() {
    for seed in [3, 4] {
        let mut fixed = calm(seed);
        fixed.min_block_interval_ms = fixed.block_time_ms;
        let mut fast = fixed.clone();
        fast.min_block_interval_ms = 20;
        let slow = run(&fixed).expect("fixed run");
        let quick = run(&fast).expect("adaptive run");
        check(&slow, &fixed).unwrap_or_else(|e| panic!("fixed: {e}"));
        check(&quick, &fast).unwrap_or_else(|e| panic!("adaptive: {e}"));
        assert!(
            top(&quick) * 2 > top(&slow) * 3,
            "seed {seed}: adaptive pacing committed {} heights, fixed {}",
            top(&quick),
            top(&slow)
        );
        // Idle (the agents send one batch at the start, then nothing): only the heartbeat,
        // one empty block per block time, exactly as fixed pacing makes.
        fixed.tx_gap_ms = (u64::MAX / 4, u64::MAX / 4);
        fast.tx_gap_ms = fixed.tx_gap_ms;
        let slow = run(&fixed).expect("fixed idle run");
        let quick = run(&fast).expect("adaptive idle run");
        for r in [&slow, &quick] {
            assert!(
                r.violations.is_empty() && r.mismatches.is_empty() && r.halted.is_empty(),
                "seed {seed}: {r:?}"
            );
        }
        assert!(
            top(&quick) <= top(&slow) + 3,
            "seed {seed}: idle, adaptive pacing committed {} heights, fixed {}",
            top(&quick),
            top(&slow)
        );
    }
}

fn top(r: &StackReport) -> u64 {
    r.heights.iter().copied().max().unwrap_or(0)
}

/// Measures (prints) the views with a running leader that still got nullified, summed over
/// calm seeds with one silent validator and fast blocks: `KEEL_STACK_MEASURE=1`.
#[test]
fn measure_nullified_live_views() {
    if std::env::var("KEEL_STACK_MEASURE").is_err() {
        return;
    }
    let (mut views, mut heights) = (0, 0);
    for seed in 0..40 {
        let mut s = calm(seed);
        s.silent = Some(3);
        s.min_block_interval_ms = 20;
        s.epoch_length = 10;
        s.delay_ms = (5, 60);
        let r = run(&s).expect("run");
        check(&r, &s).unwrap_or_else(|e| panic!("{e}"));
        views += r.nullified_live_views;
        heights += top(&r);
    }
    eprintln!("nullified views with a live leader: {views} over {heights} heights");
}
