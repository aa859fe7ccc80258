//! Account policies (issue 20): limits an account or its controller set, applied the same way
//! by simulation and execution, with typed, explained denials.
//!
//! The scenarios pin each rule; the property test drives random sequences — both
//! environments, nested and cross-environment router calls, reverts, value transfers,
//! deploys, self-tightening and loosening attempts, controller changes, epoch changes, and an
//! Ethereum-envelope agent — and checks, from balances measured on the chain and an
//! independent model of the rules, that an account never spends more than its caps in an
//! epoch, and that `simulate`'s decision is execution's. CI runs `KEEL_POLICY_CASES`
//! (default 24) from `KEEL_POLICY_SEED`; a campaign:
//! `KEEL_POLICY_CASES=500 KEEL_POLICY_SEED=$RANDOM scripts/test --test runtime policy::`.

use crate::common::{abi, addr, key, Chain, CHAIN_ID};
use crate::differential::{self, Contract, Impl, SUPPLY};
use keel_exec_evm::NoBlockHashes;
use keel_runtime::executor::PluginCheck;
use keel_state::StateViewExt;
use keel_types::policy::{
    policy_changed_topic, AccountPolicy, PolicyDenial, PolicyRule, PolicyScope, PolicySpend,
    TargetRule, POLICY_ADDRESS,
};
use keel_types::{
    Address, Env, Receipt, SecretKey, SignedTransaction, TxBody, TxError, TxStatus, U256,
};
fn set_policy(account: Address, policy: AccountPolicy) -> TxBody {
    TxBody::SetPolicy { account, policy }
}

fn gas_of(body: &TxBody) -> u64 {
    body.policy_gas().expect("a policy change")
}

fn run_change(chain: &mut Chain, k: &SecretKey, body: TxBody) -> Receipt {
    let gas = gas_of(&body);
    chain.run(k, gas, body)
}

fn transfer(to: Address, amount: u64) -> TxBody {
    TxBody::Transfer {
        to,
        amount: U256::from(amount),
    }
}

fn denial(receipt: &Receipt) -> Option<&PolicyDenial> {
    match &receipt.error {
        Some(TxError::PolicyDenied { denial }) => Some(denial),
        _ => None,
    }
}

/// The decision `simulate` gives `tx` as the first transaction of the chain's next block.
fn simulated(chain: &Chain, tx: &SignedTransaction) -> Receipt {
    let block = chain.make_block(vec![tx.clone()]);
    let context = chain.runtime.context(&block.header);
    chain
        .runtime
        .simulate(&chain.store.latest_view(), &NoBlockHashes, &context, tx)
        .expect("simulate")
}

fn word(address: &Address) -> [u8; 32] {
    abi::address(address)
}

#[test]
fn budgets_deny_with_the_numbers_and_reset_next_epoch() {
    let (agent, boss) = (key(1), key(2));
    let mut chain = Chain::new(&[&agent, &boss]);
    let me = addr(&agent);
    // The account names its controller (it has no limits yet), which then sets its policy.
    let named = run_change(
        &mut chain,
        &agent,
        TxBody::SetController {
            account: me,
            controller: Some(addr(&boss)),
        },
    );
    assert_eq!(named.status, TxStatus::Success, "{named:?}");
    let log = &named.logs[0];
    assert_eq!(log.address, POLICY_ADDRESS);
    assert_eq!(
        log.topics,
        vec![policy_changed_topic(), word(&me), word(&me)]
    );
    assert_eq!(log.data[31], 3, "controller named");
    let policy = AccountPolicy {
        max_value_per_epoch: Some(U256::from(100u64)),
        max_txs_per_epoch: Some(4),
        ..AccountPolicy::default()
    };
    let set = run_change(&mut chain, &boss, set_policy(me, policy.clone()));
    assert_eq!(set.status, TxStatus::Success, "{set:?}");
    assert_eq!(set.logs[0].topics[2], word(&addr(&boss)));
    assert_eq!(set.logs[0].data[31], 2, "set by the controller");
    // The agent tightens further; denials still name the controller, whom to ask.
    let tighter = AccountPolicy {
        max_value_per_tx: Some(U256::from(1_000u64)),
        ..policy
    };
    let own = run_change(&mut chain, &agent, set_policy(me, tighter));
    assert_eq!(own.status, TxStatus::Success, "{own:?}");

    let payee = Address([0x99; 20]);
    assert_eq!(
        chain.run(&agent, 21_000, transfer(payee, 60)).status,
        TxStatus::Success
    );
    // 60 + 50 > 100: refused before it runs, with the numbers and who set the limit; the
    // simulation says the same.
    let over = chain.tx(&agent, 21_000, transfer(payee, 50));
    let simulated = simulated(&chain, &over);
    let (out, _) = chain.block(vec![over]);
    let receipt = &out.receipts[0];
    assert_eq!(receipt.status, TxStatus::Rejected);
    let expected = PolicyDenial {
        rule: PolicyRule::ValuePerEpoch,
        scope: PolicyScope::Account,
        limit: U256::from(100u64),
        used: U256::from(110u64),
        resets_at_epoch: Some(1),
        source: addr(&boss),
    };
    assert_eq!(denial(receipt), Some(&expected));
    assert_eq!(denial(&simulated), Some(&expected));
    chain.resync_nonce(&agent);
    assert_eq!(chain.balance(&payee), U256::from(60u64));
    assert_eq!(
        chain.run(&agent, 21_000, transfer(payee, 40)).status,
        TxStatus::Success
    );
    // The fourth transaction of the epoch (the tightening was the first) would fit the
    // count but not the value.
    let third = chain.run(&agent, 21_000, transfer(payee, 1));
    assert_eq!(
        denial(&third).map(|d| d.rule),
        Some(PolicyRule::ValuePerEpoch)
    );
    // The budget is per epoch: the next one starts from zero (nothing swept it).
    chain.epoch += 1;
    assert_eq!(
        chain.run(&agent, 21_000, transfer(payee, 100)).status,
        TxStatus::Success
    );
    let spend =
        keel_runtime::policy::read_spend(&chain.store.latest_view(), &me, 1).expect("spend");
    assert_eq!(
        spend,
        PolicySpend {
            epoch: 1,
            value: U256::from(100u64),
            fees: U256::from(21_000u64),
            txs: 1
        }
    );
    // The fee budget and the transaction count bound too.
    let policy = AccountPolicy {
        max_fee_per_epoch: Some(U256::from(40_000u64)),
        max_txs_per_epoch: Some(2),
        ..AccountPolicy::default()
    };
    assert_eq!(
        run_change(&mut chain, &boss, set_policy(me, policy)).status,
        TxStatus::Success
    );
    let fees = chain.run(&agent, 21_000, transfer(payee, 1));
    let denied = denial(&fees).expect("fee budget");
    assert_eq!(
        (denied.rule, denied.used, denied.limit),
        (
            PolicyRule::FeePerEpoch,
            U256::from(42_000u64),
            U256::from(40_000u64)
        )
    );
}

