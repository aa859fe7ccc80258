//! Ethereum JSON-RPC over keel's one state, in Ethereum's shapes, so stock clients (web3.py,
//! viem, ethers, cast) read keel unmodified.
//!
//! keel finalizes every block it stores, so `latest`, `safe`, `finalized` and `pending` all
//! name the last finalized height (`pending` additionally counts pool transactions in
//! `eth_getTransactionCount`). Fees: keel's base fee is one flat gas price, reported as every
//! block's `baseFeePerGas` and as `eth_gasPrice`; an EIP-1559 transaction pays
//! `min(maxFeePerGas, base + maxPriorityFeePerGas)` (`eth::effective_gas_price`), so a client's
//! default `maxFeePerGas = 2·base + 0` pays the base fee.

use super::{admit_error, RpcContext, StoreHashes, INVALID_PARAMS, NODE_ERROR};
use super::{bad_params, err, node_err, parse_address, parse_bytes, parse_hash};
use crate::mempool::AdmitError;
use crate::metrics as m;
use jsonrpsee::server::RpcModule;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use keel_runtime::CallRequest;
use keel_state::StateViewExt;
use keel_store::StoreView;
use keel_types::eth;
use keel_types::limits::{BLOCK_GAS_LIMIT, MAX_TX_BYTES, MAX_TX_GAS};
use keel_types::state_key::WASM_CODE_PREFIX;
use keel_types::{
    Address, Authorization, Block, Canonical, Env, Hash, Height, Log, Receipt, SignedTransaction,
    TxBody, TxStatus, U256,
};
use serde_json::{json, Value};

mod logs;
mod subscribe;
mod trace;

use logs::{log_json, logs_bloom};

/// Error code geth uses for a reverted `eth_call` / `eth_estimateGas`, with the revert data.
pub const EXECUTION_REVERTED: i32 = 3;
/// Error code for a query over its limit (the code Infura and Alchemy use; viem knows it).
pub const LIMIT_EXCEEDED: i32 = -32005;
/// Most blocks one `eth_getLogs` may scan.
pub const MAX_LOG_BLOCK_RANGE: u64 = 5_000;
/// Most logs one `eth_getLogs` may return.
pub const MAX_LOGS_PER_QUERY: usize = 10_000;
/// Most blocks one `eth_feeHistory` may cover (geth's limit).
pub const MAX_FEE_HISTORY_BLOCKS: u64 = 1_024;
/// Reported as `web3_clientVersion`.
pub const CLIENT_VERSION: &str = concat!("keel/v", env!("CARGO_PKG_VERSION"));
/// keccak256 of the RLP of an empty list: every keel block has no uncles.
const EMPTY_UNCLES_HASH: &str =
    "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347";
/// `Error(string)` selector of Solidity reverts.
const ERROR_SELECTOR: [u8; 4] = [0x08, 0xc3, 0x79, 0xa0];

fn qty(n: u64) -> String {
    super::json::qty(n)
}

fn qty256(n: &U256) -> String {
    super::json::qty256(n)
}

fn hexb(b: &[u8]) -> String {
    super::json::bytes(b)
}

fn parse_qty(v: &Value, what: &str) -> Result<u64, ErrorObjectOwned> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| bad_params(format!("{what}: non-negative integer"))),
        Value::String(s) => match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => s.parse(),
        }
        .map_err(|_| bad_params(format!("{what}: {s:?} is not a quantity"))),
        _ => Err(bad_params(format!("{what}: integer or hex quantity"))),
    }
}

fn parse_qty256(v: &Value, what: &str) -> Result<U256, ErrorObjectOwned> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(U256::from)
            .ok_or_else(|| bad_params(format!("{what}: non-negative integer"))),
        Value::String(s) => {
            let digits = s.strip_prefix("0x").unwrap_or(s);
            U256::from_str_radix(digits, 16)
                .map_err(|_| bad_params(format!("{what}: {s:?} is not a hex quantity")))
        }
        _ => Err(bad_params(format!("{what}: hex quantity"))),
    }
}

