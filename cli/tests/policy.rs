//! docs/policies.md's worked example on a 4-validator devnet, through the `keel` CLI and
//! RPC: an agent's session key limited to one DEX router and 100 units per epoch simulates,
//! acts, hits the cap, reads why, waits for the reset, and is revoked; every validator ends
//! on the same roots.

use crate::common::{keel, serial, Cluster};
use keel_types::{Address, Canonical, Sender, Transaction, TxBody, U256};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A router that takes any call with value (the worked example's DEX, reduced to what the
/// policy sees: an address, a selector, value).
const ROUTER_WAT: &str = r#"(module
  (memory (export "memory") 1 1)
  (func (export "call") (param i32) (result i32) (i32.const 0)))"#;
const SWAP: &str = "0x12345678";

#[test]
fn an_agent_session_key_simulates_acts_hits_its_cap_reads_why_and_waits_for_the_reset() {
    let _guard = serial();
    let cluster = Cluster::start_with_epochs(4, 28_200, 200, 2, 20, |_| {});
    let rpc = cluster.rpc(0);
    let agent_key = cluster.dev_key(0);
    let agent_key = agent_key.to_str().expect("utf8");
    let dir = cluster.dir.path();
    let session_file = dir.join("session.json");
    let session_path = session_file.to_str().expect("utf8");
    let (ok, session, err) = keel(&["keys", "new", "--out", session_path]);
    assert!(ok, "{err}");
    let agent_file: Value =
        serde_json::from_str(&std::fs::read_to_string(agent_key).expect("key")).expect("json");
    let agent = agent_file["address"].as_str().expect("address").to_string();

    // The DEX router, deployed by someone else.
    let router_file = dir.join("router.wat");
    std::fs::write(&router_file, ROUTER_WAT).expect("write");
    let deployer = cluster.dev_key(1);
    let (ok, receipt, err) = crate::common::deploy(
        &rpc,
        deployer.to_str().expect("utf8"),
        "wasm",
        &router_file,
        None,
    );
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    let router = receipt["contract_address"]
        .as_str()
        .expect("router")
        .to_string();

    // The agent gives the session key the router and 100 units per epoch.
    let (ok, added, err) = keel(&[
        "tx",
        "policy",
        "session-key",
        "add",
        "--rpc",
        &rpc,
        "--key",
        agent_key,
        "--session-key",
        session_path,
        "--expires-at",
        "100000",
        "--target",
        &router,
        "--max-value-per-epoch",
        "100",
        "--wait",
    ]);
    assert!(ok && added["status"] == "success", "{added} {err}");
    assert_eq!(
        added["logs"][0]["data"],
        format!("0x{:064x}", 6),
        "session key added"
    );

    // Simulate first: allowed, and what would be left.
    let simulated = simulate(&cluster, &session_file, &agent, &router, 60);
    assert_eq!(simulated["status"], "success", "{simulated}");
    assert_eq!(simulated["policy"]["allowed"], true, "{simulated}");
    assert_eq!(simulated["policy"]["session_remaining"]["value"], "0x28");
    // Act as the agent: 60.
    let swap = |value: &str| {
        keel(&[
            "tx",
            "call",
            "--rpc",
            &rpc,
            "--key",
            session_path,
            "--as",
            &agent,
            "--to",
            &router,
            "--data",
            SWAP,
            "--value",
            value,
            "--wait",
        ])
    };
    let (ok, receipt, err) = swap("60");
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    // 50 more is over the cap: the node refuses it at admission and says why.
    let simulated = simulate(&cluster, &session_file, &agent, &router, 50);
    assert_eq!(simulated["status"], "rejected", "{simulated}");
    let denial = &simulated["error"];
    assert_eq!(denial["code"], "policy_denied", "{simulated}");
    assert_eq!(denial["rule"], "max_value_per_epoch");
    assert_eq!(denial["scope"], "session_key");
    assert_eq!(
        (denial["limit"].clone(), denial["used"].clone()),
        (json!("0x64"), json!("0x6e"))
    );
    let resets = denial["resets_at_epoch"].as_u64().expect("resets");
    let (ok, _, err) = swap("50");
    assert!(!ok, "admitted over the cap");
    assert!(
        err.contains("policy_denied") && err.contains("max_value_per_epoch"),
        "{err}"
    );
    // Another target is outside the key's scope.
    let (ok, _, err) = keel(&[
        "tx",
        "transfer",
        "--rpc",
        &rpc,
        "--key",
        session_path,
        "--as",
        &agent,
        "--to",
        "0x00000000000000000000000000000000000000bb",
        "--amount",
        "1",
    ]);
    assert!(!ok && err.contains("target"), "{err}");
    // What is left, and when it resets.
    let (ok, policy, err) = keel(&["query", "policy", &agent, "--rpc", &rpc]);
    assert!(ok, "{err}");
    let key = &policy["session_keys"][0];
    assert_eq!(key["key"], session["public_key"], "{policy}");
    assert_eq!(key["spent"]["value"], "0x3c", "{policy}");
    assert_eq!(key["remaining"]["value"], "0x28", "{policy}");
    assert_eq!(policy["resets_at_epoch"].as_u64(), Some(resets), "{policy}");

    // Wait for the reset: then the budget is whole again.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = cluster.call(0, "keel_status", vec![]).expect("status");
        if status["epoch"].as_u64().unwrap_or(0) >= resets {
            break;
        }
        assert!(Instant::now() < deadline, "no epoch {resets}: {status}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (ok, receipt, err) = swap("50");
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");

    // Revoked, the key is nothing.
    let (ok, revoked, err) = keel(&[
        "tx",
        "policy",
        "session-key",
        "revoke",
        "--rpc",
        &rpc,
        "--key",
        agent_key,
        "--session-key",
        session_path,
        "--wait",
    ]);
    assert!(ok && revoked["status"] == "success", "{revoked} {err}");
    let (ok, _, err) = swap("1");
    assert!(!ok && err.contains("session_key_unknown"), "{err}");
    // A plugin the agent attaches to itself (a tightening): the owner-kept allow-list lists
    // only the router. RPC runs it before admitting, so the agent hears its denial at once.
    let allowlist_path = crate::common::contract("allowlist.wasm");
    let (ok, receipt, err) = crate::common::deploy(&rpc, agent_key, "wasm", &allowlist_path, None);
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    let allowlist = receipt["contract_address"]
        .as_str()
        .expect("plugin")
        .to_string();
    let list = format!(
        "0x6c6f31f2{:0>64}{:064x}",
        router.trim_start_matches("0x"),
        1
    );
    let (ok, receipt, err) = keel(&[
        "tx", "call", "--rpc", &rpc, "--key", agent_key, "--to", &allowlist, "--data", &list,
        "--wait",
    ]);
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    let (ok, set, err) = keel(&[
        "tx", "policy", "set", "--rpc", &rpc, "--key", agent_key, "--plugin", &allowlist, "--wait",
    ]);
    assert!(ok && set["status"] == "success", "{set} {err}");
    let (ok, _, err) = keel(&[
        "tx",
        "transfer",
        "--rpc",
        &rpc,
        "--key",
        agent_key,
        "--to",
        "0x00000000000000000000000000000000000000bb",
        "--amount",
        "1",
        "--gas",
        "300000",
    ]);
    assert!(!ok && err.contains("plugin_denied"), "{err}");
    let (ok, receipt, err) = keel(&[
        "tx", "call", "--rpc", &rpc, "--key", agent_key, "--to", &router, "--data", SWAP,
        "--value", "1", "--gas", "300000", "--wait",
    ]);
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    // A wallet estimating a policy change in its call form gets the change's gas.
    let change = TxBody::SetController {
        account: Address::from_hex(&agent).expect("address"),
        controller: None,
    };
    let estimate = cluster
        .call(
            0,
            "eth_estimateGas",
            vec![json!({
                "from": agent,
                "to": keel_types::policy::POLICY_ADDRESS.to_hex(),
                "data": format!("0x{}", hex::encode(change.policy_call_data())),
            })],
        )
        .expect("estimate");
    let gas = change.policy_gas().expect("gas");
    assert_eq!(estimate, json!(format!("{gas:#x}")));
    cluster.check_roots();
}

/// `keel_simulate` of a call to `router` with `value`, signed by the session key in `file`
/// acting as `agent`.
fn simulate(
    cluster: &Cluster,
    file: &std::path::Path,
    agent: &str,
    router: &str,
    value: u64,
) -> Value {
    let key = keel_node::keys::read(file).expect("session key");
    let status = cluster.call(0, "keel_status", vec![]).expect("status");
    let account = cluster
        .call(0, "keel_getAccount", vec![json!(agent)])
        .expect("account");
    let agent = Address::from_hex(agent).expect("address");
    let tx = Transaction {
        chain_id: status["chain_id"].as_u64().expect("chain id"),
        sender: Sender::Session {
            account: agent,
            key: key.public_key(),
        },
        nonce: account["pending_nonce"].as_u64().expect("nonce"),
        gas_limit: 1_000_000,
        gas_price: status["min_gas_price"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
        body: TxBody::Call {
            to: Address::from_hex(router).expect("router"),
            data: hex::decode(&SWAP[2..]).expect("hex"),
            value: U256::from(value),
        },
    }
    .sign(&key);
    let raw = format!("0x{}", hex::encode(tx.encode()));
    cluster
        .call(0, "keel_simulate", vec![json!(raw)])
        .expect("simulate")
}

/// Jurisdiction rules through the CLI (issue 20 item 3) on a 4-validator devnet whose genesis
/// names one attester: a shop caps what untagged callers send it and denies KP; an untagged
/// agent is refused at admission with the typed denial; the attester tags it US and it pays;
/// tagged KP as well, it is refused again; `keel query policy` shows the tags and the rules;
/// every validator ends on the same roots.
#[test]
fn jurisdiction_tags_and_rules_through_the_cli() {
    let _guard = serial();
    let keys = tempfile::tempdir().expect("tempdir");
    let attester_file = keys.path().join("attester.json");
    let attester_path = attester_file.to_str().expect("utf8");
    let (ok, attester, err) = keel(&["keys", "new", "--out", attester_path]);
    assert!(ok, "{err}");
    let attester_address =
        Address::from_hex(attester["address"].as_str().expect("address")).expect("address");
    let cluster = Cluster::start_with_genesis(
        4,
        29_300,
        200,
        2,
        (20, 0, 0),
        |_| {},
        |genesis| {
            genesis.attesters = vec![attester_address];
            genesis.balances.push(keel_node::genesis::GenesisBalance {
                address: attester_address,
                balance: U256::from(10u128.pow(21)),
            });
        },
    );
    let rpc = cluster.rpc(0);
    let address_of = |path: &std::path::Path| -> String {
        let file: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("key")).expect("json");
        file["address"].as_str().expect("address").to_string()
    };
    let (shop_key, agent_key) = (cluster.dev_key(0), cluster.dev_key(1));
    let (shop, agent) = (address_of(&shop_key), address_of(&agent_key));
    let (shop_key, agent_key) = (
        shop_key.to_str().expect("utf8").to_string(),
        agent_key.to_str().expect("utf8").to_string(),
    );

    let (ok, set, err) = keel(&[
        "tx",
        "policy",
        "rule",
        "--rpc",
        &rpc,
        "--key",
        &shop_key,
        "--deny",
        "KP,IR",
        "--untagged-max-value",
        "100",
        "--wait",
    ]);
    assert!(ok && set["status"] == "success", "{set} {err}");
    let pay = |amount: &str| {
        keel(&[
            "tx", "transfer", "--rpc", &rpc, "--key", &agent_key, "--to", &shop, "--amount",
            amount, "--wait",
        ])
    };
    // Untagged: 100 passes, 101 is refused at admission, and the agent hears why.
    let (ok, receipt, err) = pay("100");
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    let (ok, _, err) = pay("101");
    assert!(!ok, "admitted over the untagged cap");
    assert!(
        err.contains("policy_denied") && err.contains("jurisdiction_untagged_value"),
        "{err}"
    );
    // `keel tx policy tag` signed by `key`, with `until` (`--expires-at H` or `--remove`).
    let tag_by = |key: &str, code: &str, until: &[&str]| {
        let mut args = vec![
            "tx",
            "policy",
            "tag",
            "--rpc",
            &rpc,
            "--key",
            key,
            "--account",
            &agent,
            "--code",
            code,
            "--wait",
        ];
        args.extend_from_slice(until);
        keel(&args)
    };
    let tag = |code: &str| tag_by(attester_path, code, &["--expires-at", "1000000"]);
    // Only the attester tags: the agent tagging itself reverts.
    let (ok, receipt, err) = tag_by(&agent_key, "US", &["--expires-at", "1000000"]);
    assert!(ok && receipt["status"] == "revert", "{receipt} {err}");
    let (ok, receipt, err) = tag("US");
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    let (ok, receipt, err) = pay("5000");
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    let (ok, receipt, err) = tag("KP");
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    let (ok, _, err) = pay("1");
    assert!(!ok && err.contains("jurisdiction_denied"), "{err}");

    let (ok, policy, err) = keel(&["query", "policy", &agent, "--rpc", &rpc]);
    assert!(ok, "{err}");
    let tags = policy["jurisdiction"]["tags"].as_array().expect("tags");
    let codes: Vec<_> = tags.iter().map(|t| t["code"].clone()).collect();
    assert_eq!(codes, vec![json!("US"), json!("KP")], "{policy}");
    assert_eq!(tags[0]["attester"], json!(attester_address.to_hex()));
    assert_eq!(tags[0]["live"], json!(true));
    let (ok, policy, err) = keel(&["query", "policy", &shop, "--rpc", &rpc]);
    assert!(ok, "{err}");
    let rules = &policy["jurisdiction"]["rules"];
    assert_eq!(rules["deny"], json!(["KP", "IR"]), "{policy}");
    assert_eq!(rules["untagged_max_value"], json!("0x64"), "{policy}");
    // Removing the KP tag lets the agent pay again.
    let (ok, receipt, err) = tag_by(attester_path, "KP", &["--remove"]);
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    let (ok, receipt, err) = pay("7");
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");

    // The shop attaches the allow-list plugin (owned by it, listing itself) to what it
    // receives; a wallet's eth_estimateGas for paying it leaves the plugin its gas, and a
    // transfer sent with that estimate succeeds.
    let allowlist_path = crate::common::contract("allowlist.wasm");
    let (ok, receipt, err) = crate::common::deploy(&rpc, &shop_key, "wasm", &allowlist_path, None);
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    let allowlist = receipt["contract_address"]
        .as_str()
        .expect("plugin")
        .to_string();
    let list = format!("0x6c6f31f2{:0>64}{:064x}", shop.trim_start_matches("0x"), 1);
    let plugins = {
        let sel = keel_types::jurisdiction::selector(keel_types::jurisdiction::SET_PLUGINS);
        format!(
            "0x{}{:0>64}{}",
            hex::encode(sel),
            allowlist.trim_start_matches("0x"),
            "0".repeat(64 * 3)
        )
    };
    let jurisdiction = keel_types::jurisdiction::JURISDICTION_ADDRESS.to_hex();
    for (to, data) in [(allowlist.as_str(), list), (jurisdiction.as_str(), plugins)] {
        let (ok, receipt, err) = keel(&[
            "tx", "call", "--rpc", &rpc, "--key", &shop_key, "--to", to, "--data", &data, "--wait",
        ]);
        assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    }
    let estimate = cluster
        .call(
            0,
            "eth_estimateGas",
            vec![json!({"from": agent, "to": shop, "value": "0x5"})],
        )
        .expect("estimate");
    let gas = u64::from_str_radix(estimate.as_str().expect("qty").trim_start_matches("0x"), 16)
        .expect("hex");
    assert_eq!(gas, 21_000 + keel_types::policy::PLUGIN_GAS, "{estimate}");
    let (ok, receipt, err) = keel(&[
        "tx",
        "transfer",
        "--rpc",
        &rpc,
        "--key",
        &agent_key,
        "--to",
        &shop,
        "--amount",
        "5",
        "--gas",
        &gas.to_string(),
        "--wait",
    ]);
    assert!(ok && receipt["status"] == "success", "{receipt} {err}");
    let (ok, policy, err) = keel(&["query", "policy", &shop, "--rpc", &rpc]);
    assert!(ok, "{err}");
    assert_eq!(
        policy["jurisdiction"]["plugins"],
        json!([allowlist]),
        "{policy}"
    );
    cluster.check_roots();
}
