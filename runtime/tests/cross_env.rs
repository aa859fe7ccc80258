//! Calls across environments inside one transaction: a WASM router calling the EVM token and
//! an EVM router calling the WASM token. A revert anywhere rolls back exactly the frames it
//! covers, in both environments; gas comes from one budget and is charged once.

use crate::common;

use common::{abi, addr, artifact, key, Chain, GAS_PRICE};
use keel_types::{Address, Env, Receipt, TxBody, TxError, TxStatus, U256};

const RELAY: &str = "relay(address,address,uint256,uint256)";

struct Setup {
    chain: Chain,
    token: Address,
    router: Address,
}

/// Token in `token_env`, router in the other environment, router funded with 1000 tokens.
fn setup(token_env: Env) -> Setup {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let (token_code, router_env, router_code) = match token_env {
        Env::Evm => (artifact("Token.bin"), Env::Wasm, artifact("router.wasm")),
        Env::Wasm => (artifact("token.wasm"), Env::Evm, artifact("Router.bin")),
    };
    let token = chain.deploy(&alice, token_env, token_code, abi::u(1_000_000).to_vec());
    let router = chain.deploy(&alice, router_env, router_code, Vec::new());
    let r = chain.call(
        &alice,
        token,
        abi::call(
            "transfer(address,uint256)",
            &[abi::address(&router), abi::u(1_000)],
        ),
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    Setup {
        chain,
        token,
        router,
    }
}

fn token_balance(s: &mut Setup, who: &Address) -> U256 {
    let r = s.chain.call(
        &key(1),
        s.token,
        abi::call("balanceOf(address)", &[abi::address(who)]),
    );
    abi::word(&r.output)
}

fn router_word(s: &mut Setup, getter: &str) -> U256 {
    let r = s.chain.call(&key(1), s.router, abi::call(getter, &[]));
    abi::word(&r.output)
}

fn relay(s: &mut Setup, amount: u64, mode: u64, gas_limit: u64) -> (Receipt, U256) {
    let bob = addr(&key(2));
    let alice = key(1);
    let before = s.chain.balance(&addr(&alice));
    let data = abi::call(
        RELAY,
        &[
            abi::address(&s.token),
            abi::address(&bob),
            abi::u(amount),
            abi::u(mode),
        ],
    );
    let r = s.chain.run(
        &alice,
        gas_limit,
        TxBody::Call {
            to: s.router,
            data,
            value: U256::ZERO,
        },
    );
    let paid = before - s.chain.balance(&addr(&alice));
    (r, paid)
}

fn error_string(message: &str) -> Vec<u8> {
    let mut out = abi::selector("Error(string)").to_vec();
    out.extend_from_slice(&abi::u(32));
    out.extend_from_slice(&abi::u(message.len() as u64));
    let mut padded = message.as_bytes().to_vec();
    padded.resize(message.len().div_ceil(32) * 32, 0);
    out.extend_from_slice(&padded);
    out
}

/// The four relay modes against a token in `token_env`; returns the receipts for parity.
fn check_direction(token_env: Env) -> Vec<Receipt> {
    let mut s = setup(token_env);
    let bob = addr(&key(2));
    let mut receipts = Vec::new();

    // Success: both sides change, logs from both environments in call order.
    let (r, paid) = relay(&mut s, 100, 0, 2_000_000);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(
        paid,
        U256::from(r.gas_used) * U256::from(GAS_PRICE),
        "charged once"
    );
    assert_eq!(r.logs.len(), 2);
    assert_eq!(r.logs[0].address, s.token);
    assert_eq!(r.logs[1].address, s.router);
    assert_eq!(token_balance(&mut s, &bob), U256::from(100));
    assert_eq!(router_word(&mut s, "relays()"), U256::from(1));
    assert_eq!(router_word(&mut s, "lastOk()"), U256::from(1));
    // The inner call's gas is part of the one receipt: more than a direct transfer costs.
    let direct = s.chain.call(
        &key(1),
        s.token,
        abi::call(
            "transfer(address,uint256)",
            &[abi::address(&addr(&key(3))), abi::u(1)],
        ),
    );
    assert!(
        r.gas_used > direct.gas_used,
        "{} vs {}",
        r.gas_used,
        direct.gas_used
    );
    receipts.push(r);

    // Inner revert bubbled by the caller: the whole transaction rolls back, both sides.
    let (r, paid) = relay(&mut s, 5_000, 0, 2_000_000);
    assert_eq!(r.status, TxStatus::Revert);
    assert_eq!(r.error, Some(TxError::Reverted));
    assert_eq!(
        r.output,
        abi::error2("InsufficientBalance(uint256,uint256)", 900, 5_000)
    );
    assert_eq!(paid, U256::from(r.gas_used) * U256::from(GAS_PRICE));
    assert_eq!(
        router_word(&mut s, "relays()"),
        U256::from(1),
        "outer frame rolled back"
    );
    receipts.push(r);

    // Inner revert caught: only the inner frame rolls back, the caller's writes stay.
    let (r, _) = relay(&mut s, 5_000, 1, 2_000_000);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(r.logs.len(), 1, "the reverted frame's log is gone");
    assert_eq!(r.logs[0].data, abi::u(0).to_vec());
    assert_eq!(router_word(&mut s, "relays()"), U256::from(2));
    assert_eq!(router_word(&mut s, "lastOk()"), U256::from(0));
    let router = s.router;
    assert_eq!(token_balance(&mut s, &router), U256::from(900));
    receipts.push(r);

    // Outer revert after a successful inner call: the callee's transfer is undone too.
    let (r, _) = relay(&mut s, 100, 2, 2_000_000);
    assert_eq!(r.status, TxStatus::Revert);
    assert_eq!(r.output, error_string("router: mode 2"));
    assert_eq!(token_balance(&mut s, &bob), U256::from(100));
    assert_eq!(router_word(&mut s, "relays()"), U256::from(2));
    receipts.push(r);

    // One budget: a gas limit that covers the outer frame but not the inner call fails, and
    // the sender pays exactly what the receipt says, never more than the limit.
    // (Run it twice so the measured one writes no fresh slots, exactly like the tight one.)
    relay(&mut s, 1, 0, 2_000_000);
    let (ok, _) = relay(&mut s, 1, 0, 2_000_000);
    assert_eq!(ok.status, TxStatus::Success);
    let tight = ok.gas_used - 5_000;
    let (r, paid) = relay(&mut s, 1, 0, tight);
    assert_ne!(r.status, TxStatus::Success, "{r:?}");
    assert!(r.gas_used <= tight);
    assert_eq!(paid, U256::from(r.gas_used) * U256::from(GAS_PRICE));
    assert_eq!(token_balance(&mut s, &bob), U256::from(102));
    receipts
}

#[test]
fn wasm_contract_calls_evm_token() {
    check_direction(Env::Evm);
}

#[test]
fn evm_contract_calls_wasm_token() {
    check_direction(Env::Wasm);
}

#[test]
fn both_directions_give_the_same_outputs() {
    let a = check_direction(Env::Evm);
    let b = check_direction(Env::Wasm);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.status, &x.output, x.logs.len()),
            (y.status, &y.output, y.logs.len())
        );
        for (lx, ly) in x.logs.iter().zip(&y.logs) {
            assert_eq!((&lx.topics[0], &lx.data), (&ly.topics[0], &ly.data));
        }
    }
}