/// The gas of a call that is a policy change in its call form (a call with no value to
/// `POLICY_ADDRESS` carrying a change's encoding), or `None` for any other call.
fn policy_call_gas(call: &Value) -> Result<Option<u64>, ErrorObjectOwned> {
    let fields = call_fields(call)?;
    if fields.to != Some(keel_types::policy::POLICY_ADDRESS) {
        return Ok(None);
    }
    let body = TxBody::Call {
        to: keel_types::policy::POLICY_ADDRESS,
        data: fields.data,
        value: fields.value,
    };
    Ok(body.policy_gas())
}

/// The fields of an `eth_call` / `eth_estimateGas` call object.
struct CallFields {
    from: Address,
    to: Option<Address>,
    data: Vec<u8>,
    value: U256,
}

fn call_fields(call: &Value) -> Result<CallFields, ErrorObjectOwned> {
    let obj = call
        .as_object()
        .ok_or_else(|| bad_params("call: an object {from?, to?, data?, value?, gas?}"))?;
    let field = |name: &str| obj.get(name).filter(|v| !v.is_null());
    let from = field("from")
        .and_then(Value::as_str)
        .map(parse_address)
        .transpose()?
        .unwrap_or_default();
    let to = field("to")
        .and_then(Value::as_str)
        .map(parse_address)
        .transpose()?;
    let data = field("input")
        .or_else(|| field("data"))
        .and_then(Value::as_str)
        .map(parse_bytes)
        .transpose()?
        .unwrap_or_default();
    let value = field("value")
        .map(|v| parse_qty256(v, "value"))
        .transpose()?
        .unwrap_or_default();
    Ok(CallFields {
        from,
        to,
        data,
        value,
    })
}

/// What a native transaction looks like to an Ethereum client: (to, value, input).
fn eth_view(tx: &SignedTransaction) -> (Option<Address>, U256, Vec<u8>) {
    match &tx.tx.body {
        TxBody::Transfer { to, amount } => (Some(*to), *amount, Vec::new()),
        TxBody::Call { to, data, value } => (Some(*to), *value, data.clone()),
        TxBody::Deploy {
            env,
            code,
            args,
            value,
            ..
        } => {
            let mut input = match env {
                Env::Evm => Vec::new(),
                Env::Wasm => WASM_CODE_PREFIX.to_vec(),
            };
            input.extend_from_slice(code);
            input.extend_from_slice(args);
            (None, *value, input)
        }
        TxBody::Revive { proof } | TxBody::Unflag { proof } => (None, U256::ZERO, proof.clone()),
        // Shown as a call to the address policy logs come from, with the body's encoding.
        TxBody::SetPolicy { .. }
        | TxBody::SetController { .. }
        | TxBody::AddSessionKey { .. }
        | TxBody::RevokeSessionKey { .. } => (
            Some(keel_types::policy::POLICY_ADDRESS),
            U256::ZERO,
            tx.tx.body.policy_call_data(),
        ),
        // Shown as a call to the registry's address with the operation's encoding.
        TxBody::Validator(op) => (
            Some(keel_types::validator::REGISTRY_ADDRESS),
            op.value(),
            borsh::to_vec(op).unwrap_or_default(),
        ),
    }
}

/// The envelope fields of an Ethereum transaction (`None` for native ones).
fn eth_fields(tx: &SignedTransaction) -> Option<eth::EnvelopeFields> {
    match &tx.signature {
        Authorization::Ethereum(raw) => eth::envelope_fields(raw),
        Authorization::Ed25519(_) => None,
    }
}

/// A revert as geth reports it: code 3, "execution reverted[: reason]", data = revert bytes.
fn reverted(output: &[u8]) -> ErrorObjectOwned {
    let reason = output
        .strip_prefix(&ERROR_SELECTOR[..])
        .and_then(decode_abi_string);
    let message = match reason {
        Some(r) => format!("execution reverted: {r}"),
        None => "execution reverted".to_string(),
    };
    ErrorObjectOwned::owned(EXECUTION_REVERTED, message, Some(hexb(output)))
}