#[test]
fn the_account_only_tightens_and_only_its_controller_loosens() {
    let (agent, boss, stranger, other) = (key(1), key(2), key(3), key(4));
    let mut chain = Chain::new(&[&agent, &boss, &stranger, &other]);
    let me = addr(&agent);
    let cap = |v: u64| AccountPolicy {
        max_value_per_tx: Some(U256::from(v)),
        ..AccountPolicy::default()
    };
    let tightened = run_change(&mut chain, &agent, set_policy(me, cap(10)));
    assert_eq!(tightened.status, TxStatus::Success);
    assert_eq!(tightened.logs[0].data[31], 1, "tightened by the account");
    // Loosening, or naming a controller while limited, is refused and charged (a refused
    // change is never free).
    let nonce_before = nonce(&chain, &me);
    for body in [
        set_policy(me, cap(20)),
        set_policy(me, AccountPolicy::default()),
        TxBody::SetController {
            account: me,
            controller: Some(addr(&boss)),
        },
    ] {
        let r = run_change(&mut chain, &agent, body);
        assert_eq!(r.status, TxStatus::Revert, "{r:?}");
        assert!(r.gas_used > 0);
        assert_eq!(denial(&r).map(|d| d.rule), Some(PolicyRule::Loosening));
    }
    assert_eq!(nonce(&chain, &me), nonce_before + 3, "nonces used");
    let r = run_change(&mut chain, &stranger, set_policy(me, cap(1_000)));
    assert_eq!(denial(&r).map(|d| d.rule), Some(PolicyRule::NotController));
    assert_eq!(r.status, TxStatus::Revert);
    let r = chain.run(&agent, 21_000, transfer(Address([5; 20]), 11));
    assert_eq!(denial(&r).map(|d| d.rule), Some(PolicyRule::ValuePerTx));
    // Freezing oneself is a tightening, and final without a controller: nothing is sent,
    // not even a policy change.
    let frozen = AccountPolicy {
        frozen: true,
        ..cap(10)
    };
    assert_eq!(
        run_change(&mut chain, &agent, set_policy(me, frozen)).status,
        TxStatus::Success
    );
    let r = chain.run(&agent, 21_000, transfer(Address([5; 20]), 1));
    assert_eq!(denial(&r).map(|d| d.rule), Some(PolicyRule::Frozen));
    let r = run_change(&mut chain, &agent, set_policy(me, cap(1)));
    assert_eq!(denial(&r).map(|d| d.rule), Some(PolicyRule::Frozen));
    assert_eq!(r.status, TxStatus::Rejected);

    // With a controller: it freezes, unfreezes, hands over and releases.
    let you = addr(&other);
    let name = |controller: &SecretKey| TxBody::SetController {
        account: you,
        controller: Some(addr(controller)),
    };
    assert_eq!(
        run_change(&mut chain, &other, name(&boss)).status,
        TxStatus::Success
    );
    let freeze = AccountPolicy {
        frozen: true,
        ..AccountPolicy::default()
    };
    assert_eq!(
        run_change(&mut chain, &boss, set_policy(you, freeze)).status,
        TxStatus::Success
    );
    let r = chain.run(&other, 21_000, transfer(Address([5; 20]), 1));
    assert_eq!(denial(&r).map(|d| d.rule), Some(PolicyRule::Frozen));
    assert_eq!(
        run_change(&mut chain, &boss, set_policy(you, AccountPolicy::default())).status,
        TxStatus::Success
    );
    assert_eq!(
        chain
            .run(&other, 21_000, transfer(Address([5; 20]), 1))
            .status,
        TxStatus::Success
    );
    // Only the controller names another; the new one then rules.
    let r = run_change(&mut chain, &other, name(&stranger));
    assert_eq!(denial(&r).map(|d| d.rule), Some(PolicyRule::Loosening));
    let handed = run_change(&mut chain, &boss, name(&stranger));
    assert_eq!(handed.logs[0].data[31], 4, "controller changed");
    let spent = |chain: &Chain| {
        let view = chain.store.latest_view();
        view.account(&you)
            .expect("read")
            .and_then(|r| r.policy_spend)
    };
    assert!(spent(&chain).is_some(), "it sent under a policy");
    let r = run_change(&mut chain, &boss, set_policy(you, cap(1)));
    assert_eq!(denial(&r).map(|d| d.rule), Some(PolicyRule::NotController));
    let released = run_change(
        &mut chain,
        &stranger,
        TxBody::SetController {
            account: you,
            controller: None,
        },
    );
    assert_eq!(released.logs[0].data[31], 5, "released");
    // Nothing limits it and nobody controls it: no record is left.
    let view = chain.store.latest_view();
    assert_eq!(
        keel_runtime::policy::read_record(&view, &you).expect("read"),
        None
    );
    assert_eq!(spent(&chain), None, "forgotten with the policy");
}

fn nonce(chain: &Chain, a: &Address) -> u64 {
    chain
        .store
        .latest_view()
        .account(a)
        .expect("read")
        .map_or(0, |r| r.nonce)
}

