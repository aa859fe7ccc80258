//! Transaction checks and the finer points of the two environments meeting: typed rejections,
//! static calls, value, constructors, and how the EVM sees WASM code.

use crate::common;

use common::{abi, addr, creation, key, Chain, CHAIN_ID, FUNDS, GAS_PRICE};
use keel_types::{Address, Env, Transaction, TxBody, TxError, TxStatus, U256};

fn tx(
    k: &keel_types::SecretKey,
    nonce: u64,
    chain_id: u64,
    gas_limit: u64,
    body: TxBody,
) -> keel_types::SignedTransaction {
    Transaction {
        chain_id,
        sender: k.public_key().into(),
        nonce,
        gas_limit,
        gas_price: GAS_PRICE,
        body,
    }
    .sign(k)
}

fn transfer(to: &Address, amount: u64) -> TxBody {
    TxBody::Transfer {
        to: *to,
        amount: U256::from(amount),
    }
}

#[test]
fn invalid_transactions_are_rejected_with_typed_reasons_and_no_effect() {
    let (alice, bob) = (key(1), key(2));
    let mut chain = Chain::new(&[&alice, &bob]);
    let b = addr(&bob);
    let mut forged = tx(&alice, 0, CHAIN_ID, 21_000, transfer(&b, 1));
    if let keel_types::Authorization::Ed25519(s) = &mut forged.signature {
        s.0[0] ^= 1;
    }
    let good = tx(&alice, 0, CHAIN_ID, 21_000, transfer(&b, 5));
    let txs = vec![
        tx(&alice, 0, CHAIN_ID + 1, 21_000, transfer(&b, 1)),
        forged,
        tx(&alice, 3, CHAIN_ID, 21_000, transfer(&b, 1)),
        tx(
            &alice,
            0,
            CHAIN_ID,
            keel_types::limits::MAX_TX_GAS + 1,
            transfer(&b, 1),
        ),
        tx(&alice, 0, CHAIN_ID, 20_000, transfer(&b, 1)),
        tx(&alice, 0, CHAIN_ID, 21_000, transfer(&b, FUNDS)),
        good.clone(),
        good, // replay in the same block
    ];
    let (out, _) = chain.block(txs);
    let errors: Vec<_> = out
        .receipts
        .iter()
        .map(|r| (r.status, r.error.clone()))
        .collect();
    let rejected = |e: TxError| (TxStatus::Rejected, Some(e));
    assert_eq!(
        errors[0],
        rejected(TxError::WrongChainId {
            expected: CHAIN_ID,
            got: CHAIN_ID + 1
        })
    );
    assert_eq!(errors[1], rejected(TxError::BadSignature));
    assert_eq!(
        errors[2],
        rejected(TxError::BadNonce {
            expected: 0,
            got: 3
        })
    );
    assert!(
        matches!(
            errors[3],
            (TxStatus::Rejected, Some(TxError::GasLimitTooHigh { .. }))
        ),
        "{:?}",
        errors[3]
    );
    assert!(
        matches!(
            errors[4],
            (
                TxStatus::Rejected,
                Some(TxError::IntrinsicGasTooLow {
                    gas_limit: 20_000,
                    ..
                })
            )
        ),
        "{:?}",
        errors[4]
    );
    assert!(
        matches!(
            errors[5],
            (
                TxStatus::Rejected,
                Some(TxError::InsufficientBalance { .. })
            )
        ),
        "{:?}",
        errors[5]
    );
    assert_eq!(errors[6], (TxStatus::Success, None));
    assert_eq!(
        errors[7],
        rejected(TxError::BadNonce {
            expected: 1,
            got: 0
        })
    );
    for r in out
        .receipts
        .iter()
        .filter(|r| r.status == TxStatus::Rejected)
    {
        assert_eq!(r.gas_used, 0);
    }
    // Only the one good transfer happened: 21,000 gas and 5 units.
    assert_eq!(chain.balance(&addr(&alice)), U256::from(FUNDS - 21_000 - 5));
    assert_eq!(chain.balance(&b), U256::from(FUNDS + 5));
    assert_eq!(out.gas_used, 21_000);
}

