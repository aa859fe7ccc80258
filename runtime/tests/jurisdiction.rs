//! Jurisdiction tags and rules (issue 20 item 3): genesis attesters tag accounts; accounts and
//! contracts of both environments declare rules; every call frame of a transaction passes its
//! target's rules, cross-environment frames included; the top frame's denial is a typed
//! refusal that simulation gives too. The adversaries: a non-attester tagging, an attester
//! removing another's tag, a session key or a static frame writing, value sent to the
//! contract, a router laundering a denied caller, an expired tag, hostile code words.

use super::{as_session, denial, nonce, run_change, session_run, simulated, transfer};
use crate::common::{abi, addr, creation, evm_proxy, key, Chain};
use keel_runtime::jurisdiction::{
    selector, DENIED_ERROR, HAS_TAG, PLUGINS_OF, RULES_OF, SET_PLUGINS, SET_RULES, TAG, TAG_AT,
    TAG_COUNT, TX_SESSION_KEY, TX_SESSION_SCOPE, UNTAG,
};
use keel_types::jurisdiction::{
    pack_codes, rules_changed_topic, tag_changed_topic, Code, JURISDICTION_ADDRESS,
    RULED_COUNT_SLOT,
};
use keel_types::policy::{AccountPolicy, PolicyRule, PolicyScope, TargetRule};
use keel_types::{Address, Env, Receipt, SecretKey, TxBody, TxStatus, U256};

pub(super) const J: Address = JURISDICTION_ADDRESS;

fn code(text: &str) -> Code {
    Code::parse(text).expect("assigned code")
}

fn code_word(c: &str) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[..2].copy_from_slice(c.as_bytes());
    w
}

pub(super) fn tag_data(account: &Address, c: &str, expires_at: u64) -> Vec<u8> {
    abi::call(
        TAG,
        &[abi::address(account), code_word(c), abi::u(expires_at)],
    )
}

fn rules_data(deny: &[&str], allow: &[&str], cap: Option<u64>) -> Vec<u8> {
    let codes = |l: &[&str]| l.iter().map(|c| code(c)).collect::<Vec<_>>();
    abi::call(
        SET_RULES,
        &[
            pack_codes(&codes(deny)),
            pack_codes(&codes(allow)),
            cap.map_or(abi::uint(U256::MAX), abi::u),
        ],
    )
}

pub(super) fn call_with(
    chain: &mut Chain,
    k: &SecretKey,
    to: Address,
    data: Vec<u8>,
    value: u64,
) -> Receipt {
    chain.run(
        k,
        1_000_000,
        TxBody::Call {
            to,
            data,
            value: U256::from(value),
        },
    )
}

fn denied_as(r: &Receipt) -> Option<(PolicyRule, PolicyScope, U256, U256, Address)> {
    denial(r).map(|d| (d.rule, d.scope, d.limit, d.used, d.source))
}

fn code_number(c: &str) -> U256 {
    U256::from(u16::from_be_bytes(
        c.as_bytes().try_into().expect("two bytes"),
    ))
}

/// The revert data a nested frame's denial bubbles up as.
fn nested_denial(rule: PolicyRule, target: &Address, caller: &Address) -> Vec<u8> {
    let mut out = selector(DENIED_ERROR).to_vec();
    out.extend_from_slice(&abi::u(rule as u64));
    out.extend_from_slice(&abi::address(target));
    out.extend_from_slice(&abi::address(caller));
    out
}

/// Deploys a contract that calls the jurisdiction contract with `data` in its constructor
/// (rules or plugins for itself, which opts it in) and whose runtime forwards its calls
/// there; its address and the deploy's receipt.
fn declaring(chain: &mut Chain, owner: &SecretKey, env: Env, data: Vec<u8>) -> (Address, Receipt) {
    let code = match env {
        Env::Evm => declaring_initcode(&evm_proxy(&J, false)),
        Env::Wasm => wasm_forwarder(&J),
    };
    let body = TxBody::Deploy {
        env,
        code,
        args: data,
        value: U256::ZERO,
    };
    let r = chain.run(owner, 10_000_000, body);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    (r.contract_address.expect("address"), r)
}

/// EVM creation code that `CALL`s the jurisdiction contract with its constructor arguments
/// (the bytes after the creation code) and then deploys `runtime`.
fn declaring_initcode(runtime: &[u8]) -> Vec<u8> {
    const PREFIX: usize = 51;
    let at = u16::try_from(PREFIX + runtime.len()).expect("short");
    let len = u16::try_from(runtime.len()).expect("short");
    let mut code = vec![0x61];
    code.extend_from_slice(&at.to_be_bytes()); // PUSH2 args offset
                                               // DUP1 CODESIZE SUB (n = args length), DUP1 SWAP2 PUSH0 CODECOPY(0, offset, n)
    code.extend_from_slice(&[0x80, 0x38, 0x03, 0x80, 0x91, 0x5f, 0x39]);
    // CALL(gas, J, 0, 0, n, 0, 0)
    code.extend_from_slice(&[0x5f, 0x5f, 0x82, 0x5f, 0x5f, 0x73]);
    code.extend_from_slice(&J.0);
    code.extend_from_slice(&[0x5a, 0xf1, 0x50, 0x50]);
    // CODECOPY(0, PREFIX, len) RETURN(0, len)
    code.push(0x61);
    code.extend_from_slice(&len.to_be_bytes());
    code.extend_from_slice(&[0x80, 0x61]);
    code.extend_from_slice(&u16::try_from(PREFIX).expect("short").to_be_bytes());
    code.extend_from_slice(&[0x5f, 0x39, 0x5f, 0xf3]);
    assert_eq!(code.len(), PREFIX);
    code.extend_from_slice(runtime);
    code
}