#[test]
fn targets_selectors_environments_windows_and_deploys() {
    let (agent, deployer) = (key(1), key(2));
    let mut chain = Chain::new(&[&agent, &deployer]);
    let me = addr(&agent);
    let supply = abi::u(SUPPLY).to_vec();
    let evm_token = chain.deploy(
        &agent,
        Env::Evm,
        differential::code(Contract::Token, Impl::Sol),
        supply.clone(),
    );
    let wasm_token = chain.deploy(
        &agent,
        Env::Wasm,
        differential::code(Contract::Token, Impl::C),
        supply,
    );
    let pay = abi::call(
        "transfer(address,uint256)",
        &[abi::address(&Address([7; 20])), abi::u(1)],
    );
    let approve = abi::call(
        "approve(address,uint256)",
        &[abi::address(&Address([7; 20])), abi::u(1)],
    );
    let policy = AccountPolicy {
        envs: Some(vec![Env::Evm]),
        targets: Some(vec![TargetRule {
            to: evm_token,
            selectors: Some(vec![abi::selector("transfer(address,uint256)")]),
        }]),
        ..AccountPolicy::default()
    };
    assert_eq!(
        run_change(&mut chain, &agent, set_policy(me, policy)).status,
        TxStatus::Success
    );
    let rule = |r: &Receipt| denial(r).map(|d| d.rule);
    assert_eq!(
        chain.call(&agent, evm_token, pay.clone()).status,
        TxStatus::Success
    );
    let r = chain.call(&agent, evm_token, approve.clone());
    assert_eq!(rule(&r), Some(PolicyRule::Selector));
    let r = chain.call(&agent, evm_token, Vec::new());
    assert_eq!(rule(&r), Some(PolicyRule::Selector), "no selector at all");
    let r = chain.call(&agent, wasm_token, pay.clone());
    assert_eq!(rule(&r), Some(PolicyRule::Target));
    let r = chain.run(&agent, 21_000, transfer(Address([8; 20]), 1));
    assert_eq!(rule(&r), Some(PolicyRule::Target));
    let deploy = |env| TxBody::Deploy {
        env,
        code: differential::code(Contract::Registry, Impl::Sol),
        args: Vec::new(),
        value: U256::ZERO,
    };
    let r = chain.run(&agent, 10_000_000, deploy(Env::Evm));
    assert_eq!(rule(&r), Some(PolicyRule::Deploy));

    // Environments alone: WASM contracts only (a plain transfer has none and passes).
    let mut boss_chain = Chain::new(&[&agent, &deployer]);
    let wasm_token = boss_chain.deploy(
        &deployer,
        Env::Wasm,
        differential::code(Contract::Token, Impl::C),
        abi::u(SUPPLY).to_vec(),
    );
    let evm_token = boss_chain.deploy(
        &deployer,
        Env::Evm,
        differential::code(Contract::Token, Impl::Sol),
        abi::u(SUPPLY).to_vec(),
    );
    let height = boss_chain.height;
    let wasm_only = AccountPolicy {
        envs: Some(vec![Env::Wasm]),
        valid_until: Some(height + 6),
        ..AccountPolicy::default()
    };
    assert_eq!(
        run_change(&mut boss_chain, &agent, set_policy(me, wasm_only)).status,
        TxStatus::Success
    );
    let r = boss_chain.call(&agent, evm_token, pay.clone());
    assert_eq!(rule(&r), Some(PolicyRule::Environment));
    // Allowed, and reverted by the token (the agent holds none): charged, not denied.
    let r = boss_chain.call(&agent, wasm_token, pay.clone());
    assert_eq!((r.status, rule(&r)), (TxStatus::Revert, None), "{r:?}");
    let r = boss_chain.run(&agent, 21_000, transfer(Address([8; 20]), 1));
    assert_eq!(r.status, TxStatus::Success);
    let r = boss_chain.run(&agent, 10_000_000, deploy(Env::Evm));
    assert_eq!(rule(&r), Some(PolicyRule::Environment));
    // The window ends: nothing more.
    while boss_chain.height < height + 6 {
        boss_chain.block(Vec::new());
    }
    let r = boss_chain.run(&agent, 21_000, transfer(Address([8; 20]), 1));
    assert_eq!(rule(&r), Some(PolicyRule::ValidUntil));
    let later = AccountPolicy {
        valid_from: Some(height + 100),
        ..AccountPolicy::default()
    };
    let r = run_change(&mut boss_chain, &agent, set_policy(me, later));
    assert_eq!(
        rule(&r),
        Some(PolicyRule::ValidUntil),
        "checked before the change"
    );
}

/// An Ethereum account manages its policy with a call to the policy address (its envelope
/// carries only calls): the same change, gas and denials as the native body.
#[test]
fn an_ethereum_account_sets_its_policy_with_a_call() {
    let funder = key(1);
    let mut chain = Chain::new(&[&funder]);
    let mut eth = EthAgent::new(7);
    chain.run(&funder, 21_000, transfer(eth.address, 10_000_000_000));
    let policy = AccountPolicy {
        max_value_per_tx: Some(U256::from(5u64)),
        ..AccountPolicy::default()
    };
    let body = set_policy(eth.address, policy);
    let data = body.policy_call_data();
    let gas = gas_of(&body);
    let tx = eth.tx(gas, Some(POLICY_ADDRESS), 0, data.clone());
    let (out, _) = chain.block(vec![tx]);
    assert_eq!(
        out.receipts[0].status,
        TxStatus::Success,
        "{:?}",
        out.receipts
    );
    assert_eq!(out.receipts[0].gas_used, gas);
    let record = keel_runtime::policy::read_record(&chain.store.latest_view(), &eth.address)
        .expect("read")
        .expect("a record");
    assert_eq!(record.source, eth.address);
    let tx = eth.tx(21_000, Some(Address([3; 20])), 6, Vec::new());
    let (out, _) = chain.block(vec![tx]);
    assert_eq!(
        denial(&out.receipts[0]).map(|d| d.rule),
        Some(PolicyRule::ValuePerTx)
    );
    eth.nonce -= 1;
    // The policy address takes nothing else: value, junk data, plain transfers are refused
    // (they would be lost to an account nobody holds).
    let refused = TxError::Execution {
        code: keel_types::receipt::ExecError::InvalidTransaction,
    };
    for (value, data) in [
        (1, body.policy_call_data()),
        (0, vec![1, 2, 3]),
        (0, Vec::new()),
    ] {
        let tx = eth.tx(100_000, Some(POLICY_ADDRESS), value, data);
        let (out, _) = chain.block(vec![tx]);
        assert_eq!(out.receipts[0].error.as_ref(), Some(&refused));
        assert_eq!(out.receipts[0].status, TxStatus::Rejected);
        eth.nonce -= 1;
    }
    let r = chain.run(&funder, 21_000, transfer(POLICY_ADDRESS, 5));
    assert_eq!(r.error, Some(refused));
    // Too little gas for the change: refused as intrinsic gas, as every transaction.
    let tx = eth.tx(gas - 1, Some(POLICY_ADDRESS), 0, data);
    let (out, _) = chain.block(vec![tx]);
    assert!(matches!(
        out.receipts[0].error,
        Some(TxError::IntrinsicGasTooLow { .. })
    ));
}

/// A secp256k1 account sending EIP-1559 envelopes (gas price 1 on a chain whose base fee is
/// its minimum gas price, 0).
struct EthAgent {
    key: k256::ecdsa::SigningKey,
    address: Address,
    nonce: u64,
}

impl EthAgent {
    fn new(seed: u8) -> EthAgent {
        let key = k256::ecdsa::SigningKey::from_slice(&[seed.max(1); 32]).expect("key");
        let mut agent = EthAgent {
            key,
            address: Address::ZERO,
            nonce: 0,
        };
        agent.address = agent.tx(21_000, None, 0, Vec::new()).tx.sender_address();
        agent.nonce = 0;
        agent
    }

