//! Issue 21's join benchmark (run by hand, not in CI): a joining validator's restore and
//! first vote on a devnet whose state holds up to millions of entries.

use crate::common::{serial, Cluster};
use crate::validators::send;
use std::time::{Duration, Instant};

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
