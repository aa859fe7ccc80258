//! Hostile WASM: every attack ends in a typed outcome, and running the same attacks on two
//! fresh stores gives byte-identical receipts and state roots.

use crate::common;

use common::{key, Chain};
use keel_types::receipt::{BlockReceipts, CodeError, ExecError, RequiredExport};
use keel_types::{Canonical, Env, Hash, Receipt, TxBody, TxError, TxStatus, U256};

const GAS: u64 = 3_000_000;

const INFINITE_LOOP: &str = r#"(module
  (memory (export "memory") 1 1)
  (func (export "call") (param i32) (result i32) (loop $l (br $l)) (i32.const 0)))"#;

/// Grows memory one page at a time until refused, forever; returns the final size if the
/// growth were ever to stop. Bounded by the declared maximum: grow returns -1 past it.
const GROW_BOMB: &str = r#"(module
  (import "keel" "return_data" (func $ret (param i32 i32)))
  (memory (export "memory") 1 32)
  (func (export "call") (param i32) (result i32)
    (block $done (loop $l
      (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
      (br $l)))
    ;; Past the maximum now: a huge request is refused too, and memory stays 32 pages.
    (i32.store (i32.const 0) (memory.grow (i32.const 65536)))
    (i32.store (i32.const 4) (memory.size))
    (call $ret (i32.const 0) (i32.const 8))
    (i32.const 0)))"#;

const DEEP_RECURSION: &str = r#"(module
  (memory (export "memory") 1 1)
  (func $f (param i32) (result i32) (call $f (i32.add (local.get 0) (i32.const 1))))
  (func (export "call") (param i32) (result i32) (call $f (i32.const 0))))"#;

/// Recurses 400 WASM calls deep, then calls its own address again from the bottom: deep
/// native stacks stacked across nested frames must still end in a typed outcome.
const DEEP_THEN_NESTED: &str = r#"(module
  (import "keel" "address" (func $address (param i32)))
  (import "keel" "call" (func $call (param i32 i32 i32 i32 i64) (result i32)))
  (memory (export "memory") 1 1)
  (func $down (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then
        (call $address (i32.const 0))
        (call $call (i32.const 0) (i32.const 64) (i32.const 128) (i32.const 0) (i64.const 0)))
      (else (call $down (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "call") (param i32) (result i32)
    (drop (call $down (i32.const 400)))
    (i32.const 0)))"#;

const UNREACHABLE: &str = r#"(module
  (memory (export "memory") 1 1)
  (func (export "call") (param i32) (result i32) unreachable))"#;

const DISALLOWED_IMPORT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1 1)
  (func (export "call") (param i32) (result i32) (i32.const 0)))"#;

const WRONG_HOST_SIGNATURE: &str = r#"(module
  (import "keel" "storage_load" (func (param i32) (result i32)))
  (memory (export "memory") 1 1)
  (func (export "call") (param i32) (result i32) (i32.const 0)))"#;

/// A NaN with a payload: the bits a float unit may or may not preserve differ across CPUs,
/// so keel rejects float instructions at deploy instead of canonicalizing.
const FLOAT_NAN: &str = r#"(module
  (memory (export "memory") 1 1)
  (func (export "call") (param i32) (result i32)
    (i32.reinterpret_f32 (f32.add (f32.const nan:0x200001) (f32.const -nan:0x7fffff)))))"#;

const NO_MEMORY_MAX: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "call") (param i32) (result i32) (i32.const 0)))"#;

const TOO_MUCH_MEMORY: &str = r#"(module
  (memory (export "memory") 1 33)
  (func (export "call") (param i32) (result i32) (i32.const 0)))"#;

const START_FUNCTION: &str = r#"(module
  (memory (export "memory") 1 1)
  (func $s)
  (start $s)
  (func (export "call") (param i32) (result i32) (i32.const 0)))"#;

fn deploy(chain: &mut Chain, code: Vec<u8>, gas: u64) -> Receipt {
    chain.run(
        &key(1),
        gas,
        TxBody::Deploy {
            env: Env::Wasm,
            code,
            args: Vec::new(),
            value: U256::ZERO,
        },
    )
}

