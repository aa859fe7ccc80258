//! Issue 8's acceptance: a stock Ethereum client — web3.py from PyPI, installed by
//! scripts/setup — against a 4-validator keel devnet, with no change and no shims.
//!
//! Read side (web3_read.py, over contracts the keel CLI deployed): blocks by tag/number/hash,
//! balances and nonces equal to keel's own view, code and storage of EVM and WASM contracts,
//! `eth_call` through the ABI into both environments, gas estimation, revert data under
//! code 3, logs with filters and the range limit, transactions and receipts, fee history,
//! -32601 for unknown methods.
//!
//! Write side (web3_write.py): web3.py funds a fresh account from the devnet's Ethereum dev
//! key (`keel init` prefunds it), and that account deploys the solc-compiled
//! token with a secp256k1-signed EIP-1559 transaction, transfers with an event read back by
//! filter, gets a revert reason, sends legacy and EIP-2930 transactions, calls the WASM token,
//! and sees nonce and balance equal in the Ethereum and native views; replays, wrong chain
//! ids and malformed envelopes are refused. Then every validator's roots agree.
//!
//! Then stock ethers v6 and viem from npm (js/, installed by scripts/setup): default-fee
//! EIP-1559 transactions that pay exactly `gasUsed × effectiveGasPrice` at the base fee, a
//! deploy, `contract.on` / `watchContractEvent` over the WebSocket endpoint, revert decoding
//! (custom errors, reason strings) and `debug_traceTransaction` of an EVM contract calling the
//! WASM token.

use crate::common;

use common::{contract, deploy, keel, run_checked, run_js, serial, Cluster};
use keel_cli::init::{ETH_DEV_ACCOUNT_FILE, ETH_DEV_ADDRESS};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

const SUPPLY: &str = "00000000000000000000000000000000000000000000000000000000000f4240";
const BOB: &str = "0x00000000000000000000000000000000000000bb";

/// The Python with web3.py that scripts/setup installs (`KEEL_PYTHON` overrides).
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("KEEL_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").expect("HOME");
    PathBuf::from(home).join(".cache/keel-py/bin/python")
}

/// Runs one web3.py script from tests/eth.
fn run_web3(python: &PathBuf, script: &str, ctx: &serde_json::Value, min_checks: u64) {
    let mut command = Command::new(python);
    command.arg(common::manifest_dir().join("tests/eth").join(script));
    run_checked(command, script, ctx, min_checks);
}

