//! The restoring node's RPC covers every method of the full one (a method added to the
//! full module and not here fails the first test), and answers each with a typed error
//! that carries the progress, while unknown methods stay unknown.

use super::*;
use crate::rpc::RpcContext;
use crate::shared::SnapshotProgress;
use crate::{Mempool, MempoolConfig};
use keel_runtime::{Runtime, RuntimeConfig};
use std::collections::BTreeSet;
use std::sync::Mutex;

fn full_module_names() -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        keel_store::Store::open(
            &dir.path().join("state"),
            keel_store::StoreOptions::default(),
        )
        .expect("store"),
    );
    let cache = Arc::new(
        keel_exec_wasm::ModuleCache::new(None, keel_exec_wasm::limits::MODULE_CACHE_ENTRIES)
            .expect("module cache"),
    );
    let (gossip, _rx) = tokio::sync::mpsc::channel(1);
    let module = crate::rpc::module(RpcContext {
        store,
        mempool: Arc::new(Mutex::new(Mempool::new(MempoolConfig::default(), 7, 1))),
        runtime: Runtime::new(RuntimeConfig::new(7), cache),
        shared: Arc::new(Shared::default()),
        gossip,
        net: None,
        chain_id: 7,
        genesis_hash: Hash::ZERO,
        genesis_set: keel_types::validator::EpochSet {
            epoch: 0,
            members: Vec::new(),
        },
        my_key: keel_types::SecretKey::from_seed([1; 32]).public_key(),
        expiry_epochs: 0,
        min_gas_price: 1,
        epoch_length: 100,
    })
    .expect("the full module");
    module.method_names().map(str::to_owned).collect()
}

#[test]
fn the_restoring_rpc_knows_every_method_of_the_full_one() {
    let full = full_module_names();
    let listed: BTreeSet<String> = FULL_METHODS.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        full.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "served by the full node, missing from FULL_METHODS"
    );
    assert_eq!(
        listed.difference(&full).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in FULL_METHODS, not served by the full node"
    );
}

async fn call(module: &RpcModule<SyncingContext>, method: &str) -> Value {
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []});
    let (response, _) = module
        .raw_json_request(&request.to_string(), 1)
        .await
        .expect("a response");
    serde_json::from_str(response.get()).expect("json")
}

#[tokio::test]
async fn a_restoring_node_says_syncing_with_its_progress_and_unknown_methods_stay_unknown() {
    let key = keel_types::SecretKey::from_seed([9; 32]);
    let (net, _inbound, _gossip) = keel_p2p::Network::start(
        keel_p2p::NetConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            validators: Vec::new(),
            chain_id: 7,
            genesis_hash: Hash::ZERO,
            max_frame_bytes: 1 << 20,
            peer_queue_len: 16,
            guest_tenure_ms: keel_p2p::GUEST_TENURE_MS,
        },
        key,
    )
    .await
    .expect("network");
    let shared = Arc::new(Shared::default());
    shared.update(|s| {
        s.snapshot = Some(SnapshotProgress {
            phase: "state",
            epoch: 3,
            target_height: 59,
            permille: 412,
            entries: 1_000,
            bytes: 90_000,
            resumed: false,
        })
    });
    let module = syncing_module(SyncingContext {
        shared,
        net,
        chain_id: 7,
        genesis_hash: Hash::ZERO,
        validators: 4,
        min_gas_price: 1,
    })
    .expect("module");
    assert!(FULL_METHODS.len() > 20, "the list is the full module's");
    for method in FULL_METHODS
        .iter()
        .filter(|m| !SERVED_WHILE_SYNCING.contains(m))
    {
        let answer = call(&module, method).await;
        assert_eq!(
            answer["error"]["code"],
            json!(SYNCING),
            "{method}: {answer}"
        );
        assert_eq!(answer["error"]["data"]["reason"], json!("syncing"));
        assert_eq!(answer["error"]["data"]["snapshot"]["permille"], json!(412));
    }
    let unknown = call(&module, "keel_noSuchMethod").await;
    assert_eq!(unknown["error"]["code"], json!(-32601), "{unknown}");
    assert_eq!(call(&module, "eth_chainId").await["result"], json!("0x7"));
    assert_eq!(call(&module, "net_version").await["result"], json!("7"));
    let syncing = call(&module, "eth_syncing").await;
    assert_eq!(
        syncing["result"]["highestBlock"],
        json!("0x3b"),
        "{syncing}"
    );
    let status = call(&module, "keel_status").await;
    assert_eq!(status["result"]["syncing"], json!(true));
    assert_eq!(
        status["result"]["sync"]["snapshot"]["target_height"],
        json!(59)
    );
}
