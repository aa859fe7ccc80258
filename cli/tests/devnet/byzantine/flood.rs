//! The proposal flood: thousands of signed proposals of the harness for its own and other
//! leaders' views, in and beyond the window, then the most the admission rules let in.

use super::*;

/// Proposals the flood sends (each to every honest validator).
const FLOOD_PROPOSALS: usize = 3_000;
/// Every this many proposals one carries `FLOOD_LARGE_TXS` transactions of maximal call data.
const FLOOD_LARGE_EVERY: usize = 12;
const FLOOD_LARGE_TXS: usize = 8;
/// Heights above the tip the flood's blocks claim.
const FLOOD_HEIGHTS: u64 = 50;
/// Transactions of maximal call data in a body of the most expensive flood (about 7 MiB).
const FLOOD_HUGE_TXS: usize = 56;
/// Pause between its proposals (each goes to three validators through Noise).
const FLOOD_HUGE_PACE: Duration = Duration::from_millis(120);
/// Heights above the tip its blocks claim: far enough that finality collects none of them.
const FLOOD_FAR_HEIGHT: u64 = 100_000;
/// How long after the flood resident memory is read again (what stays is held, not
/// transient).
const FLOOD_SETTLE: Duration = Duration::from_secs(5);
/// Proposals sent between pauses (the harness's own outbound queue is bounded too).
const FLOOD_BURST: usize = 64;

#[test]
fn byzantine_proposal_flood_is_bounded_and_the_chain_goes_on() {
    let _guard = serial();
    let (cluster, harness) = devnet(26_020);
    let load = start_load(&cluster, &HONEST, 25, 13, &[0, 1, 2, 3]);
    cluster.wait_height(&HONEST, 3, PROGRESS_TIMEOUT);
    let template = harness
        .honest_proposal(0)
        .expect("an honest proposal")
        .header;
    let small = Body {
        txs: vec![harness.junk_tx(0, 1024)],
        root: Hash::ZERO,
    };
    let large = Body {
        txs: (0..FLOOD_LARGE_TXS as u64)
            .map(|n| harness.junk_tx(n, MAX_CALLDATA_BYTES))
            .collect(),
        root: Hash::ZERO,
    };
    let small = Body {
        root: tx_root(&small.txs),
        ..small
    };
    let large = Body {
        root: tx_root(&large.txs),
        ..large
    };
    let before: Vec<[u64; 4]> = HONEST
        .iter()
        .map(|&i| {
            [
                rejected(&cluster, i, "proposal"),
                refused_as(&cluster, i, "outside_window"),
                refused_as(&cluster, i, "view_full"),
                refused_as(&cluster, i, "not_leader"),
            ]
        })
        .collect();
    let started = Instant::now();
    let window = keel_app::admit::MAX_VIEWS_AHEAD;
    for n in 0..FLOOD_PROPOSALS {
        let view_now = harness.seen().view;
        // Its own views in and beyond the window, and (every fifth) other leaders' views.
        let offset = (n as u64 * 7) % (2 * window);
        let mut view = view_now + offset;
        if n % 5 != 0 {
            view += (BYZ as u64 + ROTATION - view % ROTATION) % ROTATION;
        }
        let height = template.height + 1 + n as u64 % FLOOD_HEIGHTS;
        let body = if n % FLOOD_LARGE_EVERY == 0 {
            &large
        } else {
            &small
        };
        let mut block = harness.own_block(&template, view, height, body);
        block.header.timestamp_ms = block.header.timestamp_ms.wrapping_add(n as u64);
        harness.broadcast(harness.propose(block));
        if n % FLOOD_BURST == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!(
        "flood: {FLOOD_PROPOSALS} proposals in {:?}",
        started.elapsed()
    );
    keeps_finalizing(&cluster, &HONEST);
    finish_load(&cluster, load);
    honest_nodes_unharmed(&cluster, &BTreeMap::new());
    for (k, &i) in HONEST.iter().enumerate() {
        let refused = rejected(&cluster, i, "proposal") - before[k][0];
        let outside = refused_as(&cluster, i, "outside_window") - before[k][1];
        let full = refused_as(&cluster, i, "view_full") - before[k][2];
        let not_leader = refused_as(&cluster, i, "not_leader") - before[k][3];
        eprintln!(
            "validator {i}: refused {refused} flooded proposals ({outside} outside the window, {full} over a view's count, {not_leader} not the leader's)"
        );
        // Admitted at most MAX_PROPOSALS_PER_VIEW per own view in the window; everything
        // else (outside it, other leaders' views, over the per-view count) refused. About
        // 2/5 of the flood is in its own views beyond the window and 2/5 in its own views
        // inside it (all but two per view over the count), about 3/20 in other leaders'
        // views: each rule must refuse its share (a fraction of it leaves room for messages
        // the inbound budget dropped).
        assert!(
            refused >= (FLOOD_PROPOSALS / 2) as u64,
            "validator {i} refused only {refused}: the flood did not arrive or was admitted"
        );
        for (rule, count, share) in [
            ("outside the view window", outside, FLOOD_PROPOSALS / 8),
            ("over a view's proposal count", full, FLOOD_PROPOSALS / 8),
            (
                "signed by another than the leader",
                not_leader,
                FLOOD_PROPOSALS / 32,
            ),
        ] {
            assert!(
                count >= share as u64,
                "validator {i}: only {count} refused as {rule}"
            );
        }
    }

    check_memory(&cluster);
}

/// Proposals validator i refused for one reason (`refusal` label of the proposal metric).
fn refused_as(cluster: &Cluster, i: usize, refusal: &str) -> u64 {
    metric_sum(
        &cluster.metrics_text(i),
        "keel_p2p_rejected_total",
        &format!("refusal=\"{refusal}\""),
    )
}

/// Resident memory now (VmRSS, KiB) of validator i: what it still holds after the flood.
fn rss_kib(cluster: &Cluster, i: usize) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", cluster.pid(i).expect("pid")))
        .expect("status");
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("VmRSS")
}