/// Each frame calls its own address again and returns how deep the chain below it got.
pub(crate) const RECURSE_WAT: &str = r#"
(module
  (import "keel" "address" (func $address (param i32)))
  (import "keel" "call" (func $call (param i32 i32 i32 i32 i64) (result i32)))
  (import "keel" "return_data_copy" (func $rdcopy (param i32 i32 i32)))
  (import "keel" "return_data" (func $ret (param i32 i32)))
  (memory (export "memory") 1 1)
  (func (export "call") (param $len i32) (result i32)
    (call $address (i32.const 0))
    ;; value (32 zero bytes at 64), empty input
    (if (i32.eqz (call $call (i32.const 0) (i32.const 64) (i32.const 128) (i32.const 0) (i64.const 0)))
      (then
        (call $rdcopy (i32.const 200) (i32.const 0) (i32.const 4))
        (i32.store (i32.const 200) (i32.add (i32.load (i32.const 200)) (i32.const 1))))
      (else (i32.store (i32.const 200) (i32.const 0))))
    (call $ret (i32.const 200) (i32.const 4))
    (i32.const 0)))
"#;

#[test]
fn nested_wasm_frames_are_bounded() {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let module = wat::parse_str(RECURSE_WAT).expect("wat");
    let me = chain.deploy(&alice, Env::Wasm, module, Vec::new());
    let r = chain.run(
        &alice,
        10_000_000,
        TxBody::Call {
            to: me,
            data: Vec::new(),
            value: U256::ZERO,
        },
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    let depth = u32::from_le_bytes(r.output[..4].try_into().expect("4 bytes"));
    assert_eq!(
        depth as usize,
        keel_exec_wasm::limits::MAX_WASM_FRAME_DEPTH - 1
    );
}
