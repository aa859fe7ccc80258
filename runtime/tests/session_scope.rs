//! Contracts read the scope of the session key that signed their transaction (issue 20 item
//! 6): Solidity's `txSessionScope()` on the jurisdiction contract and WASM's
//! `tx_session_scope` return the same eleven words — the key, its expiry, the epoch, its four
//! caps, what it used this epoch before the transaction, and how many targets it may call.

use super::{run_change, session_run};
use crate::common::{abi, addr, key, Chain};
use keel_types::jurisdiction::{JURISDICTION_ADDRESS as J, TX_SESSION_SCOPE};
use keel_types::policy::{AccountPolicy, TargetRule, SESSION_SCOPE_BYTES};
use keel_types::{Address, Env, Receipt, TxBody, TxStatus, U256};

/// A WASM contract that returns `tx_session_scope`'s answer (one word) and its 352 bytes.
fn wasm_probe() -> Vec<u8> {
    wat::parse_str(
        r#"(module
             (import "keel" "tx_session_scope" (func $scope (param i32) (result i32)))
             (import "keel" "return_data" (func $ret (param i32 i32)))
             (memory (export "memory") 1 1)
             (func (export "call") (param i32) (result i32)
               (i32.store8 (i32.const 31) (call $scope (i32.const 32)))
               (call $ret (i32.const 0) (i32.const 384))
               (i32.const 0)))"#,
    )
    .expect("wat")
}

fn word(v: U256) -> [u8; 32] {
    v.to_be_bytes::<32>()
}

fn num(v: u64) -> [u8; 32] {
    word(U256::from(v))
}

fn call(to: Address) -> TxBody {
    let data = match to == J {
        true => abi::call(TX_SESSION_SCOPE, &[]),
        false => Vec::new(),
    };
    TxBody::Call {
        to,
        data,
        value: U256::ZERO,
    }
}

fn fee(chain: &Chain, r: &Receipt) -> U256 {
    U256::from(r.gas_used) * U256::from(chain.gas_price)
}

#[test]
fn contracts_in_both_environments_read_the_session_keys_scope() {
    let (agent, session) = (key(1), key(5));
    let mut chain = Chain::new(&[&agent]);
    let me = addr(&agent);
    let probe = chain.deploy(&agent, Env::Wasm, wasm_probe(), Vec::new());
    let payee = Address([0x66; 20]);
    let targets = [probe, J, payee]
        .into_iter()
        .map(|to| TargetRule {
            to,
            selectors: None,
        })
        .collect();
    let policy = AccountPolicy {
        targets: Some(targets),
        max_value_per_epoch: Some(U256::from(100u64)),
        max_txs_per_epoch: Some(10),
        ..AccountPolicy::default()
    };
    let add = TxBody::AddSessionKey {
        account: me,
        key: session.public_key(),
        policy,
        expires_at: 5_000,
    };
    assert_eq!(
        run_change(&mut chain, &agent, add).status,
        TxStatus::Success
    );
    chain.resync_nonce(&agent);

    // The account's own key: no scope, zero in both environments.
    let own = chain.call(&agent, probe, Vec::new());
    assert_eq!(own.output, vec![0; 32 + SESSION_SCOPE_BYTES], "{own:?}");
    let own = chain.call(&agent, J, abi::call(TX_SESSION_SCOPE, &[]));
    assert_eq!(own.output, vec![0; SESSION_SCOPE_BYTES], "{own:?}");

    // The key pays 30, then reads its scope from WASM and from Solidity's interface.
    let pay = TxBody::Transfer {
        to: payee,
        amount: U256::from(30u64),
    };
    let paid = session_run(&mut chain, &session, me, 21_000, pay);
    assert_eq!(paid.status, TxStatus::Success, "{paid:?}");
    let from_wasm = session_run(&mut chain, &session, me, 1_000_000, call(probe));
    assert_eq!(from_wasm.status, TxStatus::Success, "{from_wasm:?}");
    let from_evm = session_run(&mut chain, &session, me, 100_000, call(J));
    assert_eq!(from_evm.status, TxStatus::Success, "{from_evm:?}");

    // Before each read: what the key used so far this epoch (the read itself not yet).
    let expected = |txs: u64, fees: U256| {
        let max = U256::MAX.to_be_bytes::<32>();
        [
            session.public_key().0,
            num(5_000u64),
            num(0u64),
            max,
            num(100u64),
            max,
            num(10u64),
            num(30u64),
            word(fees),
            num(txs),
            num(3u64),
        ]
        .concat()
    };
    let mut wasm_expected = num(1u64).to_vec();
    wasm_expected.extend(expected(1, fee(&chain, &paid)));
    assert_eq!(from_wasm.output, wasm_expected);
    assert_eq!(
        from_evm.output,
        expected(2, fee(&chain, &paid) + fee(&chain, &from_wasm))
    );
}