#[test]
fn byzantine_largest_admissible_proposal_flood_stays_within_the_memory_bound() {
    let _guard = serial();
    let (cluster, harness) = devnet(26_040);
    cluster.wait_height(&HONEST, 3, PROGRESS_TIMEOUT);
    let template = harness
        .honest_proposal(0)
        .expect("an honest proposal")
        .header;
    let window = keel_app::admit::MAX_VIEWS_AHEAD;
    // The most the admission rules let in: MAX_PROPOSALS_PER_VIEW proposals in every view
    // the harness leads within the window (and one more, refused), each with a body of
    // several MiB, at heights no finalization reaches soon (so nothing is collected while
    // they wait).
    let huge = Body {
        txs: (0..FLOOD_HUGE_TXS as u64)
            .map(|n| harness.junk_tx(1_000 + n, MAX_CALLDATA_BYTES))
            .collect(),
        root: Hash::ZERO,
    };
    let huge = Body {
        root: tx_root(&huge.txs),
        ..huge
    };
    let (refused_before, rss_before): (Vec<u64>, Vec<u64>) = HONEST
        .iter()
        .map(|&i| {
            (
                rejected(&cluster, i, "proposal"),
                cluster.peak_rss_kib(i).expect("VmHWM"),
            )
        })
        .unzip();
    let started = Instant::now();
    let views = harness.own_views((window / ROTATION) as usize);
    let mut sent = 0u64;
    for (k, &view) in views.iter().enumerate() {
        for copy in 0..=keel_consensus::MAX_PROPOSALS_PER_VIEW as u64 {
            let height = template.height + FLOOD_FAR_HEIGHT + k as u64;
            let mut block = harness.own_block(&template, view, height, &huge);
            block.header.timestamp_ms = block.header.timestamp_ms.wrapping_add(copy);
            harness.broadcast(harness.propose(block));
            sent += 1;
            std::thread::sleep(FLOOD_HUGE_PACE);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    eprintln!(
        "huge flood: {sent} proposals of {} MiB in {:?}",
        huge.txs.iter().map(|t| t.encode().len()).sum::<usize>() >> 20,
        started.elapsed()
    );
    keeps_finalizing(&cluster, &HONEST);
    for (k, &i) in HONEST.iter().enumerate() {
        let refused = rejected(&cluster, i, "proposal") - refused_before[k];
        let peak = cluster.peak_rss_kib(i).expect("VmHWM");
        eprintln!(
            "validator {i}: refused {refused} of {sent} huge proposals; peak RSS {} -> {} MiB",
            rss_before[k] / 1024,
            peak / 1024
        );
        // The extra copy per view is refused (the view is full); the others were admitted
        // (a few may be dropped on the way when the harness's queue is full).
        assert!(
            refused >= views.len() as u64 / 2,
            "validator {i}: only {refused} refused, the flood did not arrive"
        );
    }
    std::thread::sleep(FLOOD_SETTLE);
    for i in HONEST {
        eprintln!(
            "validator {i}: {} MiB resident after the flood",
            rss_kib(&cluster, i) / 1024
        );
    }
    honest_nodes_unharmed(&cluster, &BTreeMap::new());
}
