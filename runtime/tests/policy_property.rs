//! The policy property test: random sequences against measured balances and a model.

use super::{denial, gas_of, set_policy, simulated, EthAgent};
use crate::common::{abi, addr, key, Chain};
use crate::differential::{self, Contract, Impl, Op, CONTRACTS, SUPPLY, USERS};
use keel_state::StateViewExt;
use keel_types::policy::{
    AccountPolicy, PolicyRule, PolicyScope, PolicySpend, TargetRule, POLICY_ADDRESS,
};
use keel_types::{
    Address, Env, Receipt, SecretKey, SignedTransaction, Transaction, TxBody, TxError, TxStatus,
    U256,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// The harness's users and one Ethereum-envelope agent.
const AGENTS: usize = USERS as usize + 1;
const ETH: usize = USERS as usize;
const OP_GAS: [u64; 3] = [300_000, 1_000_000, 2_000_000];
const PAYEES: [Address; 2] = [Address([0x51; 20]), Address([0x52; 20])];
/// The shop's jurisdiction rules: KP-tagged callers may not pay it, untagged ones at most
/// this much per call (issue 20 item 3).
const SHOP_CAP: u64 = 3_000;
const LAYOUTS: [[Impl; 4]; 2] = [
    [Impl::C, Impl::Sol, Impl::C, Impl::Sol],
    [Impl::Sol, Impl::Rust, Impl::Sol, Impl::Rust],
];

/// A policy with its addresses as indices (0..4 the contracts, 4 and 5 the payees) and its
/// window relative to the height it is set at.
#[derive(Debug, Clone)]
struct Spec {
    envs: Option<u8>,
    targets: Option<Vec<(u8, Option<Vec<u8>>)>>,
    value_tx: Option<u64>,
    value_epoch: Option<u64>,
    fee_epoch: Option<u64>,
    txs_epoch: Option<u64>,
    from: Option<u64>,
    until: Option<u64>,
    frozen: bool,
    /// Attach the allow-list plugin (it lists the first payee and the token).
    plugin: bool,
}

#[derive(Debug, Clone)]
enum Act {
    Idle,
    Pay {
        to: u8,
        amount: u64,
    },
    Op(Op, u8),
    /// Value to a harness contract (reverts in most: they are not payable).
    ValueCall {
        contract: u8,
        amount: u64,
    },
    Deploy {
        wasm: bool,
    },
    Tighten,
    Loosen,
}

#[derive(Debug, Clone)]
struct Step {
    next_epoch: bool,
    /// The attester tags an agent: US or KP (`kp`), live this many blocks ahead.
    tag: Option<(u8, bool, u64)>,
    controller: Option<(u8, Spec)>,
    /// The controller adds (with a scope and an expiry this many blocks ahead) or revokes an
    /// agent's session key.
    session: Option<(u8, Option<(Spec, u64)>)>,
    /// Each agent's act, and whether its session key signs it.
    acts: Vec<(Act, bool)>,
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![1 => Just(None), 2 => s.prop_map(Some)]
}

fn spec() -> impl Strategy<Value = Spec> {
    let target = (
        0u8..6,
        prop::option::of(prop::collection::vec(0u8..3, 1..3)),
    );
    (
        (
            opt(1u8..4),
            prop_oneof![2 => Just(None), 1 => prop::collection::vec(target, 1..4).prop_map(Some)],
            opt(prop::sample::select(vec![100u64, 1_000, 10_000])),
            opt(prop::sample::select(vec![1_000u64, 5_000, 20_000])),
        ),
        (
            opt(prop::sample::select(vec![
                50_000u64, 500_000, 5_000_000, 50_000_000,
            ])),
            opt(1u64..10),
            opt(0u64..4),
            opt(2u64..20),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.3),
        ),
    )
        .prop_map(
            |(
                (envs, targets, value_tx, value_epoch),
                (fee_epoch, txs_epoch, from, until, frozen, plugin),
            )| {
                Spec {
                    plugin,
                    envs,
                    targets,
                    value_tx,
                    value_epoch,
                    fee_epoch,
                    txs_epoch,
                    from,
                    until,
                    frozen,
                }
            },
        )
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        1 => Just(Act::Idle),
        4 => (0u8..3, 0u64..6_000).prop_map(|(to, amount)| Act::Pay { to, amount }),
        4 => (differential::op(), 0u8..3).prop_map(|(op, gas)| Act::Op(op, gas)),
        1 => (0u8..4, 0u64..3_000).prop_map(|(contract, amount)| Act::ValueCall { contract, amount }),
        1 => any::<bool>().prop_map(|wasm| Act::Deploy { wasm }),
        1 => Just(Act::Tighten),
        1 => Just(Act::Loosen),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop::bool::weighted(0.3),
        prop::option::weighted(0.25, (0u8..AGENTS as u8, any::<bool>(), 0u64..8)),
        prop::option::weighted(0.3, (0u8..AGENTS as u8, spec())),
        prop::option::weighted(
            0.5,
            (
                0u8..AGENTS as u8,
                prop::option::weighted(0.8, (spec(), 0u64..12)),
            ),
        ),
        prop::collection::vec((act(), prop::bool::weighted(0.5)), AGENTS),
    )
        .prop_map(|(next_epoch, tag, controller, session, acts)| Step {
            next_epoch,
            tag,
            controller,
            session,
            acts,
        })
}

