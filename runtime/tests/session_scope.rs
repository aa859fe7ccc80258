//! Contracts read the scope of the session key that signed their transaction (issue 20 item
//! 6): Solidity's `txSessionScope()` on the jurisdiction contract and WASM's
//! `tx_session_scope` return the same eleven words — the key, its expiry, the epoch, its four
//! caps, what it used this epoch before the transaction, and how many targets it may call —
//! in the transaction's frames and in its plugins' frames.

use super::{denial, run_change};
use crate::common::{abi, addr, key, Chain, CHAIN_ID};
use keel_types::jurisdiction::{JURISDICTION_ADDRESS as J, TX_SESSION_SCOPE};
use keel_types::policy::{AccountPolicy, PolicyRule, TargetRule, SESSION_SCOPE_BYTES};
use keel_types::{
    Address, Env, Receipt, SecretKey, Sender, SignedTransaction, Transaction, TxBody, TxStatus,
    U256,
};

/// A WASM contract that returns `tx_session_scope`'s answer (one word), then the words.
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

/// A plugin whose code is word `index` of the scope (0 allows; anything else denies with it
/// as the denial's `used`).
fn scope_plugin(index: usize) -> Vec<u8> {
    let at = 32 * index;
    wat::parse_str(format!(
        r#"(module
             (import "keel" "tx_session_scope" (func $scope (param i32) (result i32)))
             (import "keel" "return_data" (func $ret (param i32 i32)))
             (memory (export "memory") 1 1)
             (func (export "call") (param i32) (result i32)
               (drop (call $scope (i32.const 0)))
               (call $ret (i32.const {at}) (i32.const 32))
               (i32.const 0)))"#
    ))
    .expect("wat")
}

fn num(v: u64) -> [u8; 32] {
    U256::from(v).to_be_bytes::<32>()
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

fn pay(to: Address, amount: u64) -> TxBody {
    TxBody::Transfer {
        to,
        amount: U256::from(amount),
    }
}

/// `body` signed by `session` for `account` with `nonce`.
fn signed(
    chain: &Chain,
    session: &SecretKey,
    (account, nonce): (Address, u64),
    gas: u64,
    body: TxBody,
) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN_ID,
        sender: Sender::Session {
            account,
            key: session.public_key(),
        },
        nonce,
        gas_limit: gas,
        gas_price: chain.gas_price,
        body,
    }
    .sign(session)
}

fn add_key(chain: &mut Chain, agent: &SecretKey, session: &SecretKey, policy: AccountPolicy) {
    let add = TxBody::AddSessionKey {
        account: addr(agent),
        key: session.public_key(),
        policy,
        expires_at: 5_000,
    };
    let r = run_change(chain, agent, add);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    chain.resync_nonce(agent);
}

fn nonce_of(chain: &Chain, a: &Address) -> u64 {
    use keel_state::StateViewExt;
    let view = chain.store.latest_view();
    view.account(a).expect("read").map_or(0, |r| r.nonce)
}

/// `body` signed by `session` for `account` at its next nonce, alone in a block.
fn run_as(
    chain: &mut Chain,
    session: &SecretKey,
    account: Address,
    gas: u64,
    body: TxBody,
) -> Receipt {
    let n = nonce_of(chain, &account);
    let tx = signed(chain, session, (account, n), gas, body);
    let (mut out, _) = chain.block(vec![tx]);
    out.receipts.remove(0)
}

fn fee(chain: &Chain, r: &Receipt) -> U256 {
    U256::from(r.gas_used) * U256::from(chain.gas_price)
}

