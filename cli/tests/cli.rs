//! The `keel` binary's set-up commands, run as a real process: `keys new` and `init`, and
//! the files they write (keys, genesis, config) read back through the library.

use keel_node::config::NodeConfig;
use keel_node::genesis::{Genesis, GenesisError};
use keel_node::keys;
use keel_state::StateViewExt;
use keel_store::{Store, StoreOptions};
use keel_types::{Address, U256};
use std::path::Path;
use std::process::Command;

fn keel(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .expect("run keel");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json, stderr)
}

#[test]
fn keys_new_writes_a_private_key_file_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("k/agent.json");
    let p = path.to_str().expect("utf8");
    let (ok, json, err) = keel(&["keys", "new", "--out", p]);
    assert!(ok, "{err}");
    let secret = keys::read(&path).expect("read back");
    let address = Address::from_public_key(&secret.public_key());
    assert_eq!(json["address"], address.to_hex());
    assert_eq!(json["public_key"], secret.public_key().to_hex());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (ok, _, err) = keel(&["keys", "new", "--out", p]);
    assert!(!ok);
    assert!(
        err.starts_with("error: ") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one-line error");
    // A tampered key file is refused with a reason.
    let text = std::fs::read_to_string(&path).expect("read");
    let mut file: keys::KeyFile = serde_json::from_str(&text).expect("json");
    file.address = Address([9; 20]);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_string(&file).expect("json")).expect("write");
    assert!(keys::read(&bad)
        .expect_err("must fail")
        .to_string()
        .contains("address does not match"));
}

#[test]
fn init_lays_out_a_network_whose_genesis_every_node_shares() {
    let dir = tempfile::tempdir().expect("dir");
    let home = dir.path().join("net");
    let h = home.to_str().expect("utf8");
    let (ok, report, err) = keel(&[
        "init",
        "--home",
        h,
        "--validators",
        "4",
        "--chain-id",
        "99",
        "--base-port",
        "20000",
        "--dev-accounts",
        "3",
        "--genesis-time-ms",
        "1700000000000",
    ]);
    assert!(ok, "{err}");
    assert_eq!(report["chain_id"], 99);
    assert_eq!(report["nodes"].as_array().map(Vec::len), Some(4));
    assert_eq!(report["nodes"][2]["rpc"], "http://127.0.0.1:20102");

    let genesis = Genesis::load(&home.join("node0/genesis.json")).expect("genesis");
    assert_eq!(report["genesis_hash"], genesis.hash().to_hex());
    assert_eq!(genesis.validators.len(), 4);
    // Three agent dev accounts, each validator's operator, and the prefunded Ethereum dev
    // account last.
    assert_eq!(genesis.balances.len(), 3 + 4 + 1);
    assert_eq!(
        genesis.balances[7].address.to_hex(),
        keel_cli::init::ETH_DEV_ADDRESS
    );
    for (i, v) in genesis.validators.iter().enumerate() {
        let operator = v.operator.expect("each validator has an operator");
        assert_eq!(genesis.balances[3 + i].address, operator);
        let file = home.join(format!("node{i}/keys/operator.json"));
        let key = keys::read(&file).expect("the operator key file");
        assert_eq!(Address::from_public_key(&key.public_key()), operator);
    }
    assert!(home.join(keel_cli::init::ETH_DEV_ACCOUNT_FILE).exists());
    for i in 0..4 {
        let node = home.join(format!("node{i}"));
        assert_eq!(
            Genesis::load(&node.join("genesis.json")).expect("genesis"),
            genesis
        );
        let key = keys::read(&node.join("keys/validator.json")).expect("key");
        assert_eq!(genesis.validators[i].public_key, key.public_key());
        let config = NodeConfig::load(&node.join("config.toml")).expect("config");
        assert_eq!(config.p2p.listen, format!("127.0.0.1:{}", 20000 + i));
        assert_eq!(genesis.validators[i].p2p, config.p2p.listen);
    }
    let accounts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(home.join("accounts.json")).expect("accounts"),
    )
    .expect("json");
    for (j, account) in accounts.as_array().expect("list").iter().enumerate() {
        let key =
            keys::read(Path::new(account["key_file"].as_str().expect("path"))).expect("dev key");
        assert_eq!(
            account["address"],
            Address::from_public_key(&key.public_key()).to_hex()
        );
        assert_eq!(genesis.balances[j].address.to_hex(), account["address"]);
    }

    // Every node's genesis state has the same root; a store reopened with another genesis
    // is refused.
    let mut roots = Vec::new();
    for i in 0..2 {
        let data = home.join(format!("node{i}/data"));
        let store = Store::open(&data.join("db"), StoreOptions::default()).expect("store");
        roots.push(genesis.apply(&store, &data).expect("apply"));
        assert_eq!(
            genesis.apply(&store, &data).expect("reapply"),
            roots[i],
            "idempotent"
        );
        let funded = store
            .latest_view()
            .account(&genesis.balances[0].address)
            .expect("read");
        assert_eq!(funded.map(|a| a.balance), Some(U256::from(10u128.pow(24))));
        let mut other = genesis.clone();
        other.chain_id += 1;
        assert!(matches!(
            other.apply(&store, &data),
            Err(GenesisError::Mismatch { .. })
        ));
    }
    assert_eq!(roots[0], roots[1]);
    // The marker is written (and synced) before the genesis commit: a crash between them
    // leaves the marker over an empty store, which the next start commits into. (The other
    // order left a committed store without a marker, refused at every start.)
    let crashed = home.join("crashed/data");
    std::fs::create_dir_all(&crashed).expect("dir");
    std::fs::copy(
        home.join("node0/data/genesis.hash"),
        crashed.join("genesis.hash"),
    )
    .expect("marker");
    let store = Store::open(&crashed.join("db"), StoreOptions::default()).expect("store");
    assert_eq!(genesis.apply(&store, &crashed).expect("apply"), roots[0]);

    // A second init into the same home is refused.
    let (ok, _, err) = keel(&["init", "--home", h]);
    assert!(!ok && err.contains("already exists"), "{err}");
}