struct World {
    chain: Chain,
    users: Vec<SecretKey>,
    eth: EthAgent,
    boss: SecretKey,
    at: BTreeMap<Contract, Address>,
    /// The allow-list plugin (contracts/wasm/allowlist.c), owned by the controller.
    allowlist: Address,
    /// The policy in force per agent, and what the model says it used this epoch.
    policies: Vec<AccountPolicy>,
    spent: Vec<PolicySpend>,
    /// Each agent's session key, its scope and last height while added, and its spending.
    session_keys: Vec<SecretKey>,
    sessions: Vec<Option<(AccountPolicy, u64)>>,
    session_spent: Vec<PolicySpend>,
    /// The payee that declares jurisdiction rules, and each agent's tags (code, expiry) by
    /// the attester (the controller).
    shop: Address,
    tags: Vec<Vec<(keel_types::jurisdiction::Code, u64)>>,
    /// How often each outcome was seen ("success", "revert", or the denying rule).
    seen: BTreeMap<&'static str, u64>,
}

impl World {
    fn new(layout: [Impl; 4], cache: &std::sync::Arc<keel_exec_wasm::ModuleCache>) -> World {
        let users: Vec<SecretKey> = (0..USERS).map(|i| key(40 + i)).collect();
        let boss = key(90);
        let shop = key(91);
        let mut funded: Vec<&SecretKey> = users.iter().collect();
        funded.push(&boss);
        funded.push(&shop);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut chain = Chain::with_cache(dir, &funded, cache.clone());
        // The controller is also the chain's jurisdiction attester; the shop declares its
        // rules.
        chain.runtime = chain.runtime.clone().with_attesters(&[addr(&boss)]);
        let rules = keel_types::jurisdiction::Rules {
            deny: vec![keel_types::jurisdiction::Code(*b"KP")],
            allow_only: Vec::new(),
            untagged_max_value: Some(U256::from(SHOP_CAP)),
        };
        let declare = TxBody::Call {
            to: keel_types::jurisdiction::JURISDICTION_ADDRESS,
            data: keel_types::jurisdiction::set_rules_call(&rules),
            value: U256::ZERO,
        };
        let r = chain.run(&shop, 300_000, declare);
        assert_eq!(r.status, TxStatus::Success, "{r:?}");
        let mut at = BTreeMap::new();
        for (contract, imp) in CONTRACTS.into_iter().zip(layout) {
            let args = match contract {
                Contract::Token => abi::u(SUPPLY).to_vec(),
                _ => Vec::new(),
            };
            let code = differential::code(contract, imp);
            at.insert(contract, chain.deploy(&users[0], imp.env(), code, args));
        }
        let addresses: Vec<Address> = users.iter().map(addr).collect();
        let setup: Vec<SignedTransaction> = differential::setup_ops()
            .iter()
            .map(|op| {
                let (from, contract, data) = differential::calldata(op, &addresses, &at);
                let body = TxBody::Call {
                    to: at[&contract],
                    data,
                    value: U256::ZERO,
                };
                chain.tx(&users[from as usize], 2_000_000, body)
            })
            .collect();
        chain.block(setup);
        let allowlist = chain.deploy(
            &boss,
            Env::Wasm,
            crate::common::artifact("allowlist.wasm"),
            Vec::new(),
        );
        for listed in [PAYEES[0], at[&Contract::Token]] {
            let data = abi::call(
                "allow(address,uint256)",
                &[abi::address(&listed), abi::u(1)],
            );
            let r = chain.call(&boss, allowlist, data);
            assert_eq!(r.status, TxStatus::Success, "{r:?}");
        }
        let mut eth = EthAgent::new(9);
        let fund = TxBody::Transfer {
            to: eth.address,
            amount: U256::from(100_000_000_000u64),
        };
        chain.run(&boss, 21_000, fund);
        // Every agent names the controller (it has no limits yet).
        let mut txs = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let body = TxBody::SetController {
                account: addresses[i],
                controller: Some(addr(&boss)),
            };
            txs.push(chain.tx(user, gas_of(&body), body));
        }
        let body = TxBody::SetController {
            account: eth.address,
            controller: Some(addr(&boss)),
        };
        txs.push(eth.tx(gas_of(&body), Some(POLICY_ADDRESS), 0, encode(&body)));
        let (out, _) = chain.block(txs);
        assert!(
            out.receipts.iter().all(|r| r.status == TxStatus::Success),
            "{out:?}"
        );
        World {
            chain,
            users,
            eth,
            boss,
            at,
            allowlist,
            policies: vec![AccountPolicy::default(); AGENTS],
            spent: vec![PolicySpend::default(); AGENTS],
            session_keys: (0..AGENTS as u8).map(|i| key(60 + i)).collect(),
            sessions: vec![None; AGENTS],
            session_spent: vec![PolicySpend::default(); AGENTS],
            shop: addr(&shop),
            tags: vec![Vec::new(); AGENTS],
            seen: BTreeMap::new(),
        }
    }

    fn address(&self, agent: usize) -> Address {
        if agent == ETH {
            self.eth.address
        } else {
            addr(&self.users[agent])
        }
    }

    fn target(&self, index: u8) -> Address {
        match index {
            i @ 0..=3 => self.at[&CONTRACTS[usize::from(i)]],
            i => PAYEES[usize::from(i - 4) % PAYEES.len()],
        }
    }

    fn policy(&self, spec: &Spec) -> AccountPolicy {
        let selectors = [
            abi::selector("transfer(address,uint256)"),
            abi::selector("approve(address,uint256)"),
            [0xde, 0xad, 0xbe, 0xef],
        ];
        let height = self.chain.height + 1;
        AccountPolicy {
            envs: spec.envs.map(|mask| {
                [(1, Env::Evm), (2, Env::Wasm)]
                    .into_iter()
                    .filter(|(bit, _)| mask & bit != 0)
                    .map(|(_, env)| env)
                    .collect()
            }),
            // Each target and selector once (a policy with repeats does not decode).
            targets: spec.targets.as_ref().map(|targets| {
                let mut rules: Vec<TargetRule> = Vec::new();
                for (to, sels) in targets {
                    let to = self.target(*to);
                    if rules.iter().any(|r| r.to == to) {
                        continue;
                    }
                    let selectors = sels.as_ref().map(|s| {
                        let mut out: Vec<[u8; 4]> = Vec::new();
                        for sel in s.iter().map(|i| selectors[usize::from(*i)]) {
                            if !out.contains(&sel) {
                                out.push(sel);
                            }
                        }
                        out
                    });
                    rules.push(TargetRule { to, selectors });
                }
                rules
            }),
            max_value_per_tx: spec.value_tx.map(U256::from),
            max_value_per_epoch: spec.value_epoch.map(U256::from),
            max_fee_per_epoch: spec.fee_epoch.map(U256::from),
            max_txs_per_epoch: spec.txs_epoch,
            valid_from: spec.from.map(|f| height + f),
            valid_until: spec.until.map(|u| height + u),
            frozen: spec.frozen,
            plugins: if spec.plugin {
                vec![self.allowlist]
            } else {
                Vec::new()
            },
        }
    }

    /// The body agent `i` sends for `act` and its gas limit.
    fn body(&self, i: usize, act: &Act) -> Option<(TxBody, u64)> {
        let me = self.address(i);
        let users: Vec<Address> = self.users.iter().map(addr).collect();
        Some(match act {
            Act::Idle => return None,
            Act::Pay { to, amount } => {
                let to = match to {
                    0 | 1 => PAYEES[usize::from(*to)],
                    _ => self.shop,
                };
                let body = TxBody::Transfer {
                    to,
                    amount: U256::from(*amount),
                };
                // Room for a plugin's check besides the transfer's 21,000.
                (body, 100_000)
            }
            Act::Op(op, gas) => {
                let (_, contract, data) = differential::calldata(op, &users, &self.at);
                let body = TxBody::Call {
                    to: self.at[&contract],
                    data,
                    value: U256::ZERO,
                };
                (body, OP_GAS[usize::from(*gas) % OP_GAS.len()])
            }
            Act::ValueCall { contract, amount } => {
                let body = TxBody::Call {
                    to: self.target(*contract),
                    data: abi::call("transfer(address,uint256)", &[abi::address(&me), abi::u(0)]),
                    value: U256::from(*amount),
                };
                (body, 300_000)
            }
            Act::Deploy { wasm } => {
                let imp = if *wasm { Impl::C } else { Impl::Sol };
                let body = TxBody::Deploy {
                    env: imp.env(),
                    code: differential::code(Contract::Registry, imp),
                    args: Vec::new(),
                    value: U256::ZERO,
                };
                (body, 10_000_000)
            }
            Act::Tighten | Act::Loosen => {
                let mut next = self.policies[i].clone();
                if matches!(act, Act::Tighten) {
                    let cap = next
                        .max_value_per_epoch
                        .map_or(U256::from(50_000u64), |v| v / U256::from(2u64));
                    next.max_value_per_epoch = Some(cap);
                } else if next.max_value_per_epoch.is_some() {
                    next.max_value_per_epoch = None;
                } else {
                    next.max_txs_per_epoch = next.max_txs_per_epoch.map(|c| c + 1);
                }
                let body = set_policy(me, next);
                let gas = gas_of(&body);
                (body, gas)
            }
        })
    }

    fn sign(&mut self, i: usize, (body, gas): (TxBody, u64), session: bool) -> SignedTransaction {
        if session {
            // Ed25519-signed as the account, whichever kind of key the account has.
            let account = self.address(i);
            let nonce = self.balance_and_nonce(&account).1;
            let key = &self.session_keys[i];
            return Transaction {
                chain_id: crate::common::CHAIN_ID,
                sender: keel_types::Sender::Session {
                    account,
                    key: key.public_key(),
                },
                nonce,
                gas_limit: gas,
                gas_price: self.chain.gas_price,
                body,
            }
            .sign(key);
        }
        if i != ETH {
            let user = self.users[i].clone();
            return self.chain.tx(&user, gas, body);
        }
        match body {
            TxBody::Transfer { to, amount } => self.eth.tx(gas, Some(to), amount.to(), Vec::new()),
            TxBody::Call { to, data, value } => self.eth.tx(gas, Some(to), value.to(), data),
            TxBody::Deploy { code, .. } => self.eth.tx(gas, None, 0, code),
            change => self.eth.tx(gas, Some(POLICY_ADDRESS), 0, encode(&change)),
        }
    }

    fn env_of(&self, to: &Address) -> Option<Env> {
        let view = self.chain.store.latest_view();
        view.account(to)
            .expect("read")
            .and_then(|a| a.code)
            .map(|c| c.env)
    }

    fn balance_and_nonce(&self, a: &Address) -> (U256, u64) {
        let view = self.chain.store.latest_view();
        view.account(a)
            .expect("read")
            .map_or((U256::ZERO, 0), |r| (r.balance, r.nonce))
    }

    fn resync(&mut self) {
        for user in self.users.clone() {
            self.chain.resync_nonce(&user);
        }
        self.eth.nonce = self.balance_and_nonce(&self.eth.address).1;
    }
}

