//! `debug_traceTransaction` with geth's `callTracer`: the transaction re-executed over its
//! block's parent state (`Runtime::trace_transaction`), every frame — EVM and WASM, across
//! environments in both directions — in geth's JSON shape, plus keel's `environment` per
//! frame. Only the call tracer exists; geth's default opcode logger is refused, not faked.

use super::LIMIT_EXCEEDED;
use super::{decode_abi_string, eth_view, hexb, qty, str_param, RpcContext, StoreHashes};
use crate::rpc::{bad_params, err, node_err, parse_hash, NODE_ERROR};
use jsonrpsee::types::ErrorObjectOwned;
use keel_runtime::{CallFrame, FrameError};
use keel_types::{Env, TxStatus};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Traces this node runs at once. A trace re-executes up to a whole block (a block's gas
/// bounds it, but an attacker pays for the block once and could ask for its traces without
/// end), so they get a small share of the blocking pool; more are refused with `-32005`.
pub const MAX_CONCURRENT_TRACES: usize = 2;

static TRACES_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// A slot among the `MAX_CONCURRENT_TRACES`, given back when dropped.
struct TraceSlot;

impl TraceSlot {
    fn take() -> Option<TraceSlot> {
        TRACES_RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONCURRENT_TRACES).then_some(n + 1)
            })
            .ok()
            .map(|_| TraceSlot)
    }
}

impl Drop for TraceSlot {
    fn drop(&mut self) {
        TRACES_RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a client asked for in the options object.
struct Options {
    only_top_call: bool,
}

fn options(value: Option<&Value>) -> Result<Options, ErrorObjectOwned> {
    const ONLY: &str = r#"only the call tracer is supported: {"tracer": "callTracer"}"#;
    let Some(obj) = value.filter(|v| !v.is_null()) else {
        return Err(bad_params(ONLY));
    };
    let obj = obj
        .as_object()
        .ok_or_else(|| bad_params("trace options: an object"))?;
    if obj.get("tracer").and_then(Value::as_str) != Some("callTracer") {
        return Err(bad_params(ONLY));
    }
    let config = obj.get("tracerConfig").filter(|v| !v.is_null());
    let flag = |name: &str| -> Result<bool, ErrorObjectOwned> {
        match config.and_then(|c| c.get(name)).filter(|v| !v.is_null()) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad_params(format!("tracerConfig.{name}: a boolean"))),
        }
    };
    if flag("withLog")? {
        return Err(bad_params(
            "tracerConfig.withLog is not supported: read logs from the receipt",
        ));
    }
    Ok(Options {
        only_top_call: flag("onlyTopCall")?,
    })
}

fn frame_json(frame: &CallFrame, only_top_call: bool) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), json!(frame.kind.as_str()));
    out.insert("from".into(), json!(frame.from.to_hex()));
    if let Some(to) = &frame.to {
        out.insert("to".into(), json!(to.to_hex()));
    }
    if let Some(value) = &frame.value {
        out.insert("value".into(), json!(format!("{value:#x}")));
    }
    out.insert("gas".into(), json!(qty(frame.gas)));
    out.insert("gasUsed".into(), json!(qty(frame.gas_used)));
    out.insert("input".into(), json!(hexb(&frame.input)));
    if !frame.output.is_empty() {
        out.insert("output".into(), json!(hexb(&frame.output)));
    }
    if let Some(error) = &frame.error {
        out.insert("error".into(), json!(error.to_string()));
        if *error == FrameError::Reverted {
            if let Some(reason) = revert_reason(&frame.output) {
                out.insert("revertReason".into(), json!(reason));
            }
        }
    }
    let environment = match frame.env {
        Env::Evm => "evm",
        Env::Wasm => "wasm",
    };
    out.insert("environment".into(), json!(environment));
    if !only_top_call && !frame.calls.is_empty() {
        let calls = frame.calls.iter().map(|c| frame_json(c, false)).collect();
        out.insert("calls".into(), Value::Array(calls));
    }
    Value::Object(out)
}

/// The reason string of Solidity's `Error(string)` revert data.
fn revert_reason(output: &[u8]) -> Option<String> {
    let body = output.strip_prefix(&super::ERROR_SELECTOR[..])?;
    decode_abi_string(body)
}