    fn tx(
        &mut self,
        gas: u64,
        to: Option<Address>,
        value: u64,
        data: Vec<u8>,
    ) -> SignedTransaction {
        use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
        use alloy_eips::eip2718::Encodable2718;
        use alloy_primitives::{Bytes, TxKind};
        let tx = TxEip1559 {
            chain_id: CHAIN_ID,
            nonce: self.nonce,
            gas_limit: gas,
            max_fee_per_gas: 1,
            max_priority_fee_per_gas: 1,
            to: to.map_or(TxKind::Create, |a| {
                TxKind::Call(alloy_primitives::Address::from(a.0))
            }),
            value: alloy_primitives::U256::from(value),
            access_list: Default::default(),
            input: Bytes::from(data),
        };
        let (signature, recovery) = self
            .key
            .sign_prehash_recoverable(tx.signature_hash().as_slice())
            .expect("sign");
        let signed = tx.into_signed(alloy_primitives::Signature::from((signature, recovery)));
        let raw = TxEnvelope::from(signed).encoded_2718();
        self.nonce += 1;
        keel_types::eth::decode(&raw, CHAIN_ID, 0).expect("decodes")
    }
}

#[path = "policy_property.rs"]
mod property;

/// A transaction signed by `session` acting as `account` (the account's next nonce, which
/// the caller tracks through `chain.resync_nonce` of the account's own key).
fn as_session(
    chain: &Chain,
    session: &SecretKey,
    account: Address,
    gas_limit: u64,
    body: TxBody,
) -> SignedTransaction {
    let nonce = nonce(chain, &account);
    keel_types::Transaction {
        chain_id: CHAIN_ID,
        sender: keel_types::Sender::Session {
            account,
            key: session.public_key(),
        },
        nonce,
        gas_limit,
        gas_price: chain.gas_price,
        body,
    }
    .sign(session)
}

fn session_run(
    chain: &mut Chain,
    session: &SecretKey,
    account: Address,
    gas_limit: u64,
    body: TxBody,
) -> Receipt {
    let tx = as_session(chain, session, account, gas_limit, body);
    let (mut out, _) = chain.block(vec![tx]);
    out.receipts.remove(0)
}

#[test]
fn session_keys_act_as_the_account_within_their_scope_until_revoked_or_expired() {
    let (agent, session, stranger, boss) = (key(1), key(5), key(6), key(7));
    let mut chain = Chain::new(&[&agent, &stranger, &boss]);
    let me = addr(&agent);
    let router = Address([0x77; 20]);
    let scope = AccountPolicy {
        targets: Some(vec![TargetRule {
            to: router,
            selectors: None,
        }]),
        max_value_per_epoch: Some(U256::from(100u64)),
        ..AccountPolicy::default()
    };
    let add = |key: &SecretKey, policy: AccountPolicy, expires_at: u64| TxBody::AddSessionKey {
        account: me,
        key: key.public_key(),
        policy,
        expires_at,
    };
    let added = run_change(&mut chain, &agent, add(&session, scope.clone(), 1_000));
    assert_eq!(added.status, TxStatus::Success, "{added:?}");
    assert_eq!(added.logs[0].data[31], 6, "session key added");
    let rule = |r: &Receipt| denial(r).map(|d| (d.rule, d.scope));
    let pay = |to: Address, amount: u64| transfer(to, amount);

    // It acts as the account: the account pays and its nonce moves.
    let (balance, before) = (chain.balance(&me), nonce(&chain, &me));
    let r = session_run(&mut chain, &session, me, 21_000, pay(router, 60));
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(chain.balance(&me), balance - U256::from(60u64 + 21_000));
    assert_eq!(nonce(&chain, &me), before + 1);
    // Outside its scope: budget, target, policy changes.
    let tx = as_session(&chain, &session, me, 21_000, pay(router, 50));
    let simulated = simulated(&chain, &tx);
    let (mut out, _) = chain.block(vec![tx]);
    let r = out.receipts.remove(0);
    let d = denial(&r).expect("denied").clone();
    assert_eq!(denial(&simulated), Some(&d));
    assert_eq!(
        (d.rule, d.scope, d.used, d.source),
        (
            PolicyRule::ValuePerEpoch,
            PolicyScope::SessionKey,
            U256::from(110u64),
            me
        )
    );
    let r = session_run(&mut chain, &session, me, 21_000, pay(Address([1; 20]), 1));
    assert_eq!(
        rule(&r),
        Some((PolicyRule::Target, PolicyScope::SessionKey))
    );
    let tighten = set_policy(me, AccountPolicy::default());
    let gas = gas_of(&tighten);
    let r = session_run(&mut chain, &session, me, gas, tighten);
    assert_eq!(
        rule(&r),
        Some((PolicyRule::SessionKeyScope, PolicyScope::SessionKey))
    );
    let escalate = add(&stranger, AccountPolicy::default(), 1_000);
    let gas = gas_of(&escalate);
    let r = session_run(&mut chain, &session, me, gas, escalate);
    assert_eq!(
        rule(&r),
        Some((PolicyRule::SessionKeyScope, PolicyScope::SessionKey))
    );
    // A key the account never added.
    let r = session_run(&mut chain, &stranger, me, 21_000, pay(router, 1));
    assert_eq!(
        rule(&r),
        Some((PolicyRule::SessionKeyUnknown, PolicyScope::SessionKey))
    );
    assert_eq!(r.status, TxStatus::Rejected);
    // The account's own key is not bound by the session's scope; the account's policy binds
    // both.
    chain.resync_nonce(&agent);
    assert_eq!(
        chain.run(&agent, 21_000, pay(Address([1; 20]), 500)).status,
        TxStatus::Success
    );
    let own = AccountPolicy {
        max_value_per_tx: Some(U256::from(10u64)),
        ..AccountPolicy::default()
    };
    assert_eq!(
        run_change(&mut chain, &agent, set_policy(me, own)).status,
        TxStatus::Success
    );
    let r = session_run(&mut chain, &session, me, 21_000, pay(router, 20));
    assert_eq!(
        rule(&r),
        Some((PolicyRule::ValuePerTx, PolicyScope::Account))
    );
    // Strangers cannot add keys; the controller-less account can revoke its own.
    let r = run_change(
        &mut chain,
        &stranger,
        add(&stranger, AccountPolicy::default(), 9),
    );
    assert_eq!(
        rule(&r),
        Some((PolicyRule::NotController, PolicyScope::Account))
    );
    chain.resync_nonce(&agent);
    let revoke = TxBody::RevokeSessionKey {
        account: me,
        key: session.public_key(),
    };
    let revoked = run_change(&mut chain, &agent, revoke.clone());
    assert_eq!(revoked.logs[0].data[31], 7, "session key revoked");
    let r = session_run(&mut chain, &session, me, 21_000, pay(router, 1));
    assert_eq!(
        rule(&r),
        Some((PolicyRule::SessionKeyUnknown, PolicyScope::SessionKey))
    );
    let view = chain.store.latest_view();
    let spend = keel_state::StateView::get(
        &view,
        &keel_types::StateKey::SessionSpend(me, session.public_key()),
    );
    assert_eq!(spend.expect("read"), None, "deleted with the key");
    let r = run_change(&mut chain, &agent, revoke);
    assert_eq!(
        rule(&r),
        Some((PolicyRule::SessionKeyUnknown, PolicyScope::Account))
    );
    assert_eq!(r.status, TxStatus::Revert, "a refused change is charged");

    // Expiry: the last height it may sign at.
    let until = chain.height + 3;
    run_change(&mut chain, &agent, add(&session, scope.clone(), until));
    let r = session_run(&mut chain, &session, me, 21_000, pay(router, 1));
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    while chain.height < until {
        chain.block(Vec::new());
    }
    let r = session_run(&mut chain, &session, me, 21_000, pay(router, 1));
    let d = denial(&r).expect("expired");
    assert_eq!(
        (d.rule, d.limit, d.used),
        (
            PolicyRule::SessionKeyExpired,
            U256::from(until),
            U256::from(until + 1)
        )
    );
    // At most MAX_SESSION_KEYS keys.
    chain.resync_nonce(&agent);
    // (It holds one: `session`.)
    for i in 1..keel_types::policy::MAX_SESSION_KEYS as u8 {
        let r = run_change(&mut chain, &agent, add(&key(100 + i), scope.clone(), 1_000));
        assert_eq!(r.status, TxStatus::Success, "{i}: {r:?}");
    }
    let r = run_change(&mut chain, &agent, add(&key(200), scope, 1_000));
    assert_eq!(
        rule(&r),
        Some((PolicyRule::TooManySessionKeys, PolicyScope::Account))
    );
}

