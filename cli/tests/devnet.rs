//! Issue 5's acceptance, with real `keel` processes on 127.0.0.1: contracts in both
//! environments through the CLI, kill -9 under load, catch-up after a long outage, and the
//! chain finalizing through bad input of every kind.

#[path = "devnet/byzantine.rs"]
mod byzantine;
#[path = "devnet/chaos.rs"]
pub(crate) mod chaos;
use crate::common;
#[path = "devnet/partition.rs"]
mod partition;
#[path = "devnet/terminal.rs"]
mod terminal;

use common::{contract, deploy, keel, metric_sum, serial, Cluster};
use keel_devtools::load::{self, LoadOptions};
use serde_json::{json, Value};
use std::time::Duration;

const SUPPLY: &str = "00000000000000000000000000000000000000000000000000000000000f4240";

fn word_address(addr: &str) -> String {
    format!("{:0>64}", addr.trim_start_matches("0x"))
}

#[test]
fn four_validators_deploy_and_call_evm_and_wasm_through_the_cli_with_equal_roots() {
    let _guard = serial();
    let cluster = Cluster::start(4, 21_000, 300, 4, |c| c.log.format = "json".into());
    let rpc = cluster.rpc(1);
    let key = cluster.dev_key(0);
    let key = key.to_str().expect("utf8");
    let bob = "0x00000000000000000000000000000000000000bb";
    let mut tokens = Vec::new();
    // The token three times: Solidity, C, and Rust with keel-sdk (issue 23: the SDK's
    // contract deployed and called through the CLI, as docs/sdk.md's tutorial does).
    for (env, code) in [
        ("evm", "Token.bin"),
        ("wasm", "token.wasm"),
        ("wasm", "token_rs.wasm"),
    ] {
        let code = contract(code);
        let (ok, receipt, err) = deploy(&rpc, key, env, &code, Some(SUPPLY));
        assert!(ok, "{env} deploy: {err}");
        assert_eq!(receipt["status"], "success", "{receipt}");
        let address = receipt["contract_address"]
            .as_str()
            .expect("address")
            .to_string();
        let (ok, account, err) = keel(&["query", "account", &address, "--rpc", &rpc]);
        assert!(ok, "{err}");
        assert_eq!(account["env"], env);
        // transfer(bob, 100) then balanceOf(bob) through a read-only call.
        let data = format!("0xa9059cbb{}{:064x}", word_address(bob), 100);
        let (ok, receipt, err) = keel(&[
            "tx", "call", "--rpc", &rpc, "--key", key, "--to", &address, "--data", &data, "--wait",
        ]);
        assert!(ok, "{env} call: {err}");
        assert_eq!(receipt["status"], "success", "{receipt}");
        assert_eq!(
            receipt["logs"].as_array().expect("logs").len(),
            1,
            "Transfer event"
        );
        let (ok, out, err) = keel(&[
            "query",
            "call",
            "--rpc",
            &rpc,
            "--to",
            &address,
            "--data",
            &format!("0x70a08231{}", word_address(bob)),
        ]);
        assert!(ok, "{err}");
        assert_eq!(out["output"], format!("0x{:064x}", 100), "{env}: {out}");
        // A revert comes back as a processed transaction with its data, exit 0.
        let too_much = format!("0xa9059cbb{}{:064x}", word_address(bob), 10_000_000u64);
        let (ok, receipt, err) = keel(&[
            "tx", "call", "--rpc", &rpc, "--key", key, "--to", &address, "--data", &too_much,
            "--wait",
        ]);
        assert!(ok, "{err}");
        assert_eq!(receipt["status"], "revert", "{receipt}");
        assert_eq!(receipt["error"]["code"], "reverted");
        tokens.push(address);
    }
    // Issue 24: a deploy whose refusal used to carry 3,600 bytes of the module's own text (an
    // import named with 900 four-byte characters) made every validator halt on the next
    // finalization. Now it is a typed, charged refusal and the chain goes on.
    let hostile =
        std::env::temp_dir().join(format!("keel-long-import-{}.wasm", std::process::id()));
    std::fs::write(&hostile, module_with_long_import_name()).expect("write module");
    let (ok, receipt, err) = deploy(&rpc, key, "wasm", &hostile, None);
    let _ = std::fs::remove_file(&hostile);
    assert!(ok, "hostile deploy: {err}");
    assert_eq!(receipt["status"], "revert", "{receipt}");
    assert_eq!(receipt["error"]["code"], "invalid_code", "{receipt}");
    assert_eq!(receipt["error"]["detail"], "disallowed_import", "{receipt}");
    let refused_at = receipt["block"].as_u64().expect("included in a block");
    let (ok, status, _) = keel(&["query", "status", "--rpc", &rpc]);
    assert!(ok);
    let after = status["height"].as_u64().expect("height").max(refused_at) + 3;
    cluster.wait_height(&[0, 1, 2, 3], after, Duration::from_secs(60));
    // Same storage in both environments: bob's balance slot read back by slot query.
    let (ok, status, _) = keel(&["query", "status", "--rpc", &cluster.rpc(3)]);
    assert!(ok);
    assert_eq!(status["validators"], 4);
    let height = status["height"].as_u64().expect("height");
    cluster.wait_height(&[0, 1, 2, 3], height, Duration::from_secs(30));
    let checked = cluster.check_roots();
    assert!(checked >= height, "roots checked to {checked}");
    let (ok, block, _) = keel(&["query", "block", "latest", "--rpc", &cluster.rpc(2)]);
    assert!(ok && block["state_root"].is_string(), "{block}");
    assert!(cluster.equivocations().is_empty());
    // Observability: health, Prometheus text with keel_ names, JSON log lines.
    let health = cluster.http_get(2, "/health");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.contains("ok height="),
        "{health}"
    );
    let metrics = cluster.metrics_text(2);
    for name in [
        "keel_height",
        "keel_view",
        "keel_peers",
        "keel_finality_latency_seconds_bucket",
        "keel_votelog_fsync_seconds_count",
        "keel_executed_gas_total",
        "keel_mempool_size",
        "keel_signatures_verified_in_block_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    // Verify-once at work: validator 2 verified at admission (the RPC node's gossip) the
    // signatures of transactions it later executed.
    assert!(
        metric_sum(&metrics, "keel_signatures_verified_once_total", "") >= 1,
        "no block transaction was verified once: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("keel_signatures"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let log = std::fs::read_to_string(cluster.home(0).join("node.log")).expect("log");
    let line = log
        .lines()
        .find(|l| l.contains("finalized"))
        .expect("a finalized line");
    let parsed: Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(parsed["fields"]["message"], "finalized");
}

#[test]
fn kill_9_under_load_loses_nothing_and_roots_stay_equal() {
    let _guard = serial();
    let mut cluster = Cluster::start(4, 21_400, 250, 4, |_| {});
    let funders = (0..4)
        .map(|j| keel_node::keys::read(&cluster.dev_key(j)).expect("key"))
        .collect();
    // Load goes to validators 0..2; validators 3 and 2 are killed in turn (one at a time).
    let options = LoadOptions {
        rpcs: vec![cluster.rpc(0), cluster.rpc(1)],
        funders,
        senders: 40,
        rate_per_s: 150,
        duration_s: 24,
        settle_s: 60,
        seed: 7,
        fresh_recipients: false,
        stop: None,
    };
    let handle = cluster.rt.spawn(load::run(options));
    for (round, victim) in [3usize, 2, 3].into_iter().enumerate() {
        std::thread::sleep(Duration::from_secs(5));
        cluster.kill9(victim);
        std::thread::sleep(Duration::from_millis(1_500 + 500 * round as u64));
        cluster.spawn(victim);
    }
    let report = cluster
        .rt
        .block_on(handle)
        .expect("load task")
        .unwrap_or_else(|e| {
            cluster.dump_logs();
            panic!("load: {e}")
        });
    eprintln!("{}", serde_json::to_string(&report).expect("json"));
    assert_eq!(
        report.lost, 0,
        "every accepted transaction finalized: {report:?}"
    );
    assert!(report.rejected.is_empty(), "{report:?}");
    assert_eq!(report.finalized, report.submitted);
    let top = cluster.height(0).expect("height");
    cluster.wait_height(&[0, 1, 2, 3], top, Duration::from_secs(60));
    assert!(cluster.check_roots() >= top);
    assert_eq!(cluster.equivocations(), Vec::<String>::new());
    // `keel init` gives validators 1 and 3 two execution threads and 0 and 2 one: the
    // roots above agree although validator 1 (never killed) executed blocks in parallel.
    let config = std::fs::read_to_string(cluster.home(1).join("config.toml")).expect("config");
    assert!(config.contains("[execution]\nthreads = 2"), "{config}");
    let metrics = cluster.metrics_text(1);
    assert!(
        metric_sum(&metrics, "keel_exec_parallel_kept_total", "") >= 1,
        "no speculation kept on the parallel validator: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("keel_exec_parallel"))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

#[test]
fn a_validator_down_for_many_blocks_rejoins_by_catching_up() {
    let _guard = serial();
    // 25-block epochs: the outage spans six epoch boundaries, so catch-up syncs across them.
    // Short view timeouts: the down validator's views time out until it is skipped.
    let mut cluster = Cluster::start_with_epochs(4, 21_800, 100, 2, 25, |c| {
        c.consensus.timeout_base_ms = 500;
    });
    cluster.kill9(3);
    let down_at = cluster.height(0).expect("height");
    // Three validators are a quorum of four: the chain goes on without it.
    cluster.wait_height(&[0, 1, 2], down_at + 150, Duration::from_secs(120));
    cluster.spawn(3);
    let top = cluster.height(0).expect("height");
    cluster.wait_height(&[3], top, Duration::from_secs(90));
    assert!(cluster.check_roots() >= top);
    let status = cluster.call(3, "keel_status", vec![]).expect("status");
    assert!(status["epoch"].as_u64().expect("epoch") >= 6, "{status}");
    // And it takes part again: with validator 2 down as well, 0, 1 and 3 must finalize.
    cluster.kill9(2);
    let h = cluster.height(0).expect("height");
    cluster.wait_height(&[0, 1, 3], h + 10, Duration::from_secs(60));
    // Every quorum needs validator 3 now: with its vote log damaged it must not start (the
    // chain waits); with the file back it starts and the chain goes on.
    cluster.kill9(3);
    refuses_a_damaged_vote_log(&cluster.home(3));
    cluster.spawn(3);
    let h = cluster.height(0).expect("height");
    cluster.wait_height(&[0, 1, 3], h + 5, Duration::from_secs(60));
    assert!(cluster.equivocations().is_empty());
}

/// A vote log damaged before its last record is not the torn tail a crash leaves: the node
/// refuses to start (it would forget the votes after the damage and could sign twice) and
/// leaves the file as it was; with the file restored it starts.
fn refuses_a_damaged_vote_log(home: &std::path::Path) {
    let votes = home.join("data/votes.log");
    let intact = std::fs::read(&votes).expect("votes.log");
    assert!(intact.len() > 500, "only {} bytes of votes", intact.len());
    let mut damaged = intact.clone();
    damaged[10] ^= 0x40; // inside the first record's body
    std::fs::write(&votes, &damaged).expect("damage votes.log");
    let log = home.join("damaged-start.log");
    let file = std::fs::File::create(&log).expect("log");
    let mut child = std::process::Command::new(common::KEEL)
        .args(["run", "--home", home.to_str().expect("utf8")])
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("keel run");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a node with a damaged vote log kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!status.success(), "{text}");
    assert!(text.contains("is damaged at byte 0"), "{text}");
    assert_eq!(std::fs::read(&votes).expect("votes.log"), damaged);
    std::fs::write(&votes, &intact).expect("restore votes.log");
}

#[test]
fn a_validator_whose_state_diverges_halts_loudly_and_the_rest_go_on() {
    let _guard = serial();
    let mut cluster = Cluster::start(4, 23_400, 150, 2, |_| {});
    cluster.kill9(3);
    let diverge_at = cluster.height(0).expect("height") + 15;
    cluster.spawn_with_env(
        3,
        &[(keel_node::driver::FAULT_DIVERGE_ENV, diverge_at.to_string())],
    );
    cluster.wait_height(&[0, 1, 2], diverge_at + 15, Duration::from_secs(90));
    let status = cluster.call(3, "keel_status", vec![]).expect("status");
    let reason = status["halted"].as_str().unwrap_or_else(|| {
        cluster.dump_logs();
        panic!("validator 3 did not halt: {status}")
    });
    assert!(reason.contains("parent state root"), "{reason}");
    assert_eq!(
        status["height"], diverge_at,
        "it committed up to the diverging block"
    );
    let health = cluster.http_get(3, "/health");
    assert!(
        health.starts_with("HTTP/1.1 503") && health.contains("halted"),
        "{health}"
    );
    assert!(cluster.metrics_text(3).contains("keel_halted 1"));
    let log = std::fs::read_to_string(cluster.home(3).join("node.log")).expect("log");
    assert!(log.contains("HALTED"));
    // It refuses to vote: its vote log stops growing while the others finalize on.
    let votes = || std::fs::metadata(cluster.home(3).join("data/votes.log")).map_or(0, |m| m.len());
    let before = votes();
    let h = cluster.height(0).expect("height");
    cluster.wait_height(&[0, 1, 2], h + 10, Duration::from_secs(60));
    assert_eq!(votes(), before, "a halted validator signs nothing");
    assert_eq!(cluster.height(3), Some(diverge_at));
    // The others agree among themselves at every height.
    let clients: Vec<_> = (0..3).map(|i| cluster.client(i)).collect();
    cluster
        .rt
        .block_on(keel_devtools::load::check_roots(&clients))
        .expect("honest roots agree");
}

fn rpc_error(result: Result<Value, String>) -> String {
    match result {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e,
    }
}

#[test]
fn bad_input_gets_typed_errors_while_the_chain_keeps_finalizing() {
    use keel_types::{Canonical, Transaction, TxBody, U256};
    let _guard = serial();
    let cluster = Cluster::start(4, 22_200, 200, 2, |_| {});
    let start = cluster.height(0).expect("height");
    let key = keel_node::keys::read(&cluster.dev_key(0)).expect("key");
    let status = cluster.call(0, "keel_status", vec![]).expect("status");
    let chain_id = status["chain_id"].as_u64().expect("chain id");
    let transfer = |nonce: u64, chain_id: u64| {
        Transaction {
            chain_id,
            sender: key.public_key().into(),
            nonce,
            gas_limit: 21_000,
            gas_price: 1,
            body: TxBody::Transfer {
                to: keel_types::Address([7; 20]),
                amount: U256::from(5u64),
            },
        }
        .sign(&key)
    };
    let send = |bytes: Vec<u8>| {
        cluster.call(
            0,
            "keel_sendTransaction",
            vec![json!(format!("0x{}", hex::encode(bytes)))],
        )
    };
    // Malformed.
    let e = rpc_error(send(vec![0xde, 0xad, 0xbe, 0xef]));
    assert!(e.contains("(-32602)") && e.contains("malformed"), "{e}");
    // Bad signature.
    let mut bad = transfer(0, chain_id);
    if let keel_types::Authorization::Ed25519(s) = &mut bad.signature {
        s.0[5] ^= 1;
    }
    let e = rpc_error(send(bad.encode()));
    assert!(e.contains("bad_signature"), "{e}");
    // Wrong chain id.
    let e = rpc_error(send(transfer(0, chain_id + 1).encode()));
    assert!(e.contains("wrong_chain_id"), "{e}");
    // Nonce gap beyond the window.
    let e = rpc_error(send(transfer(10_000, chain_id).encode()));
    assert!(e.contains("nonce_too_far_ahead"), "{e}");
    // Replay: once finalized, the same transaction is refused.
    let good = transfer(0, chain_id);
    send(good.encode()).expect("admitted");
    let e = rpc_error(send(good.encode()));
    assert!(
        e.contains("already_known") || e.contains("nonce_too_low"),
        "{e}"
    );
    let hash = good.hash();
    cluster
        .rt
        .block_on(keel_cli::client::wait_receipt(&cluster.client(0), &hash))
        .expect("receipt");
    let e = rpc_error(send(good.encode()));
    assert!(e.contains("nonce_too_low"), "{e}");
    // Oversized transaction (under the RPC body limit, over the transaction limit).
    let big = Transaction {
        chain_id,
        sender: key.public_key().into(),
        nonce: 1,
        gas_limit: 1_000_000,
        gas_price: 1,
        body: TxBody::Call {
            to: keel_types::Address([7; 20]),
            data: vec![0; 200 * 1024],
            value: U256::ZERO,
        },
    }
    .sign(&key);
    let mut bytes = big.encode();
    bytes.extend(vec![0; 100 * 1024]);
    let e = rpc_error(send(bytes));
    assert!(e.contains("too_large"), "{e}");
    // Malformed JSON-RPC and an over-limit request body.
    let raw = |body: &[u8]| -> String {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(cluster.configs[0].rpc.listen.clone()).expect("connect");
        let head = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).expect("write");
        let _ = s.write_all(body);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let response = raw(b"{\"jsonrpc\":\"2.0\",\"method\":");
    assert!(response.contains("-32700"), "{response}");
    let response = raw(&vec![b'['; 2 * 1024 * 1024]);
    assert!(
        response.starts_with("HTTP/1.1 413") || response.contains("-32701"),
        "{}",
        &response[..response.len().min(200)]
    );
    // Garbage on the p2p port: the node closes the connection.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(cluster.p2p(1)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(8)))
            .expect("timeout");
        let _ = s.write_all(&[0x00, 0x30, 1, 2, 3, 4, 5, 6, 7, 8]);
        let _ = s.write_all(&[0xff; 48]);
        let mut buf = [0u8; 1024];
        let mut total = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        assert!(
            total < 1024,
            "a garbage peer gets nothing but the handshake"
        );
    }
    let genesis =
        keel_node::genesis::Genesis::load(&cluster.home(0).join("genesis.json")).expect("genesis");
    // A key outside the validator set is a guest (it may sync and hears votes); a peer
    // showing node 1's own key is dropped after the identity exchange.
    let stranger = keel_node::keys::generate();
    let own = keel_node::keys::read(&cluster.home(1).join("keys/validator.json")).expect("key");
    for (key, admitted) in [(&stranger, true), (&own, false)] {
        let result = cluster.rt.block_on(keel_p2p::probe(
            &cluster.p2p(1),
            key,
            chain_id,
            genesis.hash(),
            None,
        ));
        assert_eq!(result.is_ok(), admitted, "{result:?}");
    }
    // A validator key sending a frame over the size limit: disconnected.
    let validator3 =
        keel_node::keys::read(&cluster.home(3).join("keys/validator.json")).expect("key");
    let oversized = vec![0u8; cluster.configs[1].p2p.max_frame_bytes as usize + 1];
    let _ = cluster.rt.block_on(keel_p2p::probe(
        &cluster.p2p(1),
        &validator3,
        chain_id,
        genesis.hash(),
        Some(oversized),
    ));
    let metrics = cluster.metrics_text(1);
    assert!(
        metric_sum(&metrics, "keel_p2p_rejected_total", "identity") >= 1,
        "{metrics}"
    );
    assert!(
        metric_sum(&metrics, "keel_p2p_rejected_total", "oversized") >= 1,
        "{metrics}"
    );
    // Through all of it, the chain kept finalizing on every validator.
    cluster.wait_height(&[0, 1, 2, 3], start + 20, Duration::from_secs(60));
    cluster.check_roots();
}

#[test]
fn mempool_flood_at_ten_times_capacity_stays_bounded_and_the_chain_finalizes() {
    use keel_types::{Canonical, Transaction, TxBody, U256};
    let _guard = serial();
    const CAPACITY: usize = 300;
    let cluster = Cluster::start(4, 22_600, 200, 60, |c| c.mempool.max_txs = CAPACITY);
    let pid = cluster.pid(0).expect("pid");
    let rss_kib = || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    let before_kib = rss_kib();
    let start = cluster.height(0).expect("height");
    let chain_id = cluster.call(0, "keel_status", vec![]).expect("status")["chain_id"]
        .as_u64()
        .expect("chain id");
    // 60 senders × 50 nonces = 3,000 transactions = 10× the pool.
    let mut raws = Vec::new();
    for j in 0..60 {
        let key = keel_node::keys::read(&cluster.dev_key(j)).expect("key");
        for nonce in 0..50 {
            let tx = Transaction {
                chain_id,
                sender: key.public_key().into(),
                nonce,
                gas_limit: 21_000,
                gas_price: 1,
                body: TxBody::Transfer {
                    to: keel_types::Address([9; 20]),
                    amount: U256::from(1u64),
                },
            }
            .sign(&key);
            raws.push(json!(format!("0x{}", hex::encode(tx.encode()))));
        }
    }
    let client = cluster.client(0);
    // All at once (64 in flight), faster than blocks drain the pool.
    let results: Vec<Result<Value, String>> = cluster.rt.block_on(async {
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
        let tasks: Vec<_> = raws
            .into_iter()
            .map(|raw| {
                let (client, permits) = (client.clone(), permits.clone());
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    client
                        .request("keel_sendTransaction", vec![raw])
                        .await
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        out
    });
    let full = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_err_and(|e| e.contains("(-32005)") && e.contains("mempool full"))
        })
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let other: Vec<&String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|e| !e.contains("(-32005)"))
        .collect();
    assert!(full > 0, "a flood must meet 'mempool full' (ok {ok})");
    assert!(
        other.is_empty(),
        "only 'mempool full' errors: {:?}",
        &other[..other.len().min(3)]
    );
    let status = cluster.call(0, "keel_status", vec![]).expect("status");
    assert!(status["mempool_size"].as_u64().expect("size") <= CAPACITY as u64);
    cluster.wait_height(&[0, 1, 2, 3], start + 15, Duration::from_secs(60));
    let growth_kib = rss_kib().saturating_sub(before_kib);
    assert!(growth_kib < 256 * 1024, "node 0 grew by {growth_kib} KiB");
    cluster.check_roots();
}

/// A WASM module importing `keel` / (900 × U+1F600): 3,600 bytes of name, valid UTF-8.
fn module_with_long_import_name() -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = "\u{1F600}".repeat(900);
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // Type section: one type, () -> ().
    m.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
    // Import section: keel.<name> as a function of type 0.
    let mut imports = vec![0x01, 0x04];
    imports.extend_from_slice(b"keel");
    leb128(name.len(), &mut imports);
    imports.extend_from_slice(name.as_bytes());
    imports.extend_from_slice(&[0x00, 0x00]);
    m.push(0x02);
    leb128(imports.len(), &mut m);
    m.extend_from_slice(&imports);
    m
}
