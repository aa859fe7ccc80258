//! `Runtime::trace_transaction`, the call tracer behind `debug_traceTransaction`: a block's
//! transaction re-executed over the block's parent state gives the receipt the block gave,
//! and a frame tree that follows calls across environments in both directions — EVM into
//! WASM, WASM into EVM, WASM into WASM — with each frame's environment, value, input,
//! output, gas and failure; the tree is bounded however many frames a transaction opens.

use crate::common;

use common::{abi, addr, artifact, key, Chain};
use keel_exec_evm::NoBlockHashes;
use keel_runtime::trace::{Trace, MAX_TRACE_DATA_BYTES, MAX_TRACE_FRAMES};
use keel_runtime::{CallFrame, CallKind, FrameError};
use keel_types::{Address, Env, TxBody, TxStatus, U256};

const RELAY: &str = "relay(address,address,uint256,uint256)";
const GAS: u64 = 2_000_000;

fn relay_body(router: Address, token: Address, amount: u64, mode: u64) -> TxBody {
    let data = abi::call(
        RELAY,
        &[
            abi::address(&token),
            abi::address(&addr(&key(2))),
            abi::u(amount),
            abi::u(mode),
        ],
    );
    TxBody::Call {
        to: router,
        data,
        value: U256::ZERO,
    }
}

/// Traces every transaction of the next block (holding `txs`), then commits the block;
/// each trace's receipt must be the one the block produced.
fn trace_block(chain: &mut Chain, txs: Vec<keel_types::SignedTransaction>) -> Vec<Trace> {
    let block = chain.make_block(txs);
    let output = chain.execute(&block);
    let parent = chain.store.latest_view();
    let traces: Vec<Trace> = (0..block.transactions.len())
        .map(|i| {
            let trace = chain
                .runtime
                .trace_transaction(&parent, &NoBlockHashes, &block, i)
                .expect("trace")
                .expect("transaction exists");
            assert_eq!(trace.receipt, output.receipts[i], "transaction {i}");
            trace
        })
        .collect();
    assert!(chain
        .runtime
        .trace_transaction(&parent, &NoBlockHashes, &block, block.transactions.len())
        .expect("trace")
        .is_none());
    chain.commit(&block, &output);
    traces
}

fn root(trace: &Trace) -> &CallFrame {
    trace.root.as_ref().expect("the transaction ran")
}

/// Token in `token_env`, router in the other environment; three relays in one block: one
/// that succeeds, one whose inner transfer fails and is recorded (mode 1), one that reverts
/// after its inner transfer succeeded (mode 2). The later ones depend on the earlier ones'
/// state, so equal receipts show the trace replays the block's prefix exactly.
fn check_direction(token_env: Env) {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let (token_code, router_env, router_code) = match token_env {
        Env::Evm => (artifact("Token.bin"), Env::Wasm, artifact("router.wasm")),
        Env::Wasm => (artifact("token.wasm"), Env::Evm, artifact("Router.bin")),
    };
    let token = chain.deploy(&alice, token_env, token_code, abi::u(1_000_000).to_vec());
    let router = chain.deploy(&alice, router_env, router_code, Vec::new());
    let fund = abi::call(
        "transfer(address,uint256)",
        &[abi::address(&router), abi::u(150)],
    );
    assert_eq!(chain.call(&alice, token, fund).status, TxStatus::Success);

    let txs = vec![
        chain.tx(&alice, GAS, relay_body(router, token, 100, 0)),
        // 50 left: an inner transfer of 60 fails (the first one's state is seen).
        chain.tx(&alice, GAS, relay_body(router, token, 60, 1)),
        chain.tx(&alice, GAS, relay_body(router, token, 10, 2)),
    ];
    let inputs: Vec<Vec<u8>> = txs
        .iter()
        .map(|tx| match &tx.tx.body {
            TxBody::Call { data, .. } => data.clone(),
            _ => unreachable!(),
        })
        .collect();
    let traces = trace_block(&mut chain, txs);
    let statuses: Vec<TxStatus> = traces.iter().map(|t| t.receipt.status).collect();
    assert_eq!(
        statuses,
        [TxStatus::Success, TxStatus::Success, TxStatus::Revert]
    );
    for (i, (trace, amount)) in traces.iter().zip([100u64, 60, 10]).enumerate() {
        let top = root(trace);
        assert!(!trace.truncated);
        assert_eq!(
            (top.kind, top.env, top.from, top.to),
            (CallKind::Call, router_env, addr(&alice), Some(router)),
            "transaction {i}: {top:#?}"
        );
        assert_eq!((top.gas, top.gas_used), (GAS, trace.receipt.gas_used));
        assert_eq!(top.input, inputs[i]);
        assert_eq!(top.value, Some(U256::ZERO));
        assert_eq!(top.calls.len(), 1, "transaction {i}: {top:#?}");
        let inner = &top.calls[0];
        let transfer = abi::call(
            "transfer(address,uint256)",
            &[abi::address(&addr(&key(2))), abi::u(amount)],
        );
        assert_eq!(
            (inner.kind, inner.env, inner.from, inner.to),
            (CallKind::Call, token_env, router, Some(token)),
            "transaction {i}: {inner:#?}"
        );
        assert_eq!(inner.input, transfer);
        assert!(inner.gas_used > 0 && inner.gas_used <= inner.gas);
        assert!(inner.gas < top.gas && top.gas_used > inner.gas_used);
        match i {
            0 => {
                assert_eq!((&top.error, &inner.error), (&None, &None));
                assert_eq!(inner.output, abi::u(1).to_vec(), "transfer returned true");
            }
            1 => {
                assert_eq!(top.error, None);
                assert_eq!(inner.error, Some(FrameError::Reverted));
                // The token's custom error, InsufficientBalance(50, 60).
                assert_eq!(
                    inner.output,
                    abi::error2("InsufficientBalance(uint256,uint256)", 50, 60)
                );
            }
            _ => {
                assert_eq!(top.error, Some(FrameError::Reverted));
                assert_eq!(
                    inner.error, None,
                    "the inner call succeeded before the revert"
                );
                assert_eq!(top.output, trace.receipt.output);
            }
        }
    }
}