fn invalid_code(r: &Receipt) -> CodeError {
    assert_eq!(r.status, TxStatus::Revert, "{r:?}");
    match &r.error {
        Some(TxError::InvalidCode { code }) => *code,
        other => panic!("expected InvalidCode, got {other:?}"),
    }
}

fn call(chain: &mut Chain, to: keel_types::Address) -> Receipt {
    chain.run(
        &key(1),
        GAS,
        TxBody::Call {
            to,
            data: Vec::new(),
            value: U256::ZERO,
        },
    )
}

/// Every attack once; returns all receipts and the final root.
fn attacks() -> (Vec<Receipt>, Hash) {
    let mut chain = Chain::new(&[&key(1)]);
    let mut receipts = Vec::new();
    let wat = |s: &str| wat::parse_str(s).expect("wat");

    // Infinite loop: out of gas, all of the call's gas spent.
    let r = deploy(&mut chain, wat(INFINITE_LOOP), GAS);
    let looper = r.contract_address.expect("deployed");
    receipts.push(r);
    let r = call(&mut chain, looper);
    assert_eq!(
        (r.status, r.error.clone()),
        (TxStatus::Revert, Some(TxError::OutOfGas))
    );
    assert_eq!(r.gas_used, GAS);
    receipts.push(r);

    // memory.grow bomb: bounded at the declared 32 pages; grows past it return -1.
    let r = deploy(&mut chain, wat(GROW_BOMB), GAS);
    let bomb = r.contract_address.expect("deployed");
    receipts.push(r);
    let r = call(&mut chain, bomb);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(r.output[..4], (-1i32).to_le_bytes());
    assert_eq!(r.output[4..8], 32u32.to_le_bytes());
    receipts.push(r);

    // Deep recursion: trapped by the call-depth instrumentation, long before the native
    // stack could overflow.
    let r = deploy(&mut chain, wat(DEEP_RECURSION), GAS);
    let recurse = r.contract_address.expect("deployed");
    receipts.push(r);
    let r = call(&mut chain, recurse);
    assert_eq!(
        (r.status, r.error.clone()),
        (TxStatus::Revert, Some(TxError::CallDepthExceeded))
    );
    receipts.push(r);

    // Deep recursion in every one of the nested frames: bounded by the frame limit, no crash.
    let r = deploy(&mut chain, wat(DEEP_THEN_NESTED), GAS);
    let deep = r.contract_address.expect("deployed");
    receipts.push(r);
    let r = chain.run(
        &key(1),
        10_000_000,
        TxBody::Call {
            to: deep,
            data: Vec::new(),
            value: U256::ZERO,
        },
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    receipts.push(r);

    // A trap: typed, with keel's own code (never wasmer's text).
    let r = deploy(&mut chain, wat(UNREACHABLE), GAS);
    let trap = r.contract_address.expect("deployed");
    receipts.push(r);
    let r = call(&mut chain, trap);
    assert_eq!(r.status, TxStatus::Revert);
    assert_eq!(
        r.error,
        Some(TxError::Execution {
            code: ExecError::WasmUnreachable
        }),
        "{r:?}"
    );
    receipts.push(r);

    // Refused at deploy, each with its typed code.
    let max = keel_types::limits::MAX_CODE_BYTES;
    type Expect = fn(&CodeError) -> bool;
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        (b"\0asm\x01\0\0\0\x01\xff\xff".to_vec(), |c| {
            matches!(c, CodeError::Malformed { .. })
        }),
        (b"definitely not wasm".to_vec(), |c| {
            matches!(c, CodeError::Malformed { .. })
        }),
        (wat(DISALLOWED_IMPORT), |c| {
            *c == CodeError::DisallowedImport { index: 0 }
        }),
        (wat(WRONG_HOST_SIGNATURE), |c| {
            *c == CodeError::ImportSignature { index: 0 }
        }),
        (wat(FLOAT_NAN), |c| {
            matches!(c, CodeError::FloatsNotAllowed { .. })
        }),
        (wat(NO_MEMORY_MAX), |c| {
            *c == CodeError::Memory { max_pages: 32 }
        }),
        (wat(TOO_MUCH_MEMORY), |c| {
            *c == CodeError::Memory { max_pages: 32 }
        }),
        (wat(START_FUNCTION), |c| *c == CodeError::StartFunction),
        (vec![0u8; max + 1], |c| {
            *c == CodeError::TooLarge {
                len_bytes: keel_types::limits::MAX_CODE_BYTES as u64 + 1,
                max_bytes: keel_types::limits::MAX_CODE_BYTES as u64,
            }
        }),
    ];
    for (code, expected) in cases {
        let r = deploy(&mut chain, code, GAS);
        let code = invalid_code(&r);
        assert!(expected(&code), "unexpected code {code:?}");
        // The refusal's reason is the typed error; no text in the revert data.
        assert!(r.output.is_empty(), "{r:?}");
        assert!(r.contract_address.is_none());
        receipts.push(r);
    }
    (receipts, chain.root())
}

