//! Bootstrap peers (issue 21): a node joining with no state knows only genesis's validator
//! addresses. Once the validator has moved (its registry record and its process on a new
//! port), a joiner cannot find it — unless `keel init --join --peers 0xKEY@ADDR` names it:
//! then it restores a snapshot from it and follows the chain.

use crate::common::{keel, serial, strip_ansi, Cluster};
use serde_json::Value;
use std::time::{Duration, Instant};

const BASE_PORT: u16 = 30_000;
/// Where the validator moves to.
const MOVED_P2P_PORT: u16 = 30_050;
const JOINER_BASE_PORT: u16 = 30_060;

fn joiner_log(cluster: &Cluster, i: usize) -> String {
    strip_ansi(&std::fs::read_to_string(cluster.home(i).join("node.log")).unwrap_or_default())
}

#[test]
fn a_joiner_finds_a_moved_validator_through_its_bootstrap_peer() {
    let _guard = serial();
    let mut cluster = Cluster::start_with_epochs(1, BASE_PORT, 100, 2, 10, |_| {});
    cluster.wait_height(&[0], 5, Duration::from_secs(60));
    let rpc = cluster.rpc(0);
    let home0 = cluster.home(0);
    let validator = keel_node::keys::read(&home0.join("keys/validator.json")).expect("key");
    let validator_key = validator.public_key().to_hex();

    // The validator moves: its record first (peers dial what the registry says), then its
    // process. Genesis still names the old address.
    let moved = format!("127.0.0.1:{MOVED_P2P_PORT}");
    let (ok, updated, err) = keel(&[
        "tx",
        "validator",
        "update",
        "--rpc",
        &rpc,
        "--key",
        home0.join("keys/operator.json").to_str().expect("utf8"),
        "--validator",
        &validator_key,
        "--p2p",
        &moved,
        "--wait",
    ]);
    assert!(ok && updated["status"] == "success", "{updated} {err}");
    cluster.kill9(0);
    cluster.configs[0].p2p.listen = moved.clone();
    std::fs::write(home0.join("config.toml"), cluster.configs[0].to_toml()).expect("config");
    cluster.spawn(0);
    // Past a boundary: the state a joiner restores has the new address.
    let height = cluster.height(0).unwrap_or(0);
    cluster.wait_height(&[0], height + 25, Duration::from_secs(60));

    // The joiner's home, from `keel init --join --peers`.
    let home = cluster.home(1);
    let peer = format!("{validator_key}@{moved}");
    let (ok, report, err) = keel(&[
        "init",
        "--join",
        "--genesis",
        home0.join("genesis.json").to_str().expect("utf8"),
        "--home",
        home.to_str().expect("utf8"),
        "--base-port",
        &JOINER_BASE_PORT.to_string(),
        "--peers",
        &peer,
    ]);
    assert!(ok, "{err}");
    assert_eq!(report["peers"], serde_json::json!([peer]), "{report}");
    // Its key below the validator's: the joiner is the one that dials (of two peers, the
    // smaller key dials), so no inbound link from the validator can stand in for the
    // bootstrap address.
    let key_file = home.join("keys/validator.json");
    let key = (0u64..)
        .map(|n| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&n.to_le_bytes());
            keel_types::SecretKey::from_seed(seed)
        })
        .find(|k| k.public_key().0 < validator.public_key().0)
        .expect("a smaller key");
    std::fs::remove_file(&key_file).expect("replace the key");
    keel_node::keys::write(&key_file, &key).expect("key");
    let joiner = cluster.adopt();
    let (ok, registered, err) = keel(&[
        "tx",
        "validator",
        "register",
        "--rpc",
        &rpc,
        "--key",
        cluster.dev_key(0).to_str().expect("utf8"),
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

    // Without the bootstrap peer it finds no one: it waits, restoring nothing.
    let with_peers = cluster.configs[joiner].clone();
    let mut without = with_peers.clone();
    without.p2p.bootstrap.clear();
    std::fs::write(home.join("config.toml"), without.to_toml()).expect("config");
    cluster.spawn(joiner);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !joiner_log(&cluster, joiner).contains("snapshot sync: waiting for a peer") {
        assert!(
            Instant::now() < deadline,
            "{}",
            joiner_log(&cluster, joiner)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(!joiner_log(&cluster, joiner).contains("snapshot sync: state restored"));
    cluster.kill9(joiner);

    // With it, it restores from the moved validator and follows the chain.
    std::fs::write(home.join("config.toml"), with_peers.to_toml()).expect("config");
    cluster.spawn(joiner);
    let height = cluster.height(0).unwrap_or(0);
    cluster.wait_height(&[0, joiner], height + 10, Duration::from_secs(90));
    let log = joiner_log(&cluster, joiner);
    assert!(log.contains("snapshot sync: state restored"), "{log}");
    let status: Value = cluster.call(joiner, "keel_status", vec![]).expect("status");
    assert_eq!(status["validators"], 2, "{status}");
    assert!(cluster.check_roots() > 0);
}
