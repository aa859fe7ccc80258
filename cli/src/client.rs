//! The client commands (`keel tx …`, `keel query …`): JSON-RPC over HTTP to a node.

use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::ArrayParams;
use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};
use keel_node::keys;
use keel_types::{Address, Canonical, Env, Hash, SecretKey, Transaction, TxBody, U256};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `--wait` gives up after this long without a receipt.
pub const WAIT_TIMEOUT_MS: u64 = 120_000;
const WAIT_POLL_MS: u64 = 100;
/// Default gas limits per kind of transaction.
pub const TRANSFER_GAS: u64 = 21_000;
pub const DEPLOY_GAS: u64 = 8_000_000;
pub const CALL_GAS: u64 = 1_000_000;

/// Why a client command failed; the text is what `keel` prints after `error:`. Each message
/// carries its cause's text, so the variants name no `source` (a chain would repeat it).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad --rpc {url}: {detail}")]
    BadUrl { url: String, detail: String },
    #[error("cannot reach the node at {url}: {detail}; is it running? (--rpc URL)")]
    Unreachable { url: String, detail: String },
    /// The node answered with a JSON-RPC error.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// Anything else the JSON-RPC client reported (a malformed response, a timeout).
    #[error("{method}: {detail}")]
    Request { method: String, detail: String },
    #[error("encoding the parameters of {method}: {error}")]
    Params {
        method: String,
        error: serde_json::Error,
    },
    #[error("{text:?} is not an amount: {detail}")]
    BadAmount { text: String, detail: String },
    #[error("{what} is not hex: {error}")]
    BadHex {
        what: String,
        error: hex::FromHexError,
    },
    #[error("{text:?} is not a 20-byte hex address")]
    BadAddress { text: String },
    #[error("{}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not hex text", path.display())]
    NotHexText { path: PathBuf },
    #[error("{}: not WASM or WAT: {detail}", path.display())]
    NotWasm { path: PathBuf, detail: String },
    #[error("{}: JSON without a \"proof\" string", path.display())]
    NoProof { path: PathBuf },
    #[error("bad policy: {detail}")]
    BadPolicy { detail: String },
    #[error("node response lacks {0}")]
    MissingField(&'static str),
    #[error("transaction {hash} not finalized after {} s; check `keel query status`", WAIT_TIMEOUT_MS / 1000)]
    NotFinalized { hash: Hash },
    #[error(transparent)]
    Key(#[from] keys::KeyError),
}

/// A JSON-RPC error object as the node sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code}){}", data.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct RpcError {
    pub code: i32,
    pub message: String,
    /// The error's `data` member, as JSON text.
    pub data: Option<String>,
}

impl From<jsonrpsee::types::ErrorObject<'_>> for RpcError {
    fn from(obj: jsonrpsee::types::ErrorObject<'_>) -> Self {
        RpcError {
            code: obj.code(),
            message: obj.message().to_string(),
            data: obj.data().map(|d| d.get().to_string()),
        }
    }
}

fn params(method: &str, values: Vec<Value>) -> Result<ArrayParams, ClientError> {
    let mut array = ArrayParams::new();
    for value in values {
        array.insert(value).map_err(|error| ClientError::Params {
            method: method.to_string(),
            error,
        })?;
    }
    Ok(array)
}

#[derive(Debug)]
pub struct Client {
    http: HttpClient,
    url: String,
}

impl Client {
    pub fn new(url: &str) -> Result<Client, ClientError> {
        let http = HttpClientBuilder::default()
            .request_timeout(Duration::from_secs(30))
            .build(url)
            .map_err(|e| ClientError::BadUrl {
                url: url.to_string(),
                detail: e.to_string(),
            })?;
        Ok(Client {
            http,
            url: url.to_string(),
        })
    }

    pub async fn request(&self, method: &str, values: Vec<Value>) -> Result<Value, ClientError> {
        self.http
            .request::<Value, _>(method, params(method, values)?)
            .await
            .map_err(|e| self.error(method, e))
    }

    fn error(&self, method: &str, e: jsonrpsee::core::ClientError) -> ClientError {
        match e {
            jsonrpsee::core::ClientError::Call(obj) => RpcError::from(obj).into(),
            jsonrpsee::core::ClientError::Transport(t) => ClientError::Unreachable {
                url: self.url.clone(),
                detail: t.to_string(),
            },
            other => ClientError::Request {
                method: method.to_string(),
                detail: other.to_string(),
            },
        }
    }
}