#[test]
fn bad_genesis_and_config_files_get_one_line_reasons() {
    let dir = tempfile::tempdir().expect("dir");
    let home = dir.path().join("net");
    let (ok, _, err) = keel(&[
        "init",
        "--home",
        home.to_str().expect("utf8"),
        "--validators",
        "1",
        "--base-port",
        "21000",
    ]);
    assert!(ok, "{err}");
    let path = home.join("node0/genesis.json");
    let genesis = Genesis::load(&path).expect("genesis");

    let mut twice = genesis.clone();
    twice.validators.push(twice.validators[0].clone());
    assert!(twice
        .validate()
        .expect_err("must fail")
        .to_string()
        .contains("listed twice"));
    let mut no_chain = genesis.clone();
    no_chain.chain_id = 0;
    assert!(no_chain.validate().is_err());
    let mut weak = genesis.clone();
    weak.validators[0].public_key = keel_types::PublicKey([0; 32]);
    assert!(weak
        .validate()
        .expect_err("must fail")
        .to_string()
        .contains("not a valid ed25519 key"));
    // The plugin gas: a genesis without it hashes as before the field existed; out of its
    // range it is refused.
    assert!(!genesis.to_json().contains("plugin_gas"));
    for gas in [0, 49_999, keel_types::limits::MAX_TX_GAS + 1] {
        let mut bad = genesis.clone();
        bad.plugin_gas = gas;
        assert!(bad
            .validate()
            .expect_err("must fail")
            .to_string()
            .contains("plugin_gas"));
    }
    let mut custom = genesis.clone();
    custom.plugin_gas = 50_000;
    assert!(custom.validate().is_ok() && custom.to_json().contains("\"plugin_gas\": 50000"));
    assert_ne!(custom.hash(), genesis.hash());
    std::fs::write(&path, "{\"chain_id\": 1, \"surprise\": true}").expect("write");
    assert!(Genesis::load(&path).is_err());

    let config = home.join("node0/config.toml");
    std::fs::write(&config, "[rpc]\nlisten = \"nowhere\"\n").expect("write");
    assert!(NodeConfig::load(&config)
        .expect_err("must fail")
        .to_string()
        .contains("rpc.listen"));
    std::fs::write(&config, "[rpc]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").expect("write");
    assert!(
        NodeConfig::load(&config).is_err(),
        "unknown fields are refused"
    );
    std::fs::write(&config, "").expect("write");
    assert_eq!(
        NodeConfig::load(&config).expect("defaults"),
        NodeConfig::default()
    );
}