/// Stores 0x01‖0… into slot 0 when called.
const WRITER: &str = r#"(module
  (import "keel" "storage_store" (func $store (param i32 i32)))
  (memory (export "memory") 1 1)
  (data (i32.const 32) "\01")
  (func (export "call") (param i32) (result i32)
    (call $store (i32.const 0) (i32.const 32)) (i32.const 0)))"#;

/// EVM runtime: `slot0 = CALL or STATICCALL(target)` success flag.
fn caller_of(target: &Address, is_static: bool) -> Vec<u8> {
    let mut code = vec![0x60, 0, 0x60, 0, 0x60, 0, 0x60, 0];
    if !is_static {
        code.extend_from_slice(&[0x60, 0]); // value
    }
    code.push(0x73);
    code.extend_from_slice(&target.0);
    code.push(0x5a); // GAS
    code.push(if is_static { 0xfa } else { 0xf1 });
    code.extend_from_slice(&[0x60, 0, 0x55, 0x00]); // PUSH1 0 SSTORE STOP
    code
}

#[test]
fn static_calls_into_wasm_cannot_write() {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let writer = chain.deploy(
        &alice,
        Env::Wasm,
        wat::parse_str(WRITER).expect("wat"),
        Vec::new(),
    );
    let static_caller = chain.deploy(
        &alice,
        Env::Evm,
        creation(&caller_of(&writer, true)),
        Vec::new(),
    );
    let plain_caller = chain.deploy(
        &alice,
        Env::Evm,
        creation(&caller_of(&writer, false)),
        Vec::new(),
    );

    let r = chain.call(&alice, static_caller, Vec::new());
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(
        chain.storage(&static_caller, abi::u(0)),
        abi::u(0),
        "STATICCALL failed"
    );
    assert_eq!(
        chain.storage(&writer, abi::u(0)),
        [0u8; 32],
        "nothing written"
    );

    let r = chain.call(&alice, plain_caller, Vec::new());
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(
        chain.storage(&plain_caller, abi::u(0)),
        abi::u(1),
        "CALL succeeded"
    );
    let mut written = [0u8; 32];
    written[0] = 1;
    assert_eq!(chain.storage(&writer, abi::u(0)), written);
}

/// Records its call value (slot 0) and own balance (slot 1); given a 20-byte input, sends its
/// whole call value on to that address and fails if that call fails.
const VALUED: &str = r#"(module
  (import "keel" "call_value" (func $value (param i32)))
  (import "keel" "storage_store" (func $store (param i32 i32)))
  (import "keel" "address" (func $address (param i32)))
  (import "keel" "balance" (func $balance (param i32 i32)))
  (import "keel" "read_input" (func $input (param i32)))
  (import "keel" "call" (func $call (param i32 i32 i32 i32 i64) (result i32)))
  (memory (export "memory") 1 1)
  (func (export "call") (param $len i32) (result i32)
    (call $value (i32.const 32))
    (call $store (i32.const 0) (i32.const 32))
    (call $address (i32.const 64))
    (call $balance (i32.const 64) (i32.const 96))
    (i32.store8 (i32.const 191) (i32.const 1))
    (call $store (i32.const 160) (i32.const 96))
    (if (i32.eq (local.get $len) (i32.const 20))
      (then
        (call $input (i32.const 128))
        (if (call $call (i32.const 128) (i32.const 32) (i32.const 0) (i32.const 0) (i64.const 0))
          (then (return (i32.const 1))))))
    (i32.const 0)))"#;

