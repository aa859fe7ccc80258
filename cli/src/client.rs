//! The client commands (`keel tx …`, `keel query …`): JSON-RPC over HTTP to a node.

use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::ArrayParams;
use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};
use keel_node::keys;
use keel_types::{Address, Canonical, Env, Hash, SecretKey, Transaction, TxBody, U256};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// `--wait` gives up after this long without a receipt.
pub const WAIT_TIMEOUT_MS: u64 = 120_000;
const WAIT_POLL_MS: u64 = 100;
/// Default gas limits per kind of transaction.
pub const TRANSFER_GAS: u64 = 21_000;
pub const DEPLOY_GAS: u64 = 8_000_000;
pub const CALL_GAS: u64 = 1_000_000;

#[derive(Debug)]
pub struct Client {
    http: HttpClient,
    url: String,
}

impl Client {
    pub fn new(url: &str) -> Result<Client, String> {
        let http = HttpClientBuilder::default()
            .request_timeout(Duration::from_secs(30))
            .build(url)
            .map_err(|e| format!("bad --rpc {url}: {e}"))?;
        Ok(Client {
            http,
            url: url.to_string(),
        })
    }

    pub async fn request(&self, method: &str, params: Vec<Value>) -> Result<Value, String> {
        let mut array = ArrayParams::new();
        for p in params {
            array.insert(p).map_err(|e| e.to_string())?;
        }
        self.http
            .request::<Value, _>(method, array)
            .await
            .map_err(|e| match e {
                jsonrpsee::core::ClientError::Call(obj) => match obj.data() {
                    Some(data) => format!("{} ({}): {}", obj.message(), obj.code(), data.get()),
                    None => format!("{} ({})", obj.message(), obj.code()),
                },
                jsonrpsee::core::ClientError::Transport(t) => {
                    format!(
                        "cannot reach the node at {}: {t}; is it running? (--rpc URL)",
                        self.url
                    )
                }
                other => format!("{method}: {other}"),
            })
    }
}

impl Client {
    /// One JSON-RPC batch of calls to the same method; per-call results in order. `Err` if
    /// the batch as a whole failed (transport, or the node refused the batch).
    pub async fn request_batch(
        &self,
        method: &str,
        calls: Vec<Vec<Value>>,
    ) -> Result<Vec<Result<Value, String>>, String> {
        let mut batch = jsonrpsee::core::params::BatchRequestBuilder::new();
        for params in calls {
            let mut array = ArrayParams::new();
            for p in params {
                array.insert(p).map_err(|e| e.to_string())?;
            }
            batch.insert(method, array).map_err(|e| e.to_string())?;
        }
        let response = self
            .http
            .batch_request::<Value>(batch)
            .await
            .map_err(|e| match e {
                jsonrpsee::core::ClientError::Transport(t) => {
                    format!("cannot reach the node at {}: {t}", self.url)
                }
                other => format!("{method} batch: {other}"),
            })?;
        Ok(response
            .into_iter()
            .map(|entry| {
                entry.map_err(|obj| match obj.data() {
                    Some(data) => format!("{} ({}): {}", obj.message(), obj.code(), data.get()),
                    None => format!("{} ({})", obj.message(), obj.code()),
                })
            })
            .collect())
    }
}

/// What a transaction command sends.
#[derive(Debug)]
pub struct TxRequest {
    pub body: TxBody,
    pub gas: Option<u64>,
    pub gas_price: Option<u128>,
    pub nonce: Option<u64>,
    pub wait: bool,
}

pub fn parse_amount(text: &str) -> Result<U256, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => U256::from_str_radix(hex, 16),
        None => U256::from_str_radix(text, 10),
    };
    parsed.map_err(|e| format!("{text:?} is not an amount: {e}"))
}

pub fn parse_hex(text: &str, what: &str) -> Result<Vec<u8>, String> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean.strip_prefix("0x").unwrap_or(&clean))
        .map_err(|e| format!("{what} is not hex: {e}"))
}

pub fn parse_address(text: &str) -> Result<Address, String> {
    Address::from_hex(text).map_err(|_| format!("{text:?} is not a 20-byte hex address"))
}

/// Reads contract code: EVM creation bytecode as hex text; WASM as a binary or `.wat` text.
pub fn read_code(env: Env, path: &Path) -> Result<Vec<u8>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match env {
        Env::Evm => parse_hex(
            std::str::from_utf8(&raw).map_err(|_| format!("{}: not hex text", path.display()))?,
            "EVM code",
        ),
        Env::Wasm if raw.starts_with(b"\0asm") => Ok(raw),
        Env::Wasm => wat::parse_bytes(&raw)
            .map(|b| b.into_owned())
            .map_err(|e| format!("{}: not WASM or WAT: {e}", path.display())),
    }
}

fn field_u64(value: &Value, name: &str) -> Result<u64, String> {
    value
        .get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("node response lacks {name}"))
}

/// Signs and submits; with `wait`, polls for the receipt and returns it.
pub async fn send(client: &Client, key: &SecretKey, request: TxRequest) -> Result<Value, String> {
    let status = client.request("keel_status", vec![]).await?;
    let chain_id = field_u64(&status, "chain_id")?;
    let min_price: u128 = status
        .get("min_gas_price")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let sender = Address::from_public_key(&key.public_key());
    let nonce = match request.nonce {
        Some(n) => n,
        None => {
            let account = client
                .request("keel_getAccount", vec![json!(sender.to_hex())])
                .await?;
            field_u64(&account, "pending_nonce")?
        }
    };
    let gas_limit = request.gas.unwrap_or(match request.body {
        TxBody::Transfer { .. } => TRANSFER_GAS,
        TxBody::Deploy { .. } => DEPLOY_GAS,
        TxBody::Call { .. } | TxBody::Revive { .. } | TxBody::Unflag { .. } => CALL_GAS,
    });
    let tx = Transaction {
        chain_id,
        sender: key.public_key().into(),
        nonce,
        gas_limit,
        gas_price: request.gas_price.unwrap_or(min_price).max(min_price),
        body: request.body,
    }
    .sign(key);
    let raw = format!("0x{}", hex::encode(tx.encode()));
    let sent = client
        .request("keel_sendTransaction", vec![json!(raw)])
        .await?;
    if !request.wait {
        return Ok(sent);
    }
    let hash = tx.hash();
    wait_receipt(client, &hash).await
}

pub async fn wait_receipt(client: &Client, hash: &Hash) -> Result<Value, String> {
    let mut waited = 0;
    loop {
        let receipt = client
            .request("keel_getReceipt", vec![json!(hash.to_hex())])
            .await?;
        if !receipt.is_null() {
            return Ok(receipt);
        }
        if waited >= WAIT_TIMEOUT_MS {
            return Err(format!(
                "transaction {hash} not finalized after {} s; check `keel query status`",
                WAIT_TIMEOUT_MS / 1000
            ));
        }
        tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
        waited += WAIT_POLL_MS;
    }
}

pub fn read_key(path: &Path) -> Result<SecretKey, String> {
    keys::read(path).map_err(|e| e.to_string())
}