/// `caller` calling `router`, which forwards to `ruled`: the router's frame into `ruled` is
/// denied with `rule`, and the router reverts with the typed error.
fn assert_nested_denial(
    chain: &mut Chain,
    caller: &SecretKey,
    (router, ruled): (Address, Address),
    rule: PolicyRule,
    data: &[u8],
) {
    let r = chain.call(caller, router, data.to_vec());
    assert_eq!(r.status, TxStatus::Revert, "{router}: {r:?}");
    let expected = nested_denial(rule, &ruled, &router);
    assert_eq!(&r.output[..expected.len()], expected.as_slice());
}

/// The attester tags `router` with `code`; then `caller`'s call through it passes.
fn tag_and_pass(
    chain: &mut Chain,
    (attester, caller): (&SecretKey, &SecretKey),
    router: Address,
    code: &str,
    data: &[u8],
) {
    let r = call_with(chain, attester, J, tag_data(&router, code, 10_000), 0);
    assert_eq!(r.status, TxStatus::Success);
    let r = chain.call(caller, router, data.to_vec());
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
}

/// A read-only call (what `eth_call` runs) from `from` to `to` over the latest state.
fn eth_call(chain: &Chain, from: Address, to: Address, data: Vec<u8>) -> Receipt {
    let block = chain.make_block(vec![]);
    let context = chain.runtime.context(&block.header);
    let request = keel_runtime::CallRequest {
        from,
        to: Some(to),
        data,
        value: U256::ZERO,
        gas_limit: 5_000_000,
    };
    let view = chain.store.latest_view();
    chain
        .runtime
        .call(&view, &keel_exec_evm::NoBlockHashes, &context, request)
        .expect("call")
}

pub(super) fn chain_with_attester(funded: &[&SecretKey], attester: &SecretKey) -> Chain {
    let mut chain = Chain::new(funded);
    chain.runtime = chain.runtime.clone().with_attesters(&[addr(attester)]);
    chain
}