/// Decodes one ABI-encoded `string` argument (offset, length, bytes), bounded by the input.
fn decode_abi_string(data: &[u8]) -> Option<String> {
    let word = |at: usize| -> Option<usize> {
        // Revert data is contract-chosen: an offset near usize::MAX must not overflow.
        let w = data.get(at..at.checked_add(32)?)?;
        if w[..24].iter().any(|b| *b != 0) {
            return None;
        }
        usize::try_from(u64::from_be_bytes(w[24..].try_into().ok()?)).ok()
    };
    let offset = word(0)?;
    let len = word(offset)?;
    let start = offset.checked_add(32)?;
    let bytes = data.get(start..start.checked_add(len)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

impl RpcContext {
    /// The height a block tag or number names (EIP-1898 objects included), which must exist.
    fn tag_height(&self, tag: Option<&Value>) -> Result<Height, ErrorObjectOwned> {
        let latest = self.latest_height();
        let height = self.requested_height(tag)?;
        if height > latest {
            return Err(err(
                NODE_ERROR,
                format!("header not found: block {height} is above the latest {latest}"),
            ));
        }
        Ok(height)
    }

    /// The height a tag or number asks for, possibly above the latest block.
    fn requested_height(&self, tag: Option<&Value>) -> Result<Height, ErrorObjectOwned> {
        Ok(match tag {
            None | Some(Value::Null) => self.latest_height(),
            Some(Value::String(s))
                if matches!(s.as_str(), "latest" | "safe" | "finalized" | "pending") =>
            {
                self.latest_height()
            }
            Some(Value::String(s)) if s == "earliest" => {
                self.store.oldest_retained().map_err(node_err)?
            }
            Some(Value::Object(o)) => {
                if let Some(hash) = o.get("blockHash").and_then(Value::as_str) {
                    let hash = parse_hash(hash)?;
                    self.store
                        .block_height(&hash)
                        .map_err(node_err)?
                        .ok_or_else(|| {
                            err(NODE_ERROR, format!("block {} not found", hash.to_hex()))
                        })?
                } else if let Some(n) = o.get("blockNumber") {
                    parse_qty(n, "blockNumber")?
                } else {
                    return Err(bad_params("block object needs blockHash or blockNumber"));
                }
            }
            Some(v) => parse_qty(v, "block")?,
        })
    }

    fn view_at(&self, tag: Option<&Value>) -> Result<StoreView<'_>, ErrorObjectOwned> {
        let height = self.tag_height(tag)?;
        if self.store.latest().is_none() {
            return Ok(self.store.latest_view());
        }
        self.store.view(height).map_err(node_err)
    }

    fn eth_balance(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let address = parse_address(str_param(p, 0, "address")?)?;
        let account = self
            .view_at(p.get(1))?
            .account(&address)
            .map_err(node_err)?;
        Ok(json!(qty256(&account.unwrap_or_default().balance)))
    }

    fn eth_nonce(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let address = parse_address(str_param(p, 0, "address")?)?;
        let nonce = self
            .view_at(p.get(1))?
            .account(&address)
            .map_err(node_err)?
            .unwrap_or_default()
            .nonce;
        let nonce = if p.get(1).and_then(Value::as_str) == Some("pending") {
            let pool = self.mempool.lock().expect("mempool lock");
            pool.pending_nonce(&address, nonce)
        } else {
            nonce
        };
        Ok(json!(qty(nonce)))
    }

    fn eth_code(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let address = parse_address(str_param(p, 0, "address")?)?;
        let view = self.view_at(p.get(1))?;
        let Some(code) = view
            .account(&address)
            .map_err(node_err)?
            .and_then(|a| a.code)
        else {
            return Ok(json!("0x"));
        };
        let blob = view.code(&code.code_hash).map_err(node_err)?;
        Ok(json!(blob.map_or_else(
            || "0x".to_string(),
            |b| match b.env {
                Env::Evm => hexb(&b.code),
                // What the EVM sees at a WASM contract: the marker, then the module.
                Env::Wasm => hexb(&[&WASM_CODE_PREFIX[..], &b.code].concat()),
            }
        )))
    }

    fn eth_storage(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let address = parse_address(str_param(p, 0, "address")?)?;
        // A quantity ("0x2") in Ethereum, not necessarily an even-length byte string.
        let slot = parse_qty256(p.get(1).unwrap_or(&Value::Null), "slot")?.to_be_bytes::<32>();
        let value = self
            .view_at(p.get(2))?
            .storage(&address, &slot)
            .map_err(node_err)?;
        Ok(json!(hexb(&value)))
    }

    /// Runs a call object at a block; `Err` carries geth's error shapes.
    fn run_call(
        &self,
        call: &Value,
        tag: Option<&Value>,
        gas: u64,
    ) -> Result<Receipt, ErrorObjectOwned> {
        let CallFields {
            from,
            to,
            data,
            value,
        } = call_fields(call)?;
        let view = self.view_at(tag)?;
        let header = self.next_header();
        let context = self.runtime.context(&header);
        self.runtime
            .call(
                &view,
                &StoreHashes(&self.store),
                &context,
                CallRequest {
                    from,
                    to,
                    data,
                    value,
                    gas_limit: gas,
                },
            )
            .map_err(node_err)
    }

    fn call_gas(call: &Value) -> Result<u64, ErrorObjectOwned> {
        Ok(match call.get("gas").filter(|v| !v.is_null()) {
            Some(v) => parse_qty(v, "gas")?.min(MAX_TX_GAS),
            None => MAX_TX_GAS,
        })
    }

    fn eth_call(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let call = p.first().ok_or_else(|| bad_params("missing call object"))?;
        if p.get(2).is_some_and(|v| !v.is_null()) {
            return Err(bad_params("state overrides are not supported"));
        }
        let receipt = self.run_call(call, p.get(1), Self::call_gas(call)?)?;
        match receipt.status {
            TxStatus::Success => Ok(json!(hexb(&receipt.output))),
            TxStatus::Revert => Err(reverted(&receipt.output)),
            TxStatus::Rejected => Err(err(
                NODE_ERROR,
                receipt
                    .error
                    .map_or("rejected".to_string(), |e| e.to_string()),
            )),
        }
    }

    /// The least gas limit under which the call succeeds (binary search, as geth does), so
    /// refunds and the 63/64 rule cannot make the estimate too low.
    fn eth_estimate_gas(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let call = p.first().ok_or_else(|| bad_params("missing call object"))?;
        let tag = p.get(1);
        // A policy change in its call form costs its own gas, not a call's (docs/policies.md).
        if let Some(gas) = policy_call_gas(call)? {
            return Ok(json!(qty(gas)));
        }
        let cap = Self::call_gas(call)?;
        let first = self.run_call(call, tag, cap)?;
        match first.status {
            TxStatus::Success => {}
            TxStatus::Revert => return Err(reverted(&first.output)),
            TxStatus::Rejected => {
                return Err(err(
                    NODE_ERROR,
                    first
                        .error
                        .map_or("rejected".to_string(), |e| e.to_string()),
                ))
            }
        }
        // Invariant: `hi` succeeds, `lo` fails (gas used minus one cannot succeed).
        let (mut lo, mut hi) = (first.gas_used.saturating_sub(1), cap);
        if self.run_call(call, tag, first.gas_used)?.status == TxStatus::Success {
            hi = first.gas_used;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.run_call(call, tag, mid)?.status == TxStatus::Success {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(json!(qty(hi.saturating_add(self.plugin_room(call, tag)?))))
    }

    /// Room for the policy plugins a transaction of this call runs before it (the sender's
    /// policy's and the target's): `plugin_gas` each, the most a plugin may use. A call
    /// runs no plugins, so without this an estimate leaves them no gas (found by review).
    fn plugin_room(&self, call: &Value, tag: Option<&Value>) -> Result<u64, ErrorObjectOwned> {
        let CallFields { from, to, .. } = call_fields(call)?;
        let view = self.view_at(tag)?;
        let mut plugins: Vec<keel_types::Address> = keel_runtime::policy::read_record(&view, &from)
            .map_err(node_err)?
            .map(|r| r.policy.plugins)
            .unwrap_or_default();
        if let Some(to) = to {
            let mut load = keel_runtime::jurisdiction::view_slots(&view);
            plugins.extend(
                keel_runtime::jurisdiction::target_plugins(&mut load, &to).map_err(node_err)?,
            );
        }
        plugins.sort();
        plugins.dedup();
        let each = self.runtime.config().plugin_gas;
        Ok((plugins.len() as u64).saturating_mul(each).min(MAX_TX_GAS))
    }

    fn block_of(&self, height: Height) -> Result<Option<(Block, Vec<Receipt>)>, ErrorObjectOwned> {
        let Some(block) = self.store.block(height).map_err(node_err)? else {
            return Ok(None);
        };
        let receipts = self
            .store
            .receipts(height)
            .map_err(node_err)?
            .unwrap_or_default();
        Ok(Some((block, receipts)))
    }

    fn eth_tx_json(&self, block: &Block, index: usize) -> Value {
        let tx = &block.transactions[index];
        let (to, value, input) = eth_view(tx);
        let mut out = json!({
            "hash": tx.hash().to_hex(),
            "nonce": qty(tx.tx.nonce),
            "blockHash": block.hash().to_hex(),
            "blockNumber": qty(block.header.height),
            "transactionIndex": qty(index as u64),
            "from": tx.tx.sender_address().to_hex(),
            "to": to.map(|a| a.to_hex()),
            "value": qty256(&value),
            "gas": qty(tx.tx.gas_limit),
            "gasPrice": format!("{:#x}", tx.tx.gas_price),
            "input": hexb(&input),
            "type": "0x0",
            "chainId": qty(tx.tx.chain_id),
            // Native transactions are ed25519-signed: there is no secp256k1 (v, r, s).
            "v": "0x0",
            "r": "0x0",
            "s": "0x0",
        });
        if let Some(f) = eth_fields(tx) {
            out["type"] = json!(qty(u64::from(f.tx_type)));
            out["v"] = json!(qty(f.v));
            out["r"] = json!(qty256(&f.r));
            out["s"] = json!(qty256(&f.s));
            if f.tx_type > 0 {
                out["yParity"] = json!(qty(u64::from(f.y_parity)));
                out["accessList"] = json!([]);
            }
            if let (Some(max), Some(tip)) = (f.max_fee_per_gas, f.max_priority_fee_per_gas) {
                out["maxFeePerGas"] = json!(format!("{max:#x}"));
                out["maxPriorityFeePerGas"] = json!(format!("{tip:#x}"));
            }
        }
        out
    }

    fn eth_send_raw(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let raw = parse_bytes(str_param(p, 0, "signed transaction")?)?;
        if raw.len() > MAX_TX_BYTES {
            return Err(admit_error(&AdmitError::TooLarge {
                len: raw.len(),
                max: MAX_TX_BYTES,
            }));
        }
        let tx = eth::decode(&raw, self.chain_id, self.min_gas_price).map_err(|e| match e {
            eth::EthTxError::WrongChainId { expected, got } => {
                admit_error(&AdmitError::WrongChainId { expected, got })
            }
            eth::EthTxError::BadSignature(_) => admit_error(&AdmitError::BadSignature),
            other => admit_error(&AdmitError::Decode(other.to_string())),
        })?;
        let encoded_len = tx.encode().len();
        let hash = self.admit_one(tx, encoded_len)?;
        Ok(json!(hash.to_hex()))
    }

    fn eth_block_json(
        &self,
        block: &Block,
        receipts: &[Receipt],
        full: bool,
    ) -> Result<Value, ErrorObjectOwned> {
        let state_root = self
            .store
            .state_root(block.header.height)
            .map_err(node_err)?;
        let transactions: Vec<Value> = (0..block.transactions.len())
            .map(|i| {
                if full {
                    self.eth_tx_json(block, i)
                } else {
                    json!(block.transactions[i].hash().to_hex())
                }
            })
            .collect();
        let mut out = self.eth_header_json(block, receipts, state_root);
        out["transactions"] = Value::Array(transactions);
        out["uncles"] = json!([]);
        Ok(out)
    }

    /// A block's Ethereum header fields (no `transactions`, no `uncles`): what `newHeads`
    /// sends, and the rest of `eth_getBlockBy*`.
    fn eth_header_json(&self, block: &Block, receipts: &[Receipt], state_root: Hash) -> Value {
        let h = &block.header;
        let gas_used: u64 = receipts.iter().map(|r| r.gas_used).sum();
        json!({
            "number": qty(h.height),
            "hash": block.hash().to_hex(),
            "parentHash": h.parent_hash.to_hex(),
            "nonce": "0x0000000000000000",
            "sha3Uncles": EMPTY_UNCLES_HASH,
            "logsBloom": hexb(&logs_bloom(receipts.iter().flat_map(|r| &r.logs))),
            "transactionsRoot": h.tx_root.to_hex(),
            "stateRoot": state_root.to_hex(),
            "receiptsRoot": keel_types::receipt::receipts_root(receipts).to_hex(),
            "miner": Address::from_public_key(&h.proposer).to_hex(),
            "difficulty": "0x0",
            "totalDifficulty": "0x0",
            "extraData": "0x",
            "size": qty(block.encode().len() as u64),
            "gasLimit": qty(BLOCK_GAS_LIMIT),
            "gasUsed": qty(gas_used),
            "timestamp": qty(h.timestamp_ms / 1000),
            "baseFeePerGas": format!("{:#x}", self.min_gas_price),
            "mixHash": Hash::ZERO.to_hex(),
        })
    }

    fn eth_block_by_number(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let height = self.requested_height(p.first())?;
        if height > self.latest_height() {
            // geth answers null for a block that does not exist yet (a store error, which
            // shares the server-error code, still reaches the caller as an error).
            return Ok(Value::Null);
        }
        let full = p.get(1).and_then(Value::as_bool).unwrap_or(false);
        match self.block_of(height)? {
            Some((block, receipts)) => self.eth_block_json(&block, &receipts, full),
            None => Ok(Value::Null),
        }
    }

    fn eth_block_by_hash(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let hash = parse_hash(str_param(p, 0, "block hash")?)?;
        let full = p.get(1).and_then(Value::as_bool).unwrap_or(false);
        let Some(height) = self.store.block_height(&hash).map_err(node_err)? else {
            return Ok(Value::Null);
        };
        match self.block_of(height)? {
            Some((block, receipts)) => self.eth_block_json(&block, &receipts, full),
            None => Ok(Value::Null),
        }
    }

    fn located(
        &self,
        p: &[Value],
    ) -> Result<Option<(Block, Vec<Receipt>, usize)>, ErrorObjectOwned> {
        let hash = parse_hash(str_param(p, 0, "transaction hash")?)?;
        let Some((height, index)) = self.store.tx_location(&hash).map_err(node_err)? else {
            return Ok(None);
        };
        let Some((block, receipts)) = self.block_of(height)? else {
            return Ok(None);
        };
        let index = index as usize;
        if index >= block.transactions.len() || index >= receipts.len() {
            return Err(node_err(format!(
                "index of {} is inconsistent",
                hash.to_hex()
            )));
        }
        Ok(Some((block, receipts, index)))
    }

    fn eth_tx_by_hash(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        Ok(match self.located(p)? {
            Some((block, _, index)) => self.eth_tx_json(&block, index),
            None => Value::Null,
        })
    }

    fn eth_receipt(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let Some((block, receipts, index)) = self.located(p)? else {
            return Ok(Value::Null);
        };
        let first_log: usize = receipts[..index].iter().map(|r| r.logs.len()).sum();
        let cumulative: u64 = receipts[..=index].iter().map(|r| r.gas_used).sum();
        Ok(receipt_json(
            &block,
            &receipts[index],
            index,
            first_log,
            cumulative,
        ))
    }

    /// `eth_getBlockReceipts`: every receipt of the block named by a number, a tag or a hash;
    /// `null` for a block this node does not hold.
    fn eth_block_receipts(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let height = match p.first() {
            // A 32-byte block hash (numbers and tags are shorter).
            Some(Value::String(s)) if s.len() == 66 => {
                match self.store.block_height(&parse_hash(s)?).map_err(node_err)? {
                    Some(h) => h,
                    None => return Ok(Value::Null),
                }
            }
            other => self.requested_height(other)?,
        };
        if height > self.latest_height() {
            return Ok(Value::Null);
        }
        let Some((block, receipts)) = self.block_of(height)? else {
            return Ok(Value::Null);
        };
        if receipts.len() != block.transactions.len() {
            return Err(node_err(format!(
                "receipts of block {height} are inconsistent"
            )));
        }
        // Running totals once, not per receipt (a block holds up to MAX_BLOCK_TXS).
        let (mut first_log, mut cumulative) = (0usize, 0u64);
        let mut out = Vec::with_capacity(receipts.len());
        for (i, r) in receipts.iter().enumerate() {
            cumulative += r.gas_used;
            out.push(receipt_json(&block, r, i, first_log, cumulative));
            first_log += r.logs.len();
        }
        Ok(Value::Array(out))
    }
}

/// The Ethereum receipt `r` of `block`'s transaction `index`, whose first log is the
/// block's `first_log`-th and after which the block has used `cumulative` gas.
fn receipt_json(
    block: &Block,
    r: &Receipt,
    index: usize,
    first_log: usize,
    cumulative: u64,
) -> Value {
    let tx = &block.transactions[index];
    let (to, _, _) = eth_view(tx);
    let logs: Vec<Value> = r
        .logs
        .iter()
        .enumerate()
        .map(|(i, log)| log_json(log, block, tx.hash(), index, first_log + i))
        .collect();
    json!({
        "transactionHash": tx.hash().to_hex(),
        "transactionIndex": qty(index as u64),
        "blockHash": block.hash().to_hex(),
        "blockNumber": qty(block.header.height),
        "from": tx.tx.sender_address().to_hex(),
        "to": to.map(|a| a.to_hex()),
        "cumulativeGasUsed": qty(cumulative),
        "gasUsed": qty(r.gas_used),
        "effectiveGasPrice": format!("{:#x}", tx.tx.gas_price),
        "contractAddress": r.contract_address.map(|a| a.to_hex()),
        "logs": logs,
        "logsBloom": hexb(&logs_bloom(&r.logs)),
        "status": if r.status == TxStatus::Success { "0x1" } else { "0x0" },
        "type": qty(eth_fields(tx).map_or(0, |f| u64::from(f.tx_type))),
    })
}

impl RpcContext {
    fn eth_fee_history(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let count = parse_qty(
            p.first().ok_or_else(|| bad_params("missing blockCount"))?,
            "blockCount",
        )?;
        let count = count.min(MAX_FEE_HISTORY_BLOCKS);
        let newest = self.tag_height(p.get(1))?;
        let percentiles = match p.get(2) {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(a.len()),
            Some(_) => return Err(bad_params("rewardPercentiles: an array of numbers")),
        };
        let oldest = newest
            .saturating_add(1)
            .saturating_sub(count)
            .max(self.store.oldest_retained().map_err(node_err)?);
        // On a pruned node `newest` may lie below the oldest retained height (found by review
        // of the fuzz target): then there is nothing to report.
        let count = if count == 0 || newest < oldest {
            0
        } else {
            newest.saturating_add(1) - oldest
        };
        let base = format!("{:#x}", self.min_gas_price);
        let mut ratios = Vec::new();
        let mut rewards = Vec::new();
        for height in oldest..oldest + count {
            let used: u64 = self
                .store
                .receipts(height)
                .map_err(node_err)?
                .unwrap_or_default()
                .iter()
                .map(|r| r.gas_used)
                .sum();
            // A ratio in [0, 1] with 6 decimals, formatted from integers (no float math).
            let micro = u128::from(used) * 1_000_000 / u128::from(BLOCK_GAS_LIMIT);
            let ratio: Value =
                serde_json::from_str(&format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000))
                    .map_err(node_err)?;
            ratios.push(ratio);
            if let Some(n) = percentiles {
                rewards.push(vec!["0x0"; n]);
            }
        }
        let mut out = json!({
            "oldestBlock": qty(oldest),
            "baseFeePerGas": vec![base; count as usize + 1],
            "gasUsedRatio": ratios,
        });
        if percentiles.is_some() {
            out["reward"] = json!(rewards);
        }
        Ok(out)
    }
}

fn str_param<'a>(p: &'a [Value], i: usize, what: &str) -> Result<&'a str, ErrorObjectOwned> {
    p.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| bad_params(format!("parameter {i} ({what}): a hex string")))
}