#[test]
fn web3_py_ethers_and_viem_deploy_transact_and_read_evm_and_wasm_contracts_unmodified() {
    let python = python();
    assert!(
        python.exists(),
        "{} missing: run scripts/setup (it installs web3.py into a venv)",
        python.display()
    );
    let _guard = serial();
    let cluster = Cluster::start(4, 23_800, 300, 4, |_| {});
    let rpc = cluster.rpc(1);
    let key = cluster.dev_key(0);
    let key = key.to_str().expect("utf8");
    let mut ctx = json!({
        "rpc": rpc,
        "token_abi": contract("Token.abi"),
        "bob": BOB,
    });
    for (env, code) in [("evm", "Token.bin"), ("wasm", "token.wasm")] {
        let code = contract(code);
        let (ok, receipt, err) = deploy(&rpc, key, env, &code, Some(SUPPLY));
        assert!(
            ok && receipt["status"] == "success",
            "{env} deploy: {err} {receipt}"
        );
        let token = receipt["contract_address"]
            .as_str()
            .expect("address")
            .to_string();
        if env == "evm" {
            ctx["deploy_tx"] = receipt["tx_hash"].clone();
        }
        let data = format!(
            "0xa9059cbb{:0>64}{:064x}",
            BOB.trim_start_matches("0x"),
            100
        );
        let (ok, receipt, err) = keel(&[
            "tx", "call", "--rpc", &rpc, "--key", key, "--to", &token, "--data", &data, "--wait",
        ]);
        assert!(
            ok && receipt["status"] == "success",
            "{env} transfer: {err} {receipt}"
        );
        if env == "evm" {
            ctx["transfer_tx"] = receipt["tx_hash"].clone();
            ctx["min_height"] = receipt["block"].clone();
        }
        ctx[format!("{env}_token")] = json!(token);
    }
    // Issue 23: a contract written with keel-sdk (the Rust token), and the Solidity router
    // that web3.py will use to call it; the router holds some of its tokens.
    let (ok, receipt, err) = deploy(&rpc, key, "wasm", &contract("token_rs.wasm"), Some(SUPPLY));
    assert!(
        ok && receipt["status"] == "success",
        "rust token: {err} {receipt}"
    );
    let rust_token = receipt["contract_address"]
        .as_str()
        .expect("address")
        .to_string();
    let (ok, receipt, err) = deploy(&rpc, key, "evm", &contract("Router.bin"), None);
    assert!(
        ok && receipt["status"] == "success",
        "router: {err} {receipt}"
    );
    let router = receipt["contract_address"]
        .as_str()
        .expect("address")
        .to_string();
    let fund = format!(
        "0xa9059cbb{:0>64}{:064x}",
        router.trim_start_matches("0x"),
        1_000
    );
    let (ok, receipt, err) = keel(&[
        "tx",
        "call",
        "--rpc",
        &rpc,
        "--key",
        key,
        "--to",
        &rust_token,
        "--data",
        &fund,
        "--wait",
    ]);
    assert!(
        ok && receipt["status"] == "success",
        "fund router: {err} {receipt}"
    );
    ctx["rust_token"] = json!(rust_token);
    ctx["router"] = json!(router);
    ctx["router_abi"] = json!(contract("Router.abi"));
    ctx["router_rust_balance"] = json!(1_000);
    let (ok, status, _) = keel(&["query", "status", "--rpc", &rpc]);
    assert!(ok);
    ctx["chain_id"] = status["chain_id"].clone();
    ctx["min_gas_price"] = json!(status["min_gas_price"]
        .as_str()
        .and_then(|s| s.parse::<u128>().ok())
        .expect("min gas price"));
    let holder = keel_node::keys::read(&cluster.dev_key(0)).expect("key");
    let holder = keel_types::Address::from_public_key(&holder.public_key()).to_hex();
    let (ok, account, _) = keel(&["query", "account", &holder, "--rpc", &rpc]);
    assert!(ok, "{account}");
    ctx["holder"] = json!(holder);
    ctx["holder_balance"] = account["balance"].clone();
    ctx["holder_nonce"] = account["nonce"].clone();

    run_web3(&python, "web3_read.py", &ctx, 50);

    // Write side: web3.py funds a fresh secp256k1 account from the devnet's Ethereum dev
    // key, deploys, transacts (EIP-1559, legacy, EIP-2930), calls the WASM token and checks
    // nonces and balances against the native view.
    let dev: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cluster.dir.path().join(ETH_DEV_ACCOUNT_FILE))
            .expect("keel init wrote the Ethereum dev account"),
    )
    .expect("json");
    assert_eq!(dev["address"], ETH_DEV_ADDRESS);
    ctx["eth_dev_key"] = dev["private_key"].clone();
    ctx["token_bin"] = json!(contract("Token.bin"));
    run_web3(&python, "web3_write.py", &ctx, 40);
    // Subscriptions over the same port's WebSocket: newHeads, logs, pending transactions.
    run_web3(&python, "web3_subscribe.py", &ctx, 12);
    // ethers v6 and viem, each with its default fees, watchers, revert decoding and a trace.
    run_js("ethers_test.mjs", &ctx, 25);
    run_js("viem_test.mjs", &ctx, 14);
    // Every validator executed the Ethereum transactions identically.
    let height = cluster.height(1).expect("height");
    cluster.wait_height(&[0, 1, 2, 3], height, std::time::Duration::from_secs(30));
    assert!(cluster.check_roots() >= height);
}