#[test]
fn hostile_modules_get_typed_outcomes_and_identical_results_on_fresh_stores() {
    let (first, first_root) = attacks();
    let (second, second_root) = attacks();
    assert_eq!(first, second);
    assert_eq!(first_root, second_root);
}

/// 900 four-byte characters (U+1D11E): 900 characters, 3,600 bytes. A refusal reason cut to
/// 900 *characters* was over the 1,024-*byte* bound a receipt decodes with.
fn long_name() -> String {
    "\u{1D11E}".repeat(900)
}

/// Every error path whose text used to reach a receipt, with text far longer in bytes than in
/// characters: each deploy is refused with a typed code, the block's receipts decode again
/// (stored and re-encoded), and the chain goes on. Before typed codes, the first of these
/// committed a block whose receipts no longer decoded, and every node halted.
#[test]
fn long_multibyte_names_get_typed_refusals_and_receipts_that_decode() {
    let name = long_name();
    assert_eq!((name.chars().count(), name.len()), (900, 3_600));
    let wat = |s: &str| wat::parse_str(s).expect("wat");
    // An import the host API does not have, named with the long name.
    let import_name = wat(&format!(
        r#"(module
  (import "keel" "{name}" (func))
  (memory (export "memory") 1 1)
  (func (export "call") (param i32) (result i32) (i32.const 0)))"#
    ));
    // An import from a module with the long name.
    let import_module = wat(&format!(
        r#"(module
  (import "keel" "caller" (func (param i32)))
  (import "{name}" "x" (func))
  (memory (export "memory") 1 1)
  (func (export "call") (param i32) (result i32) (i32.const 0)))"#
    ));
    // wasmparser's message for a duplicate export quotes the name.
    let duplicate_export = wat(&format!(
        r#"(module
  (memory (export "memory") 1 1)
  (func $f (param i32) (result i32) (i32.const 0))
  (export "call" (func $f))
  (export "{name}" (func $f))
  (export "{name}" (func $f)))"#
    ));
    // A long function export name, and no `call`.
    let long_export = wat(&format!(
        r#"(module
  (memory (export "memory") 1 1)
  (func (export "{name}") (param i32) (result i32) (i32.const 0)))"#
    ));
    // A constructor whose revert data poses as a refusal: `invalid code: ` and the name.
    let revert_text = format!("invalid code: {name}");
    let posing_constructor = wat(&format!(
        r#"(module
  (import "keel" "revert" (func $revert (param i32 i32)))
  (memory (export "memory") 1 1)
  (data (i32.const 0) "{revert_text}")
  (func (export "call") (param i32) (result i32) (i32.const 0))
  (func (export "deploy") (param i32) (result i32)
    (call $revert (i32.const 0) (i32.const {len}))
    (i32.const 1)))"#,
        len = revert_text.len()
    ));

    let mut chain = Chain::new(&[&key(1)]);
    let deploys = [
        import_name,
        import_module,
        duplicate_export,
        long_export,
        posing_constructor,
    ];
    let txs = deploys
        .into_iter()
        .map(|code| {
            chain.tx(
                &key(1),
                GAS,
                TxBody::Deploy {
                    env: Env::Wasm,
                    code,
                    args: Vec::new(),
                    value: U256::ZERO,
                },
            )
        })
        .collect();
    let (out, _) = chain.block(txs);
    let errors: Vec<_> = out.receipts.iter().map(|r| r.error.clone()).collect();
    let invalid = |code| Some(TxError::InvalidCode { code });
    assert_eq!(errors[0], invalid(CodeError::DisallowedImport { index: 0 }));
    assert_eq!(errors[1], invalid(CodeError::DisallowedImport { index: 1 }));
    assert!(
        matches!(
            errors[2],
            Some(TxError::InvalidCode {
                code: CodeError::Malformed { .. }
            })
        ),
        "{:?}",
        errors[2]
    );
    assert_eq!(
        errors[3],
        invalid(CodeError::MissingExport {
            export: RequiredExport::Call
        })
    );
    // The constructor's revert is a revert with its data, not a refusal.
    assert_eq!(errors[4], Some(TxError::Reverted));
    assert_eq!(out.receipts[4].output, revert_text.as_bytes());
    for r in &out.receipts {
        assert_eq!(r.status, TxStatus::Revert, "{r:?}");
        assert!(r.gas_used > 0, "a refused deploy is charged: {r:?}");
        assert!(r.contract_address.is_none());
    }

    // The receipts round-trip, re-encoded and as stored.
    let encoded = BlockReceipts(out.receipts.clone()).encode();
    assert_eq!(
        BlockReceipts::decode(&encoded).expect("receipts decode"),
        BlockReceipts(out.receipts.clone())
    );
    let stored = chain
        .store
        .receipts(chain.height)
        .expect("read receipts")
        .expect("stored");
    assert_eq!(stored, out.receipts);

    // And the next block executes.
    let r = chain.run(
        &key(1),
        GAS,
        TxBody::Transfer {
            to: common::addr(&key(2)),
            amount: U256::from(1u64),
        },
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
}