#[test]
fn attesters_tag_accounts_and_only_they_can() {
    let (attester, alice, stranger) = (key(1), key(2), key(3));
    let mut chain = chain_with_attester(&[&attester, &alice, &stranger], &attester);
    let a = addr(&alice);
    // A stranger's tag and an unassigned code revert; nothing is stored.
    let r = call_with(&mut chain, &stranger, J, tag_data(&a, "US", 100), 0);
    assert_eq!(r.status, TxStatus::Revert, "{r:?}");
    for bad in ["UK", "XX", "us"] {
        let r = call_with(&mut chain, &attester, J, tag_data(&a, bad, 100), 0);
        assert_eq!(r.status, TxStatus::Revert, "{bad}");
    }
    // An expiry that is not in the future reverts.
    let now = chain.height + 1;
    let r = call_with(&mut chain, &attester, J, tag_data(&a, "US", now), 0);
    assert_eq!(r.status, TxStatus::Revert);
    let count = |chain: &mut Chain| {
        let r = chain.call(&stranger, J, abi::call(TAG_COUNT, &[abi::address(&a)]));
        abi::word(&r.output)
    };
    assert_eq!(count(&mut chain), U256::ZERO);

    let r = call_with(&mut chain, &attester, J, tag_data(&a, "US", 1_000), 0);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    let log = &r.logs[0];
    assert_eq!(log.address, J);
    assert_eq!(
        log.topics,
        vec![
            tag_changed_topic(),
            abi::address(&a),
            abi::address(&addr(&attester))
        ]
    );
    assert_eq!(&log.data[..2], b"US");
    assert_eq!(abi::word(&log.data[32..64]), U256::from(1_000u64));
    assert_eq!(log.data[95], 1, "tagged");
    // Tagging again with the same code replaces; a second code adds.
    let r = call_with(&mut chain, &attester, J, tag_data(&a, "US", 2_000), 0);
    assert_eq!(r.status, TxStatus::Success);
    let r = call_with(&mut chain, &attester, J, tag_data(&a, "CH", 2_000), 0);
    assert_eq!(r.status, TxStatus::Success);
    assert_eq!(count(&mut chain), U256::from(2u64));
    let at = chain.call(
        &stranger,
        J,
        abi::call(TAG_AT, &[abi::address(&a), abi::u(0)]),
    );
    assert_eq!(&at.output[..2], b"US");
    assert_eq!(abi::word(&at.output[32..64]), U256::from(2_000u64));
    assert_eq!(&at.output[76..96], &addr(&attester).0);
    let past = chain.call(
        &stranger,
        J,
        abi::call(TAG_AT, &[abi::address(&a), abi::u(2)]),
    );
    assert_eq!(past.status, TxStatus::Revert);
    let has = |chain: &mut Chain, c: &str| {
        let r = chain.call(
            &stranger,
            J,
            abi::call(HAS_TAG, &[abi::address(&a), code_word(c)]),
        );
        assert_eq!(r.status, TxStatus::Success);
        r.output[31] == 1
    };
    assert!(has(&mut chain, "CH") && !has(&mut chain, "DE"));
    // Only the attester that set a tag removes it; removing twice reverts.
    let r = call_with(
        &mut chain,
        &stranger,
        J,
        abi::call(UNTAG, &[abi::address(&a), code_word("CH")]),
        0,
    );
    assert_eq!(r.status, TxStatus::Revert);
    let untag = abi::call(UNTAG, &[abi::address(&a), code_word("CH")]);
    let r = call_with(&mut chain, &attester, J, untag.clone(), 0);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(r.logs[0].data[95], 2, "untagged");
    assert_eq!(
        call_with(&mut chain, &attester, J, untag, 0).status,
        TxStatus::Revert
    );
    assert_eq!(count(&mut chain), U256::ONE);
    // Value sent to the contract reverts and stays with the sender; a static frame cannot
    // write; junk input reverts.
    let before = chain.balance(&addr(&attester));
    let r = call_with(&mut chain, &attester, J, tag_data(&a, "DE", 2_000), 5);
    assert_eq!(r.status, TxStatus::Revert);
    let fee = U256::from(r.gas_used) * U256::from(crate::common::GAS_PRICE);
    assert_eq!(chain.balance(&addr(&attester)), before - fee);
    assert_eq!(chain.balance(&J), U256::ZERO);
    let static_proxy = chain.deploy(&attester, Env::Evm, creation(&evm_proxy(&J, true)), vec![]);
    let r = chain.call(&stranger, static_proxy, rules_data(&["KP"], &[], None));
    assert_eq!(r.status, TxStatus::Revert);
    assert_eq!(
        chain.call(&stranger, J, vec![1, 2, 3]).status,
        TxStatus::Revert
    );
    // A tag expires at its height: `hasTag` turns false without any write.
    let soon = chain.height + 3;
    let r = call_with(&mut chain, &attester, J, tag_data(&a, "SG", soon), 0);
    assert_eq!(r.status, TxStatus::Success);
    assert!(has(&mut chain, "SG"));
    while chain.height + 1 < soon {
        chain.run(&stranger, 21_000, transfer(Address([9; 20]), 1));
    }
    assert!(!has(&mut chain, "SG"), "expired at height {soon}");
}