#[test]
fn traces_an_evm_contract_calling_a_wasm_token() {
    check_direction(Env::Wasm);
}

#[test]
fn traces_a_wasm_contract_calling_an_evm_token() {
    check_direction(Env::Evm);
}

#[test]
fn deploys_and_refusals_trace_as_geth_would() {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let evm_code = artifact("Token.bin");
    let wasm_code = artifact("token.wasm");
    let deploy = |env, code: &Vec<u8>| TxBody::Deploy {
        env,
        code: code.clone(),
        args: abi::u(5).to_vec(),
        value: U256::ZERO,
    };
    let mut txs = vec![
        chain.tx(&alice, 10_000_000, deploy(Env::Evm, &evm_code)),
        chain.tx(&alice, 10_000_000, deploy(Env::Wasm, &wasm_code)),
    ];
    // A replay of the first: refused (its nonce is used), never reaches the EVM.
    txs.push(txs[0].clone());
    let traces = trace_block(&mut chain, txs);
    for (trace, env) in traces.iter().zip([Env::Evm, Env::Wasm]) {
        let top = root(trace);
        assert_eq!(trace.receipt.status, TxStatus::Success);
        assert_eq!((top.kind, top.env), (CallKind::Create, env), "{top:#?}");
        assert_eq!(top.to, trace.receipt.contract_address);
        assert_eq!(top.error, None);
        assert!(top.calls.is_empty());
    }
    // The EVM create's output is the deployed code, as geth reports it.
    let token = traces[0].receipt.contract_address.expect("address");
    let code = chain.store.latest_view();
    let record = keel_state::StateViewExt::account(&code, &token)
        .expect("read")
        .expect("account");
    let blob = keel_state::StateViewExt::code(&code, &record.code.expect("code").code_hash)
        .expect("read")
        .expect("blob");
    assert_eq!(root(&traces[0]).output, blob.code);
    assert_eq!(traces[2].receipt.status, TxStatus::Rejected);
    assert!(traces[2].root.is_none());
}