/// The environment rule reads the target's account. When that account has expired, the
/// read must not count against the transaction: the transaction is refused or charged
/// exactly as it would be without a policy. (Found by review: the leftover read turned revm's
/// refusal of a transaction its sender cannot pay for into a charge.)
#[test]
fn an_expired_target_read_by_the_environment_rule_changes_nothing() {
    let (agent, control, deployer) = (key(1), key(2), key(3));
    let mut chain = Chain::new(&[&agent, &control, &deployer]);
    let token = chain.deploy(
        &deployer,
        Env::Evm,
        differential::code(Contract::Token, Impl::Sol),
        abi::u(SUPPLY).to_vec(),
    );
    let me = addr(&agent);
    let evm_only = AccountPolicy {
        envs: Some(vec![Env::Evm]),
        ..AccountPolicy::default()
    };
    run_change(&mut chain, &agent, set_policy(me, evm_only));
    chain.set_expiry_epochs(1);
    // The token is never touched again; both senders stay live.
    for _ in 0..4 {
        chain.epoch += 1;
        chain.run(&agent, 21_000, transfer(Address([3; 20]), 1));
        chain.run(&control, 21_000, transfer(Address([3; 20]), 1));
    }
    let expired = chain.store.latest_view().account(&token);
    assert!(
        matches!(expired, Err(keel_state::StateError::Expired { .. })),
        "{expired:?}"
    );
    let call_beyond = |chain: &Chain, who: &SecretKey| TxBody::Call {
        to: token,
        data: Vec::new(),
        value: chain.balance(&addr(who)),
    };
    let body = call_beyond(&chain, &control);
    let without = chain.run(&control, 100_000, body);
    let body = call_beyond(&chain, &agent);
    let with = chain.run(&agent, 100_000, body);
    assert_eq!(
        (with.status, std::mem::discriminant(&with.error)),
        (without.status, std::mem::discriminant(&without.error)),
        "with a policy: {with:?}\nwithout: {without:?}"
    );
}

fn plugin_wat(body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
             (import "keel" "storage_store" (func $store (param i32 i32)))
             (import "keel" "return_data" (func $ret (param i32 i32)))
             (memory (export "memory") 1 1)
             (data (i32.const 64) "\01")
             (func (export "call") (param i32) (result i32) {body}))"#
    ))
    .expect("wat")
}

