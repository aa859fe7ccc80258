//! Issue 21: a Byzantine peer serving snapshot sync. The harness (validator 3, its process
//! replaced) answers a joining node's snapshot requests with forgeries — first an epoch
//! chain whose certificate it corrupted, then state chunks with a changed value, then the
//! chunks of another state (one epoch older: consistent, with valid proofs, under a root
//! other than the certified one) — and a joiner given a checkpoint that is not on the
//! chain refuses every peer. Each refusal is a
//! typed error in the joiner's log with the peer dropped; with honest peers left, the
//! restore completes and the joiner catches up.

use super::*;
use crate::common::{load_options, start_load_with, strip_ansi};
use keel_app::epoch_proof::EpochChange;

/// What the harness does to the joiner's snapshot answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Forge {
    /// The first epoch change of every chain it serves carries a flipped signature byte.
    EpochChain,
    /// Every chunk it serves has one value byte flipped.
    Chunks,
    /// Every chunk it serves is of the state one epoch before the height asked (whole and
    /// proven, but under that state's root), labelled with the height asked.
    OtherState,
    /// Its epoch chain verifies but ends at the first epoch change (an honest peer that is
    /// behind serves the same: not provable), and it never answers for chunks or the tip.
    OldChainThenSilence,
    /// Every chunk it serves is whole and valid but sent [`SLOW_ANSWER`] late: inside the
    /// request timeout, far slower than the honest peers.
    SlowChunks,
}

/// How late [`Forge::SlowChunks`] sends each chunk.
const SLOW_ANSWER: Duration = Duration::from_secs(10);

/// Heights per epoch of this test's chain.
const EPOCH_HEIGHTS: u64 = 10;

impl Harness {
    /// Answers peer `joiner`'s snapshot requests until `done` holds: each is asked of
    /// honest validator 0 over the harness's own link and the answer, forged per `forge`,
    /// goes to the joiner. Returns how many answers it forged, withheld or delayed, and how
    /// many of those it withheld or delayed.
    fn serve_forgeries(
        &self,
        cluster: &Cluster,
        joiner: u16,
        forge: Forge,
        done: impl Fn() -> bool,
    ) -> (u64, u64) {
        let mut rx = self.snapshots.lock().expect("snapshots");
        let (mut forged, mut withheld) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(120);
        let next = |rx: &mut mpsc::Receiver<(u16, SnapshotMessage)>, wait: Duration| {
            cluster
                .rt
                .block_on(async { tokio::time::timeout(wait, rx.recv()).await })
                .ok()
                .flatten()
        };
        while !done() {
            if Instant::now() > deadline {
                cluster.dump_logs();
                panic!("the joiner never finished its restore");
            }
            let Some((from, request)) = next(&mut rx, Duration::from_millis(200)) else {
                continue;
            };
            if from != joiner {
                continue;
            }
            let mut asked = request.clone();
            let mut relabel = None;
            if let (SnapshotMessage::ChunkRequest { height, .. }, Forge::OtherState) =
                (&mut asked, forge)
            {
                relabel = Some(*height);
                *height -= EPOCH_HEIGHTS;
            }
            self.net.send(0, &NetMessage::Snapshot(Box::new(asked)));
            // The joiner asks the harness one thing at a time: the next message from
            // validator 0 is the answer.
            let mut answer = loop {
                match next(&mut rx, Duration::from_secs(10)) {
                    Some((0, answer)) => break Some(answer),
                    Some(_) => {}
                    None => break None,
                }
            };
            let mut silent = false;
            match (&mut answer, forge) {
                (Some(SnapshotMessage::EpochChanges { changes, .. }), Forge::EpochChain)
                    if !changes.is_empty() =>
                {
                    let mut change = EpochChange::decode(&changes[0]).expect("an epoch change");
                    change.certificate.signatures[0].0[0] ^= 1;
                    changes[0] = change.encode();
                    forged += 1;
                }
                (Some(SnapshotMessage::Chunk(chunk)), Forge::Chunks) => {
                    let value = &mut chunk.entries[0].1;
                    let last = value.len() - 1;
                    value[last] ^= 1;
                    forged += 1;
                }
                (Some(SnapshotMessage::Chunk(chunk)), Forge::OtherState) => {
                    chunk.height = relabel.expect("a chunk request was relabelled");
                    forged += 1;
                }
                (
                    Some(SnapshotMessage::EpochChanges {
                        from_epoch,
                        changes,
                    }),
                    Forge::OldChainThenSilence,
                ) => {
                    let keep = usize::from(*from_epoch == 0);
                    if changes.len() > keep {
                        changes.truncate(keep);
                        forged += 1;
                    }
                }
                (Some(SnapshotMessage::Chunk(_)), Forge::SlowChunks) => {
                    std::thread::sleep(SLOW_ANSWER);
                    forged += 1;
                    withheld += 1;
                }
                (
                    Some(SnapshotMessage::Chunk(_) | SnapshotMessage::Tip { .. }),
                    Forge::OldChainThenSilence,
                ) => {
                    silent = true;
                    forged += 1;
                    withheld += 1;
                }
                _ => {}
            }
            if silent {
                continue;
            }
            if let Some(answer) = answer {
                self.net
                    .send(joiner, &NetMessage::Snapshot(Box::new(answer)));
            }
        }
        (forged, withheld)
    }
}