/// RPC simulations (`keel_simulate`; `eth_call` and `eth_estimateGas` run the same
/// speculative runtime) of WASM deploys compile for the caller alone: any number of them
/// write nothing to the node's artifact cache on disk, which a full disk would turn into a
/// halt. Executing the deploy in a block does write its artifact.
#[test]
fn simulated_wasm_deploys_write_no_artifact() {
    let k = key(1);
    let mut chain = Chain::new(&[&k]);
    let cache_dir = chain.dir.path().join("wasm-cache");
    let files = || std::fs::read_dir(&cache_dir).expect("cache dir").count();
    let view = chain.store.latest_view();
    let context = chain.runtime.context(&chain.make_block(vec![]).header);
    let module = |n: u8| {
        wat::parse_str(format!(
            r#"(module (memory (export "memory") 1 1)
                 (func (export "call") (param i32) (result i32) (i32.const {n})))"#
        ))
        .expect("wat")
    };
    for n in 0..3 {
        let tx = keel_types::Transaction {
            chain_id: common::CHAIN_ID,
            sender: k.public_key().into(),
            nonce: 0,
            gas_limit: GAS,
            gas_price: common::GAS_PRICE,
            body: TxBody::Deploy {
                env: Env::Wasm,
                code: module(n),
                args: vec![],
                value: U256::ZERO,
            },
        }
        .sign(&k);
        let receipt = chain
            .runtime
            .simulate(&view, &keel_exec_evm::NoBlockHashes, &context, &tx)
            .expect("simulate");
        assert_eq!(receipt.status, TxStatus::Success, "{receipt:?}");
    }
    assert_eq!(files(), 0, "simulations wrote artifacts");
    chain.deploy(&k, Env::Wasm, module(0), vec![]);
    assert_eq!(files(), 1, "the executed deploy writes its artifact");
}