fn encode(body: &TxBody) -> Vec<u8> {
    body.policy_call_data()
}

/// The rule and scope the model expects to deny agent `i`'s `t` at `height`: a session key's
/// standing, then the account's policy, then the session's scope.
fn expected_decision(
    world: &World,
    i: usize,
    t: &Transaction,
    height: u64,
) -> Option<(PolicyRule, PolicyScope)> {
    let env_of = |a: &Address| world.env_of(a);
    let session = matches!(t.sender, keel_types::Sender::Session { .. });
    let scope = if session {
        let Some((scope, expires_at)) = world.sessions[i].clone() else {
            return Some((PolicyRule::SessionKeyUnknown, PolicyScope::SessionKey));
        };
        if height > expires_at {
            return Some((PolicyRule::SessionKeyExpired, PolicyScope::SessionKey));
        }
        if t.body.as_policy_change().is_some() {
            return Some((PolicyRule::SessionKeyScope, PolicyScope::SessionKey));
        }
        Some(scope)
    } else {
        None
    };
    if let Some(rule) = expected_denial(&world.policies[i], &world.spent[i], t, height, env_of) {
        return Some((rule, PolicyScope::Account));
    }
    let mut plugins = world.policies[i].plugins.clone();
    if let Some(scope) = &scope {
        if let Some(rule) = expected_denial(scope, &world.session_spent[i], t, height, env_of) {
            return Some((rule, PolicyScope::SessionKey));
        }
        plugins.extend(&scope.plugins);
    }
    // The target's jurisdiction rules: only the shop declares any.
    if let TxBody::Transfer { to, .. } | TxBody::Call { to, .. } = &t.body {
        if *to == world.shop && t.body.as_policy_change().is_none() {
            let live: Vec<_> = world.tags[i]
                .iter()
                .filter(|(_, until)| height < *until)
                .map(|(code, _)| *code)
                .collect();
            if live.contains(&keel_types::jurisdiction::Code(*b"KP")) {
                return Some((PolicyRule::JurisdictionDenied, PolicyScope::Contract));
            }
            if live.is_empty() && t.body.value() > U256::from(SHOP_CAP) {
                return Some((PolicyRule::JurisdictionUntaggedValue, PolicyScope::Contract));
            }
        }
    }
    // The allow-list plugin judges what sends or calls: listed targets pass.
    let target = match &t.body {
        _ if t.body.as_policy_change().is_some() => return None,
        TxBody::Transfer { to, .. } | TxBody::Call { to, .. } => *to,
        TxBody::Deploy { .. } => Address::ZERO,
        _ => return None,
    };
    let listed = [PAYEES[0], world.at[&Contract::Token]].contains(&target);
    (!plugins.is_empty() && !listed).then_some((PolicyRule::PluginDenied, PolicyScope::Plugin))
}

