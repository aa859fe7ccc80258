//! Issue 6's acceptance on real `keel` processes: on a short-epoch devnet an agent's EVM and
//! WASM slots (and its own account) expire, reads fail with the typed error, and the agent
//! fetches proofs from one node and revives everything through the CLI at another; every
//! validator ends with the same roots. Then kill -9 lands on epoch boundaries while the
//! validators expire, archive and prune, and restarts stay consistent.

use crate::common;

use common::{contract, keel, metric_sum, serial, Cluster};
use keel_cli::client::{self, Client, TxRequest};
use keel_types::{Address, TxBody, U256};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Blocks per epoch on these devnets: a few seconds per epoch at the block times below.
const EPOCH_LENGTH: u64 = 12;
const EXPIRY_EPOCHS: u64 = 2;

fn call_data(signature: &str, args: &[u64]) -> String {
    let selector = &keel_exec_wasm::keccak256(signature.as_bytes())[..4];
    let mut out = format!("0x{}", hex::encode(selector));
    for a in args {
        out.push_str(&format!("{a:064x}"));
    }
    out
}

fn status(rpc: &str) -> Value {
    let (ok, status, err) = keel(&["query", "status", "--rpc", rpc]);
    assert!(ok, "status: {err}");
    status
}

fn epoch(rpc: &str) -> u64 {
    status(rpc)["epoch"].as_u64().expect("epoch")
}