/// The joiner's log, without colours.
fn joiner_log(cluster: &Cluster, i: usize) -> String {
    strip_ansi(&std::fs::read_to_string(cluster.home(i).join("node.log")).unwrap_or_default())
}

/// Lines of `log` saying the harness (peer 3) was dropped.
fn harness_drops(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("snapshot sync: peer dropped") && l.contains("peer=3"))
        .map(str::to_string)
        .collect()
}

/// The joiner's last "state restored" log line.
fn last_restore(log: &str) -> String {
    log.lines()
        .rfind(|l| l.contains("snapshot sync: state restored"))
        .expect("a restore")
        .to_string()
}

/// The number a restore log line gives for `name`.
fn restore_field(line: &str, name: &str) -> u64 {
    let (_, rest) = line
        .split_once(&format!(" {name}="))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {line}"))
}

#[test]
fn a_syncing_node_drops_a_peer_that_forges_chains_or_chunks_and_refuses_a_false_checkpoint() {
    let _guard = serial();
    let mut cluster = Cluster::start_with_epochs(VALIDATORS, 29_400, 100, 3, EPOCH_HEIGHTS, |c| {
        c.consensus.timeout_base_ms = TIMEOUT_BASE_MS;
        c.consensus.timeout_max_ms = TIMEOUT_MAX_MS;
    });
    cluster.wait_height(&HONEST, 20, Duration::from_secs(60));
    cluster.kill9(BYZ);
    let harness = Harness::join(&cluster);
    harness.seen().echo = true;
    // State for several chunks: a thousand new accounts.
    let stop_load = Arc::new(AtomicBool::new(false));
    let mut options = load_options(&cluster, &HONEST, 600, 31, &[1, 2]);
    options.rate_per_s = 80;
    options.fresh_recipients = true;
    options.stop = Some(stop_load.clone());
    let load = start_load_with(&cluster, options);
    let height = cluster.height(0).expect("height");
    cluster.wait_height(&HONEST, height + 150, Duration::from_secs(90));
    stop_load.store(true, Ordering::Relaxed);
    finish_load(&cluster, load);

    // The joiner registers; the harness admits its key.
    let joiner = cluster.add_node(29_450);
    let home = cluster.home(joiner);
    let mut config =
        keel_node::config::NodeConfig::load(&home.join("config.toml")).expect("config");
    config.sync.mode = "snapshot".into();
    config.sync.chunk_bytes = keel_types::proof::MIN_SNAPSHOT_CHUNK_BYTES as u32;
    std::fs::write(home.join("config.toml"), config.to_toml()).expect("config");
    let key_file = home.join("keys/validator.json");
    let key = keel_node::keys::read(&key_file).expect("key").public_key();
    let funder = cluster.dev_key(0);
    let (ok, registered, err) = crate::common::keel(&[
        "tx",
        "validator",
        "register",
        "--rpc",
        &cluster.rpc(0),
        "--key",
        funder.to_str().expect("utf8"),
        "--validator-key",
        key_file.to_str().expect("utf8"),
        "--p2p",
        &cluster.p2p(joiner),
        "--stake",
        "100",
        "--wait",
    ]);
    assert!(
        ok && registered["status"] == "success",
        "{registered} {err}"
    );
    let peers = harness.net.add_peers(&[(key, cluster.p2p(joiner))]);
    let joiner_peer =
        u16::try_from(peers.iter().position(|k| *k == key).expect("added")).expect("index");
    let restored = |n: usize| {
        move |cluster: &Cluster| {
            joiner_log(cluster, joiner)
                .matches("snapshot sync: state restored")
                .count()
                >= n
        }
    };

    // Run 1: the harness forges the epoch chain. Dropped with the typed certificate error.
    cluster.spawn(joiner);
    let done = restored(1);
    let (forged, _) =
        harness.serve_forgeries(&cluster, joiner_peer, Forge::EpochChain, || done(&cluster));
    assert!(
        forged > 0,
        "the joiner never asked the harness for its chain"
    );
    let drops = harness_drops(&joiner_log(&cluster, joiner));
    assert!(
        drops.iter().any(|l| l.contains("certificate")),
        "no typed certificate refusal of the harness: {drops:?}"
    );
    let metrics = cluster.http_get(joiner, "/metrics");
    assert!(
        crate::common::metric_sum(&metrics, "keel_sync_peers_dropped_total", "") >= 1,
        "{metrics}"
    );

    // Run 2: honest chain, forged chunks. Dropped with the typed proof error; the chunk is
    // fetched from an honest peer and the restore completes.
    cluster.kill9(joiner);
    std::fs::remove_dir_all(home.join("data/state")).expect("remove state");
    cluster.spawn(joiner);
    let done = restored(2);
    let (forged, _) =
        harness.serve_forgeries(&cluster, joiner_peer, Forge::Chunks, || done(&cluster));
    assert!(forged > 0, "the joiner never asked the harness for a chunk");
    let drops = harness_drops(&joiner_log(&cluster, joiner));
    assert!(
        drops
            .iter()
            .any(|l| l.contains("does not verify against root")),
        "no typed proof refusal of the harness: {drops:?}"
    );
    let tip = cluster.height(0).expect("height");
    cluster.wait_height(&[0, joiner], tip + 5, Duration::from_secs(60));
    let proof_refusals = |log: &str| {
        harness_drops(log)
            .iter()
            .filter(|l| l.contains("does not verify against root"))
            .count()
    };
    let before = proof_refusals(&joiner_log(&cluster, joiner));

    // Run 2b: chunks of another, consistent state — a root other than the certified one.
    // Refused by their proofs like a changed value; the restore completes from the others.
    cluster.kill9(joiner);
    std::fs::remove_dir_all(home.join("data/state")).expect("remove state");
    cluster.spawn(joiner);
    let done = restored(3);
    let (forged, _) =
        harness.serve_forgeries(&cluster, joiner_peer, Forge::OtherState, || done(&cluster));
    assert!(forged > 0, "the joiner never asked the harness for a chunk");
    let log = joiner_log(&cluster, joiner);
    assert!(
        proof_refusals(&log) > before,
        "no typed proof refusal of the other state: {:?}",
        harness_drops(&log)
    );
    let tip = cluster.height(0).expect("height");
    cluster.wait_height(&[0, joiner], tip + 5, Duration::from_secs(60));

    // Run 2c: an epoch chain that verifies but ends long ago, then silence for chunks and
    // the tip. Neither is provable, so the harness is not dropped; the restore takes the
    // newest boundary the honest peers serve, and the silence costs one request timeout
    // (the request that found it silent: the harness then rests and is asked last).
    cluster.kill9(joiner);
    std::fs::remove_dir_all(home.join("data/state")).expect("remove state");
    let drops_before = harness_drops(&joiner_log(&cluster, joiner)).len();
    let tip_at_start = cluster.height(0).expect("height");
    cluster.spawn(joiner);
    let done = restored(4);
    let (forged, withheld) =
        harness.serve_forgeries(&cluster, joiner_peer, Forge::OldChainThenSilence, || {
            done(&cluster)
        });
    assert!(
        withheld > 0,
        "the joiner never asked the harness for a chunk or the tip ({forged} chains cut)"
    );
    let log = joiner_log(&cluster, joiner);
    assert_eq!(
        harness_drops(&log).len(),
        drops_before,
        "an unprovable lie dropped the harness: {:?}",
        harness_drops(&log)
    );
    let line = last_restore(&log);
    let field = |name: &str| restore_field(&line, name);
    assert!(
        field("height") + 2 * EPOCH_HEIGHTS >= tip_at_start,
        "restored an old boundary (the tip was {tip_at_start}): {line}"
    );
    eprintln!(
        "old chain, then silence ({forged} answers cut or withheld, {withheld} withheld): {line}"
    );
    // At least the one timeout that found the harness silent, and not a second: it rests
    // (asked again only if every honest peer refused three times meanwhile).
    let timeout_s = keel_node::snapshot::SNAPSHOT_REQUEST_TIMEOUT_MS / 1_000;
    assert!(
        (timeout_s..timeout_s + 20).contains(&field("seconds")),
        "a silent server should cost one request timeout: {line}"
    );
    let tip = cluster.height(0).expect("height");
    cluster.wait_height(&[0, joiner], tip + 5, Duration::from_secs(60));

    // Run 2d: whole, valid chunks, each sent 10 s late (inside the request timeout). Not
    // dropped; once its answer is judged far slower than the others' it rests, so it is
    // waited for at most twice (its first answer may come before there is a pace to judge
    // by), not once per turn (a dozen turns of this state's chunks).
    cluster.kill9(joiner);
    std::fs::remove_dir_all(home.join("data/state")).expect("remove state");
    cluster.spawn(joiner);
    let done = restored(5);
    let (_, delayed) =
        harness.serve_forgeries(&cluster, joiner_peer, Forge::SlowChunks, || done(&cluster));
    let log = joiner_log(&cluster, joiner);
    let line = last_restore(&log);
    // This run's lines: the log is appended to across runs.
    let (_, this_run) = log
        .match_indices("snapshot sync: state restored")
        .nth(3)
        .map(|(at, _)| log.split_at(at))
        .expect("four earlier restores");
    let rests: Vec<&str> = this_run
        .lines()
        .filter(|l| l.contains("a chunk answer far slower than the others; the peer rests"))
        .collect();
    eprintln!("slow chunks ({delayed} answers delayed): {line}");
    assert!(
        (1..=2).contains(&delayed),
        "{delayed} chunks asked of a slow server: {line}"
    );
    assert!(
        !rests.is_empty() && rests.iter().all(|l| l.contains("peer=3")),
        "the slow server should rest, and only it: {rests:?}"
    );
    // The operator sees it: the joiner was restarted for this run, so its count is this run's.
    let metrics = cluster.http_get(joiner, "/metrics");
    assert_eq!(
        crate::common::metric_sum(&metrics, "keel_sync_slow_answers_total", ""),
        rests.len() as u64,
        "{metrics}"
    );
    assert_eq!(
        harness_drops(&log).len(),
        drops_before,
        "a slow server was dropped: {:?}",
        harness_drops(&log)
    );

    // In none of the runs so far was an honest peer dropped (a rewind after a forged
    // chunk must not make the honest chunk before it read as cut short).
    let honest_drops: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("snapshot sync: peer dropped") && !l.contains("peer=3"))
        .collect();
    assert!(honest_drops.is_empty(), "{honest_drops:?}");
    let tip = cluster.height(0).expect("height");
    cluster.wait_height(&[0, joiner], tip + 5, Duration::from_secs(60));

    // Run 3: a checkpoint that is not on the chain. Every peer's chain is refused with the
    // typed error, and the node stops instead of trusting any.
    cluster.kill9(joiner);
    std::fs::remove_dir_all(home.join("data/state")).expect("remove state");
    config.sync.checkpoint = format!("10:0x{}", "11".repeat(32));
    std::fs::write(home.join("config.toml"), config.to_toml()).expect("config");
    cluster.spawn(joiner);
    // The harness passes the chain on unchanged this time: it is refused like the others.
    let stopped = |cluster: &Cluster| joiner_log(cluster, joiner).contains("error: snapshot sync");
    harness.serve_forgeries(&cluster, joiner_peer, Forge::Chunks, || stopped(&cluster));
    let log = joiner_log(&cluster, joiner);
    let refusals = log
        .lines()
        .filter(|l| {
            l.contains("snapshot sync: peer dropped")
                && l.contains("is not the last block of a served epoch change")
        })
        .count();
    // Every peer it asked (those connected within the settle wait).
    assert!(refusals >= 1, "{refusals} refusals:\n{log}");
    assert_eq!(
        log.matches("snapshot sync: state restored").count(),
        5,
        "{log}"
    );
    cluster.kill9(joiner);
    assert!(cluster.check_roots_of(&HONEST) > 0);
}