/// Plugins (issue 20, item 4): the allow-list and stop-loss examples in C, and hostile ones
/// (one that writes, one that traps, one that loops, an address without code). Every check
/// runs read-only within `PLUGIN_GAS`, before the transaction, and its gas is the sender's.
#[test]
fn plugins_check_read_only_within_their_gas_and_the_sender_pays_for_them() {
    let (agent, boss, bob) = (key(1), key(2), key(3));
    let mut chain = Chain::new(&[&agent, &boss, &bob]);
    let me = addr(&agent);
    let allowlist = chain.deploy(
        &boss,
        Env::Wasm,
        crate::common::artifact("allowlist.wasm"),
        Vec::new(),
    );
    let router = Address([0x77; 20]);
    let listed = chain.call(
        &boss,
        allowlist,
        abi::call(
            "allow(address,uint256)",
            &[abi::address(&router), abi::u(1)],
        ),
    );
    assert_eq!(listed.status, TxStatus::Success, "{listed:?}");
    let stranger_listing = chain.call(
        &bob,
        allowlist,
        abi::call(
            "allow(address,uint256)",
            &[abi::address(&addr(&bob)), abi::u(1)],
        ),
    );
    assert_eq!(stranger_listing.status, TxStatus::Revert, "owner only");
    let named = run_change(
        &mut chain,
        &agent,
        TxBody::SetController {
            account: me,
            controller: Some(addr(&boss)),
        },
    );
    assert_eq!(named.status, TxStatus::Success);
    let attach = |plugins: Vec<Address>| {
        set_policy(
            me,
            AccountPolicy {
                plugins,
                ..AccountPolicy::default()
            },
        )
    };
    assert_eq!(
        run_change(&mut chain, &boss, attach(vec![allowlist])).status,
        TxStatus::Success
    );
    // Listed: runs, and pays the plugin's gas on top of its own.
    let before = chain.balance(&me);
    let r = chain.run(&agent, 300_000, transfer(router, 5));
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert!(
        r.gas_used > 21_000,
        "the plugin's gas is in the receipt: {r:?}"
    );
    let paid = before - chain.balance(&me);
    assert_eq!(paid, U256::from(5 + r.gas_used), "value and every gas unit");
    // Not listed: denied by the plugin, with its code and address. Plugin work is never
    // free: the denial is charged the plugin's gas, with the nonce used.
    let (before, nonce_before) = (chain.balance(&me), nonce(&chain, &me));
    let tx = chain.tx(&agent, 300_000, transfer(Address([8; 20]), 5));
    let simulated = simulated(&chain, &tx);
    let (out, _) = chain.block(vec![tx]);
    let r = &out.receipts[0];
    let d = denial(r).expect("denied").clone();
    assert_eq!(denial(&simulated), Some(&d));
    assert_eq!(
        (d.rule, d.scope, d.used, d.source),
        (
            PolicyRule::PluginDenied,
            PolicyScope::Plugin,
            U256::from(1u64),
            allowlist
        )
    );
    assert_eq!(r.status, TxStatus::Revert);
    assert!(
        r.gas_used > 0 && r.gas_used <= keel_types::policy::PLUGIN_GAS,
        "{r:?}"
    );
    assert_eq!(chain.balance(&me), before - U256::from(r.gas_used));
    assert_eq!(nonce(&chain, &me), nonce_before + 1);
    // No gas left for the plugin after the transfer's own: it fails, charged nothing but
    // its nonce (a sender cannot make a plugin work for free by starving it).
    let before = chain.balance(&me);
    let r = chain.run(&agent, 21_000, transfer(router, 5));
    let d = denial(&r).expect("denied");
    assert_eq!(
        (r.status, d.rule, r.gas_used),
        (TxStatus::Revert, PolicyRule::PluginFailed, 0)
    );
    assert_eq!(chain.balance(&me), before);
    // A sender that cannot pay for the whole transaction is refused before any plugin runs.
    let r = chain.run(&agent, 300_000, transfer(router, u64::MAX));
    assert_eq!(r.status, TxStatus::Rejected, "{r:?}");
    assert!(matches!(r.error, Some(TxError::InsufficientBalance { .. })));

    // Hostile plugins: a write is discarded; a trap, a loop past its gas and an address
    // without code deny with `plugin_failed`.
    let writer = chain.deploy(&bob, Env::Wasm, plugin_wat("(call $store (i32.const 0) (i32.const 64)) (call $ret (i32.const 128) (i32.const 32)) (i32.const 0)"), Vec::new());
    let trap = chain.deploy(&bob, Env::Wasm, plugin_wat("unreachable"), Vec::new());
    let spin = chain.deploy(
        &bob,
        Env::Wasm,
        plugin_wat("(loop $l (br $l)) (i32.const 0)"),
        Vec::new(),
    );
    assert_eq!(
        run_change(&mut chain, &boss, attach(vec![writer])).status,
        TxStatus::Success
    );
    let r = chain.run(&agent, 300_000, transfer(Address([8; 20]), 1));
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(
        chain.storage(&writer, [0; 32]),
        [0; 32],
        "a plugin writes nothing"
    );
    for plugin in [trap, spin, Address([0x55; 20])] {
        assert_eq!(
            run_change(&mut chain, &boss, attach(vec![plugin])).status,
            TxStatus::Success
        );
        let r = chain.run(&agent, 300_000, transfer(router, 1));
        let d = denial(&r).expect("denied");
        assert_eq!(
            (d.rule, d.source),
            (PolicyRule::PluginFailed, plugin),
            "{r:?}"
        );
    }

    // The stop-loss: a WASM plugin reading an EVM token's balance across environments.
    run_change(&mut chain, &boss, attach(Vec::new()));
    let token = chain.deploy(
        &agent,
        Env::Evm,
        differential::code(Contract::Token, Impl::Sol),
        abi::u(1_000).to_vec(),
    );
    chain.resync_nonce(&agent);
    let args = [abi::address(&token), abi::u(600)].concat();
    let stoploss = chain.deploy(
        &boss,
        Env::Wasm,
        crate::common::artifact("stoploss.wasm"),
        args,
    );
    assert_eq!(
        run_change(&mut chain, &boss, attach(vec![stoploss])).status,
        TxStatus::Success
    );
    let pay_token = |amount: u64| TxBody::Call {
        to: token,
        data: abi::call(
            "transfer(address,uint256)",
            &[abi::address(&addr(&bob)), abi::u(amount)],
        ),
        value: U256::ZERO,
    };
    for amount in [300, 200] {
        let r = chain.run(&agent, 500_000, pay_token(amount));
        assert_eq!(r.status, TxStatus::Success, "{amount}: {r:?}");
    }
    // 500 left, under the floor of 600: the next action is stopped.
    let r = chain.run(&agent, 500_000, pay_token(1));
    let d = denial(&r).expect("stopped");
    assert_eq!(
        (d.rule, d.used, d.source),
        (PolicyRule::PluginDenied, U256::from(1u64), stoploss)
    );
    // The owner lowers the floor: it goes on.
    let lowered = chain.call(
        &boss,
        stoploss,
        abi::call("setFloor(uint256)", &[abi::u(100)]),
    );
    assert_eq!(lowered.status, TxStatus::Success, "{lowered:?}");
    let r = chain.run(&agent, 500_000, pay_token(1));
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
}

