//! The node's own decoders (feature `node`, links RocksDB): the p2p `NetMessage` and every
//! JSON-RPC method's parameters, through the real `RpcModule` over a store holding a genesis.

use crate::{assert_canonical, seeds, FUZZ_CHAIN_ID};
use jsonrpsee::server::RpcModule;
use keel_exec_wasm::ModuleCache;
use keel_node::genesis::{Genesis, GenesisBalance, GenesisValidator};
use keel_node::mempool::{Mempool, MempoolConfig};
use keel_node::rpc::{self, RpcContext};
use keel_node::shared::Shared;
use keel_p2p::NetMessage;
use keel_runtime::{Runtime, RuntimeConfig};
use keel_store::{Store, StoreOptions};
use keel_types::limits::BLOCK_GAS_LIMIT;
use keel_types::{Canonical, U256};
use std::sync::{Arc, Mutex, OnceLock};

/// `NetMessage::decode`, what `run_connection` calls on every authenticated frame: round
/// trip, and the gossiped transactions are each valid transactions.
pub fn net_message(data: &[u8]) {
    let Ok(message) = NetMessage::decode(data) else {
        return;
    };
    assert_canonical(data, &message);
    match &message {
        NetMessage::Consensus(inner) => crate::consensus_message(&inner.encode()),
        NetMessage::Transactions(txs) => {
            for tx in txs {
                crate::agent_tx(&tx.encode());
            }
        }
        // Snapshot answers are checked by the asker against what it trusts; here each
        // decoded chunk's entries must be within their bounds (`validate`).
        NetMessage::Snapshot(inner) => {
            if let keel_p2p::SnapshotMessage::Chunk(chunk) = inner.as_ref() {
                assert!(chunk.entries.len() <= keel_types::proof::MAX_SNAPSHOT_CHUNK_ENTRIES);
            }
        }
    }
}

/// Every method a client can call (`keel_subscribe` is left out: its task lives as long as
/// the node, so a fuzz run would pile them up).
pub const RPC_METHODS: &[&str] = &[
    "keel_status",
    "keel_sendTransaction",
    "keel_getReceipt",
    "keel_getBlock",
    "keel_getAccount",
    "keel_getStorage",
    "keel_call",
    "keel_simulate",
    "keel_getProof",
    "eth_chainId",
    "net_version",
    "eth_blockNumber",
    "eth_gasPrice",
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getTransactionByHash",
    "eth_getTransactionReceipt",
    "eth_call",
    "eth_estimateGas",
    "eth_getLogs",
    "eth_feeHistory",
    "eth_sendRawTransaction",
    "keel_getValidators",
    "eth_getBlockReceipts",
    "debug_traceTransaction",
];

/// Response buffer for subscriptions (none are made).
const RPC_BUF: usize = 16;
/// JSON-RPC's "internal error": what jsonrpsee answers when a blocking handler panicked.
const INTERNAL_ERROR: i64 = -32603;

struct RpcHarness {
    runtime: tokio::runtime::Runtime,
    module: RpcModule<RpcContext>,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static RpcHarness {
    static HARNESS: OnceLock<RpcHarness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(
            Store::open(
                &dir.path().join("state"),
                StoreOptions {
                    sync_writes: false,
                    ..StoreOptions::default()
                },
            )
            .expect("a fresh store opens"),
        );
        let genesis = Genesis {
            chain_id: FUZZ_CHAIN_ID,
            genesis_time_ms: 0,
            epoch_length: 16,
            expiry_epochs: 0,
            fold_epochs: 0,
            block_gas_limit: BLOCK_GAS_LIMIT,
            min_gas_price: 1,
            plugin_gas: keel_types::policy::PLUGIN_GAS,
            attesters: Vec::new(),
            min_stake: keel_types::validator::DEFAULT_MIN_STAKE,
            max_validators: keel_types::limits::MAX_VALIDATORS,
            unbonding_epochs: keel_types::validator::DEFAULT_UNBONDING_EPOCHS,
            validators: vec![GenesisValidator {
                public_key: seeds::validator_key().public_key(),
                p2p: "127.0.0.1:1".into(),
                stake: keel_types::validator::DEFAULT_GENESIS_STAKE,
                operator: None,
            }],
            balances: seeds::funded_addresses()
                .into_iter()
                .map(|address| GenesisBalance {
                    address,
                    balance: U256::from(u128::MAX),
                })
                .collect(),
        };
        genesis.validate().expect("the fuzz genesis is valid");
        genesis.apply(&store, dir.path()).expect("genesis applies");
        let cache = Arc::new(ModuleCache::new(None, 4).expect("an in-memory module cache"));
        let mut config = RuntimeConfig::new(FUZZ_CHAIN_ID);
        config.min_gas_price = genesis.min_gas_price;
        config.verify_threads = 1;
        let (gossip, _) = tokio::sync::mpsc::channel(1);
        let module = rpc::module(RpcContext {
            store,
            mempool: Arc::new(Mutex::new(Mempool::new(
                MempoolConfig::default(),
                FUZZ_CHAIN_ID,
                genesis.min_gas_price,
            ))),
            runtime: Runtime::new(config, cache),
            shared: Arc::new(Shared::default()),
            gossip,
            net: None,
            chain_id: FUZZ_CHAIN_ID,
            genesis_hash: genesis.hash(),
            genesis_set: genesis.epoch_set(),
            my_key: genesis.validators.first().map_or_else(
                || keel_types::SecretKey::from_seed([1; 32]).public_key(),
                |v| v.public_key,
            ),
            expiry_epochs: genesis.expiry_epochs,
            min_gas_price: genesis.min_gas_price,
            epoch_length: genesis.epoch_length,
        })
        .expect("the RPC module registers");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        RpcHarness {
            runtime,
            module,
            _dir: dir,
        }
    })
}

/// One JSON-RPC call: the first byte picks the method, the rest is its `params` as JSON
/// text (or, if it is not JSON, its one string parameter). A well-formed request gets a
/// response with a result or an error, never jsonrpsee's internal error (a handler that
/// panicked).
pub fn rpc_params(data: &[u8]) {
    let Some((&pick, params)) = data.split_first() else {
        return;
    };
    let method = RPC_METHODS[usize::from(pick) % RPC_METHODS.len()];
    let text = String::from_utf8_lossy(params);
    // Text that is not JSON is passed as the method's one string parameter, so the handlers'
    // own parsers (hex, quantities, tags) see it instead of the server's JSON parser.
    let params = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(_) => text.into_owned(),
        Err(_) => serde_json::Value::Array(vec![text.into_owned().into()]).to_string(),
    };
    let request = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
    let harness = harness();
    let outcome = harness
        .runtime
        .block_on(harness.module.raw_json_request(&request, RPC_BUF));
    let Ok((response, _)) = outcome else {
        // Not a JSON-RPC request at all (the server answers a parse error before any handler).
        return;
    };
    let response: serde_json::Value =
        serde_json::from_str(response.get()).expect("a response is JSON");
    let error = response.get("error");
    assert!(
        response.get("result").is_some() != error.is_some(),
        "{method}: a response has a result or an error: {response}"
    );
    if let Some(code) = error.and_then(|e| e.get("code")).and_then(|c| c.as_i64()) {
        assert_ne!(
            code, INTERNAL_ERROR,
            "{method}: internal error (a handler panicked?): {response}"
        );
    }
}