impl Client {
    /// One JSON-RPC batch of calls to the same method; per-call results in order. `Err` if
    /// the batch as a whole failed (transport, or the node refused the batch).
    pub async fn request_batch(
        &self,
        method: &str,
        calls: Vec<Vec<Value>>,
    ) -> Result<Vec<Result<Value, RpcError>>, ClientError> {
        let mut batch = jsonrpsee::core::params::BatchRequestBuilder::new();
        for values in calls {
            batch
                .insert(method, params(method, values)?)
                .map_err(|error| ClientError::Params {
                    method: method.to_string(),
                    error,
                })?;
        }
        let response = self
            .http
            .batch_request::<Value>(batch)
            .await
            .map_err(|e| self.error(method, e))?;
        Ok(response
            .into_iter()
            .map(|entry| entry.map_err(RpcError::from))
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
    /// Sign with the key as a session key of this account (`Sender::Session`).
    pub acting_as: Option<Address>,
}

pub fn parse_amount(text: &str) -> Result<U256, ClientError> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => U256::from_str_radix(hex, 16),
        None => U256::from_str_radix(text, 10),
    };
    parsed.map_err(|e| ClientError::BadAmount {
        text: text.to_string(),
        detail: e.to_string(),
    })
}

pub fn parse_hex(text: &str, what: &str) -> Result<Vec<u8>, ClientError> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean.strip_prefix("0x").unwrap_or(&clean)).map_err(|error| ClientError::BadHex {
        what: what.to_string(),
        error,
    })
}

pub fn parse_address(text: &str) -> Result<Address, ClientError> {
    Address::from_hex(text).map_err(|_| ClientError::BadAddress {
        text: text.to_string(),
    })
}

/// Reads a file the user named.
pub fn read_file(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|error| ClientError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Reads contract code: EVM creation bytecode as hex text; WASM as a binary or `.wat` text.
pub fn read_code(env: Env, path: &Path) -> Result<Vec<u8>, ClientError> {
    let raw = read_file(path)?;
    match env {
        Env::Evm => parse_hex(
            std::str::from_utf8(&raw).map_err(|_| ClientError::NotHexText {
                path: path.to_path_buf(),
            })?,
            "EVM code",
        ),
        Env::Wasm if raw.starts_with(b"\0asm") => Ok(raw),
        Env::Wasm => {
            wat::parse_bytes(&raw)
                .map(|b| b.into_owned())
                .map_err(|e| ClientError::NotWasm {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })
        }
    }
}

pub fn field_u64(value: &Value, name: &'static str) -> Result<u64, ClientError> {
    value
        .get(name)
        .and_then(Value::as_u64)
        .ok_or(ClientError::MissingField(name))
}

/// Signs and submits; with `wait`, polls for the receipt and returns it.
pub async fn send(
    client: &Client,
    key: &SecretKey,
    request: TxRequest,
) -> Result<Value, ClientError> {
    let status = client.request("keel_status", vec![]).await?;
    let chain_id = field_u64(&status, "chain_id")?;
    let min_price: u128 = status
        .get("min_gas_price")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // A session key signs for the account it acts as, with that account's nonce.
    let sender = request
        .acting_as
        .unwrap_or_else(|| Address::from_public_key(&key.public_key()));
    let nonce = match request.nonce {
        Some(n) => n,
        None => {
            let account = client
                .request("keel_getAccount", vec![json!(sender.to_hex())])
                .await?;
            field_u64(&account, "pending_nonce")?
        }
    };
    let gas_limit = request.gas.unwrap_or(match &request.body {
        TxBody::Transfer { .. } => TRANSFER_GAS,
        TxBody::Deploy { .. } => DEPLOY_GAS,
        TxBody::Call { .. } | TxBody::Revive { .. } | TxBody::Unflag { .. } => CALL_GAS,
        // Exactly what a policy change costs.
        body @ (TxBody::SetPolicy { .. }
        | TxBody::SetController { .. }
        | TxBody::AddSessionKey { .. }
        | TxBody::RevokeSessionKey { .. }) => body.policy_gas().unwrap_or(CALL_GAS),
        TxBody::Validator(op) => op.gas(),
    });
    let tx = Transaction {
        chain_id,
        sender: match request.acting_as {
            Some(account) => keel_types::Sender::Session {
                account,
                key: key.public_key(),
            },
            None => key.public_key().into(),
        },
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

pub async fn wait_receipt(client: &Client, hash: &Hash) -> Result<Value, ClientError> {
    let mut waited = 0;
    loop {
        let receipt = client
            .request("keel_getReceipt", vec![json!(hash.to_hex())])
            .await?;
        if !receipt.is_null() {
            return Ok(receipt);
        }
        if waited >= WAIT_TIMEOUT_MS {
            return Err(ClientError::NotFinalized { hash: *hash });
        }
        tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
        waited += WAIT_POLL_MS;
    }
}

pub fn read_key(path: &Path) -> Result<SecretKey, ClientError> {
    Ok(keys::read(path)?)
}
