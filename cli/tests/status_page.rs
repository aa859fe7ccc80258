//! Issue 23's status page, end to end: a 4-validator devnet of real `keel` processes, one of
//! them stopped, and Debian's chromium (headless, driven by playwright-core from
//! scripts/setup) loading node 0's page. The page must go live over the WebSocket, show
//! every validator's genesis key and p2p address with the stopped one down, show blocks
//! arriving through the subscription, and find a transaction by hash, a block by height and
//! an account by address (js/status_page_test.mjs).
//!
//! Before the browser, `keel_getValidators` itself: the stopped validator's missed
//! proposals grow while the others' proposals and votes do.

use crate::common;

use common::{keel, run_js, serial, Cluster};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const RECIPIENT: &str = "0x00000000000000000000000000000000000000cc";
const AMOUNT: u64 = 12_345;
const STOPPED: usize = 3;

fn validators(cluster: &Cluster) -> Value {
    cluster
        .call(0, "keel_getValidators", vec![])
        .expect("keel_getValidators")
}

#[test]
fn the_status_page_shows_the_chain_live_and_finds_what_it_is_asked_for() {
    let _guard = serial();
    let mut cluster = Cluster::start(4, 26_200, 300, 2, |_| {});
    let rpc = cluster.rpc(0);
    let key = cluster.dev_key(0);
    let key = key.to_str().expect("utf8");
    let (ok, receipt, err) = keel(&[
        "tx",
        "transfer",
        "--rpc",
        &rpc,
        "--key",
        key,
        "--to",
        RECIPIENT,
        "--amount",
        &AMOUNT.to_string(),
        "--wait",
    ]);
    assert!(ok && receipt["status"] == "success", "{err} {receipt}");

    // Every validator was heard voting and was up while all ran.
    let before = validators(&cluster);
    let list = before["validators"].as_array().expect("validators");
    assert_eq!(list.len(), 4, "{before}");
    assert!(list.iter().all(|v| v["up"] == true), "{before}");
    // Four genesis validators of equal stake: a quorum is more than 2/3 of their power.
    assert_eq!(before["members"], 4, "{before}");
    let power: Vec<u128> = list
        .iter()
        .map(|v| {
            v["power"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    assert!(power.iter().all(|p| *p > 0 && *p == power[0]), "{before}");
    let total: u128 = power.iter().sum();
    assert_eq!(before["total_power"], total.to_string(), "{before}");
    // The least power that is more than 2/3 of the total.
    let quorum: u128 = before["quorum_power"]
        .as_str()
        .and_then(|q| q.parse().ok())
        .expect("quorum_power");
    assert!(
        3 * quorum > 2 * total && 3 * (quorum - 1) <= 2 * total,
        "{before}"
    );

    // Stop one: node 0 sees its link drop, its votes stop, and its leader views pass with no
    // block of its own.
    cluster.kill9(STOPPED);
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let now = validators(&cluster);
        let stopped = &now["validators"][STOPPED];
        let missed = stopped["missed_proposals"].as_u64().unwrap_or(0);
        let before_missed = before["validators"][STOPPED]["missed_proposals"]
            .as_u64()
            .unwrap_or(0);
        if stopped["up"] == false && missed >= before_missed + 2 {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {STOPPED} down and missing: {now}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    // Only the stopped validator's leader views went without a block: a count that
    // charged the wrong leader, or every leader, fails here.
    let missed_since = |i: usize| {
        after["validators"][i]["missed_proposals"]
            .as_u64()
            .unwrap_or(0)
            - before["validators"][i]["missed_proposals"]
                .as_u64()
                .unwrap_or(0)
    };
    for i in (0..4).filter(|&i| i != STOPPED) {
        assert!(missed_since(i) < missed_since(STOPPED), "{before}\n{after}");
    }
    for (i, v) in after["validators"]
        .as_array()
        .expect("list")
        .iter()
        .enumerate()
    {
        if i == STOPPED {
            // Heard before it stopped, not since.
            assert_eq!(v["connected"], false, "{after}");
            assert!(v["last_vote_age_ms"].as_u64().is_some(), "{after}");
            continue;
        }
        assert_eq!(v["up"], true, "{after}");
        assert!(v["proposed"].as_u64().unwrap_or(0) > 0, "{after}");
        assert!(
            v["last_vote_view"].as_u64() > before["validators"][i]["last_vote_view"].as_u64(),
            "{after}"
        );
    }
    let status = cluster.call(0, "keel_status", vec![]).expect("status");
    assert!(
        status["expiry"]["active_entries"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
    assert_eq!(status["sync"]["catching_up"], false, "{status}");

    // The page's own files, as a browser gets them.
    let index = cluster.http_get(0, "/");
    assert!(index.starts_with("HTTP/1.1 200"), "{index}");
    assert!(
        index.to_lowercase().contains("content-security-policy"),
        "{index}"
    );

    let genesis: Value = serde_json::from_str(
        &std::fs::read_to_string(cluster.home(0).join("genesis.json")).expect("genesis"),
    )
    .expect("json");
    let expected: Vec<Value> = genesis["validators"]
        .as_array()
        .expect("validators")
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let power = &before["validators"][i]["power"];
            json!({"index": i, "public_key": v["public_key"], "p2p": v["p2p"], "power": power})
        })
        .collect();
    let sender = keel_node::keys::read(&cluster.dev_key(0)).expect("key");
    let sender = keel_types::Address::from_public_key(&sender.public_key()).to_hex();
    let ctx = json!({
        "url": format!("http://{}/", cluster.metrics_url(0)),
        "chain_id": status["chain_id"],
        "validators": expected,
        "down": STOPPED,
        "tx_hash": receipt["tx_hash"],
        "tx_block": receipt["block"],
        "tx_from": sender,
        "recipient": RECIPIENT,
        "recipient_balance": AMOUNT.to_string(),
        // Set to refresh the README's screenshot.
        "screenshot": std::env::var("KEEL_STATUS_SCREENSHOT").ok(),
    });
    run_js("status_page_test.mjs", &ctx, 30);
}