#[test]
fn value_flows_into_and_out_of_wasm() {
    let (alice, bob) = (key(1), key(2));
    let mut chain = Chain::new(&[&alice, &bob]);
    let valued = chain.deploy(
        &alice,
        Env::Wasm,
        wat::parse_str(VALUED).expect("wat"),
        Vec::new(),
    );
    let r = chain.run(
        &alice,
        1_000_000,
        TxBody::Call {
            to: valued,
            data: Vec::new(),
            value: U256::from(777),
        },
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(chain.storage(&valued, abi::u(0)), abi::u(777));
    assert_eq!(
        chain.storage(&valued, abi::u(1)),
        abi::u(777),
        "balance seen inside the frame"
    );
    assert_eq!(chain.balance(&valued), U256::from(777));

    // Forward 1,000 more to Bob from inside WASM: the contract keeps its 777.
    let bob_before = chain.balance(&addr(&bob));
    let r = chain.run(
        &alice,
        1_000_000,
        TxBody::Call {
            to: valued,
            data: addr(&bob).0.to_vec(),
            value: U256::from(1_000),
        },
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(chain.balance(&addr(&bob)), bob_before + U256::from(1_000));
    assert_eq!(chain.balance(&valued), U256::from(777));
}

const CTOR_REVERTS: &str = r#"(module
  (import "keel" "revert" (func $revert (param i32 i32)))
  (memory (export "memory") 1 1)
  (data (i32.const 0) "no")
  (func (export "deploy") (param i32) (result i32) (call $revert (i32.const 0) (i32.const 2)) (i32.const 0))
  (func (export "call") (param i32) (result i32) (i32.const 0)))"#;

const CTOR_STORES_ARGS: &str = r#"(module
  (import "keel" "read_input" (func $input (param i32)))
  (import "keel" "storage_store" (func $store (param i32 i32)))
  (memory (export "memory") 1 1)
  (func (export "deploy") (param i32) (result i32)
    (call $input (i32.const 32)) (call $store (i32.const 0) (i32.const 32)) (i32.const 0))
  (func (export "call") (param i32) (result i32) (i32.const 0)))"#;

fn wasm_address(deployer: &Address, counter: u64) -> Address {
    let h = keel_exec_wasm::keccak256(
        &[
            b"keel.wasm.create".as_slice(),
            &deployer.0,
            &abi::u(counter),
        ]
        .concat(),
    );
    let mut a = [0u8; 20];
    a.copy_from_slice(&h[12..]);
    Address(a)
}

#[test]
fn constructors_run_once_and_a_reverting_one_deploys_nothing() {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let r = chain.run(
        &alice,
        2_000_000,
        TxBody::Deploy {
            env: Env::Wasm,
            code: wat::parse_str(CTOR_REVERTS).expect("wat"),
            args: Vec::new(),
            value: U256::ZERO,
        },
    );
    assert_eq!(
        (r.status, r.error.clone()),
        (TxStatus::Revert, Some(TxError::Reverted))
    );
    assert_eq!(r.output, b"no".to_vec());
    assert!(r.contract_address.is_none());
    // The reverted deploy did not consume the address: the next one gets counter 0's.
    let args = abi::u(42).to_vec();
    let a = chain.deploy(
        &alice,
        Env::Wasm,
        wat::parse_str(CTOR_STORES_ARGS).expect("wat"),
        args,
    );
    assert_eq!(a, wasm_address(&addr(&alice), 0));
    assert_eq!(chain.storage(&a, abi::u(0)), abi::u(42));
    let b = chain.deploy(
        &alice,
        Env::Wasm,
        wat::parse_str(CTOR_STORES_ARGS).expect("wat"),
        abi::u(1).to_vec(),
    );
    assert_eq!(b, wasm_address(&addr(&alice), 1));
}

#[test]
fn the_evm_sees_wasm_code_with_its_prefix() {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let module = wat::parse_str(WRITER).expect("wat");
    let wasm = chain.deploy(&alice, Env::Wasm, module.clone(), Vec::new());
    // slot0 = EXTCODESIZE(wasm), slot1 = EXTCODEHASH(wasm)
    let mut runtime = vec![0x73];
    runtime.extend_from_slice(&wasm.0);
    runtime.extend_from_slice(&[0x3b, 0x60, 0, 0x55, 0x73]);
    runtime.extend_from_slice(&wasm.0);
    runtime.extend_from_slice(&[0x3f, 0x60, 1, 0x55, 0x00]);
    let probe = chain.deploy(&alice, Env::Evm, creation(&runtime), Vec::new());
    let r = chain.call(&alice, probe, Vec::new());
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    let code = [&keel_exec_wasm::WASM_CODE_PREFIX[..], &module].concat();
    assert_eq!(chain.storage(&probe, abi::u(0)), abi::u(code.len() as u64));
    assert_eq!(
        chain.storage(&probe, abi::u(1)),
        keel_exec_wasm::keccak256(&code)
    );
    // And EVM creation code can never deploy code that poses as WASM (EIP-3541).
    let mut fake = vec![
        0x60, 0xEF, 0x60, 0, 0x53, 0x60, 0xF0, 0x60, 1, 0x53, 0x60, 3, 0x60, 0, 0xf3,
    ];
    fake.truncate(15);
    let r = chain.run(
        &alice,
        1_000_000,
        TxBody::Deploy {
            env: Env::Evm,
            code: fake,
            args: Vec::new(),
            value: U256::ZERO,
        },
    );
    assert_eq!(
        r.error,
        Some(TxError::Execution {
            code: keel_types::receipt::ExecError::CreateContractStartingWithEF
        }),
        "{r:?}"
    );
}

