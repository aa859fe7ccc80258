//! The validator lifecycle on a 4-validator devnet, through the `keel` CLI. First: an operator
//! bonds more stake, a new key registers (its proof of possession signed by the key), both
//! take effect at an epoch boundary as voting power, a stranger's bond is refused with a
//! typed reason, an operator unbonds part of its stake (the power drops at a boundary, the
//! stake comes back when its release epoch begins, not before), the newcomer leaves and its stake comes back
//! after the unbonding epochs; the chain stays live and every validator on the same roots
//! throughout. Second: a fifth node outside genesis, not registered yet, restores a snapshot
//! and block-syncs as the validators' guest; then its operator registers it, and it
//! proposes and votes from the epoch its record announced; its operator bonds more; then a genesis validator leaves and the chain goes on without it; then the
//! fifth restores again, is killed with SIGKILL mid-restore, and resumes. Then the devnet
//! scripts: `devnet/join` and `devnet/leave` of a candidate, and `devnet/leave` of an active
//! genesis member (out of the set at a boundary, stopped, the rest going on).

use crate::common::watch::watch_chain;
use crate::common::{
    finish_load, keel, load_options, metric_sum, serial, start_load_with, strip_ansi, Cluster,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN_POWER: u64 = 1_000_000_000;
/// Blocks per epoch of the first test's devnet.
const EPOCH_LENGTH: u64 = 10;

pub(crate) fn query_validators(rpc: &str) -> Value {
    let (ok, out, err) = keel(&["query", "validators", "--rpc", rpc]);
    assert!(ok, "{err}");
    out
}

/// Polls `keel query validators` until `done` holds of its answer.
pub(crate) fn wait_for(cluster: &Cluster, what: &str, done: impl Fn(&Value) -> bool) -> Value {
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

pub(crate) fn power_of(set: &Value, key: &str) -> Option<u64> {
    set["members"]
        .as_array()?
        .iter()
        .find(|m| m["public_key"] == key)
        .and_then(|m| m["power"].as_str()?.parse().ok())
}

pub(crate) fn send(args: &[&str]) -> Value {
    let (ok, receipt, err) = keel(args);
    assert!(ok, "{args:?}: {err}");
    receipt
}

#[test]
fn operators_bond_register_and_leave_through_the_cli() {
    let _guard = serial();
    let cluster = Cluster::start_with_epochs(4, 28_600, 150, 2, EPOCH_LENGTH, |_| {});
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
    let status = registry_entry;
    assert_eq!(
        status(&grown, &newcomer).expect("registered")["status"],
        "active"
    );
    let height = cluster.height(0).expect("height");
    cluster.wait_height(&[0, 1, 2, 3], height + 12, Duration::from_secs(60));
    let balance = |who: &str| {
        let (ok, account, err) = keel(&["query", "account", who, "--rpc", &rpc]);
        assert!(ok, "{err}");
        let hex = account["balance"].as_str().expect("balance").to_string();
        u128::from_str_radix(hex.trim_start_matches("0x"), 16).expect("hex")
    };

    // Node 0's operator unbonds 200 tokens: the stake drops at once, the 200 wait for their
    // release epoch, the power follows at a boundary. More than is bonded is refused.
    let unbond = |amount: &str| {
        send(&[
            "tx",
            "validator",
            "unbond",
            "--rpc",
            &rpc,
            "--key",
            operator0,
            "--validator",
            validator0,
            "--amount",
            amount,
            "--wait",
        ])
    };
    let too_much = unbond("1501");
    assert_eq!(
        too_much["error"]["reason"], "not_enough_stake",
        "{too_much}"
    );
    let token = 10u128.pow(18);
    let operator0_address = created_address(operator0);
    let operator0_before = balance(&operator0_address);
    let unbonded = unbond("200");
    assert_eq!(unbonded["status"], "success", "{unbonded}");
    // Epoch e orders heights e·L + 1 ..= (e + 1)·L.
    let unbond_epoch = (unbonded["block"].as_u64().expect("block") - 1) / EPOCH_LENGTH;
    let release_epoch = unbond_epoch + 1 + keel_types::validator::DEFAULT_UNBONDING_EPOCHS;
    let record0 = status(&query_validators(&rpc), &key0).expect("registered");
    assert_eq!(
        record0["stake"],
        format!("{:#x}", 1_300 * token),
        "{record0}"
    );
    assert!(
        record0["unbonding"]
            .as_array()
            .expect("unbonding")
            .iter()
            .all(|u| u["amount"] == format!("{:#x}", 200 * token)
                && u["release_epoch"] == release_epoch),
        "{record0}"
    );
    // Paid, not before, when the release epoch begins (at the step that fixes its set, the
    // second-to-last block of the epoch before: either answer during that epoch). The
    // balance is read before the set, so a pending answer covers the balance read.
    let paid = |balance: u128| balance + token > operator0_before + 200 * token;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let operator0_now = balance(&operator0_address);
        let out = query_validators(&rpc);
        let epoch = out["set"]["epoch"].as_u64().expect("epoch");
        let pending = status(&out, &key0).expect("registered")["unbonding"] != json!([]);
        if epoch + 1 < release_epoch {
            assert!(
                pending && !paid(operator0_now),
                "paid before epoch {release_epoch}, in {epoch}: {out}"
            );
        }
        if epoch >= release_epoch {
            assert!(!pending, "not paid in epoch {epoch}: {out}");
            assert_eq!(power_of(&out["set"], &key0), Some(1_300 * TOKEN_POWER));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never reached epoch {release_epoch}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let operator0_after = balance(&operator0_address);
    assert!(
        paid(operator0_after) && operator0_after <= operator0_before + 200 * token,
        "{operator0_before} → {operator0_after}"
    );

    // The newcomer leaves: out of the set at the next boundary, its stake back to the
    // funder after the unbonding epochs, and its record gone.
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
    assert!(
        after > before,
        "the stake never came back: {before} → {after}"
    );
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
    let joiner = cluster.add_node(28_850);
    // From here to the end every node's blocks are compared with node 0's as they come,
    // and the gaps between blocks measured.
    let stop = Arc::new(AtomicBool::new(false));
    let watch = watch_chain(&cluster, stop.clone());
    let home = cluster.home(joiner);
    let mut config =
        keel_node::config::NodeConfig::load(&home.join("config.toml")).expect("config");
    config.sync.mode = "snapshot".into();
    // Small chunks: the restore takes several, so the second run can be stopped mid-way.
    config.sync.chunk_bytes = keel_types::proof::MIN_SNAPSHOT_CHUNK_BYTES as u32;
    std::fs::write(home.join("config.toml"), config.to_toml()).expect("config");
    let key_file = home.join("keys/validator.json");
    let key = created_public_key(key_file.to_str().expect("utf8"));
    // Started before its operator registers it, from genesis: the peers admit its key as
    // a guest (p2p guest slots), it restores the latest boundary's state, then follows the
    // chain as an observer.
    cluster.spawn(joiner);
    let spawned = Instant::now();
    let restored = home.join("node.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let log = std::fs::read_to_string(&restored).unwrap_or_default();
        let following = cluster.height(joiner).zip(cluster.height(0));
        if log.contains("snapshot sync: state restored")
            && following.is_some_and(|(j, tip)| j + 5 >= tip)
        {
            break;
        }
        if Instant::now() > deadline {
            cluster.dump_logs();
            let sync_lines: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains("finalized height") || l.contains("0 txs"))
                .take(150)
                .collect();
            panic!(
                "the unregistered joiner never restored and caught up: {following:?}\n{}",
                sync_lines.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !std::fs::metadata(home.join("data/votes.log")).is_ok_and(|m| m.len() > 0),
        "an unregistered joiner signed a vote"
    );
    let guests: u64 = (0..4)
        .map(|i| metric_sum(&cluster.metrics_text(i), "keel_p2p_guests", ""))
        .sum();
    assert!(guests >= 1, "the joiner synced as nobody's guest");
    let funder = cluster.dev_key(0);
    // Its peers drop a guest's gossip, so its own RPC refuses transactions, saying why,
    // rather than keep them in a pool they never leave.
    let (ok, _, err) = keel(&[
        "tx",
        "transfer",
        "--rpc",
        &cluster.rpc(joiner),
        "--key",
        funder.to_str().expect("utf8"),
        "--to",
        "0x00000000000000000000000000000000000000bb",
        "--amount",
        "1",
    ]);
    assert!(
        !ok && err.contains("not_relayed"),
        "an unregistered node admitted: {err}"
    );
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
    let votes_log = home.join("data/votes.log");
    let voted = || std::fs::metadata(&votes_log).map_or(0, |m| m.len()) > 0;
    let mut first_vote: Option<Duration> = None;
    let entered = wait_for(&cluster, "the joiner never entered the set", |out| {
        power_of(&out["set"], &key) == Some(600 * TOKEN_POWER)
    });
    // The registry announced the epoch it becomes active at (the set of epoch N is fixed in
    // epoch N - 1, and the record says `active` from N); the set holds it from that epoch.
    let record = registry_entry(&entered, &key).expect("registered");
    assert_eq!(record["status"], "active", "{record}");
    let announced = record["changed_epoch"].as_u64().expect("changed_epoch");
    let current = entered["set"]["epoch"].as_u64().expect("set epoch");
    assert!(announced >= 1 && announced <= current, "{entered}");
    // The certified epoch chain agrees: the set epoch `announced - 1` committed to is the
    // first that holds the joiner.
    let holds_joiner = |epoch: u64| {
        let proof = cluster
            .call(0, "keel_getEpochProof", vec![json!(epoch)])
            .expect("epoch proof");
        let change = &proof["changes"][0];
        assert_eq!(change["epoch"], epoch, "{proof}");
        let encoded = change["encoded"].as_str().expect("encoded");
        let bytes = hex::decode(encoded.trim_start_matches("0x")).expect("hex");
        let change = <keel_app::epoch_proof::EpochChange as keel_types::Canonical>::decode(&bytes)
            .expect("an epoch change");
        let raw = change.next_set.value.expect("a next set");
        let keel_state::Entry::Live { value, .. } = keel_state::Entry::decode(&raw).expect("entry")
        else {
            panic!("an expired set");
        };
        let set = <keel_types::validator::EpochSet as keel_types::Canonical>::decode(&value)
            .expect("a set");
        assert_eq!(set.epoch, epoch + 1);
        set.members.iter().any(|m| m.key.to_hex() == key)
    };
    assert!(holds_joiner(announced - 1), "not in the set of {announced}");
    assert!(
        announced < 2 || !holds_joiner(announced - 2),
        "in a set before {announced}"
    );
    // `--epoch` answers the set of that epoch while state holds it (the current one and the
    // one before; the next only during the epoch's last block), and none for an epoch long
    // gone.
    let current = query_validators(&rpc)["epoch"].as_u64().expect("epoch");
    let (ok, at_epoch, err) = keel(&[
        "query",
        "validators",
        "--rpc",
        &rpc,
        "--epoch",
        &current.to_string(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(at_epoch["epoch"], current, "{at_epoch}");
    assert_eq!(at_epoch["set"]["epoch"], current, "{at_epoch}");
    assert_eq!(power_of(&at_epoch["set"], &key), Some(600 * TOKEN_POWER));
    let (ok, gone, err) = keel(&["query", "validators", "--rpc", &rpc, "--epoch", "0"]);
    assert!(ok, "{err}");
    assert!(gone["set"].is_null(), "{gone}");
    // Its operator bonds 100 more tokens while it is active: 700 tokens of power from a
    // later boundary.
    let bonded = send(&[
        "tx",
        "validator",
        "bond",
        "--rpc",
        &rpc,
        "--key",
        funder.to_str().expect("utf8"),
        "--validator",
        &key,
        "--amount",
        "100",
        "--wait",
    ]);
    assert_eq!(bonded["status"], "success", "{bonded}");
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
    // It signed nothing before the announced epoch.
    let first_signed = first_signed_epoch(&votes_log).expect("a signed vote");
    assert!(
        first_signed >= announced,
        "signed a vote in epoch {first_signed}, active from {announced}"
    );
    wait_for(&cluster, "the bond never became power", |out| {
        power_of(&out["set"], &key) == Some(700 * TOKEN_POWER)
    });
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
    // The status page's validators are that set too: node 0 lists the joiner, in the set
    // with its power, and saw it propose; the joiner knows its own row.
    let row_of = |i: usize, key: &str| {
        let list = cluster
            .call(i, "keel_getValidators", vec![])
            .expect("validators");
        assert_eq!(list["members"], 5, "{list}");
        list["validators"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["public_key"] == key).cloned())
            .unwrap_or_else(|| panic!("{key} not listed: {list}"))
    };
    let row = row_of(0, &key);
    assert_eq!(row["in_set"], true, "{row}");
    assert!(row["power"].as_str().is_some_and(|p| p != "0"), "{row}");
    assert!(row["proposed"].as_u64().unwrap_or(0) >= 1, "{row}");
    assert_eq!(row_of(joiner, &key)["self"], true);
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
    let list = cluster
        .call(0, "keel_getValidators", vec![])
        .expect("validators");
    assert_eq!(list["members"], 4, "{list}");
    let gone = list["validators"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["public_key"] == key3.as_str())
                .cloned()
        })
        .unwrap_or_else(|| panic!("the validator that left is not listed: {list}"));
    assert_eq!(
        (&gone["in_set"], &gone["power"]),
        (&json!(false), &json!("0")),
        "{gone}"
    );

    // Second run: the fifth restores again from an empty state directory (its vote log
    // kept), slowed by the fault hook, and is killed with SIGKILL once some chunks are in.
    // By then the load has added about a thousand accounts: several chunks.
    cluster.wait_height(&[0], load_started + 170, Duration::from_secs(60));
    cluster.kill9(joiner);
    std::fs::remove_dir_all(home.join("data/state")).expect("remove state");
    let delay = (
        keel_node::snapshot::FAULT_CHUNK_DELAY_ENV,
        "3000".to_string(),
    );
    cluster.spawn_with_env(joiner, &[delay]);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Killed once a chunk is counted (each is counted after its 3 s pause, and the next,
    // already fetched, is written at once; writing it waits for the first one's flush), so
    // the resumed restore must start past the first chunk, and this state (four chunks in
    // the runs measured) leaves it chunks of its own to fetch.
    let (before_kill, chunks_before_kill) = loop {
        // Its metrics port opens once the process is up.
        let listening = std::net::TcpStream::connect(cluster.metrics_url(joiner)).is_ok();
        let chunks = match listening {
            true => crate::common::metric_sum(
                &cluster.metrics_text(joiner),
                keel_node::metrics::SYNC_CHUNKS,
                "",
            ),
            false => 0,
        };
        let snapshot = cluster
            .call(joiner, "keel_status", vec![])
            .map(|s| s["sync"]["snapshot"].clone())
            .unwrap_or(Value::Null);
        if snapshot["phase"] == "state" && chunks >= 1 {
            break (snapshot, chunks);
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
    eprintln!("killed mid-restore at {before_kill} ({chunks_before_kill} chunks in)");
    assert_eq!(
        before_kill["permille"].as_u64().map(|p| p < 1000),
        Some(true),
        "{before_kill}"
    );
    cluster.spawn(joiner);
    let height = cluster.height(0).expect("height");
    cluster.wait_height(&[0, 1, 2, 3, joiner], height + 12, Duration::from_secs(90));
    // It resumed the same boundary from where it was stopped: it starts after the last
    // key whose batch was written whole (within a chunk of what it reported before the
    // kill), not from the first.
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
    // The progress reported before the kill may include the last batch, whose flush a
    // SIGKILL can lose (docs/validators.md: at most one chunk and a leaf fetched again): it
    // resumes past the start, and no more than about a chunk's share of the key space below
    // what it reported (twice the mean share of the chunks in by then: chunks of one
    // budget differ in key-space share as the key hashes fall).
    let reported = before_kill["permille"].as_u64().expect("permille");
    let chunk_permille = reported.div_ceil(chunks_before_kill.max(1));
    eprintln!("resumed at {resumed_at} permille");
    // Killed mid-way: the resumed run restored entries of its own, and started past the
    // first chunk's.
    assert!(snapshot["entries"].as_u64().unwrap_or(0) > 0, "{snapshot}");
    assert!(resumed_at > 0, "resumed from the start: {before_kill}");
    assert!(
        resumed_at + 2 * chunk_permille >= reported,
        "resumed at {resumed_at} permille, more than a chunk ({chunk_permille}) below the {before_kill} reported before the kill ({chunks_before_kill} chunks)"
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
    let watched = cluster.rt.block_on(watch).expect("chain watch");
    eprintln!(
        "longest gap between blocks: {} ms at height {} ({} blocks, {} missed); heights compared with node 0 per node: {:?}",
        watched.worst_gap_ms, watched.worst_gap_at, watched.seen, watched.skipped, watched.compared
    );
    assert!(watched.divergences.is_empty(), "{:#?}", watched.divergences);
    assert!(watched.seen > 100 && watched.skipped == 0, "{watched:?}");
    // Every node was compared at most of the heights it ran through: the genesis
    // validators all along, the joiner between its restores and after.
    assert!(
        watched.compared[1..4]
            .iter()
            .all(|&c| c + 20 >= watched.seen)
            && watched.compared[joiner] > 50,
        "{watched:?}"
    );
    assert!(
        watched.worst_gap_ms <= 2 * timeout_base_ms,
        "the chain stalled {} ms before height {} (bound: two view timeouts)",
        watched.worst_gap_ms,
        watched.worst_gap_at
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
    let devnet = crate::devnet::chaos::ScriptedDevnet::on_loopback(&home.path().join("devnet"));
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
    let before = query_validators(&rpc);
    assert_eq!(
        registry_entry(&before, &key).expect("registered")["stake"]
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
        registry_entry(&after, &key).expect("still registered while its stake unbonds")["status"],
        "leaving",
        "{after}"
    );
}

/// Validator `i`'s RPC URL in a scripted devnet.
fn devnet_rpc(dir: &std::path::Path, i: usize) -> String {
    let config = keel_node::config::NodeConfig::load(&dir.join(format!("node{i}/config.toml")))
        .expect("config");
    format!("http://{}", config.rpc.listen)
}

/// The registry entry of `key` in a `keel query validators` answer.
pub(crate) fn registry_entry(out: &Value, key: &str) -> Option<Value> {
    out["registry"]
        .as_array()
        .and_then(|r| r.iter().find(|v| v["public_key"] == key).cloned())
}

/// The epoch of the first vote (notarize, nullify or finalize) in a node's vote log.
fn first_signed_epoch(path: &std::path::Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let (records, _) = keel_consensus::votelog::parse(&bytes);
    records
        .iter()
        .filter(|r| !matches!(r, keel_consensus::votelog::VoteRecord::EnteredView { .. }))
        .map(|r| r.epoch())
        .min()
}

/// The public key in a key file.
pub(crate) fn created_public_key(path: &str) -> String {
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("key")).expect("json");
    file["public_key"].as_str().expect("public key").to_string()
}

/// `devnet/leave` of an active genesis member, as an operator runs it, on a devnet of
/// 10-height epochs: its operator's leave takes it out of the set at a boundary, the script
/// then stops its process, and the three left go on finalizing the same blocks.
#[test]
fn devnet_leave_retires_an_active_member_and_the_rest_go_on() {
    let _guard = serial();
    let home = tempfile::tempdir().expect("tempdir");
    let devnet = crate::devnet::chaos::ScriptedDevnet::on_loopback(&home.path().join("devnet"));
    let up = devnet.run("up", &["--fresh", "--epoch-length", "10"]);
    assert!(up.status.success(), "devnet/up failed");
    let key = created_public_key(
        devnet
            .dir
            .join("node3/keys/validator.json")
            .to_str()
            .expect("utf-8 path"),
    );
    let rpcs: Vec<String> = (0..4).map(|i| devnet_rpc(&devnet.dir, i)).collect();
    let members = |out: &Value| -> Vec<String> {
        out["set"]["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter_map(|m| m["public_key"].as_str().map(str::to_string))
            .collect()
    };
    let before = query_validators(&rpcs[0]);
    assert!(members(&before).contains(&key), "{before}");
    assert_eq!(members(&before).len(), 4, "{before}");
    let left = devnet.run("leave", &["3"]);
    assert!(left.status.success(), "devnet/leave failed");
    let line: Value = serde_json::from_slice(&left.stdout).expect("devnet/leave's JSON line");
    assert_eq!(
        (line["validator"].clone(), line["left"].clone()),
        (json!(3), json!(true))
    );
    let after = query_validators(&rpcs[0]);
    assert_eq!(members(&after).len(), 3, "{after}");
    assert!(!members(&after).contains(&key), "{after}");
    assert_eq!(
        registry_entry(&after, &key).expect("still registered while it unbonds")["status"],
        "leaving",
        "{after}"
    );
    // Stopped: its RPC goes quiet.
    let deadline = Instant::now() + Duration::from_secs(20);
    while keel(&["query", "status", "--rpc", &rpcs[3]]).0 {
        assert!(
            Instant::now() < deadline,
            "validator 3 still answers after leaving"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The three go on past the next boundary, on the same blocks.
    let height = |rpc: &str| {
        let (ok, status, err) = keel(&["query", "status", "--rpc", rpc]);
        assert!(ok, "{err}");
        status["height"].as_u64().expect("height")
    };
    let target = height(&rpcs[0]) + 12;
    let deadline = Instant::now() + Duration::from_secs(60);
    while rpcs[..3].iter().any(|rpc| height(rpc) < target) {
        assert!(
            Instant::now() < deadline,
            "the three left stopped short of {target}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let hash = |rpc: &str| {
        let (ok, block, err) = keel(&["query", "block", &target.to_string(), "--rpc", rpc]);
        assert!(ok, "{err}");
        (block["hash"].clone(), block["state_root"].clone())
    };
    let first = hash(&rpcs[0]);
    assert!(first.0.is_string() && first.1.is_string(), "{first:?}");
    for rpc in &rpcs[1..3] {
        assert_eq!(hash(rpc), first, "validators disagree at {target}");
    }
}
