//! Policy plugins at gossip admission: a Byzantine validator relays a transaction its
//! sender's plugin denies. RPC would have refused it; the honest nodes must refuse it from
//! gossip too, or it reaches their blocks and is charged for a plugin run nobody asked for.

use super::*;
use crate::common::{contract, deploy, keel};
use keel_node::admission::MAX_GOSSIP_PLUGIN_GAS;
use serde_json::{json, Value};

/// A transfer of 1 unit from `key`'s account to `to` at `nonce`, with room for the plugin.
fn transfer(cluster: &Cluster, key: &SecretKey, to: &str, nonce: u64) -> SignedTransaction {
    let status = cluster.call(0, "keel_status", vec![]).expect("status");
    Transaction {
        chain_id: status["chain_id"].as_u64().expect("chain id"),
        sender: key.public_key().into(),
        nonce,
        gas_limit: 300_000,
        gas_price: status["min_gas_price"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or(1),
        body: TxBody::Transfer {
            to: Address::from_hex(to).expect("address"),
            amount: U256::from(1u64),
        },
    }
    .sign(key)
}

fn receipt(cluster: &Cluster, i: usize, tx: &SignedTransaction) -> Value {
    cluster
        .call(i, "keel_getReceipt", vec![json!(tx.hash().to_hex())])
        .expect("receipt")
}

#[test]
fn a_transaction_a_plugin_denies_is_refused_from_gossip_as_from_rpc() {
    let _guard = serial();
    let (cluster, harness) = devnet(26_060);
    let rpc = cluster.rpc(0);
    let agent_file = cluster.dev_key(1);
    let agent_path = agent_file.to_str().expect("utf8");
    let agent_key = keel_node::keys::read(&agent_file).expect("agent key");
    // The agent attaches the allow-list plugin to itself, listing only `ALLOWED`.
    const ALLOWED: &str = "0x00000000000000000000000000000000000000aa";
    const DENIED: &str = "0x00000000000000000000000000000000000000bb";
    let (ok, receipt0, err) = deploy(&rpc, agent_path, "wasm", &contract("allowlist.wasm"), None);
    assert!(ok && receipt0["status"] == "success", "{receipt0} {err}");
    let allowlist = receipt0["contract_address"].as_str().expect("plugin");
    let list = format!("0x6c6f31f2{:0>64}{:064x}", &ALLOWED[2..], 1);
    let (ok, listed, err) = keel(&[
        "tx", "call", "--rpc", &rpc, "--key", agent_path, "--to", allowlist, "--data", &list,
        "--wait",
    ]);
    assert!(ok && listed["status"] == "success", "{listed} {err}");
    let (ok, set, err) = keel(&[
        "tx", "policy", "set", "--rpc", &rpc, "--key", agent_path, "--plugin", allowlist, "--wait",
    ]);
    assert!(ok && set["status"] == "success", "{set} {err}");
    let account = cluster
        .call(
            0,
            "keel_getAccount",
            vec![json!(
                Address::from_public_key(&agent_key.public_key()).to_hex()
            )],
        )
        .expect("account");
    let nonce = account["pending_nonce"].as_u64().expect("nonce");
    // RPC refuses the denied transfer, saying why.
    let denied = transfer(&cluster, &agent_key, DENIED, nonce);
    let refused = cluster.call(
        0,
        "keel_sendTransaction",
        vec![json!(hex::encode(denied.encode()))],
    );
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("plugin_denied")),
        "{refused:?}"
    );
    // From gossip, an allowed transfer is admitted and finalized: the relay works...
    let allowed = transfer(&cluster, &agent_key, ALLOWED, nonce);
    harness
        .net
        .broadcast(&NetMessage::Transactions(vec![allowed.clone()]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while receipt(&cluster, 0, &allowed).is_null() {
        assert!(
            Instant::now() < deadline,
            "the relayed allowed transfer never finalized"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(receipt(&cluster, 0, &allowed)["status"], "success");
    // ...and the denied one, relayed next, never reaches a block: every honest node asked
    // the plugin before admitting it (without that, the next honest proposer includes it
    // and the agent pays for the plugin's denial). It comes last in its message, after
    // enough other denied transfers to spend the batch's plugin gas (found by review: past
    // the budget, transactions were taken unjudged).
    // Each check is charged the most its plugin may use (`plugin_gas`), so this is several
    // times the batch's share.
    let burners = (MAX_GOSSIP_PLUGIN_GAS / 20_000) + 20;
    let mut batch: Vec<SignedTransaction> = (0..burners)
        .map(|i| {
            transfer(
                &cluster,
                &agent_key,
                &format!("0x{:040x}", 0xb000 + i),
                nonce + 1,
            )
        })
        .collect();
    let denied = transfer(&cluster, &agent_key, DENIED, nonce + 1);
    batch.push(denied.clone());
    harness
        .net
        .broadcast(&NetMessage::Transactions(batch.clone()));
    honest_nodes_unharmed(&cluster, &BTreeMap::new());
    for i in HONEST {
        for tx in &batch {
            assert!(
                receipt(&cluster, i, tx).is_null(),
                "node {i} included {tx:?}"
            );
        }
    }
    let after = cluster
        .call(
            0,
            "keel_getAccount",
            vec![json!(
                Address::from_public_key(&agent_key.public_key()).to_hex()
            )],
        )
        .expect("account");
    assert_eq!(after["nonce"].as_u64(), Some(nonce + 1), "{after}");
    // Operators see it: each honest node counted the batch's plugin denials and the rest
    // refused past its plugin gas.
    for i in HONEST {
        let metrics = cluster.metrics_text(i);
        for reason in ["policy_denied", "plugin_budget"] {
            let refused = metric_sum(
                &metrics,
                "keel_gossip_rejected_total",
                &format!("reason=\"{reason}\""),
            );
            assert!(refused > 0, "node {i} counted no {reason} refusal");
        }
    }
}