fn params_vec(params: &Params<'_>) -> Result<Vec<Value>, ErrorObjectOwned> {
    if params.as_str().is_none() {
        return Ok(Vec::new());
    }
    params
        .parse::<Vec<Value>>()
        .map_err(|e| bad_params(e.message().to_string()))
}

type Handler = fn(&RpcContext, &[Value]) -> Result<Value, ErrorObjectOwned>;

/// Registers the Ethereum methods. Methods that execute (call, estimateGas) or scan
/// (getLogs, feeHistory) run on the blocking pool.
pub fn register(
    module: &mut RpcModule<RpcContext>,
) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    let simple: &[(&'static str, Handler)] = &[
        ("eth_chainId", |c, _| Ok(json!(qty(c.chain_id)))),
        ("net_version", |c, _| Ok(json!(c.chain_id.to_string()))),
        ("net_listening", |_, _| Ok(json!(true))),
        ("web3_clientVersion", |_, _| Ok(json!(CLIENT_VERSION))),
        ("eth_syncing", |_, _| Ok(json!(false))),
        ("eth_accounts", |_, _| Ok(json!([]))),
        ("eth_blockNumber", |c, _| Ok(json!(qty(c.latest_height())))),
        ("eth_gasPrice", |c, _| {
            Ok(json!(format!("{:#x}", c.min_gas_price)))
        }),
        ("eth_maxPriorityFeePerGas", |_, _| Ok(json!("0x0"))),
        ("eth_getBalance", RpcContext::eth_balance),
        ("eth_getTransactionCount", RpcContext::eth_nonce),
        ("eth_getCode", RpcContext::eth_code),
        ("eth_getStorageAt", RpcContext::eth_storage),
        ("eth_getBlockByNumber", RpcContext::eth_block_by_number),
        ("eth_getBlockByHash", RpcContext::eth_block_by_hash),
        ("eth_getTransactionByHash", RpcContext::eth_tx_by_hash),
        ("eth_getTransactionReceipt", RpcContext::eth_receipt),
    ];
    let blocking: &[(&'static str, Handler)] = &[
        ("eth_call", RpcContext::eth_call),
        ("eth_estimateGas", RpcContext::eth_estimate_gas),
        ("eth_getLogs", RpcContext::eth_get_logs),
        ("eth_feeHistory", RpcContext::eth_fee_history),
        ("eth_getBlockReceipts", RpcContext::eth_block_receipts),
        ("eth_sendRawTransaction", RpcContext::eth_send_raw),
        (
            "debug_traceTransaction",
            RpcContext::debug_trace_transaction,
        ),
    ];
    for &(name, handler) in simple {
        module.register_method(name, move |params, ctx, _| {
            metrics::counter!(m::RPC_REQUESTS, "method" => name).increment(1);
            handler(ctx, &params_vec(&params)?)
        })?;
    }
    for &(name, handler) in blocking {
        module.register_blocking_method(name, move |params, ctx, _| {
            metrics::counter!(m::RPC_REQUESTS, "method" => name).increment(1);
            handler(&ctx, &params_vec(&params)?)
        })?;
    }
    subscribe::register(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revert_reasons_decode_error_string_and_keep_raw_data() {
        // Error("nope"): selector, offset 32, length 4, "nope" padded.
        let mut data = ERROR_SELECTOR.to_vec();
        data.extend([0u8; 31]);
        data.push(32);
        data.extend([0u8; 31]);
        data.push(4);
        data.extend(b"nope");
        data.extend([0u8; 28]);
        let e = reverted(&data);
        assert_eq!(e.code(), EXECUTION_REVERTED);
        assert_eq!(e.message(), "execution reverted: nope");
        assert_eq!(
            e.data().map(|d| d.get().to_string()),
            Some(format!("\"{}\"", hexb(&data)))
        );
        // Custom errors and truncated strings: no reason, data kept.
        assert_eq!(reverted(&[1, 2, 3, 4]).message(), "execution reverted");
        assert_eq!(reverted(&data[..40]).message(), "execution reverted");
        // An offset word of u64::MAX (contract-chosen) is refused, not an overflow panic.
        let mut hostile = ERROR_SELECTOR.to_vec();
        hostile.extend([0u8; 24]);
        hostile.extend([0xff; 8]);
        assert_eq!(reverted(&hostile).message(), "execution reverted");
    }
}