/// Each frame calls its own address again (cross_env.rs's recursion): WASM → WASM frames,
/// which run through the host in nested EVMs, nest in the trace as they nested in the run.
#[test]
fn nested_wasm_frames_nest_in_the_trace() {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let module = wat::parse_str(crate::cross_env::RECURSE_WAT).expect("wat");
    let me = chain.deploy(&alice, Env::Wasm, module, Vec::new());
    let call = TxBody::Call {
        to: me,
        data: Vec::new(),
        value: U256::ZERO,
    };
    let tx = chain.tx(&alice, 10_000_000, call);
    let traces = trace_block(&mut chain, vec![tx]);
    let depth_below = u32::from_le_bytes(traces[0].receipt.output[..4].try_into().expect("4"));
    let mut frame = root(&traces[0]);
    let mut depth = 0;
    while let Some(child) = frame.calls.first() {
        assert_eq!(frame.calls.len(), 1);
        assert_eq!((child.env, child.from, child.to), (Env::Wasm, me, Some(me)));
        assert!(child.gas < frame.gas);
        frame = child;
        depth += 1;
    }
    // The innermost frame's own call failed (too deep) or it ran out of gas: one more
    // frame than the successful depth it reported, or exactly that many.
    assert!(
        depth == depth_below || depth == depth_below + 1,
        "{depth} vs {depth_below}"
    );
    assert!(depth > 10, "{depth}");
}

/// A contract that calls the identity precompile `calls` times, each with the first
/// `args_bytes` bytes of its memory as input (which the precompile echoes as output).
fn looper(chain: &mut Chain, calls: u16, args_bytes: u32) -> Trace {
    let alice = key(1);
    let [hi, lo] = calls.to_be_bytes();
    let [_, a2, a1, a0] = args_bytes.to_be_bytes();
    #[rustfmt::skip]
    let runtime = [
        0x61, hi, lo,                                   // PUSH2 calls
        0x5b,                                           // loop: JUMPDEST (offset 3)
        0x60, 0, 0x60, 0,                               // return size and offset
        0x62, a2, a1, a0, 0x60, 0,                      // PUSH3 argument size, offset
        0x60, 4, 0x5a, 0xfa, 0x50,                      // identity, GAS STATICCALL POP
        0x60, 1, 0x90, 0x03,                            // counter - 1
        0x80, 0x60, 3, 0x57,                            // DUP1 PUSH1 3 JUMPI
        0x00,                                           // STOP
    ];
    let len = runtime.len() as u8;
    let mut init = vec![0x60, len, 0x80, 0x60, 0x0b, 0x60, 0, 0x39, 0x60, 0, 0xf3];
    init.extend_from_slice(&runtime);
    let me = chain.deploy(&alice, Env::Evm, init, Vec::new());
    let call = TxBody::Call {
        to: me,
        data: Vec::new(),
        value: U256::ZERO,
    };
    let tx = chain.tx(&alice, 10_000_000, call);
    let mut traces = trace_block(chain, vec![tx]);
    assert_eq!(traces[0].receipt.status, TxStatus::Success);
    traces.remove(0)
}

/// 10,001 calls: the trace keeps `MAX_TRACE_FRAMES` frames and says it left the rest out.
#[test]
fn a_trace_is_bounded_however_many_frames_a_transaction_opens() {
    let mut chain = Chain::new(&[&key(1)]);
    let trace = looper(&mut chain, 10_001, 0);
    assert!(trace.truncated);
    let top = root(&trace);
    assert_eq!(top.calls.len(), MAX_TRACE_FRAMES - 1);
    assert!(top
        .calls
        .iter()
        .all(|c| c.kind == CallKind::StaticCall && c.error.is_none() && c.value.is_none()));
}

/// 200 calls that each pass and get back 64 KiB: the frames all stay, their data only up to
/// `MAX_TRACE_DATA_BYTES` (what is past it is never copied).
#[test]
fn a_trace_keeps_at_most_its_data_budget() {
    let mut chain = Chain::new(&[&key(1)]);
    let trace = looper(&mut chain, 200, 1 << 16);
    assert!(trace.truncated);
    let top = root(&trace);
    assert_eq!(top.calls.len(), 200);
    let kept: usize = top
        .calls
        .iter()
        .map(|c| c.input.len() + c.output.len())
        .sum();
    assert!(kept <= MAX_TRACE_DATA_BYTES, "{kept}");
    assert!(kept > MAX_TRACE_DATA_BYTES - (2 << 16), "{kept}");
    assert_eq!(top.calls[0].input.len(), 1 << 16);
    assert!(top.calls[199].input.is_empty() && top.calls[199].output.is_empty());
}