#[test]
fn rules_deny_the_top_frame_with_a_typed_charge_and_nested_frames_with_a_revert() {
    let (attester, alice, bob, carol, owner) = (key(1), key(2), key(3), key(4), key(5));
    let mut chain = chain_with_attester(&[&attester, &alice, &bob, &carol, &owner], &attester);
    let (a, b, c) = (addr(&alice), addr(&bob), addr(&carol));
    for (who, tag) in [(a, "KP"), (b, "US")] {
        let r = call_with(&mut chain, &attester, J, tag_data(&who, tag, 10_000), 0);
        assert_eq!(r.status, TxStatus::Success);
    }
    // A contract declares its rules itself, in its constructor (which opts it in); its
    // runtime forwards to the jurisdiction contract, so its owner can change them later.
    let (ruled, r) = declaring(
        &mut chain,
        &owner,
        Env::Evm,
        rules_data(&["KP", "IR"], &[], None),
    );
    assert_eq!(
        r.logs[0].topics,
        vec![rules_changed_topic(), abi::address(&ruled)]
    );
    let rules = chain.call(&carol, J, abi::call(RULES_OF, &[abi::address(&ruled)]));
    assert_eq!(&rules.output[..4], b"KPIR");
    assert_eq!(abi::word(&rules.output[64..96]), U256::MAX, "no cap");
    assert_eq!(
        chain.storage(&J, RULED_COUNT_SLOT)[31],
        1,
        "one ruled address"
    );

    // Alice, tagged KP, calling it directly: denied before it runs with the code, charged
    // only its intrinsic gas (a block may hold it: see `execute_tx`); simulation says the
    // same. (Admission refuses it: node/tests/mempool.rs.)
    let probe = abi::call(TAG_COUNT, &[abi::address(&a)]);
    let before = chain.balance(&a);
    let tx = chain.tx(
        &alice,
        1_000_000,
        TxBody::Call {
            to: ruled,
            data: probe.clone(),
            value: U256::ZERO,
        },
    );
    let sim = simulated(&chain, &tx);
    let intrinsic_tx = tx.clone();
    let (mut out, _) = chain.block(vec![tx]);
    let r = out.receipts.remove(0);
    chain.resync_nonce(&alice);
    let expected = (
        PolicyRule::JurisdictionDenied,
        PolicyScope::Contract,
        U256::ZERO,
        code_number("KP"),
        ruled,
    );
    assert_eq!(r.status, TxStatus::Revert);
    assert_eq!(denied_as(&r), Some(expected));
    assert_eq!(sim.status, TxStatus::Revert);
    assert_eq!(denied_as(&sim), Some(expected));
    let intrinsic =
        keel_runtime::precheck::check_intrinsic_gas(&intrinsic_tx.tx, crate::common::CHAIN_ID)
            .expect("intrinsic gas");
    assert_eq!((r.gas_used, sim.gas_used), (intrinsic, intrinsic), "{r:?}");
    let fee = U256::from(intrinsic) * U256::from(crate::common::GAS_PRICE);
    assert_eq!(chain.balance(&a), before - fee);
    assert!(r.logs.is_empty() && r.output.is_empty());
    // A read-only call (`eth_call`, `keel_call`) runs no policy decision: the EVM checks
    // the top frame itself, and the call reverts with the typed error.
    let called = eth_call(&chain, a, ruled, probe.clone());
    assert_eq!(called.status, TxStatus::Revert, "{called:?}");
    let expected = nested_denial(PolicyRule::JurisdictionDenied, &ruled, &a);
    assert_eq!(&called.output[..expected.len()], expected.as_slice());
    // Bob (US) and Carol (untagged) pass.
    assert_eq!(
        chain.call(&bob, ruled, probe.clone()).status,
        TxStatus::Success
    );
    assert_eq!(
        chain.call(&carol, ruled, probe.clone()).status,
        TxStatus::Success
    );

    // "Only callers tagged US": every frame checks its own caller. Bob passes directly; a
    // router he calls is untagged, so the router's frame into `only_us` is denied and the
    // router reverts with the typed error — in either environment.
    let (only_us, _) = declaring(&mut chain, &owner, Env::Evm, rules_data(&[], &["US"], None));
    // The owner itself is untagged now: its own later calls are refused too.
    let r = chain.call(&owner, only_us, probe.clone());
    assert_eq!(
        denied_as(&r).map(|d| d.0),
        Some(PolicyRule::JurisdictionNotAllowed)
    );
    chain.resync_nonce(&owner);
    assert_eq!(
        chain.call(&bob, only_us, probe.clone()).status,
        TxStatus::Success
    );
    let evm_router = chain.deploy(
        &owner,
        Env::Evm,
        creation(&evm_proxy(&only_us, false)),
        vec![],
    );
    let wasm_router = chain.deploy(&owner, Env::Wasm, wasm_forwarder(&only_us), vec![]);
    for router in [evm_router, wasm_router] {
        let denied = PolicyRule::JurisdictionNotAllowed;
        assert_nested_denial(&mut chain, &bob, (router, only_us), denied, &probe);
    }
    // Tagged US by the attester (contracts can be tagged too), the EVM router passes.
    tag_and_pass(&mut chain, (&attester, &bob), evm_router, "US", &probe);

    // A WASM contract declares rules too (a WASM forwarder to the jurisdiction contract),
    // and an EVM router's frame into it is checked: cross-environment.
    let (wasm_ruled, _) = declaring(
        &mut chain,
        &owner,
        Env::Wasm,
        rules_data(&[], &["CH"], None),
    );
    let to_wasm = chain.deploy(
        &owner,
        Env::Evm,
        creation(&evm_proxy(&wasm_ruled, false)),
        vec![],
    );
    let denied = PolicyRule::JurisdictionNotAllowed;
    assert_nested_denial(&mut chain, &bob, (to_wasm, wasm_ruled), denied, &probe);
    tag_and_pass(&mut chain, (&attester, &bob), to_wasm, "CH", &probe);

    // Clearing the rules lets Alice in again, and the count of ruled addresses drops.
    let r = chain.call(&owner, ruled, rules_data(&[], &[], None));
    assert_eq!(r.status, TxStatus::Success);
    assert_eq!(r.logs[0].data[31], 2, "cleared");
    assert_eq!(chain.call(&alice, ruled, probe).status, TxStatus::Success);
    assert_eq!(chain.storage(&J, RULED_COUNT_SLOT)[31], 2);
    let _ = c;
}