impl RpcContext {
    /// `debug_traceTransaction(hash, {tracer: "callTracer", tracerConfig?: {onlyTopCall}})`.
    pub(super) fn debug_trace_transaction(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let options = options(p.get(1))?;
        let hash = parse_hash(str_param(p, 0, "transaction hash")?)?;
        let not_found = || {
            err(
                NODE_ERROR,
                format!("transaction {} not found", hash.to_hex()),
            )
        };
        let Some((height, index)) = self.store.tx_location(&hash).map_err(node_err)? else {
            return Err(not_found());
        };
        let Some(block) = self.store.block(height).map_err(node_err)? else {
            return Err(not_found());
        };
        // The state the block executed over; gone once pruning has passed it.
        let parent = height
            .checked_sub(1)
            .ok_or_else(|| err(NODE_ERROR, "the genesis block has no transactions"))?;
        let parent = self.store.view(parent).map_err(|e| {
            err(
                NODE_ERROR,
                format!("the state before block {height} is not available here: {e}"),
            )
        })?;
        let _slot = TraceSlot::take().ok_or_else(|| {
            err(
                LIMIT_EXCEEDED,
                format!("{MAX_CONCURRENT_TRACES} traces are running here; try again"),
            )
        })?;
        let trace = self
            .runtime
            .trace_transaction(&parent, &StoreHashes(&self.store), &block, index as usize)
            .map_err(node_err)?
            .ok_or_else(not_found)?;
        // The replay must give what the block gave. It cannot where the block's expiry sweep
        // depended on the state index of its own time (the index describes only the latest
        // state): then say so rather than answer with another execution.
        let stored = self.store.receipts(height).map_err(node_err)?;
        if stored.as_ref().and_then(|r| r.get(index as usize)) != Some(&trace.receipt) {
            return Err(err(
                NODE_ERROR,
                format!(
                    "block {height} cannot be replayed exactly here (it expired or folded \
                     state that the replay does not see); no trace"
                ),
            ));
        }
        let mut out = match &trace.root {
            Some(root) => frame_json(root, options.only_top_call),
            // Refused before the EVM (or a revival): the transaction itself, and why.
            None => {
                let tx = &block.transactions[index as usize];
                let (to, value, input) = eth_view(tx);
                let kind = match tx.tx.body {
                    keel_types::TxBody::Deploy { .. } => "CREATE",
                    _ => "CALL",
                };
                let mut out = json!({
                    "type": kind,
                    "from": tx.tx.sender_address().to_hex(),
                    "value": format!("{value:#x}"),
                    "gas": qty(tx.tx.gas_limit),
                    "gasUsed": qty(trace.receipt.gas_used),
                    "input": hexb(&input),
                });
                if let Some(to) = to {
                    out["to"] = json!(to.to_hex());
                }
                if trace.receipt.status != TxStatus::Success {
                    let reason = trace
                        .receipt
                        .error
                        .as_ref()
                        .map_or("failed".into(), |e| e.to_string());
                    out["error"] = json!(reason);
                }
                out
            }
        };
        if trace.truncated {
            out["truncated"] = json!(true);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_runtime::CallKind;
    use keel_types::{Address, U256};

    fn frame(kind: CallKind, env: Env, error: Option<FrameError>, output: Vec<u8>) -> CallFrame {
        CallFrame {
            kind,
            env,
            from: Address([1; 20]),
            to: Some(Address([2; 20])),
            value: (kind == CallKind::Call).then_some(U256::from(5)),
            gas: 100,
            gas_used: 40,
            input: vec![0xab],
            output,
            error,
            calls: Vec::new(),
        }
    }

    #[test]
    fn frames_render_in_geths_call_tracer_shape() {
        let mut reason = super::super::ERROR_SELECTOR.to_vec();
        reason.extend([0u8; 31]);
        reason.push(32);
        reason.extend([0u8; 31]);
        reason.push(2);
        reason.extend(b"no");
        reason.extend([0u8; 30]);
        let inner = frame(
            CallKind::StaticCall,
            Env::Wasm,
            Some(FrameError::Reverted),
            reason.clone(),
        );
        let mut top = frame(CallKind::Call, Env::Evm, None, Vec::new());
        top.calls.push(inner);
        let json = frame_json(&top, false);
        assert_eq!(json["type"], "CALL");
        assert_eq!(json["value"], "0x5");
        assert_eq!(
            (&json["gas"], &json["gasUsed"]),
            (&json!("0x64"), &json!("0x28"))
        );
        assert_eq!(json["input"], "0xab");
        assert!(json.get("output").is_none() && json.get("error").is_none());
        assert_eq!(json["environment"], "evm");
        let call = &json["calls"][0];
        assert_eq!(call["type"], "STATICCALL");
        assert!(call.get("value").is_none());
        assert_eq!(call["environment"], "wasm");
        assert_eq!(call["error"], "execution reverted");
        assert_eq!(call["revertReason"], "no");
        assert_eq!(call["output"], json!(hexb(&reason)));
        assert!(frame_json(&top, true).get("calls").is_none());
    }

    #[test]
    fn options_admit_only_the_call_tracer() {
        for bad in [
            None,
            Some(json!({})),
            Some(json!({"tracer": "prestateTracer"})),
            Some(json!("callTracer")),
            Some(json!({"tracer": "callTracer", "tracerConfig": {"withLog": true}})),
            Some(json!({"tracer": "callTracer", "tracerConfig": {"onlyTopCall": "yes"}})),
        ] {
            let refused = options(bad.as_ref()).err().expect("refused");
            assert_eq!(refused.code(), crate::rpc::INVALID_PARAMS, "{bad:?}");
        }
        let only = json!({"tracer": "callTracer", "tracerConfig": {"onlyTopCall": true}});
        assert!(options(Some(&only)).expect("ok").only_top_call);
        let plain = json!({"tracer": "callTracer", "timeout": "10s"});
        assert!(!options(Some(&plain)).expect("ok").only_top_call);
    }
}