#[test]
fn precompiles_refunds_and_block_context_follow_ethereum() {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    // SHA-256 precompile at 0x02, called by a transaction.
    let mut sha = [0u8; 20];
    sha[19] = 2;
    let r = chain.call(&alice, Address(sha), b"abc".to_vec());
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(
        hex::encode(&r.output),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );

    // Clearing a slot is refunded (EIP-3529): emptying a balance costs less than lowering it.
    let token = chain.deploy(
        &alice,
        Env::Evm,
        common::artifact("Token.bin"),
        abi::u(1_000).to_vec(),
    );
    let bob = addr(&key(2));
    let to_bob = |n| {
        abi::call(
            "transfer(address,uint256)",
            &[abi::address(&bob), abi::u(n)],
        )
    };
    chain.call(&alice, token, to_bob(10));
    let partial = chain.call(&alice, token, to_bob(10));
    let all = chain.call(&alice, token, to_bob(980));
    assert_eq!(
        (partial.status, all.status),
        (TxStatus::Success, TxStatus::Success)
    );
    assert!(
        all.gas_used < partial.gas_used,
        "{} vs {}",
        all.gas_used,
        partial.gas_used
    );

    // NUMBER, TIMESTAMP (seconds), CHAINID, PREVRANDAO (= parent hash) into slots 0..3.
    let runtime = [
        0x43, 0x60, 0, 0x55, 0x42, 0x60, 1, 0x55, 0x46, 0x60, 2, 0x55, 0x44, 0x60, 3, 0x55, 0x00,
    ];
    let probe = chain.deploy(&alice, Env::Evm, creation(&runtime), Vec::new());
    let parent = chain.parent_hash;
    chain.call(&alice, probe, Vec::new());
    let height = chain.height;
    assert_eq!(chain.storage(&probe, abi::u(0)), abi::u(height));
    assert_eq!(
        chain.storage(&probe, abi::u(1)),
        abi::u(1_700_000_000 + height)
    );
    assert_eq!(chain.storage(&probe, abi::u(2)), abi::u(CHAIN_ID));
    assert_eq!(chain.storage(&probe, abi::u(3)), parent.0);
}

/// Stores block_height, block_timestamp (ms) and block_epoch into slots 0, 1, 2.
const BLOCK_PROBE: &str = r#"(module
  (import "keel" "block_height" (func $h (result i64)))
  (import "keel" "block_timestamp" (func $t (result i64)))
  (import "keel" "block_epoch" (func $e (result i64)))
  (import "keel" "storage_store" (func $store (param i32 i32)))
  (memory (export "memory") 1 1)
  (func $put (param $slot i32) (param $v i64)
    ;; key at 0 (slot in the last byte), value big-endian at 32..64
    (i32.store8 (i32.const 31) (local.get $slot))
    (i64.store (i32.const 56) (i64.or
      (i64.or (i64.or (i64.shl (local.get $v) (i64.const 56))
                      (i64.and (i64.shl (local.get $v) (i64.const 40)) (i64.const 0x00ff000000000000)))
              (i64.or (i64.and (i64.shl (local.get $v) (i64.const 24)) (i64.const 0x0000ff0000000000))
                      (i64.and (i64.shl (local.get $v) (i64.const 8)) (i64.const 0x000000ff00000000))))
      (i64.or (i64.or (i64.and (i64.shr_u (local.get $v) (i64.const 8)) (i64.const 0x00000000ff000000))
                      (i64.and (i64.shr_u (local.get $v) (i64.const 24)) (i64.const 0x0000000000ff0000)))
              (i64.or (i64.and (i64.shr_u (local.get $v) (i64.const 40)) (i64.const 0x000000000000ff00))
                      (i64.shr_u (local.get $v) (i64.const 56))))))
    (call $store (i32.const 0) (i32.const 32)))
  (func (export "call") (param i32) (result i32)
    (call $put (i32.const 0) (call $h))
    (call $put (i32.const 1) (call $t))
    (call $put (i32.const 2) (call $e))
    (i32.const 0)))"#;