/// A session key a controller added lives only as long as that control: once the controller
/// is released (or replaced), its keys act for nobody (found by review).
#[test]
fn a_released_controllers_session_keys_die_with_its_control() {
    let (agent, boss, session) = (key(1), key(2), key(5));
    let mut chain = Chain::new(&[&agent, &boss]);
    let me = addr(&agent);
    let named = TxBody::SetController {
        account: me,
        controller: Some(addr(&boss)),
    };
    assert_eq!(
        run_change(&mut chain, &agent, named).status,
        TxStatus::Success
    );
    let add = TxBody::AddSessionKey {
        account: me,
        key: session.public_key(),
        policy: AccountPolicy::default(),
        expires_at: u64::MAX,
    };
    assert_eq!(run_change(&mut chain, &boss, add).status, TxStatus::Success);
    let r = session_run(
        &mut chain,
        &session,
        me,
        21_000,
        transfer(Address([4; 20]), 1),
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    let release = TxBody::SetController {
        account: me,
        controller: None,
    };
    assert_eq!(
        run_change(&mut chain, &boss, release).status,
        TxStatus::Success
    );
    let r = session_run(
        &mut chain,
        &session,
        me,
        21_000,
        transfer(Address([4; 20]), 1),
    );
    assert_eq!(
        denial(&r).map(|d| d.rule),
        Some(PolicyRule::SessionKeyUnknown),
        "{r:?}"
    );
}

/// The plugin gas is the genesis' `plugin_gas` (the runtime's `plugin_gas`): a check that
/// needs more fails.
/// `boss` deploys the allow-list plugin listing `listed`, and `agent` attaches it to itself.
fn allowlisted_agent(
    chain: &mut Chain,
    (agent, boss): (&SecretKey, &SecretKey),
    listed: Address,
) -> Address {
    let allowlist = chain.deploy(
        boss,
        Env::Wasm,
        crate::common::artifact("allowlist.wasm"),
        Vec::new(),
    );
    let list = abi::call(
        "allow(address,uint256)",
        &[abi::address(&listed), abi::u(1)],
    );
    assert_eq!(chain.call(boss, allowlist, list).status, TxStatus::Success);
    let attach = set_policy(
        addr(agent),
        AccountPolicy {
            plugins: vec![allowlist],
            ..AccountPolicy::default()
        },
    );
    assert_eq!(run_change(chain, agent, attach).status, TxStatus::Success);
    allowlist
}

#[test]
fn the_plugin_gas_is_the_chains_parameter() {
    let (agent, boss) = (key(1), key(2));
    let mut chain = Chain::new(&[&agent, &boss]);
    allowlisted_agent(&mut chain, (&agent, &boss), Address([0x77; 20]));
    let r = chain.run(&agent, 300_000, transfer(Address([0x77; 20]), 1));
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    let used = r.gas_used - 21_000;
    let mut config = *chain.runtime.config();
    config.plugin_gas = used - 1;
    chain.runtime = keel_runtime::Runtime::new(config, chain.runtime.module_cache().clone());
    let r = chain.run(&agent, 300_000, transfer(Address([0x77; 20]), 1));
    let d = denial(&r).expect("out of its gas");
    assert_eq!((d.rule, r.gas_used), (PolicyRule::PluginFailed, used - 1));
}

/// Admission's plugin check (`Runtime::plugin_denial`): the verdict execution reaches,
/// from the plugins alone, and only within the caller's gas budget: a transaction whose
/// plugins could use more than is left is not run (admission refuses it), and what they
/// used is taken from the budget.
#[test]
fn admission_judges_by_the_plugins_alone_within_a_gas_budget() {
    let (agent, boss) = (key(1), key(2));
    let mut chain = Chain::new(&[&agent, &boss]);
    let router = Address([0x77; 20]);
    let allowlist = allowlisted_agent(&mut chain, (&agent, &boss), router);
    let judge = |chain: &Chain, tx: &SignedTransaction, budget: &mut u64| {
        let block = chain.make_block(vec![tx.clone()]);
        let context = chain.runtime.context(&block.header);
        let view = chain.store.latest_view();
        chain
            .runtime
            .plugin_denial(&view, &NoBlockHashes, &context, tx, budget)
            .expect("judged")
    };
    let full = keel_types::policy::PLUGIN_GAS;
    // Listed: allowed, and the plugin's gas is taken from the budget.
    let allowed = chain.tx(&agent, 300_000, transfer(router, 1));
    let mut budget = 10 * full;
    assert_eq!(judge(&chain, &allowed, &mut budget), PluginCheck::Passed);
    // The most it may use is charged (a module's load is not metered), not what it used.
    assert_eq!(10 * full - budget, full);
    // Not listed: denied, as its block would deny it (at the same nonce: nothing ran).
    chain.resync_nonce(&agent);
    let denied = chain.tx(&agent, 300_000, transfer(Address([8; 20]), 1));
    let PluginCheck::Denied(verdict) = judge(&chain, &denied, &mut budget) else {
        panic!("not denied");
    };
    assert_eq!(denial(&simulated(&chain, &denied)), Some(&verdict));
    assert_eq!(verdict.rule, PolicyRule::PluginDenied);
    // A budget below what the plugin may use: not run, and nothing spent.
    let mut short = full - 1;
    assert_eq!(judge(&chain, &denied, &mut short), PluginCheck::OverBudget);
    assert_eq!(short, full - 1);
    // A gas limit past any transaction's is judged within the largest one's room, not more.
    let huge = chain.tx(&agent, u64::MAX, transfer(Address([8; 20]), 1));
    let mut budget = full;
    assert!(matches!(
        judge(&chain, &huge, &mut budget),
        PluginCheck::Denied(_)
    ));
    // A sender without a policy, while no address declares rules: nothing runs.
    let plain = chain.tx(&boss, 21_000, transfer(router, 1));
    let mut none = 0;
    assert_eq!(judge(&chain, &plain, &mut none), PluginCheck::Passed);
    // ... which admission asks first, so as not to ask the veto at all; a policed sender's
    // plugins may run.
    let may_run = |tx: &SignedTransaction| {
        let view = chain.store.latest_view();
        chain.runtime.plugins_may_run(&view, &tx.tx).expect("read")
    };
    assert!(!may_run(&plain));
    assert!(may_run(&denied));
    // The sender's own rules deny it: `Denied`, so admission's refusal stands, and no plugin
    // runs for it (found by review: `Passed` let a later pool check on a new epoch's view
    // take it unjudged).
    let frozen = set_policy(
        addr(&agent),
        AccountPolicy {
            plugins: vec![allowlist],
            frozen: true,
            ..AccountPolicy::default()
        },
    );
    chain.resync_nonce(&agent);
    let changed = run_change(&mut chain, &agent, frozen);
    assert_eq!(changed.status, TxStatus::Success, "{changed:?}");
    chain.resync_nonce(&agent);
    let listed = chain.tx(&agent, 300_000, transfer(router, 1));
    let mut budget = full;
    let PluginCheck::Denied(d) = judge(&chain, &listed, &mut budget) else {
        panic!("a frozen account's transfer passed");
    };
    assert_eq!((d.rule, budget), (PolicyRule::Frozen, full));
}

/// A sender without an account policy that signs with a session key whose scope attaches a
/// plugin: admission's `plugins_may_run` says its plugins may run (the node then asks the
/// veto), and the veto runs the session key's plugin, denying what it denies; the account's
/// own key still skips it.
#[test]
fn a_session_keys_plugin_is_asked_at_admission_without_an_account_policy() {
    let (agent, boss, carol, session) = (key(1), key(2), key(3), key(9));
    let mut chain = Chain::new(&[&agent, &boss, &carol]);
    let router = Address([0x77; 20]);
    let allowlist = allowlisted_agent(&mut chain, (&agent, &boss), router);
    let add = TxBody::AddSessionKey {
        account: addr(&carol),
        key: session.public_key(),
        policy: AccountPolicy {
            plugins: vec![allowlist],
            ..AccountPolicy::default()
        },
        expires_at: u64::MAX,
    };
    assert_eq!(
        run_change(&mut chain, &carol, add).status,
        TxStatus::Success
    );
    let view = chain.store.latest_view();
    assert_eq!(
        keel_runtime::policy::read_record(&view, &addr(&carol)).expect("read"),
        None,
        "carol has no account policy"
    );
    chain.resync_nonce(&carol);
    let own = chain.tx(&carol, 21_000, transfer(Address([8; 20]), 1));
    let listed = as_session(&chain, &session, addr(&carol), 300_000, transfer(router, 1));
    let unlisted = as_session(
        &chain,
        &session,
        addr(&carol),
        300_000,
        transfer(Address([8; 20]), 1),
    );
    let may_run = |tx: &SignedTransaction| {
        let view = chain.store.latest_view();
        chain.runtime.plugins_may_run(&view, &tx.tx).expect("read")
    };
    let judge = |tx: &SignedTransaction| {
        let block = chain.make_block(vec![tx.clone()]);
        let context = chain.runtime.context(&block.header);
        let view = chain.store.latest_view();
        let mut budget = 10 * keel_types::policy::PLUGIN_GAS;
        chain
            .runtime
            .plugin_denial(&view, &NoBlockHashes, &context, tx, &mut budget)
            .expect("judged")
    };
    assert!(!may_run(&own), "the account's own key, no policy, no rules");
    assert!(may_run(&listed) && may_run(&unlisted));
    assert_eq!(judge(&listed), PluginCheck::Passed);
    let PluginCheck::Denied(verdict) = judge(&unlisted) else {
        panic!("the session key's plugin did not deny");
    };
    assert_eq!(verdict.rule, PolicyRule::PluginDenied);
    assert_eq!(verdict.scope, keel_types::policy::PolicyScope::Plugin);
}

/// A WASM contract sees whether a session key signed the transaction, and which one (the
/// `tx_session_key` host call), so it can scope what it does for an agent's key.
#[test]
fn a_wasm_contract_reads_the_transactions_session_key() {
    let (agent, session) = (key(1), key(5));
    let mut chain = Chain::new(&[&agent]);
    let me = addr(&agent);
    let probe = wat::parse_str(
        r#"(module
             (import "keel" "tx_session_key" (func $sk (param i32) (result i32)))
             (import "keel" "return_data" (func $ret (param i32 i32)))
             (memory (export "memory") 1 1)
             (func (export "call") (param i32) (result i32)
               (i32.store8 (i32.const 31) (call $sk (i32.const 32)))
               (call $ret (i32.const 0) (i32.const 64))
               (i32.const 0)))"#,
    )
    .expect("wat");
    let probe = chain.deploy(&agent, Env::Wasm, probe, Vec::new());
    let own = chain.call(&agent, probe, Vec::new());
    assert_eq!(own.status, TxStatus::Success, "{own:?}");
    assert_eq!(
        own.output,
        vec![0; 64],
        "the account's own key: no session key"
    );
    let add = TxBody::AddSessionKey {
        account: me,
        key: session.public_key(),
        policy: AccountPolicy::default(),
        expires_at: u64::MAX,
    };
    assert_eq!(
        run_change(&mut chain, &agent, add).status,
        TxStatus::Success
    );
    let call = TxBody::Call {
        to: probe,
        data: Vec::new(),
        value: U256::ZERO,
    };
    let r = session_run(&mut chain, &session, me, 1_000_000, call);
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    let mut expected = vec![0; 31];
    expected.push(1);
    expected.extend_from_slice(&session.public_key().0);
    assert_eq!(r.output, expected);
}

