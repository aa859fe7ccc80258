//! The validator lifecycle on a 4-validator devnet, through the `keel` CLI. First: an operator
//! bonds more stake, a new key registers (its proof of possession signed by the key), both
//! take effect at an epoch boundary as voting power, a stranger's bond is refused with a
//! typed reason, the newcomer leaves and its stake comes back after the unbonding epochs;
//! the chain stays live and every validator on the same roots throughout. Second: a fifth
//! node outside genesis registers, starts, block-syncs, and proposes and votes once the set
//! includes it; then a genesis validator leaves and the chain goes on without it; then the
//! fifth restores again, is killed with SIGKILL mid-restore, and resumes.

use crate::common::{
    finish_load, keel, load_options, serial, start_load_with, strip_ansi, Cluster,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN_POWER: u64 = 1_000_000_000;

fn query_validators(rpc: &str) -> Value {
    let (ok, out, err) = keel(&["query", "validators", "--rpc", rpc]);
    assert!(ok, "{err}");
    out
}

/// Polls `keel query validators` until `done` holds of its answer.
fn wait_for(cluster: &Cluster, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = query_validators(&cluster.rpc(1));
        if done(&out) {
            return out;
        }
        if Instant::now() > deadline {
            cluster.dump_logs();
            panic!("{what}: {out:#}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn power_of(set: &Value, key: &str) -> Option<u64> {
    set["members"]
        .as_array()?
        .iter()
        .find(|m| m["public_key"] == key)
        .and_then(|m| m["power"].as_str()?.parse().ok())
}

fn send(args: &[&str]) -> Value {
    let (ok, receipt, err) = keel(args);
    assert!(ok, "{args:?}: {err}");
    receipt
}

#[test]
fn operators_bond_register_and_leave_through_the_cli() {
    let _guard = serial();
    let cluster = Cluster::start_with_epochs(4, 28_600, 150, 2, 10, |_| {});
    let rpc = cluster.rpc(0);
    let home0 = cluster.home(0);
    let operator0 = home0.join("keys/operator.json");
    let validator0 = home0.join("keys/validator.json");
    let (operator0, validator0) = (
        operator0.to_str().expect("utf8"),
        validator0.to_str().expect("utf8"),
    );
    let start = query_validators(&rpc);
    let key0 = start["set"]["members"][0]["public_key"]
        .as_str()
        .expect("key")
        .to_string();
    assert_eq!(power_of(&start["set"], &key0), Some(1_000 * TOKEN_POWER));

    // The operator bonds 500 more tokens.
    let bonded = send(&[
        "tx",
        "validator",
        "bond",
        "--rpc",
        &rpc,
        "--key",
        operator0,
        "--validator",
        validator0,
        "--amount",
        "500",
        "--wait",
    ]);
    assert_eq!(bonded["status"], "success", "{bonded}");

    // A stranger may not bond someone else's validator: charged, with the typed reason.
    let stranger = cluster.dev_key(1);
    let refused = send(&[
        "tx",
        "validator",
        "bond",
        "--rpc",
        &rpc,
        "--key",
        stranger.to_str().expect("utf8"),
        "--validator",
        &key0,
        "--amount",
        "1",
        "--wait",
    ]);
    assert_eq!(refused["status"], "revert", "{refused}");
    assert_eq!(refused["error"]["code"], "registry", "{refused}");
    assert_eq!(refused["error"]["reason"], "not_operator", "{refused}");

    // A new key registers with 100 tokens from a funded account.
    let dir = cluster.dir.path();
    let newcomer_file = dir.join("newcomer.json");
    let newcomer_path = newcomer_file.to_str().expect("utf8");
    let (ok, created, err) = keel(&["keys", "new", "--out", newcomer_path]);
    assert!(ok, "{err}");
    let newcomer = created["public_key"]
        .as_str()
        .expect("public key")
        .to_string();
    let funder = cluster.dev_key(0);
    let funder = funder.to_str().expect("utf8");
    let register = || {
        send(&[
            "tx",
            "validator",
            "register",
            "--rpc",
            &rpc,
            "--key",
            funder,
            "--validator-key",
            newcomer_path,
            "--p2p",
            "127.0.0.1:28699",
            "--stake",
            "100",
            "--wait",
        ])
    };
    let registered = register();
    assert_eq!(registered["status"], "success", "{registered}");
    // Registering it twice is refused.
    let again = register();
    assert_eq!(again["error"]["reason"], "already_registered", "{again}");

    // Both take effect at a boundary: the set grows to five and node 0 has 1,500 tokens
    // of power; the newcomer (no node runs it: a silent member with 2 % of the power)
    // costs the chain only its own views.
    let grown = wait_for(&cluster, "the set never took the changes", |out| {
        power_of(&out["set"], &newcomer) == Some(100 * TOKEN_POWER)
            && power_of(&out["set"], &key0) == Some(1_500 * TOKEN_POWER)
    });
    assert_eq!(grown["set"]["members"].as_array().map(Vec::len), Some(5));
    let status = |out: &Value, key: &str| {
        out["registry"]
            .as_array()
            .and_then(|r| r.iter().find(|v| v["public_key"] == key).cloned())
    };
    assert_eq!(
        status(&grown, &newcomer).expect("registered")["status"],
        "active"
    );
    let height = cluster.height(0).expect("height");
    cluster.wait_height(&[0, 1, 2, 3], height + 12, Duration::from_secs(60));

    // The newcomer leaves: out of the set at the next boundary, its stake back to the
    // funder after the unbonding epochs, and its record gone.
    let balance = |who: &str| {
        let (ok, account, err) = keel(&["query", "account", who, "--rpc", &rpc]);
        assert!(ok, "{err}");
        account["balance"].as_str().expect("balance").to_string()
    };
    let funder_address = created_address(funder);
    let before = balance(&funder_address);
    let left = send(&[
        "tx",
        "validator",
        "leave",
        "--rpc",
        &rpc,
        "--key",
        funder,
        "--validator",
        &newcomer,
        "--wait",
    ]);
    assert_eq!(left["status"], "success", "{left}");
    wait_for(
        &cluster,
        "the newcomer never left the set and registry",
        |out| power_of(&out["set"], &newcomer).is_none() && status(out, &newcomer).is_none(),
    );
    let after = balance(&funder_address);
    let grew = u128::from_str_radix(after.trim_start_matches("0x"), 16).expect("hex")
        > u128::from_str_radix(before.trim_start_matches("0x"), 16).expect("hex");
    assert!(grew, "the stake never came back: {before} → {after}");
    assert!(cluster.check_roots() > 0);
    assert!(cluster.equivocations().is_empty());
}

/// The address in a key file.
fn created_address(path: &str) -> String {
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("key")).expect("json");
    file["address"].as_str().expect("address").to_string()
}

/// The join of issue 21 through real processes: the validators prune (the BLOCKHASH window
/// of 256 heights), so block sync from genesis is impossible; a fifth node registers,
/// restores the latest epoch boundary's state by snapshot sync (the epoch chain verified
/// from genesis, chunks against the certified root), block-syncs to the tip, enters the set,
/// proposes and votes; then a genesis validator leaves; then the fifth restores again from
/// an empty state directory, is killed with SIGKILL mid-restore and resumes where it was.
/// Throughout: a steady transfer load loses nothing, every node agrees on every root it
/// holds, and no two consecutive blocks are more than two view timeouts apart.
#[test]
fn a_node_outside_genesis_joins_by_snapshot_and_votes_then_a_genesis_validator_leaves() {
    let _guard = serial();
    let mut cluster = Cluster::start_with_epochs(4, 28_800, 100, 3, 10, |config| {
        config.storage.retain_heights = keel_node::config::MIN_RETAIN_HEIGHTS;
        config.storage.prune_interval_ms = 200;
    });
    let timeout_base_ms = cluster.configs[0].consensus.timeout_base_ms;
    let rpc = cluster.rpc(0);
    // Past the retention window, and pruned: height 1 is gone everywhere.
    cluster.wait_height(
        &[0, 1, 2, 3],
        keel_node::config::MIN_RETAIN_HEIGHTS + 40,
        Duration::from_secs(180),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while (0..4).any(|i| {
        cluster
            .call(i, "keel_status", vec![])
            .map_or(true, |s| s["oldest_retained"].as_u64().unwrap_or(0) == 0)
    }) {
        assert!(Instant::now() < deadline, "the validators never pruned");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The load runs through the join, the leave and the second restore, every transfer to
    // a new account: the state grows (thousands of entries, so the second restore takes
    // many chunks).
    let mut options = load_options(&cluster, &[0, 1, 2], 600, 21, &[1, 2]);
    options.rate_per_s = 60;
    options.fresh_recipients = true;
    let stop_load = Arc::new(AtomicBool::new(false));
    options.stop = Some(stop_load.clone());
    let load = start_load_with(&cluster, options);
    let load_started = cluster.height(0).expect("height");
    let stop = Arc::new(AtomicBool::new(false));
    let stalls = watch_stalls(&cluster, 0, stop.clone());
    let joiner = cluster.add_node(28_850);
    let home = cluster.home(joiner);
    let mut config =
        keel_node::config::NodeConfig::load(&home.join("config.toml")).expect("config");
    config.sync.mode = "snapshot".into();
    // Small chunks: the restore takes several, so the second run can be stopped mid-way.
    config.sync.chunk_bytes = keel_types::proof::MIN_SNAPSHOT_CHUNK_BYTES as u32;
    std::fs::write(home.join("config.toml"), config.to_toml()).expect("config");
    let key_file = home.join("keys/validator.json");
    let key = created_public_key(key_file.to_str().expect("utf8"));
    let funder = cluster.dev_key(0);
    let registered = send(&[
        "tx",
        "validator",
        "register",
        "--rpc",
        &rpc,
        "--key",
        funder.to_str().expect("utf8"),
        "--validator-key",
        key_file.to_str().expect("utf8"),
        "--p2p",
        &cluster.p2p(joiner),
        "--stake",
        "600",
        "--wait",
    ]);
    assert_eq!(registered["status"], "success", "{registered}");
    // Started after the registration (the peers admit registered keys), from genesis: it
    // syncs the chain, then votes from the first epoch whose set holds it.
    cluster.spawn(joiner);
    let spawned = Instant::now();
    let votes_log = home.join("data/votes.log");
    let voted = || std::fs::metadata(&votes_log).map_or(0, |m| m.len()) > 0;
    let mut first_vote: Option<Duration> = None;
    wait_for(&cluster, "the joiner never entered the set", |out| {
        power_of(&out["set"], &key) == Some(600 * TOKEN_POWER)
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let proposed = loop {
        if first_vote.is_none() && voted() {
            first_vote = Some(spawned.elapsed());
        }
        let tip = cluster.height(0).unwrap_or(0);
        let proposers: Vec<String> = (tip.saturating_sub(20)..=tip)
            .filter_map(|h| cluster.call(0, "keel_getBlock", vec![h.into()]).ok())
            .filter_map(|b| b["proposer"].as_str().map(str::to_string))
            .collect();
        if proposers.contains(&key) {
            break tip;
        }
        if Instant::now() > deadline {
            cluster.dump_logs();
            panic!("the joiner never proposed a finalized block: {proposers:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    cluster.wait_height(&[0, 1, 2, 3, joiner], proposed + 3, Duration::from_secs(60));
    assert!(voted(), "the joiner never voted");
    // From `keel run` to its first vote (sampled with each poll above) and its first
    // finalized proposal: an operator votes within minutes of starting.
    let first_vote = first_vote.unwrap_or_else(|| spawned.elapsed());
    eprintln!(
        "joiner: first vote by {} ms, first finalized proposal seen by {} ms after start",
        first_vote.as_millis(),
        spawned.elapsed().as_millis()
    );
    assert!(first_vote < Duration::from_secs(120), "{first_vote:?}");
    // It restored a snapshot: it never held the early heights, and said so.
    let log = std::fs::read_to_string(home.join("node.log")).expect("log");
    assert!(
        log.contains("snapshot sync: state restored"),
        "no restore in the log"
    );
    // Its progress was visible: a log line with percent, entries and MB/s (the last at
    // 100 %), and the sync metrics.
    let log_text = strip_ansi(&log);
    let progress = log_text
        .lines()
        .rfind(|l| l.contains("snapshot sync: restoring"))
        .expect("a progress line");
    assert!(
        ["percent=", "entries=", "mb_per_s=", "100.0"]
            .iter()
            .all(|part| progress.contains(part)),
        "{progress}"
    );
    let metrics = cluster.metrics_text(joiner);
    for name in [
        keel_node::metrics::SYNC_TARGET_HEIGHT,
        keel_node::metrics::SYNC_ENTRIES,
        keel_node::metrics::SYNC_BYTES,
        keel_node::metrics::SYNC_CHUNKS,
    ] {
        let value = metrics
            .lines()
            .find(|l| l.split([' ', '{']).next() == Some(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        assert!(value.is_some_and(|v| v > 0.0), "{name}: {value:?}");
    }
    // Every node counts the set the chain votes with now, not genesis's.
    for i in [0, joiner] {
        let status = cluster.call(i, "keel_status", vec![]).expect("status");
        assert_eq!(status["validators"], 5, "{status}");
    }
    let status = cluster.call(joiner, "keel_status", vec![]).expect("status");
    assert!(
        status["oldest_retained"].as_u64().unwrap_or(0) > keel_node::config::MIN_RETAIN_HEIGHTS,
        "{status}"
    );
    // The epoch chain it verified is served over RPC too.
    let proof = cluster
        .call(0, "keel_getEpochProof", vec![])
        .expect("epoch proof");
    let changes = proof["changes"].as_array().expect("changes");
    assert!(changes.len() >= 25, "{proof}");
    assert_eq!(changes[0]["epoch"], 0);

    // A genesis validator leaves: out of the set at a boundary, and the chain goes on
    // with the other four.
    let home3 = cluster.home(3);
    let operator3 = home3.join("keys/operator.json");
    let validator3 = home3.join("keys/validator.json");
    let key3 = created_public_key(validator3.to_str().expect("utf8"));
    let left = send(&[
        "tx",
        "validator",
        "leave",
        "--rpc",
        &rpc,
        "--key",
        operator3.to_str().expect("utf8"),
        "--validator",
        &key3,
        "--wait",
    ]);
    assert_eq!(left["status"], "success", "{left}");
    wait_for(&cluster, "validator 3 never left the set", |out| {
        power_of(&out["set"], &key3).is_none()
    });
    let height = cluster.height(0).expect("height");
    cluster.wait_height(&[0, 1, 2, joiner], height + 12, Duration::from_secs(60));
    let status = cluster.call(0, "keel_status", vec![]).expect("status");
    assert_eq!(status["validators"], 4, "{status}");

    // Second run: the fifth restores again from an empty state directory (its vote log
    // kept), slowed by the fault hook, and is killed with SIGKILL once some chunks are in.
    // By then the load has added about a thousand accounts: several chunks.
    cluster.wait_height(&[0], load_started + 170, Duration::from_secs(60));
    cluster.kill9(joiner);
    std::fs::remove_dir_all(home.join("data/state")).expect("remove state");
    let delay = (
        keel_node::snapshot::FAULT_CHUNK_DELAY_ENV,
        "1500".to_string(),
    );
    cluster.spawn_with_env(joiner, &[delay]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let before_kill = loop {
        let snapshot = cluster
            .call(joiner, "keel_status", vec![])
            .map(|s| s["sync"]["snapshot"].clone())
            .unwrap_or(Value::Null);
        if snapshot["phase"] == "state" && snapshot["entries"].as_u64().unwrap_or(0) > 0 {
            break snapshot;
        }
        if Instant::now() > deadline || snapshot["phase"] == "done" {
            cluster.dump_logs();
            panic!("never caught the restore mid-way: {snapshot}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Mid-restore, the node is live but not ready, and its RPC says "syncing" (with the
    // progress) for what it cannot answer yet, never "no such method".
    assert!(cluster
        .http_get(joiner, "/health")
        .starts_with("HTTP/1.1 200"));
    let ready = cluster.http_get(joiner, "/ready");
    assert!(
        ready.starts_with("HTTP/1.1 503") && ready.contains("restoring a snapshot"),
        "{ready}"
    );
    let refused = cluster
        .call(
            joiner,
            "keel_getAccount",
            vec![json!(format!("0x{}", "11".repeat(20)))],
        )
        .expect_err("no state yet");
    assert!(
        refused.contains("(-32007)") && refused.contains(r#""reason":"syncing""#),
        "{refused}"
    );
    assert!(cluster.call(joiner, "eth_chainId", vec![]).is_ok());
    cluster.kill9(joiner);
    assert!(
        !load.is_finished(),
        "the load ended before the second restore"
    );
    eprintln!("killed mid-restore at {before_kill}");
    assert_eq!(
        before_kill["permille"].as_u64().map(|p| p < 1000),
        Some(true),
        "{before_kill}"
    );
    cluster.spawn(joiner);
    let height = cluster.height(0).expect("height");
    cluster.wait_height(&[0, 1, 2, joiner], height + 12, Duration::from_secs(90));
    // It resumed the same boundary from where it was stopped: it starts after the last
    // key it had written (at least what it reported before the kill), not from the first.
    let status = cluster.call(joiner, "keel_status", vec![]).expect("status");
    let snapshot = &status["sync"]["snapshot"];
    eprintln!("resumed and finished: {snapshot}");
    assert_eq!(snapshot["phase"], "done", "{status}");
    assert_eq!(snapshot["resumed"], true, "{status}");
    assert_eq!(
        snapshot["target_height"], before_kill["target_height"],
        "{status}"
    );
    let log = std::fs::read_to_string(home.join("node.log")).expect("log");
    let resumed_at: u64 = strip_ansi(&log)
        .lines()
        .filter(|l| l.contains("resuming an interrupted restore"))
        .find_map(|l| {
            let percent: String = l
                .split("percent=")
                .nth(1)?
                .trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .filter(char::is_ascii_digit)
                .collect();
            percent.parse().ok()
        })
        .expect("a resume line with its percent");
    assert!(
        resumed_at >= before_kill["permille"].as_u64().unwrap_or(u64::MAX),
        "resumed at {resumed_at} permille, but {before_kill} was written before the kill"
    );
    assert_eq!(log.matches("snapshot sync: state restored").count(), 2);
    // At the tip with its state: ready.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster
        .http_get(joiner, "/ready")
        .starts_with("HTTP/1.1 200")
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            cluster.http_get(joiner, "/ready")
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    stop_load.store(true, Ordering::Relaxed);
    finish_load(&cluster, load);
    stop.store(true, Ordering::Relaxed);
    let (worst_gap_ms, at, seen, skipped) = cluster.rt.block_on(stalls).expect("stall watch");
    eprintln!(
        "longest gap between blocks: {worst_gap_ms} ms at height {at} ({seen} blocks, {skipped} missed)"
    );
    assert!(
        seen > 100 && skipped == 0,
        "{seen} blocks watched, {skipped} missed"
    );
    assert!(
        worst_gap_ms <= 2 * timeout_base_ms,
        "the chain stalled {worst_gap_ms} ms before height {at} (bound: two view timeouts)"
    );
    assert!(cluster.check_roots() > 0);
    let equivocations = cluster.equivocations();
    assert!(equivocations.is_empty(), "{equivocations:?}");
}

/// `devnet/join` and `devnet/leave` as an operator runs them, on a devnet younger than its
/// first epoch (so the joiner finds no boundary to restore and block-syncs from genesis):
/// the new validator registers, starts and catches up, then leaves — still a candidate,
/// so out of the set at once — and is stopped.
#[test]
fn devnet_join_adds_a_validator_and_devnet_leave_retires_it() {
    let _guard = serial();
    let home = tempfile::tempdir().expect("tempdir");
    let devnet = crate::devnet::chaos::ScriptedDevnet {
        dir: home.path().join("devnet"),
        tag: String::new(),
        subnet: String::new(),
    };
    let up = devnet.run("up", &["--fresh"]);
    assert!(up.status.success(), "devnet/up failed");
    let joined = devnet.run("join", &["--stake", "500"]);
    assert!(joined.status.success(), "devnet/join failed");
    let line: Value = serde_json::from_slice(&joined.stdout).expect("devnet/join's JSON line");
    assert_eq!(line["validator"], 4, "{line}");
    assert_eq!(line["joined"], true, "{line}");
    let rpc = line["rpc"].as_str().expect("rpc").to_string();
    let key = line["public_key"].as_str().expect("key").to_string();
    let (ok, status, err) = keel(&["query", "status", "--rpc", &rpc]);
    assert!(ok, "{err}");
    assert!(status["height"].as_u64() > Some(0), "{status}");
    // A chain in its first epoch has no boundary: the joiner said so and block-synced.
    let log = std::fs::read_to_string(devnet.dir.join("node4/node.log")).expect("log");
    assert!(log.contains("no epoch has ended yet"), "{log}");
    let registry = |out: &Value| {
        out["registry"]
            .as_array()
            .and_then(|r| r.iter().find(|v| v["public_key"] == key.as_str()).cloned())
    };
    let before = query_validators(&rpc);
    assert_eq!(
        registry(&before).expect("registered")["stake"]
            .as_str()
            .map(str::to_string),
        Some(format!("{:#x}", 500u128 * 10u128.pow(18))),
        "{before}"
    );
    let left = devnet.run("leave", &["4"]);
    assert!(left.status.success(), "devnet/leave failed");
    let line: Value = serde_json::from_slice(&left.stdout).expect("devnet/leave's JSON line");
    assert_eq!(line["left"], true, "{line}");
    let rpc0 = devnet_rpc(&devnet.dir, 0);
    let after = query_validators(&rpc0);
    assert_eq!(
        registry(&after).expect("still registered while its stake unbonds")["status"],
        "leaving",
        "{after}"
    );
}

/// EVM creation code of the join benchmark's filler: called with two 32-byte words
/// `(start, n)`, it stores 1 in slots `start .. start + n` (a new state entry each).
/// Runtime: `PUSH1 0 CALLDATALOAD PUSH1 32 CALLDATALOAD loop: JUMPDEST DUP1 ISZERO PUSH2 end
/// JUMPI PUSH1 1 DUP3 SSTORE SWAP1 PUSH1 1 ADD SWAP1 PUSH1 1 SWAP1 SUB PUSH1 loop JUMP end:
/// JUMPDEST STOP`, behind a constructor that returns it.
const FILLER_CREATION_HEX: &str =
    "601f600c600039601f6000f36000356020355b801561001d57600182559060010190600190036006565b00";
/// Slots one filler call writes (≈ 22,100 gas each, under the per-transaction gas cap).
const FILLER_SLOTS_PER_CALL: u64 = 600;

/// Grows the state by `slots` storage entries: deploys the filler and calls it from every
/// dev account at once, each call waited for.
fn fill_storage(cluster: &Cluster, dev_accounts: usize, slots: u64) {
    let code = cluster.dir.path().join("filler.hex");
    std::fs::write(&code, FILLER_CREATION_HEX).expect("filler code");
    let rpc = cluster.rpc(0);
    let deployed = send(&[
        "tx",
        "deploy",
        "--rpc",
        &rpc,
        "--key",
        cluster.dev_key(0).to_str().expect("utf8"),
        "--env",
        "evm",
        "--code",
        code.to_str().expect("utf8"),
        "--wait",
    ]);
    assert_eq!(deployed["status"], "success", "{deployed}");
    let filler = deployed["contract_address"]
        .as_str()
        .expect("a contract address")
        .to_string();
    let calls = slots.div_ceil(FILLER_SLOTS_PER_CALL);
    std::thread::scope(|scope| {
        for j in 0..dev_accounts {
            let (rpc, filler, key) = (&rpc, &filler, cluster.dev_key(j));
            scope.spawn(move || {
                for call in (j as u64..calls).step_by(dev_accounts) {
                    let start = call * FILLER_SLOTS_PER_CALL;
                    let n = FILLER_SLOTS_PER_CALL.min(slots - start);
                    let data = format!("0x{start:064x}{n:064x}");
                    let receipt = send(&[
                        "tx",
                        "call",
                        "--rpc",
                        rpc,
                        "--key",
                        key.to_str().expect("utf8"),
                        "--to",
                        filler,
                        "--data",
                        &data,
                        "--gas",
                        "16000000",
                        "--wait",
                    ]);
                    assert_eq!(receipt["status"], "success", "{receipt}");
                }
            });
        }
    });
}

/// Issue 21's join benchmark (not in CI): a 4-validator devnet whose genesis funds
/// `KEEL_JOIN_BENCH_ACCOUNTS` accounts (default 99,000, under the genesis cap) and whose
/// state then grows by `KEEL_JOIN_BENCH_SLOTS` storage entries (default 0; written by
/// transactions, a filler contract's calls), a fifth node registered and started with
/// `--sync snapshot`; prints the state's entries, the restore's duration, the time from
/// `keel run` to its first vote, and its peak RSS. A million entries:
/// `KEEL_JOIN_BENCH_ACCOUNTS=99000 KEEL_JOIN_BENCH_SLOTS=910000 scripts/test --test cli
/// join_benchmark -- --ignored --nocapture`
#[test]
#[ignore = "a benchmark: run by hand"]
fn join_benchmark() {
    let _guard = serial();
    let accounts: u64 = std::env::var("KEEL_JOIN_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(99_000);
    let slots: u64 = std::env::var("KEEL_JOIN_BENCH_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let dev_accounts = 4;
    let mut cluster = Cluster::start_with_genesis(
        4,
        29_700,
        100,
        dev_accounts,
        (20, 0, keel_node::genesis::DEFAULT_FOLD_EPOCHS),
        |_| {},
        |genesis| {
            genesis
                .balances
                .extend((0..accounts).map(|i| keel_node::genesis::GenesisBalance {
                    address: {
                        let mut address = [0x77u8; 20];
                        address[12..].copy_from_slice(&i.to_be_bytes());
                        keel_types::Address(address)
                    },
                    balance: keel_types::U256::from(1u64),
                }))
        },
    );
    cluster.wait_height(&[0, 1, 2, 3], 25, Duration::from_secs(300));
    if slots > 0 {
        let started = Instant::now();
        fill_storage(&cluster, dev_accounts, slots);
        eprintln!(
            "filled {slots} storage slots in {} s",
            started.elapsed().as_secs()
        );
        // Past the next epoch boundary: the restored state holds every slot.
        let height = cluster.height(0).expect("height");
        cluster.wait_height(&[0, 1, 2, 3], height + 45, Duration::from_secs(300));
    }
    let joiner = cluster.add_node(29_750);
    let home = cluster.home(joiner);
    let mut config =
        keel_node::config::NodeConfig::load(&home.join("config.toml")).expect("config");
    config.sync.mode = "snapshot".into();
    std::fs::write(home.join("config.toml"), config.to_toml()).expect("config");
    let key_file = home.join("keys/validator.json");
    let funder = cluster.dev_key(0);
    let registered = send(&[
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
        "600",
        "--wait",
    ]);
    assert_eq!(registered["status"], "success", "{registered}");
    cluster.spawn(joiner);
    let spawned = Instant::now();
    let votes_log = home.join("data/votes.log");
    let (mut restored, mut rss_kib) = (None, 0);
    let first_vote = loop {
        rss_kib = rss_kib.max(cluster.peak_rss_kib(joiner).unwrap_or(0));
        if restored.is_none()
            && std::fs::read_to_string(home.join("node.log"))
                .is_ok_and(|l| l.contains("snapshot sync: state restored"))
        {
            restored = Some(spawned.elapsed());
        }
        if std::fs::metadata(&votes_log).map_or(0, |m| m.len()) > 0 {
            break spawned.elapsed();
        }
        assert!(spawned.elapsed() < Duration::from_secs(600), "no vote");
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = cluster.call(joiner, "keel_status", vec![]).expect("status");
    let snapshot = &status["sync"]["snapshot"];
    let entries = snapshot["entries"].as_u64().unwrap_or(0);
    let restore_ms = restored.map_or(0, |d| d.as_millis());
    eprintln!(
        "{}",
        serde_json::json!({
            "genesis_accounts": accounts,
            "storage_slots_filled": slots,
            "entries_restored": entries,
            "bytes_restored": snapshot["bytes"],
            "restored_after_ms": restore_ms,
            "first_vote_after_ms": first_vote.as_millis(),
            "joiner_peak_rss_mib": rss_kib / 1024,
        })
    );
    assert!(entries >= accounts + slots, "{snapshot}");
}

/// Validator `i`'s RPC URL in a scripted devnet.
fn devnet_rpc(dir: &std::path::Path, i: usize) -> String {
    let config = keel_node::config::NodeConfig::load(&dir.join(format!("node{i}/config.toml")))
        .expect("config");
    format!("http://{}", config.rpc.listen)
}

/// Watches node `i`'s finalized blocks as they come (its pruner drops old ones) and returns
/// the longest gap between two consecutive blocks' timestamps, where it ended, how many
/// blocks were seen and how many could not be read (no gap is measured across those).
fn watch_stalls(
    cluster: &Cluster,
    i: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64, u64, u64)> {
    let client = cluster.client(i);
    cluster.rt.spawn(async move {
        let mut next: Option<u64> = None;
        let mut previous: Option<u64> = None;
        let (mut worst, mut worst_at, mut seen, mut skipped) = (0u64, 0u64, 0u64, 0u64);
        while !stop.load(Ordering::Relaxed) {
            let tip = client
                .request("keel_status", vec![])
                .await
                .ok()
                .and_then(|s| s["height"].as_u64())
                .unwrap_or(0);
            for height in next.unwrap_or(tip)..=tip {
                let timestamp = client
                    .request("keel_getBlock", vec![height.into()])
                    .await
                    .ok()
                    .and_then(|b| b["timestamp_ms"].as_u64());
                match (timestamp, previous) {
                    (Some(t), Some(p)) if t.saturating_sub(p) > worst => {
                        (worst, worst_at) = (t.saturating_sub(p), height);
                    }
                    (None, _) => skipped += 1,
                    _ => {}
                }
                previous = timestamp;
                seen += u64::from(timestamp.is_some());
                next = Some(height + 1);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (worst, worst_at, seen, skipped)
    })
}

/// The public key in a key file.
fn created_public_key(path: &str) -> String {
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("key")).expect("json");
    file["public_key"].as_str().expect("public key").to_string()
}