/// The rule the model expects to deny `t` (none: allowed). Written apart from the runtime's
/// `policy::evaluate`, from docs/policies.md's order.
fn expected_denial(
    p: &AccountPolicy,
    used: &PolicySpend,
    t: &Transaction,
    height: u64,
    env_of: impl Fn(&Address) -> Option<Env>,
) -> Option<PolicyRule> {
    let over = |cap: Option<U256>, amount: U256| cap.is_some_and(|c| amount > c);
    if p.frozen {
        return Some(PolicyRule::Frozen);
    }
    if p.valid_from.is_some_and(|f| height < f) {
        return Some(PolicyRule::ValidFrom);
    }
    if p.valid_until.is_some_and(|u| height > u) {
        return Some(PolicyRule::ValidUntil);
    }
    if p.max_txs_per_epoch.is_some_and(|c| used.txs + 1 > c) {
        return Some(PolicyRule::TxsPerEpoch);
    }
    if over(p.max_fee_per_epoch, used.fees + t.max_fee()) {
        return Some(PolicyRule::FeePerEpoch);
    }
    if t.body.as_policy_change().is_some() {
        return None;
    }
    let (to, data, deployed) = match &t.body {
        TxBody::Transfer { to, .. } => (*to, Vec::new(), None),
        TxBody::Call { to, data, .. } => (*to, data.clone(), None),
        TxBody::Deploy { env, .. } => (Address::ZERO, Vec::new(), Some(*env)),
        _ => return None,
    };
    if let Some(targets) = &p.targets {
        if deployed.is_some() {
            return Some(PolicyRule::Deploy);
        }
        let Some(rule) = targets.iter().find(|r| r.to == to) else {
            return Some(PolicyRule::Target);
        };
        if let Some(selectors) = &rule.selectors {
            if !selectors
                .iter()
                .any(|s| data.len() >= 4 && data[..4] == s[..])
            {
                return Some(PolicyRule::Selector);
            }
        }
    }
    if let (Some(envs), Some(env)) = (&p.envs, deployed.or_else(|| env_of(&to))) {
        if !envs.contains(&env) {
            return Some(PolicyRule::Environment);
        }
    }
    let value = t.body.value();
    if over(p.max_value_per_tx, value) {
        return Some(PolicyRule::ValuePerTx);
    }
    if over(p.max_value_per_epoch, used.value + value) {
        return Some(PolicyRule::ValuePerEpoch);
    }
    None
}