fn wait_epoch(rpc: &str, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while epoch(rpc) < target {
        assert!(Instant::now() < deadline, "epoch {target} not reached");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tx(rpc: &str, key: &str, args: &[&str]) -> Value {
    let mut all = vec!["tx", args[0], "--rpc", rpc, "--key", key, "--wait"];
    all.extend_from_slice(&args[1..]);
    let (ok, receipt, err) = keel(&all);
    assert!(ok, "keel {all:?}: {err}");
    receipt
}

fn call(rpc: &str, key: &str, to: &str, data: &str) -> Value {
    tx(rpc, key, &["call", "--to", to, "--data", data])
}

/// `keel query call get(1)` as a read-only call.
fn read(rpc: &str, registry: &str) -> Value {
    let data = call_data("get(uint256)", &[1]);
    let (ok, out, err) = keel(&[
        "query", "call", "--rpc", rpc, "--to", registry, "--data", &data,
    ]);
    assert!(ok, "query call: {err}");
    out
}

/// The storage slot named by an expired-entry error's key (`storage 0x… slot 0x…`).
fn slot_of(key: &str) -> String {
    key.rsplit(' ').next().expect("slot").to_string()
}

/// `keel query proof` from `rpc` until the epoch the entry expired in is sealed; the JSON
/// written to a file for `keel tx revive --proof`.
fn fetch_proof(rpc: &str, args: &[&str], dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = vec!["query", "proof", "--rpc", rpc];
        all.extend_from_slice(args);
        let (ok, proof, err) = keel(&all);
        if ok {
            assert_eq!(proof["expired"], true, "{proof}");
            let path = dir.join(name);
            std::fs::write(&path, proof.to_string()).expect("write proof");
            return path;
        }
        assert!(
            err.contains("seal") && Instant::now() < deadline,
            "query proof {args:?}: {err}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Keeps `registries` live (a `count()` call each) while waiting until `keel query proof`
/// of every key in `keys` (CLI arguments) shows its stub folded into a fold page.
fn wait_folded(rpc: &str, keeper: &str, registries: &[String], keys: &[Vec<&str>]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let folded = keys.iter().all(|args| {
            let mut all = vec!["query", "proof", "--rpc", rpc];
            all.extend_from_slice(args);
            let (ok, proof, _) = keel(&all);
            ok && proof["fold_page"].is_u64()
        });
        if folded {
            return;
        }
        assert!(Instant::now() < deadline, "stubs never folded");
        let e = epoch(rpc);
        for r in registries {
            let touched = call(rpc, keeper, r, &call_data("count()", &[]));
            assert_eq!(touched["status"], "success", "{touched}");
        }
        wait_epoch(rpc, e + 1);
    }
}

/// Stubs stay in the tree: proofs are one archive path.
#[test]
fn an_agent_revives_its_expired_evm_and_wasm_slots_through_the_cli_with_equal_roots() {
    revive_through_the_cli(24_200, 1_000);
}

/// Stubs are folded out of the tree one epoch after expiring: reads are still the typed
/// error, proofs carry the fold part, and the same CLI revival brings the values back.
#[test]
fn an_agent_revives_its_folded_evm_and_wasm_slots_through_the_cli_with_equal_roots() {
    revive_through_the_cli(25_400, 1);
}

fn revive_through_the_cli(base_port: u16, fold_epochs: u64) {
    let _guard = serial();
    let cluster = Cluster::start_with_expiry(
        4,
        base_port,
        100,
        2,
        EPOCH_LENGTH,
        (EXPIRY_EPOCHS, fold_epochs),
        |_| {},
    );
    let (rpc, other) = (cluster.rpc(1), cluster.rpc(2));
    let agent = cluster.dev_key(0);
    let agent = agent.to_str().expect("utf8");
    let keeper = cluster.dev_key(1);
    let keeper = keeper.to_str().expect("utf8");
    let agent_address = keel_node::keys::read(&cluster.dev_key(0))
        .map(|k| Address::from_public_key(&k.public_key()))
        .expect("agent key")
        .to_hex();

    // The agent deploys a registry in each environment and writes key 1 = 42.
    let mut registries = Vec::new();
    for (env, code) in [("evm", "Registry.bin"), ("wasm", "registry.wasm")] {
        let code = contract(code);
        let receipt = tx(
            &rpc,
            agent,
            &[
                "deploy",
                "--env",
                env,
                "--code",
                code.to_str().expect("utf8"),
            ],
        );
        assert_eq!(receipt["status"], "success", "{receipt}");
        let address = receipt["contract_address"].as_str().expect("address");
        let set = call(
            &rpc,
            agent,
            address,
            &call_data("set(uint256,uint256)", &[1, 42]),
        );
        assert_eq!(set["status"], "success", "{set}");
        registries.push(address.to_string());
    }
    assert_eq!(
        read(&rpc, &registries[0])["output"],
        format!("0x{:064x}", 42)
    );
    let written = epoch(&rpc);

    // The agent idles; a keeper reads `count()` once an epoch, so the contracts stay live
    // while slot 1 and the agent's own account go idle. They expire at `written + 3`.
    let expires_at = written + EXPIRY_EPOCHS + 1;
    let mut e = written;
    while e <= expires_at {
        for r in &registries {
            let touched = call(&rpc, keeper, r, &call_data("count()", &[]));
            assert_eq!(touched["status"], "success", "{touched}");
        }
        e += 1;
        wait_epoch(&rpc, e);
    }

    if fold_epochs < 100 {
        let slot_keys: Vec<Vec<String>> = registries
            .iter()
            .map(|r| {
                let out = read(&other, r);
                let key = out["error"]["key"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{out}"));
                vec![r.clone(), slot_of(key)]
            })
            .collect();
        let mut keys: Vec<Vec<&str>> = slot_keys
            .iter()
            .map(|k| k.iter().map(String::as_str).collect())
            .collect();
        keys.push(vec![agent_address.as_str()]);
        wait_folded(&other, keeper, &registries, &keys);
    }

    // Reading is the typed error, never a zero: a read-only call names the slot and epoch,
    // `keel query storage` and `keel query account` fail with RPC error -32006.
    let mut slots = Vec::new();
    for r in &registries {
        let out = read(&other, r);
        assert_eq!(out["status"], "rejected", "{out}");
        assert_eq!(out["error"]["code"], "expired", "{out}");
        let key = out["error"]["key"]
            .as_str()
            .unwrap_or_else(|| panic!("{out}"));
        assert!(key.starts_with(&format!("storage {r}")), "{out}");
        let expired_epoch = out["error"]["expired_epoch"].as_u64().expect("epoch");
        assert!(
            (written + EXPIRY_EPOCHS..=expires_at).contains(&expired_epoch),
            "{out}"
        );
        let slot = slot_of(key);
        let (ok, _, err) = keel(&["query", "storage", r, &slot, "--rpc", &other]);
        assert!(
            !ok && err.contains("-32006") && err.contains("expired"),
            "{err}"
        );
        slots.push(slot);
    }
    let (ok, _, err) = keel(&["query", "account", &agent_address, "--rpc", &other]);
    assert!(!ok && err.contains("-32006"), "{err}");
    // The status page finds the expired account and shows how to revive it (issue 23).
    // Epochs here last about a second: the keeper keeps itself and the contracts live
    // meanwhile, as it does above.
    let stop = Arc::new(AtomicBool::new(false));
    let keeping = {
        let (stop, rpc, keeper, registry) = (
            stop.clone(),
            rpc.clone(),
            keeper.to_string(),
            registries.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for r in &registry {
                    let touched = call(&rpc, &keeper, r, &call_data("count()", &[]));
                    assert_eq!(touched["status"], "success", "{touched}");
                }
            }
        })
    };
    common::run_js(
        "status_page_expired.mjs",
        &serde_json::json!({
            "url": format!("http://{}/", cluster.metrics_url(2)),
            "address": agent_address,
            "min_epoch": written + EXPIRY_EPOCHS,
            "max_epoch": expires_at,
            "folded": fold_epochs < 100,
            "rpc": other,
        }),
        5,
    );
    stop.store(true, Ordering::Relaxed);
    keeping.join().expect("the keeper thread");
    // The agent's own transactions are refused: the CLI cannot even read its nonce, and
    // says why and how to revive (a transaction that reached a block would get the typed
    // receipt error instead: runtime/tests/expiry.rs).
    let data = call_data("count()", &[]);
    let (ok, _, err) = keel(&[
        "tx",
        "call",
        "--rpc",
        &rpc,
        "--key",
        agent,
        "--to",
        &registries[0],
        "--data",
        &data,
    ]);
    assert!(
        !ok && err.contains("-32006") && err.contains("revive"),
        "{err}"
    );

    // Proofs come from node 2; the revivals go through node 1 (paid by the keeper, since
    // the agent's own account is what needs reviving first).
    let dir = cluster.dir.path();
    let account_proof = fetch_proof(&other, &[&agent_address], dir, "account.json");
    let revived = tx(
        &rpc,
        keeper,
        &["revive", "--proof", account_proof.to_str().expect("utf8")],
    );
    assert_eq!(revived["status"], "success", "{revived}");
    for (i, (r, slot)) in registries.iter().zip(&slots).enumerate() {
        let proof = fetch_proof(&other, &[r, slot], dir, &format!("slot{i}.json"));
        let proof = proof.to_str().expect("utf8");
        let revived = tx(&rpc, agent, &["revive", "--proof", proof]);
        assert_eq!(revived["status"], "success", "{revived}");
        // The same proof again: the entry is live, a typed refusal, charged (docs/execution.md).
        let twice = tx(&rpc, agent, &["revive", "--proof", proof]);
        assert_eq!(twice["status"], "revert", "{twice}");
        assert_eq!(twice["error"]["code"], "invalid_revival", "{twice}");
        assert_eq!(twice["error"]["reason"], "already_live", "{twice}");
        // The value is back, at every node.
        for node in 0..cluster.n {
            let out = read(&cluster.rpc(node), r);
            assert_eq!(
                out["output"],
                format!("0x{:064x}", 42),
                "node {node}: {out}"
            );
        }
        let (ok, value, err) = keel(&["query", "storage", r, slot, "--rpc", &other]);
        assert!(ok, "{err}");
        assert_eq!(value["value"], format!("0x{:064x}", 42));
    }

    let top = cluster.height(1).expect("height");
    cluster.wait_height(&[0, 1, 2, 3], top, Duration::from_secs(60));
    assert!(cluster.check_roots() >= top);
    // The pruner thread refreshes the entry gauges once per `prune_interval_ms`.
    for node in 0..cluster.n {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = cluster.metrics_text(node);
            let expired = metric_sum(&metrics, "keel_state_expired_entries", "");
            let revived = metric_sum(&metrics, "keel_state_revived_entries_total", "");
            // Folded stubs leave the tree (and the expired gauge); unfolded ones stay.
            if revived == 3 && (expired >= 1 || fold_epochs < 100) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {node}: {expired} expired, {revived} revived"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Agents paying fresh addresses (which then idle and expire) through node 0 until `stop`.
fn churn(client: Arc<Client>, funders: Vec<keel_types::SecretKey>, stop: Arc<AtomicBool>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut fresh = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for key in &funders {
            fresh += 1;
            let mut to = [0xc0u8; 20];
            to[..8].copy_from_slice(&fresh.to_be_bytes());
            let request = TxRequest {
                body: TxBody::Transfer {
                    to: Address(to),
                    amount: U256::from(1u64),
                },
                gas: None,
                gas_price: None,
                nonce: None,
                wait: true,
                acting_as: None,
            };
            // A transaction lost to a view change is simply sent again with the next one.
            let _ = rt.block_on(client::send(&client, key, request));
        }
    }
}

#[test]
fn kill_9_on_epoch_boundaries_while_expiring_and_pruning_keeps_roots_equal() {
    let _guard = serial();
    const EPOCH: u64 = 6;
    // The shortest retention a node accepts (the BLOCKHASH window): enough for a validator
    // restarting after a kill to catch up from its peers; pruning runs once the chain is
    // past it, before the first kill.
    const RETAIN: u64 = keel_node::config::MIN_RETAIN_HEIGHTS;
    let mut cluster = Cluster::start_with_expiry(4, 24_600, 100, 3, EPOCH, (1, 1), |c| {
        c.storage.retain_heights = RETAIN;
        c.storage.prune_interval_ms = 50;
        c.storage.prune_batch_heights = 2;
    });
    let funders: Vec<_> = (0..3)
        .map(|j| keel_node::keys::read(&cluster.dev_key(j)).expect("key"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (client, stop) = (cluster.client(0), stop.clone());
        std::thread::spawn(move || churn(client, funders, stop))
    };
    // Each round: wait for the last block of an epoch at validator 3, then kill it while
    // it executes and commits the first block of the next (the sweep and the seal).
    let mut boundaries: Vec<u64> = Vec::new();
    for round in 0..6u64 {
        // The first round waits for the chain to pass RETAIN heights.
        let wait = if round == 0 { 150 } else { 60 };
        let deadline = Instant::now() + Duration::from_secs(wait);
        let after = boundaries.last().copied().unwrap_or(RETAIN);
        loop {
            let h = cluster.height(3).unwrap_or(0);
            if h > after && h.is_multiple_of(EPOCH) {
                boundaries.push(h);
                break;
            }
            assert!(Instant::now() < deadline, "no boundary reached");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Offsets across the ~100 ms the next block takes: before, during and after its
        // execution and commit.
        std::thread::sleep(Duration::from_millis(20 * round));
        cluster.kill9(3);
        std::thread::sleep(Duration::from_millis(800));
        cluster.spawn(3);
        let h = cluster.height(0).expect("height");
        cluster.wait_height(&[3], h, Duration::from_secs(60));
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("churn worker");
    let top = cluster.height(0).expect("height");
    cluster.wait_height(&[0, 1, 2, 3], top, Duration::from_secs(60));
    let checked = cluster.check_roots();
    assert!(checked >= top, "roots checked to {checked}");
    assert!(cluster.equivocations().is_empty());
    eprintln!("killed after heights {boundaries:?}; roots equal to {checked}");
    // Expiry and pruning both happened, equally at every validator.
    let counts: Vec<(u64, u64)> = (0..cluster.n)
        .map(|i| {
            let m = cluster.metrics_text(i);
            (
                metric_sum(&m, "keel_state_expired_entries", ""),
                metric_sum(&m, "keel_oldest_retained_height", ""),
            )
        })
        .collect();
    eprintln!("(expired entries, oldest retained height) per validator: {counts:?}");
    for (expired, oldest) in &counts {
        assert!(*expired > 0, "{counts:?}");
        assert!(*oldest > 0, "pruned: {counts:?}");
    }
    // Pruned history is gone through the RPC; retained history is served.
    let (ok, block, _) = keel(&["query", "block", "1", "--rpc", &cluster.rpc(3)]);
    assert!(!ok || block.is_null(), "height 1 was pruned: {block}");
    let retained = cluster.height(3).expect("height") - RETAIN / 2;
    let (ok, block, err) = keel(&[
        "query",
        "block",
        &retained.to_string(),
        "--rpc",
        &cluster.rpc(3),
    ]);
    assert!(ok && block["state_root"].is_string(), "{block} {err}");
    // eth_feeHistory whose newest block lies below the oldest retained height has nothing to
    // report (its block count underflowed: the handler panicked, the client got an internal
    // error).
    let history = cluster
        .call(
            3,
            "eth_feeHistory",
            vec![json!("0x4"), json!("0x1"), json!([50])],
        )
        .expect("eth_feeHistory below the retained range");
    assert_eq!(history["gasUsedRatio"], json!([]), "{history}");
    assert_eq!(history["reward"], json!([]), "{history}");
}

/// A validator that was down longer than every peer retains blocks cannot catch up by block
/// sync; its peers answer that they pruned the range, and it says so in its log instead of
/// waiting in silence.
#[test]
fn a_validator_behind_its_peers_retention_reports_it_cannot_catch_up() {
    let _guard = serial();
    const RETAIN: u64 = keel_node::config::MIN_RETAIN_HEIGHTS;
    // Epochs of 100 heights: pruning keeps the state before the last two epoch boundaries
    // and 256 heights below (for snapshot sync), so with epochs of 1,000 nothing would be
    // pruned for 2,256 heights.
    let mut cluster = Cluster::start_with_expiry(4, 25_000, 100, 1, 100, (0, 0), |c| {
        c.storage.retain_heights = RETAIN;
        c.storage.prune_interval_ms = 50;
        c.consensus.timeout_base_ms = 500;
    });
    cluster.kill9(3);
    let down_at = cluster.height(0).expect("height");
    // The others go on and prune past everything validator 3 would need (RETAIN heights
    // and more at ~100 ms a block).
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let oldest = cluster
            .call(0, "keel_status", vec![])
            .ok()
            .and_then(|s| s["oldest_retained"].as_u64())
            .unwrap_or(0);
        if oldest > down_at + 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no pruning past {down_at}");
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.spawn(3);
    let log = cluster.home(3).join("node.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("cannot catch up from this peer") {
            break;
        }
        assert!(Instant::now() < deadline, "no report in validator 3's log");
        std::thread::sleep(Duration::from_millis(200));
    }
    let behind = cluster.height(3).expect("validator 3 answers");
    assert!(
        behind < cluster.height(0).expect("height"),
        "it did not catch up"
    );
}