#[test]
fn an_account_caps_what_untagged_callers_send_it_in_every_frame() {
    let (attester, shop, carol, bob) = (key(1), key(2), key(3), key(4));
    let mut chain = chain_with_attester(&[&attester, &shop, &carol, &bob], &attester);
    let (s, c) = (addr(&shop), addr(&carol));
    let r = call_with(
        &mut chain,
        &attester,
        J,
        tag_data(&addr(&bob), "DE", 10_000),
        0,
    );
    assert_eq!(r.status, TxStatus::Success);
    let r = call_with(&mut chain, &shop, J, rules_data(&[], &[], Some(100)), 0);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    // Untagged Carol: 100 passes, 101 is refused with the numbers.
    assert_eq!(
        chain.run(&carol, 21_000, transfer(s, 100)).status,
        TxStatus::Success
    );
    let r = chain.run(&carol, 21_000, transfer(s, 101));
    assert_eq!(
        denied_as(&r),
        Some((
            PolicyRule::JurisdictionUntaggedValue,
            PolicyScope::Contract,
            U256::from(100u64),
            U256::from(101u64),
            s
        ))
    );
    // In one block, the shop tightening its cap and then Carol paying over it: Carol's
    // transfer was admissible when queued, and is charged in the block, not refused (a
    // refusal that depends on order would keep a proposer's filter from settling).
    let tighten = TxBody::Call {
        to: J,
        data: rules_data(&[], &[], Some(50)),
        value: U256::ZERO,
    };
    let txs = vec![
        chain.tx(&shop, 300_000, tighten),
        chain.tx(&carol, 21_000, transfer(s, 60)),
    ];
    let (out, _) = chain.block(txs);
    assert_eq!(out.receipts[0].status, TxStatus::Success);
    let r = &out.receipts[1];
    assert_eq!(r.status, TxStatus::Revert, "{r:?}");
    assert_eq!(r.gas_used, 21_000);
    assert_eq!(
        denied_as(r).map(|d| (d.0, d.2, d.3)),
        Some((
            PolicyRule::JurisdictionUntaggedValue,
            U256::from(50u64),
            U256::from(60u64)
        ))
    );
    let r = call_with(&mut chain, &shop, J, rules_data(&[], &[], Some(100)), 0);
    assert_eq!(r.status, TxStatus::Success);
    // Tagged Bob sends any amount.
    assert_eq!(
        chain.run(&bob, 21_000, transfer(s, 5_000)).status,
        TxStatus::Success
    );
    // Through a router (untagged) in either environment, 150 is denied in the nested frame:
    // the transaction reverts and the value comes back.
    let evm_router = chain.deploy(&carol, Env::Evm, creation(&evm_proxy(&s, false)), vec![]);
    let wasm_router = chain.deploy(&carol, Env::Wasm, wasm_forwarder(&s), vec![]);
    for router in [evm_router, wasm_router] {
        let (shop_before, carol_before) = (chain.balance(&s), chain.balance(&c));
        let r = call_with(&mut chain, &carol, router, vec![], 150);
        assert_eq!(r.status, TxStatus::Revert, "{router}: {r:?}");
        let expected = nested_denial(PolicyRule::JurisdictionUntaggedValue, &s, &router);
        assert_eq!(&r.output[..expected.len()], expected.as_slice());
        let fee = U256::from(r.gas_used) * U256::from(crate::common::GAS_PRICE);
        assert_eq!(chain.balance(&s), shop_before);
        assert_eq!(chain.balance(&c), carol_before - fee);
        assert_eq!(
            call_with(&mut chain, &carol, router, vec![], 90).status,
            TxStatus::Success
        );
    }
}

#[test]
fn a_session_key_never_writes_tags_or_rules_and_reads_its_own_key() {
    let (attester, agent, session) = (key(1), key(2), key(5));
    let mut chain = chain_with_attester(&[&attester, &agent], &attester);
    let me = addr(&agent);
    let reader = chain.deploy(&agent, Env::Evm, creation(&evm_proxy(&J, true)), vec![]);
    let scope = AccountPolicy {
        targets: Some(vec![
            TargetRule {
                to: J,
                selectors: None,
            },
            TargetRule {
                to: reader,
                selectors: None,
            },
        ]),
        ..AccountPolicy::default()
    };
    let add = TxBody::AddSessionKey {
        account: me,
        key: session.public_key(),
        policy: scope,
        expires_at: 1_000,
    };
    let r = run_change(&mut chain, &agent, add);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    chain.resync_nonce(&agent);
    let call = |to: Address, data: Vec<u8>| TxBody::Call {
        to,
        data,
        value: U256::ZERO,
    };
    // The key acting as the account may not set the account's rules.
    let r = session_run(
        &mut chain,
        &session,
        me,
        500_000,
        call(J, rules_data(&["KP"], &[], None)),
    );
    assert_eq!(r.status, TxStatus::Revert, "{r:?}");
    assert_eq!(chain.storage(&J, RULED_COUNT_SLOT), [0; 32]);
    chain.resync_nonce(&agent);
    // The account itself may.
    let r = call_with(&mut chain, &agent, J, rules_data(&["KP"], &[], None), 0);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    // Contracts read the transaction's session key (`txSessionKey`), as WASM's
    // `tx_session_key` does: the key when one signed, zero otherwise.
    let ask = abi::call(TX_SESSION_KEY, &[]);
    let r = session_run(&mut chain, &session, me, 500_000, call(reader, ask.clone()));
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(r.output, session.public_key().0.to_vec());
    chain.resync_nonce(&agent);
    let r = chain.call(&agent, reader, ask);
    assert_eq!(r.output, vec![0u8; 32]);
    let _ = (as_session, nonce);
}