/// One step: maybe a controller change in its own block, maybe a new epoch, then one block
/// with each agent's transaction, checked against the model and the measured balances.
fn run_step(world: &mut World, step: &Step) -> Result<(), TestCaseError> {
    if let Some((agent, kp, ahead)) = step.tag {
        let i = usize::from(agent);
        let code = keel_types::jurisdiction::Code(if kp { *b"KP" } else { *b"US" });
        let until = world.chain.height + 2 + ahead;
        let body = TxBody::Call {
            to: keel_types::jurisdiction::JURISDICTION_ADDRESS,
            data: keel_types::jurisdiction::tag_call(&world.address(i), code, until),
            value: U256::ZERO,
        };
        let boss = world.boss.clone();
        let r = world.chain.run(&boss, 300_000, body);
        prop_assert_eq!(r.status, TxStatus::Success, "{:?}", r);
        // One tag per attester and code (replaced); expired ones make room.
        let height = world.chain.height;
        world.tags[i].retain(|(c, until)| *c != code && height < *until);
        world.tags[i].push((code, until));
    }
    if let Some((agent, spec)) = &step.controller {
        let i = usize::from(*agent);
        let policy = world.policy(spec);
        let body = set_policy(world.address(i), policy.clone());
        let boss = world.boss.clone();
        let r = super::run_change(&mut world.chain, &boss, body);
        prop_assert_eq!(r.status, TxStatus::Success, "{:?}", r);
        world.policies[i] = policy;
    }
    if let Some((agent, change)) = &step.session {
        let i = usize::from(*agent);
        let key = world.session_keys[i].public_key();
        let account = world.address(i);
        let body = match change {
            Some((spec, ahead)) => TxBody::AddSessionKey {
                account,
                key,
                policy: world.policy(spec),
                expires_at: world.chain.height + 1 + ahead,
            },
            None => TxBody::RevokeSessionKey { account, key },
        };
        let boss = world.boss.clone();
        let r = super::run_change(&mut world.chain, &boss, body.clone());
        match body {
            TxBody::AddSessionKey {
                policy, expires_at, ..
            } => {
                prop_assert_eq!(r.status, TxStatus::Success, "{:?}", r);
                world.sessions[i] = Some((policy, expires_at));
            }
            _ if world.sessions[i].is_some() => {
                prop_assert_eq!(r.status, TxStatus::Success, "{:?}", r);
                world.sessions[i] = None;
                world.session_spent[i] = PolicySpend::default();
            }
            _ => prop_assert_eq!(
                denial(&r).map(|d| d.rule),
                Some(PolicyRule::SessionKeyUnknown)
            ),
        }
        world.chain.resync_nonce(&boss);
    }
    if step.next_epoch {
        world.chain.epoch += 1;
    }
    let epoch = world.chain.epoch;
    let height = world.chain.height + 1;
    for spent in world.spent.iter_mut().chain(&mut world.session_spent) {
        *spent = spent.in_epoch(epoch);
    }
    let mut sent: Vec<(usize, SignedTransaction, Receipt, (U256, u64))> = Vec::new();
    for (i, (act, session)) in step.acts.iter().enumerate() {
        let Some(body) = world.body(i, act) else {
            continue;
        };
        let tx = world.sign(i, body, *session);
        let simulated = simulated(&world.chain, &tx);
        let before = world.balance_and_nonce(&world.address(i));
        sent.push((i, tx, simulated, before));
    }
    let txs: Vec<SignedTransaction> = sent.iter().map(|(_, tx, _, _)| tx.clone()).collect();
    let (out, _) = world.chain.block(txs);
    for ((i, tx, simulated, (balance, nonce)), receipt) in sent.into_iter().zip(&out.receipts) {
        let me = world.address(i);
        let t = &tx.tx;
        let policy = world.policies[i].clone();
        let session = matches!(t.sender, keel_types::Sender::Session { .. });
        let scope = world.sessions[i].clone().filter(|_| session);
        let expected = expected_decision(world, i, t, height);
        // Simulation decides as execution does (nothing else this block touches the agent).
        prop_assert_eq!(
            denial(&simulated),
            denial(receipt),
            "simulate vs execute: {:?}",
            t.body
        );
        let (after, nonce_after) = world.balance_and_nonce(&me);
        let outcome = denial(receipt).map_or(receipt.status.as_str(), |d| d.rule.as_str());
        let got = denial(receipt).map(|d| (d.rule, d.scope));
        *world.seen.entry(outcome).or_default() += 1;
        if receipt.status == TxStatus::Rejected {
            prop_assert_eq!(got, expected, "{:?}", receipt);
            prop_assert!(
                expected.is_some(),
                "refused for another reason: {:?}",
                receipt
            );
            prop_assert_eq!(
                (after, nonce_after),
                (balance, nonce),
                "a refusal changes nothing"
            );
            continue;
        }
        // A plugin's denial is charged (plugin work is never free), and so is a target's
        // jurisdiction rule's (its verdict can depend on the block's order).
        let by_plugin = expected
            .is_some_and(|(_, scope)| matches!(scope, PolicyScope::Plugin | PolicyScope::Contract));
        if by_plugin {
            prop_assert_eq!(got, expected, "{:?}", receipt);
            prop_assert_eq!(receipt.status, TxStatus::Revert);
        } else {
            prop_assert_eq!(
                expected,
                None,
                "the model denies what ran: {:?} {:?}",
                t.body,
                receipt
            );
        }
        let fee = U256::from(receipt.gas_used) * U256::from(t.gas_price);
        prop_assert!(balance >= after + fee, "{:?}", receipt);
        // What left the account besides the fee, measured: its own value if it succeeded.
        let outflow = balance - after - fee;
        let value = if receipt.status == TxStatus::Success {
            t.body.value()
        } else {
            U256::ZERO
        };
        prop_assert_eq!(outflow, value, "{:?}", receipt);
        if let Some((scope, _)) = &scope {
            // The session key's own caps, by the same measured figures.
            let spent = &mut world.session_spent[i];
            spent.value += outflow;
            spent.fees += fee;
            spent.txs += 1;
            let within = |cap: Option<U256>, used: U256| cap.is_none_or(|c| used <= c);
            prop_assert!(outflow.is_zero() || within(scope.max_value_per_epoch, spent.value));
            prop_assert!(within(scope.max_value_per_tx, outflow));
            prop_assert!(within(scope.max_fee_per_epoch, spent.fees));
            prop_assert!(scope.max_txs_per_epoch.is_none_or(|c| spent.txs <= c));
            let key = world.session_keys[i].public_key();
            let view = world.chain.store.latest_view();
            let stored = keel_runtime::policy::read_session_spend(&view, &me, &key, epoch)
                .expect("read session spend");
            prop_assert_eq!(&stored, &world.session_spent[i]);
        }
        let spent = &mut world.spent[i];
        spent.value += outflow;
        spent.fees += fee;
        spent.txs += 1;
        // The caps of the policy in force held, by the measured figures (value spent under
        // an earlier, looser policy of the same epoch may exceed a new cap: then nothing more
        // leaves).
        let within = |cap: Option<U256>, used: U256| cap.is_none_or(|c| used <= c);
        let value_ok = outflow.is_zero() || within(policy.max_value_per_epoch, spent.value);
        prop_assert!(value_ok, "{:?} {:?}", policy, spent);
        prop_assert!(within(policy.max_value_per_tx, outflow));
        prop_assert!(within(policy.max_fee_per_epoch, spent.fees));
        prop_assert!(policy.max_txs_per_epoch.is_none_or(|c| spent.txs <= c));
        prop_assert!(!policy.frozen);
        let stored = keel_runtime::policy::read_spend(&world.chain.store.latest_view(), &me, epoch)
            .expect("read spend");
        prop_assert_eq!(&stored, spent);
        // A change applies from the next block; loosening is charged and refused.
        if let Some(change) = t.body.as_policy_change() {
            if let TxBody::SetPolicy { policy: next, .. } = change.as_ref() {
                let allowed = next.within(&policy);
                let loosening = (PolicyRule::Loosening, PolicyScope::Account);
                prop_assert_eq!(got, (!allowed).then_some(loosening));
                if allowed {
                    world.policies[i] = next.clone();
                }
            }
        } else if receipt.status == TxStatus::Revert && !by_plugin {
            prop_assert!(
                !matches!(receipt.error, Some(TxError::PolicyDenied { .. })),
                "{:?}",
                receipt
            );
        }
    }
    world.resync();
    Ok(())
}