/// A plugin's frames see the transaction's session key (`tx_session_key`) as the
/// transaction's own frames do: a plugin that denies session keys denies them.
#[test]
fn a_plugin_sees_the_transactions_session_key() {
    let (agent, session) = (key(1), key(5));
    let mut chain = Chain::new(&[&agent]);
    let me = addr(&agent);
    // Returns the flag as its code: 0 (allow) for the account's own key, 1 for a session key.
    let plugin = wat::parse_str(
        r#"(module
             (import "keel" "tx_session_key" (func $sk (param i32) (result i32)))
             (import "keel" "return_data" (func $ret (param i32 i32)))
             (memory (export "memory") 1 1)
             (func (export "call") (param i32) (result i32)
               (i32.store8 (i32.const 31) (call $sk (i32.const 64)))
               (call $ret (i32.const 0) (i32.const 32))
               (i32.const 0)))"#,
    )
    .expect("wat");
    let plugin = chain.deploy(&agent, Env::Wasm, plugin, Vec::new());
    let add = TxBody::AddSessionKey {
        account: me,
        key: session.public_key(),
        policy: AccountPolicy {
            plugins: vec![plugin],
            ..AccountPolicy::default()
        },
        expires_at: u64::MAX,
    };
    assert_eq!(
        run_change(&mut chain, &agent, add).status,
        TxStatus::Success
    );
    let own = AccountPolicy {
        plugins: vec![plugin],
        ..AccountPolicy::default()
    };
    assert_eq!(
        run_change(&mut chain, &agent, set_policy(me, own)).status,
        TxStatus::Success
    );
    let r = chain.run(&agent, 300_000, transfer(Address([4; 20]), 1));
    assert_eq!(r.status, TxStatus::Success, "the account's own key: {r:?}");
    let r = session_run(
        &mut chain,
        &session,
        me,
        300_000,
        transfer(Address([4; 20]), 1),
    );
    let d = denial(&r).expect("a session key");
    assert_eq!(
        (d.rule, d.used),
        (PolicyRule::PluginDenied, U256::from(1u64))
    );
}

#[path = "jurisdiction.rs"]
mod jurisdiction;

#[path = "plugin_context.rs"]
mod plugin_context;

#[path = "session_scope.rs"]
mod session_scope;

/// One runtime executes sibling blocks over one parent, as a node does when a view changes
/// its proposal: the policy it decoded in one (changed inside that block) never answers for
/// the other, and its outputs are a fresh runtime's.
#[test]
fn a_runtime_that_ran_another_fork_decides_as_a_fresh_one() {
    let (agent, payee) = (key(1), key(2));
    let mut chain = Chain::new(&[&agent, &payee]);
    let to = addr(&payee);
    let only_payee = AccountPolicy {
        targets: Some(vec![TargetRule {
            to,
            selectors: None,
        }]),
        ..AccountPolicy::default()
    };
    let r = run_change(
        &mut chain,
        &agent,
        set_policy(addr(&agent), only_payee.clone()),
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    // Fork A freezes the account, then pays: refused.
    let frozen = AccountPolicy {
        frozen: true,
        ..only_payee
    };
    let body = set_policy(addr(&agent), frozen);
    let gas = gas_of(&body);
    let txs = vec![
        chain.tx(&agent, gas, body),
        chain.tx(&agent, 21_000, transfer(to, 5)),
    ];
    let fork_a = chain.make_block(txs);
    chain.resync_nonce(&agent);
    // Fork B, on the same parent, only pays: allowed.
    let txs = vec![chain.tx(&agent, 21_000, transfer(to, 5))];
    let fork_b = chain.make_block(txs);
    chain.resync_nonce(&agent);
    let kept = chain.runtime_with_threads(1);
    let out_a = chain.execute_on(&kept, &fork_a);
    assert_eq!(
        denial(&out_a.receipts[1]).map(|d| d.rule),
        Some(PolicyRule::Frozen),
        "{:?}",
        out_a.receipts[1]
    );
    let out_b = chain.execute_on(&kept, &fork_b);
    assert_eq!(out_b.receipts[0].status, TxStatus::Success, "{out_b:?}");
    assert!(out_b == chain.execute_on(&chain.runtime_with_threads(1), &fork_b));
    // And back: fork A again decides as a fresh runtime does.
    assert!(
        chain.execute_on(&kept, &fork_a)
            == chain.execute_on(&chain.runtime_with_threads(1), &fork_a)
    );
}