/// A WASM contract that `call`s `target` with its input and the value it received, and
/// returns the output (or reverts with it): a router in the other environment. Its
/// constructor calls `target` with the constructor arguments, if any (no value).
fn wasm_forwarder(target: &Address) -> Vec<u8> {
    let to: String = target.0.iter().map(|b| format!("\\{b:02x}")).collect();
    let wat = format!(
        r#"(module
  (import "keel" "read_input" (func $read_input (param i32)))
  (import "keel" "call_value" (func $call_value (param i32)))
  (import "keel" "call" (func $call (param i32 i32 i32 i32 i64) (result i32)))
  (import "keel" "return_data_size" (func $rds (result i32)))
  (import "keel" "return_data_copy" (func $rdc (param i32 i32 i32)))
  (import "keel" "return_data" (func $ret (param i32 i32)))
  (import "keel" "revert" (func $revert (param i32 i32)))
  (memory (export "memory") 1 1)
  (data (i32.const 0) "{to}")
  (func (export "deploy") (param $len i32) (result i32)
    (if (local.get $len) (then
      (call $read_input (i32.const 64))
      (drop (call $call (i32.const 0) (i32.const 32) (i32.const 64) (local.get $len) (i64.const 0)))))
    (i32.const 0))
  (func (export "call") (param $len i32) (result i32)
    (local $failed i32)
    (call $read_input (i32.const 64))
    (call $call_value (i32.const 32))
    (local.set $failed
      (call $call (i32.const 0) (i32.const 32) (i32.const 64) (local.get $len) (i64.const 0)))
    (call $rdc (i32.const 1024) (i32.const 0) (call $rds))
    (if (local.get $failed) (then (call $revert (i32.const 1024) (call $rds))))
    (call $ret (i32.const 1024) (call $rds))
    (i32.const 0)))"#
    );
    wat::parse_str(wat).expect("wat")
}

/// The Solidity interface names exactly the functions (and the error) the contract answers:
/// a signature drifting on either side would make every call from Solidity revert.
#[test]
fn the_solidity_interface_matches_the_contract() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contracts/evm/interfaces/IKeelJurisdiction.sol"
    );
    let source = std::fs::read_to_string(path).expect("interface");
    let signature = |decl: &str| {
        let (name, rest) = decl.split_once('(').expect("(");
        let params = rest.split_once(')').expect(")").0;
        let types: Vec<&str> = params
            .split(',')
            .filter_map(|p| p.split_whitespace().next())
            .collect();
        format!("{}({})", name.trim(), types.join(","))
    };
    let mut functions: Vec<String> = source.split("function ").skip(1).map(signature).collect();
    functions.sort();
    let mut expected = vec![
        TAG,
        UNTAG,
        SET_RULES,
        SET_PLUGINS,
        PLUGINS_OF,
        TAG_COUNT,
        TAG_AT,
        HAS_TAG,
        RULES_OF,
        TX_SESSION_KEY,
        TX_SESSION_SCOPE,
    ];
    expected.sort();
    assert_eq!(functions, expected);
    let error = source.split("error ").nth(1).map(signature);
    assert_eq!(error.as_deref(), Some(DENIED_ERROR));
}

/// Hostile calls to the contract itself: junk arguments (a short last word panicked the
/// executor before review) revert and are charged in a block of several transactions (so
/// the parallel path runs too); a contract that `DELEGATECALL`s the contract cannot tag as
/// the attester that called it, nor set rules for its caller.
#[test]
fn junk_arguments_and_delegatecalls_change_nothing() {
    let (attester, carol, victim) = (key(1), key(2), key(3));
    let mut chain = chain_with_attester(&[&attester, &carol, &victim], &attester);
    let v = addr(&victim);
    let mut junk_rules = selector(SET_RULES).to_vec();
    junk_rules.extend_from_slice(&[0u8; 65]);
    let mut junk_tag = tag_data(&v, "US", 1_000);
    junk_tag.push(7);
    let short = selector(TAG).to_vec();
    let mut txs = Vec::new();
    for (k, data) in [
        (&carol, junk_rules),
        (&attester, junk_tag),
        (&victim, short),
        (&carol, vec![0xde, 0xad]),
    ] {
        let body = TxBody::Call {
            to: J,
            data,
            value: U256::ZERO,
        };
        txs.push(chain.tx(k, 300_000, body));
    }
    let (out, _) = chain.block(txs);
    for r in &out.receipts {
        assert_eq!(r.status, TxStatus::Revert, "{r:?}");
        assert!(r.gas_used > 21_000);
    }
    chain.resync_nonce(&carol);
    assert_eq!(chain.storage(&J, RULED_COUNT_SLOT), [0; 32]);
    let count = chain.call(&carol, J, abi::call(TAG_COUNT, &[abi::address(&v)]));
    assert_eq!(abi::word(&count.output), U256::ZERO);

    // DELEGATECALL(J, calldata), returning the success flag.
    let mut code = vec![0x36, 0x5f, 0x5f, 0x37, 0x5f, 0x5f, 0x36, 0x5f, 0x73];
    code.extend_from_slice(&J.0);
    code.extend_from_slice(&[0x5a, 0xf4, 0x5f, 0x52, 0x60, 0x20, 0x5f, 0xf3]);
    let delegator = chain.deploy(&carol, Env::Evm, creation(&code), vec![]);
    let r = chain.call(&attester, delegator, tag_data(&v, "KP", 1_000_000));
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(abi::word(&r.output), U256::ZERO, "the delegated tag failed");
    let r = chain.call(&carol, delegator, rules_data(&[], &["AQ"], None));
    assert_eq!(
        abi::word(&r.output),
        U256::ZERO,
        "the delegated setRules failed"
    );
    let count = chain.call(&carol, J, abi::call(TAG_COUNT, &[abi::address(&v)]));
    assert_eq!(abi::word(&count.output), U256::ZERO);
    assert_eq!(chain.storage(&J, RULED_COUNT_SLOT), [0; 32]);
    // A delegated read still answers.
    let r = chain.call(&carol, delegator, abi::call(TAG_COUNT, &[abi::address(&v)]));
    assert_eq!(abi::word(&r.output), U256::ONE, "success flag of a read");
    // A contract whose first action reads the jurisdiction contract pays the same gas in a
    // block as in `eth_call` (found by review: the block skipped the top frame's check and
    // with it the load that warms the contract's account). Rules exist by now, and none.
    for rules_exist in [false, true] {
        if rules_exist {
            let r = call_with(&mut chain, &carol, J, rules_data(&["KP"], &[], None), 0);
            assert_eq!(r.status, TxStatus::Success);
        }
        let reader = chain.deploy(&carol, Env::Evm, creation(&evm_proxy(&J, true)), vec![]);
        let data = abi::call(TAG_COUNT, &[abi::address(&v)]);
        let in_block = chain.call(&victim, reader, data.clone());
        let called = eth_call(&chain, v, reader, data);
        assert_eq!(in_block.status, TxStatus::Success);
        assert_eq!(
            in_block.gas_used, called.gas_used,
            "rules exist: {rules_exist}"
        );
    }
    // The attester calling the contract directly still tags.
    let r = call_with(&mut chain, &attester, J, tag_data(&v, "KP", 1_000_000), 0);
    assert_eq!(r.status, TxStatus::Success);
}