#[test]
fn caps_hold_and_simulation_decides_as_execution_on_random_sequences() {
    let cache = std::sync::Arc::new(
        keel_exec_wasm::ModuleCache::new(None, keel_exec_wasm::limits::MODULE_CACHE_ENTRIES)
            .expect("cache"),
    );
    let (mut runner, cases, seed) =
        differential::seeded_runner_from(("KEEL_POLICY_CASES", 24), "KEEL_POLICY_SEED");
    let seen = std::cell::RefCell::new(BTreeMap::<&'static str, u64>::new());
    let strategy = (0usize..LAYOUTS.len(), prop::collection::vec(step(), 6..14));
    let result = runner.run(&strategy, |(layout, steps)| {
        let mut world = World::new(LAYOUTS[layout], &cache);
        for step in &steps {
            run_step(&mut world, step)?;
        }
        for (outcome, n) in &world.seen {
            *seen.borrow_mut().entry(outcome).or_default() += n;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!(
            "policy property failed (seed {seed}; replay with KEEL_POLICY_SEED={seed} \
             KEEL_POLICY_CASES={cases}):\n{e}"
        );
    }
    // The sequences reached the rules, not only the happy path.
    let seen = seen.into_inner();
    eprintln!("policy outcomes: {seen:?}");
    let rules = seen
        .keys()
        .filter(|k| !["success", "revert"].contains(k))
        .count();
    assert!(seen.get("success").is_some_and(|n| *n > 0), "{seen:?}");
    assert!(rules >= 6, "only {rules} rules denied anything: {seen:?}");
}