#[test]
fn wasm_sees_the_same_block() {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let probe = chain.deploy(
        &alice,
        Env::Wasm,
        wat::parse_str(BLOCK_PROBE).expect("wat"),
        Vec::new(),
    );
    let r = chain.call(&alice, probe, Vec::new());
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    let height = chain.height;
    assert_eq!(chain.storage(&probe, abi::u(0)), abi::u(height));
    assert_eq!(
        chain.storage(&probe, abi::u(1)),
        abi::u(1_700_000_000_000 + height * 1_000)
    );
    assert_eq!(chain.storage(&probe, abi::u(2)), abi::u(0));
}

/// A `Revive` or `Unflag` whose proof is refused, from a sender that can pay, is charged its
/// intrinsic gas and uses its nonce (a `Revert` with the typed error): junk costs a fee, and
/// the same signed transaction in the next block is refused (its nonce is used).
#[test]
fn a_refused_revival_or_unflag_is_charged_and_cannot_be_replayed() {
    use keel_state::StateViewExt;
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let a = addr(&alice);
    let proposer = addr(&chain.proposer);
    let junk = [
        TxBody::Revive { proof: vec![7; 9] },
        TxBody::Unflag { proof: vec![7; 9] },
    ];
    let fee = U256::from(keel_pruning::revival_gas(9)) * U256::from(GAS_PRICE);
    for (nonce, body) in (0u64..).zip(junk) {
        let (before, earned) = (chain.balance(&a), chain.balance(&proposer));
        let signed = tx(&alice, nonce, CHAIN_ID, 100_000, body);
        let (out, _) = chain.block(vec![signed.clone()]);
        let r = &out.receipts[0];
        assert_eq!(r.status, TxStatus::Revert, "{r:?}");
        assert!(
            matches!(r.error, Some(TxError::InvalidRevival { .. })),
            "{r:?}"
        );
        assert_eq!(r.gas_used, keel_pruning::revival_gas(9));
        assert_eq!(out.gas_used, r.gas_used);
        assert_eq!(chain.balance(&a), before - fee);
        assert_eq!(chain.balance(&proposer), earned + fee);
        let account = chain.store.latest_view().account(&a).expect("read");
        assert_eq!(account.expect("alice").nonce, nonce + 1);

        // Replayed in the next block: refused, nothing charged.
        let (out, _) = chain.block(vec![signed]);
        assert_eq!(out.receipts[0].status, TxStatus::Rejected);
        assert_eq!(
            out.receipts[0].error,
            Some(TxError::BadNonce {
                expected: nonce + 1,
                got: nonce
            })
        );
        assert_eq!(chain.balance(&a), before - fee);
    }
}

/// The transaction index (hash → height, position) keeps a transaction's first inclusion:
/// neither a second copy in the same block nor a copy in a later block moves it. (Both
/// copies are refused by execution, so a valid block never holds them; the index must not
/// trust that.)
#[test]
fn the_transaction_index_keeps_the_first_inclusion() {
    let (alice, bob) = (key(1), key(2));
    let mut chain = Chain::new(&[&alice, &bob]);
    let first = tx(&bob, 0, CHAIN_ID, 21_000, transfer(&addr(&alice), 1));
    let dup = tx(&alice, 0, CHAIN_ID, 21_000, transfer(&addr(&bob), 1));
    let (out, _) = chain.block(vec![first, dup.clone(), dup.clone()]);
    assert_eq!(out.receipts[1].status, TxStatus::Success);
    assert_eq!(
        out.receipts[2].status,
        TxStatus::Rejected,
        "the second copy's nonce is used"
    );
    assert_eq!(
        chain.store.tx_location(&dup.hash()).expect("read"),
        Some((1, 1))
    );
    let (out, _) = chain.block(vec![dup.clone()]);
    assert_eq!(out.receipts[0].status, TxStatus::Rejected);
    assert_eq!(
        chain.store.tx_location(&dup.hash()).expect("read"),
        Some((1, 1))
    );
}