/// A contract attaches a policy plugin to the transactions that call it (issue 20 item 4:
/// "attached to an account or a contract"): the allow-list plugin, whose owner lists the
/// contract, runs before every transaction calling it; unlisted, such a transaction is
/// charged and denied by the plugin; detaching restores plain calls and the counter.
#[test]
fn a_contract_attaches_a_plugin_that_checks_every_transaction_calling_it() {
    let (owner, carol) = (key(1), key(2));
    let mut chain = Chain::new(&[&owner, &carol]);
    let allowlist = chain.deploy(
        &owner,
        Env::Wasm,
        crate::common::artifact("allowlist.wasm"),
        vec![],
    );
    let attach = |plugins: [Address; 4]| abi::call(SET_PLUGINS, &plugins.map(|p| abi::address(&p)));
    let zero = Address::ZERO;
    let (guarded, _) = declaring(
        &mut chain,
        &owner,
        Env::Evm,
        attach([allowlist, zero, zero, zero]),
    );
    assert_eq!(chain.storage(&J, RULED_COUNT_SLOT)[31], 1);
    let of = chain.call(&carol, J, abi::call(PLUGINS_OF, &[abi::address(&guarded)]));
    assert_eq!(&of.output[12..32], &allowlist.0);
    assert_eq!(&of.output[32..], &[0u8; 96]);
    // A plugin listed twice is refused.
    let r = chain.call(&owner, guarded, attach([allowlist, allowlist, zero, zero]));
    assert_eq!(r.status, TxStatus::Revert);

    // Not listed: the plugin denies, and the transaction is charged (as every plugin's is).
    let probe = abi::call(TAG_COUNT, &[abi::address(&addr(&carol))]);
    let tx = chain.tx(
        &carol,
        400_000,
        TxBody::Call {
            to: guarded,
            data: probe.clone(),
            value: U256::ZERO,
        },
    );
    let sim = simulated(&chain, &tx);
    let (out, _) = chain.block(vec![tx]);
    let r = &out.receipts[0];
    assert_eq!(r.status, TxStatus::Revert, "{r:?}");
    let d = denial(r).expect("denied");
    assert_eq!(
        (d.rule, d.scope, d.source),
        (PolicyRule::PluginDenied, PolicyScope::Plugin, allowlist)
    );
    assert_eq!(denial(&sim), Some(d));
    // Listed by its owner: the call runs, the plugin's gas included.
    let list = abi::call(
        "allow(address,uint256)",
        &[abi::address(&guarded), abi::u(1)],
    );
    assert_eq!(
        chain.call(&owner, allowlist, list).status,
        TxStatus::Success
    );
    let plain_gas = {
        let r = chain.call(&carol, J, probe.clone());
        r.gas_used
    };
    let r = chain.run(
        &carol,
        400_000,
        TxBody::Call {
            to: guarded,
            data: probe.clone(),
            value: U256::ZERO,
        },
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert!(
        r.gas_used > plain_gas + 10_000,
        "{} vs {plain_gas}",
        r.gas_used
    );
    // Detached: plain calls, and nothing counted.
    let r = chain.call(&owner, guarded, attach([zero; 4]));
    assert_eq!(r.status, TxStatus::Success);
    assert_eq!(chain.storage(&J, RULED_COUNT_SLOT), [0; 32]);
    let unlist = abi::call(
        "allow(address,uint256)",
        &[abi::address(&guarded), abi::u(0)],
    );
    assert_eq!(
        chain.call(&owner, allowlist, unlist).status,
        TxStatus::Success
    );
    let r = chain.run(
        &carol,
        400_000,
        TxBody::Call {
            to: guarded,
            data: probe,
            value: U256::ZERO,
        },
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
}

/// A contract that forwards arbitrary calls (a multicall, a router) and did not opt in at
/// construction cannot be made to declare rules or plugins for itself by whoever calls it
/// (found by review: an allow-list no caller holds would brick it); an account declares
/// for itself at any time, and an opted-in contract changes its own later.
#[test]
fn only_accounts_and_opted_in_contracts_declare() {
    let (mallory, owner) = (key(1), key(2));
    let mut chain = Chain::new(&[&mallory, &owner]);
    let zero = Address::ZERO;
    let plugins = abi::call(
        SET_PLUGINS,
        &[zero, zero, zero, Address([7; 20])].map(|p| abi::address(&p)),
    );
    for env in [Env::Evm, Env::Wasm] {
        let forwarder = match env {
            Env::Evm => chain.deploy(&owner, env, creation(&evm_proxy(&J, false)), vec![]),
            Env::Wasm => chain.deploy(&owner, env, wasm_forwarder(&J), vec![]),
        };
        for data in [rules_data(&[], &["AQ"], None), plugins.clone()] {
            let r = chain.call(&mallory, forwarder, data);
            assert_eq!(r.status, TxStatus::Revert, "{env:?}: {r:?}");
        }
        let rules = chain.call(
            &mallory,
            J,
            abi::call(RULES_OF, &[abi::address(&forwarder)]),
        );
        assert_eq!(&rules.output[..64], &[0u8; 64]);
        let of = chain.call(
            &mallory,
            J,
            abi::call(PLUGINS_OF, &[abi::address(&forwarder)]),
        );
        assert_eq!(of.output, vec![0u8; 128]);
        // Opted in at construction, the same forwarder changes its own rules later (its
        // runtime forwards anyone's call: guarding that is the contract's business).
        let (opted, _) = declaring(&mut chain, &owner, env, rules_data(&["KP"], &[], None));
        let r = chain.call(&owner, opted, rules_data(&["IR"], &[], None));
        assert_eq!(r.status, TxStatus::Success, "{env:?}: {r:?}");
        let rules = chain.call(&mallory, J, abi::call(RULES_OF, &[abi::address(&opted)]));
        assert_eq!(&rules.output[..2], b"IR");
    }
    assert_eq!(chain.storage(&J, RULED_COUNT_SLOT)[31], 2);
    // An account declares for itself at any time.
    let r = call_with(&mut chain, &owner, J, plugins, 0);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(chain.storage(&J, RULED_COUNT_SLOT)[31], 3);
}

/// WASM's `caller_tags` host call returns the live codes of the frame's caller (issue 20
/// item 6): sorted, each once, expired ones left out; a router in between is the caller.
#[test]
fn wasm_reads_its_callers_tags_with_a_host_call() {
    let (attester, alice) = (key(1), key(2));
    let mut chain = chain_with_attester(&[&attester, &alice], &attester);
    let a = addr(&alice);
    // Three tags and a deploy take four blocks: SG is live for two more calls.
    let soon = chain.height + 7;
    for (code, until) in [("US", 1_000_000), ("CH", 1_000_000), ("SG", soon)] {
        let r = call_with(&mut chain, &attester, J, tag_data(&a, code, until), 0);
        assert_eq!(r.status, TxStatus::Success);
    }
    let wat = r#"(module
  (import "keel" "caller_tags" (func $tags (param i32) (result i32)))
  (import "keel" "return_data" (func $ret (param i32 i32)))
  (memory (export "memory") 1 1)
  (func (export "call") (param i32) (result i32)
    (local $n i32)
    (local.set $n (call $tags (i32.const 0)))
    (call $ret (i32.const 0) (i32.mul (local.get $n) (i32.const 2)))
    (i32.const 0)))"#;
    let reader = chain.deploy(&alice, Env::Wasm, wat::parse_str(wat).expect("wat"), vec![]);
    let r = chain.call(&alice, reader, vec![]);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(r.output, b"CHSGUS".to_vec());
    while chain.height + 1 < soon {
        chain.run(&attester, 21_000, transfer(Address([9; 20]), 1));
    }
    let r = chain.call(&alice, reader, vec![]);
    assert_eq!(r.output, b"CHUS".to_vec(), "SG expired");
    // Through a router, the router is the caller: untagged.
    let router = chain.deploy(
        &alice,
        Env::Evm,
        creation(&evm_proxy(&reader, false)),
        vec![],
    );
    let r = chain.call(&alice, router, vec![]);
    assert_eq!((r.status, r.output), (TxStatus::Success, Vec::new()));
}