#[test]
fn contracts_in_both_environments_read_the_session_keys_scope() {
    let (agent, session, open) = (key(1), key(5), key(6));
    let mut chain = Chain::new(&[&agent]);
    chain.epoch = 3;
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
    let fee_cap = U256::from(10u64).pow(U256::from(24u64));
    let policy = AccountPolicy {
        targets: Some(targets),
        max_value_per_tx: Some(U256::from(50u64)),
        max_value_per_epoch: Some(U256::from(100u64)),
        max_fee_per_epoch: Some(fee_cap),
        max_txs_per_epoch: Some(10),
        ..AccountPolicy::default()
    };
    add_key(&mut chain, &agent, &session, policy);
    add_key(&mut chain, &agent, &open, AccountPolicy::default());

    // The account's own key: no scope, zero in both environments.
    let own = chain.call(&agent, probe, Vec::new());
    assert_eq!(own.output, vec![0; 32 + SESSION_SCOPE_BYTES], "{own:?}");
    let own = chain.call(&agent, J, abi::call(TX_SESSION_SCOPE, &[]));
    assert_eq!(own.output, vec![0; SESSION_SCOPE_BYTES], "{own:?}");

    // In one block (so speculation runs too): the key pays 30, then reads its scope from
    // WASM and from Solidity's interface, each seeing what the key used before it.
    let n = nonce_of(&chain, &me);
    let txs = vec![
        signed(&chain, &session, (me, n), 21_000, pay(payee, 30)),
        signed(&chain, &session, (me, n + 1), 1_000_000, call(probe)),
        signed(&chain, &session, (me, n + 2), 100_000, call(J)),
    ];
    let (out, _) = chain.block(txs);
    for r in &out.receipts {
        assert_eq!(r.status, TxStatus::Success, "{r:?}");
    }
    let [paid, from_wasm, from_evm] = &out.receipts[..] else {
        panic!("three receipts");
    };
    let scope = |epoch: u64, (value, fees, txs): (u64, U256, u64)| {
        [
            session.public_key().0,
            num(5_000),
            num(epoch),
            num(50),
            num(100),
            fee_cap.to_be_bytes::<32>(),
            num(10),
            num(value),
            fees.to_be_bytes::<32>(),
            num(txs),
            num(3),
        ]
        .concat()
    };
    let flagged = |words: Vec<u8>| [num(1).to_vec(), words].concat();
    let first = fee(&chain, paid);
    assert_eq!(from_wasm.output, flagged(scope(3, (30, first, 1))));
    let both = first + fee(&chain, from_wasm);
    assert_eq!(from_evm.output, scope(3, (30, both, 2)));

    // A new epoch: the budgets start over.
    chain.epoch = 4;
    chain.resync_nonce(&agent);
    let out = run_as(&mut chain, &session, me, 1_000_000, call(probe));
    assert_eq!(out.output, flagged(scope(4, (0, U256::ZERO, 0))));

    // A key without limits: every cap and its targets read as all ones.
    let out = run_as(&mut chain, &open, me, 1_000_000, call(probe));
    let max = U256::MAX.to_be_bytes::<32>();
    let unlimited = [
        open.public_key().0,
        num(5_000),
        num(4),
        max,
        max,
        max,
        max,
        num(0),
        num(0),
        num(0),
        max,
    ]
    .concat();
    assert_eq!(out.output, flagged(unlimited));
}

/// A plugin the key's policy attaches sees the key's scope as the transaction's frames do:
/// one that denies once the key has sent value allows the first payment and denies the
/// second with what the first sent.
#[test]
fn a_plugin_reads_the_session_keys_scope() {
    let (agent, session) = (key(1), key(5));
    let mut chain = Chain::new(&[&agent]);
    let me = addr(&agent);
    // Word 7: the value the key used this epoch before the transaction.
    let plugin = chain.deploy(&agent, Env::Wasm, scope_plugin(7), Vec::new());
    let policy = AccountPolicy {
        plugins: vec![plugin],
        ..AccountPolicy::default()
    };
    add_key(&mut chain, &agent, &session, policy);
    let payee = Address([0x67; 20]);
    let out = run_as(&mut chain, &session, me, 300_000, pay(payee, 30));
    assert_eq!(out.status, TxStatus::Success, "{:?}", out);
    let out = run_as(&mut chain, &session, me, 300_000, pay(payee, 5));
    let d = denial(&out).expect("denied by the plugin");
    assert_eq!(
        (d.rule, d.used),
        (PolicyRule::PluginDenied, U256::from(30u64))
    );
}
